// launch_attention: argument checks and the choice between the tensor-core flash kernel
// (attention_flash.cu) and the generic CUDA-core kernel (attention_generic.cu).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "backend/cuda/attention.h"
#include "backend/cuda/attention_kernels.cuh"

namespace sd35::cuda {
namespace {

Status check_args(const AttentionArgs& a) {
  if (a.dtype != DType::kF32 && a.dtype != DType::kBF16 && a.dtype != DType::kF16)
    return invalid_argument("cuda attention: dtype must be f32, bf16 or f16, got " +
                            std::string(dtype_name(a.dtype)));
  if (a.batch < 0 || a.lq < 0 || a.lk < 0)
    return invalid_argument("cuda attention: negative size (batch " + std::to_string(a.batch) +
                            ", lq " + std::to_string(a.lq) + ", lk " + std::to_string(a.lk) + ")");
  if (a.heads < 1) return invalid_argument("cuda attention: heads must be >= 1");
  if (a.head_dim < 1 || a.head_dim > detail::kGenericMaxHeadDim)
    return invalid_argument("cuda attention: head_dim " + std::to_string(a.head_dim) +
                            " outside [1, " + std::to_string(detail::kGenericMaxHeadDim) + "]");
  if (!std::isfinite(a.scale)) return invalid_argument("cuda attention: scale must be finite");
  // Grid y/z carry heads and batch.
  if (a.heads > 65535 || a.batch > 65535)
    return invalid_argument("cuda attention: heads and batch must be <= 65535");
  if (a.batch == 0 || a.lq == 0) return ok_status();  // nothing to compute
  if (a.lk == 0) return invalid_argument("cuda attention: no keys (softmax over an empty set)");
  if (!a.q || !a.k || !a.v || !a.out) return invalid_argument("cuda attention: null q/k/v/out");
  for (int64_t s : {a.q_sb, a.q_sl, a.k_sb, a.k_sl, a.v_sb, a.v_sl, a.o_sb, a.o_sl})
    if (s < 0) return invalid_argument("cuda attention: negative stride");
  if (a.bias && a.lq > 0 && int64_t(a.heads) * a.lq > std::numeric_limits<int64_t>::max() / a.lk)
    return invalid_argument("cuda attention: bias too large");
  return ok_status();
}

// The 128-key K/V tiles (FlashConfig::k128Rows4Warps128Keys) for the large MMDiT shapes:
// fewer per-tile softmax rescales and barriers per key, at 80 KiB of shared memory per CTA.
// Default on sm_90, where an H100 timed them (gpu_check 2026-11-26: MMDiT forward 67.4 ms
// against 69.6 ms with 64-key tiles, conformance passed); elsewhere untimed, so 64-key.
// SD35_CUDA_FLASH_KEYS=64 keeps the 64-key tiles everywhere; =128 asks for 128-key tiles on
// any card where two CTAs fit per SM (sm_80 / sm_90). Read once per process.
bool flash_128_keys_wanted(int sm_major) {
  static const int forced = [] {
    const char* v = std::getenv("SD35_CUDA_FLASH_KEYS");
    if (v != nullptr && std::strcmp(v, "128") == 0) return 128;
    if (v != nullptr && std::strcmp(v, "64") == 0) return 64;
    return 0;
  }();
  return forced == 0 ? sm_major >= 9 : forced == 128;
}

}  // namespace

Status launch_attention(const AttentionArgs& a, cudaStream_t stream, const char** kernel_out) {
  if (Status s = check_args(a); !s.ok()) return s;
  if (a.batch == 0 || a.lq == 0) return ok_status();

  // The current device is the one `stream` belongs to (the caller's contract).
  int device = 0, sm_major = 0, sms = 0, smem_per_sm = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&sm_major, cudaDevAttrComputeCapabilityMajor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  if (e != cudaSuccess)
    return internal_error(std::string("cuda attention: querying the device failed: ") +
                          cudaGetErrorString(e));

  const char* kernel = "?";
  if (sm_major >= 8 && detail::flash_d64_supported(a)) {
    // 128-row CTAs of 4 warps × 32 rows are the fastest shape measured (H100: ~245 TFLOP/s
    // at the MMDiT's 1024² shape, vs ~222 for 64-row CTAs); when they would leave SMs idle
    // (short sequences, one batch), 64-row CTAs of 4 warps × 16 rows spread the work wider.
    const int64_t ctas128 = int64_t((a.lq + 127) / 128) * a.heads * a.batch;
    detail::FlashConfig config =
        ctas128 >= sms ? detail::FlashConfig::k128Rows4Warps : detail::FlashConfig::k64Rows4Warps;
    // Two resident CTAs of the 128-key shape need 2 × 80 KiB (+ 1 KiB each the runtime
    // reserves): sm_80 / sm_90 have it, sm_86 / sm_89 (100 KiB per SM) do not.
    const size_t smem128 =
        detail::flash_smem_bytes(detail::FlashConfig::k128Rows4Warps128Keys) + 1024;
    if (config == detail::FlashConfig::k128Rows4Warps && flash_128_keys_wanted(sm_major) &&
        size_t(smem_per_sm) >= 2 * smem128)
      config = detail::FlashConfig::k128Rows4Warps128Keys;
    e = detail::launch_flash_d64(a, config, stream, &kernel);
  } else {
    e = detail::launch_generic(a, stream, &kernel);
  }
  if (e != cudaSuccess)
    return internal_error(std::string("cuda attention: launching ") + kernel +
                          " failed: " + cudaGetErrorString(e));
  if (kernel_out) *kernel_out = kernel;
  return ok_status();
}

}  // namespace sd35::cuda
