# src/pipeline: stage functions over the loaded models (text conditioning, ...).
list(APPEND SD35_ENGINE_SOURCES
  src/pipeline/conditioning.cpp
)
# Engine: loads the models once; txt2img / img2img stage functions (src/pipeline/engine.h).
list(APPEND SD35_ENGINE_SOURCES
  src/pipeline/engine.cpp
  src/pipeline/engine_tiled.cpp
  src/pipeline/captured_forwards.cpp
  src/io/png.cpp
)
