// The guidance denoiser: builds the sampler's D(x, σ) from per-condition model predictions the
// way ComfyUI's sampling_function does for SD3 (SPEC-model.md §5.3, §5.8, §5.9):
//   * conditions with timestep ranges (ConditioningSetTimestepRange): an entry takes part only
//     when percent_to_sigma(end) <= σ <= percent_to_sigma(start); active entries of one side
//     are averaged (calc_cond_batch: out_conds / out_counts);
//   * CFG on denoised values, out = uncond + (cond − uncond)·cfg; the uncond side is not
//     evaluated when cfg is 1 (math.isclose);
//   * skip-layer guidance as the post-CFG function of SkipLayerGuidanceDiT (the SD3 node):
//     out += (D_cond − D_cond_skip)·scale while σ_end <= σ <= σ_start, where D_cond_skip is the
//     positive side re-evaluated with the listed joint blocks skipped.
// What one condition is (its context, pooled vector, ConditioningZeroOut, batching cond and
// uncond into one forward) is the caller's business: it only sees condition indices.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "sampling/sampling.h"

namespace sd35 {

// Runs the model for every condition in `cond_indices` at (x, σ) and writes each denoised
// prediction (x − v·σ for SD3) into the matching `denoised` tensor (f32, shaped like x). The
// guidance asks for all active conditions of both sides in one call, so the caller can batch
// them into one forward as ComfyUI's calc_cond_batch does. `skip_layers` lists the MMDiT joint
// blocks to replace by identity (empty: the full model).
using ModelCall = std::function<Status(const Tensor& x, float sigma, std::span<const int> cond_indices,
                                       std::span<const int> skip_layers,
                                       std::span<const Tensor> denoised)>;

// One entry of a positive or negative conditioning list.
struct GuidanceCondition {
  int cond_index = 0;  // handed to ModelCall
  // ConditioningSetTimestepRange; the defaults (0, 1) mean "no range": always active.
  double start_percent = 0.0;
  double end_percent = 1.0;
};

// SkipLayerGuidanceSD3 / SkipLayerGuidanceDiT; defaults are the SD3 node's.
struct SkipLayerGuidance {
  std::vector<int> layers;  // empty disables SLG
  double scale = 3.0;       // <= 0 disables SLG
  double start_percent = 0.01;
  double end_percent = 0.15;
};

struct GuidanceOptions {
  std::vector<GuidanceCondition> positive;  // at least one entry
  std::vector<GuidanceCondition> negative;  // may be empty (then uncond is 0, as in ComfyUI)
  double cfg = 4.5;
  SkipLayerGuidance slg;
  // Optional: after each plain evaluation, the averaged positive and negative predictions
  // before CFG (uncond is all zeros when skipped); valid during the call only.
  std::function<void(const Tensor& cond, const Tensor& uncond)> on_sides;
};

// Builds the Denoiser for sample(). `ms` converts the percents to sigmas (percent_to_sigma);
// the returned denoiser owns its scratch tensors (re-allocated when x's shape changes) and is
// not meant to be called concurrently. Fails on an empty positive list, a non-finite cfg or
// a bad percent (outside [0, 1]).
Result<Denoiser> make_guidance_denoiser(ModelCall model, const FlowModelSampling& ms,
                                        GuidanceOptions options);

}  // namespace sd35
