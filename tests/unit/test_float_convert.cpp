// Conversions are checked exhaustively where the domain is small (every f16, bf16, fp8 bit
// pattern) and against an independent rounding model (exact rational arithmetic in double)
// on random and edge-case floats. The SIMD paths must match the scalar path bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/convert.h"
#include "core/cpu_features.h"
#include "core/float_convert.h"
#include "core/tensor.h"

namespace sd35 {
namespace {

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return f32_bits(a) == f32_bits(b);
}

// Independent model of round-to-nearest-even onto a binary format with `mant_bits`
// explicit mantissa bits, minimum normal exponent `emin`, largest finite `max_finite`.
// Values that round beyond max_finite give +-inf (or NaN when `overflow_nan`).
double round_model(double x, int mant_bits, int emin, double max_finite, double overflow_to) {
  if (std::isnan(x)) return x;
  double a = std::fabs(x);
  int e2 = 0;
  std::frexp(a, &e2);  // a = m * 2^e2, m in [0.5, 1): floor(log2(a)) = e2 - 1, exactly
  int e = a == 0 ? emin : std::max(emin, e2 - 1);
  double ulp = std::ldexp(1.0, e - mant_bits);
  double q = a / ulp;
  double r = std::nearbyint(q);  // default rounding mode is ties-to-even
  double v = r * ulp;
  if (v > max_finite) v = overflow_to;
  return std::copysign(v, x);
}

std::vector<float> interesting_floats() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 65504.0f, 65519.99f, 65520.0f, 1e-8f,
                          5.96e-8f, 2.98e-8f, 448.0f, 464.0f, 464.01f, 479.9f, 480.0f, 1e30f,
                          -1e30f, 57344.0f, 61439.0f, 61440.0f, 1.0f / 512, 1.0f / 1024,
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()};
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int i = 0; i < 20000; ++i) v.push_back(f32_from_bits(bits(rng)));  // every exponent
  for (int i = 0; i < 20000; ++i) v.push_back(normal(rng));
  for (int i = 0; i < 2000; ++i) v.push_back(normal(rng) * 1e-5f);  // fp16 subnormal range
  return v;
}

TEST(FloatConvert, F16WideningMatchesModelForAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    uint32_t exp = (h >> 10) & 31, mant = h & 1023;
    double expect;
    if (exp == 31) expect = mant ? std::nan("") : INFINITY;
    else if (exp == 0) expect = std::ldexp(double(mant), -24);
    else expect = std::ldexp(1.0 + mant / 1024.0, int(exp) - 15);
    if (h & 0x8000) expect = -expect;
    ASSERT_TRUE(same_float(f, float(expect))) << h;
    if (!std::isnan(f)) { ASSERT_EQ(f32_to_f16(f), h) << "round trip " << h; }
  }
}

TEST(FloatConvert, F16NarrowingIsRoundToNearestEven) {
  for (float x : interesting_floats()) {
    float got = f16_to_f32(f32_to_f16(x));
    double want = round_model(x, 10, -14, 65504.0, INFINITY);
    ASSERT_TRUE(same_float(got, float(want))) << x;
  }
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

TEST(FloatConvert, BF16) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    ASSERT_EQ(f32_bits(f), h << 16);
    if (!std::isnan(f)) { ASSERT_EQ(f32_to_bf16(f), h); }
  }
  for (float x : interesting_floats()) {
    float got = bf16_to_f32(f32_to_bf16(x));
    double want = round_model(x, 7, -126, 3.3895313892515355e38, INFINITY);
    ASSERT_TRUE(same_float(got, float(want))) << x;
  }
  // NaN stays NaN even when the payload sits only in the dropped low bits.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f32_from_bits(0x7F800001u)))));
}

