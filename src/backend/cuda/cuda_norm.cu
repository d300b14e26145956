// Normalisations and softmax. Row ops (layer_norm, rms_norm, softmax): one 256-thread block
// per row, statistics in f32 with the two-pass formulas of the reference (mean, then the
// mean of squared deviations), each row re-read from L1/L2 rather than held in shared memory
// so any row length works. group_norm: a group of the VAE holds up to millions of elements,
// so its statistics are reduced over many blocks (per-chunk f32 partials, combined in f64).
#include <algorithm>

#include "backend/cuda/cuda_activation.cuh"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_reduce.cuh"

namespace sd35::cuda {
namespace {

constexpr int kRowThreads = 256;

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

// Short dense rows of layer_norm / rms_norm with x and y of one dtype (the q/k RMSNorm: 64
// bf16 values = 128 bytes, ~200k rows per call): kTpr threads per row, each holding one
// 16-byte vector in registers, so the row is read once and written once with full-width
// coalesced accesses; statistics reduce over the kTpr lanes with xor shuffles. In place is
// safe (every value is loaded before any is stored). kEs is the element size (4 f32, 2 bf16
// or f16). The two-pass formulas are the generic kernels'; only the summation order differs.
template <int kTpr, int kEs>
__global__ void row_norm_vec_kernel(RowArgs a) {
  constexpr int kN = 16 / kEs;  // values per thread
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t r = t / kTpr;
  const int part = int(t % kTpr);
  const bool live = r < a.rows;  // dead lanes still join the shuffles (full-warp masks)
  float v[kN];
  int64_t off[2] = {0, 0};
  if (live) {
    layout_offsets(a.row_layout, 2, r, off);
    const int64_t base = off[1] + int64_t(part) * kN;
    const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const char*>(a.x) + base * kEs);
    if constexpr (kEs == 4) {
      v[0] = __uint_as_float(raw.x), v[1] = __uint_as_float(raw.y);
      v[2] = __uint_as_float(raw.z), v[3] = __uint_as_float(raw.w);
    } else {
      const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint16_t lo = uint16_t(w[i] & 0xFFFFu), hi = uint16_t(w[i] >> 16);
        v[2 * i] = a.x_dtype == DType::kBF16 ? dev_bf16_to_f32(lo) : dev_f16_to_f32(lo);
        v[2 * i + 1] = a.x_dtype == DType::kBF16 ? dev_bf16_to_f32(hi) : dev_f16_to_f32(hi);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < kN; ++i) v[i] = 0.0f;
  }
  const float c = float(a.cols);
  float mean = 0.0f;
  if (a.op == RowOp::kLayerNorm) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kN; ++i) s += v[i];
    mean = group_sum<kTpr>(s) / c;
  }
  float q = 0.0f;
#pragma unroll
  for (int i = 0; i < kN; ++i) q += (v[i] - mean) * (v[i] - mean);
  const float rstd = rsqrtf(group_sum<kTpr>(q) / c + a.eps);
  if (!live) return;
  const int64_t col0 = int64_t(part) * kN;
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    float o = (v[i] - mean) * rstd;
    if (a.weight) o *= load_f32(a.weight, a.weight_dtype, col0 + i);
    if (a.bias) o += load_f32(a.bias, a.bias_dtype, col0 + i);
    v[i] = o;
  }
  uint4 out;
  if constexpr (kEs == 4) {
    out = make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]),
                     __float_as_uint(v[3]));
  } else {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const bool bf = a.y_dtype == DType::kBF16;
      const uint32_t lo = bf ? dev_f32_to_bf16(v[2 * i]) : dev_f32_to_f16(v[2 * i]);
      const uint32_t hi = bf ? dev_f32_to_bf16(v[2 * i + 1]) : dev_f32_to_f16(v[2 * i + 1]);
      w[i] = lo | (hi << 16);
    }
    out = make_uint4(w[0], w[1], w[2], w[3]);
  }
  *reinterpret_cast<uint4*>(static_cast<char*>(a.y) + (off[0] + col0) * kEs) = out;
}

// Threads per row for the vector kernel (a power of two up to 32), or 0 when the row op does
// not fit it: a norm, x and y of one dtype, rows of 16-byte vectors, every row start 16-byte
// aligned in both tensors.
int vec_threads_per_row(const RowArgs& a) {
  if (a.op == RowOp::kSoftmax || a.x_dtype != a.y_dtype) return 0;
  if (a.x_dtype != DType::kF32 && a.x_dtype != DType::kBF16 && a.x_dtype != DType::kF16) return 0;
  const int64_t es = a.x_dtype == DType::kF32 ? 4 : 2;
  const int64_t row_bytes = a.cols * es;
  if (row_bytes % 16 != 0) return 0;
  const int64_t tpr = row_bytes / 16;
  if (tpr > 32 || (tpr & (tpr - 1)) != 0) return 0;
  if (alignment_of(a.x) < 16 || alignment_of(a.y) < 16) return 0;
  for (int op = 0; op < 2; ++op)
    for (int d = 0; d < a.row_layout.ndim; ++d)
      if ((a.row_layout.stride[op][d] * es) % 16 != 0) return 0;
  return int(tpr);
}

