// Pieces of the MMDiT forward pass shared by mmdit.cpp (embedders, final layer, patchify)
// and mmdit_block.cpp (the joint block). Internal to src/models/mmdit.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/mmdit/mmdit_weights.h"
#include "weights/model_configs.h"

namespace sd35::mmdit {

// eps of every LayerNorm and q/k norm of the model (SAI / ComfyUI: 1e-6).
inline constexpr float kNormEps = 1e-6f;

// What one forward call works with. The residual streams (x, context) and the adaLN
// modulation vectors are always f32, and the LayerNorm statistics are computed in f32 inside
// the fused layer_norm_modulate; `act` is the dtype of the activations fed to the GEMMs and
// attention (f32, or bf16 in the fast mode).
struct ForwardContext {
  Backend& backend;
  Arena& arena;
  const MMDiTConfig& cfg;
  DType act = DType::kF32;
  int64_t batch = 0;
  int64_t context_len = 0;  // Lc
  int64_t image_len = 0;    // Lx = h·w patches
};

// Updates context [B, Lc, D] and x [B, Lx, D] (both f32, contiguous) in place with one
// joint block; silu_c [B, D] f32 is SiLU(c), the input of every adaLN. Scratch comes from
// the arena and is released before returning.
Status joint_block(const ForwardContext& f, const BlockWeights& w, const Tensor& silu_c,
                   const Tensor& context, const Tensor& x);

// out = LayerNorm(v)·(1 + scale) + shift (no affine, eps 1e-6) in one fused backend op; v is
// an f32 residual stream, out any activation dtype (not overlapping v).
Status modulated_layer_norm(Backend& be, const Tensor& v, const Tensor& shift, const Tensor& scale,
                            const Tensor& out);

// Chunk i of an adaLN output [B, n·D]: a strided [B, D] column view.
inline Tensor mod_chunk(const Tensor& mods, int i, int64_t d) {
  return mods.slice(1, int64_t(i) * d, int64_t(i + 1) * d);
}

// A contiguous view of `shape` at the start of the (larger) contiguous buffer `buf`, so one
// scratch buffer serves both streams.
inline Tensor prefix_view(const Tensor& buf, const Shape& shape) {
  return Tensor::view_of(buf.data(), buf.dtype(), shape, buf.device(), buf.owner());
}

}  // namespace sd35::mmdit
