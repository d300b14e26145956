// CLIP-L, CLIP-G and T5 against the reference goldens of tests/data/tiny-a (Stability
// other_impls.py in f32 from the stored fp16 weights), plus what the goldens cannot show:
// backend independence, fp8 and scaled-fp8 T5 files, the pooled position without an end
// token, and input validation. Cases and tensors are discovered from the golden file by name,
// never from tiny-a's dimensions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "../backend/backend_test_util.h"
#include "io/safetensors.h"
#include "models/clip/clip.h"
#include "models/t5/t5.h"
#include "weights/weight_index.h"

namespace sd35 {
namespace {

namespace fs = std::filesystem;
using ::sd35::testing::all_close;
using ::sd35::testing::to_vector;
using Observed = std::map<std::string, Tensor>;

const fs::path kTinyA = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";

// fixtures/README.md "Recommended tolerances": CLIP / T5 hidden states and pooled outputs
// within abs 1e-4 + rel 1e-4 of the f32 goldens (their fp32-vs-fp64 floor is 2.5e-7
// relative; the slack covers other summation orders, erf/tanh/exp of another libm).
constexpr double kAtol = 1e-4, kRtol = 1e-4;

Tensor owned(const Shape& s, DType t = DType::kF32) {
  auto r = Tensor::zeros(s, t);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : Tensor();
}

// Contiguous f32 copy (observed tensors are only valid during the call).
Tensor clone(const Tensor& t) {
  Tensor out = owned(t.shape());
  const std::vector<float> v = to_vector(t);
  std::copy(v.begin(), v.end(), out.data_as<float>());
  return out;
}

Tensor to_ids(const Tensor& t) {
  Tensor ids = owned(t.shape(), DType::kI32);
  const std::vector<float> v = to_vector(t);
  for (size_t i = 0; i < v.size(); ++i) ids.data_as<int32_t>()[i] = int32_t(v[i]);
  return ids;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = to_vector(a), y = to_vector(b);
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, double(std::fabs(x[i] - y[i])));
  return m;
}

std::function<void(std::string_view, const Tensor&)> collect(Observed& o) {
  return [&o](std::string_view n, const Tensor& t) { o[std::string(n)] = clone(t); };
}

class TextEncoderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto g = SafetensorsFile::open((kTinyA / "goldens_text.safetensors").string());
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    goldens_ = new std::shared_ptr<const SafetensorsFile>(*g);
    cpu_ = make_cpu_backend().release();
    ref_ = make_reference_backend().release();
  }
  static void TearDownTestSuite() {
    delete ref_;
    delete cpu_;
    delete goldens_;
  }

  static const SafetensorsFile& goldens() { return **goldens_; }
  static Tensor golden(const std::string& name) {
    auto t = goldens().tensor(name);
    EXPECT_TRUE(t.ok()) << name << ": " << t.status().to_string();
    return t.ok() ? *t : Tensor();
  }
  // Field names of golden tensors "<prefix>.<field>" (file order), input_ids excluded.
  static std::vector<std::string> fields(const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& n : goldens().names()) {
      if (n.rfind(prefix + ".", 0) != 0) continue;
      std::string f = n.substr(prefix.size() + 1);
      if (f != "input_ids" && f.find('.') == std::string::npos) out.push_back(f);
    }
    return out;
  }
  // "t5xxl.len77", ... : every T5 sequence with input_ids.
  static std::vector<std::string> t5_cases() {
    std::vector<std::string> out;
    const std::regex re(R"((t5xxl\.[^.]+)\.input_ids)");
    for (const auto& n : goldens().names()) {
      std::smatch m;
      if (std::regex_match(n, m, re)) out.push_back(m[1]);
    }
    return out;
  }

  static std::unique_ptr<WeightIndex> open_index(const fs::path& p,
                                                 std::optional<Component> role = {}) {
    auto index = WeightIndex::open({{p.string(), role}});
    EXPECT_TRUE(index.ok()) << index.status().to_string();
    return index.ok() ? std::move(*index) : nullptr;
  }
  static std::unique_ptr<ClipTextModel> load_clip(Component role) {
    const char* file = role == Component::kClipL ? "clip_l.safetensors" : "clip_g.safetensors";
    auto index = open_index(kTinyA / file, role);
    if (!index) return nullptr;
    auto m = ClipTextModel::load(*index, role);
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    return m.ok() ? std::move(*m) : nullptr;
  }
  static std::unique_ptr<T5Encoder> load_t5(const fs::path& p) {
    auto index = open_index(p);
    if (!index) return nullptr;
    auto m = T5Encoder::load(*index);
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    return m.ok() ? std::move(*m) : nullptr;
  }

  struct ClipRun {
    Status status;
    ClipOutputs out;
    Observed obs;
  };
  static ClipRun run_clip(const ClipTextModel& m, const Tensor& ids, Backend* be = nullptr) {
    ClipRun r;
    r.out.hidden = owned(Shape{ids.size(0), ids.size(1), m.config().width});
    r.out.pooled = owned(Shape{ids.size(0), m.pooled_width()});
    Arena arena(size_t(1) << 20);
    r.status = m.encode(be ? *be : *cpu_, arena, ids, r.out, collect(r.obs));
    EXPECT_EQ(arena.bytes_in_use(), 0u) << "encode must release its scratch";
    return r;
  }
  struct T5Run {
    Status status;
    Tensor out;
    Observed obs;
  };
  static T5Run run_t5(const T5Encoder& m, const Tensor& ids, Backend* be = nullptr) {
    T5Run r;
    r.out = owned(Shape{ids.size(0), ids.size(1), m.config().d_model});
    Arena arena(size_t(1) << 20);
    r.status = m.encode(be ? *be : *cpu_, arena, ids, r.out, collect(r.obs));
    EXPECT_EQ(arena.bytes_in_use(), 0u) << "encode must release its scratch";
    return r;
  }

  // Compares every golden field of `prefix` with `obs`; returns the worst abs error.
  static double check_fields(const std::string& prefix, const Observed& obs) {
    const auto fs_ = fields(prefix);
    EXPECT_FALSE(fs_.empty()) << "no goldens for " << prefix;
    double worst = 0;
    for (const auto& f : fs_) {
      auto it = obs.find(f);
      if (it == obs.end()) {
        ADD_FAILURE() << prefix << "." << f << " was not reported by the encoder";
        continue;
      }
      const Tensor g = golden(prefix + "." + f);
      EXPECT_TRUE(all_close(it->second, g, kAtol, kRtol)) << prefix << "." << f;
      if (it->second.shape() == g.shape()) worst = std::max(worst, max_abs_diff(it->second, g));
    }
    return worst;
  }

  static std::shared_ptr<const SafetensorsFile>* goldens_;
  static Backend* cpu_;
  static Backend* ref_;
};

