# MMDiT-X against the tiny-a goldens (label model).
sd35_add_test(test_mmdit LABEL model SOURCES tests/models/test_mmdit.cpp)
