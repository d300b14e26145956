// Device discovery, per-device weight memory and the CudaMemory implementation. Nothing here
// may crash or print when no driver or GPU is present: every CUDA error becomes a Status
// (or a device count of 0).
#include <map>
#include <mutex>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_memory.h"
#include "backend/cuda/cudnn_loader.h"

namespace sd35 {
namespace cuda {

Result<void*> CudaMemory::allocate(size_t bytes) {
  SD35_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cuda memory", "selecting the device");
  void* p = nullptr;
  // cudaMalloc returns 256-byte aligned memory; a zero-byte request still gets a real block.
  cudaError_t e = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();  // allocation failures are not sticky; clear them
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return resource_exhausted("cuda memory: cannot allocate " + std::to_string(bytes) +
                              " bytes on device " + std::to_string(device_) + " (" +
                              std::to_string(free_b) + " bytes free): " + cudaGetErrorString(e));
  }
  return p;
}

void CudaMemory::deallocate(void* p) noexcept {
  if (!p) return;
  cudaSetDevice(device_);
  // A backend's buffers may still be read by queued kernels; cudaFree waits for the device,
  // but make the ordering explicit for the backend's stream.
  if (stream_) cudaStreamSynchronize(stream_);
  cudaFree(p);
}

Status CudaMemory::copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                        const char* what) {
  if (bytes == 0) return ok_status();
  SD35_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cuda memory", "selecting the device");
  if (stream_) {
    SD35_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, kind, stream_), "cuda memory", what);
    SD35_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_), "cuda memory", what);
  } else {
    SD35_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, bytes, kind), "cuda memory", what);
  }
  return ok_status();
}

Status CudaMemory::copy_to_device(void* dst, const void* src_host, size_t bytes) {
  return copy(dst, src_host, bytes, cudaMemcpyHostToDevice, "host-to-device copy");
}
Status CudaMemory::copy_to_host(void* dst_host, const void* src, size_t bytes) {
  return copy(dst_host, src, bytes, cudaMemcpyDeviceToHost, "device-to-host copy");
}
Status CudaMemory::copy_on_device(void* dst, const void* src, size_t bytes) {
  return copy(dst, src, bytes, cudaMemcpyDeviceToDevice, "device-to-device copy");
}

Status CudaMemory::mem_info(size_t* free_bytes, size_t* total_bytes) const {
  SD35_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cuda memory", "selecting the device");
  SD35_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(free_bytes, total_bytes), "cuda memory",
                            "cudaMemGetInfo");
  return ok_status();
}

}  // namespace cuda

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver / no device: not an error for the caller
    return 0;
  }
  return n < 0 ? 0 : n;
}

namespace {
Status check_device_index(int device, const char* op) {
  const int n = cuda_device_count();
  if (n == 0) return unsupported(std::string(op) + ": no CUDA device is available");
  if (device < 0 || device >= n) {
    return invalid_argument(std::string(op) + ": CUDA device " + std::to_string(device) +
                            " does not exist (" + std::to_string(n) + " device(s))");
  }
  return ok_status();
}
}  // namespace

Result<CudaDeviceInfo> cuda_device_info(int device) {
  SD35_RETURN_IF_ERROR(check_device_index(device, "cuda_device_info"));
  cudaDeviceProp prop{};
  SD35_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device), "cuda_device_info",
                            "cudaGetDeviceProperties");
  CudaDeviceInfo info;
  info.index = device;
  info.name = prop.name;
  info.sm_major = prop.major, info.sm_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.total_bytes = prop.totalGlobalMem;
  SD35_CUDA_RETURN_IF_ERROR(cudaSetDevice(device), "cuda_device_info", "cudaSetDevice");
  size_t free_b = 0, total_b = 0;
  SD35_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_b, &total_b), "cuda_device_info",
                            "cudaMemGetInfo");
  info.free_bytes = free_b;
  SD35_CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&info.driver_version), "cuda_device_info",
                            "cudaDriverGetVersion");
  SD35_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&info.runtime_version), "cuda_device_info",
                            "cudaRuntimeGetVersion");
  info.cudnn = cuda::cudnn_summary();
  return info;
}

Result<std::shared_ptr<DeviceMemory>> cuda_weight_memory(int device) {
  SD35_RETURN_IF_ERROR(check_device_index(device, "cuda_weight_memory"));
  // Never destroyed: engines may release their weights during static destruction.
  static std::mutex* mu = new std::mutex;
  static auto* memories = new std::map<int, std::shared_ptr<DeviceMemory>>;
  std::lock_guard<std::mutex> lock(*mu);
  auto& m = (*memories)[device];
  if (!m) m = std::make_shared<cuda::CudaMemory>(device, nullptr);
  return m;
}

}  // namespace sd35
