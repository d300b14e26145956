// Internal: the attention kernels' launchers, shared by attention.cu (dispatch and argument
// checks) and the kernel files. Not part of the backend's interface; include attention.h.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/attention.h"

namespace sd35::cuda::detail {

// Each launcher assumes launch_attention has validated `a` (sizes positive, head_dim and
// grid limits, pointers non-null) and only queues the kernel. It returns the launch's
// cudaGetLastError and sets *kernel to a readable kernel name for the error message.

// Tensor-core path: bf16/f16, head_dim == 64, scale > 0, no causal mask, no bias, q/k/v
// 16-byte aligned rows (flash_d64_supported). The CTA shapes: query rows per CTA, warps, and
// rows per warp (16: one m-tile; 32: two m-tiles sharing every K/V fragment); keys per K/V
// tile are 64 unless named (128: 80 KiB of shared memory, needs an sm_80 or sm_90 class SM
// to keep two CTAs resident — see flash_smem_bytes).
enum class FlashConfig { k128Rows8Warps, k64Rows4Warps, k128Rows4Warps, k128Rows4Warps128Keys };
const char* flash_config_name(FlashConfig c);
size_t flash_smem_bytes(FlashConfig c);  // dynamic shared memory per CTA
bool flash_d64_supported(const AttentionArgs& a);
cudaError_t launch_flash_d64(const AttentionArgs& a, FlashConfig config, cudaStream_t stream,
                             const char** kernel);

// Generic path: any of f32/bf16/f16, head_dim 1..512, causal and/or bias, any strides.
cudaError_t launch_generic(const AttentionArgs& a, cudaStream_t stream, const char** kernel);

constexpr int kGenericMaxHeadDim = 512;

}  // namespace sd35::cuda::detail
