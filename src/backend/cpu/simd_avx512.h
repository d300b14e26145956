// Small AVX-512 helpers shared by the *_avx512.cpp kernels. Include only from files compiled
// with the AVX-512 flags. Everything is `static inline` so that no weak symbol compiled with
// AVX-512 can leak into baseline code (docs/architecture.md).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/convert.h"
#include "core/dtype.h"

namespace sd35::cpu::simd512 {

// Horizontal reductions by in-register shuffles (GCC 12's _mm512_reduce_* trip
// -Wuninitialized through _mm256_undefined_pd).
static inline float hmax(__m512 v) {
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_max_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_max_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}
static inline float hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// A row of n f32/bf16/f16 elements to f32, zero-padded to np (the core's AVX-512 converter).
static inline void row_to_f32(const void* src, DType t, int64_t n, float* dst, int64_t np) {
  if (t == DType::kF32) {
    if (n) std::memcpy(dst, src, size_t(n) * 4);
  } else {
    sd35::detail::convert_to_f32_avx512(src, t, dst, n);
  }
  for (int64_t i = n; i < np; ++i) dst[i] = 0.0f;
}

}  // namespace sd35::cpu::simd512
