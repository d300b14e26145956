#include "backend/cuda/cuda_scratch.h"

#include <string>

#include "backend/cuda/cuda_common.h"

namespace sd35::cuda {

ScratchPool::~ScratchPool() {
  // The owner synchronised the stream before destroying the pool.
  for (Buffer& b : buffers_)
    if (b.ptr) cudaFree(b.ptr);
}

Result<void*> ScratchPool::get(ScratchSlot slot, size_t bytes, const char* op) {
  Buffer& b = buffers_[size_t(slot)];
  if (bytes <= b.bytes && b.ptr) return b.ptr;
  // Round up (1 MiB granularity, +25%) so slowly growing sizes do not reallocate each time.
  size_t want = bytes + bytes / 4;
  want = (want + (size_t(1) << 20) - 1) & ~((size_t(1) << 20) - 1);
  if (b.ptr) {
    SD35_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_), op, "synchronising before growing scratch");
    cudaFree(b.ptr);
    b.ptr = nullptr;
    b.bytes = 0;
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, want);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) allocation error
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return resource_exhausted(std::string(op) + ": cannot allocate " + std::to_string(want) +
                              " bytes of CUDA scratch on device " + std::to_string(device_) +
                              " (" + std::to_string(free_b) + " bytes free): " +
                              cudaGetErrorString(e));
  }
  b.ptr = p;
  b.bytes = want;
  return p;
}

size_t ScratchPool::held_bytes() const {
  size_t s = 0;
  for (const Buffer& b : buffers_) s += b.bytes;
  return s;
}

}  // namespace sd35::cuda
