// torch.randn on the CPU, bit-exact (SPEC-model.md §5.6): mt19937 seeded with the low 32 bits,
// 24-bit float uniforms, and Box-Muller over 16-element blocks. The default kernel replicates
// torch's AVX2 normal_fill_16_AVX2 lane by lane: avx_mathfun.h's Cephes log256_ps/sincos256_ps
// with the multiply-adds that the compiled wheel contracts into FMAs written as explicit
// std::fma, everything else as separate float roundings. This file is compiled with
// -ffp-contract=off (cmake/sampling.cmake) so that the compiler adds no contractions of its
// own: one extra or missing FMA changes ~1% of the values in the last bit.
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "sampling/sampling.h"

namespace sd35 {
namespace {

constexpr int kN = 624;
constexpr int kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfu;
constexpr uint32_t kUpperMask = 0x80000000u;
constexpr uint32_t kLowerMask = 0x7fffffffu;

inline float from_bits(uint32_t b) { return std::bit_cast<float>(b); }
inline uint32_t to_bits(float f) { return std::bit_cast<uint32_t>(f); }

// avx_mathfun.h log256_ps for one lane (x > 0 here: u1 = 1 - u lies in [2^-24, 1]).
float cephes_log(float x) {
  x = std::fmax(x, FLT_MIN);  // _mm256_max_ps with min_norm_pos: cuts off denormals
  const int32_t exponent = int32_t(to_bits(x) >> 23) - 127;
  float e = float(exponent) + 1.0f;
  x = from_bits((to_bits(x) & ~0x7f800000u) | 0x3f000000u);  // mantissa in [0.5, 1)
  const bool m = x < 0.707106781186547524f;
  const float tmp = m ? x : 0.0f;
  x = x - 1.0f;
  e = e - (m ? 1.0f : 0.0f);
  x = x + tmp;
  const float z = x * x;
  float y = 7.0376836292e-2f;
  y = std::fma(y, x, -1.1514610310e-1f);
  y = std::fma(y, x, 1.1676998740e-1f);
  y = std::fma(y, x, -1.2420140846e-1f);
  y = std::fma(y, x, 1.4249322787e-1f);
  y = std::fma(y, x, -1.6668057665e-1f);
  y = std::fma(y, x, 2.0000714765e-1f);
  y = std::fma(y, x, -2.4999993993e-1f);
  y = std::fma(y, x, 3.3333331174e-1f);
  y = y * x;
  y = std::fma(y, z, e * -2.12194440e-4f);
  y = std::fma(z, -0.5f, y);
  x = x + y;
  return std::fma(e, 0.693359375f, x);
}

// avx_mathfun.h sincos256_ps for one lane.
void cephes_sincos(float theta, float* s, float* c) {
  uint32_t sign_sin = to_bits(theta) & 0x80000000u;
  float x = std::fabs(theta);
  int32_t j = int32_t(x * 1.27323954473516f);  // cvttps: truncation
  j = (j + 1) & ~1;
  const float y = float(j);
  const uint32_t swap_sign = uint32_t(j & 4) << 29;
  const bool poly = (j & 2) == 0;
  sign_sin ^= swap_sign;
  const uint32_t sign_cos = uint32_t((~(j - 2)) & 4) << 29;
  x = std::fma(y, -0.78515625f, x);
  x = std::fma(y, -2.4187564849853515625e-4f, x);
  x = std::fma(y, -3.77489497744594108e-8f, x);
  const float z = x * x;
  float yc = std::fma(2.443315711809948e-5f, z, -1.388731625493765e-3f);
  yc = std::fma(yc, z, 4.166664568298827e-2f);
  yc = yc * z;
  yc = std::fma(yc, z, -(z * 0.5f));
  yc = yc + 1.0f;
  float ys = std::fma(-1.9515295891e-4f, z, 8.3321608736e-3f);
  ys = std::fma(ys, z, -1.6666654611e-1f);
  ys = ys * z;
  ys = std::fma(ys, x, x);
  // The kernel selects with and/andnot masks and adds the two halves (one of them +0).
  const float sin_v = (poly ? ys : yc) + 0.0f;
  const float cos_v = (poly ? yc : ys) + 0.0f;
  *s = from_bits(to_bits(sin_v) ^ sign_sin);
  *c = from_bits(to_bits(cos_v) ^ sign_cos);
}

// normal_fill_16_AVX2 (mean 0, std 1: the final fmadd(n, std, mean) is kept for its +0).
void normal_fill_16_avx2(float* d) {
  const float two_pi = float(2.0 * 3.141592653589793);
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - d[j];
    const float u2 = d[j + 8];
    const float radius = std::sqrt(-2.0f * cephes_log(u1));
    const float theta = two_pi * u2;
    float s, c;
    cephes_sincos(theta, &s, &c);
    d[j] = std::fma(radius * c, 1.0f, 0.0f);
    d[j + 8] = std::fma(radius * s, 1.0f, 0.0f);
  }
}

// normal_fill_16 (torch's non-AVX2 build, e.g. ARM): theta in double rounded to float, libm
// logf/cosf/sinf.
void normal_fill_16_default(float* d) {
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - d[j];
    const float u2 = d[j + 8];
    const float radius = std::sqrt(-2.0f * std::log(u1));
    const float theta = float(2.0f * 3.141592653589793 * double(u2));
    d[j] = radius * std::cos(theta) * 1.0f + 0.0f;
    d[j + 8] = radius * std::sin(theta) * 1.0f + 0.0f;
  }
}

}  // namespace

