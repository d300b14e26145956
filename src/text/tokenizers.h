// Tokenizers of SD3's three text encoders, exactly as ComfyUI runs them (SPEC-model.md §4.4,
// §4.5; fixtures tokenizers/README.md): the CLIP byte-level BPE (transformers 4 slow
// CLIPTokenizer without ftfy), the T5 SentencePiece unigram of tokenizer.json, ComfyUI's prompt
// weight syntax, and the SD3 packing into 77-token CLIP chunks and one T5 sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sd35/status.h"

namespace sd35 {

class ClipTokenizer {
 public:
  static constexpr int32_t kStart = 49406;
  static constexpr int32_t kEnd = 49407;
  // vocab.json and merges.txt of the CLIP tokenizer (same files for CLIP-L and CLIP-G).
  static Result<std::unique_ptr<ClipTokenizer>> load(const std::string& vocab_json,
                                                     const std::string& merges_txt);
  ~ClipTokenizer();
  // Token ids of `text` without start/end tokens (normalisation, regex split, BPE).
  std::vector<int32_t> encode(std::string_view text) const;

 private:
  struct Impl;
  explicit ClipTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class T5Tokenizer {
 public:
  static constexpr int32_t kPad = 0;
  static constexpr int32_t kEnd = 1;
  static constexpr int32_t kUnk = 2;
  // The Hugging Face tokenizer.json of T5 v1.1 (normaliser with its precompiled charsmap,
  // Metaspace pre-tokeniser, Unigram model).
  static Result<std::unique_ptr<T5Tokenizer>> load(const std::string& tokenizer_json);
  ~T5Tokenizer();
  // Token ids of `text` without the trailing </s>.
  std::vector<int32_t> encode(std::string_view text) const;

 private:
  struct Impl;
  explicit T5Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ComfyUI prompt weighting (comfy/sd1_clip.py token_weights / parse_parentheses /
// escape_important): "(a:1.3)", nested "((a))" = 1.21, "\(" literal.
struct WeightedSegment {
  std::string text;
  float weight = 1.0f;
};
std::vector<WeightedSegment> parse_prompt_weights(std::string_view prompt);

namespace detail {
// The parser's segments with Python's double weights (nested "((a))" = 1.1*1.1 =
// 1.2100000000000002); parse_prompt_weights rounds them to float.
std::vector<std::pair<std::string, double>> parse_prompt_weights_exact(std::string_view prompt);
// Python float(str) as token_weights uses it for "(text:w)"; nullopt where Python raises.
std::optional<double> parse_python_float(std::string_view s);
}  // namespace detail

// One encoder's token sequence(s): CLIP gives chunks of 77; T5 one sequence of max(77, n+1).
struct TokenChunks {
  std::vector<std::vector<int32_t>> ids;    // [chunks][length]
  std::vector<std::vector<float>> weights;  // same shape; 1.0 where unweighted
  bool has_weights() const;                 // any weight != 1
};

struct SD3Tokens {
  TokenChunks clip_l;  // pad 49407
  TokenChunks clip_g;  // pad 0
  TokenChunks t5xxl;   // one chunk, </s> then pad 0 up to 77
};

// The data files the tokenizers read; from the model folder when present, else the copy
// the program ships (see tokenizer_data_dir()).
struct TokenizerFiles {
  std::string clip_vocab_json;
  std::string clip_merges_txt;
  std::string t5_tokenizer_json;
};
// Finds the shipped tokenizer data: $SD35_DATA_DIR/tokenizers, <exe>/../share/sd35/tokenizers,
// the source tree's data/tokenizers.
Result<TokenizerFiles> default_tokenizer_files();
// The tokenizer files that ship with the models, else the default ones: next to each model
// file and one folder up (a diffusers repository's tokenizer/ for CLIP and tokenizer_3/ for
// T5, or a tokenizers/{clip,t5}/ folder), CLIP and T5 looked up independently.
Result<TokenizerFiles> tokenizer_files_near(const std::vector<std::string>& model_files);

class SD3Tokenizer {
 public:
  static Result<std::unique_ptr<SD3Tokenizer>> load(const TokenizerFiles& files);
  ~SD3Tokenizer();
  // ComfyUI SD3Tokenizer.tokenize_with_weights: weights parsed, each weighted segment
  // tokenized as a whole, packed into chunks.
  SD3Tokens tokenize(std::string_view prompt) const;
  const ClipTokenizer& clip() const;
  const T5Tokenizer& t5() const;

 private:
  SD3Tokenizer(std::unique_ptr<ClipTokenizer> clip, std::unique_ptr<T5Tokenizer> t5);
  std::unique_ptr<ClipTokenizer> clip_;
  std::unique_ptr<T5Tokenizer> t5_;
};

}  // namespace sd35
