// Fast CPU layout ops (copy/cast, concat, upsample) against the reference. These move or
// round values without arithmetic, so every comparison is bit-exact: both backends convert
// with the same round-to-nearest-even rules (core/float_convert.h).
#include <gtest/gtest.h>

#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"

namespace sd35 {
namespace {

using testing::all_equal;
using testing::for_each_isa;
using testing::guarded;
using testing::GuardedTensor;

using testing::cpu_backend;
using testing::reference_backend;

const DType kFloatTypes[] = {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3FN};

// Copies x (any view) into a guarded y of dtype yt with padded rows and checks it against
// the reference under every ISA level.
void check_copy(const Tensor& x, DType yt) {
  auto expect = Tensor::zeros(x.shape(), yt);
  ASSERT_TRUE(reference_backend().copy(x, *expect).ok());
  for_each_isa([&] {
    GuardedTensor y = guarded(x.shape(), yt, 2);
    Status st = cpu_backend().copy(x, y.t);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(all_equal(y.t, *expect));
    EXPECT_TRUE(y.guards_ok());
  });
}

TEST(CpuOps, CopyAndCastMatchReference) {
  uint32_t seed = 1;
  const Shape shapes[] = {{1}, {7, 3}, {129, 17}, {3, 5, 7, 9}, {4250, 64}, {2, 1, 3, 1, 5}};
  for (const Shape& s : shapes) {
    for (DType xt : kFloatTypes) {
      for (DType yt : kFloatTypes) {
        SCOPED_TRACE("shape=" + s.to_string() + " x=" + testing::dtype_str(xt) +
                     " y=" + testing::dtype_str(yt));
        // Dense source, and a source with padded rows (a column slice).
        for (int64_t pad : {0, 3}) {
          GuardedTensor x = guarded(s, xt, pad);
          testing::fill_uniform(x.t, seed++, -300.0f, 300.0f);  // within fp8 e4m3 range (448)
          check_copy(x.t, yt);
        }
      }
    }
  }
}

TEST(CpuOps, CopyTransposedViews) {
  uint32_t seed = 50;
  for (DType xt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (DType yt : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE("x=" + testing::dtype_str(xt) + " y=" + testing::dtype_str(yt));
      // [N, C, HW] -> transposed source view [N, HW, C] (a VAE attention reshape).
      auto base = Tensor::zeros({2, 19, 37}, xt);
      testing::fill_uniform(*base, seed++);
      check_copy(base->transpose(1, 2), yt);
      // A 4-D permutation [N, C, H, W] -> [N, H, W, C] of the source.
      auto b4 = Tensor::zeros({2, 5, 6, 7}, xt);
      testing::fill_uniform(*b4, seed++);
      check_copy(b4->transpose(1, 3).transpose(1, 2), yt);
      // Transposed destination: y viewed as the transpose of a contiguous buffer.
      auto src = Tensor::zeros({33, 20}, xt);
      testing::fill_uniform(*src, seed++);
      testing::GuardedBuffer yb(33 * 20, yt);
      Tensor yt_view = yb.view({20, 33}).transpose(0, 1);  // shape [33, 20], strides [1, 33]
      auto expect = Tensor::zeros({33, 20}, yt);
      ASSERT_TRUE(reference_backend().copy(*src, *expect).ok());
      for_each_isa([&] {
        yb.reset_guards();
        ASSERT_TRUE(cpu_backend().copy(*src, yt_view).ok());
        EXPECT_TRUE(all_equal(yt_view, *expect));
        EXPECT_TRUE(yb.untouched_outside({yt_view}));
      });
    }
  }
}

TEST(CpuOps, CopyNonFloatSameDtypeIsExact) {
  auto x = Tensor::zeros({3, 4}, DType::kI64);
  for (int64_t i = 0; i < 12; ++i) x->data_as<int64_t>()[i] = (int64_t(1) << 40) + i * 977;
  for_each_isa([&] {
    auto y = Tensor::zeros({4, 3}, DType::kI64);
    Tensor yv = y->transpose(0, 1);
    ASSERT_TRUE(cpu_backend().copy(*x, yv).ok());
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t c = 0; c < 4; ++c)
        EXPECT_EQ(y->data_as<int64_t>()[c * 3 + r], x->data_as<int64_t>()[r * 4 + c]);
  });
}

TEST(CpuOps, ConcatMatchesReference) {
  uint32_t seed = 70;
  for (int axis : {0, 1, 2, -1}) {
    for (DType yt : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE("axis=" + std::to_string(axis) + " y=" + testing::dtype_str(yt));
      int a = axis < 0 ? axis + 3 : axis;
      Shape s0{2, 3, 17}, s1{2, 3, 17}, s2{2, 3, 17};
      s0[a] = 1;
      s1[a] = 4;
      s2[a] = 2;
      // Mixed input dtypes (converted), one of them a column-sliced view.
      GuardedTensor i0 = guarded(s0, DType::kF32), i1 = guarded(s1, DType::kBF16, 3),
                    i2 = guarded(s2, DType::kF16);
      for (GuardedTensor* g : {&i0, &i1, &i2}) testing::fill_uniform(g->t, seed++);
      const std::vector<Tensor> inputs = {i0.t, i1.t, i2.t};
      Shape ys{2, 3, 17};
      ys[a] = 7;
      auto expect = Tensor::zeros(ys, yt);
      ASSERT_TRUE(reference_backend().concat(inputs, axis, *expect).ok());
      for_each_isa([&] {
        GuardedTensor y = guarded(ys, yt, 1);
        Status st = cpu_backend().concat(inputs, axis, y.t);
        ASSERT_TRUE(st.ok()) << st.to_string();
        EXPECT_TRUE(all_equal(y.t, *expect));
        EXPECT_TRUE(y.guards_ok());
      });
    }
  }
}

TEST(CpuOps, UpsampleMatchesReference) {
  uint32_t seed = 90;
  const Shape shapes[] = {{1, 1, 1, 1}, {2, 3, 5, 7}, {1, 4, 16, 33}};
  for (const Shape& s : shapes) {
    for (DType xt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (DType yt : {DType::kF32, DType::kBF16, DType::kF16}) {
        SCOPED_TRACE("shape=" + s.to_string() + " x=" + testing::dtype_str(xt) +
                     " y=" + testing::dtype_str(yt));
        GuardedTensor x = guarded(s, xt, 2);
        testing::fill_uniform(x.t, seed++);
        Shape ys{s[0], s[1], 2 * s[2], 2 * s[3]};
        auto expect = Tensor::zeros(ys, yt);
        ASSERT_TRUE(reference_backend().upsample_nearest2x(x.t, *expect).ok());
        for_each_isa([&] {
          GuardedTensor y = guarded(ys, yt, 3);
          ASSERT_TRUE(cpu_backend().upsample_nearest2x(x.t, y.t).ok());
          EXPECT_TRUE(all_equal(y.t, *expect));
          EXPECT_TRUE(y.guards_ok());
        });
      }
    }
  }
}

}  // namespace
}  // namespace sd35
