// AVX2 + F16C conversions (compiled with AVX2 flags; called after run-time detection).
#include <immintrin.h>

#include "core/convert.h"
#include "core/float_convert.h"

namespace sd35::detail {
namespace {

// Rounds 8 floats to bf16 (ties to even, NaN quieted) and packs them into 8 uint16.
inline __m128i bf16_round_8(__m256 x) {
  __m256i u = _mm256_castps_si256(x);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  __m256i nan_q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  __m256i out = _mm256_blendv_epi8(r, nan_q, is_nan);
  // Values are < 65536, so unsigned saturation packs them exactly; fix the lane order after.
  __m256i packed = _mm256_packus_epi32(out, out);
  packed = _mm256_permute4x64_epi64(packed, 0x08);
  return _mm256_castsi256_si128(packed);
}

}  // namespace

bool convert_to_f32_avx2(const void* src, DType t, float* dst, int64_t n) {
  int64_t i = 0;
  if (t == DType::kBF16) {
    auto* s = static_cast<const uint16_t*>(src);
    for (; i + 8 <= n; i += 8) {
      __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
    return true;
  }
  if (t == DType::kF16) {
    auto* s = static_cast<const uint16_t*>(src);
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
    for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
    return true;
  }
  return false;
}

bool convert_from_f32_avx2(const float* src, void* dst, DType t, int64_t n) {
  int64_t i = 0;
  if (t == DType::kBF16) {
    auto* d = static_cast<uint16_t*>(dst);
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), bf16_round_8(_mm256_loadu_ps(src + i)));
    for (; i < n; ++i) d[i] = f32_to_bf16(src[i]);
    return true;
  }
  if (t == DType::kF16) {
    auto* d = static_cast<uint16_t*>(dst);
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; ++i) d[i] = f32_to_f16(src[i]);
    return true;
  }
  return false;
}

}  // namespace sd35::detail
