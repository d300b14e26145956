// Shared plumbing of the CUDA backend: CUDA/cuBLASLt errors as Status, the strided-layout
// descriptor the elementwise kernels take by value, and a few host helpers. Host C++ only
// (included by .cpp and .cu files alike).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35::cuda {

// "op: what failed: cudaErrorMemoryAllocation (out of memory)". Out-of-memory becomes
// ResourceExhausted, everything else Internal.
inline Status cuda_status(cudaError_t e, std::string_view op, std::string_view what) {
  if (e == cudaSuccess) return ok_status();
  std::string msg = std::string(op) + ": " + std::string(what) + " failed: " +
                    cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  if (e == cudaErrorMemoryAllocation) return resource_exhausted(std::move(msg));
  return internal_error(std::move(msg));
}

// Checks the launch of the kernel just queued (configuration errors, earlier sticky errors).
inline Status launch_status(std::string_view op) {
  return cuda_status(cudaGetLastError(), op, "kernel launch");
}

#define SD35_CUDA_RETURN_IF_ERROR(expr, op, what)                           \
  do {                                                                      \
    cudaError_t sd35_cuda_err_ = (expr);                                    \
    if (sd35_cuda_err_ != cudaSuccess)                                      \
      return ::sd35::cuda::cuda_status(sd35_cuda_err_, (op), (what));       \
  } while (0)

// Up to kMaxDims dims and four operands (index 0 is the output) — passed to kernels by value.
// Offsets are in elements of each operand's dtype; a broadcast dim has stride 0.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride[4][kMaxDims] = {};
  bool contiguous = false;  // every operand dense row-major over `shape`: offset == index
};

// Builds the layout of `shape` for up to four operands' strides, dropping size-1 dims and
// merging dims that are adjacent in memory for every operand (fewer divisions per element).
StridedLayout make_layout(const Shape& shape, const Shape* const* strides, int operands);

// Largest power of two (<= 256) dividing the address: what cuBLASLt's alignment checks see.
inline int alignment_of(const void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  int al = 1;
  while (al < 256 && (a & uintptr_t(al)) == 0) al <<= 1;
  return al;
}

}  // namespace sd35::cuda
