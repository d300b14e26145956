// Per-op GPU timing for the CUDA backend, switched on with SD35_CUDA_PROFILE=1: every op is
// bracketed by two CUDA events on the backend's stream (no synchronisation is added, so the
// kernels overlap with the host as usual) and the summary — GPU milliseconds per op kind and
// shape, sorted by total — is written to stderr when the backend is destroyed. Each key's
// first call is shown apart from the mean of the others: it carries one-off costs (lazy
// module loading of a kernel's first launch, cuBLASLt/cuDNN planning, scratch growth) that
// would otherwise make a 10 µs GEMM look like milliseconds in a short run. This is how
// the MMDiT forward's time is attributed to GEMMs, attention and the elementwise ops without
// Nsight (the GPU machines here have no nsys).
#pragma once

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sd35::cuda {

class OpProfiler {
 public:
  // Null unless SD35_CUDA_PROFILE is set to a non-empty value other than "0".
  static std::unique_ptr<OpProfiler> from_env(cudaStream_t stream);
  explicit OpProfiler(cudaStream_t stream) : stream_(stream) {}
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  // Records the start of an op; returns a token for end().
  int begin();
  void end(int token, std::string key);
  // Synchronises the stream, folds pending records into the totals and prints the summary.
  void report();

 private:
  struct Pending {
    cudaEvent_t start = nullptr, stop = nullptr;
    std::string key;
  };
  struct Total {
    int count = 0;
    double ms = 0;        // all calls
    double first_ms = 0;  // the first call alone
  };
  void fold();
  cudaEvent_t take_event();

  cudaStream_t stream_;
  std::vector<cudaEvent_t> free_events_;
  std::vector<Pending> pending_;
  std::map<std::string, Total> totals_;
};

// Brackets one op when profiling is on; `key` is only evaluated then.
class ProfileScope {
 public:
  template <typename KeyFn>
  ProfileScope(OpProfiler* p, KeyFn&& key) : p_(p) {
    if (p_) {
      token_ = p_->begin();
      key_ = key();
    }
  }
  ~ProfileScope() {
    if (p_) p_->end(token_, std::move(key_));
  }
  // Appends to the key once the op has run (e.g. which implementation it took).
  void note(const char* s) {
    if (p_ && s && *s) key_ += std::string(" [") + s + "]";
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  OpProfiler* p_;
  int token_ = -1;
  std::string key_;
};

}  // namespace sd35::cuda
