// Normalisations and softmax. Row ops (layer_norm, rms_norm, softmax): one 256-thread block
// per row, statistics in f32 with the two-pass formulas of the reference (mean, then the
// mean of squared deviations), each row re-read from L1/L2 rather than held in shared memory
// so any row length works. group_norm: a group of the VAE holds up to millions of elements,
// so its statistics are reduced over many blocks (per-chunk f32 partials, combined in f64).
#include "backend/cuda/cuda_activation.cuh"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace sd35::cuda {
namespace {

constexpr int kRowThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

// Sum (or max) over the block; every thread gets the result. `sh` holds 32 floats.
__device__ float block_reduce(float v, float* sh, bool is_max) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = is_max ? warp_max(v) : warp_sum(v);
  __syncthreads();  // sh may still be read by a previous reduction
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

__global__ void row_op_kernel(RowArgs a) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const int64_t xo = layout_offset(a.row_layout, 1, r), yo = layout_offset(a.row_layout, 0, r);
  const int64_t c = a.cols;
  if (a.op == RowOp::kSoftmax) {
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) m = fmaxf(m, load_f32(a.x, a.x_dtype, xo + i));
    m = block_reduce(m, sh, true);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) s += expf(load_f32(a.x, a.x_dtype, xo + i) - m);
    s = block_reduce(s, sh, false);
    const float inv = 1.0f / s;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
      store_f32(a.y, a.y_dtype, yo + i, expf(load_f32(a.x, a.x_dtype, xo + i) - m) * inv);
    return;
  }
  float mean = 0.0f, rstd;
  if (a.op == RowOp::kLayerNorm) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) s += load_f32(a.x, a.x_dtype, xo + i);
    mean = block_reduce(s, sh, false) / float(c);
    float v = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      float d = load_f32(a.x, a.x_dtype, xo + i) - mean;
      v += d * d;
    }
    rstd = rsqrtf(block_reduce(v, sh, false) / float(c) + a.eps);
  } else {
    float v = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      float d = load_f32(a.x, a.x_dtype, xo + i);
      v += d * d;
    }
    rstd = rsqrtf(block_reduce(v, sh, false) / float(c) + a.eps);
  }
  for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
    float v = (load_f32(a.x, a.x_dtype, xo + i) - mean) * rstd;
    if (a.weight) v *= load_f32(a.weight, a.weight_dtype, i);
    if (a.bias) v += load_f32(a.bias, a.bias_dtype, i);
    store_f32(a.y, a.y_dtype, yo + i, v);
  }
}

// Short rows (the MMDiT's per-head q/k RMSNorm: 64 values, ~200k rows per call): one warp per
// row, 8 rows per block, so no thread idles on a 64-wide row and no block barrier is needed.
constexpr int kWarpRowsPerBlock = 8;
constexpr int64_t kWarpRowMaxCols = 512;

__global__ void row_op_warp_kernel(RowArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kWarpRowsPerBlock + (threadIdx.x >> 5);
  if (r >= a.rows) return;  // whole warps leave together: the shuffles stay full-warp
  const int64_t xo = layout_offset(a.row_layout, 1, r), yo = layout_offset(a.row_layout, 0, r);
  const int64_t c = a.cols;
  if (a.op == RowOp::kSoftmax) {
    float m = -INFINITY;
    for (int64_t i = lane; i < c; i += 32) m = fmaxf(m, load_f32(a.x, a.x_dtype, xo + i));
    m = warp_max(m);
    float s = 0.0f;
    for (int64_t i = lane; i < c; i += 32) s += expf(load_f32(a.x, a.x_dtype, xo + i) - m);
    const float inv = 1.0f / warp_sum(s);
    for (int64_t i = lane; i < c; i += 32)
      store_f32(a.y, a.y_dtype, yo + i, expf(load_f32(a.x, a.x_dtype, xo + i) - m) * inv);
    return;
  }
  float mean = 0.0f;
  if (a.op == RowOp::kLayerNorm) {
    float s = 0.0f;
    for (int64_t i = lane; i < c; i += 32) s += load_f32(a.x, a.x_dtype, xo + i);
    mean = warp_sum(s) / float(c);
  }
  float v = 0.0f;
  for (int64_t i = lane; i < c; i += 32) {
    const float d = load_f32(a.x, a.x_dtype, xo + i) - mean;
    v += d * d;
  }
  const float rstd = rsqrtf(warp_sum(v) / float(c) + a.eps);
  for (int64_t i = lane; i < c; i += 32) {
    float o = (load_f32(a.x, a.x_dtype, xo + i) - mean) * rstd;
    if (a.weight) o *= load_f32(a.weight, a.weight_dtype, i);
    if (a.bias) o += load_f32(a.bias, a.bias_dtype, i);
    store_f32(a.y, a.y_dtype, yo + i, o);
  }
}

