// Internals shared by the CUDA backend's translation units: the per-backend context (device,
// stream, cuBLASLt, scratch) and the op implementations that are too large for the dispatch
// file. Host C++ only.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <span>

#include "backend/backend.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_norm_modulate.h"
#include "backend/cuda/cuda_lt_matmul.h"
#include "backend/cuda/cuda_scratch.h"
#include "backend/cuda/cudnn_conv.h"

namespace sd35::cuda {

enum class RowKind { kLayerNorm, kRmsNorm, kSoftmax };

struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<ScratchPool> scratch;
  std::unique_ptr<LtGemm> lt;
  bool lt_epilogues = true;  // try cuBLASLt's bias-in-place and GELU epilogues first
  bool smallm_gemm = false;  // f32 x of 9..256 rows vs 16-bit/fp8 weights: launch_smallm_gemm
  // Which implementation the last gemm/conv2d took ("lt", "lt+epilogue", "skinny", ...), for
  // the per-op profile's labels (SD35_CUDA_PROFILE): the same shape can go several ways.
  const char* last_path = "";
  // conv2d through cuDNN where it is exact (cudnn_conv.h); null when cuDNN is unavailable or
  // SD35_CUDNN=0, and conv2d then runs im2col + cuBLASLt only.
  std::unique_ptr<CudnnConv> cudnn;
};

// A view of a device tensor labelled as host memory, so that the shared argument checks of
// gemm/attention/conv2d (written for the CPU backends, see gemm_checks.h) can run on it. Only
// shapes, strides and dtypes are inspected; the data is never touched.
Tensor as_checkable(const Tensor& t);
// Every tensor given must be on the CUDA device ("op: tensor on cpu, backend runs on cuda").
Status on_cuda(std::initializer_list<const Tensor*> ts, std::string_view op);

// The compute dtype of GEMM inputs: the activation dtype of x (f32, bf16 or f16).
// Weights of another dtype are converted (in panels of at most `max_panel_bytes`) to it.
struct GemmRows {
  const void* x = nullptr;  // M rows of K compute-dtype values, row stride ldx
  int64_t ldx = 0, m = 0;
  void* y = nullptr;        // M rows of N values of y_dtype, row stride ldy
  int64_t ldy = 0;
  DType y_dtype = DType::kF32;
};
// A GEMM bias: [N] values of `dtype` with stride 1 (the stored vector in place, or an f32
// copy in scratch), or data == null.
struct GemmBias {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  GemmBias offset(int64_t n0) const {
    if (!data) return *this;
    return {static_cast<const char*>(data) + n0 * int64_t(dtype_size(dtype)), dtype};
  }
};
// y = act(x·wᵀ + bias) or y += ... for `rows`, with w [N, K] already in the compute dtype.
Status gemm_rows(CudaContext& ctx, const GemmRows& r, DType compute, const void* w, int64_t n,
                 int64_t k, const GemmBias& bias, const GemmParams& p);
// y = x elementwise with conversion, or a byte copy when the dtypes match. y's layout `ys`,
// x's `xs` over `shape` (which may be a reshaped view of both, as for upsampling).
Status copy_strided(CudaContext& ctx, const void* x, DType xt, const Shape& xs, void* y, DType yt,
                    const Shape& ys, const Shape& shape);
// y = x (converted when the dtypes differ) over a prepared layout (operand 0 = y, 1 = x).
Status copy_with_layout(CudaContext& ctx, const void* x, DType xt, void* y, DType yt,
                        const StridedLayout& l);
// The bias converted to f32 in scratch (null when bias is null).
Result<const float*> bias_as_f32(CudaContext& ctx, const Tensor* bias, const char* op);

Status gemm_op(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
               const Tensor& y, const GemmParams& p);
// A 1×1, stride-1, unpadded conv over dense, uniformly spaced channel planes: x itself is the
// GEMM's column matrix (p = iy·W + ix), so conv2d runs it as one GEMM on x (cuda_conv.cpp),
// faster than cuDNN (measured on an H200) and with no im2col.
bool conv_reads_x_as_columns(const Tensor& x, const Tensor& w, const Conv2dParams& p);
Status conv2d_op(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                 const Tensor& y, const Conv2dParams& p);

// Unmasked attention with a wide head as GEMMs over query blocks (attention_gemm.cpp); false
// when it does not apply (narrow heads, small problems, masks, a layout cuBLASLt declines)
// and the attention kernels should run instead.
Result<bool> attention_by_gemm(CudaContext& ctx, const AttentionArgs& a);

// cuda_backend_ops.cpp: everything else (same validation as the CPU backends).
Status attention_op(CudaContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& out, int heads, float scale, bool masked, bool causal,
                    const Tensor* bias);
Status gather_rows_op(CudaContext& ctx, const Tensor& table, const Tensor& ids, const Tensor& out);
Status row_op(CudaContext& ctx, RowKind kind, const Tensor& x, const Tensor* weight,
              const Tensor* bias, float eps, const Tensor& y);
// The kernel arguments row_op / layer_norm_modulate_op build from validated tensors (also
// used by the kernels' CPU emulation test, so it runs them on exactly what the ops pass).
RowArgs row_args(RowOp op, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                 const Tensor& y);
LayerNormModulateArgs layer_norm_modulate_args(const Tensor& x, const Tensor& shift,
                                               const Tensor& scale, float eps, const Tensor& y);
GroupNormArgs group_norm_args(const Tensor& x, int groups, const Tensor* weight,
                              const Tensor* bias, float eps, const Tensor& y, bool silu);
// upsample_nearest2x as a strided copy: y viewed as [N, C, H, 2, W, 2], x broadcast over the 2s.
StridedLayout upsample_layout(const Tensor& x, const Tensor& y);
// silu: then SiLU on the value rounded to y's dtype, in the same pass (Backend::group_norm_silu).
Status group_norm_op(CudaContext& ctx, const Tensor& x, int groups, const Tensor* weight,
                     const Tensor* bias, float eps, const Tensor& y, bool silu);
Status modulate_op(CudaContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale,
                   const Tensor& y);
Status layer_norm_modulate_op(CudaContext& ctx, const Tensor& x, const Tensor& shift,
                              const Tensor& scale, float eps, const Tensor& y);
Status binary_op(CudaContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y, bool is_mul);
Status gated_add_op(CudaContext& ctx, const Tensor& x, const Tensor& gate, const Tensor& h,
                    const Tensor& out);
Status affine_op(CudaContext& ctx, const Tensor& x, const AffineParams& p, const Tensor& y);
Status activation_op(CudaContext& ctx, const Tensor& x, Activation act, const Tensor& y);
Status upsample_op(CudaContext& ctx, const Tensor& x, const Tensor& y);
Status concat_op(CudaContext& ctx, std::span<const Tensor> inputs, int axis, const Tensor& y);
Status copy_op(CudaContext& ctx, const Tensor& x, const Tensor& y);

}  // namespace sd35::cuda
