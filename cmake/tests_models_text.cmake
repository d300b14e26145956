# CLIP-L, CLIP-G and T5 against the tiny-a text goldens, plus fp8 and bad-input checks.
sd35_add_test(test_text_encoders LABEL model SOURCES tests/models/test_text_encoders.cpp)
