// AVX2 + FMA attention kernels (f32 math; bf16/f16 inputs are widened while packing).
// Called only when active_cpu_isa() is AVX2. See attention_kernels.h for the algorithm.
//
// Register blocking (16 ymm registers): S = Q·Kᵀ on 4 rows × 16 keys (8 accumulators),
// O += P·V on 4 rows × 16 features (8 accumulators), one broadcast and two loads per step.
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/attention_kernels.h"
#include "core/float_convert.h"
#include "backend/cpu/simd_avx2.h"

namespace sd35::cpu::attn {
namespace {

using simd256::hmax;
using simd256::hsum;
using simd256::row_to_f32;

constexpr int kR = 4;
constexpr float kInf = __builtin_inff();

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline float max_f32(float a, float b) { return a > b ? a : b; }


// 2^x for x <= 0, flushed to 2^-126 below -126 (the padded keys are zeroed separately).
// Degree-6 Taylor polynomial on [-0.5, 0.5]: relative error < 2e-7.
static inline __m256 exp2_ps(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-126.0f));
  __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 f = _mm256_sub_ps(x, n);
  __m256 p = _mm256_set1_ps(1.5403530393381606e-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}


static inline void qk_tile(const float* q, int64_t dp, int64_t d, const float* k0, int64_t group,
                           float* s) {
  __m256 acc[kR][2];
  for (int r = 0; r < kR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const float* k1 = k0 + group;
  for (int64_t f = 0; f < d; ++f) {
    __m256 b0 = _mm256_load_ps(k0 + f * 8);
    __m256 b1 = _mm256_load_ps(k1 + f * 8);
    for (int r = 0; r < kR; ++r) {
      __m256 a = _mm256_broadcast_ss(q + r * dp + f);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < kR; ++r) {
    _mm256_store_ps(s + r * kKBlock, acc[r][0]);
    _mm256_store_ps(s + r * kKBlock + 8, acc[r][1]);
  }
}

static inline void softmax_tile(const float* s, float* p, float* m, float* l, float* alpha,
                                int nk, int valid, float c) {
  const int nv = nk / 8;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int r = 0; r < kR; ++r) {
    __m256 sv[kKBlock / 8];
    __m256 mx = _mm256_set1_ps(-kInf);
    for (int i = 0; i < nv; ++i) {
      __m256 v = _mm256_mul_ps(_mm256_load_ps(s + r * kKBlock + i * 8), _mm256_set1_ps(c));
      if (valid - i * 8 < 8) {
        __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(valid - i * 8), lane));
        v = _mm256_blendv_ps(_mm256_set1_ps(-kInf), v, keep);
      }
      sv[i] = v;
      mx = _mm256_max_ps(mx, v);
    }
    const float m_new = max_f32(m[r], hmax(mx));
    alpha[r] = _mm256_cvtss_f32(exp2_ps(_mm256_set1_ps(m[r] - m_new)));
    if (m[r] == -kInf) alpha[r] = 0.0f;  // exp2 flushes at 2^-126, not 0; the state is empty
    m[r] = m_new;
    const __m256 mn = _mm256_set1_ps(m_new);
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < nv; ++i) {
      __m256 e = exp2_ps(_mm256_sub_ps(sv[i], mn));
      if (valid - i * 8 < 8) {
        __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(valid - i * 8), lane));
        e = _mm256_and_ps(e, keep);
      }
      _mm256_store_ps(p + r * kKBlock + i * 8, e);
      sum = _mm256_add_ps(sum, e);
    }
    l[r] = l[r] * alpha[r] + hsum(sum);
  }
}

template <int NV>
static inline void pv_tile(const float* p, const float* v, int64_t dp, int64_t c0, int nk,
                           float* o, const float* alpha) {
  __m256 acc[kR][NV];
  for (int r = 0; r < kR; ++r) {
    __m256 a = _mm256_set1_ps(alpha[r]);
    for (int i = 0; i < NV; ++i) acc[r][i] = _mm256_mul_ps(_mm256_load_ps(o + r * dp + (c0 + i) * 8), a);
  }
  v += c0 * 8;
  for (int j = 0; j < nk; ++j) {
    __m256 b[NV];
    for (int i = 0; i < NV; ++i) b[i] = _mm256_load_ps(v + j * dp + i * 8);
    for (int r = 0; r < kR; ++r) {
      __m256 a = _mm256_broadcast_ss(p + r * kKBlock + j);
      for (int i = 0; i < NV; ++i) acc[r][i] = _mm256_fmadd_ps(a, b[i], acc[r][i]);
    }
  }
  for (int r = 0; r < kR; ++r)
    for (int i = 0; i < NV; ++i) _mm256_store_ps(o + r * dp + (c0 + i) * 8, acc[r][i]);
}

}  // namespace

