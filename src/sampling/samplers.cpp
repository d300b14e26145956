// The k-diffusion samplers as ComfyUI runs them for SD3 (SPEC-model.md §5.5), ported from
// comfy/k_diffusion/sampling.py. Every scalar coefficient is computed in f32 exactly as the
// 0-dim torch tensors do it (same operation order), and every tensor expression is evaluated
// one torch op at a time, so the rounding matches ComfyUI's f32 CPU results. Plain loops: the
// latents are small next to an MMDiT forward, and the baseline ISA has no FMA to contract into.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>

#include "sampling/sampling.h"

namespace sd35 {

namespace detail {
// samplers_unipc.cpp: ComfyUI's sample_unipc (bh1, or bh2 for uni_pc_bh2).
Status sample_unipc(const Denoiser& denoiser, const SampleOptions& options, const Tensor& x,
                    const std::vector<float>& sigmas, bool bh2);
}  // namespace detail

namespace {

constexpr std::pair<std::string_view, Sampler> kSamplerNames[] = {
    {"euler", Sampler::kEuler},         {"euler_ancestral", Sampler::kEulerAncestral},
    {"heun", Sampler::kHeun},           {"dpm_2", Sampler::kDpm2},
    {"dpmpp_2m", Sampler::kDpmpp2m},    {"dpmpp_2m_sde", Sampler::kDpmpp2mSde},
    {"dpmpp_sde", Sampler::kDpmppSde},  {"lms", Sampler::kLms},
    {"uni_pc", Sampler::kUniPc},        {"ddim", Sampler::kDdim},
    {"uni_pc_bh2", Sampler::kUniPcBh2},
};

float* f32(const Tensor& t) { return t.data_as<float>(); }

// Shared per-run state: the denoiser call with its cancellation check, and progress.
class Run {
 public:
  Run(const Denoiser& denoiser, const SampleOptions& options, int total)
      : denoiser_(denoiser), options_(options), total_(total) {}

  // D(x, sigma) into `out`; cancellation is checked before every model call (a step of a
  // two-evaluation sampler can be interrupted between its evaluations).
  Status denoise(const Tensor& x, float sigma, const Tensor& out) const {
    if (options_.cancelled && options_.cancelled()) return cancelled("sampling cancelled");
    return denoiser_(x, sigma, out);
  }
  void step_done(int i) const {
    if (options_.progress) options_.progress(i + 1, total_);
  }

 private:
  const Denoiser& denoiser_;
  const SampleOptions& options_;
  int total_;
};

// x = D, used by several samplers for the final step to sigma 0.
void copy_into(float* x, const float* d, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] = d[j];
}

// sample_euler with s_churn = 0 (and ddim, which ComfyUI maps to euler: samplers.py
// sampler_object("ddim") = ksampler("euler", inpaint_options={"random": True}); the inpaint
// option only matters with a denoise mask). d = to_d(x, σ, D) = (x − D)/σ; x += d·(σ' − σ).
Status sample_euler(const Run& run, const Tensor& x, const std::vector<float>& s) {
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  float *xp = f32(x), *dp = f32(den);
  const int64_t n = x.numel();
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    const float dt = s[i + 1] - s[i];
    for (int64_t j = 0; j < n; ++j) {
      const float d = (xp[j] - dp[j]) / s[i];
      xp[j] = xp[j] + d * dt;
    }
    run.step_done(int(i));
  }
  return ok_status();
}

