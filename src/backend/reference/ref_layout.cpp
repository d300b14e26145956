// Reference layout ops (upsample, concat, copy/cast): element loops over arbitrary strides.
#include <cstring>
#include <vector>

#include "backend/ops_validate.h"
#include "backend/reference/reference_kernels.h"

namespace sd35::ref {
namespace {

// Calls fn(index) for every multi-index of `shape` in row-major order.
template <typename Fn>
void for_each_index(const Shape& shape, Fn&& fn) {
  const int nd = shape.ndim();
  if (shape.numel() == 0) return;
  int64_t idx[kMaxDims] = {};
  for (int64_t e = 0, n = shape.numel(); e < n; ++e) {
    fn(static_cast<const int64_t*>(idx));
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// One element from x to y: raw bytes when the dtypes match (exact for every dtype, NaN
// payloads included), else through f32.
void copy_element(const Tensor& x, const int64_t* xi, const Tensor& y, const int64_t* yi) {
  if (x.dtype() == y.dtype()) {
    std::memcpy(y.element_ptr(yi), x.element_ptr(xi), x.element_size());
  } else {
    store_from_f32(y.element_ptr(yi), y.dtype(), 0, load_as_f32(x.element_ptr(xi), x.dtype(), 0));
  }
}

}  // namespace

Status upsample_nearest2x(const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::upsample_nearest2x(Device::kCPU, x, y));
  for_each_index(y.shape(), [&](const int64_t* yi) {
    const int64_t xi[4] = {yi[0], yi[1], yi[2] / 2, yi[3] / 2};
    copy_element(x, xi, y, yi);
  });
  return ok_status();
}

Status concat(std::span<const Tensor> inputs, int axis, const Tensor& y) {
  int a = 0;
  SD35_RETURN_IF_ERROR(validate::concat(Device::kCPU, inputs, axis, y, &a));
  int64_t offset = 0;
  for (const Tensor& t : inputs) {
    for_each_index(t.shape(), [&](const int64_t* ti) {
      int64_t yi[kMaxDims];
      for (int d = 0; d < t.ndim(); ++d) yi[d] = ti[d] + (d == a ? offset : 0);
      copy_element(t, ti, y, yi);
    });
    offset += t.size(a);
  }
  return ok_status();
}

Status copy(const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::copy(Device::kCPU, x, y));
  for_each_index(x.shape(), [&](const int64_t* i) { copy_element(x, i, y, i); });
  return ok_status();
}

}  // namespace sd35::ref