void pack_kv_avx2(const PackArgs& a) {
  const int64_t dp = a.dp;
  const size_t kes = dtype_size(a.kdt), ves = dtype_size(a.vdt);
  float* kp = static_cast<float*>(a.kpack);
  float* vp = static_cast<float*>(a.vpack);
  alignas(32) float row[4096];  // dp <= kMaxPackedD, checked by the caller
  for (int64_t j = 0; j < a.lkp; ++j) {
    const bool real = j < a.lk;
    row_to_f32(real ? static_cast<const char*>(a.k) + j * a.k_ld * int64_t(kes) : nullptr, a.kdt,
               real ? a.d : 0, row, dp);
    float* dst = kp + (j / 8) * dp * 8 + (j % 8);
    for (int64_t f = 0; f < dp; ++f) dst[f * 8] = row[f];
    row_to_f32(real ? static_cast<const char*>(a.v) + j * a.v_ld * int64_t(ves) : nullptr, a.vdt,
               real ? a.d : 0, vp + j * dp, dp);
  }
}

void rows_avx2(const RowsArgs& a) {
  const int64_t dp = a.dp;
  const int64_t rows_p = (a.rows + kR - 1) / kR * kR;
  char* sc = static_cast<char*>(a.scratch);
  float* qp = reinterpret_cast<float*>(sc);
  sc += kQBlock * dp * 4;
  float* o = reinterpret_cast<float*>(sc);
  sc += kQBlock * dp * 4;
  float* m = reinterpret_cast<float*>(sc);
  float* l = m + kQBlock;
  float* alpha = l + kQBlock;
  float* s = alpha + 64;
  float* p = s + kR * kKBlock;

  for (int64_t r = 0; r < rows_p; ++r) {
    const bool real = r < a.rows;
    row_to_f32(real ? static_cast<const char*>(a.q) + r * a.q_ld * int64_t(dtype_size(a.qdt)) : nullptr,
               a.qdt, real ? a.d : 0, qp + r * dp, dp);
    for (int64_t f = 0; f < dp; ++f) o[r * dp + f] = 0.0f;
    m[r] = -kInf;
    l[r] = 0.0f;
  }
  const int64_t group = dp * 8;
  for (int64_t kb = 0; kb < a.lkp; kb += kKBlock) {
    const int nk = int(min_i64(kKBlock, a.lkp - kb));
    const int valid = int(min_i64(nk, a.lk - kb));
    const float* kblk = static_cast<const float*>(a.kpack) + (kb / 8) * group;
    const float* vblk = static_cast<const float*>(a.vpack) + kb * dp;
    for (int64_t t = 0; t < rows_p; t += kR) {
      for (int c = 0; c < nk; c += 16)
        qk_tile(qp + t * dp, dp, a.d, kblk + (c / 8) * group, group, s + c);
      softmax_tile(s, p, m + t, l + t, alpha, nk, valid, a.scale_log2e);
      float* ot = o + t * dp;
      const int64_t nvec = dp / 8;
      int64_t c0 = 0;
      for (; c0 + 2 <= nvec; c0 += 2) pv_tile<2>(p, vblk, dp, c0, nk, ot, alpha);
      if (c0 < nvec) pv_tile<1>(p, vblk, dp, c0, nk, ot, alpha);
    }
  }
  const size_t oes = dtype_size(a.odt);
  for (int64_t r = 0; r < a.rows; ++r) {
    const float inv = 1.0f / l[r];
    char* dst = static_cast<char*>(a.out) + r * a.out_ld * int64_t(oes);
    const float* src = o + r * dp;
    for (int64_t f = 0; f < a.d; ++f) {
      float v = src[f] * inv;
      if (a.odt == DType::kF32)
        reinterpret_cast<float*>(dst)[f] = v;
      else if (a.odt == DType::kBF16)
        reinterpret_cast<uint16_t*>(dst)[f] = f32_to_bf16(v);
      else
        reinterpret_cast<uint16_t*>(dst)[f] = f32_to_f16(v);
    }
  }
}

}  // namespace sd35::cpu::attn
