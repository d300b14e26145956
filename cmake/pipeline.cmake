# src/pipeline: stage functions over the loaded models (text conditioning, ...).
list(APPEND SD35_ENGINE_SOURCES
  src/pipeline/conditioning.cpp
)
