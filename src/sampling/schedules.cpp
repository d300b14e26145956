// ComfyUI's discrete-flow model sampling and schedulers (SPEC-model.md §5.1, §5.4), reproducing
// the float32 torch / float64 Python arithmetic of the reference step by step so that the
// schedules equal ComfyUI's bit for bit (tests: common/schedules.safetensors). Compiled with
// -ffp-contract=off: every float operation below is one torch op (one rounding), and the
// few places where torch's own compiled kernels fuse a multiply-add use std::fma explicitly.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "sampling/sampling.h"

namespace sd35 {
namespace {

// ComfyUI time_snr_shift on float32 tensors: python-float scalars are cast to float and every
// op rounds separately.
float time_snr_shift_f32(float alpha, float alpha_minus_1, float t) {
  if (alpha == 1.0f) return t;
  const float num = alpha * t;
  const float den = 1.0f + alpha_minus_1 * t;
  return num / den;
}

// torch.linspace(start, end, steps) for float32 on an AVX2 CPU (torch 1.13,
// RangeFactoriesKernel.cpp): step = (end - start) / (steps - 1); elements before steps/2 are
// start + step·i, the others end - step·(steps - 1 - i). The vectorised loop writes 16 values
// per iteration as two Vectorized<float>::arange(base, step) = base + k·step (k = 0..7), base
// chosen by the first index of each 8; the remainder (< 16) takes the scalar lambda. The
// kernel is built with -mfma and GCC contracts `a + b*c` into an FMA.
std::vector<float> torch_linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> out;
  if (steps <= 0) return out;
  out.resize(size_t(steps));
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / float(steps - 1);
  const int64_t halfway = steps / 2;
  auto scalar_at = [&](int64_t idx) -> float {
    if (idx < halfway) return std::fma(step, float(idx), start);
    return std::fma(-step, float(steps - idx - 1), end);
  };
  constexpr int64_t kVec = 8;
  int64_t i = 0;
  for (; i <= steps - 2 * kVec; i += 2 * kVec) {
    for (int64_t v = i; v < i + 2 * kVec; v += kVec) {
      const float base = scalar_at(v);
      for (int64_t k = 0; k < kVec; ++k) out[size_t(v + k)] = base + float(k) * step;
    }
  }
  for (; i < steps; ++i) out[size_t(i)] = scalar_at(i);
  return out;
}

// Regularised incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes
// betacf), in double: accurate to ~1e-15, which is all scipy's beta.ppf is compared on (the
// result is multiplied by 999 and rounded to an integer).
double betacf(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
  double c = 1.0, d = 1.0 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1.0) < 1e-16) break;
  }
  return h;
}

double betainc(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double lbt =
      std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  const double bt = std::exp(lbt);
  // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
  // I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
  if (x < (a + 1.0) / (a + b + 2.0)) return bt * betacf(a, b, x) / a;
  return 1.0 - bt * betacf(b, a, 1.0 - x) / b;
}

