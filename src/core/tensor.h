// Tensor: a typed, strided view of memory on one device, in PyTorch dimension order
// ([N, C, H, W], [N, L, D]). A Tensor never owns an allocation by itself: `owner` keeps
// mapped files or heap buffers alive; arena tensors live as long as their arena.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "sd35/status.h"

namespace sd35 {

enum class Device : uint8_t { kCPU, kCUDA };
std::string_view device_name(Device d);

inline constexpr int kMaxDims = 6;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  // Fails when there are more than kMaxDims dimensions or a negative one.
  static Result<Shape> from(const int64_t* dims, int n);

  int ndim() const { return n_; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t back() const { return d_[n_ - 1]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + n_; }
  void push_back(int64_t v);
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string to_string() const;  // "[2, 16, 8, 8]"

 private:
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

// Contiguous (row-major) strides of a shape, in elements.
Shape contiguous_strides(const Shape& shape);

// Product of dims times element size, or nullopt-like failure on overflow or above `limit`.
Result<size_t> checked_nbytes(const Shape& shape, DType dtype,
                              size_t limit = size_t(1) << 46);

class Tensor {
 public:
  Tensor() = default;

  // A contiguous view of `data`.
  static Tensor view_of(void* data, DType dtype, const Shape& shape, Device device = Device::kCPU,
                        std::shared_ptr<const void> owner = {});
  static Tensor strided_view_of(void* data, DType dtype, const Shape& shape, const Shape& strides,
                                Device device = Device::kCPU,
                                std::shared_ptr<const void> owner = {});
  // A new zero-filled, 64-byte aligned, contiguous CPU tensor that owns its buffer.
  static Result<Tensor> zeros(const Shape& shape, DType dtype);

  bool defined() const { return data_ != nullptr || shape_.ndim() > 0; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int ndim() const { return shape_.ndim(); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  // Negative dims count from the end, as in PyTorch.
  int64_t size(int dim) const { return shape_[normalize_dim(dim)]; }
  int64_t stride(int dim) const { return strides_[normalize_dim(dim)]; }
  int64_t numel() const { return shape_.numel(); }
  size_t element_size() const { return dtype_size(dtype_); }
  bool is_contiguous() const;
  // True when the last dimension is dense (stride 1): what row kernels need.
  bool rows_dense() const { return ndim() == 0 || strides_[ndim() - 1] == 1 || shape_.back() == 1; }
  // Number of rows when viewed as [rows, size(-1)] — only meaningful for row kernels.
  int64_t rows() const { return ndim() == 0 ? 1 : numel() / shape_.back(); }

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  // Address of element (i0, i1, ...) given as a full index array.
  void* element_ptr(const int64_t* index) const;
  const std::shared_ptr<const void>& owner() const { return owner_; }

  // Views (no copies). Programmer errors (bad dims, non-contiguous reshape) assert.
  Tensor reshape(const Shape& shape) const;
  Tensor slice(int dim, int64_t begin, int64_t end) const;
  Tensor select(int dim, int64_t index) const;
  Tensor transpose(int a, int b) const;
  Tensor unsqueeze(int dim) const;

  std::string describe() const;  // "bf16[2, 16, 8, 8]"

 private:
  int normalize_dim(int dim) const;

  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCPU;
  Shape shape_;
  Shape strides_;
  std::shared_ptr<const void> owner_;
};

// Reads element `i` (flat index over a contiguous buffer of `dtype`) as f32.
float load_as_f32(const void* data, DType dtype, int64_t i);
// Writes `v` converted to `dtype` at flat index `i`.
void store_from_f32(void* data, DType dtype, int64_t i, float v);

}  // namespace sd35
