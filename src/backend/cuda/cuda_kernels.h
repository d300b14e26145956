// Host-side launchers of the CUDA backend's kernels (implemented in the .cu files). Plain
// C++ declarations: arguments are raw device pointers plus dtypes, already validated by the
// backend; every launcher queues work on `stream` and returns the launch status.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/cuda_common.h"

namespace sd35::cuda {

enum class EwOp : uint8_t {
  kConvert,   // out = in0
  kAdd,       // out = in0 + in1
  kMul,       // out = in0 * in1
  kAffine,    // out = clamp(in0 * scale + shift, lo, hi)
  kActivate,  // out = act(in0)
  kModulate,  // out = in0 * (1 + in2) + in1        (x, shift, scale)
  kGatedAdd,  // out = in0 + in1 * in2              (x, gate, h)
};

struct EwArgs {
  const char* name = "elementwise";  // the backend op, for error messages
  EwOp op = EwOp::kConvert;
  Activation act = Activation::kNone;
  float scale = 1.0f, shift = 0.0f, lo = 0.0f, hi = 0.0f;
  void* out = nullptr;
  const void* in[3] = {nullptr, nullptr, nullptr};
  DType out_dtype = DType::kF32;
  DType in_dtype[3] = {DType::kF32, DType::kF32, DType::kF32};
  StridedLayout layout;  // operand 0 = out, 1..3 = in[0..2]
};
// Elementwise op over layout.shape, f32 math, rounded once on store.
Status launch_elementwise(const EwArgs& a, cudaStream_t stream);
// The adaLN patterns of the MMDiT blocks over [B, L, D] tensors with uniformly strided dense
// rows, parameters [B, D] with dense rows: kModulate out = x·(1 + p2) + p1 (p1 shift, p2
// scale), kGatedAdd out = x + p1·h (p1 gate). One block per row and one division per row,
// where the generic strided kernel pays 64-bit index divisions per element. The float
// operations are the generic kernel's, so results are identical.
struct RowBroadcastArgs {
  EwOp op = EwOp::kModulate;
  void* out = nullptr;
  const void* x = nullptr;
  const void* p1 = nullptr;
  const void* p2 = nullptr;  // kModulate only
  const void* h = nullptr;   // kGatedAdd only
  DType out_dtype = DType::kF32, x_dtype = DType::kF32, p1_dtype = DType::kF32,
        p2_dtype = DType::kF32, h_dtype = DType::kF32;
  int64_t out_rs = 0, x_rs = 0, h_rs = 0;  // row strides (elements); row r = b·L + l
  int64_t p1_bs = 0, p2_bs = 0;            // parameter row stride per batch entry
  int64_t batch = 0, rows_per_batch = 0, cols = 0;
};
Status launch_row_broadcast(const RowBroadcastArgs& a, cudaStream_t stream);
// Byte-exact copy of elements of `elem_size` bytes (1, 2, 4 or 8): operand 0 dst, 1 src.
Status launch_copy_raw(void* dst, const void* src, int elem_size, const StridedLayout& layout,
                       cudaStream_t stream);
// Contiguous conversion of n elements between compute floats (weights, biases).
Status launch_convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n,
                      cudaStream_t stream);

enum class RowOp : uint8_t { kLayerNorm, kRmsNorm, kSoftmax };
struct RowArgs {
  RowOp op = RowOp::kLayerNorm;
  const void* x = nullptr;
  void* y = nullptr;
  DType x_dtype = DType::kF32, y_dtype = DType::kF32;
  const void* weight = nullptr;  // [C] stride 1, or null
  const void* bias = nullptr;
  DType weight_dtype = DType::kF32, bias_dtype = DType::kF32;
  int64_t rows = 0, cols = 0;
  float eps = 0.0f;
  StridedLayout row_layout;  // over the leading dims; operand 0 = y, 1 = x
};
// One block per row, f32 two-pass statistics.
Status launch_row_op(const RowArgs& a, cudaStream_t stream);

struct GroupNormArgs {
  const void* x = nullptr;
  void* y = nullptr;
  DType x_dtype = DType::kF32, y_dtype = DType::kF32;
  const void* weight = nullptr;
  const void* bias = nullptr;
  DType weight_dtype = DType::kF32, bias_dtype = DType::kF32;
  int64_t batch = 0, channels = 0, spatial = 0;
  int groups = 1;
  float eps = 0.0f;
  bool silu = false;  // y = SiLU(round_to_y_dtype(GN(x))), as group_norm then activation
};
// Floats of scratch group_norm needs (partial sums and per-group statistics).
int64_t group_norm_scratch_floats(const GroupNormArgs& a);
Status launch_group_norm(const GroupNormArgs& a, float* scratch, cudaStream_t stream);

