// MMDiT-X, the SD3 / SD3.5 diffusion transformer (SPEC-model.md §1), as ComfyUI runs it.
// The config comes from the weights (same code for the 5 GB SD3.5 Medium file, SD3/SD3.5
// Large shapes and the tiny test models); the model is immutable after load and forward()
// keeps no state between calls, so concurrent jobs each bring their own Arena.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "sd35/status.h"
#include "weights/model_configs.h"
#include "weights/weight_placer.h"

namespace sd35 {

class WeightIndex;

struct MMDiTInputs {
  Tensor x;          // [B, C_in, H, W] latent, f32 (H, W any size >= 1; odd sizes are padded
                     // circularly to the patch size and the output cropped, as ComfyUI does)
  Tensor timesteps;  // [B] f32, = sigma · 1000; host memory or the backend's device (read on
                     // the host for the sinusoid: host avoids a download)
  Tensor context;    // [B, L, context_dim] f32
  Tensor y;          // [B, adm_in_channels] f32 pooled text embedding
  // Optional [B, freq_dim] f32 on the backend's device: the timestep sinusoid of
  // `timesteps`, filled by MMDiT::timestep_features() on the host and uploaded by the
  // caller. With it a device forward is device ops only (no staging upload inside), so it
  // can be captured and replayed as a graph.
  Tensor timestep_features = Tensor();
};

struct MMDiTOptions {
  // Activation precision: kF32 (weights converted inside the kernels; what the goldens check)
  // or kBF16 (bf16 activations and GEMMs with f32 accumulation; the fast mode).
  DType compute = DType::kF32;
  // Joint blocks treated as identity (skip-layer guidance): neither stream is updated.
  std::vector<int> skip_layers;
  // Optional: receives named intermediates of the forward pass, with the names of the
  // golden files' debug tensors: "x_embedded", "pos_embed_cropped", "t_emb", "y_emb", "c",
  // "context_embedded", "block{i}.context_out", "block{i}.x_out", "final_layer_out". The
  // tensor is only valid during the call.
  std::function<void(std::string_view name, const Tensor& value)> observe;
};

class MMDiT {
 public:
  // Binds the weights of the index's MMDiT component (views into the mapped files, stored
  // dtype) after validating every tensor; one error lists every problem.
  // placer: nullptr keeps host views; else every weight is uploaded to its device.
  static Result<std::unique_ptr<MMDiT>> load(const WeightIndex& index,
                                             WeightPlacer* placer = nullptr);
  ~MMDiT();

  const MMDiTConfig& config() const;

  // out: [B, C_out, H, W] f32, the velocity prediction. x, context, y, out and the weights
  // live on the backend's device; scratch comes from `arena` (same device) and is released
  // before returning.
  Status forward(Backend& backend, Arena& arena, const MMDiTInputs& in, const Tensor& out,
                 const MMDiTOptions& options = {}) const;

  // The timestep sinusoid the forward embeds, exactly as forward() computes it: out gets
  // t.size() rows of config().freq_dim floats.
  void timestep_features(std::span<const float> t, float* out) const;

  // Multiply-add FLOPs ×2 of one forward (linear layers + attention), for benchmarks.
  static double forward_flops(const MMDiTConfig& cfg, int64_t batch, int64_t height,
                              int64_t width, int64_t context_len);

 private:
  struct Impl;
  explicit MMDiT(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sd35
