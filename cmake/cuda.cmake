# The CUDA backend (src/backend/cuda). SD35_CUDA=AUTO builds it when a CUDA compiler is found,
# ON requires one, OFF never looks. Without it, cuda_unavailable.cpp provides the functions of
# cuda_backend.h, returning a clear "no CUDA support" status.
#
# Why the CUDA sources live in their own object library (sd35_cuda_objs) rather than in
# SD35_ENGINE_SOURCES: they need the CUDA include dirs, nvcc's C++20 flag and the CUDA
# libraries, and the top-level add_compile_options() are GCC flags meant for C++ files (kept
# for the C++ files here; .cu files get the host warnings through -Xcompiler instead). Its
# objects are linked into sd35_engine. The engine target is created after the fragments run,
# so that wiring (objects, CUDA libraries, SD35_HAVE_CUDA, the tests) is deferred to the end
# of the top-level CMakeLists.txt.
set(SD35_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO, ON or OFF")
set_property(CACHE SD35_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${SD35_CUDA}" _sd35_cuda_mode)
if(NOT _sd35_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "SD35_CUDA must be AUTO, ON or OFF, got '${SD35_CUDA}'")
endif()

set(SD35_CUDA_ENABLED OFF)
set(_sd35_cuda_reason "SD35_CUDA=OFF")
if(NOT _sd35_cuda_mode STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
  endif()
  include(CheckLanguage)
  check_language(CUDA)  # skipped by CMake when CMAKE_CUDA_COMPILER is already set
  if(CMAKE_CUDA_COMPILER AND NOT IS_ABSOLUTE "${CMAKE_CUDA_COMPILER}")
    find_program(_sd35_nvcc_path "${CMAKE_CUDA_COMPILER}")
    set(_sd35_nvcc_ok "${_sd35_nvcc_path}")
  elseif(CMAKE_CUDA_COMPILER AND EXISTS "${CMAKE_CUDA_COMPILER}")
    set(_sd35_nvcc_ok ON)
  else()
    set(_sd35_nvcc_ok OFF)
  endif()
  if(_sd35_nvcc_ok)
    set(SD35_CUDA_ENABLED ON)
  else()
    set(_sd35_cuda_reason "no CUDA compiler found")
    if(CMAKE_CUDA_COMPILER)
      set(_sd35_cuda_reason "CMAKE_CUDA_COMPILER '${CMAKE_CUDA_COMPILER}' does not exist")
    endif()
    if(_sd35_cuda_mode STREQUAL "ON")
      message(FATAL_ERROR "SD35_CUDA=ON but ${_sd35_cuda_reason}: install the CUDA "
                          "toolkit, set CMAKE_CUDA_COMPILER (or CUDACXX) to nvcc, or configure "
                          "with -DSD35_CUDA=OFF")
    endif()
  endif()
endif()

if(NOT SD35_CUDA_ENABLED)
  list(APPEND SD35_ENGINE_SOURCES src/backend/cuda/cuda_unavailable.cpp)
  message(STATUS "sd35: CUDA backend OFF (${_sd35_cuda_reason})")
  # The "no CUDA" behaviour is tested too; sd35_add_test exists only at the end of the
  # top-level CMakeLists.txt.
  function(_sd35_cuda_wire_tests)
    if(SD35_TESTS)
      include(${CMAKE_SOURCE_DIR}/cmake/tests_cuda.cmake)
    endif()
  endfunction()
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _sd35_cuda_wire_tests)
  return()
endif()

# Default architectures: Ampere, Ada, Hopper SASS plus Hopper PTX for newer GPUs. Only those
# the compiler lists are kept; a user-given CMAKE_CUDA_ARCHITECTURES wins.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --list-gpu-arch
                  OUTPUT_VARIABLE _sd35_nvcc_archs ERROR_QUIET RESULT_VARIABLE _sd35_nvcc_rc)
  set(_sd35_archs)
  foreach(_a 80 86 89 90)
    if(NOT _sd35_nvcc_rc EQUAL 0 OR _sd35_nvcc_archs MATCHES "compute_${_a}")
      list(APPEND _sd35_archs ${_a}-real)
    endif()
  endforeach()
  list(APPEND _sd35_archs 90-virtual)
  set(CMAKE_CUDA_ARCHITECTURES "${_sd35_archs}" CACHE STRING "CUDA architectures")
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

set(SD35_CUDA_SOURCES
  src/backend/cuda/cuda_device.cpp
  src/backend/cuda/cuda_backend.cpp
  src/backend/cuda/cuda_backend_ops.cpp
  src/backend/cuda/cuda_gemm.cpp
  src/backend/cuda/attention_gemm.cpp
  src/backend/cuda/cuda_conv.cpp
  src/backend/cuda/cudnn_loader.cpp
  src/backend/cuda/cudnn_conv.cpp
  src/backend/cuda/cuda_scratch.cpp
  src/backend/cuda/cuda_layout.cpp
  src/backend/cuda/cuda_lt_matmul.cpp
  src/backend/cuda/cuda_profiler.cpp
  src/backend/cuda/cuda_elementwise.cu
  src/backend/cuda/cuda_norm.cu
  src/backend/cuda/cuda_norm_modulate.cu
  src/backend/cuda/cuda_linear_kernels.cu
  src/backend/cuda/cuda_smallm_gemm.cu
)
# The attention kernels (another engineer's files; see src/backend/cuda/attention.h).
list(APPEND SD35_CUDA_SOURCES
  src/backend/cuda/attention.cu
  src/backend/cuda/attention_flash.cu
  src/backend/cuda/attention_generic.cu
)

add_library(sd35_cuda_objs OBJECT ${SD35_CUDA_SOURCES})
target_include_directories(sd35_cuda_objs PRIVATE ${CMAKE_SOURCE_DIR}/include
                                                  ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(sd35_cuda_objs PUBLIC CUDA::cudart_static CUDA::cublasLt)
# The kernels include the engine's C++20 headers (std::span), and CMake derives the CUDA
# dialect of these targets from the project's C++20. CMake before 3.26 does not know nvcc's
# C++20 flag; nvcc >= 12 accepts -std=c++20, so teach it.
if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND
   CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set_target_properties(sd35_cuda_objs PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON
                                                CUDA_EXTENSIONS OFF)
# Restrict the directory-wide GCC options to C++ sources; give nvcc the host warnings.
get_target_property(_sd35_dir_opts sd35_cuda_objs COMPILE_OPTIONS)
set(_sd35_cxx_opts)
if(_sd35_dir_opts)
  foreach(_o IN LISTS _sd35_dir_opts)
    list(APPEND _sd35_cxx_opts "$<$<COMPILE_LANGUAGE:CXX>:${_o}>")
  endforeach()
endif()
set_property(TARGET sd35_cuda_objs PROPERTY COMPILE_OPTIONS ${_sd35_cxx_opts})
target_compile_options(sd35_cuda_objs PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>)
target_compile_definitions(sd35_cuda_objs PRIVATE SD35_HAVE_CUDA=1)

message(STATUS "sd35: CUDA backend ON (archs ${CMAKE_CUDA_ARCHITECTURES})")

function(_sd35_cuda_wire_engine)
  target_sources(sd35_engine PRIVATE $<TARGET_OBJECTS:sd35_cuda_objs>)
  # cuDNN is dlopen()ed at run time (cudnn_loader.cpp), never linked: only libdl.
  target_link_libraries(sd35_engine PUBLIC CUDA::cudart_static CUDA::cublasLt ${CMAKE_DL_LIBS})
  target_compile_definitions(sd35_engine PUBLIC SD35_HAVE_CUDA=1)
  if(SD35_TESTS)
    include(${CMAKE_SOURCE_DIR}/cmake/tests_cuda.cmake)
  endif()
endfunction()
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _sd35_cuda_wire_engine)
