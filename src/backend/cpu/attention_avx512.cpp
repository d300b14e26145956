// AVX-512 attention kernels (compiled with -mavx512f/bw/vl/dq/bf16; called only when
// active_cpu_isa() is AVX-512, and the bf16 variant only when active_avx512_bf16()).
// See attention_kernels.h for the algorithm and the packed layouts.
//
// Register blocking (32 zmm registers):
//  - S = Q·Kᵀ: 8 query rows × 32 keys = 16 accumulators; per feature (pair) 2 K loads and 8
//    broadcasts of Q, folded into the FMA as {1to16} memory operands.
//  - O += P·V: 8 rows × 32 features = 16 accumulators; per key (pair) 2 V loads, 8 broadcasts.
// With bf16, vdpbf16ps does two multiply-adds per lane, so K is packed as (key lane, feature
// pair) and V as (feature lane, key pair); P is rounded to bf16 once, and the row sum l adds
// the rounded values so that the weights applied to V sum exactly to l.
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/attention_kernels.h"
#include "core/float_convert.h"
#include "backend/cpu/simd_avx512.h"

namespace sd35::cpu::attn {
namespace {

using simd512::hmax;
using simd512::hsum;
using simd512::row_to_f32;

constexpr int kR = 12;  // query rows per register tile
constexpr float kInf = __builtin_inff();

// Own min/max: ISA files instantiate no std:: templates (see CMakeLists.txt).
static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline float max_f32(float a, float b) { return a > b ? a : b; }

static inline float load_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
}

// Row of n elements of dtype t to f32 or bf16, zero-padded to np.

static inline void row_to_bf16(const void* src, DType t, int64_t n, uint16_t* dst, int64_t np) {
  if (t == DType::kBF16) {
    if (n) std::memcpy(dst, src, size_t(n) * 2);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(load_f32(src, t, i));
  }
  for (int64_t i = n; i < np; ++i) dst[i] = 0;
}

// 2^x for x <= 0 (arguments below -200 give exactly 0; -inf gives 0). Degree-6 Taylor
// polynomial of 2^f on [-0.5, 0.5]: relative error < 2e-7, below f32 rounding of the scores.
static inline __m512 exp2_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-200.0f));
  __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5403530393381606e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

static inline __m512 bcast_pair(const uint16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_castsi512_ps(_mm512_set1_epi32(v));
}

static inline __m512 dp_bf16(__m512 acc, __m512 a, __m512 b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(a), (__m512bh)_mm512_castps_si512(b));
}

