// Generic attention: f32 math on CUDA cores, any dtype of f32/bf16/f16, head_dim 1..512,
// optional causal mask and additive bias, any element strides (no alignment needs).
//
// Covers everything the tensor-core kernel does not: the f32 golden mode (tolerance 1e-4
// against f64), the VAE mid-block (one head, D = 512, L up to 16384), CLIP (causal) and T5
// (bias [H, Lq, Lk]).
//
// Layout: a CTA of 8 warps owns 8·kRows query rows of one (batch, head); a warp owns kRows
// rows. A lane holds dims lane + 32c (c < kDch) of its rows' q and of their f32 output
// accumulators. Keys go in tiles of 32, staged in shared memory as f32 [32][32·kDch] (zero
// padded past D and past the last key), K first, then V in the same buffer:
//   scores: each lane forms partial dot products over its dims for all 32 keys, then a
//           butterfly reduce-scatter (16+8+4+2+1 shuffles per row) leaves lane j holding the
//           full score of key j — so the softmax's per-key work is one lane per key;
//   softmax: online, in the log2 domain: t = (dot·scale + bias)·log2e, running max m and
//           sum l per row (l kept per lane, reduced once at the end), exact exp2f;
//   P·V:    o[r][c] += p_j · V[j][lane + 32c], p_j broadcast with a shuffle.
// kRows (rows per warp) is 4 for D <= 64, 2 up to D = 256 and 1 above, keeping the per-lane
// partial sums, q and o in registers without spills. Causal CTAs stop at their last row's
// key; a row with no visible key (only possible with an all -inf bias) writes zeros, not NaN.
// Measured on an H100: ~7 TFLOP/s for both f32 D = 64 (B=2, H=24, L=4250: 31 ms) and the
// VAE's D = 512, L = 16384 (75 ms) — CUDA-core f32 math bound by shared-memory loads.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/attention_kernels.cuh"

