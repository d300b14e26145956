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
                double slg_sigma_start, double slg_sigma_end,
                std::function<void(const Tensor&, const Tensor&)> on_sides)
      : model_(std::move(model)),
        pos_(std::move(pos)),
        neg_(std::move(neg)),
        cfg_(cfg),
        slg_(std::move(slg)),
        slg_sigma_start_(slg_sigma_start),
        slg_sigma_end_(slg_sigma_end),
        on_sides_(std::move(on_sides)) {}

  Status operator()(const Tensor& x, float sigma, const Tensor& out) {
    if (out.dtype() != DType::kF32 || !out.is_contiguous() || out.shape() != x.shape())
      return invalid_argument("guidance: denoised must be a contiguous f32 tensor shaped like x");
    SD35_RETURN_IF_ERROR(ensure_scratch(x.shape()));
    const int64_t n = x.numel();
    float* o = out.data_as<float>();
    const float* c = cond_.data_as<float>();
    const float* u = uncond_.data_as<float>();

    // sampling_function: math.isclose(cond_scale, 1.0) skips the uncond side; calc_cond_batch
    // then leaves it at zero, which cfg_function uses as is.
    const bool skip_uncond = std::fabs(cfg_ - 1.0) <= 1e-9 * std::max(1.0, std::fabs(cfg_));
    const size_t n_pos = collect_active(pos_, sigma, 0);
    const size_t n_neg = skip_uncond ? 0 : collect_active(neg_, sigma, n_pos);
    SD35_RETURN_IF_ERROR(evaluate(x, sigma, n_pos + n_neg, {}));
    average(0, n_pos, cond_);
    average(n_pos, n_neg, uncond_);
    if (on_sides_) on_sides_(cond_, uncond_);
    const float scale = float(cfg_);
    for (int64_t j = 0; j < n; ++j) o[j] = u[j] + (c[j] - u[j]) * scale;

    // SkipLayerGuidanceDiT compares sigma[0].item() (a Python float) with the double window.
    const double s = double(sigma);
    if (!slg_.layers.empty() && slg_.scale > 0 && s >= slg_sigma_end_ && s <= slg_sigma_start_) {
      const size_t n_skip = collect_active(pos_, sigma, 0);
      SD35_RETURN_IF_ERROR(evaluate(x, sigma, n_skip, slg_.layers));
      average(0, n_skip, skip_);
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
    per_cond_.clear();
    return ok_status();
  }

  // Appends the condition indices of `side`'s entries active at σ to indices_ (which holds
  // `offset` entries already); returns how many were added.
  size_t collect_active(const std::vector<ResolvedCondition>& side, float sigma, size_t offset) {
    indices_.resize(offset);
    for (const ResolvedCondition& rc : side)
      if (rc.active(sigma)) indices_.push_back(rc.cond_index);
    return indices_.size() - offset;
  }

  // One model call for the first `count` collected conditions, into per_cond_[0, count).
  Status evaluate(const Tensor& x, float sigma, size_t count, std::span<const int> skip_layers) {
    if (count == 0) return ok_status();
    while (per_cond_.size() < count) {
      SD35_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(x.shape(), DType::kF32));
      per_cond_.push_back(std::move(t));
    }
    return model_(x, sigma, std::span<const int>(indices_.data(), count), skip_layers,
                  std::span<const Tensor>(per_cond_.data(), count));
  }

  // calc_cond_batch for one side: out = (0 + Σ D_k) / (1e-37 + Σ 1) in f32 over the active
  // entries per_cond_[first, first + count) (0 when none is active).
  void average(size_t first, size_t count, const Tensor& out) {
    const int64_t n = out.numel();
    float* o = out.data_as<float>();
    std::fill(o, o + n, 0.0f);
    float total = 1e-37f;
    for (size_t k = first; k < first + count; ++k) {
      const float* t = per_cond_[k].data_as<const float>();
      for (int64_t j = 0; j < n; ++j) o[j] = o[j] + t[j];
      total = total + 1.0f;
    }
    for (int64_t j = 0; j < n; ++j) o[j] = o[j] / total;
  }

  ModelCall model_;
  std::vector<ResolvedCondition> pos_, neg_;
  double cfg_;
  SkipLayerGuidance slg_;
  double slg_sigma_start_, slg_sigma_end_;
  std::function<void(const Tensor&, const Tensor&)> on_sides_;
  Tensor cond_, uncond_, skip_;
  std::vector<int> indices_;
  std::vector<Tensor> per_cond_;
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
                                      std::move(options.slg), slg_start, slg_end,
                                      std::move(options.on_sides));
  return Denoiser([state](const Tensor& x, float sigma, const Tensor& denoised) {
    return (*state)(x, sigma, denoised);
  });
}

}  // namespace sd35
