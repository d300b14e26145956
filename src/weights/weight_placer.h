// WeightPlacer: where a model's weights go at load. Without one (nullptr everywhere) weights
// stay views into the memory-mapped files, as the CPU backends use them. With one, every
// bound tensor is uploaded to the placer's DeviceMemory in its STORED dtype (a GPU kernel
// converts fp8/f16/bf16 like the CPU ones do), one allocation per tensor whose owner frees it
// when the model that holds the view goes away.
#pragma once

#include <cstddef>
#include <memory>

#include "core/device_memory.h"
#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35 {

class WeightPlacer {
 public:
  explicit WeightPlacer(std::shared_ptr<DeviceMemory> memory) : memory_(std::move(memory)) {}

  Device device() const { return memory_->device(); }
  // A contiguous copy of `host` (contiguous host memory) in the placer's memory. Host
  // memory as the target returns `host` itself (no copy: the mapping already is host memory).
  Result<Tensor> place(const Tensor& host);
  // Bytes uploaded so far.
  size_t bytes() const { return bytes_; }
  size_t tensors() const { return tensors_; }

 private:
  std::shared_ptr<DeviceMemory> memory_;
  size_t bytes_ = 0;
  size_t tensors_ = 0;
};

}  // namespace sd35
