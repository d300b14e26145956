// Host-side launcher of the fused LayerNorm + adaLN modulate kernel (cuda_norm_modulate.cu).
// Plain C++; arguments are raw device pointers, already validated by
// validate::layer_norm_modulate (x, shift, scale f32; y f32/bf16/f16; dense rows).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/dtype.h"
#include "sd35/status.h"

namespace sd35::cuda {

// Row r = b·len + l of x [batch, len, cols] is at x + b·x_bs + l·x_rs (elements), likewise
// y (elements of y_dtype); shift/scale row b at shift + b·shift_bs, scale + b·scale_bs.
struct LayerNormModulateArgs {
  const float* x = nullptr;
  int64_t x_bs = 0, x_rs = 0;
  void* y = nullptr;
  DType y_dtype = DType::kF32;
  int64_t y_bs = 0, y_rs = 0;
  const float* shift = nullptr;
  const float* scale = nullptr;
  int64_t shift_bs = 0, scale_bs = 0;
  int64_t batch = 0, len = 0, cols = 0;
  float eps = 0.0f;
};

// y = ((x - mean)·rsqrt(var + eps))·(1 + scale[b]) + shift[b] per row, f32 two-pass
// statistics, one store per element. Safe in place (y == x): each block reads its whole row
// before any thread writes.
Status launch_layer_norm_modulate(const LayerNormModulateArgs& a, cudaStream_t stream);

}  // namespace sd35::cuda
