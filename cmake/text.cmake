# src/text: the CLIP, T5 and SD3 tokenizers (ICU for Unicode data, nlohmann-json for the files).
list(APPEND SD35_ENGINE_SOURCES
  src/text/unicode_util.cpp
  src/text/clip_tokenizer.cpp
  src/text/t5_tokenizer.cpp
  src/text/sd3_tokenizer.cpp
)
# default_tokenizer_files() falls back to the source tree's copy of the tokenizer data.
set_source_files_properties(src/text/sd3_tokenizer.cpp PROPERTIES COMPILE_DEFINITIONS
                            "SD35_SOURCE_DATA_DIR=\"${CMAKE_SOURCE_DIR}/data\"")
