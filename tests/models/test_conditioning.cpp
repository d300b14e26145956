// SD3 text conditioning (src/pipeline/conditioning.h) against the tiny-a goldens_cond
// (ComfyUI SD3ClipModel.encode_token_weights in f32), plus what the goldens cannot show:
// prompt weighting against the formula, multi-chunk prompts, absent encoders, the prompt
// cache and the error paths. Cases are discovered from manifest.json, never assumed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../backend/backend_test_util.h"
#include "io/safetensors.h"
#include "pipeline/conditioning.h"
#include "weights/model_configs.h"
#include "weights/weight_index.h"

namespace sd35 {
namespace {

namespace fs = std::filesystem;
using ::sd35::testing::all_close;
using ::sd35::testing::to_vector;

const fs::path kTinyA = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";
constexpr const char* kGoldenFile = "goldens_cond.safetensors";

// fixtures/README.md "Recommended tolerances": conditioning within abs 1e-4 + rel 1e-4 of the
// f32 goldens (their fp32-vs-fp64 floor is ~2.5e-7 relative).
constexpr double kAtol = 1e-4, kRtol = 1e-4;
// Our own results compared with each other (same kernels, possibly another batch size, which
// may change the GEMM blocking and so the summation order): a few f32 ulps of O(1) values.
constexpr double kSelfAtol = 2e-5, kSelfRtol = 2e-5;

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = to_vector(a), y = to_vector(b);
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    m = std::max(m, double(std::fabs(x[i] - y[i])));
  return m;
}

bool all_zero(const Tensor& t) {
  for (float v : to_vector(t))
    if (v != 0.0f) return false;
  return true;
}

// The prompt of a token golden, from its manifest description ("... ids for '<prompt>' ...").
std::optional<std::string> prompt_of(const std::string& desc) {
  const size_t at = desc.find("ids for '");
  if (at == std::string::npos) return std::nullopt;
  const size_t end = desc.find('\'', at + 9);
  if (end == std::string::npos) return std::nullopt;
  std::string p = desc.substr(at + 9, end - at - 9);
  if (p.find('\\') != std::string::npos) return std::nullopt;  // escapes: not needed here
  return p;
}

struct GoldenCase {
  std::string name;                       // "prompt0"
  std::optional<std::string> prompt;      // from the manifest
  std::map<std::string, Tensor> tensors;  // field -> golden
};

TokenChunks chunks_of(const Tensor& t) {
  TokenChunks c;
  const auto v = to_vector(t);
  for (int64_t r = 0; r < t.size(0); ++r) {
    c.ids.emplace_back();
    for (int64_t j = 0; j < t.size(1); ++j)
      c.ids.back().push_back(int32_t(v[size_t(r * t.size(1) + j)]));
    c.weights.emplace_back(size_t(t.size(1)), 1.0f);
  }
  return c;
}

class ConditioningTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto files = default_tokenizer_files();
    ASSERT_TRUE(files.ok()) << files.status().to_string();
    auto all = WeightIndex::open({{(kTinyA / "clip_l.safetensors").string(), {}},
                                  {(kTinyA / "clip_g.safetensors").string(), {}},
                                  {(kTinyA / "t5xxl.safetensors").string(), {}},
                                  {(kTinyA / "model.safetensors").string(), {}}});
    ASSERT_TRUE(all.ok()) << all.status().to_string();
    index_ = std::move(*all).release();
    auto mm = derive_mmdit_config(*index_);
    ASSERT_TRUE(mm.ok()) << mm.status().to_string();
    context_dim_ = mm->context_dim;
    pooled_dim_ = mm->adm_in_channels;
    auto no_t5 = WeightIndex::open({{(kTinyA / "clip_l.safetensors").string(), {}},
                                    {(kTinyA / "clip_g.safetensors").string(), {}}});
    ASSERT_TRUE(no_t5.ok()) << no_t5.status().to_string();
    index_no_t5_ = std::move(*no_t5).release();
    ASSERT_FALSE(index_no_t5_->has(Component::kT5XXL));

