# Tests of src/text (tokenizers, prompt weights; label unit).
sd35_add_test(test_tokenizers LABEL unit SOURCES tests/unit/test_tokenizers.cpp)
