#include "core/tensor.h"

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/float_convert.h"

namespace sd35 {

std::string_view device_name(Device d) { return d == Device::kCPU ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<int64_t> dims) {
  assert(dims.size() <= size_t(kMaxDims));
  for (int64_t v : dims) d_[n_++] = v;
}

Result<Shape> Shape::from(const int64_t* dims, int n) {
  if (n < 0 || n > kMaxDims) {
    return invalid_argument("tensor has " + std::to_string(n) + " dimensions, at most " +
                            std::to_string(kMaxDims) + " are supported");
  }
  Shape s;
  for (int i = 0; i < n; ++i) {
    if (dims[i] < 0) return invalid_argument("negative dimension " + std::to_string(dims[i]));
    s.d_[s.n_++] = dims[i];
  }
  return s;
}

void Shape::push_back(int64_t v) {
  assert(n_ < kMaxDims);
  d_[n_++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < n_; ++i) n *= d_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (n_ != o.n_) return false;
  for (int i = 0; i < n_; ++i)
    if (d_[i] != o.d_[i]) return false;
  return true;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (int i = 0; i < n_; ++i) {
    if (i) s += ", ";
    s += std::to_string(d_[i]);
  }
  return s + "]";
}

Shape contiguous_strides(const Shape& shape) {
  Shape st = shape;
  int64_t acc = 1;
  for (int i = shape.ndim() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

Result<size_t> checked_nbytes(const Shape& shape, DType dtype, size_t limit) {
  unsigned __int128 total = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) return invalid_argument("negative dimension in " + shape.to_string());
    total *= uint64_t(d);
    if (total > limit) {
      return resource_exhausted("tensor " + std::string(dtype_name(dtype)) + shape.to_string() +
                                " is larger than the limit of " + std::to_string(limit) +
                                " bytes");
    }
  }
  return size_t(total);
}

Tensor Tensor::view_of(void* data, DType dtype, const Shape& shape, Device device,
                       std::shared_ptr<const void> owner) {
  return strided_view_of(data, dtype, shape, contiguous_strides(shape), device, std::move(owner));
}

Tensor Tensor::strided_view_of(void* data, DType dtype, const Shape& shape, const Shape& strides,
                               Device device, std::shared_ptr<const void> owner) {
  assert(shape.ndim() == strides.ndim());
  Tensor t;
  t.data_ = data;
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = shape;
  t.strides_ = strides;
  t.owner_ = std::move(owner);
  return t;
}

Result<Tensor> Tensor::zeros(const Shape& shape, DType dtype) {
  SD35_ASSIGN_OR_RETURN(size_t bytes, checked_nbytes(shape, dtype));
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) {
    return resource_exhausted("cannot allocate " + std::to_string(bytes) + " bytes for " +
                              std::string(dtype_name(dtype)) + shape.to_string());
  }
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  std::shared_ptr<const void> owner(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return view_of(p, dtype, shape, Device::kCPU, std::move(owner));
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int i = ndim() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

int Tensor::normalize_dim(int dim) const {
  int d = dim < 0 ? dim + ndim() : dim;
  assert(d >= 0 && d < ndim());
  return d;
}

void* Tensor::element_ptr(const int64_t* index) const {
  int64_t off = 0;
  for (int i = 0; i < ndim(); ++i) off += index[i] * strides_[i];
  return static_cast<char*>(data_) + off * int64_t(element_size());
}

Tensor Tensor::reshape(const Shape& shape) const {
  assert(is_contiguous());
  assert(shape.numel() == numel());
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::slice(int dim, int64_t begin, int64_t end) const {
  int d = normalize_dim(dim);
  assert(begin >= 0 && begin <= end && end <= shape_[d]);
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + begin * strides_[d] * int64_t(element_size());
  t.shape_[d] = end - begin;
  return t;
}

Tensor Tensor::select(int dim, int64_t index) const {
  int d = normalize_dim(dim);
  assert(index >= 0 && index < shape_[d]);
  Tensor t;
  t.data_ = static_cast<char*>(data_) + index * strides_[d] * int64_t(element_size());
  t.dtype_ = dtype_;
  t.device_ = device_;
  t.owner_ = owner_;
  for (int i = 0; i < ndim(); ++i) {
    if (i == d) continue;
    t.shape_.push_back(shape_[i]);
    t.strides_.push_back(strides_[i]);
  }
  return t;
}

Tensor Tensor::transpose(int a, int b) const {
  int da = normalize_dim(a), db = normalize_dim(b);
  Tensor t = *this;
  std::swap(t.shape_[da], t.shape_[db]);
  std::swap(t.strides_[da], t.strides_[db]);
  return t;
}

Tensor Tensor::unsqueeze(int dim) const {
  int d = dim < 0 ? dim + ndim() + 1 : dim;
  assert(d >= 0 && d <= ndim() && ndim() < kMaxDims);
  Tensor t;
  t.data_ = data_;
  t.dtype_ = dtype_;
  t.device_ = device_;
  t.owner_ = owner_;
  for (int i = 0; i <= ndim(); ++i) {
    if (i == d) {
      t.shape_.push_back(1);
      t.strides_.push_back(i < ndim() ? shape_[i] * strides_[i] : 1);
    }
    if (i < ndim()) {
      t.shape_.push_back(shape_[i]);
      t.strides_.push_back(strides_[i]);
    }
  }
  return t;
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype_)) + shape_.to_string();
}

float load_as_f32(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(data)[i];
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::kF8E4M3FN: return f8e4m3fn_to_f32(static_cast<const uint8_t*>(data)[i]);
    case DType::kF8E5M2: return f8e5m2_to_f32(static_cast<const uint8_t*>(data)[i]);
    case DType::kF64: return float(static_cast<const double*>(data)[i]);
    case DType::kI64: return float(static_cast<const int64_t*>(data)[i]);
    case DType::kI32: return float(static_cast<const int32_t*>(data)[i]);
    case DType::kI16: return float(static_cast<const int16_t*>(data)[i]);
    case DType::kI8: return float(static_cast<const int8_t*>(data)[i]);
    case DType::kU8:
    case DType::kBool: return float(static_cast<const uint8_t*>(data)[i]);
  }
  return std::numeric_limits<float>::quiet_NaN();
}

void store_from_f32(void* data, DType dtype, int64_t i, float v) {
  switch (dtype) {
    case DType::kF32: static_cast<float*>(data)[i] = v; return;
    case DType::kF16: static_cast<uint16_t*>(data)[i] = f32_to_f16(v); return;
    case DType::kBF16: static_cast<uint16_t*>(data)[i] = f32_to_bf16(v); return;
    case DType::kF8E4M3FN: static_cast<uint8_t*>(data)[i] = f32_to_f8e4m3fn(v); return;
    case DType::kF8E5M2: static_cast<uint8_t*>(data)[i] = f32_to_f8e5m2(v); return;
    case DType::kF64: static_cast<double*>(data)[i] = v; return;
    case DType::kI64: static_cast<int64_t*>(data)[i] = int64_t(v); return;
    case DType::kI32: static_cast<int32_t*>(data)[i] = int32_t(v); return;
    case DType::kI16: static_cast<int16_t*>(data)[i] = int16_t(v); return;
    case DType::kI8: static_cast<int8_t*>(data)[i] = int8_t(v); return;
    case DType::kU8: static_cast<uint8_t*>(data)[i] = uint8_t(v); return;
    case DType::kBool: static_cast<uint8_t*>(data)[i] = v != 0.0f; return;
  }
}

}  // namespace sd35
