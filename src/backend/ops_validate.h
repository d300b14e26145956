// Argument validation for the elementwise, normalisation and layout ops, shared by every
// backend so that they accept and reject exactly the same inputs with the same messages.
// Each function checks devices, dtypes, shapes and the layouts the kernels rely on; a
// backend calls it first and may then assume what it guarantees (noted per op).
#pragma once

#include <span>

#include "backend/backend.h"

namespace sd35::validate {

// Activation storage types (x / y of the ops below).
bool is_activation_dtype(DType t);

// x, y: same shape, f32/bf16/f16, dense rows; weight/bias [C] (C = size(-1)) f32/f16/bf16
// with stride 1; eps finite and >= 0.
Status layer_norm(Device dev, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                  const Tensor& y);
Status rms_norm(Device dev, const Tensor& x, const Tensor* weight, float eps, const Tensor& y);
// x, y: [N, C, *spatial] (ndim >= 2), same shape, contiguous; groups > 0 divides C.
Status group_norm(Device dev, const Tensor& x, int groups, const Tensor* weight, const Tensor* bias,
                  float eps, const Tensor& y);
// x, y [B, L, D] dense rows; shift, scale [B, D] dense rows (any row stride).
Status modulate(Device dev, const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y);
// x [B, L, D] f32, y [B, L, D] activation dtype, both dense rows; shift, scale [B, D] f32,
// dense rows (any row stride); eps finite and >= 0. y's memory may not overlap x's unless y
// is exactly x (same data, dtype and strides), and never shift's or scale's, so a kernel may
// read a row whole, then write it.
Status layer_norm_modulate(Device dev, const Tensor& x, const Tensor& shift, const Tensor& scale,
                           float eps, const Tensor& y);
// a, y: same shape, activation dtypes, any strides; b: activation dtype (independent of a's),
// b.ndim <= a.ndim, each of b's dims (aligned to a's trailing dims) equal to a's or 1, any
// strides. y may alias a (the same view); nothing else may overlap y.
// Also mul's checks (op names the operation in messages).
Status add(Device dev, const Tensor& a, const Tensor& b, const Tensor& y,
           std::string_view op = "add");
// x, h, out [B, L, D]: same shape, activation dtypes, dense rows; gate [B, D] activation
// dtype, dense rows (any row stride, e.g. a chunk of [B, 6·D]). out may alias x.
Status gated_add(Device dev, const Tensor& x, const Tensor& gate, const Tensor& h,
                 const Tensor& out);
// x, y: same shape, activation dtypes, any strides; scale and shift finite; lo <= hi, neither
// NaN (infinite bounds mean no clamp on that side).
Status affine(Device dev, const Tensor& x, const AffineParams& params, const Tensor& y);
// x, y: same shape, activation dtypes, dense rows.
Status activation(Device dev, const Tensor& x, Activation act, const Tensor& y);
Status softmax(Device dev, const Tensor& x, const Tensor& y);
// x [N, C, H, W], y [N, C, 2H, 2W], activation dtypes, dense rows.
Status upsample_nearest2x(Device dev, const Tensor& x, const Tensor& y);
// Non-empty inputs, same ndim as y, equal except along axis (negative counts from the end);
// *axis_out receives the normalised axis. Dtypes as for copy (per input).
Status concat(Device dev, std::span<const Tensor> inputs, int axis, const Tensor& y, int* axis_out);
// Same shape, any strides. Same dtype: any dtype (a plain copy); different dtypes: both
// compute floats (f32, f16, bf16, fp8), converted through f32.
Status copy(Device dev, const Tensor& x, const Tensor& y);

}  // namespace sd35::validate
