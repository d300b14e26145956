// Device-side loads and stores of every compute float as f32, with the same rounding as
// core/float_convert.h (round to nearest even, NaN kept; fp8 e4m3fn as torch: no saturation,
// magnitudes rounding past 448 become NaN). Written with integer bit manipulation so the
// results are bit-identical to the host conversions the reference backend uses.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace sd35::cuda {

__device__ __forceinline__ float dev_bf16_to_f32(uint16_t h) {
  return __uint_as_float(uint32_t(h) << 16);
}
__device__ __forceinline__ uint16_t dev_f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

__device__ __forceinline__ float dev_f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  if (exp == 0x1F) return __uint_as_float(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {
    float v = float(mant) * (1.0f / 16777216.0f);  // subnormal, exact
    return sign ? -v : v;
  }
  return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
}
__device__ __forceinline__ uint16_t dev_f32_to_f16(float f) {
  uint32_t u = __float_as_uint(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00u);
  if (a < 0x38800000u) {
    if (a < 0x33000000u) return sign;
    uint32_t shift = 126u - (a >> 23);
    uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  a += 0xFFFu + ((a >> 13) & 1u);
  return uint16_t(sign | (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3FFu));
}

__device__ __forceinline__ float dev_f8e4m3fn_to_f32(uint8_t b) {
  uint32_t sign = uint32_t(b & 0x80u) << 24;
  uint32_t exp = (b >> 3) & 0xFu, mant = b & 0x7u;
  if (exp == 0xF && mant == 0x7) return __uint_as_float(sign | 0x7FC00000u);
  if (exp == 0) {
    float v = float(mant) * (1.0f / 512.0f);
    return sign ? -v : v;
  }
  return __uint_as_float(sign | ((exp + 120u) << 23) | (mant << 20));
}
// Rounds a magnitude below the smallest normal in units of 2^-k (v already scaled, exact).
__device__ __forceinline__ uint32_t dev_round_subnormal(float v) {
  uint32_t q = uint32_t(v);
  float rem = v - float(q);
  if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
  return q;
}
__device__ __forceinline__ uint8_t dev_f32_to_f8e4m3fn(float f) {
  uint32_t u = __float_as_uint(f);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x43F00000u) return uint8_t(sign | 0x7Fu);
  if (a < 0x3C800000u) return uint8_t(sign | dev_round_subnormal(__uint_as_float(a) * 512.0f));
  a += 0x7FFFFu + ((a >> 20) & 1u);
  return uint8_t(sign | (((a >> 23) - 120u) << 3) | ((a >> 20) & 0x7u));
}
__device__ __forceinline__ float dev_f8e5m2_to_f32(uint8_t b) {
  return dev_f16_to_f32(uint16_t(uint16_t(b) << 8));
}
__device__ __forceinline__ uint8_t dev_f32_to_f8e5m2(float f) {
  uint32_t u = __float_as_uint(f);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint8_t(sign | 0x7Fu);
  if (a >= 0x47700000u) return uint8_t(sign | 0x7Cu);
  if (a < 0x38800000u) return uint8_t(sign | dev_round_subnormal(__uint_as_float(a) * 65536.0f));
  a += 0xFFFFFu + ((a >> 21) & 1u);
  return uint8_t(sign | (((a >> 23) - 112u) << 2) | ((a >> 21) & 0x3u));
}

// Element i of a buffer of dtype t as f32 (compute floats; anything else reads as 0 — the
// host validation never lets another dtype reach a converting kernel).
__device__ __forceinline__ float load_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return dev_bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return dev_f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF8E4M3FN: return dev_f8e4m3fn_to_f32(static_cast<const uint8_t*>(p)[i]);
    case DType::kF8E5M2: return dev_f8e5m2_to_f32(static_cast<const uint8_t*>(p)[i]);
    default: return 0.0f;
  }
}
__device__ __forceinline__ void store_f32(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(p)[i] = v; return;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = dev_f32_to_bf16(v); return;
    case DType::kF16: static_cast<uint16_t*>(p)[i] = dev_f32_to_f16(v); return;
    case DType::kF8E4M3FN: static_cast<uint8_t*>(p)[i] = dev_f32_to_f8e4m3fn(v); return;
    case DType::kF8E5M2: static_cast<uint8_t*>(p)[i] = dev_f32_to_f8e5m2(v); return;
    default: return;
  }
}

// Offset of flat index `i` (row-major over shape) for operand `op` of a StridedLayout.
template <typename Layout>
__device__ __forceinline__ int64_t layout_offset(const Layout& l, int op, int64_t i) {
  int64_t off = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    int64_t s = l.shape[d];
    int64_t q = i / s;
    off += (i - q * s) * l.stride[op][d];
    i = q;
  }
  return off;
}

// Offsets of flat index `i` for operands [0, n) at once: the divisions are done once.
template <typename Layout>
__device__ __forceinline__ void layout_offsets(const Layout& l, int n, int64_t i, int64_t* off) {
  for (int o = 0; o < n; ++o) off[o] = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    const int64_t s = l.shape[d];
    const int64_t q = i / s, r = i - q * s;
    for (int o = 0; o < n; ++o) off[o] += r * l.stride[o][d];
    i = q;
  }
}
// The same when the layout's element count is below 2^31 (so every dim and index fits in 32
// bits): a 32-bit division costs a fraction of a 64-bit one, which dominated the strided
// kernels (upsample's six dims, the VAE's transposes) at large sizes.
template <typename Layout>
__device__ __forceinline__ void layout_offsets32(const Layout& l, int n, uint32_t i,
                                                 int64_t* off) {
  for (int o = 0; o < n; ++o) off[o] = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    const uint32_t s = uint32_t(l.shape[d]);
    const uint32_t q = i / s, r = i - q * s;
    for (int o = 0; o < n; ++o) off[o] += int64_t(r) * l.stride[o][d];
    i = q;
  }
}

}  // namespace sd35::cuda
