// Reference add (broadcast), gated_add and affine: element loops over arbitrary strides,
// every element read through load_as_f32 and written through store_from_f32, arithmetic in
// double and rounded once on store. The oracle for the CPU kernels in cpu/arith.cpp.
#include <algorithm>
#include <cstdint>

#include "backend/ops_validate.h"
#include "backend/reference/reference_kernels.h"

namespace sd35::ref {
namespace {

double load(const Tensor& t, int64_t off) { return load_as_f32(t.data(), t.dtype(), off); }
void store(const Tensor& t, int64_t off, double v) {
  store_from_f32(t.data(), t.dtype(), off, float(v));
}

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

// Element offset of index `i` of a tensor.
int64_t offset(const Tensor& t, const int64_t* i) {
  int64_t off = 0;
  for (int d = 0; d < t.ndim(); ++d) off += i[d] * t.stride(d);
  return off;
}

}  // namespace

namespace {

Status binary(const Tensor& a, const Tensor& b, const Tensor& y, bool is_mul) {
  SD35_RETURN_IF_ERROR(validate::add(Device::kCPU, a, b, y, is_mul ? "mul" : "add"));
  const int lead = a.ndim() - b.ndim();  // b's dim d is a's dim lead + d
  // Element by element in row-major order; y aliasing a reads each element before writing it.
  for_each_index(a.shape(), [&](const int64_t* i) {
    int64_t bo = 0;
    for (int d = 0; d < b.ndim(); ++d) bo += (b.size(d) == 1 ? 0 : i[lead + d]) * b.stride(d);
    const double av = load(a, offset(a, i)), bv = load(b, bo);
    store(y, offset(y, i), is_mul ? av * bv : av + bv);
  });
  return ok_status();
}

}  // namespace

Status add(const Tensor& a, const Tensor& b, const Tensor& y) { return binary(a, b, y, false); }
Status mul(const Tensor& a, const Tensor& b, const Tensor& y) { return binary(a, b, y, true); }

Status gated_add(const Tensor& x, const Tensor& gate, const Tensor& h, const Tensor& out) {
  SD35_RETURN_IF_ERROR(validate::gated_add(Device::kCPU, x, gate, h, out));
  for_each_index(x.shape(), [&](const int64_t* i) {
    double g = load(gate, i[0] * gate.stride(0) + i[2] * gate.stride(1));
    store(out, offset(out, i), load(x, offset(x, i)) + g * load(h, offset(h, i)));
  });
  return ok_status();
}

Status affine(const Tensor& x, const AffineParams& params, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::affine(Device::kCPU, x, params, y));
  const double scale = params.scale, shift = params.shift, lo = params.lo, hi = params.hi;
  for_each_index(x.shape(), [&](const int64_t* i) {
    double v = load(x, offset(x, i)) * scale + shift;
    // Written so that a NaN v stays NaN (both comparisons are false).
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    store(y, offset(y, i), v);
  });
  return ok_status();
}

}  // namespace sd35::ref