// sample_euler_ancestral_RF (flow models), eta = 1, s_noise = 1. ComfyUI's
// default_noise_sampler on a CPU latent seeds a fresh torch CPU generator with seed + 1 (so
// the first draw differs from the initial noise) and draws one randn(x.shape) per step that
// has σ_{i+1} > 0.
Status sample_euler_ancestral_rf(const Run& run, const Tensor& x, const std::vector<float>& s,
                                 uint64_t seed) {
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor noise, Tensor::zeros(x.shape(), DType::kF32));
  float *xp = f32(x), *dp = f32(den), *np = f32(noise);
  const int64_t n = x.numel();
  TorchGenerator gen(seed + 1);
  constexpr float eta = 1.0f, s_noise = 1.0f;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    if (s[i + 1] == 0.0f) {
      copy_into(xp, dp, n);
    } else {
      const float downstep_ratio = 1.0f + (s[i + 1] / s[i] - 1.0f) * eta;
      const float sigma_down = s[i + 1] * downstep_ratio;
      const float alpha_ip1 = 1.0f - s[i + 1];
      const float alpha_down = 1.0f - sigma_down;
      // (σ'^2 − σ_down^2·α'^2/α_down^2)^0.5, left to right as in Python.
      const float renoise =
          std::sqrt(s[i + 1] * s[i + 1] -
                    sigma_down * sigma_down * (alpha_ip1 * alpha_ip1) / (alpha_down * alpha_down));
      const float ratio = sigma_down / s[i];
      const float one_minus_ratio = 1.0f - ratio;
      const float alpha_ratio = alpha_ip1 / alpha_down;
      gen.randn(np, n);
      for (int64_t j = 0; j < n; ++j) {
        const float e = ratio * xp[j] + one_minus_ratio * dp[j];
        const float r = np[j] * s_noise * renoise;
        xp[j] = alpha_ratio * e + r;
      }
    }
    run.step_done(int(i));
  }
  return ok_status();
}

// sample_heun (s_churn = 0): Euler predictor, trapezoidal corrector; 2 calls per step except
// the last step to σ = 0.
Status sample_heun(const Run& run, const Tensor& x, const std::vector<float>& s) {
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor dten, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor x2, Tensor::zeros(x.shape(), DType::kF32));
  float *xp = f32(x), *dp = f32(den), *d = f32(dten), *x2p = f32(x2);
  const int64_t n = x.numel();
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    const float dt = s[i + 1] - s[i];
    for (int64_t j = 0; j < n; ++j) d[j] = (xp[j] - dp[j]) / s[i];
    if (s[i + 1] == 0.0f) {
      for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] + d[j] * dt;
    } else {
      for (int64_t j = 0; j < n; ++j) x2p[j] = xp[j] + d[j] * dt;
      SD35_RETURN_IF_ERROR(run.denoise(x2, s[i + 1], den));
      for (int64_t j = 0; j < n; ++j) {
        const float d2 = (x2p[j] - dp[j]) / s[i + 1];
        const float d_prime = (d[j] + d2) / 2.0f;
        xp[j] = xp[j] + d_prime * dt;
      }
    }
    run.step_done(int(i));
  }
  return ok_status();
}

// sample_dpm_2 (s_churn = 0): midpoint in log σ. The scheduler side (dropping the penultimate
// sigma, DISCARD_PENULTIMATE_SIGMA_SAMPLERS) is the caller's business.
Status sample_dpm_2(const Run& run, const Tensor& x, const std::vector<float>& s) {
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor dten, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor x2, Tensor::zeros(x.shape(), DType::kF32));
  float *xp = f32(x), *dp = f32(den), *d = f32(dten), *x2p = f32(x2);
  const int64_t n = x.numel();
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    for (int64_t j = 0; j < n; ++j) d[j] = (xp[j] - dp[j]) / s[i];
    if (s[i + 1] == 0.0f) {
      const float dt = s[i + 1] - s[i];
      for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] + d[j] * dt;
    } else {
      // sigma_hat.log().lerp(sigmas[i+1].log(), 0.5).exp(); torch's lerp with weight >= 0.5
      // computes end − (end − start)·(1 − weight).
      const float a = std::log(s[i]), b = std::log(s[i + 1]);
      const float sigma_mid = std::exp(b - (b - a) * (1.0f - 0.5f));
      const float dt_1 = sigma_mid - s[i];
      const float dt_2 = s[i + 1] - s[i];
      for (int64_t j = 0; j < n; ++j) x2p[j] = xp[j] + d[j] * dt_1;
      SD35_RETURN_IF_ERROR(run.denoise(x2, sigma_mid, den));
      for (int64_t j = 0; j < n; ++j) {
        const float d2 = (x2p[j] - dp[j]) / sigma_mid;
        xp[j] = xp[j] + d2 * dt_2;
      }
    }
    run.step_done(int(i));
  }
  return ok_status();
}