// scipy.stats.beta.ppf(q, a, b): bisection on the monotone CDF down to adjacent doubles.
double beta_ppf(double q, double a, double b) {
  if (q <= 0.0) return 0.0;
  if (q >= 1.0) return 1.0;
  if (a == b && q == 0.5) return 0.5;  // exact by symmetry (rint(0.5·999) must give 500)
  double lo = 0.0, hi = 1.0;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    if (betainc(a, b, mid) < q) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

std::vector<float> simple_scheduler(const FlowModelSampling& ms, int steps) {
  const auto& table = ms.sigmas();
  const double ss = double(table.size()) / steps;
  std::vector<float> sigs;
  for (int x = 0; x < steps; ++x) {
    const int64_t back = 1 + int64_t(x * ss);
    sigs.push_back(table[table.size() - size_t(back)]);
  }
  sigs.push_back(0.0f);
  return sigs;
}

// normal_scheduler(sgm=False/True). For flow, sigma(end) ≈ 0.003 is not ≈ 0 (abs_tol 1e-5),
// so `normal` appends 0 instead of taking an extra step.
std::vector<float> normal_scheduler(const FlowModelSampling& ms, int steps, bool sgm) {
  const float start = ms.timestep(ms.sigma_max());
  const float end = ms.timestep(ms.sigma_min());
  int64_t n = steps;
  bool append_zero = true;
  std::vector<float> ts;
  if (sgm) {
    ts = torch_linspace_f32(start, end, n + 1);
    ts.pop_back();
  } else {
    if (std::fabs(double(ms.sigma(end))) <= 1e-5) {
      n += 1;
      append_zero = false;
    }
    ts = torch_linspace_f32(start, end, n);
  }
  std::vector<float> sigs;
  for (float t : ts) sigs.push_back(ms.sigma(t));
  if (append_zero) sigs.push_back(0.0f);
  return sigs;
}

// k-diffusion get_sigmas_karras with ComfyUI's float(sigma_min/max): the rho-th roots in
// Python double, the ramp arithmetic in float32, `** 7` as torch.pow (std::pow in double,
// rounded; torch's vectorised Sleef powf for the first 16·k elements is within 1 ulp).
std::vector<float> karras_scheduler(const FlowModelSampling& ms, int steps) {
  constexpr double kRho = 7.0;
  const double min_inv_rho = std::pow(double(ms.sigma_min()), 1.0 / kRho);
  const double max_inv_rho = std::pow(double(ms.sigma_max()), 1.0 / kRho);
  const std::vector<float> ramp = torch_linspace_f32(0.0f, 1.0f, steps);
  const float diff = float(min_inv_rho - max_inv_rho);
  const float max_f = float(max_inv_rho);
  std::vector<float> sigs;
  for (float r : ramp) {
    const float v = max_f + r * diff;
    sigs.push_back(float(std::pow(double(v), kRho)));
  }
  sigs.push_back(0.0f);
  return sigs;
}

// get_sigmas_exponential: exp(linspace(log smax, log smin, n)) (torch exp in float).
std::vector<float> exponential_scheduler(const FlowModelSampling& ms, int steps) {
  const std::vector<float> ls = torch_linspace_f32(float(std::log(double(ms.sigma_max()))),
                                                   float(std::log(double(ms.sigma_min()))), steps);
  std::vector<float> sigs;
  for (float v : ls) sigs.push_back(float(std::exp(double(v))));
  sigs.push_back(0.0f);
  return sigs;
}

// beta_scheduler(alpha = beta = 0.6): numpy float64 throughout; consecutive duplicate
// timesteps are skipped, so fewer than steps + 1 values may come back.
std::vector<float> beta_scheduler(const FlowModelSampling& ms, int steps, double alpha = 0.6,
                                  double beta = 0.6) {
  const auto& table = ms.sigmas();
  const double total_timesteps = double(table.size() - 1);
  const double step = 1.0 / steps;  // numpy linspace(0, 1, steps, endpoint=False)
  std::vector<float> sigs;
  double last_t = -1.0;
  for (int i = 0; i < steps; ++i) {
    const double q = 1.0 - double(i) * step;
    const double t = std::nearbyint(beta_ppf(q, alpha, beta) * total_timesteps);  // rint
    if (t != last_t) sigs.push_back(table[size_t(int64_t(t))]);
    last_t = t;
  }
  sigs.push_back(0.0f);
  return sigs;
}

// ddim_scheduler: since sigmas[1] is not ≈ 0 for flow, the list starts as [0];
// ss = max(len // steps, 1); append sigmas[1], sigmas[1 + ss], ... while the index < len; then
// reverse. When steps does not divide 1000 this yields more than steps + 1 values, as ComfyUI.
std::vector<float> ddim_uniform_scheduler(const FlowModelSampling& ms, int steps) {
  const auto& table = ms.sigmas();
  const int64_t len = int64_t(table.size());
  int64_t n = steps;
  std::vector<float> sigs;
  if (std::fabs(double(table[1])) <= 1e-5) {
    n += 1;
  } else {
    sigs.push_back(0.0f);
  }
  const int64_t ss = std::max<int64_t>(len / n, 1);
  for (int64_t x = 1; x < len; x += ss) sigs.push_back(table[size_t(x)]);
  std::reverse(sigs.begin(), sigs.end());
  return sigs;
}

// linear_quadratic_schedule(threshold_noise = 0.025, linear_steps = steps // 2), in Python
// double, then torch.FloatTensor(...) * sigma_max (float32).
std::vector<float> linear_quadratic_scheduler(const FlowModelSampling& ms, int steps) {
  std::vector<double> sched;
  if (steps == 1) {
    sched = {1.0, 0.0};
  } else {
    constexpr double kThreshold = 0.025;
    const int linear_steps = steps / 2;
    for (int i = 0; i < linear_steps; ++i) sched.push_back(i * kThreshold / linear_steps);
    const double diff = linear_steps - kThreshold * steps;
    const int quadratic_steps = steps - linear_steps;
    const double q2 = double(quadratic_steps) * double(quadratic_steps);
    const double quadratic_coef = diff / (linear_steps * q2);
    const double linear_coef = kThreshold / linear_steps - 2 * diff / q2;
    const double constant = quadratic_coef * (double(linear_steps) * double(linear_steps));
    for (int i = linear_steps; i < steps; ++i) {
      sched.push_back(quadratic_coef * (double(i) * double(i)) + linear_coef * i + constant);
    }
    sched.push_back(1.0);
    for (double& x : sched) x = 1.0 - x;
  }
  std::vector<float> sigs;
  for (double x : sched) sigs.push_back(float(x) * ms.sigma_max());
  return sigs;
}

struct NamedScheduler {
  Scheduler s;
  std::string_view name;
};
constexpr std::array<NamedScheduler, 8> kSchedulers = {{
    {Scheduler::kSimple, "simple"},
    {Scheduler::kSgmUniform, "sgm_uniform"},
    {Scheduler::kKarras, "karras"},
    {Scheduler::kExponential, "exponential"},
    {Scheduler::kDdimUniform, "ddim_uniform"},
    {Scheduler::kBeta, "beta"},
    {Scheduler::kNormal, "normal"},
    {Scheduler::kLinearQuadratic, "linear_quadratic"},
}};

// int(steps / denoise) steps are a schedule of that many floats; refuse absurd sizes rather
// than allocate them (denoise 1e-9 would ask for 10^10 steps).
constexpr int64_t kMaxScheduleSteps = 1 << 20;

}  // namespace

