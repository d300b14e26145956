// add (broadcast), gated_add and affine: the CPU kernels against the reference on random data
// under every ISA level, hand-computed values (so the reference itself is checked) and the
// argument checks, all through the Backend interface.
//
// Tolerances. Both backends read the same stored input bits, so only the arithmetic and the
// final rounding differ:
// * add: the CPU computes fl32(a + b) (the scalar-broadcast path fl32(fma(a, 1, s)) is the
//   same value). The reference adds in double and rounds to f32 on store; a + b of two f32
//   values is exact in double unless the exponents differ by more than 29 bits, and then the
//   double result cannot sit on an f32 rounding midpoint. So fl32(fl64(a + b)) == fl32(a + b)
//   and the f32 results, and therefore also their bf16/f16 roundings, are bit-identical:
//   tolerance 0 for every dtype combination.
// * gated_add and affine: the CPU rounds x + g·h (x·scale + shift) once, in an f32 fma; the
//   reference computes the product exactly in double, rounds the sum to double, then to f32.
//   The two differ only when that double lands exactly on an f32 midpoint: at most one ulp
//   of the f32 result, rtol 2^-23 (and 2^-149, one subnormal step, absolute). A separate
//   multiply and add would be one more rounding (see the hand-computed fma case). For a
//   bf16/f16 output the one-ulp f32 difference can flip the final rounding: one ulp of the
//   output type (2 x its unit roundoff) is added to rtol.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
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

Tensor make(const Shape& s, const std::vector<float>& v, DType dt = DType::kF32) {
  Tensor t = *Tensor::zeros(s, dt);
  testing::fill_values(t, v);
  return t;
}
Tensor zeros(const Shape& s, DType dt = DType::kF32) { return *Tensor::zeros(s, dt); }

struct Tol {
  double atol, rtol;
};
// One f32 ulp (see the top of the file), widened by one output ulp for bf16/f16 outputs.
Tol one_rounding(DType out) {
  const double f32_ulp = 1.0 / 8388608, min_sub = std::ldexp(1.0, -149);
  if (out == DType::kF32) return {min_sub, f32_ulp};
  // f16 results below 2^-14 are subnormal with a fixed step of 2^-24: one step absolute.
  double subnormal_step = out == DType::kF16 ? 1.0 / 16777216 : 0.0;
  return {min_sub + subnormal_step, f32_ulp + 2 * testing::half_ulp(out)};
}

// Layouts of a tensor under test, all inside guard bands.
enum class Layout {
  kDense,
  kPadded,      // a column slice of a wider tensor: row stride > size(-1)
  kTransposed,  // 2-D only: the transpose of a dense [W, R] buffer (last-dim stride R)
};

GuardedTensor make_guarded(const Shape& shape, DType dt, Layout layout) {
  if (layout == Layout::kTransposed && shape.ndim() == 2) {
    GuardedTensor g = guarded({shape[1], shape[0]}, dt);
    g.t = g.t.transpose(0, 1);
    return g;
  }
  return guarded(shape, dt, layout == Layout::kPadded ? 5 : 0);
}

// ---------------------------------------------------------------------------------- add

struct AddCase {
  Shape a, b;
};

// Same-shape rows x widths (1, 7, 129, 4250 x 1, 17, 256, 1536), then the broadcasts the
// models use: bias [D] / [1, D] against rows, pos_embed [1, L, D] against [B, L, D], a
// per-channel [C, 1, 1] against [N, C, H, W], per-row scalars [R, 1] and [1, L, 1], a
// middle broadcast [B, 1, D], a single scalar, and widths beyond one 2048-element run.
std::vector<AddCase> add_cases() {
  std::vector<AddCase> cases;
  for (int64_t r : {1, 7, 129, 4250})
    for (int64_t w : {1, 17, 256, 1536}) cases.push_back({{r, w}, {r, w}});
  const AddCase more[] = {
      {{7, 17}, {17}},
      {{129, 256}, {1, 256}},
      {{4250, 256}, {256}},
      {{1, 1}, {1}},
      {{2, 7, 17}, {1, 7, 17}},
      {{2, 129, 1536}, {1, 129, 1536}},
      {{3, 4250, 17}, {4250, 17}},
      {{2, 3, 7, 17}, {3, 1, 1}},
      {{1, 16, 33, 31}, {16, 1, 1}},
      {{2, 4, 1, 1}, {4, 1, 1}},
      {{2, 5, 64, 64}, {1, 5, 1, 1}},
      {{129, 17}, {129, 1}},
      {{2, 33, 40}, {1, 33, 1}},
      {{3, 9, 40}, {3, 1, 40}},
      {{7, 17}, {1}},
      {{3, 4099}, {4099}},
      {{2, 5000}, {2, 5000}},
  };
  cases.insert(cases.end(), std::begin(more), std::end(more));
  return cases;
}

