// Samplers (src/sampling/samplers.cpp) and the guidance denoiser (src/sampling/guidance.h):
//  * replay of tiny-a goldens_pipeline: a denoiser that hands back the golden per-step
//    denoised must make sample() reproduce every golden step input x and the final samples
//    (sampler cases and step counts discovered from the tensor names);
//  * the golden CFG combination from denoised_cond / denoised_uncond;
//  * analytic cases for every sampler: with the ideal denoiser of a point-mass data
//    distribution (D = T), deterministic samplers stay exactly on the flow path
//    x_σ = σ·n + (1 − σ)·T, stochastic ones keep its marginal N((1 − σ)T, σ²), all end at T;
//  * timestep-range averaging, SLG window, cfg == 1, cancellation and progress.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "sampling/guidance.h"
#include "sampling/sampling.h"

namespace sd35 {
namespace {

namespace fs = std::filesystem;
const fs::path kTinyA = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";

Tensor owned_copy(const Tensor& t) {
  auto r = Tensor::zeros(t.shape(), DType::kF32);
  EXPECT_TRUE(r.ok());
  for (int64_t i = 0; i < t.numel(); ++i)
    r->data_as<float>()[i] = load_as_f32(t.data(), t.dtype(), i);
  return *r;
}

Tensor filled(const Shape& shape, float v) {
  auto r = Tensor::zeros(shape, DType::kF32);
  EXPECT_TRUE(r.ok());
  std::fill(r->data_as<float>(), r->data_as<float>() + r->numel(), v);
  return *r;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  double m = 0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i)
    m = std::max(m, std::fabs(double(load_as_f32(a.data(), a.dtype(), i)) -
                              double(load_as_f32(b.data(), b.dtype(), i))));
  return m;
}

void copy_to(const Tensor& src, const Tensor& dst) {
  for (int64_t i = 0; i < src.numel(); ++i)
    dst.data_as<float>()[i] = load_as_f32(src.data(), src.dtype(), i);
}

std::vector<float> to_floats(const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = load_as_f32(t.data(), t.dtype(), i);
  return v;
}

// ---- golden replay ---------------------------------------------------------------------------

class GoldenPipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = SafetensorsFile::open((kTinyA / "goldens_pipeline.safetensors").string());
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    file_ = *f;
    // "<case>.step<i>.x" -> case, number of steps.
    const std::regex re(R"(^([A-Za-z0-9_]+)\.step([0-9]+)\.x$)");
    for (const std::string& name : file_->names()) {
      std::smatch m;
      if (std::regex_match(name, m, re)) steps_[m[1]] = std::max(steps_[m[1]], std::stoi(m[2]) + 1);
    }
    std::ifstream cfg(kTinyA / "config.json");
    ASSERT_TRUE(cfg.good());
    config_ = nlohmann::json::parse(cfg);
  }

  Tensor golden(const std::string& name) const {
    auto t = file_->tensor(name);
    EXPECT_TRUE(t.ok()) << name << ": " << t.status().to_string();
    return t.ok() ? *t : Tensor();
  }
  bool has(const std::string& name) const { return file_->contains(name); }

  uint64_t case_seed(const std::string& c) const {
    if (has(c + ".seed"))
      return uint64_t(
          int64_t(load_as_f32(golden(c + ".seed").data(), golden(c + ".seed").dtype(), 0)));
    return config_["pipeline"]["seed"].get<uint64_t>();
  }

  std::shared_ptr<const SafetensorsFile> file_;
  std::map<std::string, int> steps_;
  nlohmann::json config_;
};

TEST_F(GoldenPipeline, DiscoversSamplerCases) {
  int samplers = 0;
  for (const auto& [c, n] : steps_)
    if (sampler_from_name(c).ok()) ++samplers;
  EXPECT_GE(samplers, 2) << "expected at least the euler and dpmpp_2m cases";
}

TEST_F(GoldenPipeline, ReplayReproducesEveryStep) {
  int replayed = 0;
  for (const auto& [c, steps] : steps_) {
    auto sampler = sampler_from_name(c);
    if (!sampler.ok()) continue;  // e.g. img2img: not a sampler name
    SCOPED_TRACE(c);
    const std::vector<float> sigmas = to_floats(golden(c + ".sigmas"));
    ASSERT_EQ(int(sigmas.size()), steps + 1);
    Tensor x = owned_copy(golden(c + ".step0.x"));
    if (has(c + ".x_init")) {
      EXPECT_EQ(max_abs_diff(x, golden(c + ".x_init")), 0.0);
    }

    int call = 0;
    double max_x_err = 0;
    Denoiser replay = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
      if (call >= steps) return internal_error("too many calls");
      EXPECT_EQ(sigma, sigmas[size_t(call)]) << "call " << call;
      const double e = max_abs_diff(xin, golden(c + ".step" + std::to_string(call) + ".x"));
      max_x_err = std::max(max_x_err, e);
      EXPECT_LE(e, 1e-6) << "step " << call << " input x";
      copy_to(golden(c + ".step" + std::to_string(call) + ".denoised"), out);
      ++call;
      return ok_status();
    };
    SampleOptions opt;
    opt.seed = case_seed(c);
    const Status st = sample(*sampler, replay, x, sigmas, opt);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(call, steps);
    const double final_err = max_abs_diff(x, golden(c + ".samples"));
    EXPECT_LE(final_err, 1e-6);
    std::printf("[replay] %s: %d steps, max step-x err %.3g, samples err %.3g\n", c.c_str(), steps,
                max_x_err, final_err);
    ++replayed;
  }
  EXPECT_GE(replayed, 2);
}

