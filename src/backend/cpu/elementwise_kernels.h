// Row kernels on f32 buffers behind the CPU norm / elementwise ops, one table per ISA level.
// The ops convert bf16/f16 rows to f32, call these, and convert back; a table is chosen per
// call from active_cpu_isa() (tests switch levels at run time).
//
// This header is included by *_avx2.cpp / *_avx512.cpp files: declarations only, no inline
// functions and no std:: templates (see core/float_convert.h for why).
#pragma once

#include <cstdint>

namespace sd35::cpu {

// Activation codes for RowKernels::activation (the values of sd35::Activation).
enum RowActivation : int {
  kRowActNone = 0,
  kRowActGeluTanh = 1,
  kRowActGeluErf = 2,
  kRowActQuickGelu = 3,
  kRowActSilu = 4,
};

struct RowKernels {
  // Σ x[i].
  float (*sum)(const float* x, int64_t n);
  // Σ (x[i] - mean)²: the second pass of a two-pass variance.
  float (*sum_sq_dev)(const float* x, int64_t n, float mean);
  // Σ x[i]².
  float (*sum_sq)(const float* x, int64_t n);
  // y = (x - mean)·rstd·w + b; w and/or b may be null (1 and 0). y may equal x.
  void (*normalize)(const float* x, int64_t n, float mean, float rstd, const float* w,
                    const float* b, float* y);
  // y = (x - m)·a + b with scalars m, a, b (group norm's per-channel affine; centring first
  // avoids the cancellation of x·a - m·a when |mean| >> std). y may equal x.
  void (*center_scale_shift)(const float* x, int64_t n, float m, float a, float b, float* y);
  // y = x·scale1p + shift (scale1p = 1 + scale, precomputed per batch row). y may equal x.
  void (*modulate)(const float* x, int64_t n, const float* scale1p, const float* shift, float* y);
  // y = act(x) for an RowActivation code. y may equal x.
  void (*activation)(const float* x, int64_t n, int act, float* y);
  // max x[i] (-inf for n == 0). NaN elements may be ignored: softmax turns them into NaN
  // through exp anyway.
  float (*max)(const float* x, int64_t n);
  // y = exp(x - m); returns Σ y. y may equal x.
  float (*exp_sub_sum)(const float* x, int64_t n, float m, float* y);
  // y *= s.
  void (*scale)(float* y, int64_t n, float s);
  // y = a + b. y may equal a or b.
  void (*add)(const float* a, const float* b, int64_t n, float* y);
  // y = x + g·h as one fma (the gated residual). y may equal x or h.
  void (*gated_add)(const float* x, const float* g, const float* h, int64_t n, float* y);
  // y = min(hi, max(lo, x·scale + shift)) with one fma; NaN propagates (neither bound may be
  // NaN; infinite bounds clamp nothing). y may equal x. With scale 1 it is an exact x + shift.
  void (*affine)(const float* x, int64_t n, float scale, float shift, float lo, float hi, float* y);
  // y = a · b. y may equal a or b.
  void (*mul)(const float* a, const float* b, int64_t n, float* y);
  // y = fma((x - mean)·rstd, scale1p, shift): layer_norm_modulate's row. The product is
  // rounded to f32 before the fma exactly as normalize (no w, b) followed by modulate, so the
  // fused op equals the two-op path bit for bit. y may equal x.
  void (*normalize_modulate)(const float* x, int64_t n, float mean, float rstd,
                             const float* scale1p, const float* shift, float* y);
};

extern const RowKernels kRowKernelsScalar;
extern const RowKernels kRowKernelsAvx2;
extern const RowKernels kRowKernelsAvx512;

// The table for active_cpu_isa() (defined in elementwise.cpp, a baseline file).
const RowKernels& row_kernels();

}  // namespace sd35::cpu
