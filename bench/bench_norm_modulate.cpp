// The MMDiT's adaLN pre-norm h = LayerNorm(x)·(1 + scale) + shift at the model's sizes, two
// ways on the CPU backend: the two-op path the model used before (layer_norm into an f32
// scratch, then modulate) and the fused layer_norm_modulate. Both run interleaved in the
// same process (rep i of one, then rep i of the other), so load on the shared machine hits
// both alike; the ratio of the medians is reported. Memory traffic per call (f32 x, h of
// the output dtype): two-op reads x, writes and re-reads the f32 scratch, writes h; fused
// reads x and writes h.
//
// Then the VAE's GroupNorm + SiLU at decoder sizes (f32 trunk x, y in the compute dtype):
// group_norm then activation(kSilu) in place vs the one-pass group_norm_silu (same bytes).
//
//   bench_norm_modulate [--reps N] [--threads N] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/cpu_features.h"
#include "core/tensor.h"

namespace {

using namespace sd35;

constexpr const char* kUsage =
    "usage: bench_norm_modulate [--reps 9] [--threads N] [--json]\n"
    "  LayerNorm + adaLN modulate at [B, L, 1536] (B = 2; L = 154 context, 1024 and 4096\n"
    "  image tokens at 512² / 1024²), y bf16 and f32: layer_norm then modulate vs the fused\n"
    "  layer_norm_modulate, median (and min) ms over the reps, ratio of the medians.\n"
    "  Then GroupNorm(32) + SiLU at [1, C, H, W] VAE decoder sizes: group_norm then silu vs\n"
    "  group_norm_silu.\n";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double time_ms(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void fill(const Tensor& t, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  auto* p = static_cast<float*>(t.data());
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
}

// Medians and minima of the two ways, run interleaved (rep i of one, then of the other)
// after one warm-up call each.
struct Compared {
  double two_op_ms, fused_ms, two_op_min_ms, fused_min_ms;
};
Compared compare(const std::function<void()>& two_op, const std::function<void()>& fused,
                 int reps) {
  two_op();  // warm-up: page faults, thread pool start
  fused();
  std::vector<double> t2, tf;
  for (int r = 0; r < reps; ++r) {
    t2.push_back(time_ms(two_op));
    tf.push_back(time_ms(fused));
  }
  return {median(t2), median(tf), *std::min_element(t2.begin(), t2.end()),
          *std::min_element(tf.begin(), tf.end())};
}

void must(const Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "bench_norm_modulate: %s\n", s.to_string().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9, threads = 0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if ((a == "--reps" || a == "--threads") && i + 1 < argc) {
      const int v = std::atoi(argv[++i]);
      if (v <= 0 || v > 1000) {
        std::fprintf(stderr, "bench_norm_modulate: bad %s\n%s", a.c_str(), kUsage);
        return 2;
      }
      (a == "--reps" ? reps : threads) = v;
    } else if (a == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "bench_norm_modulate: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  std::unique_ptr<Backend> be = make_cpu_backend(threads);
  const int64_t B = 2, D = 1536;
  if (json)
    std::printf("[\n");
  else
    std::printf("isa %s, reps %d (medians; min in brackets)\n%6s %-5s %18s %18s %7s\n",
                std::string(cpu_isa_name(active_cpu_isa())).c_str(), reps, "L", "y", "two-op ms",
                "fused ms", "ratio");
  bool first = true;
  for (int64_t L : {154, 1024, 4096}) {
    for (DType yt : {DType::kBF16, DType::kF32}) {
      Tensor x = *Tensor::zeros({B, L, D}, DType::kF32);
      Tensor norm = *Tensor::zeros({B, L, D}, DType::kF32);
      Tensor h = *Tensor::zeros({B, L, D}, yt);
      Tensor ada = *Tensor::zeros({B, 6 * D}, DType::kF32);  // shift / scale are chunks
      fill(x, 1, -3.0f, 3.0f);
      fill(ada, 2, -1.0f, 1.0f);
      const Tensor shift = ada.slice(1, 0, D), scale = ada.slice(1, D, 2 * D);
      auto two_op = [&] {
        must(be->layer_norm(x, nullptr, nullptr, 1e-6f, norm));
        must(be->modulate(norm, shift, scale, h));
      };
      auto fused = [&] { must(be->layer_norm_modulate(x, shift, scale, 1e-6f, h)); };
      const Compared cmp = compare(two_op, fused, reps);
      const double m2 = cmp.two_op_ms, mf = cmp.fused_ms;
      const double n2 = cmp.two_op_min_ms, nf = cmp.fused_min_ms;
      const std::string y = std::string(dtype_name(yt));
      if (json) {
        std::printf(
            "%s  {\"op\": \"layer_norm_modulate\", \"L\": %lld, \"y\": \"%s\", \"two_op_ms\": %.4f, \"fused_ms\": %.4f, "
            "\"two_op_min_ms\": %.4f, \"fused_min_ms\": %.4f, \"ratio\": %.3f}",
            first ? "" : ",\n", (long long)L, y.c_str(), m2, mf, n2, nf, m2 / mf);
      } else {
        std::printf("%6lld %-5s %8.3f (%7.3f) %8.3f (%7.3f) %7.2f\n", (long long)L, y.c_str(), m2,
                    n2, mf, nf, m2 / mf);
      }
      first = false;
    }
  }
  if (!json)
    std::printf("\n%-18s %-5s %18s %18s %7s\n", "[N, C, H, W]", "y", "gn+silu ms", "fused ms",
                "ratio");
  const Shape vae_shapes[] = {{1, 512, 128, 128}, {1, 256, 256, 256}, {1, 128, 512, 512}};
  for (const Shape& shape : vae_shapes) {
    for (DType yt : {DType::kBF16, DType::kF32}) {
      const int64_t c = shape[1];
      Tensor x = *Tensor::zeros(shape, DType::kF32);
      Tensor y = *Tensor::zeros(shape, yt);
      Tensor w = *Tensor::zeros({c}, DType::kF32), b = *Tensor::zeros({c}, DType::kF32);
      fill(x, 3, -3.0f, 5.0f);
      fill(w, 4, 0.5f, 1.5f);
      fill(b, 5, -1.0f, 1.0f);
      auto two_op = [&] {
        must(be->group_norm(x, 32, &w, &b, 1e-6f, y));
        must(be->activation(y, Activation::kSilu, y));
      };
      auto fused = [&] { must(be->group_norm_silu(x, 32, &w, &b, 1e-6f, y)); };
      const Compared cmp = compare(two_op, fused, reps);
      const double m2 = cmp.two_op_ms, mf = cmp.fused_ms;
      const double n2 = cmp.two_op_min_ms, nf = cmp.fused_min_ms;
      const std::string yn = std::string(dtype_name(yt));
      if (json) {
        std::printf(
            ",\n  {\"op\": \"group_norm_silu\", \"shape\": \"%s\", \"y\": \"%s\", "
            "\"two_op_ms\": %.4f, \"fused_ms\": %.4f, \"two_op_min_ms\": %.4f, "
            "\"fused_min_ms\": %.4f, \"ratio\": %.3f}",
            shape.to_string().c_str(), yn.c_str(), m2, mf, n2, nf, m2 / mf);
      } else {
        std::printf("%-18s %-5s %8.3f (%7.3f) %8.3f (%7.3f) %7.2f\n", shape.to_string().c_str(),
                    yn.c_str(), m2, n2, mf, nf, m2 / mf);
      }
    }
  }
  if (json) std::printf("\n]\n");
  return 0;
}
