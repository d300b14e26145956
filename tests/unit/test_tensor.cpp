#include <gtest/gtest.h>

#include "core/tensor.h"

namespace sd35 {
namespace {

TEST(Shape, Basics) {
  Shape s{2, 3, 4};
  EXPECT_EQ(s.ndim(), 3);
  EXPECT_EQ(s.numel(), 24);
  EXPECT_EQ(s.to_string(), "[2, 3, 4]");
  EXPECT_EQ(contiguous_strides(s), (Shape{12, 4, 1}));
  EXPECT_EQ(Shape{}.numel(), 1);  // a scalar has one element
  int64_t bad[] = {1, -2};
  EXPECT_FALSE(Shape::from(bad, 2).ok());
  int64_t many[] = {1, 1, 1, 1, 1, 1, 1};
  EXPECT_FALSE(Shape::from(many, 7).ok());
}

TEST(Shape, CheckedBytesRejectsOverflow) {
  EXPECT_EQ(*checked_nbytes(Shape{2, 3}, DType::kBF16), 12u);
  EXPECT_FALSE(checked_nbytes(Shape{int64_t(1) << 40, int64_t(1) << 40}, DType::kF32).ok());
  EXPECT_FALSE(checked_nbytes(Shape{1000, 1000}, DType::kF32, 1000).ok());
}

TEST(Tensor, ViewsShareMemory) {
  auto t = Tensor::zeros(Shape{2, 3, 4}, DType::kF32);
  ASSERT_TRUE(t.ok());
  float* p = t->data_as<float>();
  for (int i = 0; i < 24; ++i) p[i] = float(i);
  EXPECT_TRUE(t->is_contiguous());

  Tensor s = t->slice(2, 1, 3);  // [2, 3, 2]
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_TRUE(s.rows_dense());
  int64_t idx[] = {1, 2, 1};
  EXPECT_EQ(*static_cast<float*>(s.element_ptr(idx)), 1 * 12 + 2 * 4 + 2);

  Tensor tr = t->transpose(0, 2);  // [4, 3, 2]
  int64_t idx2[] = {3, 1, 0};
  EXPECT_EQ(*static_cast<float*>(tr.element_ptr(idx2)), 0 * 12 + 1 * 4 + 3);
  EXPECT_FALSE(tr.rows_dense());

  Tensor sel = t->select(1, 2);  // [2, 4]
  int64_t idx3[] = {1, 3};
  EXPECT_EQ(*static_cast<float*>(sel.element_ptr(idx3)), 12 + 8 + 3);

  Tensor r = t->reshape(Shape{6, 4});
  EXPECT_EQ(r.size(-1), 4);
  EXPECT_EQ(r.rows(), 6);
  Tensor u = r.unsqueeze(0);
  EXPECT_EQ(u.shape(), (Shape{1, 6, 4}));
  EXPECT_EQ(u.describe(), "f32[1, 6, 4]");
  // The owner keeps the buffer alive after the original handle is gone.
  Tensor keep = t->slice(0, 1, 2);
  t = Tensor::zeros(Shape{1}, DType::kF32);
  EXPECT_EQ(*keep.data_as<float>(), 12.0f);
}

TEST(Tensor, LoadStoreAllFloatTypes) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3FN, DType::kF8E5M2}) {
    auto buf = Tensor::zeros(Shape{4}, t);
    ASSERT_TRUE(buf.ok());
    store_from_f32(buf->data(), t, 2, -1.5f);  // exactly representable in every format
    EXPECT_EQ(load_as_f32(buf->data(), t, 2), -1.5f) << dtype_name(t);
    EXPECT_EQ(load_as_f32(buf->data(), t, 1), 0.0f);
  }
}

TEST(Tensor, ZerosRefusesAbsurdSizes) {
  auto t = Tensor::zeros(Shape{int64_t(1) << 30, int64_t(1) << 30}, DType::kF32);
  EXPECT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace sd35
