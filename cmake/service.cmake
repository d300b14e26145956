# src/service: ComfyUI API-format workflows -> validated typed Plan -> Engine calls.
list(APPEND SD35_ENGINE_SOURCES
  src/service/workflow/graph.cpp
  src/service/workflow/loaders.cpp
  src/service/workflow/conditioning.cpp
  src/service/workflow/latent.cpp
  src/service/workflow/sampling.cpp
  src/service/workflow/image.cpp
  src/service/workflow/executor.cpp
  src/service/job_queue.cpp
)
