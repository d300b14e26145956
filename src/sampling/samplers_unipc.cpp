// uni_pc / uni_pc_bh2 as ComfyUI runs them (comfy/extra_samplers/uni_pc.py:sample_unipc, SPEC
// §5.5): the sigmas are read as VE noise levels (SigmaConvert: α = 1/√(1+σ²), σ_vp = σ·α), the
// last sigma 0 becomes 0.001, x is scaled to VP by 1/√(1+σ0²), the model's denoised D(x_ve, σ)
// is turned into ε = (x_ve − D)/σ and back to x0 = (x_vp − σ_vp·ε)/α, and the multistep
// predict-x0 UniPC B(h) update (bh1: B = −h, bh2: B = expm1(−h)) runs with order min(3, N − 1)
// and lower_order_final; finally x /= α(σ_last). With the 0.001 end the result keeps 0.001 of
// the noise: that is ComfyUI's behaviour, reproduced here.
//
// Scalars are f32 computed in the order the 0-dim torch tensors compute them, tensor ops one at
// a time. Not guaranteed bit-exact with torch: torch.linalg.solve (LAPACK/MKL LU) is replaced by
// a plain partial-pivot LU, and the einsum over ≤ 2 history terms is a left-to-right sum.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "sampling/sampling.h"

namespace sd35::detail {

namespace {

float* f32(const Tensor& t) { return t.data_as<float>(); }

// SigmaConvert, op by op.
float log_mean_coeff(float s) {
  const float p = s * s + 1.0f;
  return 0.5f * std::log(1.0f / p);
}
float marginal_alpha(float s) { return std::exp(log_mean_coeff(s)); }
float marginal_std(float s) { return std::sqrt(1.0f - std::exp(2.0f * log_mean_coeff(s))); }
float marginal_lambda(float s) {
  const float l = log_mean_coeff(s);
  const float log_std = 0.5f * std::log(1.0f - std::exp(2.0f * l));
  return l - log_std;
}

// Solves the n×n system (n ≤ 3) by LU with partial pivoting (first maximal pivot, reciprocal
// scaling of the column, as LAPACK sgetf2), then the two triangular solves.
std::vector<float> solve(std::vector<std::vector<float>> a, std::vector<float> b) {
  const size_t n = b.size();
  for (size_t k = 0; k < n; ++k) {
    size_t p = k;
    for (size_t i = k + 1; i < n; ++i)
      if (std::fabs(a[i][k]) > std::fabs(a[p][k])) p = i;
    std::swap(a[k], a[p]);
    std::swap(b[k], b[p]);
    const float r = 1.0f / a[k][k];
    for (size_t i = k + 1; i < n; ++i) a[i][k] *= r;
    for (size_t i = k + 1; i < n; ++i)
      for (size_t j = k + 1; j < n; ++j) a[i][j] -= a[i][k] * a[k][j];
  }
  for (size_t k = 0; k < n; ++k)
    for (size_t i = k + 1; i < n; ++i) b[i] -= b[k] * a[i][k];
  for (size_t k = n; k-- > 0;) {
    b[k] /= a[k][k];
    for (size_t i = 0; i < k; ++i) b[i] -= b[k] * a[i][k];
  }
  return b;
}

class UniPc {
 public:
  UniPc(const Denoiser& denoiser, const SampleOptions& options, bool bh2, int64_t n)
      : denoiser_(denoiser), options_(options), bh2_(bh2), n_(n) {}

  // data_prediction_fn(x, σ) with ComfyUI's predict_eps_sigma: x0 into `out`.
  Status model_fn(const Tensor& x, float sigma, const Tensor& out) const {
    if (options_.cancelled && options_.cancelled()) return cancelled("sampling cancelled");
    SD35_ASSIGN_OR_RETURN(Tensor in, Tensor::zeros(x.shape(), DType::kF32));
    const float scale = std::sqrt(sigma * sigma + 1.0f);
    const float* xp = f32(x);
    float *ip = f32(in), *op = f32(out);
    for (int64_t j = 0; j < n_; ++j) ip[j] = xp[j] * scale;
    SD35_RETURN_IF_ERROR(denoiser_(in, sigma, out));
    const float a = marginal_alpha(sigma), st = marginal_std(sigma);
    for (int64_t j = 0; j < n_; ++j) {
      const float eps = (ip[j] - op[j]) / sigma;
      op[j] = (xp[j] - st * eps) / a;
    }
    return ok_status();
  }

