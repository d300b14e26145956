// The CUDA backend's public face: plain C++ (no CUDA headers), so the engine, CLI and server
// compile the same with or without the toolkit. A build without CUDA (SD35_CUDA=OFF, or AUTO
// with no toolkit found) links cuda_unavailable.cpp, whose functions return a clear
// Unsupported status ("this build has no CUDA support ...") instead.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/device_memory.h"
#include "sd35/status.h"

namespace sd35 {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;        // "NVIDIA H100 80GB HBM3"
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  size_t total_bytes = 0, free_bytes = 0;
  int driver_version = 0;  // cudaDriverGetVersion, e.g. 13000
  int runtime_version = 0;
  // cuDNN for conv2d (loaded at run time): "9.19.0", "off (SD35_CUDNN=0)" or
  // "unavailable: <why>" (conv2d then runs im2col + cuBLASLt).
  std::string cudnn;
};

// True when this binary was built with CUDA support.
bool cuda_compiled();
// Number of usable CUDA devices (0 when none, when the driver is missing, or without CUDA).
int cuda_device_count();
Result<CudaDeviceInfo> cuda_device_info(int device = 0);

// Memory of one GPU for long-lived data (model weights): cudaMalloc'd, copies synchronous on
// the legacy default stream. Shared by every engine on that device.
Result<std::shared_ptr<DeviceMemory>> cuda_weight_memory(int device = 0);

// A backend on `device` with its own stream and library handles (one per job/workspace).
// backend->memory() allocates on that device and copies on the backend's stream.
Result<std::unique_ptr<Backend>> make_cuda_backend(int device = 0);

}  // namespace sd35
