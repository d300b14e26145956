// Kernels of the convolution path: im2col for one band of output rows, and the epilogue
// that adds the bias to the f32 GEMM result and stores it (rounded once) into y's layout.
#include "backend/cuda/cuda_activation.cuh"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_lt_matmul.h"

namespace sd35::cuda {
namespace {

// col[(c*KH + ky)*KW + kx, p] with p = (oh - oh0)*OW + ow: the input pixel under kernel tap
// (ky, kx) of output pixel (oh, ow), or 0 in the zero padding.
__global__ void im2col_kernel(Im2colArgs a, int64_t total) {
  const int64_t p_count = a.band_rows * a.ow;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / p_count, p = i - row * p_count;
    const int64_t kx = row % a.kw, ky = (row / a.kw) % a.kh, c = row / (a.kw * a.kh);
    const int64_t oh = a.oh0 + p / a.ow, ow = p % a.ow;
    const int64_t iy = oh * a.stride - a.pad_top + ky, ix = ow * a.stride - a.pad_left + kx;
    float v = 0.0f;
    if (iy >= 0 && iy < a.height && ix >= 0 && ix < a.width)
      v = load_f32(a.x, a.x_dtype, c * a.xs_c + iy * a.xs_h + ix * a.xs_w);
    store_f32(a.col, a.col_dtype, i, v);
  }
}

__global__ void conv_epilogue_kernel(const float* acc, const float* bias, void* y, DType yt,
                                     int64_t ys_o, int64_t ys_h, int64_t ys_w, int64_t oc,
                                     int64_t oh0, int64_t p_count, int64_t ow) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < oc * p_count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = i / p_count, p = i - o * p_count;
    float v = acc[i];
    if (bias) v += bias[o];
    store_f32(y, yt, o * ys_o + (oh0 + p / ow) * ys_h + (p % ow) * ys_w, v);
  }
}

// D[i, j] (column-major, ld ldd) = act(Σ_k opA[i, k]·opB[k, j] (+ D) (+ bias[i])); one thread
// per output element. Only used when cuBLASLt has no algorithm for a layout.
__global__ void matmul_fallback_kernel(LtMatmul mm) {
  for (int64_t j = blockIdx.y * int64_t(blockDim.y) + threadIdx.y; j < mm.n;
       j += int64_t(gridDim.y) * blockDim.y) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < mm.m;
         i += int64_t(gridDim.x) * blockDim.x) {
      float acc = 0.0f;
      for (int64_t k = 0; k < mm.k; ++k) {
        const int64_t ai = mm.transpose_a ? k + i * mm.lda : i + k * mm.lda;
        const int64_t bi = mm.transpose_b ? j + k * mm.ldb : k + j * mm.ldb;
        acc = fmaf(load_f32(mm.a, mm.a_type, ai), load_f32(mm.b, mm.b_type, bi), acc);
      }
      const int64_t di = i + j * mm.ldd;
      if (mm.accumulate) acc += load_f32(mm.d, mm.d_type, di);
      if (mm.bias) acc += load_f32(mm.bias, mm.bias_type, i);
      store_f32(mm.d, mm.d_type, di, apply_activation(mm.activation, acc));
    }
  }
}

}  // namespace

Status launch_matmul_fallback(const LtMatmul& mm, cudaStream_t stream) {
  if (mm.m == 0 || mm.n == 0) return ok_status();
  const dim3 block(32, 8);
  const dim3 grid(unsigned(std::min<int64_t>((mm.m + 31) / 32, 1 << 20)),
                  unsigned(std::min<int64_t>((mm.n + 7) / 8, 65535)));
  matmul_fallback_kernel<<<grid, block, 0, stream>>>(mm);
  return launch_status("gemm (fallback kernel)");
}

Status launch_im2col(const Im2colArgs& a, cudaStream_t stream) {
  const int64_t total = a.channels * a.kh * a.kw * a.band_rows * a.ow;
  if (total == 0) return ok_status();
  im2col_kernel<<<grid_for(total), 256, 0, stream>>>(a, total);
  return launch_status("conv2d im2col");
}

Status launch_conv_epilogue(const float* acc, const float* bias, void* y, DType y_dtype,
                            int64_t ys_o, int64_t ys_h, int64_t ys_w, int64_t out_channels,
                            int64_t oh0, int64_t band_rows, int64_t ow, cudaStream_t stream) {
  const int64_t p_count = band_rows * ow;
  if (out_channels * p_count == 0) return ok_status();
  conv_epilogue_kernel<<<grid_for(out_channels * p_count), 256, 0, stream>>>(
      acc, bias, y, y_dtype, ys_o, ys_h, ys_w, out_channels, oh0, p_count, ow);
  return launch_status("conv2d epilogue");
}

}  // namespace sd35::cuda
