// Launcher and dispatch condition of the small-M GEMM; the kernel and why it beats
// convert + cuBLASLt are in cuda_smallm_gemm.cuh.
#include "backend/cuda/cuda_smallm_gemm.cuh"

namespace sd35::cuda {

using smallm::kBM;
using smallm::kBN;
using smallm::kThreads;
using smallm::smallm_gemm_kernel;

bool smallm_gemm_supported(const SkinnyGemmArgs& a) {
  const int es = in_place_weight_bytes(a.w_dtype);
  if (es == 0) return false;
  return a.x != nullptr && a.y != nullptr && a.m >= 1 && a.m <= kSmallMMaxRows && a.k > 0 &&
         (a.k * es) % 16 == 0 && alignment_of(a.w) >= 16 && a.ldx >= a.k && a.ldy >= a.n &&
         a.n <= int64_t(65535) * kBN;  // column tiles along grid.y
}

Status launch_smallm_gemm(const SkinnyGemmArgs& a, cudaStream_t stream) {
  if (!smallm_gemm_supported(a))
    return internal_error("gemm: small-M kernel given unsupported arguments");
  if (a.n == 0) return ok_status();
  const dim3 grid(unsigned((a.m + kBM - 1) / kBM), unsigned((a.n + kBN - 1) / kBN));
  switch (a.w_dtype) {
    case DType::kBF16: smallm_gemm_kernel<DType::kBF16><<<grid, kThreads, 0, stream>>>(a); break;
    case DType::kF16: smallm_gemm_kernel<DType::kF16><<<grid, kThreads, 0, stream>>>(a); break;
    case DType::kF8E4M3FN:
      smallm_gemm_kernel<DType::kF8E4M3FN><<<grid, kThreads, 0, stream>>>(a);
      break;
    default: smallm_gemm_kernel<DType::kF8E5M2><<<grid, kThreads, 0, stream>>>(a); break;
  }
  return launch_status("gemm (small-M kernel)");
}

}  // namespace sd35::cuda
