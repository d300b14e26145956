// layer_norm_modulate, the MMDiT's fused adaLN pre-norm y = LN(x)·(1 + scale) + shift:
// the CPU backend against the reference (f64) on random data under every ISA level, the CPU
// fused op against its own two-op path (layer_norm into f32, then modulate) bit for bit, and
// the argument checks shared by every backend.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"

namespace sd35 {
namespace {

using testing::all_close;
using testing::all_equal;
using testing::for_each_isa;
using testing::guarded;
using testing::GuardedTensor;

using testing::cpu_backend;
using testing::reference_backend;

Tensor zeros(const Shape& s, DType t = DType::kF32) { return *Tensor::zeros(s, t); }

struct Case {
  int64_t b, l, d;
};
// Odd widths (masked vector tails, below one vector), B > 1, the MMDiT width, and enough
// rows at small D for several parallel chunks per batch.
const Case kCases[] = {{1, 1, 1}, {2, 5, 7}, {3, 9, 33}, {2, 33, 1536}, {2, 700, 24}};
const DType kOut[] = {DType::kF32, DType::kBF16, DType::kF16};

// Layouts: 0 dense; 1 x rows padded (row stride D + 5); 2 y rows padded (D + 3); 3 y is x
// (in place, f32 only); 4 x is a slice of a longer sequence ([B, L + 4, D] rows 3..L+3, so
// its batch stride is not L times its row stride, like the model's per-stream views).
constexpr int kLayouts = 5;

struct Operands {
  Tensor ada;  // [B, 6·D] f32: shift is chunk 1, scale chunk 4 (row stride 6·D)
  Tensor shift, scale;
  GuardedTensor x_buf;  // owns x
  Tensor x;
};

Operands make_operands(const Case& c, int layout, uint32_t seed) {
  Operands o;
  o.ada = zeros({c.b, 6 * c.d});
  testing::fill_uniform(o.ada, seed, -1.0f, 1.0f);
  o.shift = o.ada.slice(1, c.d, 2 * c.d);
  o.scale = o.ada.slice(1, 4 * c.d, 5 * c.d);
  if (layout == 4) {
    o.x_buf = guarded({c.b, c.l + 4, c.d}, DType::kF32);
    o.x = o.x_buf.t.slice(1, 3, c.l + 3);
  } else {
    o.x_buf = guarded({c.b, c.l, c.d}, DType::kF32, layout == 1 ? 5 : 0);
    o.x = o.x_buf.t;
  }
  // Centred on 3 with std ~0.6 (as the layer_norm test): a one-pass E[x²] - E[x]² would
  // lose ~5 digits here.
  testing::fill_uniform(o.x, seed + 1, 2.0f, 4.0f);
  return o;
}

std::string label(const Case& c, DType yt, int layout) {
  return "B=" + std::to_string(c.b) + " L=" + std::to_string(c.l) + " D=" + std::to_string(c.d) +
         " y=" + testing::dtype_str(yt) + " layout=" + std::to_string(layout);
}

TEST(LayerNormModulate, CpuMatchesReference) {
  // f32 tolerance: LN(x) carries the layer_norm test's error (atol 1e-5 / rtol 1e-5 for
  // |LN| <~ 4, from f32 sums of the mean and variance), times |1 + scale| <= 2, plus one f32
  // rounding of the fma: atol 2e-5, rtol 2e-5. bf16/f16 outputs: the reference and the CPU
  // may round to neighbouring values, so one ulp of the output (2u relative) is added and the
  // atol doubled, as in test_ops.cpp; f16 also one subnormal step.
  uint32_t seed = 700;
  for (const Case& c : kCases) {
    for (DType yt : kOut) {
      for (int layout = 0; layout < kLayouts; ++layout) {
        if (layout == 3 && yt != DType::kF32) continue;  // in place needs y's dtype == x's
        SCOPED_TRACE(label(c, yt, layout));
        Operands o = make_operands(c, layout, seed);
        seed += 2;
        const double atol = yt == DType::kF32   ? 2e-5
                            : yt == DType::kF16 ? 4e-5 + 1.0 / 16777216
                                                : 4e-5;
        const double rtol = yt == DType::kF32 ? 2e-5 : 2e-5 + 2 * testing::half_ulp(yt);
        Tensor expect = zeros(o.x.shape(), yt);
        Status rs = reference_backend().layer_norm_modulate(o.x, o.shift, o.scale, 1e-6f, expect);
        ASSERT_TRUE(rs.ok()) << rs.to_string();
        const std::vector<float> xv = testing::to_vector(o.x);
        for_each_isa([&] {
          if (layout == 3) {
            testing::fill_values(o.x, xv);  // restore the input overwritten in place
            Status st = cpu_backend().layer_norm_modulate(o.x, o.shift, o.scale, 1e-6f, o.x);
            ASSERT_TRUE(st.ok()) << st.to_string();
            EXPECT_TRUE(all_close(o.x, expect, atol, rtol));
            EXPECT_TRUE(o.x_buf.guards_ok());
            return;
          }
          GuardedTensor y = guarded(o.x.shape(), yt, layout == 2 ? 3 : 0);
          Status st = cpu_backend().layer_norm_modulate(o.x, o.shift, o.scale, 1e-6f, y.t);
          ASSERT_TRUE(st.ok()) << st.to_string();
          EXPECT_TRUE(all_close(y.t, expect, atol, rtol));
          EXPECT_TRUE(y.guards_ok());
          EXPECT_TRUE(o.x_buf.guards_ok());  // the input is never written
        });
      }
    }
  }
}

TEST(LayerNormModulate, ReferenceInPlaceEqualsOutOfPlace) {
  // The reference reads the row into f64 before storing: in place gives the same bits.
  const Case c{2, 9, 33};
  Operands o = make_operands(c, 0, 900);
  Tensor expect = zeros(o.x.shape());
  ASSERT_TRUE(reference_backend().layer_norm_modulate(o.x, o.shift, o.scale, 1e-6f, expect).ok());
  ASSERT_TRUE(reference_backend().layer_norm_modulate(o.x, o.shift, o.scale, 1e-6f, o.x).ok());
  EXPECT_TRUE(all_equal(o.x, expect));
}

TEST(LayerNormModulate, CpuEqualsTwoOpPath) {
  // Tolerance 0 (bit for bit): the fused CPU op uses the same row kernels for the mean and
  // the variance (same partial-sum order), the same rstd expression, rounds (x - mean)·rstd
  // to f32 exactly where layer_norm stores its f32 output, and applies modulate's single fma
  // with the same f32 1 + scale; the store to bf16/f16 then rounds the same f32 value. This
  // is what lets the MMDiT switch to the fused op without moving its outputs at all on CPU.
  uint32_t seed = 1000;
  for (const Case& c : kCases) {
    for (DType yt : kOut) {
      for (int layout : {0, 1, 4}) {
        SCOPED_TRACE(label(c, yt, layout));
        Operands o = make_operands(c, layout, seed);
        seed += 2;
        for_each_isa([&] {
          Tensor norm = zeros(o.x.shape()), two_op = zeros(o.x.shape(), yt),
                 fused = zeros(o.x.shape(), yt);
          ASSERT_TRUE(cpu_backend().layer_norm(o.x, nullptr, nullptr, 1e-6f, norm).ok());
          ASSERT_TRUE(cpu_backend().modulate(norm, o.shift, o.scale, two_op).ok());
          ASSERT_TRUE(cpu_backend().layer_norm_modulate(o.x, o.shift, o.scale, 1e-6f, fused).ok());
          EXPECT_TRUE(all_equal(fused, two_op));
        });
      }
    }
  }
}

TEST(LayerNormModulate, HandValues) {
  // Row [1, 2, 3, 4]: mean 2.5, biased variance 1.25, LN = [-3, -1, 1, 3]/sqrt(5) (eps 0);
  // scale 1 doubles it, shift adds 0.5 (batch 0) or -1 with scale -1 (batch 1: zeroes LN).
  std::vector<float> xv = {1, 2, 3, 4, 1, 2, 3, 4};
  std::vector<float> pv = {0.5f, 0.5f, 0.5f, 0.5f, -1, -1, -1, -1};  // shift
  std::vector<float> sv = {1, 1, 1, 1, -1, -1, -1, -1};              // scale
  Tensor x = zeros({2, 1, 4}), shift = zeros({2, 4}), scale = zeros({2, 4});
  testing::fill_values(x, xv);
  testing::fill_values(shift, pv);
  testing::fill_values(scale, sv);
  const double r = 1.0 / std::sqrt(5.0);
  std::vector<float> want(8, -1.0f);  // batch 1: LN·0 - 1
  for (int i = 0; i < 4; ++i) want[size_t(i)] = float(0.5 + 2 * (2 * i - 3) * r);
  for (Backend* be : {&reference_backend(), &cpu_backend()}) {
    SCOPED_TRACE(std::string(be->name()));
    for_each_isa([&] {
      Tensor y = zeros({2, 1, 4});
      ASSERT_TRUE(be->layer_norm_modulate(x, shift, scale, 0.0f, y).ok());
      EXPECT_TRUE(all_close(testing::to_vector(y), want, 1e-6, 1e-6));
    });
  }
}

TEST(LayerNormModulate, EmptyIsANoOp) {
  for (Backend* be : {&reference_backend(), &cpu_backend()}) {
    SCOPED_TRACE(std::string(be->name()));
    Tensor x = zeros({2, 0, 8}), y = zeros({2, 0, 8}, DType::kBF16), p = zeros({2, 8});
    EXPECT_TRUE(be->layer_norm_modulate(x, p, p, 1e-6f, y).ok());
  }
}

// Every bad input returns an error Status (never a crash), with the same message from every
// backend (the checks are shared in ops_validate).
TEST(LayerNormModulate, RejectsBadArguments) {
  Tensor x = zeros({2, 3, 6}), y = zeros({2, 3, 6}, DType::kBF16), p = zeros({2, 6});
  Tensor big = zeros({2, 3, 12});  // x's storage for overlap cases
  Tensor xo = big.slice(2, 0, 6);
  Tensor on_gpu = Tensor::view_of(x.data(), DType::kF32, x.shape(), Device::kCUDA);
  Tensor no_data = Tensor::strided_view_of(nullptr, DType::kF32, {2, 3, 6}, {18, 6, 1});
  Tensor xt = zeros({2, 6, 3}).transpose(1, 2);  // [2, 3, 6] with a strided last dim
  const Tensor x_bytes_as_bf16 =
      Tensor::view_of(x.data(), DType::kBF16, x.shape());  // same memory, other dtype
  // Row (b, l) of x_next is row (b, l + 1) of xo: overlapping, but not the same view.
  const Tensor x_next = Tensor::strided_view_of(static_cast<float*>(big.data()) + 12, DType::kF32,
                                                {2, 3, 6}, {36, 12, 1});
  const Tensor p_in_x = Tensor::strided_view_of(x.data(), DType::kF32, {2, 6}, {18, 1});

  struct Bad {
    const char* what;
    const char* why;  // a part of the expected message: rejected for the intended reason
    Tensor x, shift, scale, y;
    float eps;
  };
  const Bad cases[] = {
      {"x bf16", "x has dtype bf16", zeros({2, 3, 6}, DType::kBF16), p, p, y, 1e-6f},
      {"x not 3-D", "x must be [B, L, D]", zeros({6, 6}), p, p, zeros({6, 6}), 1e-6f},
      {"y shape", "shape mismatch", x, p, p, zeros({2, 3, 5}), 1e-6f},
      {"y dtype i8", "y has dtype", x, p, p, zeros({2, 3, 6}, DType::kI8), 1e-6f},
      {"y fp8", "y has dtype", x, p, p, zeros({2, 3, 6}, DType::kF8E4M3FN), 1e-6f},
      {"shift width", "shift must be [2, 6]", x, zeros({2, 5}), p, y, 1e-6f},
      {"scale batch", "scale must be [2, 6]", x, p, zeros({1, 6}), y, 1e-6f},
      {"shift 3-D", "shift must be [2, 6]", x, zeros({2, 1, 6}), p, y, 1e-6f},
      {"shift bf16", "shift has dtype bf16", x, zeros({2, 6}, DType::kBF16), p, y, 1e-6f},
      {"scale strided cols", "scale needs a dense last", x, p, zeros({6, 2}).transpose(0, 1), y, 1e-6f},
      {"x strided last dim", "x needs a dense last", xt, p, p, y, 1e-6f},
      {"y strided last dim", "y needs a dense last", x, p, p, zeros({2, 6, 3}).transpose(1, 2), 1e-6f},
      {"eps negative", "eps must be finite", x, p, p, y, -1.0f},
      {"eps NaN", "eps must be finite", x, p, p, y, NAN},
      {"eps inf", "eps must be finite", x, p, p, y, INFINITY},
      {"x on another device", "tensor on cuda", on_gpu, p, p, y, 1e-6f},
      {"x without data", "x f32[2, 3, 6] has no data", no_data, p, p, y, 1e-6f},
      {"y without data", "y f32[2, 3, 6] has no data", x, p, p, no_data, 1e-6f},
      {"y aliases x as bf16", "y overlaps x", x, p, p, x_bytes_as_bf16, 1e-6f},
      {"y overlaps x one row on", "y overlaps x", xo, p, p, x_next, 1e-6f},
      {"y overlaps shift", "y overlaps shift", x, p_in_x, p, x, 1e-6f},
      {"y overlaps scale", "y overlaps scale", x, p, p_in_x, x, 1e-6f},
  };
  for (const Bad& c : cases) {
    SCOPED_TRACE(c.what);
    Status rs = reference_backend().layer_norm_modulate(c.x, c.shift, c.scale, c.eps, c.y);
    Status cs = cpu_backend().layer_norm_modulate(c.x, c.shift, c.scale, c.eps, c.y);
    EXPECT_FALSE(rs.ok());
    EXPECT_FALSE(cs.ok());
    EXPECT_EQ(rs.to_string(), cs.to_string());
    EXPECT_EQ(rs.message().rfind("layer_norm_modulate: ", 0), 0u) << rs.to_string();
    EXPECT_NE(rs.message().find(c.why), std::string::npos) << rs.to_string();
  }
  // Control cases pass: y an f32 tensor of its own, y == x in place, and shift == scale
  // (inputs may alias each other).
  for (Backend* be : {&reference_backend(), &cpu_backend()}) {
    SCOPED_TRACE(std::string(be->name()));
    EXPECT_TRUE(be->layer_norm_modulate(x, p, p, 1e-6f, y).ok());
    EXPECT_TRUE(be->layer_norm_modulate(x, p, p, 1e-6f, zeros({2, 3, 6})).ok());
    EXPECT_TRUE(be->layer_norm_modulate(xo, p, p, 0.0f, xo).ok());
    EXPECT_TRUE(be->layer_norm_modulate(x, p, p, 1e-6f, x).ok());
  }
}

}  // namespace
}  // namespace sd35
