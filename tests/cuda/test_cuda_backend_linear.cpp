// CUDA backend conformance, gemm / conv2d / attention / gather_rows against the reference.
//
// Tolerances (s = sqrt(K)·max|x|·max|w|, the typical magnitude of a dot product of K terms):
//  * f32 x (any weight dtype: all convert exactly to f32) and f32 y: atol 1e-5·s, rtol 1e-5 —
//    f32 FMA accumulation (no TF32) in another order than the reference's f64 sum.
//  * bf16 / f16 x: the weight is rounded to x's dtype when it is stored in another one
//    (relative 2^-9 / 2^-12 per product, random sign): atol 2^-8·s (bf16) or 2^-10·s (f16);
//    a 16-bit y adds one rounding, rtol two ulps (2^-7 bf16, 2^-9 f16).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>

#include "cuda_test_util.h"

namespace sd35::cudatest {
namespace {

Tol gemm_tol(DType xt, DType yt, double s) {
  if (xt == DType::kF32 && yt == DType::kF32) return {1e-5 * s, 1e-5};
  double a = xt == DType::kBF16 ? 1.0 / 256 : xt == DType::kF16 ? 1.0 / 1024 : 1e-5;
  double r = yt == DType::kBF16 ? 1.0 / 128 : yt == DType::kF16 ? 1.0 / 512 : 1e-5;
  // A 16-bit y rounds an O(s) value: also allow that absolutely for results near zero.
  return {s * std::max(a, r / 4), r};
}

struct GemmCase {
  Shape x;  // [..., K]
  int64_t n;
  DType xt, wt, yt;
  int bias = -1;  // -1 none, else a DType value
  Activation act = Activation::kNone;
  bool accumulate = false;
  int64_t x_pad = 0, y_pad = 0;
  bool nonuniform = false;  // x is a slice along dim 1 of a longer buffer
};

std::string describe(const GemmCase& c) {
  return "gemm x" + c.x.to_string() + " n=" + std::to_string(c.n) + " x:" + dt(c.xt) +
         " w:" + dt(c.wt) + " y:" + dt(c.yt) +
         " bias:" + (c.bias < 0 ? std::string("none") : dt(DType(c.bias))) +
         " act:" + std::string(activation_name(c.act)) + (c.accumulate ? " accumulate" : "") +
         (c.x_pad ? " x_pad" : "") + (c.y_pad ? " y_pad" : "") +
         (c.nonuniform ? " nonuniform-rows" : "");
}

void run_gemm(const GemmCase& c, uint32_t seed) {
  const int64_t k = c.x.back();
  Shape ys = c.x;
  ys[ys.ndim() - 1] = c.n;
  std::unique_ptr<Mirror> x;
  Shape xview_shape = c.x, xview_strides;
  if (c.nonuniform) {
    Shape big = c.x;
    big[1] += 3;
    x = Mirror::make(big, c.xt, c.x_pad);
    xview_strides = x->host().strides();
  } else {
    x = Mirror::make(c.x, c.xt, c.x_pad);
    xview_strides = x->host().strides();
  }
  auto w = Mirror::make({c.n, k}, c.wt);
  auto y = Mirror::make(ys, c.yt, c.y_pad);
  std::unique_ptr<Mirror> b;
  x->fill_random(seed, 1.0f);
  w->fill_random(seed + 1, 0.5f);
  const double s = std::sqrt(double(k)) * 0.5;
  if (c.accumulate) y->fill_random(seed + 2, float(s));
  x->upload();
  w->upload();
  y->upload();
  if (c.bias >= 0) {
    b = Mirror::make({c.n}, DType(c.bias));
    b->fill_random(seed + 3, 1.0f);
    b->upload();
  }
  GemmParams p;
  p.activation = c.act;
  p.accumulate = c.accumulate;
  run_and_compare(describe(c), {{y.get(), gemm_tol(c.xt, c.yt, c.accumulate ? 2 * s : s)}},
                  [&](Backend& bk, bool d) {
                    Tensor bv = b ? side(*b, d) : Tensor();
                    return bk.gemm(side(*x, d, xview_shape, xview_strides), side(*w, d),
                                   b ? &bv : nullptr, side(*y, d), p);
                  });
}

TEST(CudaGemm, EveryWeightDtypeAndComputeMode) {
  const DType weights[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3FN,
                           DType::kF8E5M2};
  uint32_t seed = 100;
  for (DType xt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (DType wt : weights) {
      for (DType yt : {xt, DType::kF32}) {
        GemmCase c{{2, 19, 45}, 37, xt, wt, yt};
        run_gemm(c, seed += 10);
      }
    }
  }
}

TEST(CudaGemm, BiasActivationsAccumulate) {
  const Activation acts[] = {Activation::kNone, Activation::kGeluTanh, Activation::kGeluErf,
                             Activation::kQuickGelu, Activation::kSilu};
  uint32_t seed = 500;
  for (DType xt : {DType::kF32, DType::kBF16}) {
    for (Activation act : acts) {
      for (int bias : {-1, int(DType::kF32), int(DType::kBF16), int(DType::kF16)}) {
        for (bool acc : {false, true}) {
          GemmCase c{{3, 11, 70}, 29, xt, DType::kBF16, xt, bias, act, acc};
          run_gemm(c, seed += 10);
        }
      }
    }
  }
}

TEST(CudaGemm, FusedEpiloguesAtAlignedSizes) {
  // MMDiT-like layouts that cuBLASLt's own epilogues take (16-byte aligned rows and bias):
  // qkv (16-bit bias with 16-bit y, also into a row-padded y like a slice of the fused qkv
  // buffer), fc1 (+ GELU tanh), fc2/proj (16-bit bias with an f32 y, converted to f32), and
  // the same with accumulate. The gemm_tol bounds of the odd-size cases apply unchanged.
  uint32_t seed = 900;
  for (DType xt : {DType::kBF16, DType::kF16}) {
    for (int bias : {-1, int(xt), int(DType::kF32)}) {
      for (Activation act : {Activation::kNone, Activation::kGeluTanh}) {
        for (bool acc : {false, true}) {
          for (int64_t y_pad : {0, 64}) {
            GemmCase c{{2, 48, 128}, 192, xt, xt, xt, bias, act, acc, 0, y_pad};
            run_gemm(c, seed += 10);
          }
        }
      }
      GemmCase f32y{{2, 48, 256}, 128, xt, xt, DType::kF32, bias};
      run_gemm(f32y, seed += 10);
    }
  }
}

TEST(CudaGemm, SkinnyF32RowsAgainstStoredWeights) {
  // f32 x with 1..8 rows against 16-bit / fp8 weights takes the skinny kernel (k a multiple
  // of 16 for fp8, 8 for 16-bit); 9 rows take the small-M kernel, k = 45 and a 3-D x with
  // two row groups the cuBLASLt path. Tolerance: gemm_tol's f32 bound (f32 FMA in another
  // order).
  const DType weights[] = {DType::kBF16, DType::kF16, DType::kF8E4M3FN, DType::kF8E5M2};
  uint32_t seed = 1300;
  for (DType wt : weights) {
    for (Shape xs : {Shape{1, 256}, Shape{2, 256}, Shape{8, 48}, Shape{9, 64}, Shape{2, 45},
                     Shape{2, 1, 32}, Shape{256}}) {
      for (int bias : {-1, int(DType::kF32), int(DType::kBF16)}) {
        GemmCase c{xs, 200, DType::kF32, wt, DType::kF32, bias};
        run_gemm(c, seed += 10);
      }
    }
    // Activation, accumulate, a 16-bit y and padded rows on both sides.
    GemmCase act{{2, 128}, 77, DType::kF32, wt, DType::kF32, int(DType::kF16), Activation::kSilu};
    run_gemm(act, seed += 10);
    GemmCase acc{{3, 64}, 64, DType::kF32, wt, DType::kF32, -1, Activation::kNone, true, 3, 5};
    run_gemm(acc, seed += 10);
    GemmCase y16{{2, 64}, 96, DType::kF32, wt, DType::kBF16, int(DType::kF32)};
    run_gemm(y16, seed += 10);
  }
}

TEST(CudaGemm, SmallMF32RowsAgainstStoredWeights) {
  // f32 x of 9..256 rows against 16-bit / fp8 weights takes the small-M kernel
  // (cuda_smallm_gemm.cu: 32×128 tiles of y, k tiles of 32) when K·es is a multiple of 16:
  // rows 9, 77, 154, 200 and 256 are ragged against the 32-row tiles or fill them, N = 130, 200,
  // 300 against the 128-column tiles, K = 48, 80, 208 end inside a k tile; 257 rows, and
  // K = 45 (rows of 90 or 45 bytes), take the convert + cuBLASLt path.
  // Tolerance: gemm_tol's f32 bound (atol 1e-5·s, rtol 1e-5; s = sqrt(K)·0.5, about 3× the
  // typical |dot| of these fills). Every weight converts exactly to f32 and the kernel
  // accumulates with f32 FMA in k order where the reference sums in f64, so the difference is
  // the f32 rounding of a K-term sum: σ ≈ 2^-24·sqrt(K/6)·|dot| as a random walk, under
  // 1e-6·s at K = 10240, so the bound is > 10σ even over the 8e5 outputs of a T5 case. A
  // 16-bit y adds its one rounding (gemm_tol's rtol).
  const DType weights[] = {DType::kBF16, DType::kF16, DType::kF8E4M3FN, DType::kF8E5M2};
  const int biases[] = {-1, int(DType::kF32), int(DType::kBF16), int(DType::kF16)};
  const Activation acts[] = {Activation::kNone, Activation::kGeluTanh, Activation::kGeluErf,
                             Activation::kQuickGelu, Activation::kSilu};
  struct Shp {
    Shape x;
    int64_t n;
  };
  const Shp shapes[] = {{{9, 64}, 200},       {{77, 208}, 130}, {{1, 77, 80}, 96},
                        {{154, 48}, 64},      {{200, 80}, 300}, {{256, 32}, 129},
                        {{257, 32}, 40},      {{77, 45}, 33}};
  uint32_t seed = 1700;
  for (DType wt : weights) {
    int i = 0;
    for (const Shp& sh : shapes) {
      GemmCase c{sh.x, sh.n, DType::kF32, wt, DType::kF32, biases[i++ % 4]};
      run_gemm(c, seed += 10);
    }
    for (Activation act : acts) {
      GemmCase c{{77, 96}, 70, DType::kF32, wt, DType::kF32, int(DType::kF16), act};
      run_gemm(c, seed += 10);
    }
    // Accumulate into a row-padded y from a row-padded (strided) x.
    GemmCase acc{{77, 64}, 64, DType::kF32, wt, DType::kF32, int(DType::kBF16),
                 Activation::kGeluErf, true, 3, 5};
    run_gemm(acc, seed += 10);
    GemmCase strided{{200, 48}, 50, DType::kF32, wt, DType::kF32, -1, Activation::kNone, false, 7};
    run_gemm(strided, seed += 10);
    for (DType yt : {DType::kBF16, DType::kF16}) {
      GemmCase y16{{154, 64}, 96, DType::kF32, wt, yt, int(DType::kF32), Activation::kQuickGelu};
      run_gemm(y16, seed += 10);
    }
  }
  // The text encoders' shapes: CLIP-L q/k/v/o (f16), CLIP-G fc1 (f16), T5-XXL attention,
  // fc1 and fc2 (fp8 e4m3), 77 tokens.
  const GemmCase text[] = {
      {{1, 77, 768}, 768, DType::kF32, DType::kF16, DType::kF32, int(DType::kF16)},
      {{1, 77, 1280}, 5120, DType::kF32, DType::kF16, DType::kF32, int(DType::kF16),
       Activation::kGeluErf},
      {{1, 77, 4096}, 4096, DType::kF32, DType::kF8E4M3FN, DType::kF32},
      {{77, 4096}, 10240, DType::kF32, DType::kF8E4M3FN, DType::kF32, -1, Activation::kGeluTanh},
      {{77, 10240}, 4096, DType::kF32, DType::kF8E4M3FN, DType::kF32, -1, Activation::kNone,
       true},
  };
  for (const GemmCase& c : text) run_gemm(c, seed += 10);
}

TEST(CudaGemm, OddSizesAndLayouts) {
  uint32_t seed = 900;
  const GemmCase cases[] = {
      {{1, 1}, 1, DType::kF32, DType::kF32, DType::kF32},
      {{1, 7}, 1, DType::kBF16, DType::kBF16, DType::kBF16},
      {{5}, 13, DType::kF32, DType::kF16, DType::kF32},  // x without leading dims
      {{1, 1, 129}, 3, DType::kBF16, DType::kF8E4M3FN, DType::kBF16, int(DType::kF32)},
      {{37, 29}, 53, DType::kF32, DType::kBF16, DType::kF32, int(DType::kF32)},
      {{37, 29}, 53, DType::kBF16, DType::kBF16, DType::kBF16, int(DType::kF32)},
      {{37, 29}, 53, DType::kF16, DType::kF16, DType::kF16, int(DType::kF16)},
      {{4, 9, 33}, 17, DType::kBF16, DType::kBF16, DType::kBF16, -1, Activation::kNone, false, 3,
       5},
      {{4, 9, 33}, 17, DType::kF32, DType::kF32, DType::kF32, int(DType::kF32),
       Activation::kGeluTanh, false, 1, 2},
      {{2, 9, 24}, 40, DType::kBF16, DType::kBF16, DType::kBF16, int(DType::kBF16),
       Activation::kNone, true, 8, 0, true},
      {{2, 9, 24}, 40, DType::kF32, DType::kF8E4M3FN, DType::kF32, -1, Activation::kSilu, false,
       0, 0, true},
      {{2, 3, 4, 16}, 9, DType::kBF16, DType::kF16, DType::kF32, int(DType::kF32)},
      // Large-ish: several cuBLASLt tiles in every dimension, K not a multiple of 8.
      {{1, 257, 1531}, 1000, DType::kBF16, DType::kBF16, DType::kBF16, int(DType::kF32)},
      {{1, 130, 777}, 515, DType::kF32, DType::kBF16, DType::kF32, int(DType::kF32),
       Activation::kGeluTanh},
  };
  for (const GemmCase& c : cases) run_gemm(c, seed += 10);
}

TEST(CudaGemm, Errors) {
  auto x = Mirror::make({4, 8}, DType::kBF16);
  auto w = Mirror::make({6, 8}, DType::kBF16);
  auto wbad = Mirror::make({6, 9}, DType::kBF16);
  auto y = Mirror::make({4, 6}, DType::kBF16);
  GemmParams p;
  Status s = cuda().gemm(x->host(), w->dev(), nullptr, y->dev(), p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cpu"), std::string::npos) << s.to_string();
  EXPECT_FALSE(cuda().gemm(x->dev(), wbad->dev(), nullptr, y->dev(), p).ok());
  Status rs = ref().gemm(x->host(), wbad->host(), nullptr, y->host(), p);
  Status cs = cuda().gemm(x->dev(), wbad->dev(), nullptr, y->dev(), p);
  EXPECT_EQ(rs.message(), cs.message());
  auto bias_host = Mirror::make({6}, DType::kF32);
  Tensor bh = bias_host->host();
  EXPECT_FALSE(cuda().gemm(x->dev(), w->dev(), &bh, y->dev(), p).ok());
  EXPECT_TRUE(cuda().synchronize().ok());
}

struct ConvCase {
  Shape x;
  int64_t out, kh, kw;
  Conv2dParams p;
  DType xt, wt;
  int bias = -1;
};

void run_conv(const ConvCase& c, uint32_t seed) {
  const int64_t hp = c.x[2] + c.p.pad_top + c.p.pad_bottom, wp = c.x[3] + c.p.pad_left + c.p.pad_right;
  const int64_t oh = (hp - c.kh) / c.p.stride + 1, ow = (wp - c.kw) / c.p.stride + 1;
  auto x = Mirror::make(c.x, c.xt, 1);
  auto w = Mirror::make({c.out, c.x[1], c.kh, c.kw}, c.wt);
  auto y = Mirror::make({c.x[0], c.out, oh, ow}, c.xt, 2);
  std::unique_ptr<Mirror> b;
  x->fill_random(seed, 1.0f);
  w->fill_random(seed + 1, 0.5f);
  x->upload();
  w->upload();
  if (c.bias >= 0) {
    b = Mirror::make({c.out}, DType(c.bias));
    b->fill_random(seed + 2);
    b->upload();
  }
  const double s = std::sqrt(double(c.x[1] * c.kh * c.kw)) * 0.5;
  const std::string label = "conv2d x" + c.x.to_string() + " w[" + std::to_string(c.out) + ", " +
                            std::to_string(c.kh) + "x" + std::to_string(c.kw) + "] stride " +
                            std::to_string(c.p.stride) + " pad " + std::to_string(c.p.pad_top) +
                            "," + std::to_string(c.p.pad_left) + "," +
                            std::to_string(c.p.pad_bottom) + "," + std::to_string(c.p.pad_right) +
                            " " + dt(c.xt) + "/" + dt(c.wt);
  run_and_compare(label, {{y.get(), gemm_tol(c.xt, c.xt, s)}}, [&](Backend& bk, bool d) {
    Tensor bv = b ? side(*b, d) : Tensor();
    return bk.conv2d(side(*x, d), side(*w, d), b ? &bv : nullptr, side(*y, d), c.p);
  });
}

TEST(CudaConv, StridesPaddingsDtypes) {
  Conv2dParams same{1, 1, 1, 1, 1};
  Conv2dParams down{2, 0, 0, 1, 1};  // the VAE encoder's asymmetric downsampling pad
  Conv2dParams none{};
  Conv2dParams odd{2, 1, 0, 0, 2};  // stride 2, pad top 1 / right 2 only
  const ConvCase cases[] = {
      {{1, 8, 17, 19}, 12, 3, 3, same, DType::kF32, DType::kF32, int(DType::kF32)},
      {{2, 8, 17, 19}, 12, 3, 3, same, DType::kBF16, DType::kBF16, int(DType::kBF16)},
      {{1, 6, 16, 15}, 5, 3, 3, down, DType::kF32, DType::kF16, int(DType::kF32)},
      {{1, 6, 16, 15}, 5, 3, 3, down, DType::kBF16, DType::kF32, -1},
      {{1, 5, 9, 11}, 7, 3, 3, odd, DType::kF32, DType::kBF16, int(DType::kF16)},
      {{2, 16, 9, 7}, 24, 1, 1, none, DType::kF32, DType::kF32, int(DType::kF32)},
      {{2, 16, 9, 7}, 24, 1, 1, none, DType::kBF16, DType::kF8E4M3FN, int(DType::kF32)},
      {{1, 3, 8, 8}, 4, 1, 1, Conv2dParams{2, 0, 0, 0, 0}, DType::kF32, DType::kF32, -1},
      // Larger: several GEMM tiles, the VAE's 3×3 at modest size.
      {{1, 64, 48, 40}, 64, 3, 3, same, DType::kBF16, DType::kBF16, int(DType::kF32)},
      {{1, 32, 40, 24}, 48, 3, 3, same, DType::kF32, DType::kF32, int(DType::kF32)},
  };
  uint32_t seed = 2000;
  for (const ConvCase& c : cases) run_conv(c, seed += 10);
}

TEST(CudaBackendAttention, StridedQkvSlicesAndMasks) {
  // q, k, v are slices of one fused [B, L, 3·H·D] buffer, as the MMDiT produces them.
  const int64_t B = 2, L = 45, H = 3, D = 64, F = H * D;
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    auto qkv = Mirror::make({B, L, 3 * F}, t);
    auto out = Mirror::make({B, L, F}, t, 4);
    qkv->fill_random(3000, 2.0f);
    qkv->upload();
    const Shape s{B, L, F}, st{L * 3 * F, 3 * F, 1};
    const float scale = 1.0f / 8.0f;
    // f32: online softmax in f32, atol 2e-5. 16-bit: probabilities may be rounded to the
    // input type for the P·V product (2^-8 / 2^-11 relative), outputs are O(1).
    const Tol tol = t == DType::kF32 ? Tol{2e-5, 1e-4}
                    : t == DType::kBF16 ? Tol{1.0 / 64, 1.0 / 64} : Tol{1.0 / 256, 1.0 / 256};
    run_and_compare("attention " + dt(t), {{out.get(), tol}}, [&](Backend& b, bool d) {
      return b.attention(side(*qkv, d, s, st, 0), side(*qkv, d, s, st, F),
                         side(*qkv, d, s, st, 2 * F), side(*out, d), int(H), scale);
    });
    run_and_compare("attention_masked causal " + dt(t), {{out.get(), tol}}, [&](Backend& b, bool d) {
      return b.attention_masked(side(*qkv, d, s, st, 0), side(*qkv, d, s, st, F),
                                side(*qkv, d, s, st, 2 * F), side(*out, d), int(H), scale, true,
                                nullptr);
    });
    auto bias = Mirror::make({1, H, L, L}, DType::kF32);
    bias->fill_random(3001, 3.0f);
    bias->upload();
    run_and_compare("attention_masked bias " + dt(t), {{out.get(), tol}}, [&](Backend& b, bool d) {
      Tensor bv = side(*bias, d);
      return b.attention_masked(side(*qkv, d, s, st, 0), side(*qkv, d, s, st, F),
                                side(*qkv, d, s, st, 2 * F), side(*out, d), int(H), 1.0f, false,
                                &bv);
    });
  }
  auto q = Mirror::make({1, 4, 64}, DType::kF32);
  Status st = cuda().attention(q->host(), q->dev(), q->dev(), q->dev(), 1, 1.0f);
  EXPECT_FALSE(st.ok());
}

TEST(CudaBackendAttention, WideHeadsRunAsBlockedGemms) {
  // Head dims >= 128 over >= 2^20 scores take the GEMM path (attention_gemm.cpp): the VAE's
  // single 512-wide head, and two 128-wide heads as slices of a fused k/v buffer with a
  // padded q. (One score block each: a multi-block case needs > 2^25 scores, too slow for
  // the f64 reference.) Tolerances as StridedQkvSlicesAndMasks (the probabilities are
  // rounded to the 16-bit input type before P·V there too).
  struct Case {
    int64_t B, Lq, Lk, H, D;
  };
  for (const Case& c : {Case{1, 1024, 1024, 1, 512}, Case{2, 1000, 1100, 2, 128}}) {
    for (DType t : {DType::kF32, DType::kBF16}) {
      const int64_t F = c.H * c.D;
      auto q = Mirror::make({c.B, c.Lq, F}, t, 8);
      auto kv = Mirror::make({c.B, c.Lk, 2 * F}, t);
      auto out = Mirror::make({c.B, c.Lq, F}, t, 16);
      q->fill_random(4000, 1.0f);
      kv->fill_random(4001, 1.0f);
      q->upload();
      kv->upload();
      const Shape ks{c.B, c.Lk, F}, kst{c.Lk * 2 * F, 2 * F, 1};
      const float scale = 1.0f / std::sqrt(float(c.D));
      const Tol tol = t == DType::kF32 ? Tol{2e-5, 1e-4} : Tol{1.0 / 64, 1.0 / 64};
      run_and_compare("wide attention D=" + std::to_string(c.D) + " " + dt(t), {{out.get(), tol}},
                      [&](Backend& b, bool d) {
                        return b.attention(side(*q, d), side(*kv, d, ks, kst, 0),
                                           side(*kv, d, ks, kst, F), side(*out, d), int(c.H),
                                           scale);
                      });
    }
  }
}

TEST(CudaGather, RowsAndRangeCheck) {
  for (DType tt : {DType::kF32, DType::kBF16, DType::kF8E4M3FN}) {
    auto table = Mirror::make({50, 33}, tt, 3);
    auto ids = Mirror::make({7}, DType::kI32);
    auto out = Mirror::make({7, 33}, DType::kBF16, 1);
    table->fill_random(4000, 2.0f);
    int32_t* id = ids->host().data_as<int32_t>();
    const int32_t v[7] = {0, 49, 3, 3, 17, 0, 25};
    for (int i = 0; i < 7; ++i) id[i] = v[i];
    table->upload();
    ids->upload();
    run_and_compare("gather_rows " + dt(tt), {{out.get(), kExact}}, [&](Backend& b, bool d) {
      return b.gather_rows(side(*table, d), side(*ids, d), side(*out, d));
    });
    id[4] = 50;  // out of range
    ids->upload();
    Status rs = ref().gather_rows(table->host(), ids->host(), out->host());
    Status cs = cuda().gather_rows(table->dev(), ids->dev(), out->dev());
    EXPECT_FALSE(cs.ok());
    EXPECT_EQ(rs.message(), cs.message());
  }
}

TEST(CudaBackend, RepeatedStepsAllocateNothing) {
  // A "step" mixing converted-weight GEMMs, a conv and a group norm; after the first one the
  // scratch pool must be warm and the device's free memory unchanged.
  auto x = Mirror::make({2, 77, 256}, DType::kBF16);
  auto w = Mirror::make({512, 256}, DType::kF8E4M3FN);
  auto y = Mirror::make({2, 77, 512}, DType::kBF16);
  auto cx = Mirror::make({1, 32, 32, 32}, DType::kF32);
  auto cw = Mirror::make({32, 32, 3, 3}, DType::kBF16);
  auto cy = Mirror::make({1, 32, 32, 32}, DType::kF32);
  for (Mirror* m : {x.get(), w.get(), cx.get(), cw.get()}) {
    m->fill_random(5000);
    m->upload();
  }
  auto step = [&] {
    GemmParams p;
    p.activation = Activation::kGeluTanh;
    EXPECT_TRUE(cuda().gemm(x->dev(), w->dev(), nullptr, y->dev(), p).ok());
    EXPECT_TRUE(cuda().conv2d(cx->dev(), cw->dev(), nullptr, cy->dev(), Conv2dParams{1, 1, 1, 1, 1}).ok());
    EXPECT_TRUE(cuda().group_norm(cy->dev(), 8, nullptr, nullptr, 1e-6f, cy->dev()).ok());
    EXPECT_TRUE(cuda().synchronize().ok());
  };
  step();
  size_t free1 = 0, free2 = 0, total = 0;
  ASSERT_TRUE(cuda().memory().mem_info(&free1, &total).ok());
  for (int i = 0; i < 3; ++i) step();
  ASSERT_TRUE(cuda().memory().mem_info(&free2, &total).ok());
  EXPECT_EQ(free1, free2) << "device memory changed across identical steps";
}

// Not a conformance check: prints the speed of the ops that dominate a 1024² image (MMDiT
// MLP GEMMs, VAE decoder convs and group norms) so a first GPU run shows where time goes.
// Inputs are the sentinel bytes (small finite values), never read back.
TEST(CudaPerf, PrintTimings) {
  auto time_ms = [](const std::function<Status()>& op, int iters) {
    Status s = op();  // warm-up: plans, scratch, lazy module loading
    if (!s.ok()) return -1.0;
    if (!cuda().synchronize().ok()) return -1.0;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i)
      if (!op().ok()) return -1.0;
    if (!cuda().synchronize().ok()) return -1.0;
    auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::milli>(t1 - t0).count() / iters;
  };
  const int64_t M = 4429, K = 1536, N = 6144;  // 4096 image + 333 text tokens, MLP fc1
  for (DType wt : {DType::kBF16, DType::kF8E4M3FN}) {
    auto x = std::make_unique<Mirror>(M * K, DType::kBF16);
    auto w = std::make_unique<Mirror>(N * K, wt);
    auto y = std::make_unique<Mirror>(M * N, DType::kBF16);
    const Shape xs{M, K}, ws{N, K}, ys{M, N};
    GemmParams p;
    p.activation = Activation::kGeluTanh;
    for (Activation act : {Activation::kNone, Activation::kGeluTanh}) {
      p.activation = act;
      double ms = time_ms([&] {
        return cuda().gemm(x->dev(xs, contiguous_strides(xs)), w->dev(ws, contiguous_strides(ws)),
                           nullptr, y->dev(ys, contiguous_strides(ys)), p);
      }, 10);
      std::printf("perf: gemm bf16 x[%lld,%lld] w %s[%lld,%lld] act %s: %.3f ms (%.1f TFLOP/s)\n",
                  (long long)M, (long long)K, dt(wt).c_str(), (long long)N, (long long)K,
                  std::string(activation_name(act)).c_str(), ms,
                  ms > 0 ? 2.0 * M * N * K / (ms * 1e9) : 0.0);
    }
  }
  {
    const int64_t C = 128, H = 512, W = 512;  // late VAE decoder stage
    const Shape xs{1, C, H, W}, ws{C, C, 3, 3};
    auto x = std::make_unique<Mirror>(xs.numel(), DType::kBF16);
    auto w = std::make_unique<Mirror>(ws.numel(), DType::kBF16);
    auto y = std::make_unique<Mirror>(xs.numel(), DType::kBF16);
    Conv2dParams same{1, 1, 1, 1, 1};
    double ms = time_ms([&] {
      return cuda().conv2d(x->dev(xs, contiguous_strides(xs)), w->dev(ws, contiguous_strides(ws)),
                           nullptr, y->dev(xs, contiguous_strides(xs)), same);
    }, 3);
    std::printf("perf: conv2d bf16 3x3 %lld->%lld at %lldx%lld: %.3f ms (%.1f TFLOP/s)\n",
                (long long)C, (long long)C, (long long)H, (long long)W, ms,
                ms > 0 ? 2.0 * C * C * 9 * H * W / (ms * 1e9) : 0.0);
    ms = time_ms([&] {
      return cuda().group_norm(x->dev(xs, contiguous_strides(xs)), 32, nullptr, nullptr, 1e-6f,
                               y->dev(xs, contiguous_strides(xs)));
    }, 3);
    std::printf("perf: group_norm bf16 [1,%lld,%lld,%lld] 32 groups: %.3f ms\n", (long long)C,
                (long long)H, (long long)W, ms);
  }
  EXPECT_TRUE(cuda().synchronize().ok());
}

}  // namespace
}  // namespace sd35::cudatest
