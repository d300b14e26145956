// Kernels that have not yet run on a GPU, run on the CPU through cuda_emulation.h (their .cu
// files compiled as host C++ with SD35_CUDA_DEVICE_CODE_ONLY, which leaves out the
// launchers): the short-row vector norm (the per-head q/k RMSNorm), the fused LayerNorm +
// modulate (both of its variants), the skinny GEMM (the adaLN GEMMs), the group norm with
// its per-plane normalise pass and fused SiLU, and the strided copy's 32-bit index path
// (upsampling). The arguments come from the same host functions the backend ops use
// (row_args, layer_norm_modulate_args, group_norm_args, upsample_layout); the grids are the
// launchers' (restated below, with where they come from). Expected values are the reference backend's, with the GPU conformance cases'
// tolerances. The GPU cases (CudaOps.PerHeadNormsInPlaceOnQkvSlices,
// CudaOps.LayerNormModulateWithChunkedParams, CudaGemm.SkinnyF32RowsAgainstStoredWeights)
// still decide on hardware.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"

#define SD35_CUDA_DEVICE_CODE_ONLY 1
#include "backend/cuda/cuda_elementwise.cu"
#include "backend/cuda/cuda_linear_kernels.cu"
#include "backend/cuda/cuda_norm.cu"
#include "backend/cuda/cuda_norm_modulate.cu"

#include "../backend/backend_test_util.h"
#include "backend/cuda/cuda_backend_impl.h"

namespace sd35::cuda {
namespace {

using sd35::testing::reference_backend;

Tensor random_tensor(const Shape& s, DType t, uint32_t seed, float lo, float hi) {
  Tensor x = *Tensor::zeros(s, t);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < x.numel(); ++i) store_from_f32(x.data(), t, i, dist(rng));
  return x;
}

// |got - want| <= atol + rtol·|want| at every element (the conformance cases' elementwise_tol
// for the output dtype, scaled by 4 for the norms' statistics).
::testing::AssertionResult close(const Tensor& got, const Tensor& want, double atol, double rtol) {
  const std::vector<float> g = sd35::testing::to_vector(got), w = sd35::testing::to_vector(want);
  for (size_t i = 0; i < g.size(); ++i)
    if (!(std::fabs(double(g[i]) - w[i]) <= atol + rtol * std::fabs(double(w[i]))))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << g[i] << ", want " << w[i];
  return ::testing::AssertionSuccess();
}
double atol_of(DType t) { return t == DType::kBF16 ? 4e-3 : t == DType::kF16 ? 4e-4 : 8e-6; }
double rtol_of(DType t) { return t == DType::kBF16 ? 1.0 / 128 : t == DType::kF16 ? 1.0 / 1024 : 2e-5; }

// launch_row_op's vector path: kVecThreads-thread blocks, tpr threads per row.
void emulate_row_norm_vec(const RowArgs& a, int tpr) {
  const unsigned blocks = unsigned((a.rows * tpr + kVecThreads - 1) / kVecThreads);
  emu::launch(dim3(blocks), kVecThreads, 0, [&a, tpr] {
    const bool f32 = a.x_dtype == DType::kF32;
    switch (tpr) {
      case 1: f32 ? row_norm_vec_kernel<1, 4>(a) : row_norm_vec_kernel<1, 2>(a); break;
      case 2: f32 ? row_norm_vec_kernel<2, 4>(a) : row_norm_vec_kernel<2, 2>(a); break;
      case 4: f32 ? row_norm_vec_kernel<4, 4>(a) : row_norm_vec_kernel<4, 2>(a); break;
      case 8: f32 ? row_norm_vec_kernel<8, 4>(a) : row_norm_vec_kernel<8, 2>(a); break;
      case 16: f32 ? row_norm_vec_kernel<16, 4>(a) : row_norm_vec_kernel<16, 2>(a); break;
      default: f32 ? row_norm_vec_kernel<32, 4>(a) : row_norm_vec_kernel<32, 2>(a); break;
    }
  });
}

// The MMDiT's q/k norm: [B, L, H, D] head slices of a fused qkv buffer, normalised in place,
// plus dense rows (LayerNorm with weight and bias), rows counts that leave dead lanes.
TEST(CudaKernelsEmulated, ShortRowVectorNorms) {
  struct Case {
    DType t;
    int64_t b, l, h, d;
    RowOp op;
    bool qkv;
  };
  const Case cases[] = {{DType::kBF16, 2, 37, 3, 64, RowOp::kRmsNorm, true},
                        {DType::kF16, 1, 29, 2, 64, RowOp::kRmsNorm, true},
                        {DType::kF32, 1, 19, 2, 64, RowOp::kRmsNorm, true},
                        {DType::kBF16, 3, 7, 1, 8, RowOp::kLayerNorm, false},
                        {DType::kF32, 2, 33, 1, 128, RowOp::kLayerNorm, false},
                        {DType::kBF16, 1, 45, 1, 256, RowOp::kRmsNorm, false}};
  uint32_t seed = 7;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(dtype_name(c.t)) + " d=" + std::to_string(c.d) +
                 (c.qkv ? " qkv slices" : " dense"));
    const Shape full = c.qkv ? Shape{c.b, c.l, 3 * c.h * c.d} : Shape{c.b, c.l, c.d};
    Tensor buf = random_tensor(full, c.t, seed++, -2.0f, 3.0f);
    Tensor want_buf = *Tensor::zeros(full, c.t);
    ASSERT_TRUE(reference_backend().copy(buf, want_buf).ok());
    auto view = [&](const Tensor& t) {  // k's heads of each qkv row, or the dense rows
      if (!c.qkv) return t;
      return Tensor::strided_view_of(t.slice(2, c.h * c.d, 2 * c.h * c.d).data(), c.t,
                                     Shape{c.b, c.l, c.h, c.d},
                                     Shape{c.l * full[2], full[2], c.d, 1});
    };
    Tensor w = random_tensor({c.d}, DType::kF32, seed++, 0.5f, 1.5f);
    Tensor bias = random_tensor({c.d}, c.t, seed++, -1.0f, 1.0f);
    const Tensor* bp = c.op == RowOp::kLayerNorm ? &bias : nullptr;
    const Tensor x = view(buf), want = view(want_buf);
    if (c.op == RowOp::kRmsNorm) {
      ASSERT_TRUE(reference_backend().rms_norm(want, &w, 1e-6f, want).ok());
    } else {
      ASSERT_TRUE(reference_backend().layer_norm(want, &w, bp, 1e-6f, want).ok());
    }
    const RowArgs a = row_args(c.op, x, &w, bp, 1e-6f, x);  // in place, as the MMDiT does
    const int tpr = vec_threads_per_row(a);
    ASSERT_EQ(tpr, int(c.d * int64_t(dtype_size(c.t)) / 16)) << "not the vector path";
    emulate_row_norm_vec(a, tpr);
    EXPECT_TRUE(close(x, want, 4 * atol_of(c.t), rtol_of(c.t)));
    // The rest of the qkv buffer (q and v) is untouched.
    if (c.qkv) {
      const std::vector<float> got = sd35::testing::to_vector(buf);
      const std::vector<float> ref = sd35::testing::to_vector(want_buf);
      for (size_t i = 0; i < got.size(); ++i) {
        const int64_t col = int64_t(i) % full[2];
        if (col < c.h * c.d || col >= 2 * c.h * c.d) {
          ASSERT_EQ(got[i], ref[i]) << "wrote outside the k slice at " << i;
        }
      }
    }
  }
}

