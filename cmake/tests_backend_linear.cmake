# Conformance tests of gemm / attention / conv2d (CPU backend against the reference).
sd35_add_test(test_backend_linear LABEL backend SOURCES tests/backend/test_linear.cpp
              tests/backend/test_ops_text.cpp)
