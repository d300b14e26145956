// Launchers and dispatch helpers of the tensor-core flash attention kernel; the kernel, its
// design and measurements are in attention_flash.cuh.
#include "backend/cuda/attention_flash.cuh"

#include <atomic>
#include <cmath>
#include <cstdint>

#include "backend/cuda/attention_kernels.cuh"

namespace sd35::cuda::detail {
namespace {

using flash::FlashParams;
using flash::flash_d64_kernel;
using flash::kD;

template <typename T, int kWarps, int kMT, int kBN, bool kQInRegs>
cudaError_t launch_typed(const AttentionArgs& a, cudaStream_t stream) {
  FlashParams<T> p;
  p.q = static_cast<const T*>(a.q);
  p.k = static_cast<const T*>(a.k);
  p.v = static_cast<const T*>(a.v);
  p.out = static_cast<T*>(a.out);
  p.q_sb = a.q_sb, p.q_sl = a.q_sl, p.k_sb = a.k_sb, p.k_sl = a.k_sl;
  p.v_sb = a.v_sb, p.v_sl = a.v_sl, p.o_sb = a.o_sb, p.o_sl = a.o_sl;
  p.lq = a.lq, p.lk = a.lk;
  p.scale_log2 = a.scale * 1.4426950408889634f;
  constexpr int kBM = kWarps * 16 * kMT;
  constexpr int kSmemBytes = (kBM + 4 * kBN) * kD * 2;
  auto* kernel = flash_d64_kernel<T, kWarps, kMT, kBN, kQInRegs>;
  if constexpr (kSmemBytes > 48 * 1024) {
    // Above 48 KiB of dynamic shared memory a kernel must opt in, once per device (the
    // attribute is per device context). Done on the first launch, which is eager: a later
    // launch inside a CUDA-graph capture then makes no runtime call besides the launch.
    static std::atomic<uint64_t> opted_in{0};
    int device = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) return e;
    const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
    if (bit == 0 || (opted_in.load(std::memory_order_acquire) & bit) == 0) {
      e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
      if (e != cudaSuccess) return e;
      opted_in.fetch_or(bit, std::memory_order_acq_rel);
    }
  }
  const dim3 grid((a.lq + kBM - 1) / kBM, a.heads, a.batch);
  kernel<<<grid, kWarps * 32, kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_config(const AttentionArgs& a, FlashConfig c, cudaStream_t stream) {
  switch (c) {
    case FlashConfig::k128Rows8Warps: return launch_typed<T, 8, 1, 64, true>(a, stream);
    case FlashConfig::k64Rows4Warps: return launch_typed<T, 4, 1, 64, true>(a, stream);
    case FlashConfig::k128Rows4Warps: return launch_typed<T, 4, 2, 64, true>(a, stream);
    case FlashConfig::k128Rows4Warps128Keys: return launch_typed<T, 4, 2, 128, false>(a, stream);
  }
  return cudaErrorInvalidValue;
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

bool flash_d64_supported(const AttentionArgs& a) {
  if (a.dtype != DType::kBF16 && a.dtype != DType::kF16) return false;
  if (a.head_dim != kD || a.causal || a.bias != nullptr) return false;
  // The kernel takes the row max of the raw scores and masks tails with -inf before
  // scaling, both of which need a positive scale (always so in practice: 1/sqrt(D)).
  if (!(a.scale > 0.0f)) return false;
  // cp.async moves 16-byte chunks (8 elements) of q/k/v rows; the output is stored as
  // element pairs (4 bytes).
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v)) return false;
  for (int64_t s : {a.q_sb, a.q_sl, a.k_sb, a.k_sl, a.v_sb, a.v_sl})
    if (s % 8 != 0) return false;
  if ((reinterpret_cast<uintptr_t>(a.out) & 3) != 0 || a.o_sb % 2 != 0 || a.o_sl % 2 != 0)
    return false;
  return true;
}

const char* flash_config_name(FlashConfig c) {
  switch (c) {
    case FlashConfig::k128Rows8Warps: return "128 rows, 8 warps x 16";
    case FlashConfig::k64Rows4Warps: return "64 rows, 4 warps x 16";
    case FlashConfig::k128Rows4Warps: return "128 rows, 4 warps x 32";
    case FlashConfig::k128Rows4Warps128Keys: return "128 rows, 4 warps x 32, 128 keys";
  }
  return "?";
}

size_t flash_smem_bytes(FlashConfig c) {
  switch (c) {
    case FlashConfig::k128Rows8Warps: return (128 + 4 * 64) * kD * 2;
    case FlashConfig::k64Rows4Warps: return (64 + 4 * 64) * kD * 2;
    case FlashConfig::k128Rows4Warps: return (128 + 4 * 64) * kD * 2;
    case FlashConfig::k128Rows4Warps128Keys: return (128 + 4 * 128) * kD * 2;
  }
  return 0;
}

cudaError_t launch_flash_d64(const AttentionArgs& a, FlashConfig config, cudaStream_t stream,
                             const char** kernel) {
  const bool bf16 = a.dtype == DType::kBF16;
  static constexpr int kConfigs = 4;
  static constexpr const char* kNames[2][kConfigs] = {
      {"flash_d64_kernel<f16, 128 rows, 8 warps x 16>",
       "flash_d64_kernel<f16, 64 rows, 4 warps x 16>",
       "flash_d64_kernel<f16, 128 rows, 4 warps x 32>",
       "flash_d64_kernel<f16, 128 rows, 4 warps x 32, 128 keys>"},
      {"flash_d64_kernel<bf16, 128 rows, 8 warps x 16>",
       "flash_d64_kernel<bf16, 64 rows, 4 warps x 16>",
       "flash_d64_kernel<bf16, 128 rows, 4 warps x 32>",
       "flash_d64_kernel<bf16, 128 rows, 4 warps x 32, 128 keys>"}};
  const int ci = static_cast<int>(config);
  *kernel = ci >= 0 && ci < kConfigs ? kNames[bf16 ? 1 : 0][ci] : "flash_d64_kernel<?>";
  return bf16 ? launch_config<__nv_bfloat16>(a, config, stream)
              : launch_config<__half>(a, config, stream);
}

}  // namespace sd35::cuda::detail
