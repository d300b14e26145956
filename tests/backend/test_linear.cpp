// Conformance of the CPU gemm / attention / conv2d against the reference kernels, on random
// data with odd shapes, strided views and guard bands around every output.
//
// Tolerances are bounds, not fudge factors. Notation: u(t) = half an ulp of dtype t relative
// to the value (bf16 2^-9, f16 2^-12, f32 2^-24). For a dot product of length K the f32
// accumulation error is at most K·u(f32)·Σ|a·b| (a pessimistic bound that still sits orders
// of magnitude below any indexing bug, which is O(Σ|a·b|)). Storing a result adds u(out)·|ref|.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dnnl_util.h"
#include "backend/reference/reference_kernels.h"
#include "backend_test_util.h"

namespace sd35 {
namespace {

using testing::all_close;
using testing::fill_uniform;
using testing::GuardedBuffer;
using testing::half_ulp;
using testing::to_vector;

cpu::CpuContext& ctx() {
  static cpu::CpuContext c(2);
  return c;
}

// |actual - expected| <= tol[i] elementwise, reporting the worst element.
::testing::AssertionResult within(const std::vector<float>& actual, const std::vector<float>& expected,
                                  const std::vector<double>& tol) {
  int64_t bad = 0, worst = -1;
  double worst_ratio = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double err = std::fabs(double(actual[i]) - double(expected[i]));
    if (!(err <= tol[i])) {
      ++bad;
      double ratio = err / tol[i];
      if (worst < 0 || ratio > worst_ratio || std::isnan(err)) worst = int64_t(i), worst_ratio = ratio;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << actual.size() << " elements out of tolerance; worst at "
                                       << worst << ": actual " << actual[size_t(worst)] << " expected "
                                       << expected[size_t(worst)] << " tol " << tol[size_t(worst)];
}

// Relative error of rounding a weight of dtype `w` to the compute dtype of activations `x`.
double weight_rounding(DType x, DType w) {
  DType compute = x == DType::kBF16 ? DType::kBF16 : DType::kF32;
  if (w == compute || w == DType::kF8E4M3FN || w == DType::kF8E5M2) return 0.0;  // fp8 ⊂ bf16
  if (compute == DType::kF32) return 0.0;  // every weight dtype widens exactly to f32
  return half_ulp(DType::kBF16);           // f32/f16 weights rounded to bf16
}

// ---------------------------------------------------------------------------------------------
// gemm

struct GemmCase {
  int64_t m, k, n;
  DType x, w, y;
  bool bias;
  Activation act;
  bool accumulate;
  int64_t x_pad = 0;  // extra elements per x row (row stride K + x_pad)
  int64_t y_pad = 0;
};

std::string describe(const GemmCase& c) {
  return "M" + std::to_string(c.m) + " K" + std::to_string(c.k) + " N" + std::to_string(c.n) + " x" +
         testing::dtype_str(c.x) + " w" + testing::dtype_str(c.w) + " y" + testing::dtype_str(c.y) +
         (c.bias ? " bias" : "") + " " + std::string(activation_name(c.act)) + (c.accumulate ? " acc" : "") +
         " xpad" + std::to_string(c.x_pad) + " ypad" + std::to_string(c.y_pad);
}

void run_gemm_case(const GemmCase& c, uint32_t seed) {
  SCOPED_TRACE(describe(c));
  const int64_t ldx = c.k + c.x_pad, ldy = c.n + c.y_pad;
  GuardedBuffer xb(c.m * ldx, c.x), wb(c.n * c.k, c.w), bb(c.n, DType::kBF16), yb(c.m * ldy, c.y);
  Tensor x = xb.view({c.m, c.k}, {ldx, 1});
  Tensor w = wb.view({c.n, c.k});
  Tensor b = bb.view({c.n});
  Tensor y = yb.view({c.m, c.n}, {ldy, 1});
  fill_uniform(x, seed, -1, 1);
  // Weights scaled like a trained layer (|w| ~ 1/sqrt(K)) but within fp8 range either way.
  fill_uniform(w, seed + 1, -1, 1);
  fill_uniform(b, seed + 2, -0.5, 0.5);
  fill_uniform(y, seed + 3, -1, 1);  // the accumulate target (or garbage to overwrite)

  // Reference into f32 so it is the unrounded value; it starts from the same old y.
  auto yref_t = Tensor::zeros({c.m, c.n}, DType::kF32);
  ASSERT_TRUE(yref_t.ok());
  Tensor yref = *yref_t;
  std::vector<float> y_old = to_vector(y);
  testing::fill_values(yref, y_old);
  GemmParams p{c.act, c.accumulate};
  ASSERT_TRUE(ref::gemm(x, w, c.bias ? &b : nullptr, yref, p).ok());
  Status st = cpu::gemm(ctx(), x, w, c.bias ? &b : nullptr, y, p);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(yb.untouched_outside({y}));

  // Bound: weight rounding (bf16 mode) plus f32 accumulation over K, times 1.2 for the
  // activation's slope (|gelu'| <= 1.13, |silu'| <= 1.1, quick_gelu' <= 1.2), plus ~1e-6
  // relative for oneDNN's f32 activation approximations, plus rounding y once.
  std::vector<float> xv = to_vector(x), wv = to_vector(w), expected = to_vector(yref);
  std::vector<double> tol(expected.size());
  const double rel = weight_rounding(c.x, c.w) + double(c.k) * half_ulp(DType::kF32);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double mag = 0;
      for (int64_t kk = 0; kk < c.k; ++kk) mag += std::fabs(double(xv[size_t(i * c.k + kk)]) * wv[size_t(j * c.k + kk)]);
      double e = std::fabs(double(expected[size_t(i * c.n + j)]));
      tol[size_t(i * c.n + j)] = 1.2 * rel * mag + 2e-6 * (mag + 1) + half_ulp(c.y) * e + 1e-30;
    }
  }
  EXPECT_TRUE(within(to_vector(y), expected, tol));
}

TEST(Gemm, DtypeSweep) {
  const int64_t ms[] = {1, 7, 129, 300};
  const int64_t kn[][2] = {{64, 48}, {33, 17}, {300, 129}, {16, 1}};
  const Activation acts[] = {Activation::kNone, Activation::kGeluTanh, Activation::kGeluErf,
                             Activation::kQuickGelu, Activation::kSilu};
  uint32_t seed = 1;
  int i = 0;
  for (DType w : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3FN, DType::kF8E5M2}) {
    for (DType x : {DType::kF32, DType::kBF16}) {
      for (DType y : {DType::kF32, DType::kBF16}) {
        // Rotate the other parameters so every value meets every dtype over the sweep.
        GemmCase c{ms[i % 4], kn[(i / 4 + i) % 4][0], kn[(i / 4 + i) % 4][1], x, w, y,
                   i % 2 == 0, acts[i % 5], i % 3 == 1};
        run_gemm_case(c, seed += 7);
        ++i;
      }
    }
  }
}

