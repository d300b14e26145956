// Fused LayerNorm (no affine) + adaLN modulate for the MMDiT: one block per row, the row held
// in registers (kPerThread values per thread) between the two statistics passes and the
// store, so x is read from memory once and y written once — the two-op path (layer_norm into
// an f32 scratch, then modulate) reads and writes the activations twice. Rows longer than
// kPerThread·kMaxThreads fall back to re-reading x from L1/L2 for each pass.
//
// Loads are scalar and coalesced (consecutive threads, consecutive elements): correct for
// any D, any row stride and any alignment of the column chunks shift/scale, at the cost of
// some bandwidth against float4 loads.
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_norm_modulate.h"
#include "backend/cuda/cuda_reduce.cuh"

namespace sd35::cuda {
namespace {

constexpr int kPerThread = 8;  // D = 1536 -> 192 threads, 8 values each
constexpr int kMaxThreads = 1024;

template <bool kInRegisters>
__global__ void layer_norm_modulate_kernel(LayerNormModulateArgs a) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const int64_t b = r / a.len, l = r - b * a.len;
  const float* x = a.x + b * a.x_bs + l * a.x_rs;
  const float* shift = a.shift + b * a.shift_bs;
  const float* scale = a.scale + b * a.scale_bs;
  const int64_t yo = b * a.y_bs + l * a.y_rs;
  const int64_t d = a.cols;
  const int tid = threadIdx.x, nt = blockDim.x;

  [[maybe_unused]] float v[kPerThread];  // the row (register path only)
  float s = 0.0f;
  if constexpr (kInRegisters) {
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t i = tid + int64_t(k) * nt;
      v[k] = i < d ? x[i] : 0.0f;
      s += v[k];
    }
  } else {
    for (int64_t i = tid; i < d; i += nt) s += x[i];
  }
  const float mean = block_reduce(s, sh, false) / float(d);

  float q = 0.0f;
  if constexpr (kInRegisters) {
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const float dv = v[k] - mean;
      if (tid + int64_t(k) * nt < d) q += dv * dv;
    }
  } else {
    for (int64_t i = tid; i < d; i += nt) {
      const float dv = x[i] - mean;
      q += dv * dv;
    }
  }
  // Every read of x above happened before this barrier, so writing y == x below is safe.
  const float rstd = rsqrtf(block_reduce(q, sh, false) / float(d) + a.eps);

  if constexpr (kInRegisters) {
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t i = tid + int64_t(k) * nt;
      if (i < d) {
        const float n = (v[k] - mean) * rstd;
        store_f32(a.y, a.y_dtype, yo + i, fmaf(n, 1.0f + scale[i], shift[i]));
      }
    }
  } else {
    // Element i is read and then written by the same thread: in place stays correct.
    for (int64_t i = tid; i < d; i += nt) {
      const float n = (x[i] - mean) * rstd;
      store_f32(a.y, a.y_dtype, yo + i, fmaf(n, 1.0f + scale[i], shift[i]));
    }
  }
}

}  // namespace

#ifndef SD35_CUDA_DEVICE_CODE_ONLY  // the launcher; tests/cuda/cuda_emulation.h runs the kernel
Status launch_layer_norm_modulate(const LayerNormModulateArgs& a, cudaStream_t stream) {
  const int64_t rows = a.batch * a.len;
  if (rows == 0 || a.cols == 0) return ok_status();
  if (rows > 0x7FFFFFFF) return unsupported("layer_norm_modulate: more than 2^31 rows");
  // Just enough whole warps for kPerThread values per thread (D = 7 -> one warp).
  const int64_t need = (a.cols + kPerThread - 1) / kPerThread;
  if (need <= kMaxThreads) {
    const int threads = int((need + 31) / 32 * 32);
    layer_norm_modulate_kernel<true><<<unsigned(rows), threads, 0, stream>>>(a);
  } else {
    layer_norm_modulate_kernel<false><<<unsigned(rows), kMaxThreads / 4, 0, stream>>>(a);
  }
  return launch_status("layer_norm_modulate");
}

#endif  // SD35_CUDA_DEVICE_CODE_ONLY

}  // namespace sd35::cuda
