// AVX-512 conversions (this file is compiled with AVX-512 flags; only called after run-time
// detection). bf16 rounding is done with integer arithmetic rather than vcvtneps2bf16,
// which treats f32 subnormals as zero and would differ from the scalar path.
#include <immintrin.h>

#include "core/convert.h"
#include "core/float_convert.h"

namespace sd35::detail {
namespace {

inline __m256i bf16_round_16(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  __m512i nan_q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  __mmask16 is_nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  __m512i out = _mm512_mask_mov_epi32(_mm512_srli_epi32(r, 16), is_nan, nan_q);
  return _mm512_cvtepi32_epi16(out);
}

}  // namespace

bool convert_to_f32_avx512(const void* src, DType t, float* dst, int64_t n) {
  int64_t i = 0;
  if (t == DType::kBF16) {
    auto* s = static_cast<const uint16_t*>(src);
    for (; i + 16 <= n; i += 16) {
      __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
      _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
    return true;
  }
  if (t == DType::kF16) {
    auto* s = static_cast<const uint16_t*>(src);
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
    for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
    return true;
  }
  return false;
}

bool convert_from_f32_avx512(const float* src, void* dst, DType t, int64_t n) {
  int64_t i = 0;
  if (t == DType::kBF16) {
    auto* d = static_cast<uint16_t*>(dst);
    for (; i + 16 <= n; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), bf16_round_16(_mm512_loadu_ps(src + i)));
    for (; i < n; ++i) d[i] = f32_to_bf16(src[i]);
    return true;
  }
  if (t == DType::kF16) {
    auto* d = static_cast<uint16_t*>(dst);
    for (; i + 16 <= n; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                          _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; ++i) d[i] = f32_to_f16(src[i]);
    return true;
  }
  return false;
}

}  // namespace sd35::detail
