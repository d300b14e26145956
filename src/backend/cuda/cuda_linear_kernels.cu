// Kernels of the convolution path: im2col for one band of output rows, and the epilogue
// that adds the bias to the f32 GEMM result and stores it (rounded once) into y's layout.
#include <algorithm>

#include "backend/cuda/cuda_activation.cuh"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_lt_matmul.h"
#include "backend/cuda/cuda_reduce.cuh"

namespace sd35::cuda {
namespace {

// col[(c*KH + ky)*KW + kx, p] with p = (oh - oh0)*OW + ow: the input pixel under kernel tap
// (ky, kx) of output pixel (oh, ow), or 0 in the zero padding. One column-matrix row per
// grid.y (its c, ky, kx computed once per block), pixels across grid.x: the only per-element
// division is a 32-bit p / OW (a band has far fewer than 2^31 pixels, checked by the launcher).
__global__ void im2col_kernel(Im2colArgs a, uint32_t p_count) {
  const uint32_t ow = uint32_t(a.ow);
  for (int64_t row = blockIdx.y; row < a.channels * a.kh * a.kw; row += gridDim.y) {
    const int64_t kx = row % a.kw, ky = (row / a.kw) % a.kh, c = row / (a.kw * a.kh);
    const int64_t x_base = c * a.xs_c;
    const int64_t col_base = row * int64_t(p_count);
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < p_count;
         p += gridDim.x * blockDim.x) {
      const uint32_t r = p / ow, q = p - r * ow;
      const int64_t iy = (a.oh0 + r) * a.stride - a.pad_top + ky;
      const int64_t ix = int64_t(q) * a.stride - a.pad_left + kx;
      float v = 0.0f;
      if (iy >= 0 && iy < a.height && ix >= 0 && ix < a.width)
        v = load_f32(a.x, a.x_dtype, x_base + iy * a.xs_h + ix * a.xs_w);
      store_f32(a.col, a.col_dtype, col_base + p, v);
    }
  }
}

// y[o, oh0 + p / OW, p % OW] = acc[o·P + p] + bias[o]: one output channel per grid.y.
__global__ void conv_epilogue_kernel(const float* acc, const float* bias, void* y, DType yt,
                                     int64_t ys_o, int64_t ys_h, int64_t ys_w, int64_t oc,
                                     int64_t oh0, uint32_t p_count, uint32_t ow) {
  for (int64_t o = blockIdx.y; o < oc; o += gridDim.y) {
    const float b = bias ? bias[o] : 0.0f;
    const float* src = acc + o * int64_t(p_count);
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < p_count;
         p += gridDim.x * blockDim.x) {
      const uint32_t r = p / ow, q = p - r * ow;
      store_f32(y, yt, o * ys_o + (oh0 + r) * ys_h + int64_t(q) * ys_w, src[p] + b);
    }
  }
}

// D[i, j] (column-major, ld ldd) = act(α·Σ_k opA[i, k]·opB[k, j] (+ D) (+ bias[i])); one thread
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
      acc *= mm.alpha;
      if (mm.accumulate) acc += load_f32(mm.d, mm.d_type, di);
      if (mm.bias) acc += load_f32(mm.bias, mm.bias_type, i);
      store_f32(mm.d, mm.d_type, di, apply_activation(mm.activation, acc));
    }
  }
}

template <DType kW>
__device__ __forceinline__ float decode_weight(uint32_t bits) {
  if constexpr (kW == DType::kBF16) return dev_bf16_to_f32(uint16_t(bits));
  if constexpr (kW == DType::kF16) return dev_f16_to_f32(uint16_t(bits));
  if constexpr (kW == DType::kF8E4M3FN) return dev_f8e4m3fn_to_f32(uint8_t(bits));
  return dev_f8e5m2_to_f32(uint8_t(bits));
}