// launch_layer_norm_modulate's two shapes: whole warps holding kPerThread values each, or
// kMaxThreads / 4 threads striding over a row too long for registers.
void emulate_layer_norm_modulate(const LayerNormModulateArgs& a) {
  const unsigned rows = unsigned(a.batch * a.len);
  const int64_t need = (a.cols + kPerThread - 1) / kPerThread;
  if (need <= kMaxThreads) {
    emu::launch(dim3(rows), unsigned((need + 31) / 32 * 32), 0,
                [&a] { layer_norm_modulate_kernel<true>(a); });
  } else {
    emu::launch(dim3(rows), unsigned(kMaxThreads / 4), 0,
                [&a] { layer_norm_modulate_kernel<false>(a); });
  }
}

TEST(CudaKernelsEmulated, LayerNormModulateBothVariants) {
  struct Case {
    int64_t b, l, d;
    DType y;
  };
  // d = 1536 (the MMDiT, registers), 7 (one partial warp), 8200 (> 1024·8: the strided loop).
  const Case cases[] = {{2, 3, 1536, DType::kBF16}, {1, 2, 7, DType::kF32},
                        {1, 2, 8200, DType::kF16}, {2, 2, 1536, DType::kF32}};
  uint32_t seed = 40;
  for (const Case& c : cases) {
    SCOPED_TRACE("d=" + std::to_string(c.d) + " y=" + std::string(dtype_name(c.y)));
    Tensor x = random_tensor({c.b, c.l, c.d}, DType::kF32, seed++, -3.0f, 4.0f);
    Tensor ada = random_tensor({c.b, 6 * c.d}, DType::kF32, seed++, -1.0f, 1.0f);
    const Tensor shift = ada.slice(1, 0, c.d), scale = ada.slice(1, 2 * c.d, 3 * c.d);
    Tensor y = *Tensor::zeros({c.b, c.l, c.d}, c.y), want = *Tensor::zeros({c.b, c.l, c.d}, c.y);
    ASSERT_TRUE(reference_backend().layer_norm_modulate(x, shift, scale, 1e-6f, want).ok());
    emulate_layer_norm_modulate(layer_norm_modulate_args(x, shift, scale, 1e-6f, y));
    EXPECT_TRUE(close(y, want, 4 * atol_of(c.y), rtol_of(c.y)));
  }
}

