// Whole-model benchmark on a full-size checkpoint (e.g. one written by
// `sd35 make-random-checkpoint --with-vae`): checkpoint load time (open + bind), one MMDiT
// forward and one VAE decode, in seconds and GFLOP/s against the bf16 GEMM peak measured in
// the same process, and peak RSS against the checkpoint's size (weights stay in their stored
// dtype, used in place from the mapping, so the target is RSS < 1.5 × the file).
//
//   bench_models <checkpoint> [--size 512] [--batch 2] [--context 154] [--compute auto|bf16|f32]
//                [--vae] [--reps 2] [--threads N] [--json]
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/cpu_features.h"
#include "models/mmdit/mmdit.h"
#include "models/vae/vae.h"
#include "weights/weight_index.h"

namespace {

using namespace sd35;

constexpr const char* kUsage =
    "usage: bench_models <checkpoint> [--size 512] [--batch 2] [--context 154]\n"
    "                    [--compute auto|bf16|f32] [--vae] [--reps 2] [--threads N] [--json]\n"
    "  MMDiT forward (batch, context tokens) and, with --vae, one VAE decode (batch 1) at\n"
    "  size x size pixels; GFLOP/s vs the oneDNN bf16 GEMM peak (M=2048, K=1536, N=6144);\n"
    "  load time; peak RSS vs the checkpoint size.\n";

struct Args {
  std::string checkpoint;
  int size = 512, batch = 2, context = 154, reps = 2, threads = 0;
  std::string compute = "auto";  // bf16 where the CPU has AVX512_BF16, else f32
  bool vae = false, json = false;
};

// Returns false (and sets *exit_code) when main should exit.
bool parse_args(int argc, char** argv, Args& a, int* exit_code) {
  auto bad = [&](const std::string& msg) {
    std::fprintf(stderr, "bench_models: %s\n%s", msg.c_str(), kUsage);
    *exit_code = 2;
    return false;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto int_value = [&](int& out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v <= 0 || v > 1 << 20) return false;
      out = int(v);
      return true;
    };
    if (s == "--help" || s == "-h") {
      std::printf("%s", kUsage);
      *exit_code = 0;
      return false;
    } else if (s == "--size") {
      if (!int_value(a.size) || a.size % 16 != 0) return bad("--size: a multiple of 16");
    } else if (s == "--batch") {
      if (!int_value(a.batch)) return bad("--batch: a positive integer");
    } else if (s == "--context") {
      if (!int_value(a.context)) return bad("--context: a positive integer");
    } else if (s == "--reps") {
      if (!int_value(a.reps)) return bad("--reps: a positive integer");
    } else if (s == "--threads") {
      if (!int_value(a.threads)) return bad("--threads: a positive integer");
    } else if (s == "--compute") {
      if (i + 1 >= argc) return bad("--compute: bf16 or f32");
      a.compute = argv[++i];
      if (a.compute != "bf16" && a.compute != "f32" && a.compute != "auto")
        return bad("--compute: bf16, f32 or auto");
    } else if (s == "--vae") {
      a.vae = true;
    } else if (s == "--json") {
      a.json = true;
    } else if (!s.empty() && s[0] != '-' && a.checkpoint.empty()) {
      a.checkpoint = s;
    } else {
      return bad("unknown argument '" + s + "'");
    }
  }
  if (a.checkpoint.empty()) return bad("no checkpoint given");
  return true;
}

// Deterministic values in [-amp, amp): the inputs only need a realistic scale.
void fill(const Tensor& t, uint64_t seed, float amp) {
  float* p = t.data_as<float>();
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = amp * (float(int64_t(s >> 40) - (1 << 23)) / float(1 << 23));
  }
}

int64_t non_finite(const Tensor& t) {
  int64_t n = 0;
  const float* p = t.data_as<const float>();
  for (int64_t i = 0; i < t.numel(); ++i) n += !std::isfinite(p[i]);
  return n;
}

// Multiply-add ×2 of one decode of a [1, z, h, w] latent: every convolution (2·Cout·Cin·k²
// per output pixel) and the mid-block attention (q, k, v, proj 1×1 convs plus the two
// (hw)²·C matmuls). Norms and activations are not counted (memory-bound, < 1%).
double vae_decode_flops(const VAEConfig& c, int64_t h, int64_t w) {
  auto conv = [](double cout, double cin, double k, double hw) {
    return 2.0 * cout * cin * k * k * hw;
  };
  double hw = double(h) * double(w);
  const double top = double(c.ch) * c.ch_mult.back();
  double f = conv(top, c.z_channels, 3, hw);  // conv_in
  auto resblock = [&](double in, double out) {
    return conv(out, in, 3, hw) + conv(out, out, 3, hw) + (in != out ? conv(out, in, 1, hw) : 0.0);
  };
  f += 2 * resblock(top, top) + 4 * conv(top, top, 1, hw) + 2 * 2.0 * hw * hw * top;  // mid
  double in = top;
  for (int l = int(c.ch_mult.size()) - 1; l >= 0; --l) {
    const double out = double(c.ch) * c.ch_mult[size_t(l)];
    for (int j = 0; j <= c.num_res_blocks; ++j) f += resblock(j == 0 ? in : out, out);
    if (l != 0) {
      hw *= 4;
      f += conv(out, out, 3, hw);  // upsample conv at the new resolution
    }
    in = out;
  }
  return f + conv(c.image_channels, in, 3, hw);  // conv_out
}