struct AddTypes {
  DType a, b, y;
};
const AddTypes kAddTypes[] = {
    {DType::kF32, DType::kF32, DType::kF32},  {DType::kBF16, DType::kBF16, DType::kBF16},
    {DType::kF16, DType::kF16, DType::kF16},  {DType::kBF16, DType::kF32, DType::kBF16},
    {DType::kF32, DType::kBF16, DType::kF32}, {DType::kF16, DType::kBF16, DType::kF32},
    {DType::kF32, DType::kF16, DType::kBF16}, {DType::kBF16, DType::kF16, DType::kF16},
};

// Layout variants of add: which operand is not dense, or y aliasing a.
enum AddVariant {
  kAddDense,
  kAddPaddedA,
  kAddPaddedB,
  kAddPaddedY,
  kAddTransA,
  kAddTransY,
  kAddAlias
};

TEST(CpuArith, AddMatchesReference) {
  uint32_t seed = 1;
  const std::vector<AddCase> cases = add_cases();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const AddCase& c = cases[ci];
    // The reference and the guard checks are slow, and the dtype and layout paths are the
    // same code as in the small cases: the multi-million-element case runs f32 and one mixed
    // combination, dense and in place only; cases above 200K elements three combinations.
    const bool big = c.a.numel() > 1'000'000, medium = c.a.numel() > 200'000;
    for (size_t ti = 0; ti < std::size(kAddTypes); ++ti) {
      if (medium && ti != 0 && ti != 5 && (big || ti != 1)) continue;
      const AddTypes& d = kAddTypes[ti];
      for (int variant = kAddDense; variant <= kAddAlias; ++variant) {
        if (variant == kAddAlias && d.a != d.y) continue;
        if ((variant == kAddTransA || variant == kAddTransY) && c.a.ndim() != 2) continue;
        if (big && variant != kAddDense && variant != kAddAlias) continue;
        SCOPED_TRACE("a=" + c.a.to_string() + " b=" + c.b.to_string() +
                     " types=" + testing::dtype_str(d.a) + "," + testing::dtype_str(d.b) + "," +
                     testing::dtype_str(d.y) + " variant=" + std::to_string(variant));
        GuardedTensor a = make_guarded(c.a, d.a,
                                       variant == kAddPaddedA  ? Layout::kPadded
                                       : variant == kAddTransA ? Layout::kTransposed
                                                               : Layout::kDense);
        GuardedTensor b =
            make_guarded(c.b, d.b, variant == kAddPaddedB ? Layout::kPadded : Layout::kDense);
        testing::fill_uniform(a.t, seed++, -2.0f, 2.0f);
        testing::fill_uniform(b.t, seed++, -2.0f, 2.0f);
        Tensor expect = zeros(c.a, d.y);
        Status st = reference_backend().add(a.t, b.t, expect);
        ASSERT_TRUE(st.ok()) << st.to_string();
        const std::vector<float> a_values = testing::to_vector(a.t);
        for_each_isa([&] {
          if (variant == kAddAlias) {
            testing::fill_values(a.t, a_values);  // restore the input overwritten in place
            Status s = cpu_backend().add(a.t, b.t, a.t);
            ASSERT_TRUE(s.ok()) << s.to_string();
            EXPECT_TRUE(all_close(a.t, expect, 0, 0));
            EXPECT_TRUE(a.guards_ok());
            EXPECT_TRUE(b.guards_ok());
            return;
          }
          GuardedTensor y = make_guarded(c.a, d.y,
                                         variant == kAddPaddedY  ? Layout::kPadded
                                         : variant == kAddTransY ? Layout::kTransposed
                                                                 : Layout::kDense);
          Status s = cpu_backend().add(a.t, b.t, y.t);
          ASSERT_TRUE(s.ok()) << s.to_string();
          EXPECT_TRUE(all_close(y.t, expect, 0, 0));
          EXPECT_TRUE(y.guards_ok());
          EXPECT_TRUE(a.guards_ok());  // inputs are never written
          EXPECT_TRUE(b.guards_ok());
        });
      }
    }
  }
}

