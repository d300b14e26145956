// Elementwise kernels: the generic strided op (add/mul/affine/activation/modulate/gated_add/
// convert), byte-exact copies, contiguous conversions and the gemm epilogue. Grid-stride
// loops; the contiguous fast path skips the index arithmetic. Dtypes are runtime values
// (uniform branches), which keeps the number of instantiations — and compile time — small.
#include <algorithm>

#include "backend/cuda/cuda_activation.cuh"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace sd35::cuda {
namespace {

__device__ __forceinline__ float ew_apply(const EwArgs& a, float v0, float v1, float v2) {
  switch (a.op) {
    case EwOp::kConvert: return v0;
    case EwOp::kAdd: return v0 + v1;
    case EwOp::kMul: return v0 * v1;
    case EwOp::kAffine: {
      float v = v0 * a.scale + a.shift;
      v = v < a.lo ? a.lo : v;  // a NaN v stays NaN
      return v > a.hi ? a.hi : v;
    }
    case EwOp::kActivate: return apply_activation(a.act, v0);
    case EwOp::kModulate: return v0 * (1.0f + v2) + v1;
    case EwOp::kGatedAdd: return v0 + v1 * v2;
  }
  return v0;
}

__device__ __forceinline__ int ew_inputs(EwOp op) {
  switch (op) {
    case EwOp::kAdd:
    case EwOp::kMul: return 2;
    case EwOp::kModulate:
    case EwOp::kGatedAdd: return 3;
    default: return 1;
  }
}

__global__ void elementwise_kernel(EwArgs a, int64_t n) {
  const int inputs = ew_inputs(a.op);
  const bool small = n <= 0x7FFFFFFF;  // 32-bit index arithmetic suffices
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v[3] = {0.0f, 0.0f, 0.0f};
    int64_t out_off = i;
    if (a.layout.contiguous) {
      for (int k = 0; k < inputs; ++k) v[k] = load_f32(a.in[k], a.in_dtype[k], i);
    } else {
      int64_t off[4];
      if (small)
        layout_offsets32(a.layout, inputs + 1, uint32_t(i), off);
      else
        layout_offsets(a.layout, inputs + 1, i, off);
      out_off = off[0];
      for (int k = 0; k < inputs; ++k) v[k] = load_f32(a.in[k], a.in_dtype[k], off[k + 1]);
    }
    store_f32(a.out, a.out_dtype, out_off, ew_apply(a, v[0], v[1], v[2]));
  }
}

__global__ void row_broadcast_kernel(RowBroadcastArgs a) {
  const int64_t r = blockIdx.x;
  const int64_t b = r / a.rows_per_batch;
  const int64_t xo = r * a.x_rs, oo = r * a.out_rs, p1o = b * a.p1_bs;
  if (a.op == EwOp::kModulate) {
    const int64_t p2o = b * a.p2_bs;
    for (int64_t c = threadIdx.x; c < a.cols; c += blockDim.x) {
      const float x = load_f32(a.x, a.x_dtype, xo + c);
      const float shift = load_f32(a.p1, a.p1_dtype, p1o + c);
      const float scale = load_f32(a.p2, a.p2_dtype, p2o + c);
      store_f32(a.out, a.out_dtype, oo + c, x * (1.0f + scale) + shift);
    }
  } else {
    const int64_t ho = r * a.h_rs;
    for (int64_t c = threadIdx.x; c < a.cols; c += blockDim.x) {
      const float x = load_f32(a.x, a.x_dtype, xo + c);
      const float gate = load_f32(a.p1, a.p1_dtype, p1o + c);
      const float h = load_f32(a.h, a.h_dtype, ho + c);
      store_f32(a.out, a.out_dtype, oo + c, x + gate * h);
    }
  }
}

template <typename T>
__global__ void copy_raw_kernel(T* dst, const T* src, StridedLayout l, int64_t n) {
  const bool small = n <= 0x7FFFFFFF;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (l.contiguous) {
      dst[i] = src[i];
    } else {
      int64_t off[2];
      if (small)
        layout_offsets32(l, 2, uint32_t(i), off);
      else
        layout_offsets(l, 2, i, off);
      dst[off[0]] = src[off[1]];
    }
  }
}

__global__ void convert_kernel(const void* src, DType st, void* dst, DType dt, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store_f32(dst, dt, i, load_f32(src, st, i));
}

__global__ void gather_rows_kernel(const void* table, DType tt, int64_t ts, const int32_t* ids,
                                   void* out, DType ot, int64_t os, int64_t n, int64_t d) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * d;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / d, c = i - r * d;
    store_f32(out, ot, r * os + c, load_f32(table, tt, int64_t(ids[r]) * ts + c));
  }
}

