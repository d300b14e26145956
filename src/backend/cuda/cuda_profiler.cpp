#include "backend/cuda/cuda_profiler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sd35::cuda {

std::unique_ptr<OpProfiler> OpProfiler::from_env(cudaStream_t stream) {
  const char* v = std::getenv("SD35_CUDA_PROFILE");
  if (!v || !*v || std::strcmp(v, "0") == 0) return nullptr;
  return std::make_unique<OpProfiler>(stream);
}

OpProfiler::~OpProfiler() {
  report();
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
}

cudaEvent_t OpProfiler::take_event() {
  if (free_events_.empty()) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) return nullptr;
    return e;
  }
  cudaEvent_t e = free_events_.back();
  free_events_.pop_back();
  return e;
}

int OpProfiler::begin() {
  // Bound the events in flight: fold (one synchronisation) every few thousand ops.
  if (pending_.size() >= 4096) fold();
  Pending p;
  p.start = take_event();
  if (p.start) cudaEventRecord(p.start, stream_);
  pending_.push_back(std::move(p));
  return int(pending_.size()) - 1;
}

void OpProfiler::end(int token, std::string key) {
  if (token < 0 || size_t(token) >= pending_.size()) return;
  Pending& p = pending_[size_t(token)];
  p.stop = take_event();
  if (p.stop) cudaEventRecord(p.stop, stream_);
  p.key = std::move(key);
}

void OpProfiler::fold() {
  cudaStreamSynchronize(stream_);
  for (Pending& p : pending_) {
    float ms = 0;
    if (p.start && p.stop && cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) {
      Total& t = totals_[p.key.empty() ? "(unnamed)" : p.key];
      if (t.count == 0) t.first_ms = ms;
      ++t.count;
      t.ms += ms;
    }
    if (p.start) free_events_.push_back(p.start);
    if (p.stop) free_events_.push_back(p.stop);
  }
  pending_.clear();
  cudaGetLastError();  // a failed timing query must not poison the next op's launch check
}

void OpProfiler::report() {
  fold();
  if (totals_.empty()) return;
  // Ranked by the steady-state total (all calls but the first); "first" is the first call.
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  const auto steady = [](const Total& t) { return t.ms - t.first_ms; };
  std::sort(rows.begin(), rows.end(),
            [&](const auto& a, const auto& b) { return steady(a.second) > steady(b.second); });
  double all = 0, firsts = 0;
  for (const auto& r : rows) {
    all += steady(r.second);
    firsts += r.second.first_ms;
  }
  std::fprintf(stderr,
               "cuda profile: %.3f ms of GPU time in %zu op kinds after each kind's first call "
               "(first calls: %.3f ms more)\n"
               "  %9s %6s %7s   %10s %10s\n",
               all, rows.size(), firsts, "total", "share", "calls", "mean", "first");
  for (const auto& [key, t] : rows) {
    const double rest = steady(t);
    const int n = t.count - 1;
    char mean[32] = "-";
    if (n > 0) std::snprintf(mean, sizeof mean, "%.4f", rest / n);
    std::fprintf(stderr, "  %9.3f ms %5.1f%% %5d+1 x %10s %10.4f ms  %s\n", rest,
                 all > 0 ? 100.0 * rest / all : 0.0, n, mean, t.first_ms, key.c_str());
  }
  totals_.clear();
}

}  // namespace sd35::cuda
