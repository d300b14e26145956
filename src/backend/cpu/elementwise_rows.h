// Row addressing and f32 staging shared by the baseline CPU op files (norm.cpp,
// elementwise.cpp, layout.cpp). Never include this from an *_avx2/*_avx512 file: it has
// ordinary inline functions (see core/float_convert.h).
#pragma once

#include <cstdint>
#include <vector>

#include "core/convert.h"
#include "core/tensor.h"

namespace sd35::cpu::rows {

// Byte address of row r (all indices but the last) of t viewed as [rows, size(-1)].
inline char* row_ptr(const Tensor& t, int64_t r) {
  int64_t off = 0;
  for (int d = t.ndim() - 2; d >= 0; --d) {
    int64_t n = t.size(d);
    off += (r % n) * t.stride(d);
    r /= n;
  }
  return static_cast<char*>(t.data()) + off * int64_t(t.element_size());
}

// Rows per parallel chunk so that a chunk holds at least ~16K elements.
inline int64_t grain_for(int64_t row_len) {
  return row_len >= 16384 ? 1 : 16384 / (row_len > 0 ? row_len : 1);
}

// The row at `src` as f32: the memory itself when already f32, else converted into buf.
inline const float* load_f32(const void* src, DType t, int64_t n, float* buf) {
  if (t == DType::kF32) return static_cast<const float*>(src);
  convert_to_f32(src, t, buf, n);
  return buf;
}

// Where a kernel should write a row destined for `dst`: dst itself when f32, else buf (then
// finish with store_f32).
inline float* out_f32(void* dst, DType t, float* buf) {
  return t == DType::kF32 ? static_cast<float*>(dst) : buf;
}
inline void store_f32(const float* out, void* dst, DType t, int64_t n) {
  if (t != DType::kF32) convert_from_f32(out, dst, t, n);
}

// A per-parameter f32 copy of an optional [C] vector (norm weight / bias); empty if absent.
inline std::vector<float> param_f32(const Tensor* p) {
  std::vector<float> v;
  if (!p) return v;
  v.resize(size_t(p->numel()));
  convert_to_f32(p->data(), p->dtype(), v.data(), p->numel());
  return v;
}

}  // namespace sd35::cpu::rows
