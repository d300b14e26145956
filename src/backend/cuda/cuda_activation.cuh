// The activations of backend.h in f32 on the device (precise libm functions: the builds use
// no fast-math, so these match the reference's double formulas to a few f32 ulps).
#pragma once

#include "backend/backend.h"

namespace sd35::cuda {

__device__ __forceinline__ float apply_activation(Activation a, float x) {
  switch (a) {
    case Activation::kNone: return x;
    case Activation::kGeluTanh: {
      const float k = 0.7978845608028654f;  // sqrt(2/pi)
      return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
    // erfc(-z) = 1 + erf(z) without cancellation for negative z.
    case Activation::kGeluErf: return 0.5f * x * erfcf(-x * 0.7071067811865476f);
    case Activation::kQuickGelu: return x / (1.0f + expf(-1.702f * x));
    case Activation::kSilu: return x / (1.0f + expf(-x));
  }
  return x;
}

// Grid size for a grid-stride loop over n items with 256-thread blocks.
inline unsigned grid_for(int64_t n, int64_t per_block = 256) {
  int64_t b = (n + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
  return unsigned(b);
}

}  // namespace sd35::cuda
