// GEMM at the MMDiT's shapes: our cpu::gemm (weights used in place, nn.Linear layout) against
// the best plain oneDNN matmul on the same machine (weights pre-reordered once into oneDNN's
// preferred blocked layout, no post-ops): the ratio shows what the in-place layout costs.
//
//   bench_gemm [--json] [--quick]
#include <cstdio>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "bench_common.h"
#include "core/tensor.h"

namespace {

using namespace sd35;
using dnnl::memory;

// The oneDNN peak for the same shape (bench_common.h): the reference ours is judged by.
double peak_ms(int64_t m, int64_t k, int64_t n, memory::data_type dt, int reps) {
  return bench::dnnl_matmul_peak_ms(m, k, n, dt, reps);
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  if (bench::handle_usage(argc, argv, {"--json", "--quick"},
                          "usage: bench_gemm [--json] [--quick]\n  GEMM at the MMDiT shapes (M = "
                          "2048, 8192; K/N in 1536/4608/6144): ours vs the oneDNN peak.\n"
                          "  --json   machine-readable output\n"
                          "  --quick  fewer shapes\n",
                          &exit_code))
    return exit_code;
  const bool json = bench::has_flag(argc, argv, "--json");
  const bool quick = bench::has_flag(argc, argv, "--quick");
  cpu::CpuContext ctx(0);
  struct Shape {
    const char* name;
    int64_t k, n;
  };
  const Shape shapes[] = {
      {"qkv", 1536, 4608}, {"proj", 1536, 1536}, {"fc1", 1536, 6144}, {"fc2", 6144, 1536}};
  struct Mode {
    const char* name;
    DType x, w;
  };
  const Mode modes[] = {{"f32", DType::kF32, DType::kF32},
                        {"bf16", DType::kBF16, DType::kBF16},
                        {"bf16/wf16", DType::kBF16, DType::kF16}};
  std::vector<int64_t> ms = {2048, 8192};
  if (quick) ms = {2048};
  if (!json) {
    std::printf("%-5s %6s %5s %5s %-10s %9s %9s %10s %6s\n", "layer", "M", "K", "N", "dtype", "ms",
                "GFLOP/s", "peak GF/s", "ratio");
  } else {
    std::printf("[\n");
  }
  bool first = true;
  for (int64_t m : ms) {
    for (const Shape& sh : shapes) {
      for (const Mode& md : modes) {
        const int64_t k = sh.k, n = sh.n;
        auto x = Tensor::zeros({m, k}, md.x);
        auto w = Tensor::zeros({n, k}, md.w);
        auto y = Tensor::zeros({m, n}, md.x);
        auto b = Tensor::zeros({n}, DType::kF32);
        if (!x.ok() || !w.ok() || !y.ok() || !b.ok()) return 1;
        const double gflop = 2.0 * double(m) * double(k) * double(n) * 1e-9;
        const int reps = gflop > 100 ? 2 : 4;
        Status st;
        double ours = bench::best_ms(reps, [&] { st = cpu::gemm(ctx, *x, *w, &*b, *y, {}); });
        if (!st.ok()) {
          std::fprintf(stderr, "gemm failed: %s\n", st.to_string().c_str());
          return 1;
        }
        double peak = peak_ms(
            m, k, n, md.x == DType::kF32 ? memory::data_type::f32 : memory::data_type::bf16, reps);
        const double gf = gflop / ours * 1e3, pgf = gflop / peak * 1e3;
        if (json) {
          std::printf(
              "%s  {\"layer\": \"%s\", \"m\": %ld, \"k\": %ld, \"n\": %ld, \"dtype\": \"%s\", "
              "\"ms\": %.3f, "
              "\"gflops\": %.1f, \"peak_gflops\": %.1f, \"ratio\": %.3f}",
              first ? "" : ",\n", sh.name, long(m), long(k), long(n), md.name, ours, gf, pgf,
              gf / pgf);
        } else {
          std::printf("%-5s %6ld %5ld %5ld %-10s %9.2f %9.1f %10.1f %6.2f\n", sh.name, long(m),
                      long(k), long(n), md.name, ours, gf, pgf, gf / pgf);
        }
        std::fflush(stdout);
        first = false;
      }
    }
  }
  if (json) std::printf("\n]\n");
  return 0;
}
