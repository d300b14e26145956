#include <cstdint>

#include "backend/cuda/cuda_common.h"

namespace sd35::cuda {

StridedLayout make_layout(const Shape& shape, const Shape* const* strides, int operands) {
  StridedLayout l;
  // Keep the dims of size != 1, outermost first (a size-1 dim never moves the offset).
  for (int d = 0; d < shape.ndim(); ++d) {
    if (shape[d] == 1) continue;
    l.shape[l.ndim] = shape[d];
    for (int o = 0; o < operands; ++o) l.stride[o][l.ndim] = (*strides[o])[d];
    ++l.ndim;
  }
  if (shape.numel() == 0) {
    l.ndim = 1;
    l.shape[0] = 0;
  }
  // Merge dim d into d+1 when every operand steps over d exactly as a run of d+1.
  int out = l.ndim == 0 ? 0 : 1;
  for (int d = 1; d < l.ndim; ++d) {
    const int prev = out - 1;
    bool merge = true;
    for (int o = 0; o < operands; ++o)
      merge = merge && l.stride[o][prev] == l.stride[o][d] * l.shape[d];
    if (merge) {
      l.shape[prev] *= l.shape[d];
      for (int o = 0; o < operands; ++o) l.stride[o][prev] = l.stride[o][d];
    } else {
      l.shape[out] = l.shape[d];
      for (int o = 0; o < operands; ++o) l.stride[o][out] = l.stride[o][d];
      ++out;
    }
  }
  l.ndim = out;
  l.contiguous = true;
  if (l.ndim == 1) {
    for (int o = 0; o < operands; ++o) l.contiguous = l.contiguous && l.stride[o][0] == 1;
  } else if (l.ndim > 1) {
    l.contiguous = false;
  }
  return l;
}

}  // namespace sd35::cuda
