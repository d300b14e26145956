#include "core/convert.h"

#include <array>
#include <cstring>

#include "core/cpu_features.h"
#include "core/float_convert.h"
#include "core/tensor.h"

namespace sd35 {
namespace {

void to_f32_scalar(const void* src, DType t, float* dst, int64_t n) {
  switch (t) {
    case DType::kF32: std::memcpy(dst, src, size_t(n) * 4); return;
    case DType::kF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::kBF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::kF8E4M3FN: {
      // 256-entry table: fp8 weights are decoded in GEMM panels, so this is a hot path.
      static const auto table = [] {
        std::array<float, 256> tb{};
        for (int b = 0; b < 256; ++b) tb[size_t(b)] = f8e4m3fn_to_f32(uint8_t(b));
        return tb;
      }();
      auto* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = table[s[i]];
      return;
    }
    case DType::kF8E5M2: {
      auto* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f8e5m2_to_f32(s[i]);
      return;
    }
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_as_f32(src, t, i);
  }
}

void from_f32_scalar(const float* src, void* dst, DType t, int64_t n) {
  switch (t) {
    case DType::kF32: std::memcpy(dst, src, size_t(n) * 4); return;
    case DType::kF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::kBF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::kF8E4M3FN: {
      auto* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f8e4m3fn(src[i]);
      return;
    }
    case DType::kF8E5M2: {
      auto* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f8e5m2(src[i]);
      return;
    }
    default:
      for (int64_t i = 0; i < n; ++i) store_from_f32(dst, t, i, src[i]);
  }
}

}  // namespace

void convert_to_f32(const void* src, DType t, float* dst, int64_t n) {
  if (n <= 0) return;
  CpuIsa isa = active_cpu_isa();
  if (isa == CpuIsa::kAvx512 && detail::convert_to_f32_avx512(src, t, dst, n)) return;
  if (isa >= CpuIsa::kAvx2 && detail::convert_to_f32_avx2(src, t, dst, n)) return;
  to_f32_scalar(src, t, dst, n);
}

void convert_from_f32(const float* src, void* dst, DType t, int64_t n) {
  if (n <= 0) return;
  CpuIsa isa = active_cpu_isa();
  if (isa == CpuIsa::kAvx512 && detail::convert_from_f32_avx512(src, dst, t, n)) return;
  if (isa >= CpuIsa::kAvx2 && detail::convert_from_f32_avx2(src, dst, t, n)) return;
  from_f32_scalar(src, dst, t, n);
}

void convert(const void* src, DType st, void* dst, DType dt, int64_t n) {
  if (n <= 0) return;
  if (st == dt) {
    std::memcpy(dst, src, size_t(n) * dtype_size(st));
    return;
  }
  if (st == DType::kF32) return convert_from_f32(static_cast<const float*>(src), dst, dt, n);
  if (dt == DType::kF32) return convert_to_f32(src, st, static_cast<float*>(dst), n);
  // Two hops through a small f32 buffer on the stack.
  constexpr int64_t kChunk = 1024;
  float buf[kChunk];
  auto* s = static_cast<const char*>(src);
  auto* d = static_cast<char*>(dst);
  for (int64_t i = 0; i < n; i += kChunk) {
    int64_t m = n - i < kChunk ? n - i : kChunk;
    convert_to_f32(s + i * int64_t(dtype_size(st)), st, buf, m);
    convert_from_f32(buf, d + i * int64_t(dtype_size(dt)), dt, m);
  }
}

}  // namespace sd35
