// AVX-512 row kernels (compiled with SD35_AVX512_FLAGS; used only after run-time detection).
// Tails use masked loads/stores, so no element outside [0, n) is read or written.
// GCC 12 reports -Wuninitialized inside avx512fintrin.h for intrinsics that take an
// _mm*_undefined_*() pass-through operand (shuffles, casts, reductions): a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "backend/cpu/elementwise_kernels.h"
#include "backend/cpu/simd_avx512.h"

namespace sd35::cpu {
namespace {

using simd512::hmax;
using simd512::hsum;

constexpr int64_t kW = 16;

static inline __mmask16 tail_mask(int64_t n) { return __mmask16((1u << unsigned(n)) - 1u); }

// exp with Cody-Waite reduction and the Cephes expf polynomial (~1-2 ulp on [-87, 88]).
// scalef applies 2^n with correct overflow to inf and gradual underflow; the clamp only keeps
// n finite. NaN passes through: max/min return their second operand when unordered.
static inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

// x / (1 + exp(-k·x)) = x·sigmoid(k·x), given kx = k·x.
static inline __m512 x_sigmoid(__m512 x, __m512 kx) {
  __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), kx));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

static inline __m512 gelu_tanh(__m512 x) {
  // 0.5x(1 + tanh(u)) = x·sigmoid(2u), u = sqrt(2/pi)(x + 0.044715x³).
  __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f),
                           _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
  return x_sigmoid(x, _mm512_add_ps(u, u));
}

// 0.5x(1 + erf(x/√2)) through erfc(|z|) = t·exp(-z² + P(t)), t = 1/(1 + z/2) (Numerical
// Recipes' erfcc, fractional error < 1.2e-7 everywhere): relative accuracy also for
// negative x, where 1 + erf(z) would cancel.
static inline __m512 gelu_erf(__m512 x) {
  __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
  __m512 one = _mm512_set1_ps(1.0f);
  __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, one));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  __m512 erfc = _mm512_mul_ps(t, exp_ps(_mm512_fnmadd_ps(z, z, p)));
  __m512 half_x_erfc = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), erfc);
  // x >= 0: x - 0.5x·erfc(z); x < 0: 0.5x·erfc(|z|).
  __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(neg, _mm512_sub_ps(x, half_x_erfc), half_x_erfc);
}

float sum(const float* x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + kW));
  }
  for (; i + kW <= n; i += kW) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
  if (i < n) a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  return hsum(_mm512_add_ps(a0, a1));
}

float sum_sq_dev(const float* x, int64_t n, float mean) {
  __m512 m = _mm512_set1_ps(mean);
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), m);
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + kW), m);
    a0 = _mm512_fmadd_ps(d0, d0, a0);
    a1 = _mm512_fmadd_ps(d1, d1, a1);
  }
  for (; i + kW <= n; i += kW) {
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), m);
    a0 = _mm512_fmadd_ps(d, d, a0);
  }
  if (i < n) {
    __mmask16 k = tail_mask(n - i);
    __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), m);
    a1 = _mm512_fmadd_ps(d, d, a1);
  }
  return hsum(_mm512_add_ps(a0, a1));
}

float sum_sq(const float* x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + kW);
    a0 = _mm512_fmadd_ps(v0, v0, a0);
    a1 = _mm512_fmadd_ps(v1, v1, a1);
  }
  for (; i + kW <= n; i += kW) {
    __m512 v = _mm512_loadu_ps(x + i);
    a0 = _mm512_fmadd_ps(v, v, a0);
  }
  if (i < n) {
    __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
    a1 = _mm512_fmadd_ps(v, v, a1);
  }
  return hsum(_mm512_add_ps(a0, a1));
}

// Applies f to every vector of x (full vectors, then one masked tail) and stores into y.
template <typename F>
static inline void map(const float* x, int64_t n, float* y, F f) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW)
    _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i), i, __mmask16(0xFFFF)));
  if (i < n) {
    __mmask16 k = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, k, f(_mm512_maskz_loadu_ps(k, x + i), i, k));
  }
}

void normalize(const float* x, int64_t n, float mean, float rstd, const float* w, const float* b,
               float* y) {
  __m512 m = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd);
  map(x, n, y, [&](__m512 v, int64_t i, __mmask16 k) {
    v = _mm512_mul_ps(_mm512_sub_ps(v, m), rs);
    if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, w + i));
    if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, b + i));
    return v;
  });
}

void center_scale_shift(const float* x, int64_t n, float m, float a, float b, float* y) {
  __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
  map(x, n, y,
      [&](__m512 v, int64_t, __mmask16) { return _mm512_fmadd_ps(_mm512_sub_ps(v, vm), va, vb); });
}

void modulate(const float* x, int64_t n, const float* scale1p, const float* shift, float* y) {
  map(x, n, y, [&](__m512 v, int64_t i, __mmask16 k) {
    return _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, scale1p + i),
                           _mm512_maskz_loadu_ps(k, shift + i));
  });
}

