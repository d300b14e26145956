// Unmasked attention with a wide head (the VAE's single head of 512 features over 16384
// pixels at 1024²) as cuBLASLt GEMMs over blocks of queries: S = scale·Q_blk·Kᵀ into f32
// scratch, a row softmax of S into the compute dtype (P), then O_blk = P·V. The generic
// kernel's per-thread f32 dot products reach ~7 TFLOP/s there; tensor-core GEMMs do the same
// work in a few milliseconds. The scores of one block are materialised (bounded by
// kScoreBytes); the MMDiT's head_dim 64 keeps the flash kernel, which never does.
//
// Precision: the scores and both GEMMs accumulate in f32; P is rounded to the compute dtype
// (bf16: 2^-9 relative, below the output's own rounding), exactly f32 in f32 mode.
#include <algorithm>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_kernels.h"

namespace sd35::cuda {
namespace {

constexpr int64_t kScoreBytes = int64_t(128) << 20;  // f32 scores of one query block
constexpr int kMinHeadDim = 128;                     // narrower heads: the attention kernels
constexpr int64_t kMinScores = int64_t(1) << 20;     // smaller problems: the generic kernel

}  // namespace

Result<bool> attention_by_gemm(CudaContext& ctx, const AttentionArgs& a) {
  if (a.causal || a.bias || a.head_dim < kMinHeadDim || int64_t(a.lq) * a.lk < kMinScores)
    return false;
  const DType t = a.dtype;
  const int64_t es = int64_t(dtype_size(t)), D = a.head_dim, lk = a.lk;
  const int64_t block = std::clamp<int64_t>(kScoreBytes / (lk * 4), 1, a.lq);
  SD35_ASSIGN_OR_RETURN(void* scores, ctx.scratch->get(ScratchSlot::kAttnScores,
                                                      size_t(block * lk * 4), "attention"));
  SD35_ASSIGN_OR_RETURN(void* probs, ctx.scratch->get(ScratchSlot::kAttnProbs,
                                                     size_t(block * lk * es), "attention"));
  auto at = [es](const void* base, int64_t elems) {
    return static_cast<const char*>(base) + elems * es;
  };
  bool first = true;
  for (int b = 0; b < a.batch; ++b) {
    for (int h = 0; h < a.heads; ++h) {
      const int64_t col = int64_t(h) * D;
      for (int64_t r0 = 0; r0 < a.lq; r0 += block) {
        const int64_t rows = std::min<int64_t>(block, a.lq - r0);
        // Row-major S[rows, lk] = scale·Q_blk·Kᵀ, i.e. column-major Sᵀ = op_T(K)·Q_blkᵀ.
        LtMatmul s;
        s.transpose_a = true;
        s.m = lk, s.n = rows, s.k = D;
        s.a = at(a.k, b * a.k_sb + col), s.a_type = t, s.lda = a.k_sl;
        s.b = at(a.q, b * a.q_sb + r0 * a.q_sl + col), s.b_type = t, s.ldb = a.q_sl;
        s.d = scores, s.d_type = DType::kF32, s.ldd = lk;
        s.alpha = a.scale;
        bool supported = false;
        // The first GEMM decides: a layout cuBLASLt declines goes back to the kernels.
        SD35_RETURN_IF_ERROR(ctx.lt->run(s, &supported, /*allow_fallback=*/!first));
        if (!supported) return false;
        first = false;
        RowArgs sm;
        sm.op = RowOp::kSoftmax;
        sm.x = scores, sm.x_dtype = DType::kF32;
        sm.y = probs, sm.y_dtype = t;
        sm.rows = rows, sm.cols = lk;
        const Shape lead{rows}, strides{lk};
        const Shape* st[2] = {&strides, &strides};
        sm.row_layout = make_layout(lead, st, 2);
        SD35_RETURN_IF_ERROR(launch_row_op(sm, ctx.stream));
        // Row-major O_blk[rows, D] = P·V, i.e. column-major O_blkᵀ = Vᵀ·Pᵀ.
        LtMatmul o;
        o.m = D, o.n = rows, o.k = lk;
        o.a = at(a.v, b * a.v_sb + col), o.a_type = t, o.lda = a.v_sl;
        o.b = probs, o.b_type = t, o.ldb = lk;
        o.d = const_cast<char*>(at(a.out, b * a.o_sb + r0 * a.o_sl + col)), o.d_type = t;
        o.ldd = a.o_sl;
        SD35_RETURN_IF_ERROR(ctx.lt->run(o, &supported, /*allow_fallback=*/true));
      }
    }
  }
  return true;
}

}  // namespace sd35::cuda