// ComfyUI's default_noise_sampler on the CPU draws from torch.Generator().manual_seed(seed + 1).
TEST_F(GoldenPipeline, AncestralNoiseIsSeedPlusOne) {
  bool any = false;
  for (const auto& [c, steps] : steps_) {
    if (!has(c + ".ancestral_noise0")) continue;
    any = true;
    SCOPED_TRACE(c);
    TorchGenerator gen(case_seed(c) + 1);
    for (int i = 0; has(c + ".ancestral_noise" + std::to_string(i)); ++i) {
      const Tensor g = golden(c + ".ancestral_noise" + std::to_string(i));
      Tensor mine = filled(g.shape(), 0.0f);
      gen.randn(mine.data_as<float>(), mine.numel());
      EXPECT_LE(max_abs_diff(mine, g), 1e-6) << "draw " << i;
    }
  }
  if (!any) GTEST_SKIP() << "no ancestral noise goldens";
}

TEST_F(GoldenPipeline, CfgCombinationMatchesGolden) {
  const double cfg = config_["pipeline"]["cfg"].get<double>();
  const FlowModelSampling ms(3.0);
  int checked = 0;
  for (const auto& [c, steps] : steps_) {
    if (!has(c + ".step0.denoised_cond") || !has(c + ".step0.denoised_uncond")) continue;
    SCOPED_TRACE(c);
    const std::vector<float> sigmas = to_floats(golden(c + ".sigmas"));
    int step = 0;
    ModelCall model = [&](const Tensor& x, float sigma, std::span<const int> conds,
                          std::span<const int> skip, std::span<const Tensor> outs) -> Status {
      EXPECT_TRUE(skip.empty());
      EXPECT_EQ(sigma, sigmas[size_t(step)]);
      for (size_t i = 0; i < conds.size(); ++i)
        copy_to(golden(c + ".step" + std::to_string(step) +
                       (conds[i] == 0 ? ".denoised_cond" : ".denoised_uncond")),
                outs[i]);
      return ok_status();
    };
    GuidanceOptions go;
    go.positive = {{0}};
    go.negative = {{1}};
    go.cfg = cfg;
    auto den = make_guidance_denoiser(model, ms, go);
    ASSERT_TRUE(den.ok()) << den.status().to_string();
    double worst = 0;
    for (step = 0; step < steps; ++step) {
      const Tensor x = golden(c + ".step" + std::to_string(step) + ".x");
      Tensor out = filled(x.shape(), 0.0f);
      ASSERT_TRUE((*den)(x, sigmas[size_t(step)], out).ok());
      const double e = max_abs_diff(out, golden(c + ".step" + std::to_string(step) + ".denoised"));
      worst = std::max(worst, e);
      EXPECT_LE(e, 1e-6) << "step " << step;
      ++checked;
    }
    std::printf("[cfg] %s: cfg %.3g, max err %.3g\n", c.c_str(), cfg, worst);
  }
  EXPECT_GT(checked, 0);
}

// ---- analytic cases --------------------------------------------------------------------------

const Sampler kAll[] = {
    Sampler::kEuler,   Sampler::kEulerAncestral, Sampler::kHeun,     Sampler::kDpm2,
    Sampler::kDpmpp2m, Sampler::kDpmpp2mSde,     Sampler::kDpmppSde, Sampler::kLms,
    Sampler::kDdim,    Sampler::kUniPc,          Sampler::kUniPcBh2};

// uni_pc reads the sigmas as VE levels (x = x0 + σ·ε) and ends at 0.001, not 0 (ComfyUI).
bool is_unipc(Sampler s) { return s == Sampler::kUniPc || s == Sampler::kUniPcBh2; }

bool deterministic(Sampler s) {
  return s != Sampler::kEulerAncestral && s != Sampler::kDpmpp2mSde && s != Sampler::kDpmppSde;
}