// sample_dpmpp_2m: t = −ln σ, σ-space exponential integrator with a second-order correction
// from the previous denoised. sigma_fn(t) = exp(−t) is re-derived from t (not σ) on purpose:
// it rounds differently from σ and ComfyUI uses it.
Status sample_dpmpp_2m(const Run& run, const Tensor& x, const std::vector<float>& s) {
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor old, Tensor::zeros(x.shape(), DType::kF32));
  float *xp = f32(x), *dp = f32(den), *op = f32(old);
  const int64_t n = x.numel();
  auto t_fn = [](float sigma) { return -std::log(sigma); };
  auto sigma_fn = [](float t) { return std::exp(-t); };
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    if (s[i + 1] == 0.0f) {
      // (0/σ)·x − expm1(−inf)·D = D exactly.
      copy_into(xp, dp, n);
    } else {
      const float t = t_fn(s[i]), t_next = t_fn(s[i + 1]);
      const float h = t_next - t;
      const float ratio = sigma_fn(t_next) / sigma_fn(t);
      const float em = std::expm1(-h);
      if (i == 0) {
        for (int64_t j = 0; j < n; ++j) xp[j] = ratio * xp[j] - em * dp[j];
      } else {
        const float h_last = t - t_fn(s[i - 1]);
        const float r = h_last / h;
        const float c = 1.0f / (2.0f * r);
        const float c1 = 1.0f + c;
        for (int64_t j = 0; j < n; ++j) {
          const float dd = c1 * dp[j] - c * op[j];
          xp[j] = ratio * xp[j] - em * dd;
        }
      }
    }
    copy_into(op, dp, n);
    run.step_done(int(i));
  }
  return ok_status();
}

// linear_multistep_coeff(order, t, i, j): ∫_{t_i}^{t_{i+1}} Π_{k≠j} (τ − t_{i−k})/(t_{i−j} −
// t_{i−k}) dτ. ComfyUI integrates with scipy quad (epsrel 1e-4), which is exact to rounding
// for these polynomials of degree ≤ 3; 4-point Gauss–Legendre is exact up to degree 7.
double linear_multistep_coeff(int order, const std::vector<float>& t, int i, int j) {
  auto fn = [&](double tau) {
    double prod = 1.0;
    for (int k = 0; k < order; ++k) {
      if (k == j) continue;
      prod *=
          (tau - double(t[size_t(i - k)])) / (double(t[size_t(i - j)]) - double(t[size_t(i - k)]));
    }
    return prod;
  };
  static constexpr std::array<double, 4> kNodes = {-0.8611363115940526, -0.3399810435848563,
                                                   0.3399810435848563, 0.8611363115940526};
  static constexpr std::array<double, 4> kWeights = {0.3478548451374538, 0.6521451548625461,
                                                     0.6521451548625461, 0.3478548451374538};
  const double a = t[size_t(i)], b = t[size_t(i + 1)];
  const double half = 0.5 * (b - a), mid = 0.5 * (a + b);
  double sum = 0.0;
  for (int q = 0; q < 4; ++q) sum += kWeights[size_t(q)] * fn(mid + half * kNodes[size_t(q)]);
  return sum * half;
}

