// Helpers of the CUDA conformance test: buffers mirrored on host and device with guard
// bands, random fills, comparisons with diagnostics. Every device buffer is a host image of
// the same size; views have the same offsets in both, so the reference backend runs on the
// host image and the CUDA backend on the device copy. Bytes outside an output view (guard
// bands before/after and the gaps of strided views) must be unchanged after an op.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace sd35::cudatest {

// The backend under test (created in main; null when no device).
Backend& cuda();
Backend& ref();

inline constexpr uint8_t kSentinel = 0xA5;
inline constexpr int64_t kGuardBytes = 512;  // before and after the payload, keeps alignment

// Shape with row-major strides where the last dim is padded by `row_pad` unused elements.
inline Shape padded_strides(const Shape& shape, int64_t row_pad) {
  Shape s = shape;
  int64_t acc = 1;
  for (int d = shape.ndim() - 1; d >= 0; --d) {
    s[d] = acc;
    acc *= shape[d] + (d == shape.ndim() - 1 ? row_pad : 0);
  }
  return s;
}
inline int64_t span_elems(const Shape& shape, const Shape& strides) {
  int64_t last = 0;
  for (int d = 0; d < shape.ndim(); ++d) {
    if (shape[d] == 0) return 0;
    last += (shape[d] - 1) * strides[d];
  }
  return last + 1;
}

class Mirror {
 public:
  // A buffer with `elems` elements of dtype in the payload, sentinel-filled.
  Mirror(int64_t elems, DType dtype) : dtype_(dtype) {
    payload_bytes_ = elems * int64_t(dtype_size(dtype));
    image_.assign(size_t(payload_bytes_ + 2 * kGuardBytes), kSentinel);
    auto p = cuda().memory().allocate(image_.size());
    if (!p.ok()) {
      ADD_FAILURE() << "device allocation of " << image_.size()
                    << " bytes failed: " << p.status().to_string();
      return;
    }
    dev_ = *p;
    upload();
  }
  // A whole tensor of `shape` (row_pad elements after each row) in its own buffer.
  static std::unique_ptr<Mirror> make(const Shape& shape, DType dtype, int64_t row_pad = 0) {
    Shape st = padded_strides(shape, row_pad);
    auto m = std::make_unique<Mirror>(std::max<int64_t>(span_elems(shape, st), 1), dtype);
    m->shape_ = shape;
    m->strides_ = st;
    return m;
  }
  ~Mirror() {
    if (dev_) cuda().memory().deallocate(dev_);
  }
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  bool ok() const { return dev_ != nullptr; }
  // The default view (make()) or any view inside the payload.
  Tensor host() { return host(shape_, strides_); }
  Tensor dev() { return dev(shape_, strides_); }
  Tensor host(const Shape& shape, const Shape& strides, int64_t offset = 0) {
    return Tensor::strided_view_of(image_.data() + kGuardBytes + offset * esize(), dtype_, shape,
                                   strides, Device::kCPU);
  }
  Tensor dev(const Shape& shape, const Shape& strides, int64_t offset = 0) {
    return Tensor::strided_view_of(static_cast<uint8_t*>(dev_) + kGuardBytes + offset * esize(),
                                   dtype_, shape, strides, Device::kCUDA);
  }

  // The default view inside another image of the same size (e.g. the reference's result).
  Tensor host_in(std::vector<uint8_t>& img) {
    return Tensor::strided_view_of(img.data() + kGuardBytes, dtype_, shape_, strides_,
                                   Device::kCPU);
  }
  // Random values in [-scale, scale] + shift at every element of the view.
  void fill_random(uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
    fill_random(host(), seed, scale, shift);
  }
  static void fill_random(const Tensor& t, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-scale, scale);
    for_each(t, [&](void* p) { store_from_f32(p, t.dtype(), 0, dist(rng) + shift); });
  }

  void upload() {
    if (dev_) check(cuda().memory().copy_to_device(dev_, image_.data(), image_.size()), "upload");
  }
  void download() {
    if (dev_) check(cuda().memory().copy_to_host(image_.data(), dev_, image_.size()), "download");
  }
  // Snapshot of the host image, to check later that only `view` changed on the device.
  std::vector<uint8_t> snapshot() const { return image_; }
  ::testing::AssertionResult guards_intact(const std::vector<uint8_t>& before,
                                           std::initializer_list<Tensor> views) const;
  std::vector<uint8_t>& image() { return image_; }

  template <typename Fn>
  static void for_each(const Tensor& t, Fn&& fn) {
    const int64_t n = t.numel();
    std::vector<int64_t> idx(size_t(std::max(t.ndim(), 1)), 0);
    for (int64_t e = 0; e < n; ++e) {
      fn(t.element_ptr(idx.data()));
      for (int d = t.ndim() - 1; d >= 0; --d) {
        if (++idx[size_t(d)] < t.shape()[d]) break;
        idx[size_t(d)] = 0;
      }
    }
  }

 private:
  int64_t esize() const { return int64_t(dtype_size(dtype_)); }
  static void check(const Status& s, const char* what) {
    if (!s.ok()) ADD_FAILURE() << what << " failed: " << s.to_string();
  }
  DType dtype_;
  int64_t payload_bytes_ = 0;
  std::vector<uint8_t> image_;
  void* dev_ = nullptr;
  Shape shape_, strides_;
};