// A shifted flow schedule (shift 3) with `steps` steps, ending in 0.
std::vector<float> flow_sigmas(int steps) {
  std::vector<float> s;
  for (int i = 0; i < steps; ++i) {
    const double t = 1.0 - double(i) / steps;
    s.push_back(float(3.0 * t / (1.0 + 2.0 * t)));
  }
  s.push_back(0.0f);
  return s;
}

struct PointMass {
  Tensor noise, target;
  explicit PointMass(const Shape& shape, uint64_t seed = 7) {
    noise = filled(shape, 0.0f);
    target = filled(shape, 0.0f);
    TorchGenerator g(seed);
    g.randn(noise.data_as<float>(), noise.numel());
    float* t = target.data_as<float>();
    for (int64_t i = 0; i < target.numel(); ++i) t[i] = 0.5f * std::sin(0.37f * float(i)) - 0.1f;
  }
};

TEST(Samplers, PointMassDataEveryShapeOfSampler) {
  const Shape shape{1, 16, 32, 32};
  PointMass pm(shape);
  const float* n = pm.noise.data_as<float>();
  const float* t = pm.target.data_as<float>();
  for (Sampler s : kAll) {
    SCOPED_TRACE(std::string(sampler_name(s)));
    const std::vector<float> sigmas = flow_sigmas(12);
    Tensor x = owned_copy(pm.noise);  // σ0 = 1: x = noise
    int calls = 0;
    double path_err = 0, worst_mean = 0, worst_std_dev = 0;
    Denoiser d = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
      ++calls;
      const float* xp = xin.data_as<float>();
      if (is_unipc(s)) {
        // VE path from x(σ0 = 1) = n: x = T + σ·(n − T).
        for (int64_t i = 0; i < xin.numel(); ++i)
          path_err =
              std::max(path_err, std::fabs(double(xp[i]) - (t[i] + double(sigma) * (n[i] - t[i]))));
      } else if (deterministic(s)) {
        for (int64_t i = 0; i < xin.numel(); ++i)
          path_err = std::max(
              path_err, std::fabs(double(xp[i]) - (double(sigma) * n[i] + (1.0 - sigma) * t[i])));
      } else {
        // The residual (x − (1 − σ)T)/σ must be standard normal.
        double m = 0, m2 = 0;
        for (int64_t i = 0; i < xin.numel(); ++i) {
          const double z = (double(xp[i]) - (1.0 - sigma) * t[i]) / sigma;
          m += z;
          m2 += z * z;
        }
        m /= double(xin.numel());
        const double sd = std::sqrt(m2 / double(xin.numel()) - m * m);
        worst_mean = std::max(worst_mean, std::fabs(m));
        worst_std_dev = std::max(worst_std_dev, std::fabs(sd - 1.0));
      }
      copy_to(pm.target, out);
      return ok_status();
    };
    SampleOptions opt;
    opt.seed = 99;
    ASSERT_TRUE(sample(s, d, x, sigmas, opt).ok());
    const int steps = int(sigmas.size()) - 1;
    const bool two_calls = s == Sampler::kHeun || s == Sampler::kDpm2 || s == Sampler::kDpmppSde;
    EXPECT_EQ(calls, two_calls ? 2 * steps - 1 : steps);
    if (is_unipc(s)) {
      // Ends at σ = 0.001: x = T + 0.001·(n − T).
      double end_err = 0;
      for (int64_t i = 0; i < x.numel(); ++i)
        end_err = std::max(end_err, std::fabs(double(x.data_as<float>()[i]) -
                                              (t[i] + 0.001 * (double(n[i]) - t[i]))));
      // f32 floor of ComfyUI's σ_vp(0.001) = √(1 − exp(2·logα)) (cancellation): ~1e-4.
      EXPECT_LE(end_err, 3e-4);
      EXPECT_GT(max_abs_diff(x, pm.target), 1e-3);
    } else {
      EXPECT_LE(max_abs_diff(x, pm.target), 2e-6);
    }
    if (deterministic(s)) {
      EXPECT_LE(path_err, 2e-5);
    } else {
      EXPECT_LE(worst_mean, 0.03);
      EXPECT_LE(worst_std_dev, 0.03);
    }
  }
}

// A denoiser that is not the ideal one (D depends on x): all samplers still end at D(x, σ_last)
// or close to a fixed point, and two runs with the same seed agree bit for bit.
TEST(Samplers, DeterministicGivenSeed) {
  const Shape shape{1, 4, 8, 8};
  PointMass pm(shape, 3);
  for (Sampler s : kAll) {
    SCOPED_TRACE(std::string(sampler_name(s)));
    Denoiser d = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
      for (int64_t i = 0; i < xin.numel(); ++i)
        out.data_as<float>()[i] = 0.8f * pm.target.data_as<float>()[i] +
                                  0.2f * std::tanh(xin.data_as<float>()[i]) * sigma;
      return ok_status();
    };
    SampleOptions opt;
    opt.seed = 5;
    Tensor a = owned_copy(pm.noise), b = owned_copy(pm.noise);
    ASSERT_TRUE(sample(s, d, a, flow_sigmas(8), opt).ok());
    ASSERT_TRUE(sample(s, d, b, flow_sigmas(8), opt).ok());
    EXPECT_EQ(max_abs_diff(a, b), 0.0);
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_TRUE(std::isfinite(a.data_as<float>()[i]));
  }
}