std::shared_ptr<const SafetensorsFile>* TextEncoderTest::goldens_ = nullptr;
Backend* TextEncoderTest::cpu_ = nullptr;
Backend* TextEncoderTest::ref_ = nullptr;

TEST_F(TextEncoderTest, ClipGoldens) {
  for (Component role : {Component::kClipL, Component::kClipG}) {
    const std::string prefix(component_name(role));
    SCOPED_TRACE(prefix);
    auto model = load_clip(role);
    ASSERT_TRUE(model);
    ClipRun r = run_clip(*model, to_ids(golden(prefix + ".input_ids")));
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    r.obs["sd3_hidden"] = r.out.hidden;
    r.obs["sd3_pooled"] = r.out.pooled;
    const double worst = check_fields(prefix, r.obs);
    std::printf("[ %s ] max |ours - golden| over all fields = %.3g\n", prefix.c_str(), worst);
  }
}

TEST_F(TextEncoderTest, ClipLPooledIsNotProjectedClipGIs) {
  auto l = load_clip(Component::kClipL);
  auto g = load_clip(Component::kClipG);
  ASSERT_TRUE(l && g);
  EXPECT_EQ(l->pooled_width(), l->config().width);
  EXPECT_TRUE(l->config().has_projection) << "tiny-a's clip_l carries an (unused) projection";
  const Tensor ids = to_ids(golden("clip_l.input_ids"));
  ClipRun r = run_clip(*l, ids);
  ASSERT_TRUE(r.status.ok());
  EXPECT_TRUE(all_close(r.out.pooled, r.obs.at("pooled"), 0, 0));
  ClipRun rg = run_clip(*g, to_ids(golden("clip_g.input_ids")));
  ASSERT_TRUE(rg.status.ok());
  EXPECT_TRUE(all_close(rg.out.pooled, rg.obs.at("pooled_projected"), 0, 0));
}

