// Fast CPU row ops (layer/rms/group norm, modulate, activations, softmax) against the
// reference kernels on random data, under every ISA level the machine has.
//
// Tolerance policy: the reference computes in f64 and rounds once on store; the CPU kernels
// compute in f32. Each op states its f32 tolerance below. For bf16/f16 outputs both results
// are rounded to the storage type and can land on neighbouring values when the exact result
// is near a rounding boundary: one ulp of the output type (2 x unit roundoff, i.e. 2^-7
// relative for bf16, 2^-10 for f16) is added to rtol and the f32 atol is doubled. Inputs are read
// from the same stored bits by both backends, so input rounding does not enter the comparison.
#include <cstring>
#include <gtest/gtest.h>

#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"

namespace sd35 {
namespace {

using testing::all_close;
using testing::for_each_isa;
using testing::guarded;
using testing::GuardedTensor;

using testing::cpu_backend;
using testing::reference_backend;

struct Tol {
  double atol, rtol;
};

Tol for_output(Tol f32, DType yt) {
  if (yt == DType::kF32) return f32;
  // f16 results below 2^-14 are subnormal with a fixed step of 2^-24: one step absolute.
  double subnormal_step = yt == DType::kF16 ? 1.0 / 16777216 : 0.0;
  return {2 * f32.atol + subnormal_step, f32.rtol + 2 * testing::half_ulp(yt)};
}

struct RowShape {
  int64_t rows, width;
};
// Odd widths (not multiples of 8 or 16: masked tails), a width below one vector, one large
// row count (many parallel chunks) and the MMDiT width.
const RowShape kRowShapes[] = {{1, 1},   {7, 3},     {129, 17}, {4250, 64},
                               {3, 256}, {33, 1536}, {2, 4099}, {5, 31}};

struct DTypes {
  DType x, y;
};
const DTypes kDTypes[] = {{DType::kF32, DType::kF32},  {DType::kBF16, DType::kBF16},
                          {DType::kF16, DType::kF16},  {DType::kBF16, DType::kF32},
                          {DType::kF32, DType::kBF16}, {DType::kF16, DType::kF32}};

std::string label(const RowShape& s, const DTypes& d, int variant) {
  return "rows=" + std::to_string(s.rows) + " width=" + std::to_string(s.width) +
         " x=" + testing::dtype_str(d.x) + " y=" + testing::dtype_str(d.y) +
         " variant=" + std::to_string(variant);
}

// Runs a row op (ref into a plain tensor, cpu into guarded outputs) for every shape, dtype
// pair and layout variant (0: dense, 1: strided x, 2: strided y, 3: y aliases x when the
// dtypes match) and compares.
template <typename RefOp, typename CpuOp>
void check_row_op(RefOp ref_op, CpuOp cpu_op, Tol f32_tol, float lo, float hi, bool alias_ok) {
  uint32_t seed = 1;
  for (const RowShape& s : kRowShapes) {
    for (const DTypes& d : kDTypes) {
      for (int variant = 0; variant < 4; ++variant) {
        if (variant == 3 && (!alias_ok || d.x != d.y)) continue;
        SCOPED_TRACE(label(s, d, variant));
        Shape shape{s.rows, s.width};
        GuardedTensor x = guarded(shape, d.x, variant == 1 ? 5 : 0);
        testing::fill_uniform(x.t, seed++, lo, hi);
        auto expect = Tensor::zeros(shape, d.y);
        ASSERT_TRUE(expect.ok());
        if (variant == 3) {
          ASSERT_TRUE(reference_backend().copy(x.t, *expect).ok());
          ASSERT_TRUE(ref_op(*expect, *expect).ok());
        } else {
          Status st = ref_op(x.t, *expect);
          ASSERT_TRUE(st.ok()) << st.to_string();
        }
        const std::vector<float> x_values = testing::to_vector(x.t);
        for_each_isa([&] {
          if (variant == 3) {
            testing::fill_values(x.t, x_values);  // restore the input overwritten in place
            Status st = cpu_op(x.t, x.t);
            ASSERT_TRUE(st.ok()) << st.to_string();
            EXPECT_TRUE(all_close(x.t, *expect, for_output(f32_tol, d.y).atol,
                                  for_output(f32_tol, d.y).rtol));
            EXPECT_TRUE(x.guards_ok());
            return;
          }
          GuardedTensor y = guarded(shape, d.y, variant == 2 ? 3 : 0);
          Status st = cpu_op(x.t, y.t);
          ASSERT_TRUE(st.ok()) << st.to_string();
          Tol tol = for_output(f32_tol, d.y);
          EXPECT_TRUE(all_close(y.t, *expect, tol.atol, tol.rtol));
          EXPECT_TRUE(y.guards_ok());
          EXPECT_TRUE(x.guards_ok());  // the input is never written
        });
      }
    }
  }
}

// Norm parameters of length c in a rotating dtype.
Tensor param(int64_t c, DType dt, uint32_t seed, float lo, float hi) {
  auto t = Tensor::zeros({c}, dt);
  testing::fill_uniform(*t, seed, lo, hi);
  return *t;
}

const DType kParamTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

TEST(CpuOps, LayerNormMatchesReference) {
  // Inputs centred on 3 with std ~0.6: a naive E[x²] - E[x]² would lose ~5 digits here.
  // f32 tolerance: the mean and variance are f32 sums of up to 4099 terms (32 partial
  // sums), relative error ~1e-6; y = (x - mean)·rstd·w + b with |y| <~ 4 then has absolute
  // error ~4e-6 from the mean and relative ~1e-6 from rstd. atol 1e-5, rtol 1e-5.
  int i = 0;
  for (bool affine : {true, false}) {
    DType pt = kParamTypes[i++ % 3];
    check_row_op(
        [&](const Tensor& x, const Tensor& y) {
          Tensor w = param(x.size(-1), pt, 11, 0.5f, 1.5f), b = param(x.size(-1), pt, 12, -1, 1);
          return reference_backend().layer_norm(x, affine ? &w : nullptr, affine ? &b : nullptr, 1e-6f, y);
        },
        [&](const Tensor& x, const Tensor& y) {
          Tensor w = param(x.size(-1), pt, 11, 0.5f, 1.5f), b = param(x.size(-1), pt, 12, -1, 1);
          return cpu_backend().layer_norm(x, affine ? &w : nullptr, affine ? &b : nullptr, 1e-6f, y);
        },
        {1e-5, 1e-5}, 2.0f, 4.0f, true);
  }
}

TEST(CpuOps, RmsNormMatchesReference) {
  // f32: Σx² has relative error ~1e-6 (positive terms, no cancellation); one multiply by
  // rrms and w adds a few ulp. rtol 4e-6, atol 1e-7 for outputs near zero.
  for (DType pt : {DType::kF32, DType::kBF16}) {
    for (bool has_w : {true, false}) {
      check_row_op(
          [&](const Tensor& x, const Tensor& y) {
            Tensor w = param(x.size(-1), pt, 21, -2, 2);
            return reference_backend().rms_norm(x, has_w ? &w : nullptr, 1e-6f, y);
          },
          [&](const Tensor& x, const Tensor& y) {
            Tensor w = param(x.size(-1), pt, 21, -2, 2);
            return cpu_backend().rms_norm(x, has_w ? &w : nullptr, 1e-6f, y);
          },
          {1e-7, 4e-6}, -3.0f, 3.0f, true);
    }
  }
}

TEST(CpuOps, SoftmaxMatchesReference) {
  // f32: exp is accurate to ~2 ulp, the sum of up to 4099 terms to ~1e-6 relative, then one
  // multiply by 1/sum. rtol 4e-6; atol 1e-9 for the tiny probabilities (exp(-16) ~ 1e-7
  // relative to the largest; the AVX2 exp flushes results below FLT_MIN to 0).
  check_row_op([](const Tensor& x, const Tensor& y) { return reference_backend().softmax(x, y); },
               [](const Tensor& x, const Tensor& y) { return cpu_backend().softmax(x, y); },
               {1e-9, 4e-6}, -8.0f, 8.0f, true);
}

TEST(CpuOps, ActivationsMatchReference) {
  struct Case {
    Activation act;
    Tol tol;
  };
  // kNone is a pure copy/cast: bit-exact (same RNE rounding in both).
  // gelu/silu: vector exp ~2 ulp and one division; the exp argument (up to ~15 for |x| <= 6)
  // carries its own f32 rounding of |arg|·2^-24 into the result (x³ and the argument are
  // rounded in f32 before exp amplifies them); gelu_erf's erfc approximation adds 1.2e-7
  // relative. Observed: <= 2e-6 relative for |arg| <= 12 (|x| <= 4). rtol 4e-6. For
  // gelu_tanh at x ~ -6 the argument reaches 25 and the relative error ~4e-6 on outputs of
  // ~1e-10; atol 1e-9 accepts that (absolute error ~1e-15 against activations of O(1)).
  const Case cases[] = {{Activation::kNone, {0, 0}},
                        {Activation::kGeluTanh, {1e-9, 4e-6}},
                        {Activation::kGeluErf, {1e-9, 4e-6}},
                        {Activation::kQuickGelu, {1e-9, 4e-6}},
                        {Activation::kSilu, {1e-9, 4e-6}}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(activation_name(c.act)));
    check_row_op(
        [&](const Tensor& x, const Tensor& y) { return reference_backend().activation(x, c.act, y); },
        [&](const Tensor& x, const Tensor& y) { return cpu_backend().activation(x, c.act, y); },
        c.tol, -6.0f, 6.0f, true);
  }
}

TEST(CpuOps, ActivationWideRangeAndSpecialValues) {
  // Far tails (exp overflow/underflow paths), zeros, infinities and NaN.
  std::vector<float> v = {-100.f, -89.f, -88.5f, -87.5f, -50.f, -20.f, -10.f, -1e-30f, -0.f,   0.f,
                          1e-30f, 10.f,  20.f,   50.f,   88.5f, 89.f,  100.f, 1e30f,   -1e30f, NAN};
  auto x = Tensor::zeros({int64_t(v.size())}, DType::kF32);
  testing::fill_values(*x, v);
  for (Activation act :
       {Activation::kGeluTanh, Activation::kGeluErf, Activation::kQuickGelu, Activation::kSilu}) {
    SCOPED_TRACE(std::string(activation_name(act)));
    auto expect = Tensor::zeros(x->shape(), DType::kF32);
    ASSERT_TRUE(reference_backend().activation(*x, act, *expect).ok());
    for_each_isa([&] {
      auto y = Tensor::zeros(x->shape(), DType::kF32);
      ASSERT_TRUE(cpu_backend().activation(*x, act, *y).ok());
      // Outputs here are either ~x, ~0 (|y| < 1e-30: flushed tails agree absolutely) or NaN.
      EXPECT_TRUE(all_close(*y, *expect, 1e-30, 4e-6));
    });
  }
}

// A group norm case's optional affine pair: w in [0.5, 1.5] and b in [-1, 1] of rotating
// parameter dtypes; none for variant 1.
struct GroupNormAffine {
  Tensor w, b;
  bool none;
  GroupNormAffine(int64_t channels, uint32_t seed, int variant)
      : w(param(channels, kParamTypes[seed % 3], seed, 0.5f, 1.5f)),
        b(param(channels, kParamTypes[(seed + 1) % 3], seed + 1, -1, 1)),
        none(variant == 1) {}
  const Tensor* wp() const { return none ? nullptr : &w; }
  const Tensor* bp() const { return none ? nullptr : &b; }
};

TEST(CpuOps, GroupNormMatchesReference) {
  struct Case {
    Shape shape;
    int groups;
  };
  // A VAE-like shape, a 3-D one, spatial extents beyond the 4096-element stats chunk (with
  // and without a partial last chunk), a single group and one group per channel.
  const Case cases[] = {{{1, 32, 9, 7}, 8},  {{2, 6, 5}, 3},    {{1, 8, 4250}, 4},
                        {{1, 4, 64, 64}, 2}, {{2, 4, 3, 3}, 1}, {{2, 4, 3, 3}, 4},
                        {{3, 2}, 2}};
  // f32: chunk statistics are two-pass in f32 (relative ~1e-6), merged in f64; y =
  // (x - mean)·rstd·w + b as for layer_norm. atol 1e-5, rtol 1e-5.
  const Tol f32_tol{1e-5, 1e-5};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    for (const DTypes& d : kDTypes) {
      for (int variant = 0; variant < 3; ++variant) {  // affine, no affine, in place
        if (variant == 2 && d.x != d.y) continue;
        SCOPED_TRACE("shape=" + c.shape.to_string() + " groups=" + std::to_string(c.groups) +
                     " x=" + testing::dtype_str(d.x) + " y=" + testing::dtype_str(d.y) +
                     " variant=" + std::to_string(variant));
        const GroupNormAffine affine(c.shape[1], seed, variant);
        const Tensor *wp = affine.wp(), *bp = affine.bp();
        GuardedTensor x = guarded(c.shape, d.x);
        testing::fill_uniform(x.t, seed++, 5.0f, 7.0f);  // mean 6 >> std 0.6
        auto expect = Tensor::zeros(c.shape, d.y);
        ASSERT_TRUE(reference_backend().group_norm(x.t, c.groups, wp, bp, 1e-6f, *expect).ok());
        const std::vector<float> xv = testing::to_vector(x.t);
        Tol tol = for_output(f32_tol, d.y);
        for_each_isa([&] {
          if (variant == 2) {
            testing::fill_values(x.t, xv);
            ASSERT_TRUE(cpu_backend().group_norm(x.t, c.groups, wp, bp, 1e-6f, x.t).ok());
            EXPECT_TRUE(all_close(x.t, *expect, tol.atol, tol.rtol));
            EXPECT_TRUE(x.guards_ok());
            return;
          }
          GuardedTensor y = guarded(c.shape, d.y);
          Status st = cpu_backend().group_norm(x.t, c.groups, wp, bp, 1e-6f, y.t);
          ASSERT_TRUE(st.ok()) << st.to_string();
          EXPECT_TRUE(all_close(y.t, *expect, tol.atol, tol.rtol));
          EXPECT_TRUE(y.guards_ok());
        });
      }
    }
  }
}

