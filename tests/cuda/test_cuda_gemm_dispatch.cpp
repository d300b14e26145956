// Which kernel takes an f32-x GEMM against stored 16-bit / fp8 weights: the host-side
// dispatch conditions skinny_gemm_supported and smallm_gemm_supported (cuda_gemm.cpp tries
// them in that order before convert + cuBLASLt). Pure host code: runs without a GPU. The
// pointers are never dereferenced, only their alignment is looked at.
#include <gtest/gtest.h>

#include <string>

#include "backend/cuda/cuda_kernels.h"

namespace sd35::cuda {
namespace {

alignas(256) unsigned char g_buffer[256];

SkinnyGemmArgs args(int64_t m, int64_t k, int64_t n, DType wt, int64_t w_offset = 0) {
  SkinnyGemmArgs a;
  a.x = reinterpret_cast<const float*>(g_buffer);
  a.m = m, a.ldx = k;
  a.w = g_buffer + w_offset, a.w_dtype = wt;
  a.n = n, a.k = k;
  a.y = g_buffer, a.ldy = n;
  return a;
}

TEST(CudaGemmDispatch, TextEncoderShapesTakeTheSmallMKernel) {
  // T5-XXL (fp8 e4m3) fc1 / fc2 / attention, CLIP-L and CLIP-G (f16), 77 or 154 tokens.
  const SkinnyGemmArgs text[] = {
      args(77, 4096, 10240, DType::kF8E4M3FN), args(77, 10240, 4096, DType::kF8E4M3FN),
      args(154, 4096, 4096, DType::kF8E4M3FN), args(77, 768, 768, DType::kF16),
      args(77, 1280, 5120, DType::kF16),       args(77, 5120, 1280, DType::kBF16),
      args(77, 4096, 4096, DType::kF8E5M2)};
  for (const SkinnyGemmArgs& a : text) {
    SCOPED_TRACE("m=" + std::to_string(a.m) + " k=" + std::to_string(a.k));
    EXPECT_FALSE(skinny_gemm_supported(a));
    EXPECT_TRUE(smallm_gemm_supported(a));
  }
  // Up to 8 rows the skinny kernel is tried first and takes them.
  EXPECT_TRUE(skinny_gemm_supported(args(8, 4096, 4096, DType::kF8E4M3FN)));
  EXPECT_TRUE(smallm_gemm_supported(args(9, 64, 200, DType::kBF16)));
  EXPECT_TRUE(smallm_gemm_supported(args(kSmallMMaxRows, 64, 200, DType::kBF16)));
}

TEST(CudaGemmDispatch, SmallMKernelDeclinesWhatItCannotRead) {
  EXPECT_FALSE(smallm_gemm_supported(args(kSmallMMaxRows + 1, 64, 200, DType::kBF16)));
  EXPECT_FALSE(smallm_gemm_supported(args(0, 64, 200, DType::kBF16)));
  // Column tiles of 128 along grid.y (at most 65535).
  EXPECT_TRUE(smallm_gemm_supported(args(77, 64, int64_t(65535) * 128, DType::kBF16)));
  EXPECT_FALSE(smallm_gemm_supported(args(77, 64, int64_t(65535) * 128 + 1, DType::kBF16)));
  // Weight rows must be whole 16-byte vectors: k·es a multiple of 16.
  EXPECT_TRUE(smallm_gemm_supported(args(77, 40, 64, DType::kBF16)));
  EXPECT_FALSE(smallm_gemm_supported(args(77, 40, 64, DType::kF8E4M3FN)));
  EXPECT_FALSE(smallm_gemm_supported(args(77, 45, 64, DType::kF16)));
  // A weight base that is not 16-byte aligned.
  EXPECT_FALSE(smallm_gemm_supported(args(77, 64, 64, DType::kBF16, 8)));
  // f32 weights go to cuBLASLt directly; other dtypes are not weights.
  EXPECT_FALSE(smallm_gemm_supported(args(77, 64, 64, DType::kF32)));
  EXPECT_FALSE(smallm_gemm_supported(args(77, 64, 64, DType::kI32)));
  // Rows that overlap (a row stride below k or n).
  SkinnyGemmArgs overlap = args(77, 64, 64, DType::kBF16);
  overlap.ldx = 32;
  EXPECT_FALSE(smallm_gemm_supported(overlap));
  overlap = args(77, 64, 64, DType::kBF16);
  overlap.ldy = 63;
  EXPECT_FALSE(smallm_gemm_supported(overlap));
}

}  // namespace
}  // namespace sd35::cuda
