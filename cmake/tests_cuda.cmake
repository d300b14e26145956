# CUDA backend tests (label "cuda"). Included at the end of the top-level CMakeLists.txt (a
# deferred call from cmake/cuda.cmake), once sd35_add_test exists.
# Runs everywhere: make_cuda_backend must fail cleanly without a device or without CUDA.
sd35_add_test(test_cuda_availability LABEL cuda SOURCES tests/cuda/test_cuda_availability.cpp)
if(SD35_CUDA_ENABLED)
  # Every op against the reference backend, as ONE ctest named cuda_backend_conformance.
  # Its main() exits with 77 (reported by ctest as skipped) when no GPU is present.
  add_executable(cuda_backend_conformance
    tests/cuda/test_cuda_main.cpp
    tests/cuda/test_cuda_backend.cpp
    tests/cuda/test_cuda_backend_linear.cpp
    tests/cuda/test_cuda_cudnn.cpp
  )
  target_link_libraries(cuda_backend_conformance PRIVATE sd35_engine GTest::gtest)
  add_test(NAME cuda_backend_conformance COMMAND cuda_backend_conformance)
  set_tests_properties(cuda_backend_conformance PROPERTIES LABELS cuda SKIP_RETURN_CODE 77
                                                           TIMEOUT 600)
  # The run-time cuDNN loader (part of the CUDA backend): needs no GPU, runs in CI.
  sd35_add_test(test_cudnn_loader LABEL cuda SOURCES tests/cuda/test_cudnn_loader.cpp)
  # Host-side GEMM dispatch conditions: no device needed.
  sd35_add_test(test_cuda_gemm_dispatch LABEL cuda SOURCES tests/cuda/test_cuda_gemm_dispatch.cpp)
  # The small-M GEMM kernel's device code run on the CPU (std::threads): no device needed.
  sd35_add_test(test_cuda_smallm_emulated LABEL cuda
                SOURCES tests/cuda/test_cuda_smallm_emulated.cpp)
  target_compile_options(test_cuda_smallm_emulated PRIVATE -Wno-unknown-pragmas)  # #pragma unroll
  # The flash attention kernel's device code run on the CPU (every FlashConfig): no device needed.
  sd35_add_test(test_cuda_flash_emulated LABEL cuda SOURCES tests/cuda/test_cuda_flash_emulated.cpp)
  target_compile_options(test_cuda_flash_emulated PRIVATE -Wno-unknown-pragmas -Wno-attributes)
  # The norm, fused LayerNorm + modulate and skinny GEMM kernels run on the CPU.
  sd35_add_test(test_cuda_kernels_emulated LABEL cuda
                SOURCES tests/cuda/test_cuda_kernels_emulated.cpp)
  target_compile_options(test_cuda_kernels_emulated PRIVATE -Wno-unknown-pragmas -Wno-attributes
                                                            -Wno-unused-function)
endif()
# The attention kernels' own test (the attention engineer's file), when present; it skips
# each case without a device.
if(SD35_CUDA_ENABLED AND EXISTS ${CMAKE_SOURCE_DIR}/tests/cuda/test_cuda_attention.cpp)
  sd35_add_test(test_cuda_attention LABEL cuda SOURCES tests/cuda/test_cuda_attention.cpp)
endif()
