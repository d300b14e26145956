// Per-backend device scratch: a few grow-only buffers, one per purpose, reused by every op.
// A denoising step asks for the same sizes each time, so after the first step nothing is
// allocated. Growing synchronises the backend's stream first (queued kernels may still read
// the old buffer) and frees it before allocating the larger one.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>

#include "sd35/status.h"

namespace sd35::cuda {

enum class ScratchSlot : int {
  kWeight,     // weights converted to the GEMM's compute dtype
  kBias,       // bias converted to f32
  kGemmOut,    // f32 GEMM results before the epilogue
  kIm2col,     // conv2d column matrix of one band
  kInput,      // activations repacked for a GEMM (rows with unusual strides)
  kStats,      // reduction partials and statistics
  kMisc,       // small staging (attention bias, ...)
  kAttnScores, // f32 scores of one query block (attention by GEMMs)
  kAttnProbs,  // their softmax in the compute dtype
  kConvWorkspace,  // cuDNN's conv2d workspace (<= 256 MiB, cudnn_conv.cpp)
  kConvInput,      // a band of conv2d's 16-bit x widened to f32 for cuDNN (<= 256 MiB)
  kCount,
};

class ScratchPool {
 public:
  ScratchPool(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  ~ScratchPool();
  ScratchPool(const ScratchPool&) = delete;
  ScratchPool& operator=(const ScratchPool&) = delete;

  // At least `bytes` of device memory for `slot` (contents undefined), 256-byte aligned.
  Result<void*> get(ScratchSlot slot, size_t bytes, const char* op);
  // Total bytes held (for diagnostics).
  size_t held_bytes() const;

 private:
  struct Buffer {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  int device_;
  cudaStream_t stream_;
  std::array<Buffer, size_t(ScratchSlot::kCount)> buffers_{};
};

}  // namespace sd35::cuda
