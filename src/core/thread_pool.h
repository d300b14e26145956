// ThreadPool: a fixed set of workers sized to the CPUs this process may run on. The caller
// takes part in every parallel_for; a parallel_for issued from inside a worker (nesting)
// runs inline, so kernels can call each other freely.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sd35 {

class ThreadPool {
 public:
  // threads <= 0: SD35_THREADS if set, else the CPUs in this process's affinity mask.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long
  // (except the last), and returns when all are done. Safe to call from several threads:
  // concurrent calls are serialised.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  static int default_thread_count();

 private:
  void worker_loop();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  bool stop_ = false;

  // The job being run (valid while active_ > 0).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  std::atomic<int64_t> next_{0};
  int pending_workers_ = 0;
};

}  // namespace sd35