TEST(Gemm, ActivationsAndAccumulate) {
  uint32_t seed = 100;
  for (Activation a : {Activation::kNone, Activation::kGeluTanh, Activation::kGeluErf,
                       Activation::kQuickGelu, Activation::kSilu}) {
    for (bool acc : {false, true}) {
      run_gemm_case({129, 96, 80, DType::kF32, DType::kF32, DType::kF32, true, a, acc}, seed++);
      run_gemm_case({7, 96, 80, DType::kBF16, DType::kBF16, DType::kBF16, true, a, acc}, seed++);
    }
  }
}

TEST(Gemm, StridedRows) {
  uint32_t seed = 200;
  for (DType d : {DType::kF32, DType::kBF16}) {
    for (DType w : {d, DType::kF16}) {
      run_gemm_case({129, 70, 33, d, w, d, true, Activation::kNone, false, 5, 0}, seed++);
      run_gemm_case({300, 64, 40, d, w, d, false, Activation::kSilu, true, 0, 9}, seed++);
      run_gemm_case({7, 65, 31, d, w, DType::kF32, true, Activation::kGeluTanh, true, 3, 2}, seed++);
    }
  }
}

TEST(Gemm, LargePanelledWeights) {
  // N·K·2 bytes above the 4 MB panel budget: f16 weights are converted in several panels, and
  // an f32-activation call with bf16 output takes the f32 scratch path.
  run_gemm_case({33, 1024, 2500, DType::kBF16, DType::kF16, DType::kBF16, true, Activation::kNone, true}, 300);
  run_gemm_case({9, 1100, 1000, DType::kF32, DType::kBF16, DType::kBF16, true, Activation::kSilu, false}, 301);
}

