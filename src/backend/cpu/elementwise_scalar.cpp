// Portable row kernels (baseline x86-64, any CPU). Reductions keep 8 partial sums, like the
// vector kernels, so a long row is not one serial chain of f32 additions.
#include <cmath>

#include "backend/cpu/elementwise_kernels.h"

namespace sd35::cpu {
namespace {

constexpr int kLanes = 8;

float combine(const float* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float sum(const float* x, int64_t n) {
  float acc[kLanes] = {};
  for (int64_t i = 0; i < n; ++i) acc[i % kLanes] += x[i];
  return combine(acc);
}

float sum_sq_dev(const float* x, int64_t n, float mean) {
  float acc[kLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    float d = x[i] - mean;
    acc[i % kLanes] += d * d;
  }
  return combine(acc);
}

float sum_sq(const float* x, int64_t n) {
  float acc[kLanes] = {};
  for (int64_t i = 0; i < n; ++i) acc[i % kLanes] += x[i] * x[i];
  return combine(acc);
}

void normalize(const float* x, int64_t n, float mean, float rstd, const float* w, const float* b,
               float* y) {
  for (int64_t i = 0; i < n; ++i) {
    float v = (x[i] - mean) * rstd;
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = v;
  }
}

void center_scale_shift(const float* x, int64_t n, float m, float a, float b, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(x[i] - m, a, b);
}

void modulate(const float* x, int64_t n, const float* scale1p, const float* shift, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(x[i], scale1p[i], shift[i]);
}

void normalize_modulate(const float* x, int64_t n, float mean, float rstd, const float* scale1p,
                        const float* shift, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = (x[i] - mean) * rstd;  // rounded here, as normalize stores it
    y[i] = std::fma(v, scale1p[i], shift[i]);
  }
}

// x·sigmoid(k·x) written as x / (1 + exp(-k·x)): no cancellation for negative x, and
// exp overflow gives x / inf = -0, the right limit.
float x_sigmoid(float x, float kx) { return x / (1.0f + std::exp(-kx)); }

void activation(const float* x, int64_t n, int act, float* y) {
  switch (act) {
    case kRowActGeluTanh:
      // 0.5x(1 + tanh(u)) = x·sigmoid(2u): avoids 1 + tanh(u) cancelling for negative x.
      for (int64_t i = 0; i < n; ++i) {
        float v = x[i];
        float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        y[i] = x_sigmoid(v, 2.0f * u);
      }
      return;
    case kRowActGeluErf:
      for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * std::erfc(-x[i] * 0.70710678118654752f);
      return;
    case kRowActQuickGelu:
      for (int64_t i = 0; i < n; ++i) y[i] = x_sigmoid(x[i], 1.702f * x[i]);
      return;
    case kRowActSilu:
      for (int64_t i = 0; i < n; ++i) y[i] = x_sigmoid(x[i], x[i]);
      return;
    default:
      if (y != x)
        for (int64_t i = 0; i < n; ++i) y[i] = x[i];
      return;
  }
}

float max(const float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

float exp_sub_sum(const float* x, int64_t n, float m, float* y) {
  float acc[kLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - m);
    acc[i % kLanes] += y[i];
  }
  return combine(acc);
}

void scale(float* y, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

void add(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void mul(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void gated_add(const float* x, const float* g, const float* h, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(g[i], h[i], x[i]);
}

// v < lo ? lo : v keeps a NaN v (the comparisons are false), like the vector max/min with v
// as the second operand.
void affine(const float* x, int64_t n, float scale, float shift, float lo, float hi, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    float v = std::fma(x[i], scale, shift);
    v = v < lo ? lo : v;
    y[i] = v > hi ? hi : v;
  }
}

}  // namespace

const RowKernels kRowKernelsScalar = {
    sum,      sum_sq_dev, sum_sq, normalize,   center_scale_shift,
    modulate, activation, max,    exp_sub_sum, scale,
    add,      gated_add,  affine, mul,         normalize_modulate};

}  // namespace sd35::cpu
