// Bulk dtype conversion of contiguous runs, SIMD-dispatched at run time (AVX-512, AVX2,
// scalar). Results are bit-identical across the three paths: all use round-to-nearest-even
// and the same NaN handling as float_convert.h.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace sd35 {

// Any compute float (f32, f16, bf16, fp8) to f32.
void convert_to_f32(const void* src, DType src_type, float* dst, int64_t n);
// f32 to any compute float.
void convert_from_f32(const float* src, void* dst, DType dst_type, int64_t n);
// Any compute float to any compute float (via f32; exact when widening).
void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n);

namespace detail {
// Per-ISA kernels; they handle f32 <-> {f16, bf16} and fall back to scalar for the rest.
bool convert_to_f32_avx512(const void* src, DType t, float* dst, int64_t n);
bool convert_from_f32_avx512(const float* src, void* dst, DType t, int64_t n);
bool convert_to_f32_avx2(const void* src, DType t, float* dst, int64_t n);
bool convert_from_f32_avx2(const float* src, void* dst, DType t, int64_t n);
}  // namespace detail

}  // namespace sd35
