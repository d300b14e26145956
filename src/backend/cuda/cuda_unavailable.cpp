// cuda_backend.h for builds without CUDA (SD35_CUDA=OFF, or AUTO without a toolkit): every
// entry point reports the missing support instead of failing to link.
#include "backend/cuda/cuda_backend.h"

namespace sd35 {
namespace {

Status no_cuda() {
  return unsupported(
      "this build has no CUDA support (configure with -DSD35_CUDA=ON and the CUDA toolkit)");
}

}  // namespace

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
Result<CudaDeviceInfo> cuda_device_info(int) { return no_cuda(); }
Result<std::shared_ptr<DeviceMemory>> cuda_weight_memory(int) { return no_cuda(); }
Result<std::unique_ptr<Backend>> make_cuda_backend(int) { return no_cuda(); }

}  // namespace sd35
