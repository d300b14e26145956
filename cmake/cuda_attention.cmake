# The CUDA attention kernels (src/backend/cuda/attention*.cu) and their test.
#
# Meant to be include()d from cmake/cuda.cmake once the CUDA language is enabled and before
# the CUDA object library is created. Assumptions, stated because another file drives this:
#   * SD35_CUDA_SOURCES is the list the CUDA object library is built from; the sources are
#     appended with absolute paths and de-duplicated, so a file(GLOB attention*.cu) of the
#     same files in cuda.cmake does not compile them twice;
#   * SD35_HAVE_CUDA_BUILD (or cuda.cmake's SD35_CUDA_ENABLED) is true when CUDA is built;
#   * sd35_add_test() is defined at the end of the top-level CMakeLists.txt: when it does not
#     exist yet at include time, the test is added by a deferred call instead.
# The test target links sd35_engine (which carries the CUDA runtime) and GTest::gtest_main;
# its cases are registered with ctest under the label "cuda" as CudaAttention.* and skip
# cleanly without a device (RejectsBadArguments runs everywhere).
if(NOT (SD35_HAVE_CUDA_BUILD OR SD35_CUDA_ENABLED))
  return()
endif()

list(APPEND SD35_CUDA_SOURCES
  ${CMAKE_SOURCE_DIR}/src/backend/cuda/attention.cu
  ${CMAKE_SOURCE_DIR}/src/backend/cuda/attention_flash.cu
  ${CMAKE_SOURCE_DIR}/src/backend/cuda/attention_generic.cu
)
list(REMOVE_DUPLICATES SD35_CUDA_SOURCES)

function(_sd35_cuda_attention_add_test)
  if(SD35_TESTS AND NOT TARGET test_cuda_attention)
    sd35_add_test(test_cuda_attention LABEL cuda SOURCES
                  ${CMAKE_SOURCE_DIR}/tests/cuda/test_cuda_attention.cpp)
  endif()
endfunction()
if(COMMAND sd35_add_test)
  _sd35_cuda_attention_add_test()
else()
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _sd35_cuda_attention_add_test)
endif()