constexpr int64_t kGroupChunk = 8192;  // elements per partial-sum block

// Partial sums of one chunk of one group: of x (mean == null) or of (x - mean)².
__global__ void group_partial_kernel(const void* x, DType xt, int64_t group_elems,
                                     int64_t chunks, const float* mean, float* partials) {
  __shared__ float sh[32];
  const int64_t gid = blockIdx.x / chunks, chunk = blockIdx.x - gid * chunks;
  const int64_t begin = chunk * kGroupChunk;
  const int64_t end = min(begin + kGroupChunk, group_elems);
  const int64_t base = gid * group_elems;
  const float m = mean ? mean[gid] : 0.0f;
  float s = 0.0f;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float v = load_f32(x, xt, base + i);
    if (mean) {
      v -= m;
      v *= v;
    }
    s += v;
  }
  s = block_reduce(s, sh, false);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// One thread per group: combines the partials in f64; writes the mean, or rstd when
// `mean_known` (partials then hold squared deviations).
__global__ void group_finalize_kernel(const float* partials, int64_t chunks, int64_t total_groups,
                                      int64_t group_elems, float eps, bool mean_known,
                                      float* out) {
  int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (g >= total_groups) return;
  double s = 0.0;
  for (int64_t k = 0; k < chunks; ++k) s += double(partials[g * chunks + k]);
  s /= double(group_elems);
  out[g] = mean_known ? float(1.0 / sqrt(s + double(eps))) : float(s);
}

__global__ void group_apply_kernel(GroupNormArgs a, const float* mean, const float* rstd) {
  const int64_t n = a.batch * a.channels * a.spatial;
  const int64_t cg = a.channels / a.groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t nc = i / a.spatial;
    const int64_t ch = nc % a.channels;
    const int64_t gid = nc / cg;
    float v = (load_f32(a.x, a.x_dtype, i) - mean[gid]) * rstd[gid];
    if (a.weight) v *= load_f32(a.weight, a.weight_dtype, ch);
    if (a.bias) v += load_f32(a.bias, a.bias_dtype, ch);
    store_f32(a.y, a.y_dtype, i, v);
  }
}

int64_t group_chunks(const GroupNormArgs& a) {
  const int64_t group_elems = a.channels / a.groups * a.spatial;
  return (group_elems + kGroupChunk - 1) / kGroupChunk;
}

}  // namespace

Status launch_row_op(const RowArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.cols == 0) return ok_status();
  if (a.rows > 0x7FFFFFFF) return unsupported("row op: more than 2^31 rows");
  if (a.cols <= kWarpRowMaxCols) {
    const int64_t blocks = (a.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    row_op_warp_kernel<<<unsigned(blocks), 32 * kWarpRowsPerBlock, 0, stream>>>(a);
  } else {
    row_op_kernel<<<unsigned(a.rows), kRowThreads, 0, stream>>>(a);
  }
  return launch_status(a.op == RowOp::kSoftmax ? "softmax"
                       : a.op == RowOp::kRmsNorm ? "rms_norm" : "layer_norm");
}

int64_t group_norm_scratch_floats(const GroupNormArgs& a) {
  const int64_t total = a.batch * a.groups;
  return total * group_chunks(a) + 2 * total;
}

Status launch_group_norm(const GroupNormArgs& a, float* scratch, cudaStream_t stream) {
  const int64_t total = a.batch * a.groups;
  const int64_t n = total * (a.channels / a.groups) * a.spatial;
  if (n == 0) return ok_status();
  const int64_t chunks = group_chunks(a), group_elems = a.channels / a.groups * a.spatial;
  if (total * chunks > 0x7FFFFFFF) return unsupported("group_norm: tensor too large");
  float* partials = scratch;
  float* mean = scratch + total * chunks;
  float* rstd = mean + total;
  const unsigned blocks = unsigned(total * chunks), fin_blocks = unsigned((total + 127) / 128);
  group_partial_kernel<<<blocks, 256, 0, stream>>>(a.x, a.x_dtype, group_elems, chunks, nullptr,
                                                   partials);
  group_finalize_kernel<<<fin_blocks, 128, 0, stream>>>(partials, chunks, total, group_elems,
                                                        a.eps, false, mean);
  group_partial_kernel<<<blocks, 256, 0, stream>>>(a.x, a.x_dtype, group_elems, chunks, mean,
                                                   partials);
  group_finalize_kernel<<<fin_blocks, 128, 0, stream>>>(partials, chunks, total, group_elems,
                                                        a.eps, true, rstd);
  group_apply_kernel<<<grid_for(n), 256, 0, stream>>>(a, mean, rstd);
  return launch_status("group_norm");
}

}  // namespace sd35::cuda
