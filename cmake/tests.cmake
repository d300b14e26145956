# Test binaries. Each area has its own fragment so that parallel work does not collide.
sd35_add_test(test_core LABEL unit SOURCES
  tests/unit/test_status.cpp
  tests/unit/test_float_convert.cpp
  tests/unit/test_tensor.cpp
  tests/unit/test_arena.cpp
  tests/unit/test_thread_pool.cpp
)
include(cmake/tests_backend.cmake OPTIONAL)
include(cmake/tests_weights.cmake OPTIONAL)
include(cmake/tests_backend_ops.cmake OPTIONAL)
include(cmake/tests_backend_linear.cmake OPTIONAL)
