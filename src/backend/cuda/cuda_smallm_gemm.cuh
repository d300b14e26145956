// Small-M GEMM: y[m, n] = (accumulate ? y : 0) + act(Σ_k x[m, k]·w[n, k] + bias[n]) for f32 x
// of up to kSmallMMaxRows rows (the text encoders: 77 tokens per prompt, 154 for two) against
// bf16 / f16 / fp8 weights read in place. f32 FFMA accumulation in k order, no TF32 and no
// tensor cores: the text encoders' f32 mode must stay close to the f32 goldens (~1e-4).
//
// Why this beats converting the weight and running an f32 cuBLASLt GEMM: the GEMM at these
// shapes is FFMA-bound (77×10240×4096 is 3.2 GFMA, ~0.1 ms of an H100's f32 peak), but the
// convert path first moves N·K·(es + 4) bytes to write the f32 copy and N·K·4 more to read it
// back — for T5's 10240×4096 fp8 fc1 that is 42 MB read + 168 MB written + 168 MB read
// (378 MB, > 0.12 ms of HBM alone plus one more launch) against 42 MB read once here (re-read
// from L2 by the ⌈M/32⌉ row tiles). The last H100 profile has that GEMM at 0.40 ms and
// CLIP-L's 768×768 at 0.61 ms (for 9e7 FLOPs) on the convert path.
//
// Tiling (classic register-tiled SGEMM): a CTA of 256 threads computes a 32-row × 128-column
// tile of y, walking k in tiles of 32 with two shared-memory buffers (the global loads of tile
// t+1 are issued into registers before tile t's FMAs and stored after them, one barrier per k
// tile). Weights are decoded to f32 as they are staged, transposed to ws[k][n]; x is staged
// as xs[m][k]. Each thread owns 4 rows (rg, rg+8, rg+16, rg+24) × 4 adjacent columns; a warp
// covers 4 row groups × 8 column groups, so per 4 k steps a thread issues 4 LDS.128 of x (4
// distinct addresses per warp, broadcast) and 4 LDS.128 of w (128 contiguous bytes per warp)
// for 64 FFMA, without bank conflicts. 32 rows (not 64) per tile keeps the padding of 77 rows
// at 96 (not 128). Ragged M/N/K edges are zero-filled on load and masked on store; x and y
// are read/written with scalar accesses at any row stride; the weight needs 16-byte rows
// (K·es a multiple of 16, 16-byte aligned base) — smallm_gemm_supported says so.
//
// Resources (nvcc 13.0, -Xptxas -v): sm_90 109 registers for bf16/f16 (two staged weight
// vectors per thread), 99 for e4m3/e5m2; sm_80 110 / 96; 0 bytes stack, 0 spill stores/loads;
// 41,984 bytes of static shared memory (two x tiles 32×36 f32 + two w tiles 32×128 f32).
// __launch_bounds__(256, 2): two CTAs (16 warps) per SM by registers.
//
// Device code only, in a header so that tests/cuda/test_cuda_smallm_emulated.cpp can run the
// same kernel on the CPU (one std::thread per CUDA thread) where no GPU is present; the
// launcher and the dispatch condition are in cuda_smallm_gemm.cu.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "backend/cuda/cuda_activation.cuh"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace sd35::cuda::smallm {

constexpr int kBM = 32;        // rows of y per CTA
constexpr int kBN = 128;       // columns of y per CTA
constexpr int kBK = 32;        // k values per shared-memory tile
constexpr int kThreads = 256;  // 8 warps: 2 (rows) × 4 (columns) warp tiles of 16 × 32
constexpr int kXStride = kBK + 4;  // floats per staged x row: 16-byte aligned, reads conflict-free

template <DType kW>
inline constexpr int kWeightBytes = (kW == DType::kBF16 || kW == DType::kF16) ? 2 : 1;

// The weights of one 16-byte vector as f32 (exact: every 16-bit and fp8 value is an f32).
// Hopper/Ada convert fp8 pairs in hardware (cvt.rn.f16x2.e4m3x2/e5m2x2 via cuda_fp8.h, low
// byte first, exact into f16); older GPUs use the bit-exact conversions of cuda_dtype.cuh.
template <DType kW>
__device__ __forceinline__ void decode_vector(const uint4& raw, float* out) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = words[i];
    if constexpr (kW == DType::kBF16) {
      out[2 * i] = __uint_as_float(v << 16);
      out[2 * i + 1] = __uint_as_float(v & 0xFFFF0000u);
    } else if constexpr (kW == DType::kF16) {
      out[2 * i] = __half2float(__ushort_as_half(uint16_t(v & 0xFFFFu)));
      out[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(v >> 16)));
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
      constexpr __nv_fp8_interpretation_t kInterp =
          kW == DType::kF8E4M3FN ? __NV_E4M3 : __NV_E5M2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const __half2_raw p = __nv_cvt_fp8x2_to_halfraw2(
            __nv_fp8x2_storage_t((v >> (16 * h)) & 0xFFFFu), kInterp);
        out[4 * i + 2 * h] = __half2float(__half(__half_raw{p.x}));
        out[4 * i + 2 * h + 1] = __half2float(__half(__half_raw{p.y}));
      }
