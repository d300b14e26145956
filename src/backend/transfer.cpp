#include "backend/transfer.h"

#include <cstring>
#include <new>
#include <string>

namespace sd35 {
namespace {

Status contiguous_bytes(const Tensor& t, std::string_view what, size_t* bytes) {
  if (!t.is_contiguous())
    return invalid_argument(std::string(what) + ": tensor must be contiguous, got " +
                            t.describe());
  SD35_ASSIGN_OR_RETURN(*bytes, checked_nbytes(t.shape(), t.dtype()));
  return ok_status();
}

}  // namespace

HostStaging::HostStaging(Backend& backend, const Tensor& dst) : backend_(backend), dst_(dst) {
  if (dst.device() == Device::kCPU) {
    ptr_ = dst.data();
  } else {
    // Staging buffers are small (ids, a sinusoid, a bias table); a failed allocation
    // leaves ptr_ null and commit() reports it.
    try {
      buffer_.resize(size_t(dst.numel()) * dst.element_size());
      ptr_ = buffer_.data();
    } catch (const std::bad_alloc&) {
      ptr_ = nullptr;
    }
  }
}

Status HostStaging::commit() {
  if (dst_.device() == Device::kCPU) return ok_status();
  if (!ptr_) return resource_exhausted("out of host memory staging an upload");
  return upload_bytes(backend_, ptr_, dst_);
}

Status download_bytes(Backend& backend, const Tensor& src, void* host_dst) {
  size_t bytes = 0;
  SD35_RETURN_IF_ERROR(contiguous_bytes(src, "download", &bytes));
  if (src.device() == Device::kCPU) {
    if (bytes) std::memcpy(host_dst, src.data(), bytes);
    return ok_status();
  }
  if (src.device() != backend.device())
    return invalid_argument("download: tensor on " + std::string(device_name(src.device())) +
                            ", the backend on " + std::string(device_name(backend.device())));
  return backend.memory().copy_to_host(host_dst, src.data(), bytes);
}

Status upload_bytes(Backend& backend, const void* host_src, const Tensor& dst) {
  size_t bytes = 0;
  SD35_RETURN_IF_ERROR(contiguous_bytes(dst, "upload", &bytes));
  if (dst.device() == Device::kCPU) {
    if (bytes) std::memcpy(dst.data(), host_src, bytes);
    return ok_status();
  }
  if (dst.device() != backend.device())
    return invalid_argument("upload: tensor on " + std::string(device_name(dst.device())) +
                            ", the backend on " + std::string(device_name(backend.device())));
  return backend.memory().copy_to_device(dst.data(), host_src, bytes);
}

Result<Tensor> to_backend(Backend& backend, Arena& arena, const Tensor& t) {
  if (t.device() == backend.device()) return t;
  if (t.device() != Device::kCPU)
    return invalid_argument("tensor on " + std::string(device_name(t.device())) +
                            " cannot move to a backend on " +
                            std::string(device_name(backend.device())));
  SD35_ASSIGN_OR_RETURN(Tensor out, arena.tensor(t.shape(), t.dtype()));
  if (out.device() != backend.device())
    return internal_error("to_backend: the arena is not on the backend's device");
  SD35_RETURN_IF_ERROR(upload_bytes(backend, t.data(), out));
  return out;
}

Result<Tensor> to_host(Backend& backend, const Tensor& t, std::vector<std::byte>& storage) {
  if (t.device() == Device::kCPU) return t;
  size_t bytes = 0;
  SD35_RETURN_IF_ERROR(contiguous_bytes(t, "to_host", &bytes));
  try {
    storage.resize(bytes);
  } catch (const std::bad_alloc&) {
    return resource_exhausted("out of host memory downloading " + t.describe());
  }
  SD35_RETURN_IF_ERROR(download_bytes(backend, t, storage.data()));
  return Tensor::view_of(storage.data(), t.dtype(), t.shape());
}

}  // namespace sd35
