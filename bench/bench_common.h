// Small helpers shared by the benchmarks: timing (best of n), table/JSON output, the oneDNN
// GEMM peak every result is compared with, and peak memory.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

namespace sd35::bench {

// Best wall time in ms over `reps` runs after one warm-up (the machine is shared and noisy:
// the minimum is the most reproducible statistic).
inline double best_ms(int reps, const std::function<void()>& fn) {
  fn();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ms < best) best = ms;
  }
  return best;
}

inline bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return true;
  return false;
}

// Accepts only the flags in `known`; prints `usage` and says whether main should exit (with
// 0 for --help, 2 for an unknown argument).
inline bool handle_usage(int argc, char** argv, const std::vector<std::string>& known,
                         const char* usage, int* exit_code) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", usage);
      *exit_code = 0;
      return true;
    }
    bool ok = false;
    for (const std::string& k : known) ok = ok || a == k;
    if (!ok) {
      std::fprintf(stderr, "unknown argument '%s'\n%s", a.c_str(), usage);
      *exit_code = 2;
      return true;
    }
  }
  return false;
}

// Best time in ms of a plain oneDNN matmul [m, k] x [k, n] in `dt` with the weights in
// oneDNN's preferred blocked layout (reordered once, untimed) and no post-ops: the GEMM peak
// of this machine that the engine's results are reported against. Buffers are touched before
// timing so that page faults are not counted.
inline double dnnl_matmul_peak_ms(int64_t m, int64_t k, int64_t n, dnnl::memory::data_type dt,
                                  int reps) {
  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  memory::desc xm({m, k}, dt, memory::format_tag::ab), ym({m, n}, dt, memory::format_tag::ab);
  memory::desc wany({k, n}, dt, memory::format_tag::any);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(xm, wany, ym), eng);
  memory x(xm, eng), w(pd.weights_desc(), eng), y(ym, eng);
  std::memset(x.get_data_handle(), 0, xm.get_size());
  std::memset(w.get_data_handle(), 0, pd.weights_desc().get_size());
  std::memset(y.get_data_handle(), 0, ym.get_size());
  dnnl::matmul mm(pd);
  return best_ms(reps, [&] {
    mm.execute(s, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}});
    s.wait();
  });
}

// Peak resident set of this process in bytes: getrusage's ru_maxrss (KiB on Linux) and
// /proc/self/status VmHWM (0 when unavailable). Both count touched pages of mapped weight
// files, which is what "weights stay in their stored dtype, used in place" has to be judged by.
struct PeakMemory {
  uint64_t ru_maxrss_bytes = 0;
  uint64_t vm_hwm_bytes = 0;
};
inline PeakMemory peak_memory() {
  PeakMemory p;
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) == 0) p.ru_maxrss_bytes = uint64_t(ru.ru_maxrss) * 1024;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      p.vm_hwm_bytes = std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;  // "  123 kB"
      break;
    }
  }
  return p;
}

}  // namespace sd35::bench
