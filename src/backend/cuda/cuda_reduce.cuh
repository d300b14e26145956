// Warp and block reductions shared by the CUDA kernels (norms, the fused LayerNorm +
// modulate, the skinny GEMM). Device code only; include from .cu files.
#pragma once

#include <cuda_runtime.h>

namespace sd35::cuda {

// Sum (max) over the kLanes consecutive lanes of an aligned lane group (kLanes a power of two
// <= 32); every lane of the group gets the result. All 32 lanes of the warp must call it.
template <int kLanes = 32>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}
__device__ __forceinline__ float warp_sum(float v) { return group_sum<32>(v); }
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

// Sum (or max) over the block; every thread gets the result. `sh` holds 32 floats. The
// barrier before writing `sh` keeps a second call from overwriting partials the first is
// still reading.
__device__ __forceinline__ float block_reduce(float v, float* sh, bool is_max) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = is_max ? warp_max(v) : warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? sh[lane] : (is_max ? -INFINITY : 0.0f);
    t = is_max ? warp_max(t) : warp_sum(t);
    if (lane == 0) sh[0] = t;
  }
  __syncthreads();
  return sh[0];
}

}  // namespace sd35::cuda