constexpr int kVecThreads = 256;  // threads per block of row_norm_vec_kernel

#ifndef SD35_CUDA_DEVICE_CODE_ONLY  // the launchers; tests/cuda/cuda_emulation.h runs the kernels
template <int kEs>
void launch_row_norm_vec(const RowArgs& a, int tpr, cudaStream_t stream) {
  constexpr int kThreads = kVecThreads;
  const int64_t blocks = (a.rows * tpr + kThreads - 1) / kThreads;
  switch (tpr) {
    case 1: row_norm_vec_kernel<1, kEs><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    case 2: row_norm_vec_kernel<2, kEs><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    case 4: row_norm_vec_kernel<4, kEs><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    case 8: row_norm_vec_kernel<8, kEs><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    case 16: row_norm_vec_kernel<16, kEs><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    default: row_norm_vec_kernel<32, kEs><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
  }
}
#endif  // SD35_CUDA_DEVICE_CODE_ONLY

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

// f32 value v as stored in dtype t and read back (what a later op on y would load).
__device__ __forceinline__ float round_through(DType t, float v) {
  switch (t) {
    case DType::kBF16: return dev_bf16_to_f32(dev_f32_to_bf16(v));
    case DType::kF16: return dev_f16_to_f32(dev_f32_to_f16(v));
    default: return v;
  }
}

// Normalise + affine (+ SiLU). Blocks along y own (n, c) planes, so the plane's group,
// statistics and affine pair are read once per block; the previous flat grid-stride loop did
// three 64-bit divisions per element to find them, which dominated its time (VAE group norms
// at 1024²: ~1.5 ms for 512 MB of f32, ~3× the bandwidth bound).
__global__ void group_apply_kernel(GroupNormArgs a, const float* mean, const float* rstd) {
  const int64_t planes = a.batch * a.channels;
  const int64_t cg = a.channels / a.groups;
  for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    const int64_t ch = plane % a.channels, gid = plane / cg;  // plane = n·C + c
    const float m = mean[gid], r = rstd[gid];
    const float w = a.weight ? load_f32(a.weight, a.weight_dtype, ch) : 1.0f;
    const float b = a.bias ? load_f32(a.bias, a.bias_dtype, ch) : 0.0f;
    const int64_t base = plane * a.spatial;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < a.spatial;
         i += int64_t(gridDim.x) * blockDim.x) {
      float v = (load_f32(a.x, a.x_dtype, base + i) - m) * r;
      if (a.weight) v *= w;
      if (a.bias) v += b;
      if (a.silu) v = apply_activation(Activation::kSilu, round_through(a.y_dtype, v));
      store_f32(a.y, a.y_dtype, base + i, v);
    }
  }
}

int64_t group_chunks(const GroupNormArgs& a) {
  const int64_t group_elems = a.channels / a.groups * a.spatial;
  return (group_elems + kGroupChunk - 1) / kGroupChunk;
}

}  // namespace

#ifndef SD35_CUDA_DEVICE_CODE_ONLY
Status launch_row_op(const RowArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.cols == 0) return ok_status();
  if (a.rows > 0x7FFFFFFF) return unsupported("row op: more than 2^31 rows");
  if (const int tpr = vec_threads_per_row(a); tpr > 0) {
    if (a.x_dtype == DType::kF32) {
      launch_row_norm_vec<4>(a, tpr, stream);
    } else {
      launch_row_norm_vec<2>(a, tpr, stream);
    }
  } else if (a.cols <= kWarpRowMaxCols) {
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
  const int64_t planes = a.batch * a.channels;
  // ~4 elements per thread along a plane; planes beyond 65535 loop inside the blocks.
  const dim3 apply_grid(unsigned(std::clamp<int64_t>((a.spatial + 1023) / 1024, 1, 65535)),
                        unsigned(std::min<int64_t>(planes, 65535)));
  group_apply_kernel<<<apply_grid, 256, 0, stream>>>(a, mean, rstd);
  return launch_status("group_norm");
}

#endif  // SD35_CUDA_DEVICE_CODE_ONLY

}  // namespace sd35::cuda