// launch_skinny_gemm: one warp per output column, 8 warps per block.
void emulate_skinny(const SkinnyGemmArgs& a) {
  emu::launch(dim3(unsigned((a.n + 7) / 8)), 256, 0, [&a] {
    switch (a.w_dtype) {
      case DType::kBF16: skinny_gemm_kernel<DType::kBF16>(a); break;
      case DType::kF16: skinny_gemm_kernel<DType::kF16>(a); break;
      case DType::kF8E4M3FN: skinny_gemm_kernel<DType::kF8E4M3FN>(a); break;
      default: skinny_gemm_kernel<DType::kF8E5M2>(a); break;
    }
  });
}

TEST(CudaKernelsEmulated, SkinnyGemmAgainstF64) {
  struct Case {
    int64_t m, n, k;
    DType w, y;
    bool bias, accumulate;
    Activation act;
  };
  const Case cases[] = {{2, 37, 1536, DType::kBF16, DType::kF32, true, false, Activation::kNone},
                        {1, 9, 256, DType::kF16, DType::kBF16, true, false, Activation::kSilu},
                        {8, 20, 48, DType::kF8E4M3FN, DType::kF32, false, true,
                         Activation::kNone},
                        {3, 17, 4096, DType::kF8E5M2, DType::kF32, true, false,
                         Activation::kGeluTanh}};
  uint32_t seed = 90;
  for (const Case& c : cases) {
    SCOPED_TRACE("m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" +
                 std::to_string(c.k) + " w=" + std::string(dtype_name(c.w)));
    Tensor x = random_tensor({c.m, c.k}, DType::kF32, seed++, -1.0f, 1.0f);
    Tensor w = random_tensor({c.n, c.k}, c.w, seed++, -0.5f, 0.5f);
    Tensor b = random_tensor({c.n}, DType::kBF16, seed++, -1.0f, 1.0f);
    Tensor y = random_tensor({c.m, c.n}, c.y, seed++, -1.0f, 1.0f);
    Tensor want = *Tensor::zeros({c.m, c.n}, c.y);
    ASSERT_TRUE(reference_backend().copy(y, want).ok());
    GemmParams p;
    p.activation = c.act, p.accumulate = c.accumulate;
    ASSERT_TRUE(reference_backend().gemm(x, w, c.bias ? &b : nullptr, want, p).ok());
    SkinnyGemmArgs a;
    a.x = static_cast<const float*>(x.data()), a.m = c.m, a.ldx = c.k;
    a.w = w.data(), a.w_dtype = c.w, a.n = c.n, a.k = c.k;
    a.bias = c.bias ? b.data() : nullptr, a.bias_dtype = DType::kBF16;
    a.act = c.act, a.accumulate = c.accumulate;
    a.y = y.data(), a.y_dtype = c.y, a.ldy = c.n;
    ASSERT_TRUE(skinny_gemm_supported(a));
    emulate_skinny(a);
    // f32 sums of k products in another order: ~k·2^-24 relative to Σ|x·w| (< 1e-4 here).
    EXPECT_TRUE(close(y, want, c.y == DType::kF32 ? 1e-4 : atol_of(c.y), rtol_of(c.y)));
  }
}

