// Shared helpers for backend conformance tests: random tensors, guard-banded output buffers,
// tolerance comparisons and a loop over the CPU ISA levels. Test-only code (baseline flags),
// so ordinary inline functions are fine here.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/cpu_features.h"
#include "core/tensor.h"

namespace sd35::testing {

// The backends the op tests compare, one of each per test binary. The cpu backend has 3
// threads even on a 2-core machine, so that the parallel split into chunks is exercised (and a
// chunk boundary can fall inside a batch, where per-batch parameters change).
inline Backend& cpu_backend() {
  static std::unique_ptr<Backend> b = make_cpu_backend(3);
  return *b;
}
inline Backend& reference_backend() {
  static std::unique_ptr<Backend> b = make_reference_backend();
  return *b;
}

// Byte every guarded buffer is pre-filled with; a write outside the view changes it.
inline constexpr uint8_t kGuardByte = 0xA5;

// Owns a byte buffer with guard bands on both sides; hands out (strided) views of its
// payload. Everything in the buffer not covered by the views under test must keep
// kGuardByte, which catches out-of-bounds writes and writes into the gaps of strided views.
class GuardedBuffer {
 public:
  // `elems` elements of `dtype` in the payload, `guard_elems` guard elements on each side.
  GuardedBuffer(int64_t elems, DType dtype, int64_t guard_elems = 67)
      : dtype_(dtype),
        esize_(int64_t(dtype_size(dtype))),
        guard_bytes_(guard_elems * esize_),
        payload_bytes_(elems * esize_),
        bytes_(size_t(payload_bytes_ + 2 * guard_bytes_ + 64), kGuardByte) {}

  void* payload() {
    // 64-byte aligned payload start: kernels may take aligned fast paths.
    auto base = reinterpret_cast<uintptr_t>(bytes_.data()) + uintptr_t(guard_bytes_);
    return reinterpret_cast<void*>((base + 63) & ~uintptr_t(63));
  }
  DType dtype() const { return dtype_; }

  Tensor view(const Shape& shape) { return Tensor::view_of(payload(), dtype_, shape); }
  Tensor view(const Shape& shape, const Shape& strides, int64_t offset_elems = 0) {
    return Tensor::strided_view_of(static_cast<char*>(payload()) + offset_elems * esize_, dtype_,
                                   shape, strides);
  }

  // Refills the whole buffer (payload and guards) with kGuardByte.
  void reset_guards() { std::fill(bytes_.begin(), bytes_.end(), kGuardByte); }