TEST(Gemm, BatchDimsWithGaps) {
  // x is [2, 5, K] sliced out of [2, 8, K] (rows of one batch are uniform, batches are not);
  // y is a [2, 5, N] slice of [2, 6, N + 3].
  const int64_t K = 40, N = 24;
  GuardedBuffer xb(2 * 8 * K, DType::kF32), wb(N * K, DType::kBF16), yb(2 * 6 * (N + 3), DType::kF32);
  Tensor x = xb.view({2, 5, K}, {8 * K, K, 1}, 2 * K);
  Tensor w = wb.view({N, K});
  Tensor y = yb.view({2, 5, N}, {6 * (N + 3), N + 3, 1}, 1);
  fill_uniform(x, 5);
  fill_uniform(w, 6);
  auto yref = Tensor::zeros({2, 5, N}, DType::kF32);
  ASSERT_TRUE(yref.ok());
  ASSERT_TRUE(ref::gemm(x, w, nullptr, *yref, {}).ok());
  ASSERT_TRUE(cpu::gemm(ctx(), x, w, nullptr, y, {}).ok());
  EXPECT_TRUE(yb.untouched_outside({y}));
  // f32 math, |x|,|w| <= 1: error <= K·2^-24·K.
  EXPECT_TRUE(all_close(y, *yref, double(K) * K * half_ulp(DType::kF32), 0));
}

TEST(Gemm, Errors) {
  auto x = *Tensor::zeros({4, 8}, DType::kF32);
  auto w = *Tensor::zeros({6, 8}, DType::kF32);
  auto y = *Tensor::zeros({4, 6}, DType::kF32);
  auto w_badk = *Tensor::zeros({6, 9}, DType::kF32);
  auto y_bad = *Tensor::zeros({4, 5}, DType::kF32);
  auto x_int = *Tensor::zeros({4, 8}, DType::kI32);
  auto bias_bad = *Tensor::zeros({5}, DType::kF32);
  auto y_lead = *Tensor::zeros({3, 6}, DType::kF32);
  auto both = [&](const Tensor& xx, const Tensor& ww, const Tensor* bb, const Tensor& yy) {
    Status a = cpu::gemm(ctx(), xx, ww, bb, yy, {});
    Status r = ref::gemm(xx, ww, bb, yy, {});
    EXPECT_FALSE(a.ok());
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(a.message(), r.message());
  };
  both(x, w_badk, nullptr, y);
  both(x, w, nullptr, y_bad);
  both(x_int, w, nullptr, y);
  both(x, w, &bias_bad, y);
  both(x, w, nullptr, y_lead);
  Tensor x_cols = x.transpose(0, 1);  // last dim not dense
  both(x_cols, *Tensor::zeros({6, 4}, DType::kF32), nullptr, y);
}

// ---------------------------------------------------------------------------------------------
// attention

struct AttnCase {
  int64_t b, h, d, lq, lk;
  DType in, out;
};