// ---- FlowModelSampling ------------------------------------------------------------------------

FlowModelSampling::FlowModelSampling(double shift, double multiplier)
    : shift_(shift), multiplier_(multiplier) {
  // set_parameters: sigma((torch.arange(1, 1001) / 1000) * multiplier) in float32.
  constexpr int kTimesteps = 1000;
  sigmas_.resize(kTimesteps);
  const float mult = float(multiplier_);
  for (int i = 0; i < kTimesteps; ++i) {
    const float t = (float(i + 1) / float(kTimesteps)) * mult;
    sigmas_[size_t(i)] = sigma(t);
  }
}

float FlowModelSampling::sigma(float timestep) const {
  return time_snr_shift_f32(float(shift_), float(shift_ - 1.0), timestep / float(multiplier_));
}

float FlowModelSampling::timestep(float sigma) const { return sigma * float(multiplier_); }

double FlowModelSampling::percent_to_sigma(double percent) const {
  if (percent <= 0.0) return 1.0;
  if (percent >= 1.0) return 0.0;
  const double t = 1.0 - percent;
  if (shift_ == 1.0) return t;
  return shift_ * t / (1 + (shift_ - 1) * t);
}

// ---- schedulers -----------------------------------------------------------------------------

Result<Scheduler> scheduler_from_name(std::string_view name) {
  for (const auto& e : kSchedulers)
    if (e.name == name) return e.s;
  std::string known;
  for (const auto& e : kSchedulers) known += (known.empty() ? "" : ", ") + std::string(e.name);
  return invalid_argument("unknown scheduler '" + std::string(name) + "' (known: " + known + ")");
}

