// AVX2 + FMA row kernels (compiled with SD35_AVX2_FLAGS; used only after run-time detection).
// Tails use maskload/maskstore, so no element outside [0, n) is read or written.
#include <immintrin.h>

#include "backend/cpu/elementwise_kernels.h"
#include "backend/cpu/simd_avx2.h"

namespace sd35::cpu {
namespace {

using simd256::hmax;
using simd256::hsum;

constexpr int64_t kW = 8;

// Lanes [0, n) set, n < 8.
static inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// exp with Cody-Waite reduction and the Cephes expf polynomial (~1-2 ulp). 2^n is built in
// the exponent field as 2^(n-1)·2 so that n = 128 (x up to 88.72) does not overflow the
// field; results below FLT_MIN (x < -87.34, and n = -126) flush to 0, a negligible absolute
// error. Overflow gives inf. NaN propagates (max/min return the second operand when
// unordered, and the fix-up compares are false for NaN).
static inline __m256 exp_ps(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.72283935546875f), lo = _mm256_set1_ps(-87.33654475f);
  __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
  y = _mm256_mul_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), _mm256_set1_ps(2.0f));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
  return _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
}

static inline __m256 x_sigmoid(__m256 x, __m256 kx) {
  __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), kx));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static inline __m256 gelu_tanh(__m256 x) {
  // 0.5x(1 + tanh(u)) = x·sigmoid(2u), u = sqrt(2/pi)(x + 0.044715x³).
  __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                           _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
  return x_sigmoid(x, _mm256_add_ps(u, u));
}

// See elementwise_avx512.cpp: erfc(|z|) = t·exp(-z² + P(t)) (Numerical Recipes' erfcc).
static inline __m256 gelu_erf(__m256 x) {
  __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  __m256 z = _mm256_mul_ps(ax, _mm256_set1_ps(0.70710678118654752f));
  __m256 one = _mm256_set1_ps(1.0f);
  __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
  __m256 p = _mm256_set1_ps(0.17087277f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
  __m256 erfc = _mm256_mul_ps(t, exp_ps(_mm256_fnmadd_ps(z, z, p)));
  __m256 half_x_erfc = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), erfc);
  __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  return _mm256_blendv_ps(_mm256_sub_ps(x, half_x_erfc), half_x_erfc, neg);
}

float sum(const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + kW));
  }
  for (; i + kW <= n; i += kW) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
  if (i < n) a1 = _mm256_add_ps(a1, _mm256_maskload_ps(x + i, tail_mask(n - i)));
  return hsum(_mm256_add_ps(a0, a1));
}

float sum_sq_dev(const float* x, int64_t n, float mean) {
  __m256 m = _mm256_set1_ps(mean);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), m);
    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + kW), m);
    a0 = _mm256_fmadd_ps(d0, d0, a0);
    a1 = _mm256_fmadd_ps(d1, d1, a1);
  }
  for (; i + kW <= n; i += kW) {
    __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), m);
    a0 = _mm256_fmadd_ps(d, d, a0);
  }
  if (i < n) {
    __m256i k = tail_mask(n - i);
    __m256 d =
        _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), m), _mm256_castsi256_ps(k));
    a1 = _mm256_fmadd_ps(d, d, a1);
  }
  return hsum(_mm256_add_ps(a0, a1));
}

float sum_sq(const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + kW);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  for (; i + kW <= n; i += kW) {
    __m256 v = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(v, v, a0);
  }
  if (i < n) {
    __m256 v = _mm256_maskload_ps(x + i, tail_mask(n - i));
    a1 = _mm256_fmadd_ps(v, v, a1);
  }
  return hsum(_mm256_add_ps(a0, a1));
}

// Applies f to every vector of x (full vectors, then one masked tail) and stores into y.
template <typename F>
static inline void map(const float* x, int64_t n, float* y, F f) {
  int64_t i = 0;
  const __m256i all = _mm256_set1_epi32(-1);
  for (; i + kW <= n; i += kW) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i), i, all));
  if (i < n) {
    __m256i k = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, k, f(_mm256_maskload_ps(x + i, k), i, k));
  }
}

void normalize(const float* x, int64_t n, float mean, float rstd, const float* w, const float* b,
               float* y) {
  __m256 m = _mm256_set1_ps(mean), rs = _mm256_set1_ps(rstd);
  map(x, n, y, [&](__m256 v, int64_t i, __m256i k) {
    v = _mm256_mul_ps(_mm256_sub_ps(v, m), rs);
    if (w) v = _mm256_mul_ps(v, _mm256_maskload_ps(w + i, k));
    if (b) v = _mm256_add_ps(v, _mm256_maskload_ps(b + i, k));
    return v;
  });
}

void center_scale_shift(const float* x, int64_t n, float m, float a, float b, float* y) {
  __m256 vm = _mm256_set1_ps(m), va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  map(x, n, y,
      [&](__m256 v, int64_t, __m256i) { return _mm256_fmadd_ps(_mm256_sub_ps(v, vm), va, vb); });
}

void modulate(const float* x, int64_t n, const float* scale1p, const float* shift, float* y) {
  map(x, n, y, [&](__m256 v, int64_t i, __m256i k) {
    return _mm256_fmadd_ps(v, _mm256_maskload_ps(scale1p + i, k), _mm256_maskload_ps(shift + i, k));
  });
}