void run_attention_case(const AttnCase& c, uint32_t seed) {
  SCOPED_TRACE("B" + std::to_string(c.b) + " H" + std::to_string(c.h) + " D" + std::to_string(c.d) +
               " Lq" + std::to_string(c.lq) + " Lk" + std::to_string(c.lk) + " in " +
               testing::dtype_str(c.in) + " out " + testing::dtype_str(c.out));
  const int64_t hd = c.h * c.d;
  // q (and k, v when Lq == Lk) are slices of a fused qkv [B, L, 3·H·D] buffer, as in the MMDiT;
  // cross attention takes k, v from a fused kv [B, Lk, 2·H·D].
  GuardedBuffer qkv(c.b * c.lq * 3 * hd, c.in), kv(c.b * c.lk * 2 * hd, c.in);
  Tensor q = qkv.view({c.b, c.lq, hd}, {c.lq * 3 * hd, 3 * hd, 1});
  Tensor k, v;
  if (c.lq == c.lk) {
    k = qkv.view({c.b, c.lk, hd}, {c.lk * 3 * hd, 3 * hd, 1}, hd);
    v = qkv.view({c.b, c.lk, hd}, {c.lk * 3 * hd, 3 * hd, 1}, 2 * hd);
  } else {
    k = kv.view({c.b, c.lk, hd}, {c.lk * 2 * hd, 2 * hd, 1});
    v = kv.view({c.b, c.lk, hd}, {c.lk * 2 * hd, 2 * hd, 1}, hd);
  }
  // Scores of a few units, like trained q/k after RMSNorm: softmax is neither flat nor one-hot.
  fill_uniform(q, seed, -2, 2);
  fill_uniform(k, seed + 1, -2, 2);
  fill_uniform(v, seed + 2, -1, 1);
  const int64_t ldo = hd + 5;
  GuardedBuffer ob(c.b * c.lq * ldo, c.out);
  Tensor out = ob.view({c.b, c.lq, hd}, {c.lq * ldo, ldo, 1});
  auto ref_out = Tensor::zeros({c.b, c.lq, hd}, DType::kF32);
  ASSERT_TRUE(ref_out.ok());
  const float scale = 1.0f / std::sqrt(float(c.d));
  ASSERT_TRUE(ref::attention(q, k, v, *ref_out, int(c.h), scale).ok());
  std::vector<float> expected = to_vector(*ref_out);

  testing::for_each_isa([&] {
    ob.reset_guards();
    Status st = cpu::attention(ctx(), q, k, v, out, int(c.h), scale);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(ob.untouched_outside({out}));
    // The output is a convex combination of V rows (|v| <= 1).
    //  - bf16 kernel: P is rounded to bf16 (relative u(bf16) per weight) and normalised by the
    //    sum of the rounded weights, so out moves by at most u(bf16)·max|v_j - out| <= 2·u(bf16).
    //  - f32 kernels: score errors D·u(f32)·Σ|q·k|·scale (<= ~1e-5 here) and the exp2
    //    polynomial (2e-7 relative) shift the weights by ~1e-5 relative: 4e-5 absolute.
    // Plus rounding the output once.
    const bool bf16_kernel = c.in == DType::kBF16 && active_avx512_bf16();
    const double atol = bf16_kernel ? 2.0 * half_ulp(DType::kBF16) : 4e-5;
    std::vector<double> tol(expected.size());
    for (size_t i = 0; i < tol.size(); ++i) tol[i] = atol + half_ulp(c.out) * std::fabs(expected[i]);
    EXPECT_TRUE(within(to_vector(out), expected, tol));
  });
}

TEST(Attention, Sweep) {
  const AttnCase cases[] = {
      {1, 1, 64, 1, 1, DType::kF32, DType::kF32},     {1, 2, 64, 7, 7, DType::kBF16, DType::kBF16},
      {2, 3, 64, 77, 77, DType::kF32, DType::kF32},   {1, 4, 64, 129, 300, DType::kBF16, DType::kF32},
      {2, 1, 64, 300, 129, DType::kF32, DType::kBF16}, {1, 2, 37, 77, 129, DType::kBF16, DType::kBF16},
      {2, 2, 37, 7, 300, DType::kF32, DType::kF32},   {1, 1, 37, 1, 77, DType::kBF16, DType::kF32},
      {2, 2, 64, 129, 129, DType::kBF16, DType::kBF16}, {1, 3, 5, 300, 7, DType::kF32, DType::kF32},
      {1, 1, 80, 65, 33, DType::kBF16, DType::kBF16},  {1, 2, 64, 1, 300, DType::kF16, DType::kF16},
  };
  uint32_t seed = 500;
  for (const AttnCase& c : cases) run_attention_case(c, seed += 3);
}

// The MMDiT's sequence lengths: 4250 keys (154 context + 4096 image tokens at 1024²) run the
// online softmax over many key blocks, whose running max and rescaling must stay exact; 4250
// queries split into many query blocks and thread tasks. Kept to a few heads so the f64
// reference stays fast.
TEST(Attention, MMDiTSequenceLengths) {
  const AttnCase cases[] = {
      {1, 2, 64, 129, 4250, DType::kBF16, DType::kBF16},
      {1, 1, 64, 33, 4250, DType::kF32, DType::kF32},
      {1, 1, 64, 4250, 77, DType::kBF16, DType::kF32},
      {2, 1, 64, 4250, 16, DType::kF32, DType::kBF16},
  };
  uint32_t seed = 900;
  for (const AttnCase& c : cases) run_attention_case(c, seed += 3);
}