TEST_F(TextEncoderTest, T5Goldens) {
  auto model = load_t5(kTinyA / "t5xxl.safetensors");
  ASSERT_TRUE(model);
  EXPECT_FALSE(model->fp8_embedding_fix());
  const auto cases = t5_cases();
  ASSERT_FALSE(cases.empty()) << "no t5xxl.*.input_ids in goldens_text";
  for (const auto& c : cases) {
    SCOPED_TRACE(c);
    T5Run r = run_t5(*model, to_ids(golden(c + ".input_ids")));
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    EXPECT_TRUE(all_close(r.out, r.obs.at("last_hidden_state"), 0, 0));
    // The bias is a table lookup of stored fp16 values: exact.
    if (goldens().contains(c + ".position_bias")) {
      EXPECT_TRUE(all_close(r.obs.at("position_bias"), golden(c + ".position_bias"), 0, 0));
    }
    const double worst = check_fields(c, r.obs);
    std::printf("[ %s ] max |ours - golden| over all fields = %.3g\n", c.c_str(), worst);
  }
}

// A batch of two sequences gives each row's single-sequence result (no cross-row mixing;
// the bias is shared by the batch).
TEST_F(TextEncoderTest, T5BatchRowsMatchGolden) {
  auto model = load_t5(kTinyA / "t5xxl.safetensors");
  ASSERT_TRUE(model);
  const auto cases = t5_cases();
  ASSERT_FALSE(cases.empty());
  const Tensor one = to_ids(golden(cases[0] + ".input_ids"));
  ASSERT_EQ(one.size(0), 1);
  const int64_t L = one.size(1);
  Tensor two = owned(Shape{2, L}, DType::kI32);
  std::copy(one.data_as<int32_t>(), one.data_as<int32_t>() + L, two.data_as<int32_t>());
  std::copy(one.data_as<int32_t>(), one.data_as<int32_t>() + L, two.data_as<int32_t>() + L);
  T5Run r = run_t5(*model, two);
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  const Tensor g = golden(cases[0] + ".last_hidden_state").select(0, 0);
  for (int b = 0; b < 2; ++b) EXPECT_TRUE(all_close(r.out.select(0, b), g, kAtol, kRtol)) << b;
}

TEST(T5Bucket, MatchesSpecTable) {
  // SPEC-model.md §4.3, verified with torch float32: n -> bucket offset.
  auto expect = [](int n) {
    if (n < 8) return n;
    if (n <= 11) return 8;
    if (n <= 15) return 9;
    if (n <= 22) return 10;
    if (n <= 31) return 11;
    if (n <= 45) return 12;
    if (n <= 63) return 13;
    if (n <= 90) return 14;
    return 15;
  };
  for (int n = 0; n < 1000; ++n) {
    EXPECT_EQ(t5_relative_position_bucket(-n, 32, 128), expect(n)) << "rel " << -n;
    if (n > 0) {
      EXPECT_EQ(t5_relative_position_bucket(n, 32, 128), 16 + expect(n)) << "rel " << n;
    }
  }
}