// mul shares add's broadcasting and staging code; its own parts are the row kernels and the
// scalar-broadcast path (fma(a, s, 0)). Tolerance 0: the product of two f32 values is exact
// in double (48 significant bits), so the reference's fl32(fl64(a·b)) equals fl32(a·b), and
// the bf16 rounding of equal f32 values is equal.
TEST(CpuArith, MulMatchesReference) {
  uint32_t seed = 900;
  for (const AddCase& c : add_cases()) {
    if (c.a.numel() > 200'000) continue;
    for (DType t : {DType::kF32, DType::kBF16}) {
      for (bool padded_b : {false, true}) {
        SCOPED_TRACE("a=" + c.a.to_string() + " b=" + c.b.to_string() + " " +
                     testing::dtype_str(t) + (padded_b ? " padded b" : ""));
        GuardedTensor a = make_guarded(c.a, t, Layout::kDense);
        GuardedTensor b =
            make_guarded(c.b, DType::kF32, padded_b ? Layout::kPadded : Layout::kDense);
        testing::fill_uniform(a.t, seed++, -2.0f, 2.0f);
        testing::fill_uniform(b.t, seed++, -2.0f, 2.0f);
        Tensor expect = zeros(c.a, t);
        ASSERT_TRUE(reference_backend().mul(a.t, b.t, expect).ok());
        for_each_isa([&] {
          GuardedTensor y = make_guarded(c.a, t, Layout::kPadded);
          Status st = cpu_backend().mul(a.t, b.t, y.t);
          ASSERT_TRUE(st.ok()) << st.to_string();
          EXPECT_TRUE(all_close(y.t, expect, 0, 0));
          EXPECT_TRUE(y.guards_ok());
        });
      }
    }
  }
}

TEST(CpuArith, MulHandValuesAndRejects) {
  for (Backend* be : {&cpu_backend(), &reference_backend()}) {
    Tensor a = make({2, 3}, {1, 2, 3, -4, 5, 0.5f}), y = zeros({2, 3});
    ASSERT_TRUE(be->mul(a, make({3}, {2, -1, 4}), y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {2, -2, 12, -8, -5, 2}, 0, 0)) << be->name();
    ASSERT_TRUE(be->mul(a, make({2, 1}, {3, -2}), y).ok());  // per-row scalar
    EXPECT_TRUE(all_close(testing::to_vector(y), {3, 6, 9, 8, -10, -1}, 0, 0)) << be->name();
    ASSERT_TRUE(be->mul(a, a, a).ok());  // in place, a·a
    EXPECT_TRUE(all_close(testing::to_vector(a), {1, 4, 9, 16, 25, 0.25f}, 0, 0)) << be->name();
    Status bad = be->mul(a, zeros({2}), y);
    EXPECT_FALSE(bad.ok());
    EXPECT_NE(bad.message().find("mul"), std::string::npos) << bad.message();
  }
}

TEST(CpuArith, AddStridedBroadcastOperand) {
  // b as a strided, non-dense view (every other element of a wider buffer, then a
  // transposed [C, 1, 1]-like column), against a permuted a: the general gather path.
  Tensor wide = zeros({2, 34});
  testing::fill_uniform(wide, 7, -1, 1);
  Tensor b = Tensor::strided_view_of(wide.data(), DType::kF32, {17}, {2});
  Tensor a3 = zeros({5, 17, 3});  // a = permute -> [3, 5, 17] with strides (1, 51, 3)
  testing::fill_uniform(a3, 8, -1, 1);
  Tensor a = a3.transpose(0, 2).transpose(1, 2);
  ASSERT_EQ(a.shape(), Shape({3, 5, 17}));
  Tensor expect = zeros(a.shape());
  ASSERT_TRUE(reference_backend().add(a, b, expect).ok());
  Tensor col = zeros({4, 5}).transpose(0, 1).slice(1, 1, 2);  // [5, 1], strides (1, 5)
  testing::fill_uniform(col, 9, -1, 1);
  Tensor expect_col = zeros(a.shape());
  ASSERT_TRUE(reference_backend().add(a, col, expect_col).ok());
  for_each_isa([&] {
    Tensor y = zeros(a.shape());
    ASSERT_TRUE(cpu_backend().add(a, b, y).ok());
    EXPECT_TRUE(all_close(y, expect, 0, 0));
    ASSERT_TRUE(cpu_backend().add(a, col, y).ok());
    EXPECT_TRUE(all_close(y, expect_col, 0, 0));
  });
}

// ---------------------------------------------------------------------------- gated_add

struct GatedTypes {
  DType x, gate, h, out;
};
const GatedTypes kGatedTypes[] = {
    {DType::kF32, DType::kF32, DType::kF32, DType::kF32},
    {DType::kBF16, DType::kBF16, DType::kBF16, DType::kBF16},
    {DType::kF16, DType::kF16, DType::kF16, DType::kF16},
    {DType::kF32, DType::kBF16, DType::kBF16, DType::kF32},
    {DType::kBF16, DType::kF32, DType::kF16, DType::kBF16},
    {DType::kF32, DType::kF16, DType::kF32, DType::kBF16},
};

enum GatedVariant { kGatedDense, kGatedPaddedX, kGatedPaddedH, kGatedPaddedOut, kGatedAlias };

TEST(CpuArith, GatedAddMatchesReference) {
  struct Case {
    int64_t b, l, d;
  };
  // Widths 1, 17, 256, 1536 and 4099 (more than one 2048-column block); rows 1, 7, 129,
  // 4250 spread over the batch.
  const Case cases[] = {{1, 1, 1},     {2, 7, 17},   {1, 129, 256}, {2, 33, 1536},
                        {1, 4250, 17}, {2, 3, 4099}, {3, 5, 1},     {1, 4250, 256}};
  uint32_t seed = 500;
  for (const Case& c : cases) {
    for (const GatedTypes& d : kGatedTypes) {
      for (int variant = kGatedDense; variant <= kGatedAlias; ++variant) {
        if (variant == kGatedAlias && d.x != d.out) continue;
        SCOPED_TRACE("B=" + std::to_string(c.b) + " L=" + std::to_string(c.l) +
                     " D=" + std::to_string(c.d) + " types=" + testing::dtype_str(d.x) + "," +
                     testing::dtype_str(d.gate) + "," + testing::dtype_str(d.h) + "," +
                     testing::dtype_str(d.out) + " variant=" + std::to_string(variant));
        // gate is chunk 2 of a [B, 6·D] adaLN output: row stride 6·D.
        GuardedTensor ada = guarded({c.b, 6 * c.d}, d.gate);
        testing::fill_uniform(ada.t, seed++, -2.0f, 2.0f);
        Tensor gate = ada.t.slice(1, 2 * c.d, 3 * c.d);
        const Shape shape{c.b, c.l, c.d};
        GuardedTensor x = guarded(shape, d.x, variant == kGatedPaddedX ? 5 : 0);
        GuardedTensor h = guarded(shape, d.h, variant == kGatedPaddedH ? 3 : 0);
        testing::fill_uniform(x.t, seed++, -3.0f, 3.0f);
        testing::fill_uniform(h.t, seed++, -3.0f, 3.0f);
        Tensor expect = zeros(shape, d.out);
        Status st = reference_backend().gated_add(x.t, gate, h.t, expect);
        ASSERT_TRUE(st.ok()) << st.to_string();
        const std::vector<float> xv = testing::to_vector(x.t);
        const Tol tol = one_rounding(d.out);
        for_each_isa([&] {
          if (variant == kGatedAlias) {
            testing::fill_values(x.t, xv);
            Status s = cpu_backend().gated_add(x.t, gate, h.t, x.t);
            ASSERT_TRUE(s.ok()) << s.to_string();
            EXPECT_TRUE(all_close(x.t, expect, tol.atol, tol.rtol));
            EXPECT_TRUE(x.guards_ok());
            EXPECT_TRUE(h.guards_ok());
            return;
          }
          GuardedTensor out = guarded(shape, d.out, variant == kGatedPaddedOut ? 7 : 0);
          Status s = cpu_backend().gated_add(x.t, gate, h.t, out.t);
          ASSERT_TRUE(s.ok()) << s.to_string();
          EXPECT_TRUE(all_close(out.t, expect, tol.atol, tol.rtol));
          EXPECT_TRUE(out.guards_ok());
          EXPECT_TRUE(x.guards_ok());
          EXPECT_TRUE(h.guards_ok());
          EXPECT_TRUE(ada.guards_ok());
        });
      }
    }
  }
}

// ------------------------------------------------------------------------------- affine

TEST(CpuArith, AffineMatchesReference) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  // The SD3 latent scaling, the [-1, 1] -> [0, 1] pixel conversion with its clamp, a
  // logvar-style clamp, a one-sided bound and a degenerate lo == hi.
  const AffineParams params[] = {{1.5305f, 0.0609f * 1.5305f, -kInf, kInf},
                                 {0.5f, 0.5f, 0.0f, 1.0f},
                                 {1.0f, 0.0f, -1.5f, 1.0f},
                                 {-2.0f, 0.25f, -kInf, 0.5f},
                                 {3.0f, -1.0f, 0.25f, 0.25f}};
  const Shape shapes[] = {{1, 1},      {7, 17},       {129, 256}, {4250, 17},
                          {129, 1536}, {2, 4, 9, 31}, {3, 4099}};
  const DType types[][2] = {{DType::kF32, DType::kF32},
                            {DType::kBF16, DType::kBF16},
                            {DType::kF16, DType::kF16},
                            {DType::kBF16, DType::kF32},
                            {DType::kF32, DType::kF16}};
  uint32_t seed = 900;
  for (const Shape& shape : shapes) {
    for (size_t pi = 0; pi < std::size(params); ++pi) {
      const AffineParams& p = params[pi];
      for (const auto& dt : types) {
        // variants: 0 dense, 1 padded x, 2 padded y, 3 transposed x, 4 y aliases x
        for (int variant = 0; variant < 5; ++variant) {
          if (variant == 4 && dt[0] != dt[1]) continue;
          if (variant == 3 && shape.ndim() != 2) continue;
          SCOPED_TRACE("shape=" + shape.to_string() + " params=" + std::to_string(pi) +
                       " x=" + testing::dtype_str(dt[0]) + " y=" + testing::dtype_str(dt[1]) +
                       " variant=" + std::to_string(variant));
          GuardedTensor x = make_guarded(shape, dt[0],
                                         variant == 1   ? Layout::kPadded
                                         : variant == 3 ? Layout::kTransposed
                                                        : Layout::kDense);
          testing::fill_uniform(x.t, seed++, -3.0f, 3.0f);
          Tensor expect = zeros(shape, dt[1]);
          Status st = reference_backend().affine(x.t, p, expect);
          ASSERT_TRUE(st.ok()) << st.to_string();
          const std::vector<float> xv = testing::to_vector(x.t);
          const Tol tol = one_rounding(dt[1]);
          for_each_isa([&] {
            if (variant == 4) {
              testing::fill_values(x.t, xv);
              Status s = cpu_backend().affine(x.t, p, x.t);
              ASSERT_TRUE(s.ok()) << s.to_string();
              EXPECT_TRUE(all_close(x.t, expect, tol.atol, tol.rtol));
              EXPECT_TRUE(x.guards_ok());
              return;
            }
            GuardedTensor y =
                make_guarded(shape, dt[1], variant == 2 ? Layout::kPadded : Layout::kDense);
            Status s = cpu_backend().affine(x.t, p, y.t);
            ASSERT_TRUE(s.ok()) << s.to_string();
            EXPECT_TRUE(all_close(y.t, expect, tol.atol, tol.rtol));
            EXPECT_TRUE(y.guards_ok());
            EXPECT_TRUE(x.guards_ok());
          });
        }
      }
    }
  }
}

