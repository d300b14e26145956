// Small helpers shared by the op benchmarks: timing (best of n), and table/JSON output.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
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

}  // namespace sd35::bench
