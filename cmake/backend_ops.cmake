# owned by the backend_ops work; see CMakeLists.txt for the lists to append to
# Elementwise / normalisation / layout ops: shared validation, reference kernels, CPU kernels.
list(APPEND SD35_ENGINE_SOURCES
  src/backend/ops_validate.cpp
  src/backend/reference/ref_ops.cpp
  src/backend/reference/ref_layout.cpp
  src/backend/reference/ref_arith.cpp
  src/backend/cpu/norm.cpp
  src/backend/cpu/elementwise.cpp
  src/backend/cpu/elementwise_scalar.cpp
  src/backend/cpu/layout.cpp
  src/backend/cpu/arith.cpp
)
list(APPEND SD35_AVX2_SOURCES src/backend/cpu/elementwise_avx2.cpp)
list(APPEND SD35_AVX512_SOURCES src/backend/cpu/elementwise_avx512.cpp)
