// CFG / timestep ranges / skip-layer guidance over a per-condition model callback, with the
// f32 rounding of ComfyUI's calc_cond_batch + cfg_function + SkipLayerGuidanceDiT.
#include "sampling/guidance.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace sd35 {

namespace {

// An entry with its sigma window resolved (ComfyUI calculate_start_end_timesteps).
struct ResolvedCondition {
  int cond_index;
  bool ranged;  // false: no ConditioningSetTimestepRange, always active
  // get_area_and_mult compares the f32 sigma tensor with the Python floats, so torch rounds
  // the thresholds to f32 first.
  float sigma_start, sigma_end;

  bool active(float sigma) const {
    if (!ranged) return true;
    return !(sigma > sigma_start) && !(sigma < sigma_end);
  }
};

class GuidanceState {
 public:
  GuidanceState(ModelCall model, std::vector<ResolvedCondition> pos,
                std::vector<ResolvedCondition> neg, double cfg, SkipLayerGuidance slg,
                double slg_sigma_start, double slg_sigma_end)
      : model_(std::move(model)),
        pos_(std::move(pos)),
        neg_(std::move(neg)),
        cfg_(cfg),
        slg_(std::move(slg)),
        slg_sigma_start_(slg_sigma_start),
        slg_sigma_end_(slg_sigma_end) {}

  Status operator()(const Tensor& x, float sigma, const Tensor& out) {
    if (out.dtype() != DType::kF32 || !out.is_contiguous() || out.shape() != x.shape())
      return invalid_argument("guidance: denoised must be a contiguous f32 tensor shaped like x");
    SD35_RETURN_IF_ERROR(ensure_scratch(x.shape()));
    const int64_t n = x.numel();
    float* o = out.data_as<float>();
    const float* c = cond_.data_as<float>();
    const float* u = uncond_.data_as<float>();

    SD35_RETURN_IF_ERROR(evaluate_side(pos_, x, sigma, {}, cond_));
    // sampling_function: math.isclose(cond_scale, 1.0) skips the uncond side; calc_cond_batch
    // then leaves it at zero, which cfg_function uses as is.
    const bool skip_uncond = std::fabs(cfg_ - 1.0) <= 1e-9 * std::max(1.0, std::fabs(cfg_));
    if (skip_uncond) {
      std::fill(uncond_.data_as<float>(), uncond_.data_as<float>() + n, 0.0f);
    } else {
      SD35_RETURN_IF_ERROR(evaluate_side(neg_, x, sigma, {}, uncond_));
    }
    const float scale = float(cfg_);
    for (int64_t j = 0; j < n; ++j) o[j] = u[j] + (c[j] - u[j]) * scale;

    // SkipLayerGuidanceDiT compares sigma[0].item() (a Python float) with the double window.
    const double s = double(sigma);
    if (!slg_.layers.empty() && slg_.scale > 0 && s >= slg_sigma_end_ && s <= slg_sigma_start_) {
      SD35_RETURN_IF_ERROR(evaluate_side(pos_, x, sigma, slg_.layers, skip_));
      const float* k = skip_.data_as<float>();
      const float slg_scale = float(slg_.scale);
      for (int64_t j = 0; j < n; ++j) o[j] = o[j] + (c[j] - k[j]) * slg_scale;
    }
    return ok_status();
  }

 private:
  Status ensure_scratch(const Shape& shape) {
    if (cond_.defined() && cond_.shape() == shape) return ok_status();
    SD35_ASSIGN_OR_RETURN(cond_, Tensor::zeros(shape, DType::kF32));
    SD35_ASSIGN_OR_RETURN(uncond_, Tensor::zeros(shape, DType::kF32));
    SD35_ASSIGN_OR_RETURN(skip_, Tensor::zeros(shape, DType::kF32));
    SD35_ASSIGN_OR_RETURN(one_, Tensor::zeros(shape, DType::kF32));
    return ok_status();
  }