// group_norm_silu does the SiLU chunk by chunk inside the norm's pass; it must give the very
// bytes of group_norm followed by activation(kSilu) (each ISA's kernels, mixed dtypes, in
// place, spatial extents that are not multiples of the vector width or of the chunk).
TEST(CpuOps, GroupNormSiluEqualsGroupNormThenSilu) {
  const struct {
    Shape shape;
    int groups;
  } cases[] = {{{1, 32, 9, 7}, 8}, {{2, 6, 4097}, 3}, {{1, 4, 64, 64}, 2}, {{2, 4, 3, 3}, 4}};
  uint32_t seed = 300;
  for (const auto& c : cases) {
    for (const DTypes& d : kDTypes) {
      for (int variant = 0; variant < 3; ++variant) {  // affine, no affine, in place
        if (variant == 2 && d.x != d.y) continue;
        SCOPED_TRACE("shape=" + c.shape.to_string() + " x=" + testing::dtype_str(d.x) +
                     " y=" + testing::dtype_str(d.y) + " variant=" + std::to_string(variant));
        const GroupNormAffine affine(c.shape[1], seed, variant);
        const Tensor *wp = affine.wp(), *bp = affine.bp();
        GuardedTensor x = guarded(c.shape, d.x);
        testing::fill_uniform(x.t, seed++, -4.0f, 4.0f);
        const std::vector<float> xv = testing::to_vector(x.t);
        for_each_isa([&] {
          auto two = Tensor::zeros(c.shape, d.y);
          testing::fill_values(x.t, xv);
          ASSERT_TRUE(cpu_backend().group_norm(x.t, c.groups, wp, bp, 1e-6f, *two).ok());
          ASSERT_TRUE(cpu_backend().activation(*two, Activation::kSilu, *two).ok());
          GuardedTensor y = guarded(c.shape, d.y);
          const Tensor& out = variant == 2 ? x.t : y.t;
          Status st = cpu_backend().group_norm_silu(x.t, c.groups, wp, bp, 1e-6f, out);
          ASSERT_TRUE(st.ok()) << st.to_string();
          EXPECT_EQ(std::memcmp(out.data(), two->data(), size_t(two->numel()) * two->element_size()), 0)
              << "fused bytes differ from group_norm + silu";
          EXPECT_TRUE(variant == 2 ? x.guards_ok() : y.guards_ok());
        });
      }
    }
  }
}