// ------------------------------------------------------------------ hand-computed values

void check_hand_values(Backend& ops) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  {
    Tensor a = make({2, 3}, {1, 2, 3, 4, 5, 6}), y = zeros({2, 3});
    ASSERT_TRUE(ops.add(a, make({3}, {10, 20, 30}, DType::kBF16), y).ok());  // bias row
    EXPECT_TRUE(all_close(testing::to_vector(y), {11, 22, 33, 14, 25, 36}, 0, 0));
    ASSERT_TRUE(ops.add(a, make({2, 1}, {100, 200}), y).ok());  // per-row scalar
    EXPECT_TRUE(all_close(testing::to_vector(y), {101, 102, 103, 204, 205, 206}, 0, 0));
    ASSERT_TRUE(ops.add(a, make({1}, {-1}, DType::kF16), y).ok());  // one scalar
    EXPECT_TRUE(all_close(testing::to_vector(y), {0, 1, 2, 3, 4, 5}, 0, 0));
    ASSERT_TRUE(ops.add(a, make({2, 3}, {1, 1, 1, 2, 2, 2}), a).ok());  // in place
    EXPECT_TRUE(all_close(testing::to_vector(a), {2, 3, 4, 6, 7, 8}, 0, 0));
  }
  {
    // Per-channel bias [C, 1, 1] against [N, C, H, W] = [2, 2, 1, 2].
    Tensor a = make({2, 2, 1, 2}, {1, 2, 3, 4, 5, 6, 7, 8}), y = zeros({2, 2, 1, 2});
    ASSERT_TRUE(ops.add(a, make({2, 1, 1}, {0.5f, -1}), y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {1.5f, 2.5f, 2, 3, 5.5f, 6.5f, 6, 7}, 0, 0));
    // pos_embed style [1, L, D] against [B, L, D] = [2, 2, 2].
    Tensor x = make({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8}), p = make({1, 2, 2}, {10, 20, 30, 40});
    Tensor yx = zeros({2, 2, 2});
    ASSERT_TRUE(ops.add(x, p, yx).ok());
    EXPECT_TRUE(all_close(testing::to_vector(yx), {11, 22, 33, 44, 15, 26, 37, 48}, 0, 0));
  }
  {
    // Specials and the single rounding: bf16 1 + 2^-9 rounds to 1 (below half an ulp),
    // 1 + 3·2^-9 to 1 + 2^-7.
    Tensor a = make({5}, {kInf, kInf, kNaN, 1, 1}, DType::kBF16), y = zeros({5}, DType::kBF16);
    Tensor b = make({5}, {1, -kInf, 1, 1.0f / 512, 3.0f / 512});
    ASSERT_TRUE(ops.add(a, b, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {kInf, kNaN, kNaN, 1, 1.0078125f}, 0, 0));
  }
  {
    Tensor x = make({1, 2, 2}, {1, 2, 3, 4}), h = make({1, 2, 2}, {2, 1, 4, -1});
    Tensor gate = make({1, 2}, {0.5f, -2}), out = zeros({1, 2, 2});
    ASSERT_TRUE(ops.gated_add(x, gate, h, out).ok());
    EXPECT_TRUE(all_close(testing::to_vector(out), {2, 0, 5, 6}, 0, 0));
    // The gate row follows the batch index: x [2, 1, 2], gate [2, 2], in place.
    Tensor x2 = make({2, 1, 2}, {1, 2, 3, 4}), g2 = make({2, 2}, {1, 2, 3, 4});
    ASSERT_TRUE(ops.gated_add(x2, g2, make({2, 1, 2}, {1, 1, 1, 1}), x2).ok());
    EXPECT_TRUE(all_close(testing::to_vector(x2), {2, 4, 6, 8}, 0, 0));
    // One rounding: g = h = 1 + 2^-12, x = -(1 + 2^-11). g·h = 1 + 2^-11 + 2^-24 exactly,
    // so x + g·h = 2^-24; rounding the product to f32 first (a tie, to even) would give 0.
    const float g1 = 1.0f + 1.0f / 4096;
    Tensor x3 = make({1, 1, 1}, {-(1.0f + 1.0f / 2048)}), o3 = zeros({1, 1, 1});
    ASSERT_TRUE(ops.gated_add(x3, make({1, 1}, {g1}), make({1, 1, 1}, {g1}), o3).ok());
    EXPECT_TRUE(all_close(testing::to_vector(o3), {1.0f / 16777216}, 0, 0));
  }
  {
    Tensor x = make({8}, {-2, -0.5f, 0, 0.5f, 2, kInf, -kInf, kNaN}), y = zeros({8});
    ASSERT_TRUE(ops.affine(x, {0.5f, 0.5f, 0.0f, 1.0f}, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {0, 0.25f, 0.5f, 0.75f, 1, 1, 0, kNaN}, 0, 0));
    ASSERT_TRUE(ops.affine(x, {2.0f, -1.0f}, y).ok());  // default bounds: no clamp
    EXPECT_TRUE(all_close(testing::to_vector(y), {-5, -2, -1, 0, 3, kInf, -kInf, kNaN}, 0, 0));
    Tensor xb = make({2, 2}, {1, 2, 3, 4}, DType::kBF16);
    ASSERT_TRUE(ops.affine(xb, {-1.0f, 0.0f, -3.5f, kInf}, xb).ok());  // in place, lower clamp
    EXPECT_TRUE(all_close(testing::to_vector(xb), {-1, -2, -3, -3.5f}, 0, 0));
  }
}