void normalize_modulate(const float* x, int64_t n, float mean, float rstd, const float* scale1p,
                        const float* shift, float* y) {
  __m512 m = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd);
  map(x, n, y, [&](__m512 v, int64_t i, __mmask16 k) {
    v = _mm512_mul_ps(_mm512_sub_ps(v, m), rs);  // normalize's rounding, then modulate's fma
    return _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, scale1p + i),
                           _mm512_maskz_loadu_ps(k, shift + i));
  });
}

void activation(const float* x, int64_t n, int act, float* y) {
  switch (act) {
    case kRowActGeluTanh:
      map(x, n, y, [](__m512 v, int64_t, __mmask16) { return gelu_tanh(v); });
      return;
    case kRowActGeluErf:
      map(x, n, y, [](__m512 v, int64_t, __mmask16) { return gelu_erf(v); });
      return;
    case kRowActQuickGelu:
      map(x, n, y, [](__m512 v, int64_t, __mmask16) {
        return x_sigmoid(v, _mm512_mul_ps(_mm512_set1_ps(1.702f), v));
      });
      return;
    case kRowActSilu:
      map(x, n, y, [](__m512 v, int64_t, __mmask16) { return x_sigmoid(v, v); });
      return;
    default:
      if (y != x) map(x, n, y, [](__m512 v, int64_t, __mmask16) { return v; });
      return;
  }
}

float max(const float* x, int64_t n) {
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  __m512 a = ninf;
  int64_t i = 0;
  for (; i + kW <= n; i += kW) a = _mm512_max_ps(a, _mm512_loadu_ps(x + i));
  if (i < n) a = _mm512_max_ps(a, _mm512_mask_loadu_ps(ninf, tail_mask(n - i), x + i));
  return hmax(a);
}

float exp_sub_sum(const float* x, int64_t n, float m, float* y) {
  __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    _mm512_storeu_ps(y + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    __mmask16 k = tail_mask(n - i);
    __m512 e = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm)));
    _mm512_mask_storeu_ps(y + i, k, e);
    acc = _mm512_add_ps(acc, e);
  }
  return hsum(acc);
}

void scale(float* y, int64_t n, float s) {
  __m512 vs = _mm512_set1_ps(s);
  map(y, n, y, [&](__m512 v, int64_t, __mmask16) { return _mm512_mul_ps(v, vs); });
}

// The binary / ternary maps are unrolled by two vectors: they are memory-bound, and two
// independent load-compute-store chains per iteration keep more loads in flight.
// y = a + b or a · b (kMul), the two broadcast binary ops.
template <bool kMul>
void binary(const float* a, const float* b, int64_t n, float* y) {
  auto op = [](__m512 u, __m512 v) { return kMul ? _mm512_mul_ps(u, v) : _mm512_add_ps(u, v); };
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m512 v0 = op(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    __m512 v1 = op(_mm512_loadu_ps(a + i + kW), _mm512_loadu_ps(b + i + kW));
    _mm512_storeu_ps(y + i, v0);
    _mm512_storeu_ps(y + i + kW, v1);
  }
  for (; i < n; i += kW) {
    __mmask16 k = n - i >= kW ? __mmask16(0xFFFF) : tail_mask(n - i);
    _mm512_mask_storeu_ps(
        y + i, k, op(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i)));
  }
}

void add(const float* a, const float* b, int64_t n, float* y) { binary<false>(a, b, n, y); }
void mul(const float* a, const float* b, int64_t n, float* y) { binary<true>(a, b, n, y); }

void gated_add(const float* x, const float* g, const float* h, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m512 v0 =
        _mm512_fmadd_ps(_mm512_loadu_ps(g + i), _mm512_loadu_ps(h + i), _mm512_loadu_ps(x + i));
    __m512 v1 = _mm512_fmadd_ps(_mm512_loadu_ps(g + i + kW), _mm512_loadu_ps(h + i + kW),
                                _mm512_loadu_ps(x + i + kW));
    _mm512_storeu_ps(y + i, v0);
    _mm512_storeu_ps(y + i + kW, v1);
  }
  for (; i < n; i += kW) {
    __mmask16 k = n - i >= kW ? __mmask16(0xFFFF) : tail_mask(n - i);
    _mm512_mask_storeu_ps(
        y + i, k,
        _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, g + i), _mm512_maskz_loadu_ps(k, h + i),
                        _mm512_maskz_loadu_ps(k, x + i)));
  }
}

void affine(const float* x, int64_t n, float scale, float shift, float lo, float hi, float* y) {
  const __m512 vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(shift);
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  // max/min return the second operand when either is NaN: v second keeps NaN.
  map(x, n, y, [&](__m512 v, int64_t, __mmask16) {
    return _mm512_min_ps(vhi, _mm512_max_ps(vlo, _mm512_fmadd_ps(v, vs, vb)));
  });
}

}  // namespace

const RowKernels kRowKernelsAvx512 = {
    sum,      sum_sq_dev, sum_sq, normalize,   center_scale_shift,
    modulate, activation, max,    exp_sub_sum, scale,
    add,      gated_add,  affine, mul,         normalize_modulate};

}  // namespace sd35::cpu
