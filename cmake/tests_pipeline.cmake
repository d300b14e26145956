# Text conditioning (tokenizers + CLIP-L/G + T5 + SD3 assembly) against the tiny-a goldens.
sd35_add_test(test_conditioning LABEL model SOURCES tests/models/test_conditioning.cpp)
