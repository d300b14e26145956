// Element types. Storage types cover everything a safetensors header may name;
// compute paths use f32 / bf16 / f16 activations and f32/f16/bf16/fp8 weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sd35 {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kF8E4M3FN,  // 1-4-3, bias 7, no infinities, 0x7F/0xFF are NaN (torch.float8_e4m3fn)
  kF8E5M2,    // 1-5-2, bias 15, IEEE-like (the top byte of an fp16)
  kF64,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
};

size_t dtype_size(DType t);
// Lower-case name used in messages ("bf16", "f8_e4m3fn").
std::string_view dtype_name(DType t);
// The dtype string of a safetensors header ("BF16", "F8_E4M3") or nullopt when unknown.
std::optional<DType> dtype_from_safetensors(std::string_view s);
bool dtype_is_float(DType t);
// Types the numeric kernels read as real numbers (f32, f16, bf16, fp8).
bool dtype_is_compute_float(DType t);

}  // namespace sd35