TEST(Attention, MixedDtypes) {
  // q f32 with bf16 k/v takes the f32 kernels at every ISA level.
  const int64_t B = 1, L = 70, H = 2, D = 64;
  auto q = *Tensor::zeros({B, L, H * D}, DType::kF32);
  auto k = *Tensor::zeros({B, L, H * D}, DType::kBF16);
  auto v = *Tensor::zeros({B, L, H * D}, DType::kBF16);
  auto out = *Tensor::zeros({B, L, H * D}, DType::kF32);
  auto expect = *Tensor::zeros({B, L, H * D}, DType::kF32);
  fill_uniform(q, 1, -2, 2);
  fill_uniform(k, 2, -2, 2);
  fill_uniform(v, 3);
  ASSERT_TRUE(ref::attention(q, k, v, expect, H, 0.125f).ok());
  testing::for_each_isa([&] {
    ASSERT_TRUE(cpu::attention(ctx(), q, k, v, out, H, 0.125f).ok());
    EXPECT_TRUE(all_close(out, expect, 4e-5, 0));  // f32 kernels, as in Sweep
  });
}

TEST(Attention, Errors) {
  auto q = *Tensor::zeros({1, 4, 8}, DType::kF32);
  auto k = *Tensor::zeros({1, 5, 8}, DType::kF32);
  auto k_bad = *Tensor::zeros({1, 5, 6}, DType::kF32);
  auto k_empty = *Tensor::zeros({1, 0, 8}, DType::kF32);
  auto out_bad = *Tensor::zeros({1, 5, 8}, DType::kF32);
  auto q_int = *Tensor::zeros({1, 4, 8}, DType::kI32);
  auto both = [&](const Tensor& qq, const Tensor& kk, const Tensor& vv, const Tensor& oo, int heads) {
    Status a = cpu::attention(ctx(), qq, kk, vv, oo, heads, 1.0f);
    Status r = ref::attention(qq, kk, vv, oo, heads, 1.0f);
    EXPECT_FALSE(a.ok());
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(a.message(), r.message());
  };
  both(q, k, k, q, 3);              // 8 features do not split into 3 heads
  both(q, k_bad, k_bad, q, 2);      // feature mismatch
  both(q, k, k_bad, q, 2);          // k/v mismatch
  both(q, k, k, out_bad, 2);        // wrong out shape
  both(q, k_empty, k_empty, q, 2);  // no keys
  both(q_int, k, k, q, 2);          // bad dtype
  both(q, k, k, q, 0);              // no heads
}

// ---------------------------------------------------------------------------------------------
// conv2d

struct ConvCase {
  int64_t n, c, h, w, o, kh, kw;
  Conv2dParams p;
  DType x, wt, y;
  bool bias;
};

void run_conv_case(const ConvCase& c, uint32_t seed) {
  SCOPED_TRACE("N" + std::to_string(c.n) + " C" + std::to_string(c.c) + " " + std::to_string(c.h) + "x" +
               std::to_string(c.w) + " O" + std::to_string(c.o) + " k" + std::to_string(c.kh) + "x" +
               std::to_string(c.kw) + " s" + std::to_string(c.p.stride) + " x" + testing::dtype_str(c.x) +
               " w" + testing::dtype_str(c.wt) + " y" + testing::dtype_str(c.y) + (c.bias ? " bias" : ""));
  const int64_t oh = (c.h + c.p.pad_top + c.p.pad_bottom - c.kh) / c.p.stride + 1;
  const int64_t ow = (c.w + c.p.pad_left + c.p.pad_right - c.kw) / c.p.stride + 1;
  GuardedBuffer xb(c.n * c.c * c.h * c.w, c.x), wb(c.o * c.c * c.kh * c.kw, c.wt), bb(c.o, DType::kF32),
      yb(c.n * c.o * oh * ow, c.y);
  Tensor x = xb.view({c.n, c.c, c.h, c.w}), w = wb.view({c.o, c.c, c.kh, c.kw}), b = bb.view({c.o}),
         y = yb.view({c.n, c.o, oh, ow});
  fill_uniform(x, seed);
  fill_uniform(w, seed + 1);
  fill_uniform(b, seed + 2);
  auto yref = Tensor::zeros({c.n, c.o, oh, ow}, DType::kF32);
  ASSERT_TRUE(yref.ok());
  ASSERT_TRUE(ref::conv2d(x, w, c.bias ? &b : nullptr, *yref, c.p).ok());
  Status st = cpu::conv2d(ctx(), x, w, c.bias ? &b : nullptr, y, c.p);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(yb.untouched_outside({y}));
  // |x|, |w| <= 1: Σ|x·w| <= C·KH·KW =: R. Error <= (weight rounding + R·u(f32))·R + store.
  const double r = double(c.c * c.kh * c.kw);
  const double atol = (weight_rounding(c.x, c.wt) + r * half_ulp(DType::kF32)) * r + 1e-6;
  EXPECT_TRUE(all_close(y, *yref, atol, half_ulp(c.y)));
}

