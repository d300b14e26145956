// CLIP text towers as SD3 uses them (SPEC-model.md §4.1, §4.2): CLIP-L (quick_gelu, pooled
// NOT projected) and CLIP-G (gelu, pooled projected); the hidden state SD3 takes is the
// penultimate layer's output without the final LayerNorm. Computed with f32 activations from
// the stored (f16/bf16/f32) weights. Immutable after load.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

#include "backend/backend.h"
#include "core/arena.h"
#include "sd35/status.h"
#include "weights/component.h"
#include "weights/model_configs.h"
#include "weights/weight_placer.h"

namespace sd35 {

class WeightIndex;

// CLIP's end-of-text token (<|endoftext|>); the pooled output is taken at its first occurrence.
inline constexpr int32_t kClipEndToken = 49407;

struct ClipOutputs {
  Tensor hidden;  // [B, L, width] f32: penultimate layer output (no final LN) — what SD3 uses
  Tensor pooled;  // [B, width or projection_dim] f32: final-LN state at the first end token,
                  // projected for CLIP-G, not for CLIP-L (SD3's choice)
};

class ClipTextModel {
 public:
  // role: Component::kClipL or kClipG (selects the activation default and pooled projection).
  // placer: nullptr keeps host views; else every weight is uploaded to its device.
  static Result<std::unique_ptr<ClipTextModel>> load(const WeightIndex& index, Component role,
                                                     const ConfigOverrides& overrides = {},
                                                     WeightPlacer* placer = nullptr);
  ~ClipTextModel();
  const ClipConfig& config() const;
  Component role() const;
  int pooled_width() const;

  // ids: [B, L] int32 token ids (L <= positions). Outputs preallocated by the caller with the
  // shapes of ClipOutputs. `observe` (optional) receives "embeddings", "layer{i}_out",
  // "penultimate" (= out.hidden), "last_hidden_state", "pooled" (unprojected) and
  // "pooled_projected" (when the file has a projection, CLIP-L included) as in the goldens.
  // The pooled position is the first end token (kClipEndToken) of each row, position 0 when a
  // row has none (ComfyUI's argmax over ids == end). ids may be host memory (uploaded to the
  // backend's device when that is not the host) or contiguous device memory (downloaded for
  // the checks); outputs live on the backend's device. Errors: ids not int32 [B, L],
  // L > positions, an id outside [0, vocab), outputs of the wrong shape or device.
  Status encode(Backend& backend, Arena& arena, const Tensor& ids, const ClipOutputs& out,
                const std::function<void(std::string_view, const Tensor&)>& observe = {}) const;

 private:
  struct Impl;
  explicit ClipTextModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sd35
