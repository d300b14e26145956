// Shared oneDNN plumbing for the CPU GEMM and convolution kernels: the engine, a primitive
// cache keyed by shape/dtype (creating a primitive costs milliseconds, executing a cached
// one microseconds), and grow-only per-thread scratch buffers (a denoising step then
// allocates nothing after its first call). Baseline code only: this header includes
// dnnl.hpp and must never be included by *_avx2.cpp / *_avx512.cpp files.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"

namespace sd35::cpu {

class DnnlState {
 public:
  DnnlState() : engine_(dnnl::engine::kind::cpu, 0) {}
  const dnnl::engine& engine() const { return engine_; }

  // The cached object for `key`, created with `make` (which may throw dnnl::error) on a
  // miss. Primitives are immutable and may execute concurrently, so only the map is locked.
  std::shared_ptr<void> get_or_create(const std::string& key,
                                      const std::function<std::shared_ptr<void>()>& make);
  template <typename T, typename Make>
  std::shared_ptr<T> cached(const std::string& key, Make&& make) {
    return std::static_pointer_cast<T>(
        get_or_create(key, [&]() -> std::shared_ptr<void> { return make(); }));
  }

 private:
  // A few hundred distinct shapes at most in practice (one per layer kind and resolution);
  // the cap only bounds pathological callers.
  static constexpr size_t kMaxEntries = 1024;
  dnnl::engine engine_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<void>> cache_;
};

// The context's oneDNN state, created on first use (thread-safe).
DnnlState& dnnl_state(CpuContext& ctx);

// oneDNN data type of a dtype that oneDNN handles here (f32, bf16, f16).
dnnl::memory::data_type dnnl_dt(DType t);

// 64-byte aligned scratch of at least `bytes`, owned by the calling thread and reused by later
// calls with the same slot (contents are not preserved across calls that grow it). Returns
// nullptr when the memory cannot be allocated. Slots let one op hold several buffers at once.
enum class ScratchSlot { kGemmW, kGemmX, kGemmY, kBias, kConvW, kConvWBlocked, kConvSrc, kConvDst,
                         kCount };
void* thread_scratch(ScratchSlot slot, size_t bytes);

// Test hook: the conv2d band budget (bytes of blocked src + dst per band); 0 restores the
// default. Lets tests exercise the banding on small maps.
void set_conv_band_bytes_for_testing(size_t bytes);

// Runs `fn`, turning oneDNN and allocation exceptions into a Status (no exception escapes an
// op).
Status dnnl_guard(std::string_view op, const std::function<Status()>& fn);

}  // namespace sd35::cpu
