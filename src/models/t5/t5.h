// T5 v1.1 XXL encoder as SD3 uses it (SPEC-model.md §4.3): RMSNorm, attention without
// 1/sqrt(d) scaling, relative position bias from block 0 shared by all blocks, gated
// gelu-tanh FFN, final RMSNorm. Weights f32/f16/bf16, or fp8 e4m3fn (optionally ComfyUI's
// scaled fp8 with per-layer scale_weight); activations f32. Immutable after load.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "backend/backend.h"
#include "core/arena.h"
#include "sd35/status.h"
#include "weights/model_configs.h"
#include "weights/weight_placer.h"

namespace sd35 {

class WeightIndex;

// Bucket of a relative position (key_pos - query_pos) for a bidirectional T5 attention
// (HF/ComfyUI _relative_position_bucket, float32 log, truncation toward zero). With 32
// buckets and max distance 128: |rel| 0..7 -> itself, 8-11 -> 8, ..., >= 91 -> 15, plus 16
// when rel > 0 (SPEC-model.md §4.3).
int t5_relative_position_bucket(int64_t relative_position, int num_buckets, int max_distance);

class T5Encoder {
 public:
  // placer: nullptr keeps host views; else every weight is uploaded to its device (fp8
  // matrices as stored; the scale_weight scalars and the bias table stay on the host).
  static Result<std::unique_ptr<T5Encoder>> load(const WeightIndex& index,
                                                 const ConfigOverrides& overrides = {},
                                                 WeightPlacer* placer = nullptr);
  ~T5Encoder();
  const T5Config& config() const;
  // True for fp8 files (most parameters fp8): the embedding output then goes through ComfyUI's
  // nan_to_num (NaN -> 0, ±inf -> ±FLT_MAX).
  bool fp8_embedding_fix() const;

  // ids [B, L] int32 -> out [B, L, d_model] f32 (the final-RMSNorm output SD3 uses). ids
  // host memory or contiguous on the backend's device, out on the backend's device.
  // `observe` (optional) receives "position_bias" [1, H, L, L], "block{i}_out",
  // "last_hidden_state" as in the goldens.
  Status encode(Backend& backend, Arena& arena, const Tensor& ids, const Tensor& out,
                const std::function<void(std::string_view, const Tensor&)>& observe = {}) const;

 private:
  struct Impl;
  explicit T5Encoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sd35