void normalize_modulate(const float* x, int64_t n, float mean, float rstd, const float* scale1p,
                        const float* shift, float* y) {
  __m256 m = _mm256_set1_ps(mean), rs = _mm256_set1_ps(rstd);
  map(x, n, y, [&](__m256 v, int64_t i, __m256i k) {
    v = _mm256_mul_ps(_mm256_sub_ps(v, m), rs);  // normalize's rounding, then modulate's fma
    return _mm256_fmadd_ps(v, _mm256_maskload_ps(scale1p + i, k), _mm256_maskload_ps(shift + i, k));
  });
}

void activation(const float* x, int64_t n, int act, float* y) {
  switch (act) {
    case kRowActGeluTanh:
      map(x, n, y, [](__m256 v, int64_t, __m256i) { return gelu_tanh(v); });
      return;
    case kRowActGeluErf:
      map(x, n, y, [](__m256 v, int64_t, __m256i) { return gelu_erf(v); });
      return;
    case kRowActQuickGelu:
      map(x, n, y, [](__m256 v, int64_t, __m256i) {
        return x_sigmoid(v, _mm256_mul_ps(_mm256_set1_ps(1.702f), v));
      });
      return;
    case kRowActSilu:
      map(x, n, y, [](__m256 v, int64_t, __m256i) { return x_sigmoid(v, v); });
      return;
    default:
      if (y != x) map(x, n, y, [](__m256 v, int64_t, __m256i) { return v; });
      return;
  }
}

float max(const float* x, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 a = ninf;
  int64_t i = 0;
  for (; i + kW <= n; i += kW) a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
  if (i < n) {
    __m256i k = tail_mask(n - i);
    a = _mm256_max_ps(a,
                      _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k)));
  }
  return hmax(a);
}

float exp_sub_sum(const float* x, int64_t n, float m, float* y) {
  __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (i < n) {
    __m256i k = tail_mask(n - i);
    __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vm)),
                             _mm256_castsi256_ps(k));
    _mm256_maskstore_ps(y + i, k, e);
    acc = _mm256_add_ps(acc, e);
  }
  return hsum(acc);
}

void scale(float* y, int64_t n, float s) {
  __m256 vs = _mm256_set1_ps(s);
  map(y, n, y, [&](__m256 v, int64_t, __m256i) { return _mm256_mul_ps(v, vs); });
}

// The binary / ternary maps are unrolled by two vectors: they are memory-bound, and two
// independent load-compute-store chains per iteration keep more loads in flight.
// y = a + b or a · b (kMul), the two broadcast binary ops.
template <bool kMul>
void binary(const float* a, const float* b, int64_t n, float* y) {
  auto op = [](__m256 u, __m256 v) { return kMul ? _mm256_mul_ps(u, v) : _mm256_add_ps(u, v); };
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m256 v0 = op(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 v1 = op(_mm256_loadu_ps(a + i + kW), _mm256_loadu_ps(b + i + kW));
    _mm256_storeu_ps(y + i, v0);
    _mm256_storeu_ps(y + i + kW, v1);
  }
  for (; i + kW <= n; i += kW)
    _mm256_storeu_ps(y + i, op(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  if (i < n) {
    __m256i k = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, k,
                        op(_mm256_maskload_ps(a + i, k), _mm256_maskload_ps(b + i, k)));
  }
}

void add(const float* a, const float* b, int64_t n, float* y) { binary<false>(a, b, n, y); }
void mul(const float* a, const float* b, int64_t n, float* y) { binary<true>(a, b, n, y); }

void gated_add(const float* x, const float* g, const float* h, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    __m256 v0 =
        _mm256_fmadd_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(h + i), _mm256_loadu_ps(x + i));
    __m256 v1 = _mm256_fmadd_ps(_mm256_loadu_ps(g + i + kW), _mm256_loadu_ps(h + i + kW),
                                _mm256_loadu_ps(x + i + kW));
    _mm256_storeu_ps(y + i, v0);
    _mm256_storeu_ps(y + i + kW, v1);
  }
  for (; i + kW <= n; i += kW) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(h + i),
                                            _mm256_loadu_ps(x + i)));
  }
  if (i < n) {
    __m256i k = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, k,
                        _mm256_fmadd_ps(_mm256_maskload_ps(g + i, k), _mm256_maskload_ps(h + i, k),
                                        _mm256_maskload_ps(x + i, k)));
  }
}

void affine(const float* x, int64_t n, float scale, float shift, float lo, float hi, float* y) {
  const __m256 vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(shift);
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  // max/min return the second operand when either is NaN: v second keeps NaN.
  map(x, n, y, [&](__m256 v, int64_t, __m256i) {
    return _mm256_min_ps(vhi, _mm256_max_ps(vlo, _mm256_fmadd_ps(v, vs, vb)));
  });
}

}  // namespace

const RowKernels kRowKernelsAvx2 = {sum,      sum_sq_dev, sum_sq, normalize,   center_scale_shift,
                                    modulate, activation, max,    exp_sub_sum, scale,
                                    add,      gated_add,  affine, mul,         normalize_modulate};

}  // namespace sd35::cpu