// sample_lms, order 4: Adams–Bashforth in σ over the last `order` derivatives. The last step to
// σ = 0 is x = D (ComfyUI's "denoising step").
Status sample_lms(const Run& run, const Tensor& x, const std::vector<float>& s) {
  constexpr int kOrder = 4;
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor acc, Tensor::zeros(x.shape(), DType::kF32));
  std::vector<Tensor> ds;  // oldest first, at most kOrder
  std::vector<Tensor> spare;
  float *xp = f32(x), *dp = f32(den), *ap = f32(acc);
  const int64_t n = x.numel();
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    Tensor d;
    if (!spare.empty()) {
      d = spare.back();
      spare.pop_back();
    } else {
      SD35_ASSIGN_OR_RETURN(d, Tensor::zeros(x.shape(), DType::kF32));
    }
    float* dd = f32(d);
    for (int64_t j = 0; j < n; ++j) dd[j] = (xp[j] - dp[j]) / s[i];
    ds.push_back(d);
    if (int(ds.size()) > kOrder) {
      spare.push_back(ds.front());
      ds.erase(ds.begin());
    }
    if (s[i + 1] == 0.0f) {
      copy_into(xp, dp, n);
    } else {
      const int cur_order = std::min(int(i) + 1, kOrder);
      // sum(coeff·d for coeff, d in zip(coeffs, reversed(ds))): the Python float coefficient
      // is rounded to f32 by torch's mul; the sum starts from 0 and adds left to right.
      for (int k = 0; k < cur_order; ++k) {
        const float c = float(linear_multistep_coeff(cur_order, s, int(i), k));
        const float* dk = f32(ds[ds.size() - 1 - size_t(k)]);
        if (k == 0) {
          for (int64_t j = 0; j < n; ++j) ap[j] = c * dk[j];
        } else {
          for (int64_t j = 0; j < n; ++j) ap[j] = ap[j] + c * dk[j];
        }
      }
      for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] + ap[j];
    }
    run.step_done(int(i));
  }
  return ok_status();
}

// The half-log-SNR of CONST (flow) model sampling: λ = −logit(σ) (torch logit in f32).
float half_log_snr(float sigma) { return -std::log(sigma / (1.0f - sigma)); }
// Its inverse: σ = sigmoid(−λ).
float sigma_of_half_log_snr(float lambda) { return 1.0f / (1.0f + std::exp(lambda)); }

// offset_first_sigma_for_snr: for CONST a first σ ≥ 1 (λ = −inf) becomes
// percent_to_sigma(1e-4), which the model is then also evaluated at.
std::vector<float> offset_first_sigma(std::vector<float> s, double shift) {
  if (s.size() > 1 && s[0] >= 1.0f) {
    const double t = 1.0 - 1e-4;
    s[0] = float(shift * t / (1.0 + (shift - 1.0) * t));
  }
  return s;
}

// Substitute for ComfyUI's BrownianTreeNoiseSampler (torchsde, not reproducible here): a
// Brownian motion W over σ built from TorchGenerator normal draws, sampled forward in
// decreasing σ. It returns the same statistics as the tree — (W(σ) − W(σ'))/sqrt(|σ − σ'|) is
// standard normal, disjoint intervals are independent and nested intervals that share their
// start (dpmpp_sde's two draws per step) are correlated exactly as a Brownian path — but not
// the same numbers.
class BrownianNoise {
 public:
  BrownianNoise(uint64_t seed, int64_t n) : gen_(seed), n_(n), z1_(size_t(n)), z2_(size_t(n)) {}

  // Normalised increment over [σ_i, σ_mid] (first call of a step).
  void first(float sigma, float sigma_mid, float* out) {
    gen_.randn(z1_.data(), n_);
    a_ = double(sigma) - double(sigma_mid);
    for (int64_t j = 0; j < n_; ++j) out[j] = z1_[size_t(j)];
  }
  // Normalised increment over [σ_i, σ_next], σ_next < σ_mid, consistent with first().
  void nested(float sigma_mid, float sigma_next, float* out) {
    gen_.randn(z2_.data(), n_);
    const double b = double(sigma_mid) - double(sigma_next);
    const double wa = std::sqrt(std::fabs(a_)), wb = std::sqrt(std::fabs(b));
    const double norm = std::sqrt(std::fabs(a_) + std::fabs(b));
    for (int64_t j = 0; j < n_; ++j)
      out[j] = float((wa * z1_[size_t(j)] + wb * z2_[size_t(j)]) / norm);
  }
  // Normalised increment over a fresh interval, independent of all earlier ones.
  void fresh(float* out) { gen_.randn(out, n_); }

 private:
  TorchGenerator gen_;
  int64_t n_;
  std::vector<float> z1_, z2_;
  double a_ = 0;
};

