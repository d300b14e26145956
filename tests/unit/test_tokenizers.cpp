// Tokenizers against tokenizer_goldens.json (every case, `comfyui` variant, exact), the prompt
// weight parser, and error handling of the data files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "text/tokenizers.h"

namespace sd35 {
namespace {

namespace fs = std::filesystem;

const SD3Tokenizer& tokenizer() {
  static const std::unique_ptr<SD3Tokenizer> tok = [] {
    auto files = default_tokenizer_files();
    EXPECT_TRUE(files.ok()) << files.status().to_string();
    auto t = SD3Tokenizer::load(*files);
    EXPECT_TRUE(t.ok()) << t.status().to_string();
    return t.ok() ? std::move(t).value() : nullptr;
  }();
  return *tok;
}

const nlohmann::json& goldens() {
  static const nlohmann::json j = [] {
    std::ifstream in(std::string(SD35_TEST_DATA_DIR) + "/tiny-a/tokenizer_goldens.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

std::vector<float> to_float(const nlohmann::json& a) {
  std::vector<float> out;
  for (const auto& v : a) out.push_back(static_cast<float>(v.get<double>()));
  return out;
}

void expect_encoder(const nlohmann::json& golden, const TokenChunks& ours,
                    const std::string& what) {
  const auto& ids = golden["ids"];
  ASSERT_EQ(ours.ids.size(), ids.size()) << what;
  ASSERT_EQ(ours.weights.size(), ids.size()) << what;
  bool any_weight = false;
  for (size_t c = 0; c < ids.size(); ++c) {
    EXPECT_EQ(ours.ids[c], ids[c].get<std::vector<int32_t>>()) << what << " chunk " << c;
    // Weights are stored as Python floats; ours are their float32 rounding.
    const std::vector<float> w = golden.contains("weights")
                                     ? to_float(golden["weights"][c])
                                     : std::vector<float>(ids[c].size(), 1.0f);
    EXPECT_EQ(ours.weights[c], w) << what << " weights, chunk " << c;
    for (float x : w) any_weight = any_weight || x != 1.0f;
  }
  EXPECT_EQ(ours.has_weights(), any_weight) << what;
}

class GoldenCase : public ::testing::TestWithParam<size_t> {};

TEST_P(GoldenCase, ComfyUIVariantIsExact) {
  const auto& c = goldens()["cases"][GetParam()];
  const std::string text = c["text"].get<std::string>();
  SCOPED_TRACE(c["name"].get<std::string>());
  const SD3Tokens t = tokenizer().tokenize(text);
  expect_encoder(c["comfyui"]["clip_l"], t.clip_l, "clip_l");
  expect_encoder(c["comfyui"]["clip_g"], t.clip_g, "clip_g");
  expect_encoder(c["comfyui"]["t5xxl"], t.t5xxl, "t5xxl");
}

TEST_P(GoldenCase, RawEncodingsAreExact) {
  const auto& c = goldens()["cases"][GetParam()];
  const std::string text = c["text"].get<std::string>();
  SCOPED_TRACE(c["name"].get<std::string>());
  const auto& raw = c["raw"];
  if (raw.contains("clip_slow_ids")) {
    std::vector<int32_t> ids{ClipTokenizer::kStart};
    for (int32_t id : tokenizer().clip().encode(text)) ids.push_back(id);
    ids.push_back(ClipTokenizer::kEnd);
    EXPECT_EQ(ids, raw["clip_slow_ids"].get<std::vector<int32_t>>());
  }
  if (raw.contains("t5_ids")) {
    std::vector<int32_t> ids = tokenizer().t5().encode(text);
    ids.push_back(T5Tokenizer::kEnd);
    EXPECT_EQ(ids, raw["t5_ids"].get<std::vector<int32_t>>());
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string n = goldens()["cases"][info.param]["name"].get<std::string>();
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Goldens, GoldenCase, ::testing::Range<size_t>(0, 42), case_name);

TEST(TokenizerGoldens, FileHasTheExpectedCases) { EXPECT_EQ(goldens()["cases"].size(), 42u); }

TEST(Tokenizers, SpecExamples) {
  // SPEC-model.md §4.4.
  EXPECT_EQ(tokenizer().clip().encode("a photo of a cat"),
            (std::vector<int32_t>{320, 1125, 539, 320, 2368}));
  EXPECT_EQ(tokenizer().t5().encode("a photo of a cat"),
            (std::vector<int32_t>{3, 9, 1202, 13, 3, 9, 1712}));
  const SD3Tokens empty = tokenizer().tokenize("");
  std::vector<int32_t> l(77, 49407), g(77, 0), t5(77, 0);
  l[0] = g[0] = 49406;
  g[1] = 49407;
  t5[0] = 1;
  EXPECT_EQ(empty.clip_l.ids, std::vector<std::vector<int32_t>>{l});
  EXPECT_EQ(empty.clip_g.ids, std::vector<std::vector<int32_t>>{g});
  EXPECT_EQ(empty.t5xxl.ids, std::vector<std::vector<int32_t>>{t5});
  EXPECT_FALSE(empty.clip_l.has_weights());
}

TEST(Tokenizers, LongPromptsMakeChunksAndLongT5) {
  std::string prompt;
  for (int i = 0; i < 200; ++i) prompt += "cat ";
  const SD3Tokens t = tokenizer().tokenize(prompt);
  ASSERT_EQ(t.clip_l.ids.size(), 3u);
  for (const auto& chunk : t.clip_l.ids) {
    EXPECT_EQ(chunk.size(), 77u);
    EXPECT_EQ(chunk.front(), 49406);
  }
  ASSERT_EQ(t.t5xxl.ids.size(), 1u);
  EXPECT_EQ(t.t5xxl.ids[0].size(), 201u);  // never truncated: 200 tokens + </s>
  EXPECT_EQ(t.t5xxl.ids[0].back(), 1);
}

// ---------------------------------------------------------------------------------------------
// Prompt weights (ComfyUI token_weights / parse_parentheses / escape_important)

using Segs = std::vector<std::pair<std::string, double>>;

TEST(PromptWeights, PlainTextIsOneSegment) {
  EXPECT_EQ(detail::parse_prompt_weights_exact("a cat"), (Segs{{"a cat", 1.0}}));
  EXPECT_TRUE(detail::parse_prompt_weights_exact("").empty());
}

TEST(PromptWeights, NestingMultipliesByOnePointOne) {
  EXPECT_EQ(detail::parse_prompt_weights_exact("a (b) ((c))"),
            (Segs{{"a ", 1.0}, {"b", 1.1}, {" ", 1.0}, {"c", 1.1 * 1.1}}));
  const auto segs = parse_prompt_weights("((c))");
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].weight, 1.21f);
}

TEST(PromptWeights, ExplicitWeightUsesLastColon) {
  EXPECT_EQ(detail::parse_prompt_weights_exact("(a:1.5)"), (Segs{{"a", 1.5}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("(a:b:0.5)"), (Segs{{"a:b", 0.5}}));
  // Nested: the inner explicit weight replaces, an outer paren multiplies what is inside.
  EXPECT_EQ(detail::parse_prompt_weights_exact("((a:2))"), (Segs{{"a", 2.0}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("((a):2)"), (Segs{{"a", 2.0 * 1.1}}));
}

TEST(PromptWeights, InvalidNumbersKeepTheTextAndMultiply) {
  EXPECT_EQ(detail::parse_prompt_weights_exact("(a:b)"), (Segs{{"a:b", 1.1}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("(a:)"), (Segs{{"a:", 1.1}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("(a:1.5x)"), (Segs{{"a:1.5x", 1.1}}));
  // A colon at position 0 is not a weight (rfind(":") > 0).
  EXPECT_EQ(detail::parse_prompt_weights_exact("(:1.5)"), (Segs{{":1.5", 1.1}}));
}

TEST(PromptWeights, PythonFloatSyntax) {
  using detail::parse_python_float;
  EXPECT_EQ(parse_python_float(" 1.5 "), 1.5);
  EXPECT_EQ(parse_python_float("+.5"), 0.5);
  EXPECT_EQ(parse_python_float("5."), 5.0);
  EXPECT_EQ(parse_python_float("1_0"), 10.0);
  EXPECT_EQ(parse_python_float("1e1"), 10.0);
  EXPECT_EQ(parse_python_float("-2E-1"), -0.2);
  EXPECT_EQ(parse_python_float("\xEF\xBC\x91.\xEF\xBC\x95"), 1.5);  // fullwidth digits
  EXPECT_TRUE(std::isinf(*parse_python_float("-Infinity")));
  EXPECT_TRUE(std::isnan(*parse_python_float("nan")));
  EXPECT_TRUE(std::isinf(*parse_python_float("1e400")));
  for (const char* bad :
       {"", " ", ".", "_1", "1_", "1__0", "1e", "0x10", "1.5.", "e5", "--1", "in f", "1,5"})
    EXPECT_FALSE(parse_python_float(bad).has_value()) << bad;
}

TEST(PromptWeights, EscapedParensAreLiteral) {
  EXPECT_EQ(detail::parse_prompt_weights_exact("a \\(b\\) c"), (Segs{{"a (b) c", 1.0}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("(x \\(y\\):1.2)"), (Segs{{"x (y)", 1.2}}));
}

TEST(PromptWeights, UnbalancedParens) {
  // An unclosed "(" leaves the text literal; a stray ")" makes everything after it literal.
  EXPECT_EQ(detail::parse_prompt_weights_exact("a (b"), (Segs{{"a ", 1.0}, {"(b", 1.0}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("a ) (b) c"), (Segs{{"a ) (b) c", 1.0}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("(a (b) c"), (Segs{{"(a (b) c", 1.0}}));
  EXPECT_EQ(detail::parse_prompt_weights_exact("()"), Segs{});
  EXPECT_EQ(detail::parse_prompt_weights_exact("[a]"), (Segs{{"[a]", 1.0}}));
}

TEST(PromptWeights, WeightsReachTheTokens) {
  const SD3Tokens t = tokenizer().tokenize("a (cat:1.5)");
  EXPECT_TRUE(t.clip_l.has_weights());
  EXPECT_EQ(t.clip_l.ids[0][1], 320);
  EXPECT_EQ(t.clip_l.weights[0][1], 1.0f);
  EXPECT_EQ(t.clip_l.ids[0][2], 2368);
  EXPECT_EQ(t.clip_l.weights[0][2], 1.5f);
  EXPECT_EQ(t.clip_l.weights[0][3], 1.0f);  // end token
}

// ---------------------------------------------------------------------------------------------
// Errors name the file

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sd35_tok_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& content) {
    const auto p = dir_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  fs::path dir_;
};

using TokenizerErrors = TempDir;

TEST_F(TokenizerErrors, MissingVocab) {
  const std::string merges = write("merges.txt", "#version: 0.2\na b\n");
  auto r = ClipTokenizer::load((dir_ / "nope.json").string(), merges);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("nope.json"), std::string::npos);
}

TEST_F(TokenizerErrors, MalformedVocab) {
  const std::string merges = write("merges.txt", "#version: 0.2\na b\n");
  for (const char* bad : {"{", "[1,2]", "{\"a\": \"x\", \"<|endoftext|>\": 1}", "{\"a\": 1}"}) {
    const std::string vocab = write("vocab.json", bad);
    auto r = ClipTokenizer::load(vocab, merges);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << bad;
    EXPECT_NE(r.status().message().find(vocab), std::string::npos);
  }
}

TEST_F(TokenizerErrors, MalformedMerges) {
  const std::string vocab = write("vocab.json", "{\"a</w>\": 0, \"<|endoftext|>\": 1}");
  for (const char* bad : {"#version: 0.2\na b c\n", "#version: 0.2\nab\n", "#version: 0.2\n", ""}) {
    const std::string merges = write("merges.txt", bad);
    auto r = ClipTokenizer::load(vocab, merges);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find(merges), std::string::npos);
  }
  const std::string merges = write("merges.txt", "#version: 0.2\na </w>\n");
  auto r = ClipTokenizer::load(vocab, merges);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)->encode("a"), std::vector<int32_t>{0});
  EXPECT_EQ((*r)->encode("b"), std::vector<int32_t>{1});  // unknown -> <|endoftext|>
}

TEST_F(TokenizerErrors, MissingAndMalformedT5Json) {
  auto missing = T5Tokenizer::load((dir_ / "tokenizer.json").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("tokenizer.json"), std::string::npos);
  const std::string unigram =
      R"("model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]})";
  const std::string meta = R"("pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581"})";
  for (const std::string& bad :
       {std::string("{"), std::string("[]"), "{" + meta + "}",
        "{" + meta + R"(, "model": {"type": "Unigram", "unk_id": 9, "vocab": [["a", 0.0]]}})",
        "{" + meta + R"(, "model": {"type": "Unigram", "unk_id": 0, "vocab": [["a"]]}})",
        "{" + meta + ", " + unigram +
            R"(, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "!!"}})",
        "{" + meta + ", " + unigram +
            R"(, "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AQAAAA=="}})"}) {
    const std::string path = write("tokenizer.json", bad);
    auto r = T5Tokenizer::load(path);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << bad << " " << r.status().to_string();
    EXPECT_NE(r.status().message().find(path), std::string::npos);
  }
  const std::string ok = write("tokenizer.json", "{" + meta + ", " + unigram + "}");
  auto r = T5Tokenizer::load(ok);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // "▁" is not a piece: "▁a" is unk + "a"; "b" is unknown too and fuses with the "▁" before it.
  EXPECT_EQ((*r)->encode("a"), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ((*r)->encode("ba"), (std::vector<int32_t>{0, 1}));
}

TEST_F(TokenizerErrors, DataDirFromEnvironment) {
  const char* old = std::getenv("SD35_DATA_DIR");
  const std::string saved = old ? old : "";
  fs::create_directories(dir_ / "tokenizers/clip");
  fs::create_directories(dir_ / "tokenizers/t5");
  write("tokenizers/clip/vocab.json", "{}");
  write("tokenizers/clip/merges.txt", "");
  write("tokenizers/t5/tokenizer.json", "{}");
  ::setenv("SD35_DATA_DIR", dir_.c_str(), 1);
  auto f = default_tokenizer_files();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->clip_vocab_json, (dir_ / "tokenizers/clip/vocab.json").string());
  // A corrupt data set fails to load with the path in the message.
  auto t = SD3Tokenizer::load(*f);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(f->clip_vocab_json), std::string::npos);
  if (old) {
    ::setenv("SD35_DATA_DIR", saved.c_str(), 1);
  } else {
    ::unsetenv("SD35_DATA_DIR");
  }
}

// A diffusers repository ships its tokenizers: tokenizer/ (CLIP) and tokenizer_3/ (T5) one
// folder above text_encoder*/model.safetensors. Those win over the shipped copy; a part that
// is not there falls back to the default files.
TEST_F(TokenizerErrors, FilesBesideTheModelsWin) {
  fs::create_directories(dir_ / "repo/text_encoder");
  fs::create_directories(dir_ / "repo/tokenizer");
  write("repo/tokenizer/vocab.json", "{}");
  write("repo/tokenizer/merges.txt", "");
  const std::string model = (dir_ / "repo/text_encoder/model.safetensors").string();
  auto f = tokenizer_files_near({model});
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->clip_vocab_json, (dir_ / "repo/tokenizer/vocab.json").string());
  EXPECT_EQ(f->clip_merges_txt, (dir_ / "repo/tokenizer/merges.txt").string());
  auto def = default_tokenizer_files();
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(f->t5_tokenizer_json, def->t5_tokenizer_json);  // no tokenizer_3/: the default

  fs::create_directories(dir_ / "repo/tokenizer_3");
  write("repo/tokenizer_3/tokenizer.json", "{}");
  f = tokenizer_files_near({model});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->t5_tokenizer_json, (dir_ / "repo/tokenizer_3/tokenizer.json").string());
  // Models elsewhere: the shipped copy.
  f = tokenizer_files_near({(dir_ / "elsewhere/clip_l.safetensors").string()});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->clip_vocab_json, def->clip_vocab_json);
}

}  // namespace
}  // namespace sd35