TEST(Conv2d, Sweep) {
  const Conv2dParams same{1, 1, 1, 1, 1}, none{1, 0, 0, 0, 0}, down{2, 0, 0, 1, 1};
  uint32_t seed = 900;
  int i = 0;
  for (DType wt : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3FN}) {
    for (DType x : {DType::kF32, DType::kBF16}) {
      DType y = i % 3 == 2 ? (x == DType::kF32 ? DType::kBF16 : DType::kF32) : x;
      bool bias = i % 2 == 0;
      run_conv_case({1, 3, 9, 11, 8, 3, 3, same, x, wt, y, bias}, seed++);
      run_conv_case({2, 16, 7, 5, 12, 3, 3, same, x, wt, y, !bias}, seed++);
      run_conv_case({1, 8, 6, 7, 5, 1, 1, none, x, wt, y, bias}, seed++);
      run_conv_case({1, 4, 9, 9, 6, 3, 3, down, x, wt, y, bias}, seed++);  // VAE downsample
      run_conv_case({2, 8, 10, 7, 4, 3, 3, down, x, wt, y, !bias}, seed++);
      ++i;
    }
  }
}

TEST(Conv2d, Bands) {
  // A tiny band budget forces one output row per band: first/last bands get the padding, the
  // middle ones none, and the result must equal the unbanded convolution.
  cpu::set_conv_band_bytes_for_testing(1);
  const Conv2dParams same{1, 1, 1, 1, 1}, down{2, 0, 0, 1, 1};
  run_conv_case({1, 16, 13, 9, 16, 3, 3, same, DType::kF32, DType::kF32, DType::kF32, true}, 1000);
  run_conv_case({2, 8, 11, 10, 8, 3, 3, down, DType::kBF16, DType::kBF16, DType::kBF16, false}, 1001);
  cpu::set_conv_band_bytes_for_testing(0);
}

TEST(Conv2d, Errors) {
  auto x = *Tensor::zeros({1, 4, 8, 8}, DType::kF32);
  auto w = *Tensor::zeros({6, 4, 3, 3}, DType::kF32);
  auto y = *Tensor::zeros({1, 6, 8, 8}, DType::kF32);
  auto y_bad = *Tensor::zeros({1, 6, 7, 8}, DType::kF32);
  auto w_bad = *Tensor::zeros({6, 5, 3, 3}, DType::kF32);
  auto bias_bad = *Tensor::zeros({4}, DType::kF32);
  const Conv2dParams same{1, 1, 1, 1, 1};
  auto both = [&](const Tensor& xx, const Tensor& ww, const Tensor* bb, const Tensor& yy, Conv2dParams p) {
    Status a = cpu::conv2d(ctx(), xx, ww, bb, yy, p);
    Status r = ref::conv2d(xx, ww, bb, yy, p);
    EXPECT_FALSE(a.ok());
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(a.message(), r.message());
  };
  both(x, w, nullptr, y_bad, same);
  both(x, w_bad, nullptr, y, same);
  both(x, w, &bias_bad, y, same);
  both(x, w, nullptr, y, Conv2dParams{0, 1, 1, 1, 1});
  both(x, w, nullptr, y, Conv2dParams{1, 3, 3, 3, 3});  // padding >= kernel
}

// Through the Backend interface, to check the dispatch wiring.
TEST(Backends, GemmThroughInterface) {
  auto cpu_be = make_cpu_backend(2);
  auto ref_be = make_reference_backend();
  auto x = *Tensor::zeros({5, 24}, DType::kF32);
  auto w = *Tensor::zeros({10, 24}, DType::kF32);
  auto y = *Tensor::zeros({5, 10}, DType::kF32), yr = *Tensor::zeros({5, 10}, DType::kF32);
  fill_uniform(x, 1);
  fill_uniform(w, 2);
  ASSERT_TRUE(cpu_be->gemm(x, w, nullptr, y, {Activation::kSilu, false}).ok());
  ASSERT_TRUE(ref_be->gemm(x, w, nullptr, yr, {Activation::kSilu, false}).ok());
  EXPECT_TRUE(all_close(y, yr, 24 * 24 * half_ulp(DType::kF32) + 2e-6, 0));
}

}  // namespace
}  // namespace sd35
