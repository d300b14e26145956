# src/models/clip and src/models/t5: the SD3 text encoders on the Backend op set.
list(APPEND SD35_ENGINE_SOURCES
  src/models/clip/clip.cpp
  src/models/t5/t5.cpp
)