    auto te = TextEncoders::load(*index_);
    ASSERT_TRUE(te.ok()) << te.status().to_string();
    encoders_ = std::move(*te).release();
    auto te2 = TextEncoders::load(*index_no_t5_);
    ASSERT_TRUE(te2.ok()) << te2.status().to_string();
    encoders_no_t5_ = std::move(*te2).release();
    ASSERT_NE(encoders_->t5(), nullptr);
    ASSERT_EQ(encoders_no_t5_->t5(), nullptr);

    // Cases from the manifest.
    std::ifstream in(kTinyA / "manifest.json");
    auto manifest = nlohmann::json::parse(in);
    auto golden = SafetensorsFile::open((kTinyA / kGoldenFile).string());
    ASSERT_TRUE(golden.ok()) << golden.status().to_string();
    golden_ = new std::shared_ptr<const SafetensorsFile>(*golden);
    cases_ = new std::vector<GoldenCase>();
    for (const auto& [name, e] : manifest["files"][kGoldenFile].items()) {
      const size_t dot = name.find('.');
      ASSERT_NE(dot, std::string::npos) << name;
      const std::string c = name.substr(0, dot), field = name.substr(dot + 1);
      auto it = std::find_if(cases_->begin(), cases_->end(),
                             [&](const GoldenCase& g) { return g.name == c; });
      if (it == cases_->end()) it = cases_->insert(cases_->end(), GoldenCase{c, {}, {}});
      auto t = (*golden_)->tensor(name);
      ASSERT_TRUE(t.ok()) << t.status().to_string();
      it->tensors[field] = *t;
      if (field == "tokens_l") it->prompt = prompt_of(e.value("desc", ""));
    }
    ASSERT_FALSE(cases_->empty());
  }

  static void TearDownTestSuite() {
    delete encoders_;
    delete encoders_no_t5_;
    delete index_;
    delete index_no_t5_;
    delete cases_;
    delete golden_;
  }

  EncodeOptions options(bool t5 = true) const {
    EncodeOptions o;
    o.use_t5 = t5;
    o.context_dim = t5 ? 0 : context_dim_;
    o.pooled_dim = pooled_dim_;
    return o;
  }

  Conditioning encode(const std::string& prompt, const EncodeOptions& o,
                      const TextEncoders* te = nullptr) {
    auto c = encode_prompt(*backend_, arena_, te ? *te : *encoders_, prompt, o);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? *c : Conditioning{};
  }
  Conditioning encode(const SD3Tokens& tokens, const EncodeOptions& o) {
    auto c = encode_tokens(*backend_, arena_, *encoders_, tokens, o);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? *c : Conditioning{};
  }

  static inline WeightIndex* index_ = nullptr;
  static inline WeightIndex* index_no_t5_ = nullptr;
  static inline TextEncoders* encoders_ = nullptr;
  static inline TextEncoders* encoders_no_t5_ = nullptr;
  static inline std::vector<GoldenCase>* cases_ = nullptr;
  static inline std::shared_ptr<const SafetensorsFile>* golden_ = nullptr;
  static inline int context_dim_ = 0, pooled_dim_ = 0;
  std::unique_ptr<Backend> backend_ = make_cpu_backend();
  Arena arena_;
};

