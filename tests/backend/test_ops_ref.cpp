// Hand-computed values (so the reference itself is checked, not only cpu == reference) and
// argument validation: both backends must reject bad inputs with a Status, never crash.
#include <gtest/gtest.h>

#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"

namespace sd35 {
namespace {

using testing::all_close;

// Both backends through the Backend interface, so each case is written once and the
// backends' forwarding is exercised too. 2 threads: the CPU kernels split even tiny inputs.
Backend& reference_backend() {
  static std::unique_ptr<Backend> b = make_reference_backend();
  return *b;
}
Backend& cpu_backend() {
  static std::unique_ptr<Backend> b = make_cpu_backend(2);
  return *b;
}

Tensor make(const Shape& s, const std::vector<float>& v, DType dt = DType::kF32) {
  Tensor t = *Tensor::zeros(s, dt);
  testing::fill_values(t, v);
  return t;
}
Tensor zeros(const Shape& s, DType dt = DType::kF32) { return *Tensor::zeros(s, dt); }

// f32 results of O(1) against values computed in Python (math module, f64): 2e-7 absolute
// and relative covers the final f32 rounding and a few ulp of f32 arithmetic.
constexpr double kTol = 2e-7;

void check_hand_values(Backend& ops) {
  {
    Tensor x = make({1, 3}, {1, 2, 3}), y = zeros({1, 3});
    ASSERT_TRUE(ops.layer_norm(x, nullptr, nullptr, 0.0f, y).ok());
    EXPECT_TRUE(
        all_close(testing::to_vector(y), {-1.2247448714f, 0.0f, 1.2247448714f}, kTol, kTol));
    Tensor w = make({3}, {1, 2, 3}, DType::kBF16), b = make({3}, {0, 1, -1}, DType::kF16);
    ASSERT_TRUE(ops.layer_norm(x, &w, &b, 0.0f, y).ok());
    EXPECT_TRUE(
        all_close(testing::to_vector(y), {-1.2247448714f, 1.0f, 2.6742346141f}, kTol, kTol));
  }
  {
    Tensor x = make({2}, {3, 4}), y = zeros({2});
    ASSERT_TRUE(ops.rms_norm(x, nullptr, 0.0f, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {0.8485281374f, 1.1313708499f}, kTol, kTol));
  }
  {
    // x [1, 2, 2], one group over all 4 values: mean 2.5, var 1.25.
    Tensor x = make({1, 2, 2}, {1, 2, 3, 4}), y = zeros({1, 2, 2});
    Tensor w = make({2}, {1, 2}), b = make({2}, {0, 1});
    ASSERT_TRUE(ops.group_norm(x, 1, &w, &b, 0.0f, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y),
                          {-1.3416407865f, -0.4472135955f, 1.894427191f, 3.683281573f}, kTol,
                          kTol));
    // Two groups of one channel each: [1, 2] and [3, 4] normalise to ±1.
    ASSERT_TRUE(ops.group_norm(x, 2, nullptr, nullptr, 0.0f, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {-1, 1, -1, 1}, kTol, kTol));
  }
  {
    Tensor x = make({1, 2, 2}, {1, 2, 3, 4}), y = zeros({1, 2, 2});
    Tensor shift = make({1, 2}, {0.5f, -1}), scale = make({1, 2}, {1, 0});
    ASSERT_TRUE(ops.modulate(x, shift, scale, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {2.5f, 1, 6.5f, 3}, 0, 0));
  }
  {
    Tensor x = make({2}, {1, -2}), y = zeros({2});
    struct Case {
      Activation act;
      std::vector<float> expect;
    };
    const Case cases[] = {{Activation::kSilu, {0.7310585786f, -0.2384058440f}},
                          {Activation::kGeluTanh, {0.8411919906f, -0.0454023059f}},
                          {Activation::kGeluErf, {0.8413447461f, -0.0455002639f}},
                          {Activation::kQuickGelu, {0.8457957659f, -0.0643413769f}},
                          {Activation::kNone, {1, -2}}};
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(activation_name(c.act)));
      ASSERT_TRUE(ops.activation(x, c.act, y).ok());
      // Looser for the vector approximations: ~2 ulp of exp, division.
      EXPECT_TRUE(all_close(testing::to_vector(y), c.expect, 1e-7, 1e-6));
    }
  }
  {
    Tensor x = make({1, 3}, {1, 2, 3}), y = zeros({1, 3});
    ASSERT_TRUE(ops.softmax(x, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {0.0900305732f, 0.2447284711f, 0.6652409558f},
                          1e-7, 1e-6));
    // Large inputs: the max is subtracted first, so nothing overflows.
    Tensor big = make({1, 2}, {1000, 1000}), yb = zeros({1, 2});
    ASSERT_TRUE(ops.softmax(big, yb).ok());
    EXPECT_TRUE(all_close(testing::to_vector(yb), {0.5f, 0.5f}, 0, 0));
  }
  {
    Tensor x = make({1, 1, 1, 2}, {1, 2}), y = zeros({1, 1, 2, 4});
    ASSERT_TRUE(ops.upsample_nearest2x(x, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {1, 1, 2, 2, 1, 1, 2, 2}, 0, 0));
  }
  {
    Tensor a = make({1, 2}, {1, 2}), b = make({1, 1}, {3}, DType::kBF16), y = zeros({1, 3});
    const std::vector<Tensor> in = {a, b};
    ASSERT_TRUE(ops.concat(in, 1, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {1, 2, 3}, 0, 0));
  }
  {
    // f32 -> bf16 rounds to nearest even: 1 + 2^-8 is a tie and goes to 1.
    Tensor x = make({3}, {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -2.5f}),
           y = zeros({3}, DType::kBF16);
    ASSERT_TRUE(ops.copy(x, y).ok());
    EXPECT_TRUE(all_close(testing::to_vector(y), {1.0f, 1.015625f, -2.5f}, 0, 0));
  }
}

