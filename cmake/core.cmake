# src/core, the backend interface, the reference backend's dispatch class.
list(APPEND SD35_ENGINE_SOURCES
  src/core/status.cpp
  src/core/dtype.cpp
  src/core/tensor.cpp
  src/core/convert.cpp
  src/core/cpu_features.cpp
  src/core/arena.cpp
  src/core/device_memory.cpp
  src/core/thread_pool.cpp
  src/backend/backend.cpp
  src/backend/transfer.cpp
  src/backend/make_backend.cpp
  src/backend/cpu/cpu_backend.cpp
  src/backend/reference/reference_backend.cpp
)
list(APPEND SD35_AVX2_SOURCES src/core/convert_avx2.cpp)
list(APPEND SD35_AVX512_SOURCES src/core/convert_avx512.cpp)