TEST(Samplers, EulerStepIsComfyRounding) {
  // One step, checked against the op-by-op f32 formula d = (x − D)/σ; x + d·(σ' − σ).
  Tensor x = filled({1, 1, 1, 3}, 0.0f);
  x.data_as<float>()[0] = 0.3f;
  x.data_as<float>()[1] = -1.7f;
  x.data_as<float>()[2] = 2.25f;
  const std::vector<float> xs = to_floats(x);
  const std::vector<float> sig = {0.9f, 0.7f};
  Denoiser d = [](const Tensor& xin, float, const Tensor& out) -> Status {
    for (int i = 0; i < 3; ++i) out.data_as<float>()[i] = 0.1f * float(i + 1);
    return ok_status();
  };
  ASSERT_TRUE(sample(Sampler::kEuler, d, x, sig).ok());
  for (int i = 0; i < 3; ++i) {
    volatile float dd = (xs[size_t(i)] - 0.1f * float(i + 1)) / sig[0];
    volatile float dt = sig[1] - sig[0];
    volatile float prod = dd * dt;
    const float expect = xs[size_t(i)] + prod;
    EXPECT_EQ(x.data_as<float>()[i], expect);
  }
}

// With a derivative d(σ) = σ^k that does not depend on x (D = x − σ·σ^k), each step's increment
// must be the exact integral ∫ σ^k dσ as long as the method's order covers degree k: LMS at
// step i has order min(i + 1, 4) (this checks every individual Adams coefficient), Heun is
// exact for k <= 1. The schedule stops at σ = 0.05 so no step is the special final one.
TEST(Samplers, MultistepOrdersAreExactOnPolynomials) {
  const Shape shape{1, 1, 2, 2};
  std::vector<float> sigmas = flow_sigmas(10);
  sigmas.back() = 0.05f;
  struct Case {
    Sampler s;
    int max_k;
  };
  for (const Case c : {Case{Sampler::kLms, 3}, Case{Sampler::kHeun, 1}}) {
    for (int k = 0; k <= c.max_k; ++k) {
      SCOPED_TRACE(std::string(sampler_name(c.s)) + " k=" + std::to_string(k));
      std::vector<std::pair<float, float>> seen;  // (σ, x[0]) at each call
      Denoiser d = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
        seen.emplace_back(sigma, xin.data_as<float>()[0]);
        const float dk = float(std::pow(double(sigma), k));
        for (int64_t i = 0; i < xin.numel(); ++i)
          out.data_as<float>()[i] = xin.data_as<float>()[i] - sigma * dk;
        return ok_status();
      };
      Tensor x = filled(shape, 0.25f);
      ASSERT_TRUE(sample(c.s, d, x, sigmas).ok());
      seen.emplace_back(sigmas.back(), x.data_as<float>()[0]);
      // Heun calls twice per step (at σ_i with x, then at σ_{i+1} with the predictor): the
      // step inputs are every other call, then the result.
      const size_t stride = c.s == Sampler::kHeun ? 2 : 1;
      std::vector<float> xs;
      for (size_t i = 0; i + 1 < seen.size(); i += stride) xs.push_back(seen[i].second);
      xs.push_back(seen.back().second);
      ASSERT_EQ(xs.size(), sigmas.size());
      for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const int order = c.s == Sampler::kLms ? std::min(int(i) + 1, 4) : 2;
        if (k > order - 1) continue;
        const double a = sigmas[i], b = sigmas[i + 1];
        const double exact = (std::pow(b, k + 1) - std::pow(a, k + 1)) / (k + 1);
        EXPECT_NEAR(double(xs[i + 1]) - double(xs[i]), exact, 2e-6) << "step " << i;
      }
    }
  }
}

// dpmpp_2m_sde / dpmpp_sde evaluate the model at percent_to_sigma(1e-4) instead of σ = 1
// (offset_first_sigma_for_snr), using SampleOptions::shift.
TEST(Samplers, SdeSamplersOffsetTheFirstSigma) {
  for (Sampler s : {Sampler::kDpmpp2mSde, Sampler::kDpmppSde}) {
    for (double shift : {3.0, 1.0}) {
      std::vector<float> seen;
      Denoiser d = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
        seen.push_back(sigma);
        std::fill(out.data_as<float>(), out.data_as<float>() + out.numel(), 0.0f);
        return ok_status();
      };
      SampleOptions opt;
      opt.shift = shift;
      Tensor x = filled({1, 1, 4, 4}, 0.5f);
      ASSERT_TRUE(sample(s, d, x, {1.0f, 0.5f, 0.0f}, opt).ok());
      const FlowModelSampling ms(shift);
      ASSERT_FALSE(seen.empty());
      EXPECT_EQ(seen[0], float(ms.percent_to_sigma(1e-4))) << sampler_name(s);
    }
  }
}

