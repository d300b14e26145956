# Tests of src/io, src/weights and the sd35 inspect command (label unit).
sd35_add_test(test_weights LABEL unit SOURCES
  tests/unit/test_safetensors.cpp
  tests/unit/test_weights.cpp
)
sd35_add_test(test_cli LABEL unit SOURCES tests/unit/test_cli_inspect.cpp)
# The CLI tests run the real binary.
add_dependencies(test_cli sd35)
target_compile_definitions(test_cli PRIVATE SD35_EXE="$<TARGET_FILE:sd35>")

add_test(NAME cli_inspect_tiny_a
         COMMAND sd35 inspect ${CMAKE_SOURCE_DIR}/tests/data/tiny-a)
set_tests_properties(cli_inspect_tiny_a PROPERTIES LABELS unit
                     PASS_REGULAR_EXPRESSION "depth 4, hidden 256")

# The header-parser fuzz target under the portable mutation driver: runs with any compiler,
# briefly in every test run (label fuzz). Longer runs: fuzz_safetensors_header_driver --seconds 600.
add_executable(fuzz_safetensors_header_driver tests/fuzz/fuzz_safetensors_header.cpp
                                              tests/fuzz/fuzz_driver_main.cpp)
target_link_libraries(fuzz_safetensors_header_driver PRIVATE sd35_engine)
add_test(NAME fuzz_safetensors_header_driver
         COMMAND fuzz_safetensors_header_driver --seconds 10)
set_tests_properties(fuzz_safetensors_header_driver PROPERTIES LABELS fuzz)

# libFuzzer target for the header parser: clang only, label fuzz, a short run under ctest.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  add_executable(fuzz_safetensors_header tests/fuzz/fuzz_safetensors_header.cpp)
  target_compile_options(fuzz_safetensors_header PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_safetensors_header PRIVATE -fsanitize=fuzzer,address,undefined)
  # The parser is compiled into the fuzzer itself so that it is instrumented.
  target_sources(fuzz_safetensors_header PRIVATE src/io/safetensors.cpp src/core/tensor.cpp
                                                 src/core/dtype.cpp src/core/status.cpp)
  target_include_directories(fuzz_safetensors_header PRIVATE ${CMAKE_SOURCE_DIR}/include
                                                             ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(fuzz_safetensors_header PRIVATE nlohmann_json::nlohmann_json)
  add_test(NAME fuzz_safetensors_header
           COMMAND fuzz_safetensors_header -max_total_time=20 -max_len=4096)
  set_tests_properties(fuzz_safetensors_header PROPERTIES LABELS fuzz)
endif()