// One block row per output row (grid.y, folded when rows exceed 65535) and columns across
// threads: no per-element index division, coalesced along the row.
__global__ void gemm_epilogue_kernel(const float* acc, int64_t ld_acc, const void* bias,
                                     DType bias_type, Activation act, bool accumulate, void* y,
                                     DType yt, int64_t ld_y, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* a = acc + r * ld_acc;
    for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols;
         c += int64_t(gridDim.x) * blockDim.x) {
      float v = a[c];
      if (bias) v += load_f32(bias, bias_type, c);
      v = apply_activation(act, v);
      // Accumulate adds the stored (already rounded) y, then rounds once — as the reference.
      if (accumulate) v += load_f32(y, yt, r * ld_y + c);
      store_f32(y, yt, r * ld_y + c, v);
    }
  }
}

}  // namespace

#ifndef SD35_CUDA_DEVICE_CODE_ONLY  // the launchers; tests/cuda/cuda_emulation.h runs the kernels
Status launch_elementwise(const EwArgs& a, cudaStream_t stream) {
  int64_t n = 1;
  for (int d = 0; d < a.layout.ndim; ++d) n *= a.layout.shape[d];
  if (n == 0) return ok_status();
  elementwise_kernel<<<grid_for(n), 256, 0, stream>>>(a, n);
  return launch_status(a.name);
}

Status launch_copy_raw(void* dst, const void* src, int elem_size, const StridedLayout& layout,
                       cudaStream_t stream) {
  int64_t n = 1;
  for (int d = 0; d < layout.ndim; ++d) n *= layout.shape[d];
  if (n == 0) return ok_status();
  const unsigned g = grid_for(n);
  switch (elem_size) {
    case 1:
      copy_raw_kernel<<<g, 256, 0, stream>>>(static_cast<uint8_t*>(dst),
                                             static_cast<const uint8_t*>(src), layout, n);
      break;
    case 2:
      copy_raw_kernel<<<g, 256, 0, stream>>>(static_cast<uint16_t*>(dst),
                                             static_cast<const uint16_t*>(src), layout, n);
      break;
    case 4:
      copy_raw_kernel<<<g, 256, 0, stream>>>(static_cast<uint32_t*>(dst),
                                             static_cast<const uint32_t*>(src), layout, n);
      break;
    case 8:
      copy_raw_kernel<<<g, 256, 0, stream>>>(static_cast<uint64_t*>(dst),
                                             static_cast<const uint64_t*>(src), layout, n);
      break;
    default: return internal_error("copy: unsupported element size " + std::to_string(elem_size));
  }
  return launch_status("copy");
}

Status launch_convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n,
                      cudaStream_t stream) {
  if (n == 0) return ok_status();
  convert_kernel<<<grid_for(n), 256, 0, stream>>>(src, src_type, dst, dst_type, n);
  return launch_status("convert");
}

Status launch_gather_rows(const void* table, DType table_dtype, int64_t table_row_stride,
                          const int32_t* ids, void* out, DType out_dtype, int64_t out_row_stride,
                          int64_t n, int64_t d, cudaStream_t stream) {
  if (n * d == 0) return ok_status();
  gather_rows_kernel<<<grid_for(n * d), 256, 0, stream>>>(
      table, table_dtype, table_row_stride, ids, out, out_dtype, out_row_stride, n, d);
  return launch_status("gather_rows");
}

Status launch_gemm_epilogue(const float* acc, int64_t ld_acc, const void* bias, DType bias_type,
                            Activation act, bool accumulate, void* y, DType y_dtype, int64_t ld_y,
                            int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return ok_status();
  constexpr int kThreads = 256;
  const dim3 grid(unsigned(std::min<int64_t>((cols + kThreads - 1) / kThreads, 1 << 16)),
                  unsigned(std::min<int64_t>(rows, 65535)));
  gemm_epilogue_kernel<<<grid, kThreads, 0, stream>>>(acc, ld_acc, bias, bias_type, act,
                                                      accumulate, y, y_dtype, ld_y, rows, cols);
  return launch_status("gemm epilogue");
}

Status launch_row_broadcast(const RowBroadcastArgs& a, cudaStream_t stream) {
  const int64_t rows = a.batch * a.rows_per_batch;
  if (rows == 0 || a.cols == 0) return ok_status();
  if (rows > 0x7FFFFFFF) return unsupported("row broadcast: more than 2^31 rows");
  const int threads = a.cols >= 1024 ? 256 : 128;
  row_broadcast_kernel<<<unsigned(rows), threads, 0, stream>>>(a);
  return launch_status(a.op == EwOp::kModulate ? "modulate" : "gated_add");
}

#endif  // SD35_CUDA_DEVICE_CODE_ONLY

}  // namespace sd35::cuda