// sample_dpmpp_2m_sde, eta 1, s_noise 1, midpoint solver, in flow λ = −logit(σ).
Status sample_dpmpp_2m_sde(const Run& run, const Tensor& x, const std::vector<float>& sigmas_in,
                           uint64_t seed, double shift) {
  const std::vector<float> s = offset_first_sigma(sigmas_in, shift);
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor old, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor noise, Tensor::zeros(x.shape(), DType::kF32));
  float *xp = f32(x), *dp = f32(den), *op = f32(old), *np = f32(noise);
  const int64_t n = x.numel();
  BrownianNoise bn(seed, n);
  constexpr float eta = 1.0f, s_noise = 1.0f;
  bool have_old = false;
  float h = 0, h_last = 0;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    if (s[i + 1] == 0.0f) {
      copy_into(xp, dp, n);
    } else {
      const float lambda_s = half_log_snr(s[i]), lambda_t = half_log_snr(s[i + 1]);
      h = lambda_t - lambda_s;
      const float h_eta = h * (eta + 1.0f);
      const float alpha_t = s[i + 1] * std::exp(lambda_t);
      const float c1 = s[i + 1] / s[i] * std::exp(-h * eta);
      const float neg_em = -std::expm1(-h_eta);
      const float c2 = alpha_t * neg_em;
      for (int64_t j = 0; j < n; ++j) xp[j] = c1 * xp[j] + c2 * dp[j];
      if (have_old) {
        const float r = h_last / h;
        const float c3 = 0.5f * alpha_t * neg_em * (1.0f / r);
        for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] + c3 * (dp[j] - op[j]);
      }
      bn.fresh(np);
      const float c4 = std::sqrt(-std::expm1(-2.0f * h * eta));
      for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] + np[j] * s[i + 1] * c4 * s_noise;
    }
    copy_into(op, dp, n);
    have_old = true;
    h_last = h;
    run.step_done(int(i));
  }
  return ok_status();
}

// get_ancestral_step(σ_from, σ_to, eta) -> (σ_down, σ_up).
std::pair<float, float> ancestral_step(float from, float to, float eta) {
  if (eta == 0.0f) return {to, 0.0f};
  const float up = std::min(to, eta * std::sqrt(to * to * (from * from - to * to) / (from * from)));
  const float down = std::sqrt(to * to - up * up);
  return {down, up};
}

// sample_dpmpp_sde (DPM-Solver++ SDE, r = 1/2, eta 1, s_noise 1), 2 calls per step.
Status sample_dpmpp_sde(const Run& run, const Tensor& x, const std::vector<float>& sigmas_in,
                        uint64_t seed, double shift) {
  const std::vector<float> s = offset_first_sigma(sigmas_in, shift);
  SD35_ASSIGN_OR_RETURN(Tensor den, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor den2, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor x2, Tensor::zeros(x.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor noise, Tensor::zeros(x.shape(), DType::kF32));
  float *xp = f32(x), *dp = f32(den), *d2p = f32(den2), *x2p = f32(x2), *np = f32(noise);
  const int64_t n = x.numel();
  BrownianNoise bn(seed, n);
  constexpr float eta = 1.0f, s_noise = 1.0f, r = 0.5f;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    SD35_RETURN_IF_ERROR(run.denoise(x, s[i], den));
    if (s[i + 1] == 0.0f) {
      copy_into(xp, dp, n);
    } else {
      const float lambda_s = half_log_snr(s[i]), lambda_t = half_log_snr(s[i + 1]);
      const float h = lambda_t - lambda_s;
      const float lambda_s_1 = lambda_s + r * h;
      const float fac = 1.0f / (2.0f * r);
      const float sigma_s_1 = sigma_of_half_log_snr(lambda_s_1);
      const float alpha_s = s[i] * std::exp(lambda_s);
      const float alpha_s_1 = sigma_s_1 * std::exp(lambda_s_1);
      const float alpha_t = s[i + 1] * std::exp(lambda_t);
      // Step 1.
      auto [sd1, su1] = ancestral_step(std::exp(-lambda_s), std::exp(-lambda_s_1), eta);
      float h_ = -std::log(sd1) - lambda_s;
      float c1 = alpha_s_1 / alpha_s * std::exp(-h_);
      float c2 = alpha_s_1 * std::expm1(-h_);
      for (int64_t j = 0; j < n; ++j) x2p[j] = c1 * xp[j] - c2 * dp[j];
      bn.first(s[i], sigma_s_1, np);
      for (int64_t j = 0; j < n; ++j) x2p[j] = x2p[j] + alpha_s_1 * np[j] * s_noise * su1;
      SD35_RETURN_IF_ERROR(run.denoise(x2, sigma_s_1, den2));
      // Step 2.
      auto [sd2, su2] = ancestral_step(std::exp(-lambda_s), std::exp(-lambda_t), eta);
      h_ = -std::log(sd2) - lambda_s;
      c1 = alpha_t / alpha_s * std::exp(-h_);
      c2 = alpha_t * std::expm1(-h_);
      const float one_minus_fac = 1.0f - fac;
      for (int64_t j = 0; j < n; ++j) {
        const float dd = one_minus_fac * dp[j] + fac * d2p[j];
        xp[j] = c1 * xp[j] - c2 * dd;
      }
      bn.nested(sigma_s_1, s[i + 1], np);
      for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] + alpha_t * np[j] * s_noise * su2;
    }
    run.step_done(int(i));
  }
  return ok_status();
}

}  // namespace

