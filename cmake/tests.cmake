# Test binaries. Each area has its own fragment so that parallel work does not collide.
sd35_add_test(test_core LABEL unit SOURCES
  tests/unit/test_status.cpp
  tests/unit/test_float_convert.cpp
  tests/unit/test_tensor.cpp
  tests/unit/test_arena.cpp
  tests/unit/test_thread_pool.cpp
)
include(cmake/tests_weights.cmake OPTIONAL)
include(cmake/tests_backend_ops.cmake OPTIONAL)
include(cmake/tests_backend_linear.cmake OPTIONAL)
include(cmake/tests_models_mmdit.cmake OPTIONAL)
include(cmake/tests_models_vae.cmake OPTIONAL)
include(cmake/tests_models_text.cmake OPTIONAL)
include(cmake/tests_golden.cmake OPTIONAL)
include(cmake/tests_text.cmake OPTIONAL)
include(cmake/tests_pipeline.cmake OPTIONAL)
include(cmake/tests_sampling.cmake OPTIONAL)

# ISA-specific objects must not export weak symbols (see scripts/check_isa_objects.sh).
add_test(NAME isa_objects_have_no_weak_symbols
         COMMAND ${CMAKE_SOURCE_DIR}/scripts/check_isa_objects.sh $<TARGET_OBJECTS:sd35_engine>)
set_tests_properties(isa_objects_have_no_weak_symbols PROPERTIES LABELS unit)
include(cmake/tests_engine.cmake OPTIONAL)
include(cmake/tests_service.cmake OPTIONAL)
include(cmake/tests_server.cmake OPTIONAL)
