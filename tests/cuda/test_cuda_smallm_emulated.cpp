// The small-M GEMM kernel (cuda_smallm_gemm.cuh) run on the CPU: its device code compiled as
// host C++, one std::thread per CUDA thread of a CTA, a std::barrier for __syncthreads, the
// CTAs one after another. This checks the tiling — staging, double buffering, the
// thread-to-output mapping, ragged M/N/K edges, strides and the epilogue — against an f64
// reference where no GPU is present (the GPU conformance case is
// CudaGemm.SmallMF32RowsAgainstStoredWeights). Not covered here: the Ada/Hopper hardware fp8
// conversion (this build takes the bit-exact fallback of cuda_dtype.cuh), timing, bank
// conflicts.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emulation.h"

#include "backend/cuda/cuda_smallm_gemm.cuh"

namespace sd35::cuda {
namespace {

void emulate(const SkinnyGemmArgs& a) {  // launch_smallm_gemm's grid
  const dim3 grid(unsigned((a.m + smallm::kBM - 1) / smallm::kBM),
                  unsigned((a.n + smallm::kBN - 1) / smallm::kBN));
  emu::launch(grid, smallm::kThreads, 0, [&a] {
    switch (a.w_dtype) {
      case DType::kBF16: smallm::smallm_gemm_kernel<DType::kBF16>(a); break;
      case DType::kF16: smallm::smallm_gemm_kernel<DType::kF16>(a); break;
      case DType::kF8E4M3FN: smallm::smallm_gemm_kernel<DType::kF8E4M3FN>(a); break;
      default: smallm::smallm_gemm_kernel<DType::kF8E5M2>(a); break;
    }
  });
}

struct Case {
  int64_t m, n, k;
  DType wt, yt;
  int64_t x_pad, y_pad;
  int bias;  // -1 none, else a DType value
  Activation act;
  bool accumulate;
};

void run_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE("m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
               " k=" + std::to_string(c.k) + " w:" + std::string(dtype_name(c.wt)) +
               " y:" + std::string(dtype_name(c.yt)));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t ldx = c.k + c.x_pad, ldy = c.n + c.y_pad;
  std::vector<float> x(static_cast<size_t>(c.m * ldx));
  for (float& v : x) v = u(rng);
  // Weights (16-byte aligned) and their exact f32 values.
  const int64_t es = int64_t(dtype_size(c.wt));
  std::vector<uint4> wbuf(static_cast<size_t>((c.n * c.k * es + 15) / 16));
  std::vector<float> wf(static_cast<size_t>(c.n * c.k));
  for (int64_t i = 0; i < c.n * c.k; ++i) {
    store_f32(wbuf.data(), c.wt, i, 0.5f * u(rng));
    wf[size_t(i)] = load_f32(wbuf.data(), c.wt, i);
  }
  const DType bt = c.bias >= 0 ? DType(c.bias) : DType::kF32;
  std::vector<uint8_t> bias(static_cast<size_t>(c.n * 4));
  for (int64_t i = 0; i < c.n; ++i) store_f32(bias.data(), bt, i, u(rng));
  std::vector<uint8_t> y(static_cast<size_t>(c.m * ldy) * dtype_size(c.yt));
  for (int64_t i = 0; i < c.m * ldy; ++i) store_f32(y.data(), c.yt, i, 3.0f * u(rng));
  const std::vector<uint8_t> y0 = y;

  SkinnyGemmArgs a;
  a.x = x.data(), a.ldx = ldx, a.m = c.m;
  a.w = wbuf.data(), a.w_dtype = c.wt, a.n = c.n, a.k = c.k;
  a.bias = c.bias >= 0 ? bias.data() : nullptr, a.bias_dtype = bt;
  a.act = c.act, a.accumulate = c.accumulate;
  a.y = y.data(), a.y_dtype = c.yt, a.ldy = ldy;
  ASSERT_TRUE(smallm_gemm_supported(a));
  emulate(a);

  // gemm_tol's bounds of the GPU cases: f32 FMA in k order vs the f64 sum (1e-5·s plus
  // 1e-5 relative, s = sqrt(K)·0.5); a 16-bit y adds one rounding (2^-7 / 2^-9 relative).
  const double s = std::sqrt(double(c.k)) * 0.5 * (c.accumulate ? 2 : 1);
  const double rtol = c.yt == DType::kBF16 ? 1.0 / 128 : c.yt == DType::kF16 ? 1.0 / 512 : 1e-5;
  const double atol = c.yt == DType::kF32 ? 1e-5 * s : s * rtol / 4;
  int bad = 0;
  for (int64_t r = 0; r < c.m; ++r) {
    for (int64_t col = 0; col < ldy; ++col) {
      const int64_t yi = r * ldy + col;
      const float got = load_f32(y.data(), c.yt, yi);
      if (col >= c.n) {  // row padding: never written
        bad += got != load_f32(y0.data(), c.yt, yi) ? 1 : 0;
        continue;
      }
      double acc = c.bias >= 0 ? load_f32(bias.data(), bt, col) : 0.0;
      for (int64_t kk = 0; kk < c.k; ++kk)
        acc += double(x[size_t(r * ldx + kk)]) * wf[size_t(col * c.k + kk)];
      double want = apply_activation(c.act, float(acc));
      if (c.accumulate) want += load_f32(y0.data(), c.yt, yi);
      if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
        if (bad < 5) ADD_FAILURE() << "y[" << r << ", " << col << "] = " << got << ", want " << want;
        ++bad;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(CudaSmallMGemmEmulated, MatchesF64ReferenceOnTheCpu) {
  // Ragged rows (9, 77 of 32-row tiles), columns (130, 200 of 128) and k (48, 208, 1040 of
  // 32, the last over 33 k tiles: the double buffer turns over many times), every weight
  // dtype, bias dtypes, activations, accumulate, strided x and y, 16-bit y.
  const Case cases[] = {
      {77, 200, 208, DType::kBF16, DType::kF32, 3, 5, int(DType::kF32), Activation::kGeluErf,
       true},
      {9, 130, 48, DType::kF16, DType::kF32, 0, 0, -1, Activation::kNone, false},
      {40, 96, 80, DType::kF8E4M3FN, DType::kBF16, 7, 0, int(DType::kBF16), Activation::kSilu,
       false},
      {33, 129, 32, DType::kF8E5M2, DType::kF16, 0, 2, int(DType::kF16),
       Activation::kQuickGelu, true},
      {3, 64, 16, DType::kF8E4M3FN, DType::kF32, 0, 0, -1, Activation::kGeluTanh, false},
      {35, 72, 1040, DType::kF8E4M3FN, DType::kF32, 1, 0, int(DType::kF32), Activation::kNone,
       false},
  };
  uint32_t seed = 40;
  for (const Case& c : cases) run_case(c, seed += 10);
}

}  // namespace
}  // namespace sd35::cuda
