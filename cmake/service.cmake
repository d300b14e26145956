# src/service: the job queue (engine library) and the ComfyUI API-format workflows ->
# validated typed Plan -> Engine calls (their own library, sd35_workflow: LoadImage decodes
# PNG/JPEG/WebP and fetches inline/URL images through sd35_service_media, which the engine
# must not depend on).
list(APPEND SD35_ENGINE_SOURCES
  src/service/job_queue.cpp
)
add_library(sd35_workflow STATIC
  src/service/workflow/graph.cpp
  src/service/workflow/loaders.cpp
  src/service/workflow/conditioning.cpp
  src/service/workflow/latent.cpp
  src/service/workflow/sampling.cpp
  src/service/workflow/image.cpp
  src/service/workflow/image_scale.cpp
  src/service/workflow/executor.cpp
)
# Target names resolve at generate time: sd35_engine (CMakeLists.txt) and sd35_service_media
# (cmake/service_media.cmake) are defined after this file is included.
target_link_libraries(sd35_workflow PUBLIC sd35_engine sd35_service_media)