  // multistep_uni_pc_bh_update (predict_x0) from the last `order` entries of models/ts to
  // t, in place on x. With the corrector, the model value at the predicted point goes to
  // *model_t (a fresh tensor).
  Status update(const Tensor& x, const std::vector<Tensor>& models, const std::vector<float>& ts,
                float t, int order, bool use_corrector, Tensor* model_t) const {
    const size_t last = ts.size() - 1;
    const float t0 = ts[last];
    const float* m0 = f32(models[last]);
    const float lambda_prev_0 = marginal_lambda(t0), lambda_t = marginal_lambda(t);
    const float sigma_prev_0 = marginal_std(t0), sigma_t = marginal_std(t);
    const float alpha_t = std::exp(log_mean_coeff(t));
    const float h = lambda_t - lambda_prev_0;

    std::vector<float> rks;
    std::vector<std::vector<float>> d1s;
    for (int i = 1; i < order; ++i) {
      const float* mi = f32(models[last - size_t(i)]);
      const float rk = (marginal_lambda(ts[last - size_t(i)]) - lambda_prev_0) / h;
      rks.push_back(rk);
      std::vector<float> d(static_cast<size_t>(n_));
      for (int64_t j = 0; j < n_; ++j) d[size_t(j)] = (mi[j] - m0[j]) / rk;
      d1s.push_back(std::move(d));
    }
    rks.push_back(1.0f);

    const float hh = -h;
    const float h_phi_1 = std::expm1(hh);
    float h_phi_k = h_phi_1 / hh - 1.0f;
    int factorial_i = 1;
    const float b_h = bh2_ ? std::expm1(hh) : hh;
    std::vector<std::vector<float>> r;
    std::vector<float> b;
    for (int i = 1; i <= order; ++i) {
      std::vector<float> row;
      for (float rk : rks) row.push_back(i == 1 ? 1.0f : i == 2 ? rk : rk * rk);
      r.push_back(std::move(row));
      b.push_back(h_phi_k * float(factorial_i) / b_h);
      factorial_i *= i + 1;
      h_phi_k = h_phi_k / hh - float(1.0 / factorial_i);
    }

    std::vector<float> rhos_p, rhos_c;
    if (!d1s.empty()) {
      if (order == 2) {
        rhos_p = {0.5f};
      } else {
        std::vector<std::vector<float>> rp(r.begin(), r.end() - 1);
        for (auto& row : rp) row.pop_back();
        rhos_p = solve(rp, std::vector<float>(b.begin(), b.end() - 1));
      }
    }
    if (use_corrector) rhos_c = order == 1 ? std::vector<float>{0.5f} : solve(r, b);

    const float ratio = sigma_t / sigma_prev_0;
    const float c0 = alpha_t * h_phi_1;
    const float cb = alpha_t * b_h;
    float* xp = f32(x);
    std::vector<float> x_t_(static_cast<size_t>(n_));
    for (int64_t j = 0; j < n_; ++j) x_t_[size_t(j)] = ratio * xp[j] - c0 * m0[j];
    // einsum('k,bkchw->bchw', rhos, D1s) over the first rhos.size() history differences.
    auto residual = [&](const std::vector<float>& rhos, size_t k_count, int64_t j) {
      float acc = rhos[0] * d1s[0][size_t(j)];
      for (size_t k = 1; k < k_count; ++k) acc += rhos[k] * d1s[k][size_t(j)];
      return acc;
    };
    // Predictor.
    for (int64_t j = 0; j < n_; ++j)
      xp[j] =
          d1s.empty() ? x_t_[size_t(j)] : x_t_[size_t(j)] - cb * residual(rhos_p, d1s.size(), j);
    if (!use_corrector) return ok_status();
    // Corrector.
    SD35_ASSIGN_OR_RETURN(*model_t, Tensor::zeros(x.shape(), DType::kF32));
    SD35_RETURN_IF_ERROR(model_fn(x, t, *model_t));
    const float* mt = f32(*model_t);
    const float rho_last = rhos_c.back();
    for (int64_t j = 0; j < n_; ++j) {
      const float d1_t = mt[j] - m0[j];
      const float term = rho_last * d1_t;
      const float sum = d1s.empty() ? term : residual(rhos_c, d1s.size(), j) + term;
      xp[j] = x_t_[size_t(j)] - cb * sum;
    }
    return ok_status();
  }

 private:
  const Denoiser& denoiser_;
  const SampleOptions& options_;
  bool bh2_;
  int64_t n_;
};

}  // namespace

Status sample_unipc(const Denoiser& denoiser, const SampleOptions& options, const Tensor& x,
                    const std::vector<float>& sigmas, bool bh2) {
  std::vector<float> ts = sigmas;
  if (ts.back() == 0.0f) ts.back() = 0.001f;
  const int steps = int(ts.size()) - 1;
  const int order = std::min(3, steps - 1);
  const int64_t n = x.numel();
  float* xp = f32(x);
  const float scale0 = std::sqrt(1.0f + ts[0] * ts[0]);
  for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] / scale0;

  const UniPc uni(denoiser, options, bh2, n);
  std::vector<Tensor> models;
  std::vector<float> tlist;
  for (int step_index = 0; step_index < steps; ++step_index) {
    if (step_index == 0) {
      SD35_ASSIGN_OR_RETURN(Tensor m, Tensor::zeros(x.shape(), DType::kF32));
      SD35_RETURN_IF_ERROR(uni.model_fn(x, ts[0], m));
      models.push_back(m);
      tlist.push_back(ts[0]);
    } else if (step_index < order) {
      // Warm-up: order step_index, with the corrector; its model value becomes history.
      Tensor m;
      SD35_RETURN_IF_ERROR(
          uni.update(x, models, tlist, ts[size_t(step_index)], step_index, true, &m));
      models.push_back(m);
      tlist.push_back(ts[size_t(step_index)]);
    } else {
      const int extra_final_step = step_index == steps - 1 ? 1 : 0;
      for (int step = step_index; step <= step_index + extra_final_step; ++step) {
        const float t = ts[size_t(step)];
        const int step_order = std::min(order, steps + 1 - step);
        const bool use_corrector = step != steps;
        Tensor m;
        SD35_RETURN_IF_ERROR(uni.update(x, models, tlist, t, step_order, use_corrector, &m));
        // Shift the history window (of length `order`) and record t and its model value.
        for (int i = 0; i + 1 < order; ++i) {
          tlist[size_t(i)] = tlist[size_t(i) + 1];
          models[size_t(i)] = models[size_t(i) + 1];
        }
        tlist.back() = t;
        if (step < steps) models.back() = m;
      }
    }
    if (options.progress) options.progress(step_index + 1, steps);
  }
  const float a_last = marginal_alpha(ts.back());
  for (int64_t j = 0; j < n; ++j) xp[j] = xp[j] / a_last;
  return ok_status();
}

}  // namespace sd35::detail
