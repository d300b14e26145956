// DeviceMemory of one GPU. With a stream (a backend's memory) copies are queued on it and the
// stream is synchronised, so they are ordered after the backend's queued kernels; without
// one (weight memory) they are plain synchronous cudaMemcpy calls.
#pragma once

#include <cuda_runtime_api.h>

#include "core/device_memory.h"

namespace sd35::cuda {

class CudaMemory final : public DeviceMemory {
 public:
  CudaMemory(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  Device device() const override { return Device::kCUDA; }
  Result<void*> allocate(size_t bytes) override;
  void deallocate(void* p) noexcept override;
  Status copy_to_device(void* dst, const void* src_host, size_t bytes) override;
  Status copy_to_host(void* dst_host, const void* src, size_t bytes) override;
  Status copy_on_device(void* dst, const void* src, size_t bytes) override;
  Status mem_info(size_t* free_bytes, size_t* total_bytes) const override;

 private:
  Status copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what);
  int device_;
  cudaStream_t stream_;
};

}  // namespace sd35::cuda
