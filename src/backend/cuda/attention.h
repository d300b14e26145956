// CUDA scaled dot-product attention: out = softmax(q·kᵀ·scale [+ bias] [causal]) · v, with an
// online softmax (the Lq×Lk score matrix is never materialised) and f32 accumulation.
//
// Two kernels sit behind launch_attention (see attention.cu for the dispatch):
//   * a tensor-core flash kernel (mma.sync m16n8k16, sm_80+) for bf16/f16, head_dim 64, no
//     causal mask and no bias — the MMDiT hot path;
//   * a generic f32-math kernel for everything else (f32 "golden" mode, the VAE's D = 512
//     single head, CLIP's causal mask, T5's additive bias), any head_dim in [1, 512].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "sd35/status.h"

namespace sd35::cuda {

struct AttentionArgs {  // element strides; batch, seq, feature (head h uses features [h*D,(h+1)*D))
  const void* q;
  const void* k;
  const void* v;
  void* out;
  DType dtype;  // f32, bf16 or f16 (q, k, v, out share it)
  int batch, heads, head_dim, lq, lk;
  int64_t q_sb, q_sl, k_sb, k_sl, v_sb, v_sl, o_sb, o_sl;
  float scale;
  bool causal = false;          // key j > query i excluded (CLIP)
  const float* bias = nullptr;  // additive [heads, lq, lk] contiguous f32, added to the scaled
                                // scores (T5), or nullptr
};

// Queues the attention on `stream` (asynchronous; nothing is synchronised). Returns
// invalid_argument for bad arguments (null pointers, non-positive sizes, head_dim > 512,
// unsupported dtype, lk == 0 with lq > 0) and internal_error naming the kernel when a launch
// fails. batch == 0 or lq == 0 is a no-op.
// *kernel (optional) receives a readable name of the kernel chosen (for profile labels).
Status launch_attention(const AttentionArgs& a, cudaStream_t stream,
                        const char** kernel = nullptr);

}  // namespace sd35::cuda
