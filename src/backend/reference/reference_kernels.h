// Plain-loop kernels behind the reference backend: the test oracle. Accumulate in f64,
// read every element through load_as_f32, handle any strides. Correctness over speed.
// Argument checks are the same as the CPU backend's (backend/backend.h check::).
#pragma once

#include <span>

#include "backend/backend.h"

namespace sd35::ref {

Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias,
            const Tensor& y, const GemmParams& params);
Status attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& out, int heads, float scale);
Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, int heads, float scale, bool causal, const Tensor* bias);
Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out);
Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias,
              const Tensor& y, const Conv2dParams& params);

Status layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias,
                  float eps, const Tensor& y);
Status rms_norm(const Tensor& x, const Tensor* weight, float eps,
                const Tensor& y);
Status group_norm(const Tensor& x, int groups, const Tensor* weight,
                  const Tensor* bias, float eps, const Tensor& y);
Status modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y);
Status layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                           const Tensor& y);
Status add(const Tensor& a, const Tensor& b, const Tensor& y);
Status mul(const Tensor& a, const Tensor& b, const Tensor& y);
Status gated_add(const Tensor& x, const Tensor& gate, const Tensor& h, const Tensor& out);
Status affine(const Tensor& x, const AffineParams& params, const Tensor& y);
Status activation(const Tensor& x, Activation act, const Tensor& y);
Status softmax(const Tensor& x, const Tensor& y);
Status upsample_nearest2x(const Tensor& x, const Tensor& y);
Status concat(std::span<const Tensor> inputs, int axis, const Tensor& y);
Status copy(const Tensor& x, const Tensor& y);

}  // namespace sd35::ref