double seconds_of(const std::function<Status()>& fn, Status& st) {
  const auto t0 = std::chrono::steady_clock::now();
  st = fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "bench_models: %s: %s\n", what.c_str(), st.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  int exit_code = 0;
  if (!parse_args(argc, argv, a, &exit_code)) return exit_code;
  struct stat sb {};
  if (::stat(a.checkpoint.c_str(), &sb) != 0) {
    std::fprintf(stderr, "bench_models: %s: no such file\n", a.checkpoint.c_str());
    return 1;
  }
  const double file_bytes = double(sb.st_size);
  if (a.compute == "auto")
    a.compute = preferred_cpu_compute_dtype() == DType::kBF16 ? "bf16" : "f32";
  const DType compute = a.compute == "bf16" ? DType::kBF16 : DType::kF32;
  const auto log = [&](const char* fmt, auto... args) {
    if (!a.json) std::printf(fmt, args...), std::fflush(stdout);
  };

  // The machine's GEMM peak, measured first (its buffers are ~50 MB, small next to the RSS
  // being measured).
  const int64_t pm = 2048, pk = 1536, pn = 6144;
  const double peak_gflop = 2.0 * pm * pk * pn * 1e-9;
  const double peak_bf16 =
      peak_gflop / bench::dnnl_matmul_peak_ms(pm, pk, pn, dnnl::memory::data_type::bf16, 3) * 1e3;
  const double peak_f32 =
      peak_gflop / bench::dnnl_matmul_peak_ms(pm, pk, pn, dnnl::memory::data_type::f32, 3) * 1e3;
  log("GEMM peak (oneDNN matmul %ldx%ldx%ld, blocked weights): bf16 %.1f GFLOP/s, f32 %.1f\n",
      long(pm), long(pk), long(pn), peak_bf16, peak_f32);

  // Load: open (mmap + header validation) and bind (zero-copy views, validated shapes).
  Status st;
  std::unique_ptr<WeightIndex> index;
  std::unique_ptr<MMDiT> mmdit;
  std::unique_ptr<VAE> vae;
  const double load_s = seconds_of(
      [&]() -> Status {
        SD35_ASSIGN_OR_RETURN(index, WeightIndex::open({WeightInput{a.checkpoint, std::nullopt}}));
        SD35_ASSIGN_OR_RETURN(mmdit, MMDiT::load(*index));
        if (a.vae) {
          SD35_ASSIGN_OR_RETURN(vae, VAE::load(*index));
        }
        return ok_status();
      },
      st);
  if (!st.ok()) return fail("loading " + a.checkpoint, st);
  const MMDiTConfig& cfg = mmdit->config();
  log("checkpoint %s: %.2f GB, depth %d, hidden %d; load (open + bind) %.3f s\n",
      a.checkpoint.c_str(), file_bytes / 1e9, cfg.depth, cfg.hidden, load_s);

  auto backend = make_cpu_backend(a.threads);
  Arena arena;
  const int64_t B = a.batch, h = a.size / 8, w = a.size / 8, L = a.context;
  auto x = Tensor::zeros({B, cfg.in_channels, h, w}, DType::kF32);
  auto t = Tensor::zeros({B}, DType::kF32);
  auto ctx = Tensor::zeros({B, L, cfg.context_dim}, DType::kF32);
  auto y = Tensor::zeros({B, cfg.adm_in_channels}, DType::kF32);
  auto out = Tensor::zeros({B, cfg.out_channels, h, w}, DType::kF32);
  if (!x.ok() || !t.ok() || !ctx.ok() || !y.ok() || !out.ok()) return fail("inputs", x.status());
  fill(*x, 1, 1.7f);  // ~unit variance, like noise
  fill(*ctx, 2, 0.5f);
  fill(*y, 3, 1.0f);
  for (int64_t b = 0; b < B; ++b) t->data_as<float>()[b] = 500.0f + 250.0f * float(b);
  MMDiTInputs in{*x, *t, *ctx, *y};
  MMDiTOptions mopt;
  mopt.compute = compute;
  auto forward = [&]() -> Status {
    ArenaScope scope(arena);
    return mmdit->forward(*backend, arena, in, *out, mopt);
  };
  // One warm-up (page-faults the mapped weights in, sizes the arena), then best of reps.
  const double warm_s = seconds_of(forward, st);
  if (!st.ok()) return fail("MMDiT forward", st);
  double fwd_s = 1e30;
  for (int r = 0; r < a.reps; ++r) {
    fwd_s = std::min(fwd_s, seconds_of(forward, st));
    if (!st.ok()) return fail("MMDiT forward", st);
  }
  const double mmdit_gflop = MMDiT::forward_flops(cfg, B, h, w, L) * 1e-9;
  const double mmdit_gfs = mmdit_gflop / fwd_s;
  const int64_t mmdit_bad = non_finite(*out);
  log("MMDiT forward %dx%d batch %ld context %ld (%s): %.2f s (first %.2f s), %.0f GFLOP, "
      "%.1f GFLOP/s = %.1f%% of bf16 peak (%.1f%% of f32 peak)%s\n",
      a.size, a.size, long(B), long(L), a.compute.c_str(), fwd_s, warm_s, mmdit_gflop, mmdit_gfs,
      100 * mmdit_gfs / peak_bf16, 100 * mmdit_gfs / peak_f32,
      mmdit_bad ? " NON-FINITE OUTPUT" : "");

  double vae_s = 0, vae_warm_s = 0, vae_gflop = 0;
  int64_t vae_bad = 0;
  if (vae) {
    const VAEConfig& vc = vae->config();
    auto lat = Tensor::zeros({1, vc.z_channels, h, w}, DType::kF32);
    auto img = Tensor::zeros({1, vc.image_channels, 8 * h, 8 * w}, DType::kF32);
    if (!lat.ok() || !img.ok()) return fail("VAE buffers", lat.status());
    fill(*lat, 4, 1.0f);
    VAEOptions vopt;
    vopt.compute = compute;
    auto decode = [&]() -> Status {
      ArenaScope scope(arena);
      return vae->decode(*backend, arena, *lat, *img, vopt);
    };
    vae_warm_s = seconds_of(decode, st);
    if (!st.ok()) return fail("VAE decode", st);
    vae_s = 1e30;
    for (int r = 0; r < a.reps; ++r) {
      vae_s = std::min(vae_s, seconds_of(decode, st));
      if (!st.ok()) return fail("VAE decode", st);
    }
    vae_gflop = vae_decode_flops(vc, h, w) * 1e-9;
    vae_bad = non_finite(*img);
    log("VAE decode %dx%d (%s): %.2f s (first %.2f s), %.0f GFLOP, %.1f GFLOP/s = %.1f%% of bf16 "
        "peak%s\n",
        a.size, a.size, a.compute.c_str(), vae_s, vae_warm_s, vae_gflop, vae_gflop / vae_s,
        100 * vae_gflop / vae_s / peak_bf16, vae_bad ? " NON-FINITE OUTPUT" : "");
  }

  const bench::PeakMemory mem = bench::peak_memory();
  const double rss = double(std::max(mem.ru_maxrss_bytes, mem.vm_hwm_bytes));
  log("peak RSS %.2f GB (ru_maxrss %.2f GB, VmHWM %.2f GB) = %.2f x the checkpoint (%.2f GB); "
      "arena peak %.2f GB\n",
      rss / 1e9, double(mem.ru_maxrss_bytes) / 1e9, double(mem.vm_hwm_bytes) / 1e9,
      rss / file_bytes, file_bytes / 1e9, double(arena.peak_bytes()) / 1e9);

  if (a.json) {
    std::printf(
        "{\"checkpoint\": \"%s\", \"file_bytes\": %.0f, \"compute\": \"%s\", \"size\": %d, "
        "\"batch\": %ld, \"context\": %ld,\n"
        " \"gemm_peak_bf16_gflops\": %.1f, \"gemm_peak_f32_gflops\": %.1f, \"load_s\": %.4f,\n"
        " \"mmdit\": {\"forward_s\": %.4f, \"first_forward_s\": %.4f, \"gflop\": %.1f, "
        "\"gflops\": %.1f, \"pct_bf16_peak\": %.2f, \"non_finite\": %ld},\n",
        a.checkpoint.c_str(), file_bytes, a.compute.c_str(), a.size, long(B), long(L), peak_bf16,
        peak_f32, load_s, fwd_s, warm_s, mmdit_gflop, mmdit_gfs, 100 * mmdit_gfs / peak_bf16,
        long(mmdit_bad));
    if (vae) {
      std::printf(
          " \"vae_decode\": {\"decode_s\": %.4f, \"first_decode_s\": %.4f, \"gflop\": %.1f, "
          "\"gflops\": %.1f, \"pct_bf16_peak\": %.2f, \"non_finite\": %ld},\n",
          vae_s, vae_warm_s, vae_gflop, vae_gflop / vae_s, 100 * vae_gflop / vae_s / peak_bf16,
          long(vae_bad));
    }
    std::printf(
        " \"ru_maxrss_bytes\": %llu, \"vm_hwm_bytes\": %llu, \"peak_rss_over_file\": %.3f, "
        "\"arena_peak_bytes\": %zu}\n",
        (unsigned long long)mem.ru_maxrss_bytes, (unsigned long long)mem.vm_hwm_bytes,
        rss / file_bytes, arena.peak_bytes());
  }
  return (mmdit_bad || vae_bad) ? 1 : 0;
}
