// Noise and schedules against the model-independent goldens (tests/data/tiny-a/common, copies
// of shared/fixtures/common): torch.randn must match bit for bit, the schedules value for value.
// Cases are read from the files (names encode seed/shape and scheduler/steps/denoise), never
// hard-coded, so regenerated fixtures with other cases are covered too.
#include <gtest/gtest.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "sampling/sampling.h"

namespace sd35 {
namespace {

const std::string kCommon = std::string(SD35_TEST_DATA_DIR) + "/tiny-a/common";

std::shared_ptr<const SafetensorsFile> open_golden(const std::string& file) {
  auto f = SafetensorsFile::open(kCommon + "/" + file);
  EXPECT_TRUE(f.ok()) << f.status().to_string();
  return f.ok() ? *f : nullptr;
}

std::vector<float> as_floats(const SafetensorsFile& f, const TensorInfo& info) {
  Tensor t = f.tensor(info);
  EXPECT_EQ(t.dtype(), DType::kF32) << info.name;
  const float* p = t.data_as<const float>();
  return std::vector<float>(p, p + t.numel());
}

// "seed<N>.shape<K>" -> N.
uint64_t seed_of(const std::string& name) {
  EXPECT_EQ(name.rfind("seed", 0), 0u) << name;
  uint64_t seed = 0;
  const char* b = name.data() + 4;
  std::from_chars(b, name.data() + name.size(), seed);
  return seed;
}

// Runs every tensor of a noise golden through prepare_noise and counts differing bits.
void check_noise_file(const std::string& file, RandnKernel kernel, bool exact) {
  auto f = open_golden(file);
  ASSERT_TRUE(f);
  ASSERT_GT(f->size(), 0u);
  for (const auto& info : f->tensors()) {
    SCOPED_TRACE(file + ": " + info.name + " " + info.shape.to_string());
    const std::vector<float> golden = as_floats(*f, info);
    Tensor ours = Tensor::zeros(info.shape, DType::kF32).value();
    ASSERT_TRUE(prepare_noise(seed_of(info.name), ours, kernel).ok());
    const float* p = ours.data_as<const float>();
    int64_t n_diff = 0;
    double max_abs = 0.0;
    for (size_t i = 0; i < golden.size(); ++i) {
      if (std::bit_cast<uint32_t>(p[i]) != std::bit_cast<uint32_t>(golden[i])) ++n_diff;
      max_abs = std::max(max_abs, double(std::fabs(p[i] - golden[i])));
    }
    if (exact) {
      EXPECT_EQ(n_diff, 0) << "max |diff| " << max_abs;
    } else {
      // The libm kernel depends on the C library's logf/sinf/cosf: ulp-level agreement only.
      EXPECT_LE(max_abs, 2e-6) << n_diff << " values differ";
      if (n_diff)
        std::printf("  %s %s: %lld of %zu differ (max %.3g)\n", file.c_str(), info.name.c_str(),
                    (long long)n_diff, golden.size(), max_abs);
    }
  }
}

TEST(Noise, BitExactWithTorchAvx2Kernel) {
  check_noise_file("noise.safetensors", RandnKernel::kAvx2, /*exact=*/true);
}

TEST(Noise, DefaultKernelCloseToTorchScalarKernel) {
  check_noise_file("noise_default_kernel.safetensors", RandnKernel::kDefault, /*exact=*/false);
}

TEST(Noise, SpecVectors) {
  // SPEC-model.md §5.6: seed 0, n = 21 takes the tail path (elements 5..20 re-drawn).
  const float want[21] = {-1.1258398f,  -1.1523602f,  -0.25057858f, -0.43387881f, 0.84871036f,
                          -1.5550951f,  -0.34136039f, 1.8530061f,   0.4680964f,   -0.15771244f,
                          1.4436601f,   0.26604941f,  0.16645534f,  1.5863342f,   0.94629836f,
                          -0.84367675f, 0.93182659f,  1.2590092f,   2.0049806f,   0.053736903f,
                          0.61805665f};
  std::vector<float> got(21);
  TorchGenerator(0).randn(got.data(), 21);
  for (int i = 0; i < 21; ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
  // Only the low 32 bits of the seed matter.
  std::vector<float> a(64), b(64);
  TorchGenerator((uint64_t(1) << 40) + 5).randn(a.data(), 64);
  TorchGenerator(5).randn(b.data(), 64);
  EXPECT_EQ(a, b);
}

TEST(Noise, SmallTensorsUseTheScalarPath) {
  // numel < 16 must not touch the 16-element kernel; values are finite normals and the stream
  // is deterministic.
  std::vector<float> a(7), b(7);
  TorchGenerator(3).randn(a.data(), 7);
  TorchGenerator(3).randn(b.data(), 7);
  EXPECT_EQ(a, b);
  for (float v : a) EXPECT_TRUE(std::isfinite(v) && std::fabs(v) < 8.0f);
}

TEST(Noise, RejectsNonF32) {
  Tensor t = Tensor::zeros({1, 16, 4, 4}, DType::kBF16).value();
  EXPECT_FALSE(prepare_noise(0, t).ok());
}

// ---- schedules ----------------------------------------------------------------------------

struct ScheduleCase {
  std::string scheduler;
  int steps = 0;
  double denoise = 1.0;
  bool has_denoise = false;
};

// "<name>.steps<N>" | "denoise.<name>.steps<N>.d<D>" | "stability.steps<N>" (= normal).
bool parse_case(const std::string& key, ScheduleCase* c) {
  std::string rest = key;
  if (rest.rfind("denoise.", 0) == 0) {
    rest = rest.substr(8);
    const size_t d = rest.rfind(".d");
    if (d == std::string::npos) return false;
    c->denoise = std::stod(rest.substr(d + 2));
    c->has_denoise = true;
    rest = rest.substr(0, d);
  }
  const size_t s = rest.find(".steps");
  if (s == std::string::npos) return false;
  c->scheduler = rest.substr(0, s);
  c->steps = std::stoi(rest.substr(s + 6));
  if (c->scheduler == "stability") c->scheduler = "normal";  // sd3_infer get_sigmas == normal
  return true;
}

TEST(Schedules, ModelSamplingTable) {
  auto f = open_golden("schedules.safetensors");
  ASSERT_TRUE(f);
  const TensorInfo* info = f->find("model_sampling.sigmas");
  ASSERT_NE(info, nullptr);
  const std::vector<float> golden = as_floats(*f, *info);
  FlowModelSampling ms(3.0);
  ASSERT_EQ(ms.sigmas().size(), golden.size());
  for (size_t i = 0; i < golden.size(); ++i) EXPECT_EQ(ms.sigmas()[i], golden[i]) << i;
  EXPECT_EQ(ms.sigma_max(), 1.0f);
  EXPECT_NEAR(ms.sigma_min(), 0.0029940120875835, 1e-12);
  EXPECT_EQ(ms.timestep(1.0f), 1000.0f);
}

TEST(Schedules, EveryGoldenCaseMatches) {
  auto f = open_golden("schedules.safetensors");
  ASSERT_TRUE(f);
  FlowModelSampling ms(3.0);
  int checked = 0;
  for (const auto& info : f->tensors()) {
    ScheduleCase c;
    if (!parse_case(info.name, &c)) continue;
    SCOPED_TRACE(info.name);
    const std::vector<float> golden = as_floats(*f, info);
    auto s = scheduler_from_name(c.scheduler);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    auto got = c.has_denoise ? ksampler_sigmas(ms, *s, c.steps, c.denoise)
                             : calculate_sigmas(ms, *s, c.steps);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    ASSERT_EQ(got->size(), golden.size());
    // karras' `** 7` runs through torch's vectorised Sleef_powf8_u10 for the first 16·k
    // elements; we compute pow in double and round, which can differ by 1 ulp (karras.steps28
    // index 1 does). Everything else is bit-exact.
    const int64_t max_ulp = c.scheduler == "karras" ? 1 : 0;
    for (size_t i = 0; i < golden.size(); ++i) {
      EXPECT_NEAR((*got)[i], golden[i], 1e-6) << "index " << i;  // fixtures README tolerance
      const int64_t ulp = std::llabs(int64_t(std::bit_cast<int32_t>((*got)[i])) -
                                     int64_t(std::bit_cast<int32_t>(golden[i])));
      EXPECT_LE(ulp, max_ulp) << "index " << i << ": " << (*got)[i] << " vs " << golden[i];
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(Schedules, PercentToSigma) {
  FlowModelSampling ms(3.0);
  EXPECT_NEAR(ms.percent_to_sigma(0.01), 0.99664429, 1e-8);
  EXPECT_NEAR(ms.percent_to_sigma(0.15), 0.94444444, 1e-8);
  EXPECT_EQ(ms.percent_to_sigma(0.0), 1.0);
  EXPECT_EQ(ms.percent_to_sigma(-1.0), 1.0);
  EXPECT_EQ(ms.percent_to_sigma(1.0), 0.0);
}

TEST(Schedules, NamesRoundTripAndUnknownFails) {
  for (const char* n : {"simple", "sgm_uniform", "normal", "karras", "exponential", "beta",
                        "ddim_uniform", "linear_quadratic"}) {
    auto s = scheduler_from_name(n);
    ASSERT_TRUE(s.ok()) << n;
    EXPECT_EQ(scheduler_name(*s), n);
  }
  EXPECT_FALSE(scheduler_from_name("Karras").ok());
  EXPECT_FALSE(scheduler_from_name("").ok());
  EXPECT_FALSE(scheduler_from_name("kl_optimal").ok());
}

TEST(Schedules, StepsBelowOneFail) {
  FlowModelSampling ms;
  for (int steps : {0, -1}) {
    EXPECT_FALSE(calculate_sigmas(ms, Scheduler::kSimple, steps).ok());
    EXPECT_FALSE(ksampler_sigmas(ms, Scheduler::kSimple, steps, 1.0).ok());
  }
  EXPECT_FALSE(ksampler_sigmas(ms, Scheduler::kSimple, 20, 1e-12).ok());  // absurd step count
}

TEST(Schedules, DenoiseEdges) {
  FlowModelSampling ms;
  auto full = calculate_sigmas(ms, Scheduler::kSimple, 10);
  auto d1 = ksampler_sigmas(ms, Scheduler::kSimple, 10, 1.0);
  ASSERT_TRUE(full.ok() && d1.ok());
  EXPECT_EQ(*full, *d1);
  auto d0 = ksampler_sigmas(ms, Scheduler::kSimple, 10, 0.0);
  ASSERT_TRUE(d0.ok());
  EXPECT_TRUE(d0->empty());
}

TEST(Schedules, DiscardPenultimateSigma) {
  FlowModelSampling ms;
  auto plain = calculate_sigmas(ms, Scheduler::kSimple, 11);
  auto disc = ksampler_sigmas(ms, Scheduler::kSimple, 10, 1.0, true);
  ASSERT_TRUE(plain.ok() && disc.ok());
  ASSERT_EQ(disc->size(), 11u);
  std::vector<float> want(plain->begin(), plain->end() - 2);
  want.push_back(plain->back());
  EXPECT_EQ(*disc, want);
  EXPECT_TRUE(discards_penultimate_sigma(Sampler::kDpm2));
  EXPECT_FALSE(discards_penultimate_sigma(Sampler::kEuler));
}

// Schedulers without goldens: the ComfyUI structure (first/last values, monotone, length).
TEST(Schedules, UncoveredSchedulersShape) {
  FlowModelSampling ms;
  for (Scheduler s :
       {Scheduler::kExponential, Scheduler::kLinearQuadratic, Scheduler::kDdimUniform}) {
    for (int steps : {1, 4, 28, 40}) {
      SCOPED_TRACE(std::string(scheduler_name(s)) + " " + std::to_string(steps));
      auto r = calculate_sigmas(ms, s, steps);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->back(), 0.0f);
      for (size_t i = 1; i < r->size(); ++i) EXPECT_LT((*r)[i], (*r)[i - 1]);
      if (s != Scheduler::kDdimUniform) {
        EXPECT_EQ(r->size(), size_t(steps) + 1);
        EXPECT_NEAR(r->front(), 1.0f, 1e-6);
      }
    }
  }
  // ddim_uniform, 40 steps (spec §5.4): indices 1, 26, ..., 976, then 0.
  auto d = calculate_sigmas(ms, Scheduler::kDdimUniform, 40);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->size(), 41u);
  EXPECT_EQ(d->front(), ms.sigmas()[976]);
  EXPECT_EQ((*d)[39], ms.sigmas()[1]);
  // linear_quadratic: the first half is linear down to 1 - threshold_noise.
  auto lq = calculate_sigmas(ms, Scheduler::kLinearQuadratic, 4);
  ASSERT_TRUE(lq.ok());
  EXPECT_FLOAT_EQ((*lq)[1], 1.0f - 0.0125f);
  EXPECT_FLOAT_EQ((*lq)[2], 1.0f - 0.025f);
}

}  // namespace
}  // namespace sd35
