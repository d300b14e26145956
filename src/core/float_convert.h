// Scalar conversions between f32 and the 16/8-bit float formats, round-to-nearest-even,
// NaN and infinity preserved (or mapped as torch maps them for fp8). Bulk, SIMD-dispatched
// versions live in convert.h.
//
// The functions are `static inline` on purpose: this header is included by translation
// units compiled with AVX-512/AVX2 flags, and an ordinary inline function emitted there as
// a weak symbol could be picked by the linker for baseline code (crashing on older CPUs).
// Internal linkage keeps one copy per translation unit. ISA-specific files follow the same
// rule for everything they include (see docs/architecture.md).
#pragma once

#include <cstdint>
#include <cstring>

namespace sd35 {

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bf16 is the top half of an f32: widening is exact.
static inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

static inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN, keep sign
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7FFFu + lsb;  // ties to even; overflow of the largest finite values carries into inf
  return uint16_t(u >> 16);
}

static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return f32_from_bits(sign);
    // Subnormal: value = mant * 2^-24, exact in f32.
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {
    // Result is subnormal or zero: scale to units of 2^-24 and round to nearest even.
    if (a < 0x33000000u) return sign;  // below half the smallest subnormal
    uint32_t exp = a >> 23;
    uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126u - exp;  // 113 - exp + 13
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  uint32_t lsb = (a >> 13) & 1u;
  a += 0xFFFu + lsb;
  return uint16_t(sign | (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3FFu));
}

// float8_e4m3fn: exact widening (every value is representable in f32).
static inline float f8e4m3fn_to_f32(uint8_t b) {
  uint32_t sign = uint32_t(b & 0x80u) << 24;
  uint32_t exp = (b >> 3) & 0xFu;
  uint32_t mant = b & 0x7u;
  if (exp == 0xF && mant == 0x7) return f32_from_bits(sign | 0x7FC00000u);  // the only NaN
  if (exp == 0) {
    float v = float(mant) * (1.0f / 512.0f);  // subnormal: mant/8 * 2^-6
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 120u) << 23) | (mant << 20));
}

// Matches torch's float -> float8_e4m3fn cast (c10/util/Float8_e4m3fn.h): round to nearest
// even; magnitudes that round past 448 (> 464; 464 itself ties down to 448) and infinities
// become NaN. The format has no infinity and torch does not saturate.
static inline uint8_t f32_to_f8e4m3fn(float f) {
  uint32_t u = f32_bits(f);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x43F00000u) return uint8_t(sign | 0x7Fu);  // >= 480, inf, NaN
  // (464, 480) rounds up below to exp 15 / mantissa 7, which is the NaN pattern 0x7F.
  if (a < 0x3C800000u) {
    // Below the smallest normal 2^-6: units of 2^-9, round to nearest even.
    float v = f32_from_bits(a) * 512.0f;  // exact scaling by a power of two
    uint32_t q = uint32_t(v);
    float rem = v - float(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return uint8_t(sign | q);  // q == 8 is correctly the smallest normal (exp 1, mant 0)
  }
  uint32_t lsb = (a >> 20) & 1u;
  a += 0x7FFFFu + lsb;
  return uint8_t(sign | (((a >> 23) - 120u) << 3) | ((a >> 20) & 0x7u));
}

// float8_e5m2 is the top byte of an fp16.
static inline float f8e5m2_to_f32(uint8_t b) { return f16_to_f32(uint16_t(b) << 8); }
static inline uint8_t f32_to_f8e5m2(float f) {
  // Rounded directly from f32 (going through f16 would round twice).
  uint32_t u = f32_bits(f);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint8_t(sign | 0x7Fu);  // NaN
  if (a >= 0x47700000u) return uint8_t(sign | 0x7Cu);  // >= 61440 ties up to inf
  if (a < 0x38800000u) {
    float v = f32_from_bits(a) * 65536.0f;  // units of 2^-16, exact
    uint32_t q = uint32_t(v);
    float rem = v - float(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return uint8_t(sign | q);
  }
  uint32_t lsb = (a >> 21) & 1u;
  a += 0xFFFFFu + lsb;
  return uint8_t(sign | (((a >> 23) - 112u) << 2) | ((a >> 21) & 0x3u));
}

}  // namespace sd35
