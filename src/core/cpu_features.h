// Run-time CPU feature detection: one binary built for baseline x86-64 selects its AVX2 or
// AVX-512 kernels here. SD35_CPU_ISA=scalar|avx2|avx512 caps the level (tests use it to run
// every kernel family on one machine).
#pragma once

#include <string_view>

#include "core/dtype.h"

namespace sd35 {

enum class CpuIsa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

struct CpuFeatures {
  bool avx2_fma_f16c = false;  // the AVX2 kernel family needs all three
  bool avx512 = false;         // F + BW + VL + DQ
  bool avx512_bf16 = false;    // vdpbf16ps / vcvtne2ps2bf16
  bool amx_bf16 = false;
};

const CpuFeatures& cpu_features();
// The ISA level kernels use: the best the CPU has, capped by SD35_CPU_ISA and set_cpu_isa_cap.
CpuIsa active_cpu_isa();
bool active_avx512_bf16();
// Caps the level for this process (tests); pass the CPU's best to lift the cap.
void set_cpu_isa_cap(CpuIsa cap);
std::string_view cpu_isa_name(CpuIsa isa);
// The activation dtype the CPU backend runs fastest with at the precision we accept: bf16
// (with f32 accumulation) where AVX512_BF16 is active, else f32. Engines, the server and the
// benchmarks default to it; golden checks use f32.
DType preferred_cpu_compute_dtype();

}  // namespace sd35
