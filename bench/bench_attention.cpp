// Attention at the MMDiT's sizes: 24 heads of 64, q/k/v as strided slices of a fused qkv
// [B, L, 3·1536] buffer (as the model produces them), L = 1024 / 4096 (image-only attention at
// 512² / 1024²) and 4250 (joint attention at 1024²). FLOPs = 4·B·H·Lq·Lk·D.
//
//   bench_attention [--json] [--quick]
#include <cmath>
#include <cstdio>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "bench_common.h"
#include "core/cpu_features.h"
#include "core/tensor.h"

int main(int argc, char** argv) {
  using namespace sd35;
  int exit_code = 0;
  if (bench::handle_usage(
          argc, argv, {"--json", "--quick"},
          "usage: bench_attention [--json] [--quick]\n  Attention (online softmax), 24 heads of "
          "64, L = 1024/4096/4250, batch 1 and 2, f32 and bf16.\n"
          "  --json   machine-readable output\n"
          "  --quick  fewer shapes\n",
          &exit_code))
    return exit_code;
  const bool json = bench::has_flag(argc, argv, "--json");
  const bool quick = bench::has_flag(argc, argv, "--quick");
  cpu::CpuContext ctx(0);
  const int64_t H = 24, D = 64, HD = H * D;
  std::vector<int64_t> ls = {1024, 4096, 4250};
  std::vector<int64_t> bs = {1, 2};
  if (quick) ls = {1024, 4250}, bs = {1};
  if (json)
    std::printf("[\n");
  else
    std::printf("isa %s, avx512_bf16 %d, threads %d\n%2s %6s %-5s %9s %9s\n",
                std::string(cpu_isa_name(active_cpu_isa())).c_str(), int(active_avx512_bf16()),
                ctx.pool.size(), "B", "L", "dtype", "ms", "GFLOP/s");
  bool first = true;
  for (DType dt : {DType::kBF16, DType::kF32}) {
    for (int64_t b : bs) {
      for (int64_t l : ls) {
        auto qkv = Tensor::zeros({b, l, 3 * HD}, dt);
        auto out = Tensor::zeros({b, l, HD}, dt);
        if (!qkv.ok() || !out.ok()) return 1;
        // Random-ish values so the softmax is not degenerate (timing does not depend on them).
        for (int64_t i = 0; i < qkv->numel(); ++i)
          store_from_f32(qkv->data(), dt, i, float(std::sin(double(i) * 0.37)) * 2.0f);
        Tensor q = qkv->slice(2, 0, HD), k = qkv->slice(2, HD, 2 * HD),
               v = qkv->slice(2, 2 * HD, 3 * HD);
        const double gflop = 4.0 * double(b) * double(H) * double(l) * double(l) * double(D) * 1e-9;
        Status st;
        double ms = bench::best_ms(
            gflop > 60 ? 2 : 3, [&] { st = cpu::attention(ctx, q, k, v, *out, int(H), 0.125f); });
        if (!st.ok()) {
          std::fprintf(stderr, "attention failed: %s\n", st.to_string().c_str());
          return 1;
        }
        const char* name = dt == DType::kBF16 ? "bf16" : "f32";
        if (json)
          std::printf(
              "%s  {\"b\": %ld, \"heads\": %ld, \"d\": %ld, \"l\": %ld, \"dtype\": \"%s\", \"ms\": "
              "%.2f, "
              "\"gflops\": %.1f}",
              first ? "" : ",\n", long(b), long(H), long(D), long(l), name, ms, gflop / ms * 1e3);
        else
          std::printf("%2ld %6ld %-5s %9.1f %9.1f\n", long(b), long(l), name, ms, gflop / ms * 1e3);
        std::fflush(stdout);
        first = false;
      }
    }
  }
  if (json) std::printf("\n]\n");
  return 0;
}