TEST(OpsHandValues, Reference) {
  Backend& ops = reference_backend();
  check_hand_values(ops);
}

TEST(OpsHandValues, Cpu) {
  Backend& ops = cpu_backend();
  testing::for_each_isa([&] { check_hand_values(ops); });
}

void check_rejects(Backend& ops) {
  Tensor x = zeros({4, 6}), y = zeros({4, 6}), w6 = zeros({6});
  Tensor y_short = zeros({4, 5}), x_i32 = zeros({4, 6}, DType::kI32), w5 = zeros({5});
  Tensor w_fp8 = zeros({6}, DType::kF8E4M3FN);
  Tensor xt = zeros({6, 4}).transpose(0, 1);  // [4, 6] with a strided last dim
  Tensor on_gpu = Tensor::view_of(x.data(), DType::kF32, x.shape(), Device::kCUDA);
  Tensor no_data = Tensor::strided_view_of(nullptr, DType::kF32, {4, 6}, {6, 1});
  auto bad = [](const Status& st) { return !st.ok(); };

  EXPECT_TRUE(bad(ops.layer_norm(x, nullptr, nullptr, 1e-5f, y_short)));  // shape mismatch
  EXPECT_TRUE(bad(ops.layer_norm(x_i32, nullptr, nullptr, 1e-5f, y)));    // dtype
  EXPECT_TRUE(bad(ops.layer_norm(x, &w5, nullptr, 1e-5f, y)));            // weight length
  EXPECT_TRUE(bad(ops.layer_norm(x, nullptr, &w_fp8, 1e-5f, y)));         // bias dtype
  EXPECT_TRUE(bad(ops.layer_norm(xt, nullptr, nullptr, 1e-5f, y)));       // non-dense rows
  EXPECT_TRUE(bad(ops.layer_norm(x, nullptr, nullptr, -1.0f, y)));        // eps
  EXPECT_TRUE(bad(ops.layer_norm(x, nullptr, nullptr, NAN, y)));
  EXPECT_TRUE(bad(ops.layer_norm(on_gpu, nullptr, nullptr, 1e-5f, y)));   // device
  EXPECT_TRUE(bad(ops.layer_norm(no_data, nullptr, nullptr, 1e-5f, y)));  // null data
  EXPECT_TRUE(bad(ops.rms_norm(x, &w_fp8, 1e-5f, y)));
  EXPECT_TRUE(bad(ops.rms_norm(x, nullptr, 1e-5f, xt)));
  EXPECT_TRUE(ops.layer_norm(x, &w6, nullptr, 1e-5f, y).ok());  // the control case passes

  Tensor g = zeros({1, 4, 3, 3}), gy = zeros({1, 4, 3, 3}), w4 = zeros({4});
  EXPECT_TRUE(bad(ops.group_norm(g, 0, nullptr, nullptr, 1e-5f, gy)));  // no groups
  EXPECT_TRUE(bad(ops.group_norm(g, 3, nullptr, nullptr, 1e-5f, gy)));  // 3 does not divide 4
  EXPECT_TRUE(bad(ops.group_norm(g, -2, nullptr, nullptr, 1e-5f, gy)));
  EXPECT_TRUE(bad(ops.group_norm(g, 2, &w6, nullptr, 1e-5f, gy)));  // weight length
  EXPECT_TRUE(bad(ops.group_norm(g.transpose(2, 3), 2, nullptr, nullptr, 1e-5f, gy)));   // layout
  EXPECT_TRUE(bad(ops.group_norm(zeros({4}), 2, nullptr, nullptr, 1e-5f, zeros({4}))));  // ndim
  EXPECT_TRUE(bad(ops.group_norm(g, 2, nullptr, nullptr, 1e-5f, zeros({1, 4, 9}))));
  EXPECT_TRUE(ops.group_norm(g, 2, &w4, &w4, 1e-5f, gy).ok());

  Tensor mx = zeros({2, 3, 6}), my = zeros({2, 3, 6}), sh = zeros({2, 6});
  EXPECT_TRUE(bad(ops.modulate(mx, zeros({2, 5}), sh, my)));                  // shift shape
  EXPECT_TRUE(bad(ops.modulate(mx, sh, zeros({1, 6}), my)));                  // scale batch
  EXPECT_TRUE(bad(ops.modulate(x, zeros({4, 6}), zeros({4, 6}), y)));         // x not 3-D
  EXPECT_TRUE(bad(ops.modulate(mx, zeros({6, 2}).transpose(0, 1), sh, my)));  // strided cols
  EXPECT_TRUE(bad(ops.modulate(mx, sh, zeros({2, 6}, DType::kI8), my)));
  EXPECT_TRUE(ops.modulate(mx, sh, sh, my).ok());

  EXPECT_TRUE(bad(ops.activation(x, Activation(42), y)));
  EXPECT_TRUE(bad(ops.activation(x, Activation::kSilu, y_short)));
  EXPECT_TRUE(bad(ops.activation(x, Activation::kSilu, zeros({4, 6}, DType::kF8E4M3FN))));
  EXPECT_TRUE(bad(ops.softmax(zeros({4, 6}, DType::kI8), y)));
  EXPECT_TRUE(bad(ops.softmax(x, xt)));

  EXPECT_TRUE(bad(ops.upsample_nearest2x(zeros({1, 2, 3, 4}), zeros({1, 2, 6, 7}))));
  EXPECT_TRUE(bad(ops.upsample_nearest2x(zeros({2, 3, 4}), zeros({2, 6, 8}))));
  EXPECT_TRUE(bad(ops.upsample_nearest2x(zeros({1, 2, 4, 3}).transpose(2, 3), zeros({1, 2, 6, 8}))));

  const std::vector<Tensor> two = {zeros({2, 3}), zeros({2, 4})};
  const std::vector<Tensor> mismatched = {zeros({2, 3}), zeros({3, 4})};
  const std::vector<Tensor> ints = {zeros({2, 3}, DType::kI64), zeros({2, 4})};
  EXPECT_TRUE(bad(ops.concat({}, 0, zeros({2, 7}))));   // no inputs
  EXPECT_TRUE(bad(ops.concat(two, 2, zeros({2, 7}))));  // axis out of range
  EXPECT_TRUE(bad(ops.concat(two, -3, zeros({2, 7}))));
  EXPECT_TRUE(bad(ops.concat(two, 1, zeros({2, 8}))));         // sizes do not add up
  EXPECT_TRUE(bad(ops.concat(mismatched, 1, zeros({2, 7}))));  // other dims differ
  EXPECT_TRUE(bad(ops.concat(ints, 1, zeros({2, 7}))));        // i64 -> f32
  EXPECT_TRUE(ops.concat(two, -1, zeros({2, 7})).ok());

  EXPECT_TRUE(bad(ops.copy(x, y_short)));
  EXPECT_TRUE(bad(ops.copy(zeros({4, 6}, DType::kI64), y)));
  EXPECT_TRUE(bad(ops.copy(x, on_gpu)));
  EXPECT_TRUE(bad(ops.copy(no_data, y)));
}