// out[i, :] = table[ids[i], :]; ids already range-checked on the host.
Status launch_gather_rows(const void* table, DType table_dtype, int64_t table_row_stride,
                          const int32_t* ids, void* out, DType out_dtype, int64_t out_row_stride,
                          int64_t n, int64_t d, cudaStream_t stream);

// y[r, n] = (accumulate ? y : 0) + act(acc[r, n] + bias[n]) for r < rows, n < cols; acc is f32
// with row stride ld_acc, bias [cols] of bias_type (stride 1) or null, y of y_dtype with row
// stride ld_y.
Status launch_gemm_epilogue(const float* acc, int64_t ld_acc, const void* bias, DType bias_type,
                            Activation act, bool accumulate, void* y, DType y_dtype, int64_t ld_y,
                            int64_t rows, int64_t cols, cudaStream_t stream);

// Bytes per weight element of the dtypes the skinny and small-M kernels decode in place
// (bf16, f16: 2; fp8 e4m3fn / e5m2: 1); 0 for any other dtype.
inline int in_place_weight_bytes(DType t) {
  switch (t) {
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kF8E4M3FN:
    case DType::kF8E5M2: return 1;
    default: return 0;
  }
}

// Skinny GEMM for f32 x with few rows (the MMDiT's adaLN and embedders: [B, K] with B = 1..2
// per condition batch) against 16-bit or fp8 weights read in place: one warp per output
// column streams its weight row once in 16-byte vectors (k must be a multiple of the
// vector's element count, w 16-byte aligned), f32 FMA accumulation, then
// y[r, n] = (accumulate ? y : 0) + act(Σ + bias[n]) rounded once. Where cuBLASLt would need
// the whole weight converted to f32 first, this reads each weight byte once.
inline constexpr int kSkinnyMaxRows = 8;
struct SkinnyGemmArgs {
  const float* x = nullptr;
  int64_t ldx = 0, m = 0;  // m <= kSkinnyMaxRows rows of k values, row stride ldx
  const void* w = nullptr;  // [n, k] contiguous
  DType w_dtype = DType::kBF16;
  int64_t n = 0, k = 0;
  const void* bias = nullptr;  // [n] stride 1, or null
  DType bias_dtype = DType::kF32;
  Activation act = Activation::kNone;
  bool accumulate = false;
  void* y = nullptr;
  DType y_dtype = DType::kF32;
  int64_t ldy = 0;
};
// Whether launch_skinny_gemm takes these arguments (dtype, alignment, k, m).
bool skinny_gemm_supported(const SkinnyGemmArgs& a);
Status launch_skinny_gemm(const SkinnyGemmArgs& a, cudaStream_t stream);

// Small-M GEMM (cuda_smallm_gemm.cuh/.cu) for f32 x of up to kSmallMMaxRows rows (the text
// encoders' 77 / 154 tokens) against 16-bit or fp8 weights read in place, with the skinny
// kernel's arguments and epilogue: register-tiled f32 FFMA (no TF32) over 32×128 tiles of y,
// weights decoded to f32 as they are staged into shared memory. Needs 16-byte weight rows
// (k·es a multiple of 16, w 16-byte aligned); x and y at any row stride.
inline constexpr int64_t kSmallMMaxRows = 256;
// Whether launch_smallm_gemm takes these arguments (dtype, alignment, k, m).
bool smallm_gemm_supported(const SkinnyGemmArgs& a);
Status launch_smallm_gemm(const SkinnyGemmArgs& a, cudaStream_t stream);

struct Im2colArgs {
  const void* x = nullptr;  // one sample [C, H, W] with strides xs_c, xs_h, xs_w
  DType x_dtype = DType::kF32;
  int64_t xs_c = 0, xs_h = 0, xs_w = 0;
  int64_t channels = 0, height = 0, width = 0;
  int64_t kh = 1, kw = 1, stride = 1, pad_top = 0, pad_left = 0;
  int64_t oh0 = 0, band_rows = 0, ow = 0;  // output rows [oh0, oh0 + band_rows)
  void* col = nullptr;                     // [C*KH*KW, band_rows*OW] of col_dtype
  DType col_dtype = DType::kF32;
};
Status launch_im2col(const Im2colArgs& a, cudaStream_t stream);

// y[o, oh0 + p / OW, p % OW] = acc[o * P + p] + bias[o] for one sample; y strides ys_o, ys_h,
// ys_w; P = band_rows * OW.
Status launch_conv_epilogue(const float* acc, const float* bias, void* y, DType y_dtype,
                            int64_t ys_o, int64_t ys_h, int64_t ys_w, int64_t out_channels,
                            int64_t oh0, int64_t band_rows, int64_t ow, cudaStream_t stream);

}  // namespace sd35::cuda
