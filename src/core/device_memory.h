// DeviceMemory: where a tensor's bytes live and how they move. The host implementation is
// plain malloc/memcpy; the CUDA backend provides one per device (cudaMalloc, copies on the
// backend's stream). The engine code is written against this interface so the same model
// code runs with weights and scratch in host or in GPU memory: host-computed values (a
// timestep embedding, a positional-embedding crop) are staged in host memory and moved with
// copy_to_device; nothing outside a backend dereferences device memory.
#pragma once

#include <cstddef>

#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35 {

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  virtual Device device() const = 0;
  // At least 256-byte aligned; fails cleanly (ResourceExhausted) when the device is full.
  virtual Result<void*> allocate(size_t bytes) = 0;
  virtual void deallocate(void* p) noexcept = 0;
  // Synchronous with respect to the host: when these return, the bytes have arrived (device
  // work queued earlier on the same backend has completed before a copy_to_host).
  virtual Status copy_to_device(void* dst, const void* src_host, size_t bytes) = 0;
  virtual Status copy_to_host(void* dst_host, const void* src, size_t bytes) = 0;
  virtual Status copy_on_device(void* dst, const void* src, size_t bytes) = 0;
  // Free and total bytes of this memory (host: available and total RAM).
  virtual Status mem_info(size_t* free_bytes, size_t* total_bytes) const = 0;
};

// The process-wide host memory (thread-safe; never destroyed).
DeviceMemory& host_memory();

}  // namespace sd35