TEST(FloatConvert, F8E4M3FN) {
  EXPECT_EQ(f8e4m3fn_to_f32(0x7E), 448.0f);
  EXPECT_EQ(f8e4m3fn_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(f8e4m3fn_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(f8e4m3fn_to_f32(0xFF)));
  for (uint32_t b = 0; b < 256; ++b) {
    float f = f8e4m3fn_to_f32(uint8_t(b));
    if (!std::isnan(f)) { ASSERT_EQ(f32_to_f8e4m3fn(f), b) << b; }
  }
  // torch semantics: no saturation; 464 ties down to 448, anything larger is NaN.
  EXPECT_EQ(f8e4m3fn_to_f32(f32_to_f8e4m3fn(464.0f)), 448.0f);
  EXPECT_TRUE(std::isnan(f8e4m3fn_to_f32(f32_to_f8e4m3fn(464.5f))));
  EXPECT_TRUE(std::isnan(f8e4m3fn_to_f32(f32_to_f8e4m3fn(INFINITY))));
  for (float x : interesting_floats()) {
    if (std::fabs(x) > 464.0f || std::isnan(x)) continue;
    float got = f8e4m3fn_to_f32(f32_to_f8e4m3fn(x));
    double want = round_model(x, 3, -6, 448.0, NAN);
    ASSERT_TRUE(same_float(got, float(want))) << x;
  }
}

TEST(FloatConvert, F8E5M2) {
  for (uint32_t b = 0; b < 256; ++b) {
    float f = f8e5m2_to_f32(uint8_t(b));
    if (!std::isnan(f)) { ASSERT_EQ(f32_to_f8e5m2(f), b) << b; }
  }
  for (float x : interesting_floats()) {
    float got = f8e5m2_to_f32(f32_to_f8e5m2(x));
    double want = round_model(x, 2, -14, 57344.0, INFINITY);
    ASSERT_TRUE(same_float(got, float(want))) << x;
  }
}

class BulkConvert : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    if (GetParam() > CpuIsa::kScalar && !cpu_features().avx2_fma_f16c) GTEST_SKIP();
    if (GetParam() == CpuIsa::kAvx512 && !cpu_features().avx512) GTEST_SKIP();
    set_cpu_isa_cap(GetParam());
  }
  void TearDown() override { set_cpu_isa_cap(CpuIsa::kAvx512); }
};

TEST_P(BulkConvert, MatchesScalarBitForBit) {
  std::vector<float> src = interesting_floats();
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(15), int64_t(17), int64_t(src.size())}) {
    for (DType t : {DType::kF16, DType::kBF16, DType::kF8E4M3FN, DType::kF8E5M2}) {
      std::vector<uint8_t> packed(size_t(n) * dtype_size(t) + 64, 0xAB);
      convert_from_f32(src.data(), packed.data(), t, n);
      for (int64_t i = 0; i < n; ++i) {
        uint32_t want, got;
        switch (t) {
          case DType::kF16:
            want = f32_to_f16(src[i]);
            got = reinterpret_cast<uint16_t*>(packed.data())[i];
            break;
          case DType::kBF16:
            want = f32_to_bf16(src[i]);
            got = reinterpret_cast<uint16_t*>(packed.data())[i];
            break;
          case DType::kF8E4M3FN:
            want = f32_to_f8e4m3fn(src[i]);
            got = packed[size_t(i)];
            break;
          default:
            want = f32_to_f8e5m2(src[i]);
            got = packed[size_t(i)];
        }
        ASSERT_EQ(got, want) << dtype_name(t) << " at " << i << " x=" << src[size_t(i)];
      }
      // Guard bytes past the end are untouched.
      for (size_t i = size_t(n) * dtype_size(t); i < packed.size(); ++i) ASSERT_EQ(packed[i], 0xAB);
      std::vector<float> back(size_t(n) + 1, -7.0f);
      convert_to_f32(packed.data(), t, back.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_TRUE(same_float(back[size_t(i)], load_as_f32(packed.data(), t, i)));
      ASSERT_EQ(back[size_t(n)], -7.0f);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, BulkConvert,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512),
                         [](const auto& info) { return std::string(cpu_isa_name(info.param)); });

TEST(BulkConvertMixed, F16ToBF16ViaF32) {
  std::vector<uint16_t> h = {f32_to_f16(1.5f), f32_to_f16(-3.25f), f32_to_f16(65504.0f)};
  std::vector<uint16_t> b(3);
  convert(h.data(), DType::kF16, b.data(), DType::kBF16, 3);
  EXPECT_EQ(bf16_to_f32(b[0]), 1.5f);
  EXPECT_EQ(bf16_to_f32(b[1]), -3.25f);
  EXPECT_EQ(bf16_to_f32(b[2]), 65536.0f);  // 65504 needs 11 significant bits; bf16 has 8
}

}  // namespace
}  // namespace sd35
