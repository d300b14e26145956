# Conformance tests of the elementwise / normalisation / layout ops (label "backend").
sd35_add_test(test_backend_ops LABEL backend SOURCES
  tests/backend/test_ops.cpp
  tests/backend/test_ops_layout.cpp
  tests/backend/test_ops_ref.cpp
  tests/backend/test_ops_arith.cpp
  tests/backend/test_ops_norm_modulate.cpp
)
