// ImageScale resampling (src/service/workflow/image_scale.h) against values derived by hand
// from torch's and Pillow's formulas (derivations in the comments), plus ComfyUI's
// common_upscale crop and ImageScale's keep-aspect rule.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "service/workflow/image_scale.h"

namespace sd35::workflow {
namespace {

std::vector<float> resample(const std::vector<float>& in, int ih, int iw, int oh, int ow,
                            UpscaleMethod m) {
  std::vector<float> out(size_t(oh * ow), -99.0f);
  resample_plane(in.data(), ih, iw, 1, iw, out.data(), oh, ow, ow, m);
  return out;
}

Tensor u8_image(int h, int w, const std::vector<uint8_t>& rgb) {
  auto t = Tensor::zeros({1, h, w, 3}, DType::kU8);
  EXPECT_TRUE(t.ok());
  EXPECT_EQ(rgb.size(), size_t(h * w * 3));
  std::copy(rgb.begin(), rgb.end(), t->data_as<uint8_t>());
  return *t;
}

// A gray image (r = g = b) from one value per pixel.
Tensor gray(int h, int w, const std::vector<uint8_t>& v) {
  std::vector<uint8_t> rgb;
  for (uint8_t x : v) rgb.insert(rgb.end(), {x, x, x});
  return u8_image(h, w, rgb);
}

std::vector<int> channel0(const Tensor& t) {
  std::vector<int> out;
  const uint8_t* p = t.data_as<const uint8_t>();
  for (int64_t i = 0; i < t.numel() / 3; ++i) out.push_back(p[i * 3]);
  return out;
}

// torch bilinear, align_corners=False, 2 -> 4 (scale 0.5): src = 0.5·(d + 0.5) - 0.5, clamped
// at 0 -> d=0: 0 (tap 0); d=1: 0.25 -> 0.75·x0 + 0.25·x1; d=2: 0.75 -> 0.25·x0 + 0.75·x1;
// d=3: 1.25 -> index 1 with its upper tap clamped to 1 -> x1. Separable, so for
// [[0, 1], [2, 3]] the rows are [0, .25, .75, 1] + 2·(row weight of the second row). These
// products of quarters are exact in float: compared exactly.
TEST(ImageScale, Bilinear2x2To4x4MatchesTorch) {
  const auto out = resample({0, 1, 2, 3}, 2, 2, 4, 4, UpscaleMethod::kBilinear);
  const std::vector<float> want = {0,    0.25f, 0.75f, 1,    0.5f, 0.75f, 1.25f, 1.5f,
                                   1.5f, 1.75f, 2.25f, 2.5f, 2,    2.25f, 2.75f, 3};
  EXPECT_EQ(out, want);
}

// torch nearest-exact: index = min(floor((d + 0.5)·in/out), in - 1). 2 -> 4: 0,0,1,1.
// 3 -> 2 (scale 1.5): floor(0.75) = 0, floor(2.25) = 2.
TEST(ImageScale, NearestExact) {
  EXPECT_EQ(resample({5, 7}, 1, 2, 1, 4, UpscaleMethod::kNearestExact),
            (std::vector<float>{5, 5, 7, 7}));
  EXPECT_EQ(resample({1, 2, 3}, 1, 3, 1, 2, UpscaleMethod::kNearestExact),
            (std::vector<float>{1, 3}));
}

// adaptive_avg_pool2d windows [floor(o·in/out), ceil((o+1)·in/out)): 4 -> 2: pairs; 3 -> 2:
// [0, 2) and [1, 3) (overlapping). Halves and integers: exact.
TEST(ImageScale, AreaWindows) {
  EXPECT_EQ(resample({1, 3, 5, 9}, 1, 4, 1, 2, UpscaleMethod::kArea), (std::vector<float>{2, 7}));
  EXPECT_EQ(resample({1, 2, 4}, 1, 3, 1, 2, UpscaleMethod::kArea), (std::vector<float>{1.5f, 3}));
  // 2-D: one output pixel averaging a 2x2 block.
  EXPECT_EQ(resample({1, 2, 3, 6}, 2, 2, 1, 1, UpscaleMethod::kArea), (std::vector<float>{3}));
}

// torch bicubic (A = -0.75), align_corners=False, [0, 1] -> 4 (scale 0.5): src = 0.5(d+0.5)-0.5
// unclamped, i = floor(src), t = src - i, taps i-1..i+2 clamped to [0, 1], weights
// conv2(t+1), conv1(t), conv1(1-t), conv2(2-t) with conv1(x) = (1.25x - 2.25)x² + 1,
// conv2(x) = ((-0.75x + 3.75)x - 6)x + 3. conv1(.25) = 0.87890625, conv1(.75) = 0.26171875,
// conv2(1.25) = -0.10546875, conv2(1.75) = -0.03515625.
//   d=0: src -0.25, i -1, t .75, taps [0,0,0,1] -> conv2(1.25)            = -0.10546875
//   d=1: src  0.25, i 0,  t .25, taps [0,0,1,1] -> conv1(.75)+conv2(1.75) =  0.2265625
//   d=2: src  0.75, i 0,  t .75, taps [0,0,1,1] -> conv1(.25)+conv2(1.25) =  0.7734375
//   d=3: src  1.25, i 1,  t .25, taps [0,1,1,1] -> 1 - conv2(1.25)        =  1.10546875
// (the overshoot beyond [0, 1] is what torch gives; clipped when stored as uint8). The
// weights are dyadic rationals with few bits: exact in float up to the sums' rounding, so
// a 1e-6 tolerance.
TEST(ImageScale, BicubicMatchesHandDerivedTorchValues) {
  const auto out = resample({0, 1}, 1, 2, 1, 4, UpscaleMethod::kBicubic);
  const std::vector<float> want = {-0.10546875f, 0.2265625f, 0.7734375f, 1.10546875f};
  ASSERT_EQ(out.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-6) << i;
}

// The uint8 path: u/255 in float, resampled, stored as SaveImage does (truncation):
// [0, 255] bilinear to 4 -> 255·[0, .25, .75, 1] = 0, 63.75, 191.25, 255 -> 0, 63, 191, 255.
// Bicubic overshoots clip to 0 and 255.
TEST(ImageScale, Uint8StoreTruncatesAndClips) {
  auto bl = common_upscale(gray(1, 2, {0, 255}), 4, 1, UpscaleMethod::kBilinear, false);
  ASSERT_TRUE(bl.ok()) << bl.status().to_string();
  EXPECT_EQ(channel0(*bl), (std::vector<int>{0, 63, 191, 255}));
  auto bc = common_upscale(gray(1, 2, {0, 255}), 4, 1, UpscaleMethod::kBicubic, false);
  ASSERT_TRUE(bc.ok());
  // 255·0.2265625 = 57.77, 255·0.7734375 = 197.22.
  EXPECT_EQ(channel0(*bc), (std::vector<int>{0, 57, 197, 255}));
}

// Pillow LANCZOS, 4 -> 2 (scale 2): support 3·2 = 6, output 0 centred at 1.0 takes inputs
// 0..3 with weights L((x - 1 + 0.5)/2), L = sinc(x)·sinc(x/3), normalised; the result is
// 255·(w2 + w3) for [0, 0, 255, 255]. The 22-bit fixed-point weights round differently from
// this double computation by at most one unit after rounding: tolerance 1.
TEST(ImageScale, LanczosDownscaleMatchesPillowFormula) {
  auto L = [](double x) {
    auto sinc = [](double v) { return v == 0 ? 1.0 : std::sin(M_PI * v) / (M_PI * v); };
    return (-3 <= x && x < 3) ? sinc(x) * sinc(x / 3) : 0.0;
  };
  double w[4], sum = 0;
  for (int x = 0; x < 4; ++x) sum += (w[x] = L((x - 1 + 0.5) / 2));
  const double want0 = 255 * (w[2] + w[3]) / sum;
  auto out = common_upscale(gray(1, 4, {0, 0, 255, 255}), 2, 1, UpscaleMethod::kLanczos, false);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const auto v = channel0(*out);
  EXPECT_NEAR(v[0], std::lround(want0), 1) << want0;
  EXPECT_NEAR(v[1], 255 - std::lround(want0), 1);  // mirror image
  EXPECT_LT(v[0], 128);
}

// Constants stay constant (normalised weights), and the same size is a copy, for every method.
// The float methods may land one ulp below 200/255 (weights summing to 1 - ulp), which the
// truncating store turns into 199 — torch + SaveImage do the same — so |Δ| <= 1 there;
// Pillow's fixed-point lanczos rounds and must give 200 exactly.
TEST(ImageScale, ConstantsAndIdentity) {
  std::vector<uint8_t> c(8 * 8, 200), ramp;
  for (int i = 0; i < 64; ++i) ramp.push_back(uint8_t(i * 3));
  for (auto m : {UpscaleMethod::kNearestExact, UpscaleMethod::kBilinear, UpscaleMethod::kArea,
                 UpscaleMethod::kBicubic, UpscaleMethod::kLanczos}) {
    for (auto [w, h] : {std::pair{4, 4}, std::pair{16, 12}, std::pair{5, 3}}) {
      auto out = common_upscale(gray(8, 8, c), w, h, m, false);
      ASSERT_TRUE(out.ok());
      const int tol = m == UpscaleMethod::kLanczos ? 0 : 1;
      for (int v : channel0(*out)) ASSERT_NEAR(v, 200, tol) << int(m) << " " << w << "x" << h;
    }
    auto same = common_upscale(gray(8, 8, ramp), 8, 8, m, false);
    ASSERT_TRUE(same.ok());
    EXPECT_EQ(channel0(*same), std::vector<int>(ramp.begin(), ramp.end())) << int(m);
  }
}

// common_upscale crop "center": a 4x2 (W x H) image to 2x2: old aspect 2 > 1, so
// x = round((4 - 4·0.5)/2) = 1 columns cut on each side, leaving columns 1 and 2.
TEST(ImageScale, CenterCropThenScale) {
  auto out = common_upscale(gray(2, 4, {10, 20, 30, 40, 50, 60, 70, 80}), 2, 2,
                            UpscaleMethod::kNearestExact, true);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(channel0(*out), (std::vector<int>{20, 30, 60, 70}));
  // Channels are resampled independently (not mixed).
  auto rgb = common_upscale(u8_image(1, 1, {1, 2, 3}), 2, 2, UpscaleMethod::kBilinear, false);
  ASSERT_TRUE(rgb.ok());
  const uint8_t* p = rgb->data_as<const uint8_t>();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(p[i * 3] == 1 && p[i * 3 + 1] == 2 && p[i * 3 + 2] == 3);
}

// ImageScale: 0 keeps the aspect ratio (round(4·4/2) = 8), both 0 keep the image, and bad
// input is a Status, not a crash.
TEST(ImageScale, NodeKeepsAspectAndRejectsBadInput) {
  const Tensor img = gray(2, 4, {1, 2, 3, 4, 5, 6, 7, 8});
  auto a = image_scale(img, 0, 4, UpscaleMethod::kBilinear, false);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->shape(), Shape({1, 4, 8, 3}));
  auto b = image_scale(img, 2, 0, UpscaleMethod::kArea, false);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->shape(), Shape({1, 1, 2, 3}));
  auto same = image_scale(img, 0, 0, UpscaleMethod::kLanczos, false);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->data(), img.data());
  EXPECT_FALSE(image_scale(img, -1, 4, UpscaleMethod::kArea, false).ok());
  auto f32 = Tensor::zeros({1, 2, 2, 3}, DType::kF32);
  ASSERT_TRUE(f32.ok());
  EXPECT_FALSE(common_upscale(*f32, 4, 4, UpscaleMethod::kArea, false).ok());
  EXPECT_FALSE(upscale_method_from_name("bislerp").ok());
  EXPECT_TRUE(upscale_method_from_name("nearest-exact").ok());
}

}  // namespace
}  // namespace sd35::workflow