TEST(ArithHandValues, Reference) { check_hand_values(reference_backend()); }

TEST(ArithHandValues, Cpu) {
  for_each_isa([&] { check_hand_values(cpu_backend()); });
}

// ---------------------------------------------------------------------------- rejections

void check_rejects(Backend& ops) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  auto bad = [](const Status& st) { return !st.ok(); };
  Tensor a = zeros({2, 3, 4}), y = zeros({2, 3, 4});

  EXPECT_TRUE(bad(ops.add(a, zeros({3}), y)));                    // 3 vs trailing 4
  EXPECT_TRUE(bad(ops.add(a, zeros({3, 1, 1}), y)));              // 3 vs leading 2
  EXPECT_TRUE(bad(ops.add(a, zeros({1, 2, 3, 4}), y)));           // b has more dims than a
  EXPECT_TRUE(bad(ops.add(a, zeros({4}), zeros({2, 3, 5}))));     // y shape
  EXPECT_TRUE(bad(ops.add(a, zeros({4}, DType::kF8E4M3FN), y)));  // b dtype
  EXPECT_TRUE(bad(ops.add(zeros({2, 3, 4}, DType::kI32), zeros({4}), y)));
  EXPECT_TRUE(bad(ops.add(a, zeros({4}), zeros({2, 3, 4}, DType::kF64))));
  EXPECT_TRUE(bad(ops.add(a, Tensor::view_of(a.data(), DType::kF32, {4}, Device::kCUDA), y)));
  EXPECT_TRUE(ops.add(a, zeros({3, 1}, DType::kBF16), y).ok());  // the control case passes

  Tensor x = zeros({2, 3, 4}), h = zeros({2, 3, 4}), out = zeros({2, 3, 4});
  Tensor gate = zeros({2, 4});
  EXPECT_TRUE(bad(ops.gated_add(x, zeros({2, 5}), h, out)));                  // gate width
  EXPECT_TRUE(bad(ops.gated_add(x, zeros({1, 4}), h, out)));                  // gate batch
  EXPECT_TRUE(bad(ops.gated_add(x, zeros({2, 3, 4}), h, out)));               // gate rank
  EXPECT_TRUE(bad(ops.gated_add(x, zeros({4, 2}).transpose(0, 1), h, out)));  // strided cols
  EXPECT_TRUE(bad(ops.gated_add(x, gate, zeros({2, 3, 5}), out)));            // h shape
  EXPECT_TRUE(bad(ops.gated_add(x, gate, h, zeros({2, 4, 4}))));              // out shape
  EXPECT_TRUE(bad(ops.gated_add(zeros({6, 4}), gate, zeros({6, 4}), zeros({6, 4}))));  // 2-D
  EXPECT_TRUE(bad(ops.gated_add(x, zeros({2, 4}, DType::kI8), h, out)));               // gate dtype
  EXPECT_TRUE(bad(ops.gated_add(x, gate, zeros({2, 3, 4}, DType::kF8E5M2), out)));
  EXPECT_TRUE(bad(ops.gated_add(x, gate, zeros({2, 4, 3}).transpose(1, 2), out)));  // h rows
  EXPECT_TRUE(ops.gated_add(x, zeros({2, 12}).slice(1, 4, 8), h, x).ok());

  Tensor ax = zeros({3, 5}), ay = zeros({3, 5});
  EXPECT_TRUE(bad(ops.affine(ax, {1.0f, 0.0f, kNaN, 1.0f}, ay)));  // NaN lo
  EXPECT_TRUE(bad(ops.affine(ax, {1.0f, 0.0f, 0.0f, kNaN}, ay)));  // NaN hi
  EXPECT_TRUE(bad(ops.affine(ax, {1.0f, 0.0f, 1.0f, 0.0f}, ay)));  // lo > hi
  EXPECT_TRUE(bad(ops.affine(ax, {kInf, 0.0f}, ay)));              // scale
  EXPECT_TRUE(bad(ops.affine(ax, {1.0f, kNaN}, ay)));              // shift
  EXPECT_TRUE(bad(ops.affine(ax, {}, zeros({5, 3}))));             // shape
  EXPECT_TRUE(bad(ops.affine(zeros({3, 5}, DType::kF8E4M3FN), {}, ay)));
  EXPECT_TRUE(ops.affine(ax, {2.0f, 1.0f, -kInf, kInf}, ay).ok());
  EXPECT_TRUE(ops.affine(ax, {2.0f, 1.0f, 0.5f, 0.5f}, zeros({5, 3}).transpose(0, 1)).ok());
}

TEST(ArithValidation, ReferenceRejectsBadInputs) { check_rejects(reference_backend()); }
TEST(ArithValidation, CpuRejectsBadInputs) { check_rejects(cpu_backend()); }

TEST(ArithValidation, EmptyTensorsAreNoOps) {
  for (Backend* ops : {&reference_backend(), &cpu_backend()}) {
    SCOPED_TRACE(std::string(ops->name()));
    EXPECT_TRUE(ops->add(zeros({0, 5}), zeros({5}), zeros({0, 5})).ok());
    EXPECT_TRUE(ops->add(zeros({3, 0}), zeros({1, 0}), zeros({3, 0})).ok());
    EXPECT_TRUE(
        ops->gated_add(zeros({1, 0, 4}), zeros({1, 4}), zeros({1, 0, 4}), zeros({1, 0, 4})).ok());
    EXPECT_TRUE(ops->affine(zeros({0}), {2.0f, 1.0f, 0.0f, 1.0f}, zeros({0})).ok());
  }
}

}  // namespace
}  // namespace sd35