// S[r][0..32) for 8 rows (S row stride kKBlock) from packed Q rows and two 16-key groups.
template <bool kBf16>
static inline void qk_tile(const void* qv, int64_t dp, int64_t d, const void* kv, int64_t group_stride,
                           float* s) {
  __m512 acc[kR][2];
  for (int r = 0; r < kR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  if constexpr (kBf16) {
    const uint16_t* q = static_cast<const uint16_t*>(qv);
    const uint16_t* k0 = static_cast<const uint16_t*>(kv);
    const uint16_t* k1 = k0 + group_stride;
    const int64_t pairs = (d + 1) / 2;  // K and Q are zero beyond d
    for (int64_t p = 0; p < pairs; ++p) {
      __m512 b0 = _mm512_castsi512_ps(_mm512_load_si512(k0 + p * 32));
      __m512 b1 = _mm512_castsi512_ps(_mm512_load_si512(k1 + p * 32));
      for (int r = 0; r < kR; ++r) {
        __m512 a = bcast_pair(q + r * dp + 2 * p);
        acc[r][0] = dp_bf16(acc[r][0], a, b0);
        acc[r][1] = dp_bf16(acc[r][1], a, b1);
      }
    }
  } else {
    const float* q = static_cast<const float*>(qv);
    const float* k0 = static_cast<const float*>(kv);
    const float* k1 = k0 + group_stride;
    for (int64_t f = 0; f < d; ++f) {
      __m512 b0 = _mm512_load_ps(k0 + f * 16);
      __m512 b1 = _mm512_load_ps(k1 + f * 16);
      for (int r = 0; r < kR; ++r) {
        __m512 a = _mm512_set1_ps(q[r * dp + f]);
        acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < kR; ++r) {
    _mm512_store_ps(s + r * kKBlock, acc[r][0]);
    _mm512_store_ps(s + r * kKBlock + 16, acc[r][1]);
  }
}

// Online-softmax update of 8 rows over nk scores (keys >= valid are padding). Writes P
// (bf16 or f32, row stride kKBlock) and the rescale factor of each row's old state.
template <bool kBf16>
static inline void softmax_tile(const float* s, void* pv, float* m, float* l, float* alpha,
                                int nk, int valid, float c) {
  const int nv = nk / 16;
  for (int r = 0; r < kR; ++r) {
    __m512 sv[kKBlock / 16];
    __m512 mx = _mm512_set1_ps(-kInf);
    for (int i = 0; i < nv; ++i) {
      __m512 v = _mm512_mul_ps(_mm512_load_ps(s + r * kKBlock + i * 16), _mm512_set1_ps(c));
      int lanes = valid - i * 16;
      if (lanes < 16) {
        __mmask16 keep = lanes <= 0 ? __mmask16(0) : __mmask16((1u << lanes) - 1u);
        v = _mm512_mask_mov_ps(_mm512_set1_ps(-kInf), keep, v);
      }
      sv[i] = v;
      mx = _mm512_max_ps(mx, v);
    }
    const float m_new = max_f32(m[r], hmax(mx));
    alpha[r] = _mm512_cvtss_f32(exp2_ps(_mm512_set1_ps(m[r] - m_new)));
    m[r] = m_new;
    const __m512 mn = _mm512_set1_ps(m_new);
    __m512 sum = _mm512_setzero_ps();
    if constexpr (kBf16) {
      uint16_t* p = static_cast<uint16_t*>(pv) + r * kKBlock;
      for (int i = 0; i < nv; i += 2) {
        __m512 p0 = exp2_ps(_mm512_sub_ps(sv[i], mn));
        __m512 p1 = exp2_ps(_mm512_sub_ps(sv[i + 1], mn));
        __m512i pb = (__m512i)_mm512_cvtne2ps_pbh(p1, p0);
        _mm512_store_si512(p + i * 16, pb);
        // Widen the rounded values back (each 32-bit lane holds two bf16): l must sum what
        // P·V actually applies.
        __m512 r0 = _mm512_castsi512_ps(_mm512_slli_epi32(pb, 16));
        __m512 r1 = _mm512_castsi512_ps(_mm512_and_si512(pb, _mm512_set1_epi32(int(0xFFFF0000u))));
        sum = _mm512_add_ps(sum, _mm512_add_ps(r0, r1));
      }
    } else {
      float* p = static_cast<float*>(pv) + r * kKBlock;
      for (int i = 0; i < nv; ++i) {
        __m512 e = exp2_ps(_mm512_sub_ps(sv[i], mn));
        _mm512_store_ps(p + i * 16, e);
        sum = _mm512_add_ps(sum, e);
      }
    }
    l[r] = l[r] * alpha[r] + hsum(sum);
  }
}

// O[8][c0*16 .. (c0+NV)*16) = O·alpha + P·V over nk keys.
template <bool kBf16, int NV>
static inline void pv_tile(const void* pv, const void* vv, int64_t dp, int64_t c0, int nk,
                           float* o, const float* alpha) {
  __m512 acc[kR][NV];
  for (int r = 0; r < kR; ++r) {
    __m512 a = _mm512_set1_ps(alpha[r]);
    for (int i = 0; i < NV; ++i) acc[r][i] = _mm512_mul_ps(_mm512_load_ps(o + r * dp + (c0 + i) * 16), a);
  }
  if constexpr (kBf16) {
    const uint16_t* p = static_cast<const uint16_t*>(pv);
    const uint16_t* v = static_cast<const uint16_t*>(vv) + c0 * 32;
    for (int jp = 0; jp < nk / 2; ++jp) {
      __m512 b[NV];
      for (int i = 0; i < NV; ++i)
        b[i] = _mm512_castsi512_ps(_mm512_load_si512(v + jp * dp * 2 + i * 32));
      for (int r = 0; r < kR; ++r) {
        __m512 a = bcast_pair(p + r * kKBlock + 2 * jp);
        for (int i = 0; i < NV; ++i) acc[r][i] = dp_bf16(acc[r][i], a, b[i]);
      }
    }
  } else {
    const float* p = static_cast<const float*>(pv);
    const float* v = static_cast<const float*>(vv) + c0 * 16;
    for (int j = 0; j < nk; ++j) {
      __m512 b[NV];
      for (int i = 0; i < NV; ++i) b[i] = _mm512_load_ps(v + j * dp + i * 16);
      for (int r = 0; r < kR; ++r) {
        __m512 a = _mm512_set1_ps(p[r * kKBlock + j]);
        for (int i = 0; i < NV; ++i) acc[r][i] = _mm512_fmadd_ps(a, b[i], acc[r][i]);
      }
    }
  }
  for (int r = 0; r < kR; ++r)
    for (int i = 0; i < NV; ++i) _mm512_store_ps(o + r * dp + (c0 + i) * 16, acc[r][i]);
}

template <bool kBf16>
static void rows_impl(const RowsArgs& a) {
  const int64_t dp = a.dp, es = kBf16 ? 2 : 4;
  const int64_t rows_p = (a.rows + kR - 1) / kR * kR;
  char* sc = static_cast<char*>(a.scratch);
  void* qp = sc;
  sc += kQBlock * dp * 4;
  float* o = reinterpret_cast<float*>(sc);
  sc += kQBlock * dp * 4;
  float* m = reinterpret_cast<float*>(sc);
  float* l = m + kQBlock;
  float* alpha = l + kQBlock;
  float* s = alpha + 64;  // keeps 64-byte alignment
  void* p = s + kR * kKBlock;

  for (int64_t r = 0; r < rows_p; ++r) {
    const bool real = r < a.rows;
    const void* src = real ? static_cast<const char*>(a.q) + r * a.q_ld * int64_t(dtype_size(a.qdt)) : nullptr;
    const int64_t n = real ? a.d : 0;
    if constexpr (kBf16)
      row_to_bf16(src, a.qdt, n, static_cast<uint16_t*>(qp) + r * dp, dp);
    else
      row_to_f32(src, a.qdt, n, static_cast<float*>(qp) + r * dp, dp);
    for (int64_t f = 0; f < dp; ++f) o[r * dp + f] = 0.0f;
    m[r] = -kInf;
    l[r] = 0.0f;
  }

  // Elements of one 16-key K group: (dp/2 pairs × 32) or (dp × 16).
  const int64_t group = dp * 16;
  for (int64_t kb = 0; kb < a.lkp; kb += kKBlock) {
    const int nk = int(min_i64(kKBlock, a.lkp - kb));
    const int valid = int(min_i64(nk, a.lk - kb));
    const char* kblk = static_cast<const char*>(a.kpack) + (kb / 16) * group * es;
    const char* vblk = static_cast<const char*>(a.vpack) + kb * dp * es;
    for (int64_t t = 0; t < rows_p; t += kR) {
      const char* qt = static_cast<const char*>(qp) + t * dp * es;
      for (int c = 0; c < nk; c += 32)
        qk_tile<kBf16>(qt, dp, a.d, kblk + (c / 16) * group * es, group, s + c);
      softmax_tile<kBf16>(s, p, m + t, l + t, alpha, nk, valid, a.scale_log2e);
      float* ot = o + t * dp;
      const int64_t nvec = dp / 16;
      int64_t c0 = 0;
      for (; c0 + 2 <= nvec; c0 += 2) pv_tile<kBf16, 2>(p, vblk, dp, c0, nk, ot, alpha);
      if (c0 < nvec) pv_tile<kBf16, 1>(p, vblk, dp, c0, nk, ot, alpha);
    }
  }

  const size_t oes = dtype_size(a.odt);
  for (int64_t r = 0; r < a.rows; ++r) {
    const float inv = 1.0f / l[r];
    char* dst = static_cast<char*>(a.out) + r * a.out_ld * int64_t(oes);
    const float* src = o + r * dp;
    if (a.odt == DType::kF32) {
      for (int64_t f = 0; f < a.d; ++f) reinterpret_cast<float*>(dst)[f] = src[f] * inv;
    } else if (a.odt == DType::kBF16) {
      for (int64_t f = 0; f < a.d; ++f) reinterpret_cast<uint16_t*>(dst)[f] = f32_to_bf16(src[f] * inv);
    } else {
      for (int64_t f = 0; f < a.d; ++f) reinterpret_cast<uint16_t*>(dst)[f] = f32_to_f16(src[f] * inv);
    }
  }
}

}  // namespace

void pack_kv_avx512(const PackArgs& a, bool bf16) {
  const int64_t dp = a.dp;
  const size_t kes = dtype_size(a.kdt), ves = dtype_size(a.vdt);
  if (bf16) {
    uint32_t* kp = static_cast<uint32_t*>(a.kpack);  // one bf16 feature pair per element
    uint16_t* vp = static_cast<uint16_t*>(a.vpack);
    // dp <= kMaxPackedD (checked by the caller), so a row fits on the stack.
    alignas(64) uint16_t row[2][4096];
    const int64_t hp = dp / 2;
    for (int64_t j = 0; j < a.lkp; ++j) {
      // K: the pairs of key j go to lane j%16 of each pair vector of group j/16.
      if (j < a.lk)
        row_to_bf16(static_cast<const char*>(a.k) + j * a.k_ld * int64_t(kes), a.kdt, a.d, row[0], dp);
      else
        row_to_bf16(nullptr, a.kdt, 0, row[0], dp);
      uint32_t* dst = kp + (j / 16) * hp * 16 + (j % 16);
      for (int64_t p = 0; p < hp; ++p) {
        uint32_t v;
        std::memcpy(&v, row[0] + 2 * p, 4);
        dst[p * 16] = v;
      }
    }
    // V: key pairs interleaved feature by feature.
    for (int64_t jp = 0; jp < a.lkp / 2; ++jp) {
      uint16_t* v0 = row[0];
      uint16_t* v1 = row[1];
      for (int e = 0; e < 2; ++e) {
        const int64_t j = 2 * jp + e;
        if (j < a.lk)
          row_to_bf16(static_cast<const char*>(a.v) + j * a.v_ld * int64_t(ves), a.vdt, a.d, row[e], dp);
        else
          row_to_bf16(nullptr, a.vdt, 0, row[e], dp);
      }
      uint16_t* dst = vp + jp * dp * 2;
      for (int64_t f = 0; f < dp; ++f) {
        dst[2 * f] = v0[f];
        dst[2 * f + 1] = v1[f];
      }
    }
  } else {
    float* kp = static_cast<float*>(a.kpack);
    float* vp = static_cast<float*>(a.vpack);
    alignas(64) float row[4096];
    for (int64_t j = 0; j < a.lkp; ++j) {
      const bool real = j < a.lk;
      row_to_f32(real ? static_cast<const char*>(a.k) + j * a.k_ld * int64_t(kes) : nullptr, a.kdt,
                 real ? a.d : 0, row, dp);
      float* dst = kp + (j / 16) * dp * 16 + (j % 16);
      for (int64_t f = 0; f < dp; ++f) dst[f * 16] = row[f];
      row_to_f32(real ? static_cast<const char*>(a.v) + j * a.v_ld * int64_t(ves) : nullptr, a.vdt,
                 real ? a.d : 0, vp + j * dp, dp);
    }
  }
}

void rows_avx512(const RowsArgs& a, bool bf16) {
  if (bf16)
    rows_impl<true>(a);
  else
    rows_impl<false>(a);
}

}  // namespace sd35::cpu::attn
