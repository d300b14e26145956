#include "weights/weight_placer.h"

#include <string>

namespace sd35 {

Result<Tensor> WeightPlacer::place(const Tensor& host) {
  if (!host.defined() || memory_->device() == Device::kCPU) return host;
  if (host.device() != Device::kCPU || !host.is_contiguous())
    return invalid_argument("weight placement needs a contiguous host tensor, got " +
                            host.describe());
  SD35_ASSIGN_OR_RETURN(size_t bytes, checked_nbytes(host.shape(), host.dtype()));
  SD35_ASSIGN_OR_RETURN(void* p, memory_->allocate(bytes));
  // The owner frees the allocation with the tensor's last view; it holds the memory object
  // too, so a model may outlive the engine that created the placer.
  std::shared_ptr<DeviceMemory> memory = memory_;
  std::shared_ptr<const void> owner(p, [memory](const void* q) {
    memory->deallocate(const_cast<void*>(q));
  });
  SD35_RETURN_IF_ERROR(memory_->copy_to_device(p, host.data(), bytes));
  bytes_ += bytes;
  ++tensors_;
  return Tensor::view_of(p, host.dtype(), host.shape(), memory_->device(), std::move(owner));
}

}  // namespace sd35