std::string_view scheduler_name(Scheduler s) {
  for (const auto& e : kSchedulers)
    if (e.s == s) return e.name;
  return "unknown";
}

Result<std::vector<float>> calculate_sigmas(const FlowModelSampling& ms, Scheduler s, int steps) {
  if (steps < 1) {
    return invalid_argument("scheduler " + std::string(scheduler_name(s)) +
                            ": steps must be >= 1, got " + std::to_string(steps));
  }
  if (steps > kMaxScheduleSteps) {
    return invalid_argument("scheduler " + std::string(scheduler_name(s)) + ": " +
                            std::to_string(steps) + " steps is more than the supported " +
                            std::to_string(kMaxScheduleSteps));
  }
  switch (s) {
    case Scheduler::kSimple: return simple_scheduler(ms, steps);
    case Scheduler::kSgmUniform: return normal_scheduler(ms, steps, /*sgm=*/true);
    case Scheduler::kNormal: return normal_scheduler(ms, steps, /*sgm=*/false);
    case Scheduler::kKarras: return karras_scheduler(ms, steps);
    case Scheduler::kExponential: return exponential_scheduler(ms, steps);
    case Scheduler::kBeta: return beta_scheduler(ms, steps);
    case Scheduler::kDdimUniform: return ddim_uniform_scheduler(ms, steps);
    case Scheduler::kLinearQuadratic: return linear_quadratic_scheduler(ms, steps);
  }
  return invalid_argument("unknown scheduler value " + std::to_string(int(s)));
}

bool discards_penultimate_sigma(Sampler s) {
  return s == Sampler::kDpm2 || s == Sampler::kUniPc || s == Sampler::kUniPcBh2;
}

Result<std::vector<float>> ksampler_sigmas(const FlowModelSampling& ms, Scheduler s, int steps,
                                           double denoise) {
  return ksampler_sigmas(ms, s, steps, denoise, false);
}

Result<std::vector<float>> ksampler_sigmas(const FlowModelSampling& ms, Scheduler s, int steps,
                                           double denoise, bool discard_penultimate_sigma) {
  if (steps < 1) {
    return invalid_argument("steps must be >= 1, got " + std::to_string(steps));
  }
  if (!std::isfinite(denoise)) return invalid_argument("denoise must be finite");
  // KSampler.calculate_sigmas: one step more, then drop sigmas[-2].
  auto schedule = [&](int64_t n) -> Result<std::vector<float>> {
    if (discard_penultimate_sigma) ++n;
    if (n > kMaxScheduleSteps) {
      return invalid_argument("denoise " + std::to_string(denoise) + " needs " + std::to_string(n) +
                              " schedule steps (more than supported)");
    }
    SD35_ASSIGN_OR_RETURN(std::vector<float> sig, calculate_sigmas(ms, s, int(n)));
    if (discard_penultimate_sigma && sig.size() >= 2) sig.erase(sig.end() - 2);
    return sig;
  };
  if (denoise > 0.9999) return schedule(steps);
  if (denoise <= 0.0) return std::vector<float>{};
  const double new_steps_d = std::floor(double(steps) / denoise);  // int() of a positive value
  if (new_steps_d > double(kMaxScheduleSteps)) {
    return invalid_argument("denoise " + std::to_string(denoise) + " is too small for " +
                            std::to_string(steps) + " steps");
  }
  SD35_ASSIGN_OR_RETURN(std::vector<float> full, schedule(int64_t(new_steps_d)));
  // sigmas[-(steps + 1):]
  const size_t keep = std::min(full.size(), size_t(steps) + 1);
  return std::vector<float>(full.end() - std::ptrdiff_t(keep), full.end());
}

}  // namespace sd35