#else
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const uint8_t byte = uint8_t(v >> (8 * b));
        out[4 * i + b] = kW == DType::kF8E4M3FN ? dev_f8e4m3fn_to_f32(byte)
                                                : dev_f8e5m2_to_f32(byte);
      }
#endif
    }
  }
}

template <DType kW>
__global__ void __launch_bounds__(kThreads, 2) smallm_gemm_kernel(SkinnyGemmArgs a) {
  constexpr int kEs = kWeightBytes<kW>;
  constexpr int kPerVec = 16 / kEs;                     // weights per 16-byte vector
  constexpr int kVecsPerRow = kBK / kPerVec;            // vectors per weight row and k tile
  constexpr int kWLoads = kBN * kVecsPerRow / kThreads;  // vectors per thread and k tile
  static_assert(kBK % kPerVec == 0 && (kBN * kVecsPerRow) % kThreads == 0);
  static_assert(kBK == 32 && kThreads == 8 * kBK, "x staging: one k per lane, 8 rows a pass");

  __shared__ __align__(16) float xs[2][kBM][kXStride];
  __shared__ __align__(16) float ws[2][kBK][kBN];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int rg = (warp >> 2) * 4 + (lane >> 3);  // rows rg + 8i of the tile, i < 4
  const int cg = (warp & 3) * 8 + (lane & 7);    // columns 4cg .. 4cg + 3 of the tile
  // Row tiles along x: the CTAs that share a weight panel are launched together, so its
  // re-reads by the ⌈M/32⌉ row tiles hit L2.
  const int64_t m0 = int64_t(blockIdx.x) * kBM, n0 = int64_t(blockIdx.y) * kBN;
  const char* wbase = static_cast<const char*>(a.w);

  // Staging registers: x element (k = lane, rows warp + 8i) — a warp reads 128 contiguous
  // bytes of one row; weight vectors v = tid + j·256 at (row v % kBN, k chunk v / kBN) — a
  // warp stores 32 consecutive columns of one k row of ws.
  float xreg[4];
  uint4 wreg[kWLoads];
  auto load = [&](int64_t k0) {
    const int64_t k = k0 + lane;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = m0 + warp + 8 * i;
      xreg[i] = (r < a.m && k < a.k) ? a.x[r * a.ldx + k] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) {
      const int v = tid + j * kThreads;
      const int64_t n = n0 + v % kBN, kc = k0 + int64_t(v / kBN) * kPerVec;
      // K is a multiple of kPerVec: a vector is wholly inside the row or wholly past it.
      wreg[j] = (n < a.n && kc < a.k)
                    ? *reinterpret_cast<const uint4*>(wbase + (n * a.k + kc) * kEs)
                    : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  auto stage = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 4; ++i) xs[buf][warp + 8 * i][lane] = xreg[i];
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) {
      const int v = tid + j * kThreads;
      float f[kPerVec];
      decode_vector<kW>(wreg[j], f);
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) ws[buf][(v / kBN) * kPerVec + e][v % kBN] = f[e];
    }
  };

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  const int64_t tiles = (a.k + kBK - 1) / kBK;
  load(0);
  stage(0);
  __syncthreads();
  for (int64_t t = 0; t < tiles; ++t) {
    const int buf = int(t & 1);
    const bool more = t + 1 < tiles;
    if (more) load((t + 1) * kBK);
#pragma unroll
    for (int k4 = 0; k4 < kBK; k4 += 4) {
      float4 xv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        xv[i] = *reinterpret_cast<const float4*>(&xs[buf][rg + 8 * i][k4]);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const float4 wv = *reinterpret_cast<const float4*>(&ws[buf][k4 + kk][4 * cg]);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float xi = kk == 0 ? xv[i].x : kk == 1 ? xv[i].y : kk == 2 ? xv[i].z : xv[i].w;
          acc[i][0] = fmaf(xi, wv.x, acc[i][0]);
          acc[i][1] = fmaf(xi, wv.y, acc[i][1]);
          acc[i][2] = fmaf(xi, wv.z, acc[i][2]);
          acc[i][3] = fmaf(xi, wv.w, acc[i][3]);
        }
      }
    }
    // The other buffer was last read in iteration t - 1, before its closing barrier.
    if (more) stage(buf ^ 1);
    __syncthreads();
  }

  // Epilogue, the order of launch_gemm_epilogue and the skinny kernel: bias (its own dtype,
  // added in f32), activation, then the stored y when accumulating; rounded once into y.
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t n = n0 + 4 * cg + j;
    if (n >= a.n) continue;
    const float b = a.bias ? load_f32(a.bias, a.bias_dtype, n) : 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = m0 + rg + 8 * i;
      if (r >= a.m) continue;
      float s = apply_activation(a.act, acc[i][j] + b);
      const int64_t yi = r * a.ldy + n;
      if (a.accumulate) s += load_f32(a.y, a.y_dtype, yi);
      store_f32(a.y, a.y_dtype, yi, s);
    }
  }
}

}  // namespace sd35::cuda::smallm