// The plain-loop reference backend (the test oracle) runs the same model code to the same
// result: the model does not depend on the CPU backend's kernels.
TEST_F(TextEncoderTest, ReferenceBackendMatchesCpu) {
  auto g = load_clip(Component::kClipG);
  ASSERT_TRUE(g);
  const Tensor ids = to_ids(golden("clip_g.input_ids"));
  ClipRun a = run_clip(*g, ids), b = run_clip(*g, ids, ref_);
  ASSERT_TRUE(a.status.ok() && b.status.ok()) << b.status.to_string();
  EXPECT_TRUE(all_close(b.out.hidden, a.out.hidden, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(b.out.pooled, a.out.pooled, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(b.out.hidden, golden("clip_g.penultimate"), kAtol, kRtol));

  auto t5 = load_t5(kTinyA / "t5xxl.safetensors");
  ASSERT_TRUE(t5);
  const auto cases = t5_cases();
  ASSERT_FALSE(cases.empty());
  const Tensor tids = to_ids(golden(cases[0] + ".input_ids"));
  T5Run c = run_t5(*t5, tids), d = run_t5(*t5, tids, ref_);
  ASSERT_TRUE(c.status.ok() && d.status.ok()) << d.status.to_string();
  EXPECT_TRUE(all_close(d.out, c.out, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(d.out, golden(cases[0] + ".last_hidden_state"), kAtol, kRtol));
}

// A row without an end token pools at position 0 (ComfyUI's argmax over ids == 49407).
TEST_F(TextEncoderTest, ClipPoolsAtFirstEndTokenElsePositionZero) {
  auto l = load_clip(Component::kClipL);
  ASSERT_TRUE(l);
  Tensor ids = owned(Shape{2, 10}, DType::kI32);
  int32_t* p = ids.data_as<int32_t>();
  for (int i = 0; i < 10; ++i) {
    p[i] = 400 + i;                      // row 0: no end token
    p[10 + i] = i == 0 ? 49406 : 49407;  // row 1: end tokens from position 1 on
  }
  ClipRun r = run_clip(*l, ids);
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  const Tensor& last = r.obs.at("last_hidden_state");
  EXPECT_TRUE(all_close(r.out.pooled.select(0, 0), last.select(0, 0).select(0, 0), 0, 0));
  EXPECT_TRUE(all_close(r.out.pooled.select(0, 1), last.select(0, 1).select(0, 1), 0, 0));
}

TEST_F(TextEncoderTest, BadInputsGiveStatus) {
  auto l = load_clip(Component::kClipL);
  auto t5 = load_t5(kTinyA / "t5xxl.safetensors");
  ASSERT_TRUE(l && t5);
  const int V = l->config().vocab, P = l->config().positions;
  auto clip_status = [&](const Tensor& ids) { return run_clip(*l, ids).status; };
  Tensor ids = owned(Shape{1, 4}, DType::kI32);
  ids.data_as<int32_t>()[2] = V;  // out of the vocabulary
  EXPECT_EQ(clip_status(ids).code(), StatusCode::kInvalidArgument);
  ids.data_as<int32_t>()[2] = -1;
  EXPECT_EQ(clip_status(ids).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(clip_status(owned(Shape{1, P + 1}, DType::kI32)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(clip_status(owned(Shape{1, 4}, DType::kF32)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(clip_status(owned(Shape{4}, DType::kI32)).code(), StatusCode::kInvalidArgument);
  {  // wrong output shape
    ClipOutputs out{owned(Shape{1, 4, l->config().width + 1}), owned(Shape{1, l->pooled_width()})};
    Arena arena;
    EXPECT_EQ(l->encode(*cpu_, arena, owned(Shape{1, 4}, DType::kI32), out).code(),
              StatusCode::kInvalidArgument);
  }
  Tensor tids = owned(Shape{1, 5}, DType::kI32);
  tids.data_as<int32_t>()[4] = t5->config().vocab;
  EXPECT_EQ(run_t5(*t5, tids).status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(run_t5(*t5, owned(Shape{1, 5}, DType::kF32)).status.code(),
            StatusCode::kInvalidArgument);
  Arena arena;
  EXPECT_EQ(t5->encode(*cpu_, arena, owned(Shape{1, 5}, DType::kI32), owned(Shape{1, 5, 3})).code(),
            StatusCode::kInvalidArgument);
}

// ---- files written for the tests ---------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("sd35_text_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

using Tensors = std::vector<std::pair<std::string, Tensor>>;

Tensor convert(const Tensor& t, DType to) {
  Tensor out = owned(t.shape(), to);
  for (int64_t i = 0; i < t.numel(); ++i)
    store_from_f32(out.data(), to, i, load_as_f32(t.data(), t.dtype(), i));
  return out;
}

// The T5 Linear weights (what ComfyUI's scaled-fp8 files quantise with a scale).
bool is_linear(const std::string& n) {
  if (n.find("relative_attention_bias") != std::string::npos) return false;
  return n.find(".SelfAttention.") != std::string::npos ||
         n.find(".DenseReluDense.") != std::string::npos;
}

// SD3 projects CLIP-G's pooled output: a CLIP-G file without text_projection is an error.
TEST_F(TextEncoderTest, ClipGWithoutProjectionIsAnError) {
  auto src = SafetensorsFile::open((kTinyA / "clip_g.safetensors").string());
  ASSERT_TRUE(src.ok());
  Tensors ts;
  for (const auto& info : (*src)->tensors())
    if (info.name != "text_projection.weight") ts.push_back({info.name, (*src)->tensor(info)});
  TempDir dir;
  const fs::path p = dir.path() / "clip_g.safetensors";
  ASSERT_TRUE(write_safetensors(p.string(), ts).ok());
  auto index = open_index(p, Component::kClipG);
  ASSERT_TRUE(index);
  ConfigOverrides ov;
  ov.heads[Component::kClipG] = 3;  // no config.json next to the temp file
  auto m = ClipTextModel::load(*index, Component::kClipG, ov);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("text_projection"), std::string::npos)
      << m.status().to_string();
}

// fp8 T5 files: (a) plain e4m3fn (every matrix and vector, the embeddings included), (b)
// ComfyUI scaled fp8 (Linear weights with a per-layer scale_weight + the scaled_fp8 marker,
// plain fp8 embeddings, fp16 norms). One embedding element is NaN in both, to exercise
// ComfyUI's nan_to_num (the dequantised f32 file has 0 there). Each must equal the f32 computation
// on its dequantised weights, written as an f32 file, within the golden tolerance.
TEST_F(TextEncoderTest, Fp8T5EqualsDequantisedF32) {
  auto src = SafetensorsFile::open((kTinyA / "t5xxl.safetensors").string());
  ASSERT_TRUE(src.ok());
  const auto cases = t5_cases();
  ASSERT_FALSE(cases.empty());
  const Tensor ids = to_ids(golden(cases[0] + ".input_ids"));
  const int32_t nan_id = ids.data_as<int32_t>()[0];
  TempDir dir;

  for (bool scaled : {false, true}) {
    SCOPED_TRACE(scaled ? "scaled fp8" : "plain fp8");
    Tensors q, deq;
    for (const auto& info : (*src)->tensors()) {
      const Tensor t = (*src)->tensor(info);
      const std::string& n = info.name;
      // Embeddings are fp8 in both variants (no scale: nn.Embedding has none), so that fp8
      // holds most parameters and ComfyUI's nan_to_num applies (comfy.utils.weight_dtype).
      const bool emb = n == "shared.weight" || n == "encoder.embed_tokens.weight";
      if (scaled && is_linear(n)) {
        // ComfyUI-style per-tensor scale: max|w| maps to the e4m3fn maximum 448.
        float mx = 0;
        for (float v : to_vector(t)) mx = std::max(mx, std::fabs(v));
        const float s = mx > 0 ? mx / 448.0f : 1.0f;
        Tensor w8 = owned(t.shape(), DType::kF8E4M3FN);
        Tensor wd = owned(t.shape());
        for (int64_t i = 0; i < t.numel(); ++i) {
          store_from_f32(w8.data(), DType::kF8E4M3FN, i, load_as_f32(t.data(), t.dtype(), i) / s);
          wd.data_as<float>()[i] = load_as_f32(w8.data(), DType::kF8E4M3FN, i) * s;
        }
        Tensor sw = owned(Shape{});
        sw.data_as<float>()[0] = s;
        const std::string layer = n.substr(0, n.size() - std::string(".weight").size());
        q.push_back({n, w8});
        q.push_back({layer + ".scale_weight", sw});
        deq.push_back({n, wd});
      } else if (scaled && !emb) {  // norms and the bias table stay fp16
        q.push_back({n, t});
        deq.push_back({n, convert(t, DType::kF32)});
      } else {
        Tensor t8 = convert(t, DType::kF8E4M3FN);
        if (emb) t8.data_as<uint8_t>()[int64_t(nan_id) * t.size(1) + 1] = 0x7F;  // NaN
        Tensor td = convert(t8, DType::kF32);
        if (emb) td.data_as<float>()[int64_t(nan_id) * t.size(1) + 1] = 0.0f;  // nan_to_num
        q.push_back({n, t8});
        deq.push_back({n, td});
      }
    }
    if (scaled) q.push_back({"scaled_fp8", owned(Shape{0}, DType::kF8E4M3FN)});
    const std::string tag = scaled ? "scaled" : "plain";
    const fs::path pq = dir.path() / ("t5_" + tag + "_fp8.safetensors");
    const fs::path pd = dir.path() / ("t5_" + tag + "_dequant.safetensors");
    ASSERT_TRUE(write_safetensors(pq.string(), q).ok());
    ASSERT_TRUE(write_safetensors(pd.string(), deq).ok());
    auto m8 = load_t5(pq);
    auto mf = load_t5(pd);
    ASSERT_TRUE(m8 && mf);
    EXPECT_EQ(m8->config().scaled_fp8, scaled);
    EXPECT_TRUE(m8->fp8_embedding_fix());
    EXPECT_FALSE(mf->fp8_embedding_fix());
    T5Run a = run_t5(*m8, ids), b = run_t5(*mf, ids);
    ASSERT_TRUE(a.status.ok()) << a.status.to_string();
    ASSERT_TRUE(b.status.ok()) << b.status.to_string();
    for (const auto& [name, t] : b.obs) {
      EXPECT_TRUE(all_close(a.obs.at(name), t, kAtol, kRtol)) << name;
    }
    const Tensor g = golden(cases[0] + ".last_hidden_state");
    std::printf(
        "[ %s fp8 ] max |fp8 - dequantised f32| = %.3g, max |fp8 - fp16 golden| = %.3g "
        "(quantisation, informational)\n",
        tag.c_str(), max_abs_diff(a.out, b.out), max_abs_diff(a.out, g));
  }
}

}  // namespace
}  // namespace sd35