TorchGenerator::TorchGenerator(uint64_t seed) {
  // torch.manual_seed: only the low 32 bits reach mt19937 (seed 2^32 + 5 == seed 5).
  mt_[0] = uint32_t(seed & 0xffffffffu);
  for (int j = 1; j < kN; ++j)
    mt_[j] = 1812433253u * (mt_[j - 1] ^ (mt_[j - 1] >> 30)) + uint32_t(j);
  index_ = kN;  // the first draw twists
}

uint32_t TorchGenerator::next_u32() {
  if (index_ >= kN) {
    for (int k = 0; k < kN; ++k) {
      const uint32_t y = (mt_[k] & kUpperMask) | (mt_[(k + 1) % kN] & kLowerMask);
      mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
    }
    index_ = 0;
  }
  uint32_t y = mt_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

float TorchGenerator::uniform_f32() {
  return float(next_u32() & 0xffffffu) * (1.0f / 16777216.0f);  // exact: 24 bits
}

double TorchGenerator::uniform_f64() {
  // random64(): the first 32-bit draw is the high word; 53 bits kept.
  const uint64_t hi = next_u32();
  const uint64_t lo = next_u32();
  const uint64_t v = (hi << 32) | lo;
  return double(v & ((uint64_t(1) << 53) - 1)) * std::ldexp(1.0, -53);
}

double TorchGenerator::normal_f64() {
  // at::normal_distribution<double> (torch 1.13): one Box-Muller pair per two draws, the sine
  // half cached in the generator for the next call.
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  const double u1 = uniform_f64();
  const double u2 = uniform_f64();
  const double r = std::sqrt(-2.0 * std::log(1.0 - u2));
  const double theta = 2.0 * 3.141592653589793 * u1;
  cached_normal_ = r * std::sin(theta);
  has_cached_normal_ = true;
  return r * std::cos(theta);
}

void TorchGenerator::randn(float* out, int64_t n) { randn(out, n, RandnKernel::kAvx2); }

void TorchGenerator::randn(float* out, int64_t n, RandnKernel kernel) {
  if (n <= 0) return;
  if (n < 16) {
    // normal_kernel's serial path for small tensors.
    for (int64_t i = 0; i < n; ++i) out[i] = float(normal_f64());
    return;
  }
  auto fill16 = kernel == RandnKernel::kAvx2 ? normal_fill_16_avx2 : normal_fill_16_default;
  for (int64_t i = 0; i < n; ++i) out[i] = uniform_f32();
  for (int64_t i = 0; i + 16 <= n; i += 16) fill16(out + i);
  if (n % 16 != 0) {
    // torch recomputes the last 16 values from 16 fresh uniforms, overwriting transformed ones.
    float* tail = out + n - 16;
    for (int i = 0; i < 16; ++i) tail[i] = uniform_f32();
    fill16(tail);
  }
}

Status prepare_noise(uint64_t seed, const Tensor& out) {
  return prepare_noise(seed, out, RandnKernel::kAvx2);
}

Status prepare_noise(uint64_t seed, const Tensor& out, RandnKernel kernel) {
  if (out.dtype() != DType::kF32 || out.device() != Device::kCPU || !out.is_contiguous()) {
    return invalid_argument("prepare_noise: needs a contiguous f32 CPU tensor, got " +
                            out.describe());
  }
  TorchGenerator gen(seed);
  gen.randn(out.data_as<float>(), out.numel(), kernel);
  return ok_status();
}

}  // namespace sd35
