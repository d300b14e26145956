#include "core/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sd35 {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2_fma_f16c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  f.avx512 = f.avx2_fma_f16c && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
  return f;
}

CpuIsa best_isa(const CpuFeatures& f) {
  if (f.avx512) return CpuIsa::kAvx512;
  if (f.avx2_fma_f16c) return CpuIsa::kAvx2;
  return CpuIsa::kScalar;
}

CpuIsa env_cap() {
  const char* v = std::getenv("SD35_CPU_ISA");
  if (!v) return CpuIsa::kAvx512;
  if (std::strcmp(v, "scalar") == 0) return CpuIsa::kScalar;
  if (std::strcmp(v, "avx2") == 0) return CpuIsa::kAvx2;
  return CpuIsa::kAvx512;
}

std::atomic<int> g_cap{-1};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

CpuIsa active_cpu_isa() {
  int cap = g_cap.load(std::memory_order_relaxed);
  if (cap < 0) {
    cap = int(env_cap());
    g_cap.store(cap, std::memory_order_relaxed);
  }
  int best = int(best_isa(cpu_features()));
  return CpuIsa(cap < best ? cap : best);
}

bool active_avx512_bf16() {
  return active_cpu_isa() == CpuIsa::kAvx512 && cpu_features().avx512_bf16;
}

void set_cpu_isa_cap(CpuIsa cap) { g_cap.store(int(cap), std::memory_order_relaxed); }

DType preferred_cpu_compute_dtype() {
  return active_avx512_bf16() ? DType::kBF16 : DType::kF32;
}

std::string_view cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
  }
  return "?";
}

}  // namespace sd35
