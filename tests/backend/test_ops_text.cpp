// attention_masked and gather_rows (the text encoders' ops): CPU against the reference,
// through the Backend interface, with guard bands, plus hand-checked properties of the masks.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"

namespace sd35 {
namespace {

using testing::all_close;
using testing::guarded;
using testing::GuardedTensor;

using testing::cpu_backend;
using testing::reference_backend;

struct MaskCase {
  int64_t batch, heads, d, lq, lk;
  bool causal, bias;
  DType in, out;
  int64_t row_pad;
};

TEST(AttentionMasked, CpuMatchesReference) {
  const MaskCase cases[] = {
      {1, 2, 64, 77, 77, true, false, DType::kF32, DType::kF32, 0},  // CLIP
      {2, 3, 8, 7, 7, true, false, DType::kF16, DType::kF32, 5},
      {1, 2, 24, 154, 154, false, true, DType::kF32, DType::kF32, 0},  // T5
      {2, 1, 16, 9, 13, true, true, DType::kBF16, DType::kBF16, 3},    // Lq != Lk, both masks
      {1, 4, 5, 1, 30, false, true, DType::kF32, DType::kF16, 0},
      {1, 1, 1, 3, 1, true, false, DType::kF32, DType::kF32, 0},
  };
  uint32_t seed = 40;
  for (const MaskCase& c : cases) {
    SCOPED_TRACE("B" + std::to_string(c.batch) + " H" + std::to_string(c.heads) + " D" +
                 std::to_string(c.d) + " Lq" + std::to_string(c.lq) + " Lk" + std::to_string(c.lk) +
                 (c.causal ? " causal" : "") + (c.bias ? " bias" : ""));
    const int64_t hd = c.heads * c.d;
    GuardedTensor q = guarded({c.batch, c.lq, hd}, c.in, c.row_pad);
    GuardedTensor k = guarded({c.batch, c.lk, hd}, c.in, c.row_pad);
    GuardedTensor v = guarded({c.batch, c.lk, hd}, c.in, c.row_pad);
    GuardedTensor bias = guarded({1, c.heads, c.lq, c.lk}, DType::kF32);
    // Scores of a few units, as after trained projections.
    testing::fill_uniform(q.t, seed++, -1.5f, 1.5f);
    testing::fill_uniform(k.t, seed++, -1.5f, 1.5f);
    testing::fill_uniform(v.t, seed++, -1.0f, 1.0f);
    testing::fill_uniform(bias.t, seed++, -3.0f, 3.0f);
    GuardedTensor expect = guarded({c.batch, c.lq, hd}, DType::kF32);
    GuardedTensor got = guarded({c.batch, c.lq, hd}, c.out, c.row_pad);
    const float scale = 1.0f / std::sqrt(float(c.d));
    const Tensor* b = c.bias ? &bias.t : nullptr;
    ASSERT_TRUE(reference_backend()
                    .attention_masked(q.t, k.t, v.t, expect.t, int(c.heads), scale, c.causal, b)
                    .ok());
    Status st =
        cpu_backend().attention_masked(q.t, k.t, v.t, got.t, int(c.heads), scale, c.causal, b);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(got.guards_ok());
    // f32 softmax and sums over <= 154 terms of magnitude <= 1 against the f64 reference:
    // a few f32 ulps of the O(1) output (1e-5), plus one rounding of a bf16/f16 output.
    EXPECT_TRUE(all_close(got.t, expect.t, 1e-5, testing::half_ulp(c.out) * 2));
  }
}

TEST(AttentionMasked, CausalRowZeroSeesOnlyKeyZero) {
  // With a causal mask, query 0 attends to key 0 only: its output is v[0] exactly.
  auto q = *Tensor::zeros({1, 4, 2}, DType::kF32), k = *Tensor::zeros({1, 4, 2}, DType::kF32);
  auto v = *Tensor::zeros({1, 4, 2}, DType::kF32), out = *Tensor::zeros({1, 4, 2}, DType::kF32);
  testing::fill_values(v, {1, 2, 3, 4, 5, 6, 7, 8});
  testing::fill_values(q, {1, 0, 1, 0, 1, 0, 1, 0});
  testing::fill_values(k, {0, 0, 0, 0, 0, 0, 0, 0});  // equal scores: uniform over visible keys
  for (Backend* be : {&cpu_backend(), &reference_backend()}) {
    ASSERT_TRUE(be->attention_masked(q, k, v, out, 1, 1.0f, true, nullptr).ok());
    // Row i averages v[0..i]: [1,2], [2,3], [3,4], [4,5].
    EXPECT_TRUE(all_close(testing::to_vector(out), {1, 2, 2, 3, 3, 4, 4, 5}, 1e-6, 1e-6))
        << be->name();
  }
}

TEST(AttentionMasked, BiasShiftsWeights) {
  // One query, two keys with equal scores; a bias of ln(3) on key 1 gives weights 1/4, 3/4.
  auto q = *Tensor::zeros({1, 1, 1}, DType::kF32), k = *Tensor::zeros({1, 2, 1}, DType::kF32);
  auto v = *Tensor::zeros({1, 2, 1}, DType::kF32), out = *Tensor::zeros({1, 1, 1}, DType::kF32);
  auto bias = *Tensor::zeros({1, 1, 2}, DType::kF32);
  testing::fill_values(v, {0, 4});
  testing::fill_values(bias, {0, std::log(3.0f)});
  for (Backend* be : {&cpu_backend(), &reference_backend()}) {
    ASSERT_TRUE(be->attention_masked(q, k, v, out, 1, 1.0f, false, &bias).ok());
    EXPECT_TRUE(all_close(testing::to_vector(out), {3.0f}, 1e-6, 1e-6)) << be->name();
  }
}

TEST(AttentionMasked, RejectsBadBias) {
  auto q = *Tensor::zeros({1, 5, 8}, DType::kF32), out = *Tensor::zeros({1, 5, 8}, DType::kF32);
  auto wrong = *Tensor::zeros({2, 5, 4}, DType::kF32);  // Lk 4 != 5
  auto f16 = *Tensor::zeros({2, 5, 5}, DType::kF16);
  for (Backend* be : {&cpu_backend(), &reference_backend()}) {
    EXPECT_FALSE(be->attention_masked(q, q, q, out, 2, 1.0f, false, &wrong).ok());
    EXPECT_FALSE(be->attention_masked(q, q, q, out, 2, 1.0f, false, &f16).ok());
    EXPECT_FALSE(be->attention_masked(q, q, q, out, 3, 1.0f, true, nullptr).ok());  // 8 % 3
  }
}

TEST(GatherRows, CpuMatchesReferenceAndRejectsBadIds) {
  for (DType table_t : {DType::kF16, DType::kBF16, DType::kF32, DType::kF8E4M3FN}) {
    for (DType out_t : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(testing::dtype_str(table_t) + " -> " + testing::dtype_str(out_t));
      auto table = *Tensor::zeros({50, 19}, table_t);
      testing::fill_uniform(table, 7, -2.0f, 2.0f);
      auto ids = *Tensor::zeros({6}, DType::kI32);
      int32_t* id = ids.data_as<int32_t>();
      const int32_t values[] = {49, 0, 7, 7, 31, 1};
      std::copy(std::begin(values), std::end(values), id);
      GuardedTensor got = guarded({6, 19}, out_t, 4);
      auto expect = *Tensor::zeros({6, 19}, out_t);
      ASSERT_TRUE(reference_backend().gather_rows(table, ids, expect).ok());
      ASSERT_TRUE(cpu_backend().gather_rows(table, ids, got.t).ok());
      EXPECT_TRUE(got.guards_ok());
      EXPECT_TRUE(testing::all_equal(got.t, expect));  // a copy with one rounding: exact
      // Row 3 repeats id 7 (row 2): the lookup, not a running counter, picks rows.
      EXPECT_EQ(testing::to_vector(expect.slice(0, 2, 3)),
                testing::to_vector(expect.slice(0, 3, 4)));
      id[4] = 50;  // one past the table
      EXPECT_FALSE(cpu_backend().gather_rows(table, ids, got.t).ok());
      EXPECT_FALSE(reference_backend().gather_rows(table, ids, expect).ok());
      id[4] = -1;
      EXPECT_FALSE(cpu_backend().gather_rows(table, ids, got.t).ok());
    }
  }
}

}  // namespace
}  // namespace sd35