inline ::testing::AssertionResult Mirror::guards_intact(const std::vector<uint8_t>& before,
                                                        std::initializer_list<Tensor> views) const {
  std::vector<uint8_t> covered(image_.size(), 0);
  const uint8_t* base = image_.data();
  for (const Tensor& v : views) {
    const int64_t es = int64_t(v.element_size());
    for_each(v, [&](void* p) {
      int64_t off = static_cast<const uint8_t*>(p) - base;
      for (int64_t b = 0; b < es; ++b)
        if (off + b >= 0 && off + b < int64_t(covered.size())) covered[size_t(off + b)] = 1;
    });
  }
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < image_.size(); ++i) {
    if (!covered[i] && image_[i] != before[i]) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " byte(s) outside the output view were overwritten; first at byte "
         << (first - kGuardBytes) << " relative to the payload start (payload "
         << payload_bytes_ << " bytes)";
}

// Tolerance: |a - e| <= atol + rtol·|e|, NaN only where the reference has NaN.
struct Tol {
  double atol = 0, rtol = 0;
};
inline constexpr Tol kExact{0, 0};

// Compares every element of `actual` (downloaded) with `expected` (reference), reporting the
// worst element, the count of failures and the first few with their indices.
inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, Tol tol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << actual.shape().to_string() << " vs "
                                         << expected.shape().to_string();
  const int64_t n = actual.numel();
  std::vector<int64_t> idx(size_t(std::max(actual.ndim(), 1)), 0);
  int64_t bad = 0;
  double worst = 0, worst_a = 0, worst_e = 0;
  std::string worst_at;
  std::ostringstream first;
  auto index_str = [&] {
    std::string s = "[";
    for (int d = 0; d < actual.ndim(); ++d) s += (d ? "," : "") + std::to_string(idx[size_t(d)]);
    return s + "]";
  };
  for (int64_t e = 0; e < n; ++e) {
    const double a = load_as_f32(actual.element_ptr(idx.data()), actual.dtype(), 0);
    const double x = load_as_f32(expected.element_ptr(idx.data()), expected.dtype(), 0);
    bool ok;
    double err = 0;
    if (std::isnan(x) || std::isnan(a)) {
      ok = std::isnan(x) && std::isnan(a);
      err = ok ? 0 : INFINITY;
    } else if (std::isinf(x) || std::isinf(a)) {
      ok = a == x;
      err = ok ? 0 : INFINITY;
    } else {
      err = std::fabs(a - x);
      ok = err <= tol.atol + tol.rtol * std::fabs(x);
    }
    if (!ok) {
      if (bad < 5) first << "\n    at " << index_str() << ": got " << a << ", expected " << x;
      ++bad;
    }
    if (err > worst || (!ok && worst_at.empty())) {
      worst = err, worst_a = a, worst_e = x, worst_at = index_str();
    }
    for (int d = actual.ndim() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < actual.shape()[d]) break;
      idx[size_t(d)] = 0;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << n << " elements outside atol " << tol.atol << " + rtol " << tol.rtol
         << "; worst |err| " << worst << " at " << worst_at << " (got " << worst_a
         << ", expected " << worst_e << ")" << first.str();
}

// Output tolerance of an elementwise/normalisation op for an output dtype: f32 math on the
// device vs f64 in the reference differs by a few f32 ulps before rounding, which can move
// a 16-bit result by one ulp (bf16 2^-8, f16 2^-11 relative); we allow two.
inline Tol elementwise_tol(DType out, double scale = 1.0) {
  switch (out) {
    case DType::kBF16: return {scale * 1e-3, 1.0 / 128};
    case DType::kF16: return {scale * 1e-4, 1.0 / 1024};
    default: return {scale * 2e-6, 2e-5};
  }
}

// A view of a mirror on the reference (host) or CUDA (device) side.
inline Tensor side(Mirror& m, bool device) { return device ? m.dev() : m.host(); }
inline Tensor side(Mirror& m, bool device, const Shape& shape, const Shape& strides,
                   int64_t offset = 0) {
  return device ? m.dev(shape, strides, offset) : m.host(shape, strides, offset);
}

struct Output {
  Mirror* m;
  Tol tol;
};

// Runs op(backend, device_side) on the reference (host views) and on CUDA (device views) and
// compares each output's default view; also checks that nothing outside it was written.
// Inputs must be filled and uploaded before; outputs too (their initial contents matter for
// accumulating ops and in-place ops).
template <typename Fn>
void run_and_compare(const std::string& label, std::initializer_list<Output> outs, Fn&& op) {
  SCOPED_TRACE(label);
  std::vector<std::vector<uint8_t>> before, expected;
  for (const Output& o : outs) before.push_back(o.m->snapshot());
  Status rs = op(ref(), false);
  ASSERT_TRUE(rs.ok()) << "reference failed: " << rs.to_string();
  for (const Output& o : outs) expected.push_back(o.m->snapshot());
  Status cs = op(cuda(), true);
  ASSERT_TRUE(cs.ok()) << "cuda op failed: " << cs.to_string();
  Status ss = cuda().synchronize();
  ASSERT_TRUE(ss.ok()) << "cuda synchronize failed: " << ss.to_string();
  size_t i = 0;
  for (const Output& o : outs) {
    o.m->download();
    EXPECT_TRUE(all_close(o.m->host(), o.m->host_in(expected[i]), o.tol)) << "output " << i;
    EXPECT_TRUE(o.m->guards_intact(before[i], {o.m->host()})) << "output " << i;
    ++i;
  }
}

inline std::string dt(DType t) { return std::string(dtype_name(t)); }

}  // namespace sd35::cudatest