namespace sd35::cuda::detail {
namespace {

constexpr int kWarps = 8;
constexpr int kKeys = 32;  // keys per tile = lanes

template <typename T>
struct GenericParams {
  const T* q;
  const T* k;
  const T* v;
  T* out;
  const float* bias;  // [heads, lq, lk] or nullptr
  int64_t q_sb, q_sl, k_sb, k_sl, v_sb, v_sl, o_sb, o_sl;
  int lq, lk, d;
  float scale;
  bool causal;
};

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) {
  return __float2half_rn(x);
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// v[j] are this lane's partial sums for keys j = 0..31; returns the full (all-lane) sum for
// key j = lane. Each step halves the values a lane keeps: the lane whose `off` bit is clear
// keeps the lower half and receives its partner's lower half, and vice versa.
template <int kOff>
__device__ __forceinline__ void reduce_scatter_step(float (&v)[kKeys], bool upper) {
#pragma unroll
  for (int i = 0; i < kOff; ++i) {
    const float send = upper ? v[i] : v[i + kOff];
    const float keep = upper ? v[i + kOff] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, kOff);
  }
}
// Steps spelled out (not a loop over the offset) so every index is a compile-time constant
// and v stays in registers.
__device__ __forceinline__ float reduce_scatter32(float (&v)[kKeys], int lane) {
  reduce_scatter_step<16>(v, (lane & 16) != 0);
  reduce_scatter_step<8>(v, (lane & 8) != 0);
  reduce_scatter_step<4>(v, (lane & 4) != 0);
  reduce_scatter_step<2>(v, (lane & 2) != 0);
  reduce_scatter_step<1>(v, (lane & 1) != 0);
  return v[0];
}

// Stages rows [k0, k0 + 32) of one head of k or v into buf[32][32·kDch] as f32; zero past
// the valid keys (nk) and past D so the unguarded reads below see zeros, never garbage.
template <typename T, int kDch>
__device__ __forceinline__ void stage_tile(float* buf, const T* base, int64_t row_stride, int k0,
                                           int nk, int d) {
  constexpr int kDp = 32 * kDch;
  for (int idx = threadIdx.x; idx < kKeys * kDp; idx += kWarps * 32) {
    const int j = idx / kDp, c = idx % kDp;
    buf[idx] = (j < nk && c < d) ? to_f32(base[(k0 + j) * row_stride + c]) : 0.0f;
  }
}

template <typename T, int kDch, int kRows>
__global__ void __launch_bounds__(kWarps * 32) generic_attention_kernel(const GenericParams<T> p) {
  constexpr int kDp = 32 * kDch;
  constexpr int kBlockRows = kWarps * kRows;
  extern __shared__ float buf[];  // [32][kDp]: the K tile, then the V tile

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = blockIdx.y, b = blockIdx.z;
  const int cta_row0 = blockIdx.x * kBlockRows;
  const int row0 = cta_row0 + warp * kRows;
  const T* qb = p.q + b * p.q_sb + int64_t(h) * p.d;
  const T* kb = p.k + b * p.k_sb + int64_t(h) * p.d;
  const T* vb = p.v + b * p.v_sb + int64_t(h) * p.d;
  const float* bias_h = p.bias ? p.bias + int64_t(h) * p.lq * p.lk : nullptr;

  float q[kRows][kDch], o[kRows][kDch];
  float m_run[kRows], l_run[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = row0 + r;
#pragma unroll
    for (int c = 0; c < kDch; ++c) {
      const int dd = lane + 32 * c;
      q[r][c] = (i < p.lq && dd < p.d) ? to_f32(qb[i * p.q_sl + dd]) : 0.0f;
      o[r][c] = 0.0f;
    }
    m_run[r] = -INFINITY;
    l_run[r] = 0.0f;
  }

  // Keys this CTA can see: all of them, or with the causal mask up to its last valid row.
  int kend = p.lk;
  if (p.causal) {
    const int last_row = min(p.lq - 1, cta_row0 + kBlockRows - 1);
    kend = min(p.lk, last_row + 1);
  }

  for (int k0 = 0; k0 < kend; k0 += kKeys) {
    const int nk = min(kKeys, kend - k0);
    __syncthreads();  // the previous V tile is consumed
    stage_tile<T, kDch>(buf, kb, p.k_sl, k0, nk, p.d);
    __syncthreads();

    const int key = k0 + lane;
    float pj[kRows];  // this lane's key's probability numerator, per row
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float part[kKeys];
#pragma unroll
      for (int j = 0; j < kKeys; ++j) {
        float acc = 0.0f;
#pragma unroll
        for (int c = 0; c < kDch; ++c) acc = fmaf(q[r][c], buf[j * kDp + lane + 32 * c], acc);
        part[j] = acc;
      }
      const float dot = reduce_scatter32(part, lane);
      const int i = row0 + r;
      float t = dot * p.scale;
      if (bias_h && i < p.lq && lane < nk) t += bias_h[int64_t(i) * p.lk + key];
      t *= 1.4426950408889634f;  // log2(e): exp2 below
      if (lane >= nk || (p.causal && key > i)) t = -INFINITY;
      const float m_new = fmaxf(m_run[r], warp_max(t));
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no visible key yet
      const float alpha = exp2f(m_run[r] - m_use);
      m_run[r] = m_new;
      pj[r] = exp2f(t - m_use);
      l_run[r] = l_run[r] * alpha + pj[r];
#pragma unroll
      for (int c = 0; c < kDch; ++c) o[r][c] *= alpha;
    }

    __syncthreads();  // the K tile is consumed
    stage_tile<T, kDch>(buf, vb, p.v_sl, k0, nk, p.d);
    __syncthreads();

#pragma unroll 4
    for (int j = 0; j < kKeys; ++j) {
      float vj[kDch];
#pragma unroll
      for (int c = 0; c < kDch; ++c) vj[c] = buf[j * kDp + lane + 32 * c];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float pr = __shfl_sync(0xffffffffu, pj[r], j);
#pragma unroll
        for (int c = 0; c < kDch; ++c) o[r][c] = fmaf(pr, vj[c], o[r][c]);
      }
    }
  }

  T* ob = p.out + b * p.o_sb + int64_t(h) * p.d;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float l = warp_sum(l_run[r]);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const int i = row0 + r;
    if (i >= p.lq) continue;
