// Host <-> backend-device transfers for engine code. Model code never dereferences a tensor
// that may live in device memory: values computed on the host (a timestep sinusoid, T5's
// position bias, token ids) are written through a HostStaging and uploaded; results the host
// needs are downloaded. On a host backend every helper here degrades to a direct write or
// nothing at all, so the CPU path keeps its speed (no staging copy of a host tensor).
#pragma once

#include <cstddef>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35 {

// A host-writable image of the contiguous tensor `dst`. When dst is host memory, data()
// points at dst itself and commit() does nothing; otherwise data() is a host buffer that
// commit() uploads with dst's backend memory.
class HostStaging {
 public:
  HostStaging(Backend& backend, const Tensor& dst);
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  template <typename T>
  T* data() {
    return static_cast<T*>(ptr_);
  }
  // Uploads (device) or nothing (host). Fails when dst is not contiguous.
  Status commit();

 private:
  Backend& backend_;
  Tensor dst_;
  std::vector<std::byte> buffer_;
  void* ptr_ = nullptr;
};

// Copies the contiguous `src` (host or the backend's device) into `host_dst` bytes.
Status download_bytes(Backend& backend, const Tensor& src, void* host_dst);
// Copies `host_src` bytes into the contiguous `dst` (host or the backend's device).
Status upload_bytes(Backend& backend, const void* host_src, const Tensor& dst);

// `t` on the backend's device: itself when it already is, else a contiguous copy uploaded
// into `arena` (which must allocate on the backend's device). t must be contiguous to move.
Result<Tensor> to_backend(Backend& backend, Arena& arena, const Tensor& t);

// A host view of `t`'s values: `t` itself when it is host memory, else a contiguous copy
// downloaded into `storage` (which keeps it alive).
Result<Tensor> to_host(Backend& backend, const Tensor& t, std::vector<std::byte>& storage);

}  // namespace sd35