TEST(CpuOps, ModulateMatchesReference) {
  struct Case {
    int64_t b, l, d;
  };
  const Case cases[] = {{1, 1, 1}, {2, 7, 17}, {3, 129, 64}, {2, 33, 1536}, {1, 4250, 24}};
  // f32: one fma per element after 1 + scale is rounded once: <= 2 ulp of |y|, plus 1 ulp
  // of |shift| when x·(1+scale) and shift nearly cancel: rtol 4e-7, atol 4e-7 (|shift| <= 2).
  const Tol f32_tol{4e-7, 4e-7};
  uint32_t seed = 300;
  for (const Case& c : cases) {
    for (const DTypes& d : kDTypes) {
      for (DType pt : kParamTypes) {
        for (int variant = 0; variant < 3; ++variant) {  // dense y, strided y, y aliases x
          if (variant == 2 && d.x != d.y) continue;
          SCOPED_TRACE("B=" + std::to_string(c.b) + " L=" + std::to_string(c.l) +
                       " D=" + std::to_string(c.d) + " x=" + testing::dtype_str(d.x) +
                       " y=" + testing::dtype_str(d.y) + " params=" + testing::dtype_str(pt) +
                       " variant=" + std::to_string(variant));
          // shift/scale are chunks 1 and 4 of a [B, 6·D] adaLN output: row stride 6·D.
          auto ada = Tensor::zeros({c.b, 6 * c.d}, pt);
          testing::fill_uniform(*ada, seed++, -2.0f, 2.0f);
          Tensor shift = ada->slice(1, c.d, 2 * c.d), scale = ada->slice(1, 4 * c.d, 5 * c.d);
          GuardedTensor x = guarded({c.b, c.l, c.d}, d.x, variant == 1 ? 0 : 7);
          testing::fill_uniform(x.t, seed++, -3.0f, 3.0f);
          auto expect = Tensor::zeros(x.t.shape(), d.y);
          ASSERT_TRUE(reference_backend().modulate(x.t, shift, scale, *expect).ok());
          const std::vector<float> xv = testing::to_vector(x.t);
          Tol tol = for_output(f32_tol, d.y);
          for_each_isa([&] {
            if (variant == 2) {
              testing::fill_values(x.t, xv);
              ASSERT_TRUE(cpu_backend().modulate(x.t, shift, scale, x.t).ok());
              EXPECT_TRUE(all_close(x.t, *expect, tol.atol, tol.rtol));
              EXPECT_TRUE(x.guards_ok());
              return;
            }
            GuardedTensor y = guarded(x.t.shape(), d.y, variant == 1 ? 9 : 0);
            Status st = cpu_backend().modulate(x.t, shift, scale, y.t);
            ASSERT_TRUE(st.ok()) << st.to_string();
            EXPECT_TRUE(all_close(y.t, *expect, tol.atol, tol.rtol));
            EXPECT_TRUE(y.guards_ok());
          });
        }
      }
    }
  }
}

}  // namespace
}  // namespace sd35