template <DType kW>
__global__ void skinny_gemm_kernel(SkinnyGemmArgs a) {
  constexpr int kEs = (kW == DType::kBF16 || kW == DType::kF16) ? 2 : 1;
  constexpr int kVec = 16 / kEs;            // weights per 16-byte vector
  constexpr int kPerWord = 4 / kEs;         // weights per 32-bit word
  constexpr uint32_t kMask = kEs == 2 ? 0xFFFFu : 0xFFu;
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (n >= a.n) return;  // n is uniform over the warp: whole warps leave together
  float acc[kSkinnyMaxRows];
#pragma unroll
  for (int r = 0; r < kSkinnyMaxRows; ++r) acc[r] = 0.0f;
  const uint4* wrow =
      reinterpret_cast<const uint4*>(static_cast<const char*>(a.w) + n * a.k * kEs);
  const int64_t vecs = a.k / kVec;
  for (int64_t v = lane; v < vecs; v += 32) {
    const uint4 raw = wrow[v];
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
    float wf[kVec];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < kPerWord; ++j)
        wf[i * kPerWord + j] = decode_weight<kW>((words[i] >> (j * 8 * kEs)) & kMask);
    const int64_t k0 = v * kVec;
#pragma unroll
    for (int r = 0; r < kSkinnyMaxRows; ++r) {
      if (r < a.m) {
        const float* xr = a.x + r * a.ldx + k0;
#pragma unroll
        for (int i = 0; i < kVec; ++i) acc[r] = fmaf(xr[i], wf[i], acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSkinnyMaxRows; ++r) {
    if (r < a.m) {
      float s = warp_sum(acc[r]);
      if (lane == 0) {
        if (a.bias) s += load_f32(a.bias, a.bias_dtype, n);
        s = apply_activation(a.act, s);
        const int64_t yi = r * a.ldy + n;
        // Accumulate adds the stored y after the activation, as the reference and the
        // gemm epilogue do.
        if (a.accumulate) s += load_f32(a.y, a.y_dtype, yi);
        store_f32(a.y, a.y_dtype, yi, s);
      }
    }
  }
}

}  // namespace

#ifndef SD35_CUDA_DEVICE_CODE_ONLY  // the launchers; tests/cuda/cuda_emulation.h runs the kernels
Status launch_matmul_fallback(const LtMatmul& mm, cudaStream_t stream) {
  if (mm.m == 0 || mm.n == 0) return ok_status();
  const dim3 block(32, 8);
  const dim3 grid(unsigned(std::min<int64_t>((mm.m + 31) / 32, 1 << 20)),
                  unsigned(std::min<int64_t>((mm.n + 7) / 8, 65535)));
  matmul_fallback_kernel<<<grid, block, 0, stream>>>(mm);
  return launch_status("gemm (fallback kernel)");
}

// Grid of `work_per_row` pixels across x (grid-stride beyond 2^16 blocks) and `rows` rows
// across y (grid-stride beyond 65535).
static dim3 rows_by_pixels_grid(int64_t rows, int64_t work_per_row, int threads) {
  return dim3(unsigned(std::min<int64_t>((work_per_row + threads - 1) / threads, 1 << 16)),
              unsigned(std::min<int64_t>(rows, 65535)));
}

Status launch_im2col(const Im2colArgs& a, cudaStream_t stream) {
  const int64_t rows = a.channels * a.kh * a.kw, p_count = a.band_rows * a.ow;
  if (rows * p_count == 0) return ok_status();
  if (p_count > 0x7FFFFFFF) return unsupported("conv2d: a band of more than 2^31 pixels");
  im2col_kernel<<<rows_by_pixels_grid(rows, p_count, 256), 256, 0, stream>>>(
      a, uint32_t(p_count));
  return launch_status("conv2d im2col");
}

Status launch_conv_epilogue(const float* acc, const float* bias, void* y, DType y_dtype,
                            int64_t ys_o, int64_t ys_h, int64_t ys_w, int64_t out_channels,
                            int64_t oh0, int64_t band_rows, int64_t ow, cudaStream_t stream) {
  const int64_t p_count = band_rows * ow;
  if (out_channels * p_count == 0) return ok_status();
  if (p_count > 0x7FFFFFFF) return unsupported("conv2d: a band of more than 2^31 pixels");
  conv_epilogue_kernel<<<rows_by_pixels_grid(out_channels, p_count, 256), 256, 0, stream>>>(
      acc, bias, y, y_dtype, ys_o, ys_h, ys_w, out_channels, oh0, uint32_t(p_count),
      uint32_t(ow));
  return launch_status("conv2d epilogue");
}

bool skinny_gemm_supported(const SkinnyGemmArgs& a) {
  const int es = in_place_weight_bytes(a.w_dtype);
  if (es == 0) return false;
  return a.m >= 1 && a.m <= kSkinnyMaxRows && a.k > 0 && (a.k * es) % 16 == 0 &&
         alignment_of(a.w) >= 16 && a.n <= int64_t(0x7FFFFFFF) * 8;
}

Status launch_skinny_gemm(const SkinnyGemmArgs& a, cudaStream_t stream) {
  if (!skinny_gemm_supported(a)) return internal_error("gemm: skinny kernel given unsupported arguments");
  if (a.n == 0) return ok_status();
  constexpr int kWarps = 8;
  const unsigned blocks = unsigned((a.n + kWarps - 1) / kWarps);
  switch (a.w_dtype) {
    case DType::kBF16: skinny_gemm_kernel<DType::kBF16><<<blocks, 32 * kWarps, 0, stream>>>(a); break;
    case DType::kF16: skinny_gemm_kernel<DType::kF16><<<blocks, 32 * kWarps, 0, stream>>>(a); break;
    case DType::kF8E4M3FN:
      skinny_gemm_kernel<DType::kF8E4M3FN><<<blocks, 32 * kWarps, 0, stream>>>(a);
      break;
    default: skinny_gemm_kernel<DType::kF8E5M2><<<blocks, 32 * kWarps, 0, stream>>>(a); break;
  }
  return launch_status("gemm (skinny kernel)");
}

#endif  // SD35_CUDA_DEVICE_CODE_ONLY

}  // namespace sd35::cuda