  // True when every byte not covered by `views` still holds kGuardByte.
  ::testing::AssertionResult untouched_outside(std::initializer_list<Tensor> views) {
    std::vector<uint8_t> covered(bytes_.size(), 0);
    auto* base = bytes_.data();
    for (const Tensor& v : views) {
      int64_t n = v.numel();
      std::vector<int64_t> idx(size_t(v.ndim()), 0);
      for (int64_t e = 0; e < n; ++e) {
        auto* p = static_cast<uint8_t*>(v.element_ptr(idx.data()));
        int64_t off = p - base;
        for (int64_t b = 0; b < esize_; ++b)
          if (off + b >= 0 && off + b < int64_t(covered.size())) covered[size_t(off + b)] = 1;
        for (int d = v.ndim() - 1; d >= 0; --d) {
          if (++idx[size_t(d)] < v.shape()[d]) break;
          idx[size_t(d)] = 0;
        }
      }
    }
    for (size_t i = 0; i < bytes_.size(); ++i) {
      if (!covered[i] && bytes_[i] != kGuardByte) {
        return ::testing::AssertionFailure()
               << "byte " << (int64_t(i) - (static_cast<uint8_t*>(payload()) - base))
               << " relative to the payload start was written outside the view";
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  DType dtype_;
  int64_t esize_;
  int64_t guard_bytes_;
  int64_t payload_bytes_;
  std::vector<uint8_t> bytes_;
};

// A tensor view inside its own GuardedBuffer. With row_pad > 0 each row (last dim) is
// followed by row_pad unused elements, i.e. the view is a column slice of a wider tensor, so
// kernels see a row stride != size(-1) and must not write into the gaps.
struct GuardedTensor {
  std::unique_ptr<GuardedBuffer> buf;
  Tensor t;
  ::testing::AssertionResult guards_ok() { return buf->untouched_outside({t}); }
};

inline GuardedTensor guarded(const Shape& shape, DType dtype, int64_t row_pad = 0) {
  Shape strides = shape;
  int64_t acc = 1;
  for (int d = shape.ndim() - 1; d >= 0; --d) {
    strides[d] = acc;
    acc *= shape[d] + (d == shape.ndim() - 1 ? row_pad : 0);
  }
  GuardedTensor g;
  g.buf = std::make_unique<GuardedBuffer>(acc, dtype);
  g.t = g.buf->view(shape, strides);
  return g;
}

// Calls fn(flat_index, element_index_array) for every element of `t` in row-major order.
template <typename Fn>
void for_each_index(const Tensor& t, Fn&& fn) {
  int64_t n = t.numel();
  std::vector<int64_t> idx(size_t(t.ndim()), 0);
  for (int64_t e = 0; e < n; ++e) {
    fn(e, idx.data());
    for (int d = t.ndim() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < t.shape()[d]) break;
      idx[size_t(d)] = 0;
    }
  }
}

// Fills the elements of a (possibly strided) view with uniform values in [lo, hi], rounded
// to the view's dtype. Deterministic for a given seed.
inline void fill_uniform(const Tensor& t, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for_each_index(t, [&](int64_t, const int64_t* idx) {
    store_from_f32(t.element_ptr(idx), t.dtype(), 0, dist(rng));
  });
}

// Fills with values given in row-major order (hand-computed tests).
inline void fill_values(const Tensor& t, const std::vector<float>& values) {
  for_each_index(t, [&](int64_t e, const int64_t* idx) {
    store_from_f32(t.element_ptr(idx), t.dtype(), 0, values[size_t(e)]);
  });
}

// Reads a (possibly strided) view into a row-major f32 vector.
inline std::vector<float> to_vector(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  for_each_index(t, [&](int64_t e, const int64_t* idx) {
    out[size_t(e)] = load_as_f32(t.element_ptr(idx), t.dtype(), 0);
  });
  return out;
}

// Element-wise |actual - expected| <= atol + rtol * |expected| (NaN matches NaN only).
// Reports the worst element and the number of mismatches.
inline ::testing::AssertionResult all_close(const std::vector<float>& actual,
                                            const std::vector<float>& expected, double atol,
                                            double rtol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " vs expected " << expected.size();
  }
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double a = actual[i], e = expected[i];
    if (std::isnan(e) || std::isnan(a)) {
      if (std::isnan(e) != std::isnan(a)) {
        ++bad;
        if (worst < 0) worst = int64_t(i), worst_excess = INFINITY;
      }
      continue;
    }
    if (std::isinf(e) || std::isinf(a)) {
      if (a != e) ++bad, worst = int64_t(i), worst_excess = INFINITY;
      continue;
    }
    double err = std::fabs(a - e), tol = atol + rtol * std::fabs(e);
    if (err > tol) {
      ++bad;
      if (err - tol > worst_excess || worst < 0) worst_excess = err - tol, worst = int64_t(i);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(9);
  os << bad << " of " << actual.size() << " elements differ (atol " << atol << ", rtol " << rtol
     << "); worst at flat index " << worst << ": actual " << actual[size_t(worst)] << ", expected "
     << expected[size_t(worst)];
  return ::testing::AssertionFailure() << os.str();
}

inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected,
                                            double atol, double rtol) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.shape().to_string() << " vs " << expected.shape().to_string();
  }
  return all_close(to_vector(actual), to_vector(expected), atol, rtol);
}

// Bit-exact equality of the values (after widening to f32).
inline ::testing::AssertionResult all_equal(const Tensor& actual, const Tensor& expected) {
  return all_close(actual, expected, 0.0, 0.0);
}

// The unit roundoff of a storage dtype: the largest relative error of one round-to-nearest
// store, 2^-p for p significant bits (half an ulp at 1.0; one ulp is 2u relative at worst).
inline double half_ulp(DType t) {
  switch (t) {
    case DType::kBF16: return 1.0 / 256;      // p = 8: 2^-8
    case DType::kF16: return 1.0 / 2048;      // p = 11: 2^-11
    case DType::kF32: return 1.0 / 16777216;  // p = 24: 2^-24
    default: return 1.0 / 16;                 // fp8 e4m3: p = 4
  }
}

// The ISA levels this machine supports, lowest first.
inline std::vector<CpuIsa> supported_isas() {
  std::vector<CpuIsa> out{CpuIsa::kScalar};
  if (cpu_features().avx2_fma_f16c) out.push_back(CpuIsa::kAvx2);
  if (cpu_features().avx512) out.push_back(CpuIsa::kAvx512);
  return out;
}

// Runs fn() once per supported ISA level (capped with set_cpu_isa_cap), with a gtest scope
// trace naming the level, and lifts the cap afterwards even when fn fails an assertion.
template <typename Fn>
void for_each_isa(Fn&& fn) {
  struct Restore {
    CpuIsa before = active_cpu_isa();
    ~Restore() { set_cpu_isa_cap(before); }
  } restore;
  for (CpuIsa isa : supported_isas()) {
    set_cpu_isa_cap(isa);
    SCOPED_TRACE(std::string("isa=") + std::string(cpu_isa_name(isa)));
    fn();
  }
}

inline std::string dtype_str(DType t) { return std::string(dtype_name(t)); }

}  // namespace sd35::testing