TEST(Samplers, ProgressAndCancellation) {
  const Shape shape{1, 2, 4, 4};
  PointMass pm(shape);
  for (Sampler s : kAll) {
    SCOPED_TRACE(std::string(sampler_name(s)));
    const std::vector<float> sigmas = flow_sigmas(6);
    Denoiser d = [&](const Tensor&, float, const Tensor& out) -> Status {
      copy_to(pm.target, out);
      return ok_status();
    };
    std::vector<std::pair<int, int>> seen;
    SampleOptions opt;
    opt.progress = [&](int step, int total) { seen.emplace_back(step, total); };
    Tensor x = owned_copy(pm.noise);
    ASSERT_TRUE(sample(s, d, x, sigmas, opt).ok());
    ASSERT_EQ(seen.size(), sigmas.size() - 1);
    for (size_t i = 0; i < seen.size(); ++i) {
      EXPECT_EQ(seen[i].first, int(i) + 1);
      EXPECT_EQ(seen[i].second, int(sigmas.size()) - 1);
    }

    // Cancel before the 3rd model call: exactly two calls happen.
    int calls = 0, checks = 0;
    Denoiser counting = [&](const Tensor& xin, float sg, const Tensor& out) -> Status {
      ++calls;
      return d(xin, sg, out);
    };
    SampleOptions copt;
    copt.cancelled = [&] { return ++checks > 2; };
    Tensor y = owned_copy(pm.noise);
    const Status st = sample(s, counting, y, sigmas, copt);
    EXPECT_EQ(st.code(), StatusCode::kCancelled);
    EXPECT_EQ(calls, 2);
  }
}