TEST_F(ConditioningTest, TokensMatchGoldens) {
  int checked = 0;
  for (const GoldenCase& c : *cases_) {
    if (!c.prompt) continue;
    SCOPED_TRACE(c.name + " '" + *c.prompt + "'");
    const SD3Tokens t = encoders_->tokenizer().tokenize(*c.prompt);
    const std::pair<const char*, const TokenChunks*> fields[] = {
        {"tokens_l", &t.clip_l}, {"tokens_g", &t.clip_g}, {"tokens_t5xxl", &t.t5xxl}};
    for (const auto& [f, ours] : fields) {
      const TokenChunks golden = chunks_of(c.tensors.at(f));
      EXPECT_EQ(ours->ids, golden.ids) << f;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << "no case names its prompt in the manifest";
}

// Every <case>.{with_t5,no_t5}.{context,pooled}: from the prompt text when the manifest names
// it (tokenizer included), and from the golden token ids (encoders and assembly alone).
TEST_F(ConditioningTest, MatchesGoldens) {
  int checked = 0;
  for (const GoldenCase& c : *cases_) {
    SD3Tokens golden_tokens;
    golden_tokens.clip_l = chunks_of(c.tensors.at("tokens_l"));
    golden_tokens.clip_g = chunks_of(c.tensors.at("tokens_g"));
    golden_tokens.t5xxl = chunks_of(c.tensors.at("tokens_t5xxl"));
    for (const bool t5 : {true, false}) {
      const std::string v = t5 ? "with_t5" : "no_t5";
      if (!c.tensors.count(v + ".context")) continue;
      SCOPED_TRACE(c.name + "." + v);
      const Tensor& g_ctx = c.tensors.at(v + ".context");
      const Tensor& g_pooled = c.tensors.at(v + ".pooled");
      // no_t5 = ComfyUI with only the CLIPs loaded: an index without the T5 file.
      const TextEncoders* te = t5 ? encoders_ : encoders_no_t5_;
      EncodeOptions o = options(t5);
      auto from_tokens = encode_tokens(*backend_, arena_, *te, golden_tokens, o);
      ASSERT_TRUE(from_tokens.ok()) << from_tokens.status().to_string();
      EXPECT_TRUE(all_close(from_tokens->context, g_ctx, kAtol, kRtol));
      EXPECT_TRUE(all_close(from_tokens->pooled, g_pooled, kAtol, kRtol));
      std::printf("[ conditioning ] %s.%s from ids: context max_abs %.3g, pooled max_abs %.3g\n",
                  c.name.c_str(), v.c_str(), max_abs_diff(from_tokens->context, g_ctx),
                  max_abs_diff(from_tokens->pooled, g_pooled));
      if (c.prompt) {
        const Conditioning p = encode(*c.prompt, o, te);
        EXPECT_TRUE(all_close(p.context, g_ctx, kAtol, kRtol));
        EXPECT_TRUE(all_close(p.pooled, g_pooled, kAtol, kRtol));
        std::printf("[ conditioning ] %s.%s from '%s': context max_abs %.3g, pooled max_abs %.3g\n",
                    c.name.c_str(), v.c_str(), c.prompt->c_str(), max_abs_diff(p.context, g_ctx),
                    max_abs_diff(p.pooled, g_pooled));
      }
      // The same result from the full encoder set with T5 switched off per request.
      if (!t5) {
        const Conditioning off = encode(golden_tokens, o);
        EXPECT_TRUE(all_close(off.context, g_ctx, kAtol, kRtol));
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

// The reference backend (plain loops) gives the same conditioning: nothing backend-specific
// leaks into the assembly.
TEST_F(ConditioningTest, ReferenceBackendAgrees) {
  auto ref = make_reference_backend();
  const Conditioning fast = encode("a red (apple:1.3) on a table", options());
  auto slow = encode_prompt(*ref, arena_, *encoders_, "a red (apple:1.3) on a table", options());
  ASSERT_TRUE(slow.ok()) << slow.status().to_string();
  EXPECT_TRUE(all_close(fast.context, slow->context, kAtol, kRtol));
  EXPECT_TRUE(all_close(fast.pooled, slow->pooled, kAtol, kRtol));
}

// Prompt weights change only the weighted tokens, by z = (z - z_empty)·w + z_empty computed
// per encoder from two plain encodes (the prompt's ids unweighted, and the empty sequence).
TEST_F(ConditioningTest, WeightsFollowTheFormula) {
  const std::string prompt = "a photo of a (cat:1.5) on a (red:0.7) sofa";
  const SD3Tokens weighted = encoders_->tokenizer().tokenize(prompt);
  ASSERT_TRUE(weighted.clip_l.has_weights());
  ASSERT_TRUE(weighted.t5xxl.has_weights());
  SD3Tokens plain = weighted, empty = weighted;
  for (TokenChunks* c : {&plain.clip_l, &plain.clip_g, &plain.t5xxl})
    for (auto& w : c->weights) std::fill(w.begin(), w.end(), 1.0f);
  // gen_empty_tokens of each encoder, same lengths.
  auto fill_empty = [](TokenChunks& c, std::optional<int32_t> start, int32_t end, int32_t pad) {
    for (auto& ids : c.ids) {
      size_t i = 0;
      if (start) ids[i++] = *start;
      ids[i++] = end;
      for (; i < ids.size(); ++i) ids[i] = pad;
    }
    for (auto& w : c.weights) std::fill(w.begin(), w.end(), 1.0f);
  };
  fill_empty(empty.clip_l, 49406, 49407, 49407);
  fill_empty(empty.clip_g, 49406, 49407, 0);
  fill_empty(empty.t5xxl, std::nullopt, 1, 0);

  const EncodeOptions o = options();
  EncodeStats stats;
  EncodeOptions ow = o;
  ow.stats = &stats;
  const Conditioning w = encode(weighted, ow);
  EXPECT_EQ(stats.encoder_calls, 3);  // one batch per encoder, the empty row included
  const Conditioning a = encode(plain, o);
  const Conditioning e = encode(empty, o);
  ASSERT_EQ(w.context.shape(), a.context.shape());

  // Expected context, block by block: rows [0, 77k) CLIP (L features then G), then T5.
  const int64_t wl = encoders_->clip_l()->config().width, wg = encoders_->clip_g()->config().width;
  const int64_t clip_rows = int64_t(weighted.clip_l.ids.size() * weighted.clip_l.ids[0].size());
  const int64_t D = w.context.size(2), rows = w.context.size(1);
  const auto av = to_vector(a.context), ev = to_vector(e.context), wv = to_vector(w.context);
  std::vector<float> expect = av;
  int changed_tokens = 0;
  auto weight_of = [](const TokenChunks& c, int64_t row) {
    const size_t len = c.ids[0].size();
    return c.weights[size_t(row) / len][size_t(row) % len];
  };
  for (int64_t r = 0; r < rows; ++r) {
    struct Block {
      int64_t col0, cols;
      float w;
    };
    std::vector<Block> blocks;
    if (r < clip_rows) {
      blocks.push_back({0, wl, weight_of(weighted.clip_l, r)});
      blocks.push_back({wl, wg, weight_of(weighted.clip_g, r)});
    } else {
      blocks.push_back({0, D, weight_of(weighted.t5xxl, r - clip_rows)});
    }
    for (const Block& b : blocks) {
      if (b.w == 1.0f) continue;
      ++changed_tokens;
      for (int64_t j = b.col0; j < b.col0 + b.cols; ++j) {
        const size_t i = size_t(r * D + j);
        expect[i] = (av[i] - ev[i]) * b.w + ev[i];
      }
    }
  }
  EXPECT_GE(changed_tokens, 4);
  EXPECT_TRUE(all_close(wv, expect, kSelfAtol, kSelfRtol));
  // Weighted positions really moved; pooled is not weighted.
  double moved = 0;
  for (size_t i = 0; i < wv.size(); ++i) moved = std::max(moved, double(std::fabs(wv[i] - av[i])));
  EXPECT_GT(moved, 1e-3);
  EXPECT_TRUE(all_close(w.pooled, a.pooled, kSelfAtol, kSelfRtol));
  // The prompt path gives the same as the tokens path.
  const Conditioning p = encode(prompt, o);
  EXPECT_TRUE(all_close(p.context, w.context, 0.0, 0.0));
}

// > 75 CLIP tokens: two chunks of 77 concatenated along tokens, then T5's own length; pooled
// from chunk 0; chunk 0's rows equal an encode of chunk 0 alone.
TEST_F(ConditioningTest, LongPromptGivesTwoClipChunks) {
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "red cat, ";
  const SD3Tokens t = encoders_->tokenizer().tokenize(prompt);
  ASSERT_EQ(t.clip_l.ids.size(), 2u);
  ASSERT_EQ(t.clip_g.ids.size(), 2u);
  const int64_t lt = int64_t(t.t5xxl.ids[0].size());
  EXPECT_GT(lt, 77);
  const Conditioning c = encode(prompt, options());
  EXPECT_EQ(c.context.shape(), (Shape{1, 154 + lt, encoders_->t5()->config().d_model}));
  EXPECT_EQ(c.pooled.shape(), (Shape{1, pooled_dim_}));

  SD3Tokens first = t;
  first.clip_l.ids.resize(1), first.clip_l.weights.resize(1);
  first.clip_g.ids.resize(1), first.clip_g.weights.resize(1);
  const Conditioning f = encode(first, options());
  EXPECT_TRUE(
      all_close(c.context.slice(1, 0, 77), f.context.slice(1, 0, 77), kSelfAtol, kSelfRtol));
  EXPECT_TRUE(all_close(c.pooled, f.pooled, kSelfAtol, kSelfRtol));
  EXPECT_TRUE(all_close(c.context.slice(1, 154, 154 + lt), f.context.slice(1, 77, 77 + lt),
                        kSelfAtol, kSelfRtol));
  // Without T5: 154 rows.
  const Conditioning n = encode(prompt, options(false));
  EXPECT_EQ(n.context.shape(), (Shape{1, 154, context_dim_}));
}

// CLIP-L / CLIP-G / T5 absent (per request), and nothing at all (SPEC §4.6).
TEST_F(ConditioningTest, AbsentEncoders) {
  const std::string prompt = "a photo of a cat";
  const Conditioning full = encode(prompt, options());
  const int64_t wl = encoders_->clip_l()->config().width, wg = encoders_->clip_g()->config().width;
  const int64_t pl = encoders_->clip_l()->pooled_width();
  const int64_t D = full.context.size(2), L = full.context.size(1);

  EncodeOptions no_l = options();
  no_l.use_clip_l = false;
  const Conditioning nl = encode(prompt, no_l);
  ASSERT_EQ(nl.context.shape(), full.context.shape());
  EXPECT_TRUE(all_zero(nl.context.slice(1, 0, 77).slice(2, 0, wl)));
  EXPECT_TRUE(all_close(nl.context.slice(1, 0, 77).slice(2, wl, wl + wg),
                        full.context.slice(1, 0, 77).slice(2, wl, wl + wg), kSelfAtol, kSelfRtol));
  EXPECT_TRUE(
      all_close(nl.context.slice(1, 77, L), full.context.slice(1, 77, L), kSelfAtol, kSelfRtol));
  EXPECT_TRUE(all_zero(nl.pooled.slice(1, 0, pl)));
  EXPECT_TRUE(all_close(nl.pooled.slice(1, pl, pooled_dim_), full.pooled.slice(1, pl, pooled_dim_),
                        kSelfAtol, kSelfRtol));

  EncodeOptions no_g = options();
  no_g.use_clip_g = false;
  const Conditioning ng = encode(prompt, no_g);
  ASSERT_EQ(ng.context.shape(), full.context.shape());
  EXPECT_TRUE(all_close(ng.context.slice(1, 0, 77).slice(2, 0, wl),
                        full.context.slice(1, 0, 77).slice(2, 0, wl), kSelfAtol, kSelfRtol));
  EXPECT_TRUE(all_zero(ng.context.slice(1, 0, 77).slice(2, wl, D)));
  EXPECT_TRUE(all_zero(ng.pooled.slice(1, pl, pooled_dim_)));

  EncodeOptions t5_only = options();
  t5_only.use_clip_l = t5_only.use_clip_g = false;
  const Conditioning t5 = encode(prompt, t5_only);
  EXPECT_EQ(t5.context.shape(), (Shape{1, L - 77, D}));
  EXPECT_TRUE(all_close(t5.context, full.context.slice(1, 77, L), kSelfAtol, kSelfRtol));
  EXPECT_EQ(t5.pooled.shape(), (Shape{1, pooled_dim_}));
  EXPECT_TRUE(all_zero(t5.pooled));

  EncodeOptions none = options(false);
  none.use_clip_l = none.use_clip_g = false;
  EncodeStats stats;
  none.stats = &stats;
  const Conditioning z = encode(prompt, none);
  EXPECT_EQ(z.context.shape(), (Shape{1, 77, context_dim_}));
  EXPECT_EQ(z.pooled.shape(), (Shape{1, pooled_dim_}));
  EXPECT_TRUE(all_zero(z.context));
  EXPECT_TRUE(all_zero(z.pooled));
  EXPECT_EQ(stats.encoder_calls, 0);

  // Defaults without MMDiT widths: the references' literals (4096 context, 768 + 1280 pooled).
  EncodeOptions lit;
  lit.use_clip_l = lit.use_clip_g = lit.use_t5 = false;
  const Conditioning zl = encode(prompt, lit);
  EXPECT_EQ(zl.context.shape(), (Shape{1, 77, 4096}));
  EXPECT_EQ(zl.pooled.shape(), (Shape{1, 2048}));
}

TEST_F(ConditioningTest, ZeroOut) {
  const Conditioning c = encode("a photo of a cat", options());
  auto z = conditioning_zero_out(c);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->context.shape(), c.context.shape());
  EXPECT_EQ(z->pooled.shape(), c.pooled.shape());
  EXPECT_TRUE(all_zero(z->context));
  EXPECT_TRUE(all_zero(z->pooled));
  EXPECT_FALSE(all_zero(c.context));
}

TEST_F(ConditioningTest, CacheReturnsIdenticalTensorsWithoutEncoding) {
  PromptCache cache(2);
  EncodeStats stats;
  EncodeOptions o = options();
  o.cache = &cache;
  o.stats = &stats;
  const Conditioning first = encode("a blurry photo", o);
  EXPECT_FALSE(stats.cache_hit);
  EXPECT_EQ(stats.encoder_calls, 3);
  const Conditioning again = encode("a blurry photo", o);
  EXPECT_TRUE(stats.cache_hit);
  EXPECT_EQ(stats.encoder_calls, 0);
  EXPECT_TRUE(all_close(again.context, first.context, 0.0, 0.0));
  EXPECT_TRUE(all_close(again.pooled, first.pooled, 0.0, 0.0));
  EXPECT_NE(again.context.data(), first.context.data());  // copies: callers cannot corrupt it
  again.context.data_as<float>()[0] += 1.0f;
  const Conditioning third = encode("a blurry photo", o);
  EXPECT_TRUE(all_close(third.context, first.context, 0.0, 0.0));
  EXPECT_EQ(cache.stats().hits, 2u);

  // Another encoder selection or instance is another key.
  EncodeOptions o2 = options(false);
  o2.cache = &cache;
  o2.stats = &stats;
  encode("a blurry photo", o2);
  EXPECT_FALSE(stats.cache_hit);
  encode("a blurry photo", o2, encoders_no_t5_);
  EXPECT_FALSE(stats.cache_hit);
  // LRU bound (2 entries): the first key was evicted by the two above.
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_GE(cache.stats().evictions, 1u);
  encode("a blurry photo", o);
  EXPECT_FALSE(stats.cache_hit);
  EXPECT_EQ(stats.encoder_calls, 3);
}

// Concurrent get/put on one cache from several threads (what a server's workers do).
TEST_F(ConditioningTest, CacheIsThreadSafe) {
  PromptCache cache(8);
  std::vector<Conditioning> values;
  for (int i = 0; i < 16; ++i) {
    Conditioning c;
    c.context = *Tensor::zeros({1, 3, 4}, DType::kF32);
    c.pooled = *Tensor::zeros({1, 2}, DType::kF32);
    std::fill_n(c.context.data_as<float>(), 12, float(i));
    std::fill_n(c.pooled.data_as<float>(), 2, float(i));
    values.push_back(c);
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int it = 0; it < 2000; ++it) {
        const int k = (it * 7 + t) % 6;  // 6 keys in 8 slots: mostly hits
        const std::string key = "k" + std::to_string(k);
        if (auto hit = cache.get(key)) {
          if (hit->context.data_as<float>()[11] != float(k) ||
              hit->pooled.data_as<float>()[1] != float(k))
            ++wrong;
        } else {
          cache.put(key, values[size_t(k)]);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(cache.stats().entries, 8u);
  EXPECT_GT(cache.stats().hits, 0u);
}

TEST_F(ConditioningTest, Errors) {
  SD3Tokens good = encoders_->tokenizer().tokenize("a cat");
  // T5 width contradicting the MMDiT's context_dim.
  EncodeOptions o = options();
  o.context_dim = encoders_->t5()->config().d_model + 1;
  auto r = encode_tokens(*backend_, arena_, *encoders_, good, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  // pooled_dim contradicting the CLIPs.
  o = options();
  o.pooled_dim = pooled_dim_ + 1;
  r = encode_tokens(*backend_, arena_, *encoders_, good, o);
  EXPECT_FALSE(r.ok());
  // A pad width narrower than the CLIP features.
  o = options(false);
  o.context_dim = 8;
  r = encode_tokens(*backend_, arena_, *encoders_, good, o);
  EXPECT_FALSE(r.ok());
  // Ragged chunks, weights of the wrong length, an id outside the vocabulary.
  SD3Tokens bad = good;
  bad.clip_l.ids.push_back(std::vector<int32_t>(10, 320));
  bad.clip_l.weights.push_back(std::vector<float>(10, 1.0f));
  r = encode_tokens(*backend_, arena_, *encoders_, bad, options());
  EXPECT_FALSE(r.ok());
  bad = good;
  bad.t5xxl.weights[0].pop_back();
  bad.t5xxl.weights[0][0] = 2.0f;
  r = encode_tokens(*backend_, arena_, *encoders_, bad, options());
  EXPECT_FALSE(r.ok());
  bad = good;
  bad.clip_g.ids[0][3] = 1 << 20;
  r = encode_tokens(*backend_, arena_, *encoders_, bad, options());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("CLIP-G"), std::string::npos) << r.status().message();
  // Negative widths.
  o = options();
  o.pooled_dim = -1;
  EXPECT_FALSE(encode_tokens(*backend_, arena_, *encoders_, good, o).ok());
  // Tokenizer data that does not exist.
  TextEncodersOptions to;
  to.tokenizer_files = TokenizerFiles{"/nonexistent/vocab.json", "/nonexistent/merges.txt",
                                      "/nonexistent/tokenizer.json"};
  EXPECT_FALSE(TextEncoders::load(*index_, to).ok());
  // The arena is released after errors as after successes.
  EXPECT_EQ(arena_.bytes_in_use(), 0u);
}

// With no chunk for one CLIP (CLIPTextEncodeSD3 with an empty text and empty_padding "none"),
// ComfyUI encodes gen_empty_tokens(length 0) = [start, end]: a 2-token sequence, which then
// cuts the other CLIP to 2 tokens as well.
TEST_F(ConditioningTest, EmptyChunkListQuirk) {
  SD3Tokens t = encoders_->tokenizer().tokenize("a cat");
  t.clip_l.ids.clear();
  t.clip_l.weights.clear();
  const Conditioning c = encode(t, options());
  EXPECT_EQ(c.context.size(1), 2 + int64_t(t.t5xxl.ids[0].size()));
}

}  // namespace
}  // namespace sd35