// launch_group_norm: partial sums per chunk, f64 finalize, again for the squared deviations,
// then the per-plane normalise (+ SiLU) pass.
void emulate_group_norm(const GroupNormArgs& a) {
  const int64_t total = a.batch * a.groups;
  const int64_t chunks = group_chunks(a), group_elems = a.channels / a.groups * a.spatial;
  std::vector<float> scratch(size_t(group_norm_scratch_floats(a)));
  float* partials = scratch.data();
  float* mean = partials + total * chunks;
  float* rstd = mean + total;
  const dim3 blocks(unsigned(total * chunks)), fin(unsigned((total + 127) / 128));
  emu::launch(blocks, 256, 0, [&] {
    group_partial_kernel(a.x, a.x_dtype, group_elems, chunks, nullptr, partials);
  });
  emu::launch(fin, 128, 0, [&] {
    group_finalize_kernel(partials, chunks, total, group_elems, a.eps, false, mean);
  });
  emu::launch(blocks, 256, 0, [&] {
    group_partial_kernel(a.x, a.x_dtype, group_elems, chunks, mean, partials);
  });
  emu::launch(fin, 128, 0, [&] {
    group_finalize_kernel(partials, chunks, total, group_elems, a.eps, true, rstd);
  });
  const int64_t planes = a.batch * a.channels;
  const dim3 apply(unsigned(std::clamp<int64_t>((a.spatial + 1023) / 1024, 1, 65535)),
                   unsigned(std::min<int64_t>(planes, 65535)));
  emu::launch(apply, 256, 0, [&] { group_apply_kernel(a, mean, rstd); });
}

TEST(CudaKernelsEmulated, GroupNormAndGroupNormSilu) {
  struct Case {
    Shape s;
    int groups;
    DType x, y;
  };
  // Planes of 1089 and 8448 values: several apply blocks per plane and ragged ends; three
  // 8192-element statistics chunks in the second's group.
  const Case cases[] = {{{2, 4, 33, 33}, 2, DType::kF32, DType::kBF16},
                        {{1, 2, 64, 132}, 1, DType::kBF16, DType::kBF16},
                        {{1, 6, 9, 7}, 3, DType::kF32, DType::kF32}};
  uint32_t seed = 120;
  for (const Case& c : cases) {
    for (bool silu : {false, true}) {
      SCOPED_TRACE(c.s.to_string() + " y=" + std::string(dtype_name(c.y)) +
                   (silu ? " +silu" : ""));
      Tensor x = random_tensor(c.s, c.x, seed++, 4.0f, 8.0f);  // offset mean: two-pass matters
      Tensor w = random_tensor({c.s[1]}, DType::kBF16, seed++, 0.5f, 1.5f);
      Tensor b = random_tensor({c.s[1]}, DType::kF32, seed++, -1.0f, 1.0f);
      Tensor y = *Tensor::zeros(c.s, c.y), want = *Tensor::zeros(c.s, c.y);
      ASSERT_TRUE((silu ? reference_backend().group_norm_silu(x, c.groups, &w, &b, 1e-6f, want)
                        : reference_backend().group_norm(x, c.groups, &w, &b, 1e-6f, want))
                      .ok());
      emulate_group_norm(group_norm_args(x, c.groups, &w, &b, 1e-6f, y, silu));
      EXPECT_TRUE(close(y, want, 4 * atol_of(c.y), rtol_of(c.y)));
    }
  }
}

// launch_copy_raw / launch_elementwise: grid_for(n) blocks of 256 threads, grid-stride.
void emulate_copy(void* y, DType yt, const void* x, DType xt, const StridedLayout& l) {
  int64_t n = 1;
  for (int d = 0; d < l.ndim; ++d) n *= l.shape[d];
  emu::launch(dim3(grid_for(n)), 256, 0, [&] {
    if (xt == yt) {
      copy_raw_kernel(static_cast<uint16_t*>(y), static_cast<const uint16_t*>(x), l, n);
    } else {
      EwArgs e;
      e.op = EwOp::kConvert;
      e.out = y, e.out_dtype = yt;
      e.in[0] = x, e.in_dtype[0] = xt;
      e.layout = l;
      elementwise_kernel(e, n);
    }
  });
}

TEST(CudaKernelsEmulated, UpsampleThroughTheStridedCopy) {
  for (DType xt : {DType::kBF16, DType::kF32}) {
    SCOPED_TRACE("x " + std::string(dtype_name(xt)));
    Tensor x = random_tensor({2, 3, 5, 7}, xt, 150, -2.0f, 2.0f);
    Tensor y = *Tensor::zeros({2, 3, 10, 14}, DType::kBF16);
    Tensor want = *Tensor::zeros({2, 3, 10, 14}, DType::kBF16);
    ASSERT_TRUE(reference_backend().upsample_nearest2x(x, want).ok());
    emulate_copy(y.data(), y.dtype(), x.data(), x.dtype(), upsample_layout(x, y));
    EXPECT_TRUE(close(y, want, 0, 0));  // a copy (and one rounding, as the reference)
  }
}

}  // namespace
}  // namespace sd35::cuda
