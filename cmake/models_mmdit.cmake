# src/models/mmdit: the MMDiT-X diffusion transformer on the Backend op set.
list(APPEND SD35_ENGINE_SOURCES
  src/models/mmdit/mmdit.cpp
  src/models/mmdit/mmdit_block.cpp
  src/models/mmdit/mmdit_weights.cpp
)