  // calc_cond_batch for one side: out = (0 + Σ D_k) / (1e-37 + Σ 1) in f32 over the active
  // entries (0 when none is active).
  Status evaluate_side(const std::vector<ResolvedCondition>& side, const Tensor& x, float sigma,
                       std::span<const int> skip_layers, const Tensor& out) {
    const int64_t n = x.numel();
    float* o = out.data_as<float>();
    const float* t = one_.data_as<float>();
    std::fill(o, o + n, 0.0f);
    float count = 1e-37f;
    for (const ResolvedCondition& rc : side) {
      if (!rc.active(sigma)) continue;
      SD35_RETURN_IF_ERROR(model_(x, sigma, rc.cond_index, skip_layers, one_));
      for (int64_t j = 0; j < n; ++j) o[j] = o[j] + t[j];
      count = count + 1.0f;
    }
    for (int64_t j = 0; j < n; ++j) o[j] = o[j] / count;
    return ok_status();
  }

  ModelCall model_;
  std::vector<ResolvedCondition> pos_, neg_;
  double cfg_;
  SkipLayerGuidance slg_;
  double slg_sigma_start_, slg_sigma_end_;
  Tensor cond_, uncond_, skip_, one_;
};

Status check_percent(double p, const char* what) {
  if (!std::isfinite(p) || p < 0.0 || p > 1.0)
    return invalid_argument(std::string("guidance: ") + what + " must be in [0, 1]");
  return ok_status();
}

}  // namespace

Result<Denoiser> make_guidance_denoiser(ModelCall model, const FlowModelSampling& ms,
                                        GuidanceOptions options) {
  if (!model) return invalid_argument("guidance: no model callback");
  if (options.positive.empty()) return invalid_argument("guidance: no positive condition");
  if (!std::isfinite(options.cfg)) return invalid_argument("guidance: cfg must be finite");
  if (!std::isfinite(options.slg.scale))
    return invalid_argument("guidance: SLG scale must be finite");
  SD35_RETURN_IF_ERROR(check_percent(options.slg.start_percent, "SLG start_percent"));
  SD35_RETURN_IF_ERROR(check_percent(options.slg.end_percent, "SLG end_percent"));
  for (int layer : options.slg.layers)
    if (layer < 0) return invalid_argument("guidance: SLG layers must be >= 0");

  auto resolve = [&](const std::vector<GuidanceCondition>& in,
                     std::vector<ResolvedCondition>& out) -> Status {
    for (const GuidanceCondition& g : in) {
      SD35_RETURN_IF_ERROR(check_percent(g.start_percent, "start_percent"));
      SD35_RETURN_IF_ERROR(check_percent(g.end_percent, "end_percent"));
      ResolvedCondition rc{};
      rc.cond_index = g.cond_index;
      rc.ranged = !(g.start_percent <= 0.0 && g.end_percent >= 1.0);
      rc.sigma_start = float(ms.percent_to_sigma(g.start_percent));
      rc.sigma_end = float(ms.percent_to_sigma(g.end_percent));
      out.push_back(rc);
    }
    return ok_status();
  };
  std::vector<ResolvedCondition> pos, neg;
  SD35_RETURN_IF_ERROR(resolve(options.positive, pos));
  SD35_RETURN_IF_ERROR(resolve(options.negative, neg));
  const double slg_start = ms.percent_to_sigma(options.slg.start_percent);
  const double slg_end = ms.percent_to_sigma(options.slg.end_percent);

  // std::function needs a copyable callable: share the state.
  auto state =
      std::make_shared<GuidanceState>(std::move(model), std::move(pos), std::move(neg), options.cfg,
                                      std::move(options.slg), slg_start, slg_end);
  return Denoiser([state](const Tensor& x, float sigma, const Tensor& denoised) {
    return (*state)(x, sigma, denoised);
  });
}

}  // namespace sd35