TEST(Samplers, ErrorsAndEdgeCases) {
  Tensor x = filled({1, 1, 2, 2}, 1.0f);
  Denoiser fail = [](const Tensor&, float, const Tensor&) -> Status {
    return internal_error("model failed");
  };
  EXPECT_EQ(sample(Sampler::kEuler, fail, x, {1.0f, 0.0f}).code(), StatusCode::kInternal);
  // Empty and single-sigma schedules leave x alone (ComfyUI returns the latent).
  EXPECT_TRUE(sample(Sampler::kEuler, fail, x, {}).ok());
  EXPECT_TRUE(sample(Sampler::kEuler, fail, x, {0.5f}).ok());
  EXPECT_EQ(x.data_as<float>()[0], 1.0f);
  EXPECT_EQ(sample(Sampler::kEuler, fail, x, {1.0f, 0.0f, 0.0f}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(sample(Sampler::kEuler, fail, x, {1.0f, NAN}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sample(Sampler::kEuler, Denoiser(), x, {1.0f, 0.0f}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(sample(Sampler::kUniPc, fail, x, {1.0f, 0.0f}).code(), StatusCode::kInternal);
  for (Sampler s : kAll) {
    auto r = sampler_from_name(sampler_name(s));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, s);
  }
  EXPECT_EQ(*sampler_from_name("uni_pc"), Sampler::kUniPc);
  EXPECT_EQ(*sampler_from_name("uni_pc_bh2"), Sampler::kUniPcBh2);
  EXPECT_EQ(sampler_from_name("euler_a").status().code(), StatusCode::kInvalidArgument);
}

// ---- guidance --------------------------------------------------------------------------------

// A model whose prediction for condition k is the constant k + 1 (or `skip_value` when layers
// are skipped), recording the calls.
struct FakeModel {
  std::vector<std::pair<int, bool>> calls;  // (cond_index, skipped), one per condition
  std::vector<size_t> batch_sizes;          // conditions per model call
  std::vector<int> last_skip;
  float skip_value = 0.25f;
  ModelCall call() {
    return [this](const Tensor& x, float, std::span<const int> conds, std::span<const int> skip,
                  std::span<const Tensor> outs) -> Status {
      EXPECT_EQ(conds.size(), outs.size());
      batch_sizes.push_back(conds.size());
      for (size_t i = 0; i < conds.size(); ++i) {
        calls.emplace_back(conds[i], !skip.empty());
        std::fill(outs[i].data_as<float>(), outs[i].data_as<float>() + outs[i].numel(),
                  skip.empty() ? float(conds[i] + 1) : skip_value);
      }
      last_skip.assign(skip.begin(), skip.end());
      return ok_status();
    };
  }
};

float run_once(const Denoiser& d, float sigma) {
  Tensor x = filled({1, 1, 2, 2}, 0.0f);
  Tensor out = filled({1, 1, 2, 2}, -7.0f);
  EXPECT_TRUE(d(x, sigma, out).ok());
  for (int i = 1; i < 4; ++i) EXPECT_EQ(out.data_as<float>()[i], out.data_as<float>()[0]);
  return out.data_as<float>()[0];
}

TEST(Guidance, TimestepRangesAndAveraging) {
  const FlowModelSampling ms(3.0);
  FakeModel m;
  GuidanceOptions go;
  go.positive = {{0}};
  // The SD3.5 example workflow's negative: real empty prompt for 0–10 %, zeroed after.
  go.negative = {{9, 0.0, 0.1}, {19, 0.1, 1.0}};
  go.cfg = 2.0;
  go.slg.layers.clear();
  auto d = make_guidance_denoiser(m.call(), ms, go);
  ASSERT_TRUE(d.ok());
  // cond = 1; uncond 10 (first entry) or 20 (second) or their average 15.
  EXPECT_EQ(run_once(*d, 1.0f), 10.0f + (1.0f - 10.0f) * 2.0f);
  EXPECT_EQ(run_once(*d, 0.5f), 20.0f + (1.0f - 20.0f) * 2.0f);
  const float boundary = float(ms.percent_to_sigma(0.1));
  EXPECT_EQ(run_once(*d, boundary), 15.0f + (1.0f - 15.0f) * 2.0f);
  EXPECT_EQ(run_once(*d, std::nextafter(boundary, 2.0f)), 10.0f + (1.0f - 10.0f) * 2.0f);
  EXPECT_EQ(run_once(*d, std::nextafter(boundary, 0.0f)), 20.0f + (1.0f - 20.0f) * 2.0f);
  // Every evaluation asks for all active conditions of both sides in one call (so the engine
  // can batch them like calc_cond_batch): cond + one negative, or cond + both at the boundary.
  EXPECT_EQ(m.batch_sizes, (std::vector<size_t>{2, 2, 3, 2, 2}));
}

TEST(Guidance, NoActiveNegativeIsZeroAndCfgOneSkipsUncond) {
  const FlowModelSampling ms(3.0);
  FakeModel m;
  GuidanceOptions go;
  go.positive = {{2}};
  go.negative = {{5, 0.5, 1.0}};  // active only for σ <= percent_to_sigma(0.5) = 0.75
  go.cfg = 3.0;
  go.slg.layers.clear();
  auto d = make_guidance_denoiser(m.call(), ms, go);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(run_once(*d, 0.9f), 0.0f + (3.0f - 0.0f) * 3.0f);  // uncond side empty -> 0
  EXPECT_EQ(run_once(*d, 0.5f), 6.0f + (3.0f - 6.0f) * 3.0f);

  FakeModel m1;
  go.cfg = 1.0;
  auto d1 = make_guidance_denoiser(m1.call(), ms, go);
  ASSERT_TRUE(d1.ok());
  EXPECT_EQ(run_once(*d1, 0.5f), 3.0f);
  ASSERT_EQ(m1.calls.size(), 1u);
  EXPECT_EQ(m1.calls[0].first, 2);
}

TEST(Guidance, SkipLayerGuidanceWindow) {
  const FlowModelSampling ms(3.0);
  FakeModel m;
  GuidanceOptions go;
  go.positive = {{0}};
  go.negative = {{1}};
  go.cfg = 4.5;
  go.slg.layers = {7, 8, 9};  // defaults: scale 3, 0.01 .. 0.15
  auto d = make_guidance_denoiser(m.call(), ms, go);
  ASSERT_TRUE(d.ok());
  const float cfg_out = 2.0f + (1.0f - 2.0f) * 4.5f;
  // σ = 1 (step 0 of sgm_uniform) is outside [0.9444, 0.9966]: no extra forward.
  EXPECT_EQ(run_once(*d, 1.0f), cfg_out);
  EXPECT_EQ(m.calls.size(), 2u);
  // Inside: one extra cond forward with layers 7, 8, 9 skipped.
  m.calls.clear();
  EXPECT_EQ(run_once(*d, 0.99155f), cfg_out + (1.0f - 0.25f) * 3.0f);
  ASSERT_EQ(m.calls.size(), 3u);
  EXPECT_EQ(m.calls[2], std::make_pair(0, true));
  EXPECT_EQ(m.last_skip, (std::vector<int>{7, 8, 9}));
  // The window ends at percent_to_sigma(0.15) = 0.9444…: compared in double like ComfyUI's
  // sigma[0].item(); the f32 value just below it is outside.
  const double end = ms.percent_to_sigma(0.15);
  float below = float(end);
  if (double(below) >= end) below = std::nextafter(below, 0.0f);
  m.calls.clear();
  EXPECT_EQ(run_once(*d, below), cfg_out);
  EXPECT_EQ(m.calls.size(), 2u);
  EXPECT_EQ(run_once(*d, 0.5f), cfg_out);
  // Scale 0 disables it.
  go.slg.scale = 0.0;
  FakeModel m0;
  auto d0 = make_guidance_denoiser(m0.call(), ms, go);
  ASSERT_TRUE(d0.ok());
  EXPECT_EQ(run_once(*d0, 0.99155f), cfg_out);
  EXPECT_EQ(m0.calls.size(), 2u);
}

TEST(Guidance, RejectsBadOptions) {
  const FlowModelSampling ms(3.0);
  FakeModel m;
  GuidanceOptions go;
  EXPECT_FALSE(make_guidance_denoiser(m.call(), ms, go).ok());  // no positive
  go.positive = {{0, -0.5, 1.0}};
  EXPECT_FALSE(make_guidance_denoiser(m.call(), ms, go).ok());
  go.positive = {{0}};
  go.cfg = NAN;
  EXPECT_FALSE(make_guidance_denoiser(m.call(), ms, go).ok());
  go.cfg = 4.5;
  EXPECT_FALSE(make_guidance_denoiser(ModelCall(), ms, go).ok());
  EXPECT_TRUE(make_guidance_denoiser(m.call(), ms, go).ok());
}

// The guidance denoiser drives a sampler end to end: model errors propagate.
TEST(Guidance, ModelErrorPropagatesThroughSample) {
  const FlowModelSampling ms(3.0);
  ModelCall bad = [](const Tensor&, float, std::span<const int>, std::span<const int>,
                     std::span<const Tensor>) -> Status {
    return internal_error("boom");
  };
  GuidanceOptions go;
  go.positive = {{0}};
  auto d = make_guidance_denoiser(bad, ms, go);
  ASSERT_TRUE(d.ok());
  Tensor x = filled({1, 1, 2, 2}, 0.5f);
  EXPECT_EQ(sample(Sampler::kDpmpp2m, *d, x, flow_sigmas(3)).code(), StatusCode::kInternal);
}

// ---- uni_pc ----------------------------------------------------------------------------------

// With a constant denoiser D = T the UniPC history differences vanish and the exponential
// integrator is exact: in VE terms every model input is T + σ·(x_start − T)/σ0, the model is
// called at σ0 and then at each intermediate sigma once (corrector), and the result is that
// line at the last sigma (0 → 0.001). bh1 and bh2 agree exactly here.
TEST(Samplers, UniPcConstantTargetClosedForm) {
  const Shape shape{1, 4, 8, 8};
  PointMass pm(shape, 11);
  const float* n = pm.noise.data_as<float>();
  const float* t = pm.target.data_as<float>();
  const std::vector<std::vector<float>> schedules = {
      {1.0f, 0.0f}, {1.0f, 0.5f, 0.0f}, {0.9f, 0.6f, 0.3f, 0.1f}, flow_sigmas(5), flow_sigmas(20)};
  for (const auto& sigmas : schedules) {
    Tensor out_bh[2];
    for (int v = 0; v < 2; ++v) {
      const Sampler s = v == 0 ? Sampler::kUniPc : Sampler::kUniPcBh2;
      SCOPED_TRACE(std::string(sampler_name(s)) + " steps " + std::to_string(sigmas.size() - 1));
      std::vector<float> seen;
      double err = 0;
      const double s0 = sigmas[0];
      Denoiser d = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
        seen.push_back(sigma);
        const float* xp = xin.data_as<float>();
        for (int64_t i = 0; i < xin.numel(); ++i)
          err = std::max(err, std::fabs(double(xp[i]) - (t[i] + sigma * (n[i] - t[i]) / s0)));
        copy_to(pm.target, out);
        return ok_status();
      };
      Tensor x = owned_copy(pm.noise);
      ASSERT_TRUE(sample(s, d, x, sigmas).ok());
      const size_t steps = sigmas.size() - 1;
      ASSERT_EQ(seen.size(), steps);
      for (size_t i = 0; i < steps; ++i) EXPECT_EQ(seen[i], sigmas[i]);
      EXPECT_LE(err, 2e-5);
      const double end = sigmas.back() == 0.0f ? 0.001 : double(sigmas.back());
      double end_err = 0;
      if (steps == 1) {
        // ComfyUI's order is min(3, N − 1) = 0 here: one model call, no update; x is only
        // rescaled by α(end)/α(σ0).
        const double k = std::sqrt((1.0 + end * end) / (1.0 + s0 * s0));
        for (int64_t i = 0; i < x.numel(); ++i)
          end_err = std::max(end_err, std::fabs(x.data_as<float>()[i] - k * n[i]));
      } else {
        for (int64_t i = 0; i < x.numel(); ++i)
          end_err = std::max(end_err,
                             std::fabs(x.data_as<float>()[i] - (t[i] + end * (n[i] - t[i]) / s0)));
      }
      // Ending at 0.001, ComfyUI's f32 σ_vp(0.001) = √(1 − exp(2·logα)) cancels: ~1e-4.
      EXPECT_LE(end_err, sigmas.back() == 0.0f ? 3e-4 : 2e-5);
      out_bh[v] = x;
    }
    // The history differences are rounding noise only, so B(h) hardly matters.
    EXPECT_LE(max_abs_diff(out_bh[0], out_bh[1]), 1e-6);
  }
}

// Gaussian data N(0, v) per element: the ideal VE denoiser is D(x, σ) = x·v/(v + σ²) and the
// exact ODE solution is x(σ) = x(σ0)·√((v + σ²)/(v + σ0²)). UniPC (order 3, UniC corrector)
// must converge at high order: doubling the steps cuts the error by well over 4 (Euler: 2).
// bh1 and bh2 differ (B(h) enters once the history is non-trivial) yet both converge.
TEST(Samplers, UniPcConvergesAtHighOrderOnGaussianData) {
  const Shape shape{1, 1, 4, 4};
  PointMass pm(shape, 5);
  const double v = 0.25;
  auto run = [&](Sampler s, int steps) {
    std::vector<float> sigmas;
    for (int i = 0; i <= steps; ++i)  // log-uniform from 10 to 0.05 (no 0: exact end point)
      sigmas.push_back(float(10.0 * std::pow(0.005, double(i) / steps)));
    Denoiser d = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
      for (int64_t i = 0; i < xin.numel(); ++i)
        out.data_as<float>()[i] =
            float(double(xin.data_as<float>()[i]) * v / (v + double(sigma) * sigma));
      return ok_status();
    };
    Tensor x = owned_copy(pm.noise);
    for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] *= 10.0f;
    EXPECT_TRUE(sample(s, d, x, sigmas).ok());
    const double s0 = sigmas.front(), s1 = sigmas.back();
    const double k = std::sqrt((v + s1 * s1) / (v + s0 * s0));
    double err = 0;
    for (int64_t i = 0; i < x.numel(); ++i)
      err =
          std::max(err, std::fabs(x.data_as<float>()[i] - k * 10.0 * pm.noise.data_as<float>()[i]));
    return err;
  };
  for (Sampler s : {Sampler::kUniPc, Sampler::kUniPcBh2}) {
    SCOPED_TRACE(std::string(sampler_name(s)));
    const double e8 = run(s, 8), e16 = run(s, 16), e32 = run(s, 32);
    std::printf("[uni_pc] %s: err 8 %.3g, 16 %.3g, 32 %.3g\n", std::string(sampler_name(s)).c_str(),
                e8, e16, e32);
    EXPECT_LT(e16, e8 / 5.0);
    EXPECT_LT(e16, 1e-3);  // 32 steps reach the f32 floor (~1e-4)
    EXPECT_LT(e32, 1e-3);
  }
  Tensor a = owned_copy(pm.noise), b = owned_copy(pm.noise);
  Denoiser d = [&](const Tensor& xin, float sigma, const Tensor& out) -> Status {
    for (int64_t i = 0; i < xin.numel(); ++i)
      out.data_as<float>()[i] = xin.data_as<float>()[i] * float(v / (v + sigma * sigma));
    return ok_status();
  };
  ASSERT_TRUE(sample(Sampler::kUniPc, d, a, flow_sigmas(6)).ok());
  ASSERT_TRUE(sample(Sampler::kUniPcBh2, d, b, flow_sigmas(6)).ok());
  EXPECT_GT(max_abs_diff(a, b), 0.0);
}

TEST(Samplers, UniPcDiscardsThePenultimateSigma) {
  EXPECT_TRUE(discards_penultimate_sigma(Sampler::kUniPc));
  EXPECT_TRUE(discards_penultimate_sigma(Sampler::kUniPcBh2));
  FlowModelSampling ms(3.0);
  auto plain = ksampler_sigmas(ms, Scheduler::kSimple, 5, 1.0, false);
  auto disc = ksampler_sigmas(ms, Scheduler::kSimple, 5, 1.0, true);
  auto six = ksampler_sigmas(ms, Scheduler::kSimple, 6, 1.0, false);
  ASSERT_TRUE(plain.ok() && disc.ok() && six.ok());
  ASSERT_EQ(disc->size(), plain->size());
  // The 6-step schedule without its second-to-last sigma.
  std::vector<float> expect = *six;
  expect.erase(expect.end() - 2);
  EXPECT_EQ(*disc, expect);
}

}  // namespace
}  // namespace sd35
