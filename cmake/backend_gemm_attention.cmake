# owned by the backend_gemm_attention work; see CMakeLists.txt for the lists to append to
# gemm / attention / conv2d: oneDNN-backed CPU kernels, their AVX-512/AVX2 attention kernels,
# the reference (oracle) versions and the argument checks both share.
list(APPEND SD35_ENGINE_SOURCES
  src/backend/cpu/dnnl_util.cpp
  src/backend/cpu/gemm_checks.cpp
  src/backend/cpu/gemm.cpp
  src/backend/cpu/conv.cpp
  src/backend/cpu/attention.cpp
  src/backend/reference/ref_linear.cpp
  src/backend/cpu/text_ops.cpp
  src/backend/reference/ref_text_ops.cpp
)
list(APPEND SD35_AVX2_SOURCES src/backend/cpu/attention_avx2.cpp)
list(APPEND SD35_AVX512_SOURCES src/backend/cpu/attention_avx512.cpp)