Result<Sampler> sampler_from_name(std::string_view name) {
  for (const auto& [n, s] : kSamplerNames)
    if (n == name) return s;
  std::string known;
  for (const auto& [n, s] : kSamplerNames) known += (known.empty() ? "" : ", ") + std::string(n);
  return invalid_argument("unknown sampler '" + std::string(name) + "' (known: " + known + ")");
}

std::string_view sampler_name(Sampler s) {
  for (const auto& [n, v] : kSamplerNames)
    if (v == s) return n;
  return "unknown";
}

Status sample(Sampler sampler, const Denoiser& denoiser, const Tensor& x,
              const std::vector<float>& sigmas, const SampleOptions& options) {
  if (!denoiser) return invalid_argument("sample: no denoiser");
  if (x.dtype() != DType::kF32 || x.device() != Device::kCPU || !x.is_contiguous() ||
      x.data() == nullptr)
    return invalid_argument("sample: x must be a contiguous f32 CPU tensor, got " + x.describe());
  for (float v : sigmas)
    if (!std::isfinite(v) || v < 0.0f)
      return invalid_argument("sample: sigmas must be finite and >= 0");
  // ComfyUI returns the latent unchanged for an empty or one-entry schedule.
  if (sigmas.size() < 2) return ok_status();
  for (size_t i = 0; i + 1 < sigmas.size(); ++i)
    if (sigmas[i] == 0.0f) return invalid_argument("sample: only the last sigma may be 0");
  const Run run(denoiser, options, int(sigmas.size()) - 1);
  switch (sampler) {
    case Sampler::kEuler:
    case Sampler::kDdim: return sample_euler(run, x, sigmas);
    case Sampler::kEulerAncestral: return sample_euler_ancestral_rf(run, x, sigmas, options.seed);
    case Sampler::kHeun: return sample_heun(run, x, sigmas);
    case Sampler::kDpm2: return sample_dpm_2(run, x, sigmas);
    case Sampler::kDpmpp2m: return sample_dpmpp_2m(run, x, sigmas);
    case Sampler::kLms: return sample_lms(run, x, sigmas);
    case Sampler::kDpmpp2mSde:
      return sample_dpmpp_2m_sde(run, x, sigmas, options.seed, options.shift);
    case Sampler::kDpmppSde: return sample_dpmpp_sde(run, x, sigmas, options.seed, options.shift);
    case Sampler::kUniPc: return detail::sample_unipc(denoiser, options, x, sigmas, false);
    case Sampler::kUniPcBh2: return detail::sample_unipc(denoiser, options, x, sigmas, true);
  }
  return invalid_argument("sample: unknown sampler");
}

}  // namespace sd35