TEST(OpsValidation, ReferenceRejectsBadInputs) {
  Backend& ops = reference_backend();
  check_rejects(ops);
}

TEST(OpsValidation, CpuRejectsBadInputs) {
  Backend& ops = cpu_backend();
  check_rejects(ops);
}

TEST(OpsValidation, EmptyTensorsAreNoOps) {
  Backend& r = reference_backend();
  Backend& c = cpu_backend();
  Tensor x = zeros({0, 5}), y = zeros({0, 5});
  EXPECT_TRUE(r.layer_norm(x, nullptr, nullptr, 1e-5f, y).ok());
  EXPECT_TRUE(c.layer_norm(x, nullptr, nullptr, 1e-5f, y).ok());
  EXPECT_TRUE(r.softmax(zeros({3, 0}), zeros({3, 0})).ok());
  EXPECT_TRUE(c.softmax(zeros({3, 0}), zeros({3, 0})).ok());
  EXPECT_TRUE(c.activation(x, Activation::kGeluErf, y).ok());
  EXPECT_TRUE(c.copy(x, y).ok());
  EXPECT_TRUE(c.group_norm(zeros({0, 4, 2}), 2, nullptr, nullptr, 1e-5f, zeros({0, 4, 2})).ok());
}

}  // namespace
}  // namespace sd35