#pragma unroll
    for (int c = 0; c < kDch; ++c) {
      const int dd = lane + 32 * c;
      if (dd < p.d) ob[i * p.o_sl + dd] = from_f32<T>(o[r][c] * inv);
    }
  }
}

template <typename T, int kDch, int kRows>
cudaError_t launch_typed(const AttentionArgs& a, cudaStream_t stream) {
  GenericParams<T> p;
  p.q = static_cast<const T*>(a.q);
  p.k = static_cast<const T*>(a.k);
  p.v = static_cast<const T*>(a.v);
  p.out = static_cast<T*>(a.out);
  p.bias = a.bias;
  p.q_sb = a.q_sb, p.q_sl = a.q_sl, p.k_sb = a.k_sb, p.k_sl = a.k_sl;
  p.v_sb = a.v_sb, p.v_sl = a.v_sl, p.o_sb = a.o_sb, p.o_sl = a.o_sl;
  p.lq = a.lq, p.lk = a.lk, p.d = a.head_dim;
  p.scale = a.scale;
  p.causal = a.causal;
  constexpr int kBlockRows = kWarps * kRows;
  const size_t smem = size_t(kKeys) * 32 * kDch * sizeof(float);  // up to 64 KiB (D = 512)
  auto kernel = generic_attention_kernel<T, kDch, kRows>;
  if (smem > 48 * 1024) {
    // Above 48 KiB needs the opt-in; every sm_80+ part allows at least 99 KiB per block.
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid((a.lq + kBlockRows - 1) / kBlockRows, a.heads, a.batch);
  kernel<<<grid, kWarps * 32, smem, stream>>>(p);
  return cudaGetLastError();
}

// kRows trades register pressure (kRows·(2·kDch + 32) floats) against K reuse per load.
template <typename T>
cudaError_t launch_dtype(const AttentionArgs& a, cudaStream_t stream, int* dch) {
  const int d = a.head_dim;
  if (d <= 32) return *dch = 1, launch_typed<T, 1, 4>(a, stream);
  if (d <= 64) return *dch = 2, launch_typed<T, 2, 4>(a, stream);
  if (d <= 128) return *dch = 4, launch_typed<T, 4, 2>(a, stream);
  if (d <= 256) return *dch = 8, launch_typed<T, 8, 2>(a, stream);
  return *dch = 16, launch_typed<T, 16, 1>(a, stream);
}

}  // namespace

cudaError_t launch_generic(const AttentionArgs& a, cudaStream_t stream, const char** kernel) {
  int dch = 0;
  cudaError_t e;
  switch (a.dtype) {
    case DType::kBF16: e = launch_dtype<__nv_bfloat16>(a, stream, &dch); break;
    case DType::kF16: e = launch_dtype<__half>(a, stream, &dch); break;
    default: e = launch_dtype<float>(a, stream, &dch); break;
  }
  static constexpr const char* kNames[3][5] = {
      {"generic_attention_kernel<f32, D<=32>", "generic_attention_kernel<f32, D<=64>",
       "generic_attention_kernel<f32, D<=128>", "generic_attention_kernel<f32, D<=256>",
       "generic_attention_kernel<f32, D<=512>"},
      {"generic_attention_kernel<bf16, D<=32>", "generic_attention_kernel<bf16, D<=64>",
       "generic_attention_kernel<bf16, D<=128>", "generic_attention_kernel<bf16, D<=256>",
       "generic_attention_kernel<bf16, D<=512>"},
      {"generic_attention_kernel<f16, D<=32>", "generic_attention_kernel<f16, D<=64>",
       "generic_attention_kernel<f16, D<=128>", "generic_attention_kernel<f16, D<=256>",
       "generic_attention_kernel<f16, D<=512>"}};
  const int ti = a.dtype == DType::kBF16 ? 1 : a.dtype == DType::kF16 ? 2 : 0;
  const int di = dch == 1 ? 0 : dch == 2 ? 1 : dch == 4 ? 2 : dch == 8 ? 3 : 4;
  *kernel = kNames[ti][di];
  return e;
}

}  // namespace sd35::cuda::detail
