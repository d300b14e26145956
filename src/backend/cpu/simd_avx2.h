// Small AVX2 helpers shared by the *_avx2.cpp kernels. Include only from files compiled with
// the AVX2 flags; everything is `static inline` (no weak symbols, docs/architecture.md).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/convert.h"
#include "core/dtype.h"

namespace sd35::cpu::simd256 {

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A row of n f32/bf16/f16 elements to f32, zero-padded to np (the core's AVX2 converter).
static inline void row_to_f32(const void* src, DType t, int64_t n, float* dst, int64_t np) {
  if (t == DType::kF32) {
    if (n) std::memcpy(dst, src, size_t(n) * 4);
  } else {
    sd35::detail::convert_to_f32_avx2(src, t, dst, n);
  }
  for (int64_t i = n; i < np; ++i) dst[i] = 0.0f;
}

}  // namespace sd35::cpu::simd256
