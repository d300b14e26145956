// End-to-end generation benchmark through the public engine API: one warm-up generation (CUDA
// context, kernel selection, arena sizing, page-faulting the mapped weights), then --runs timed
// ones (default 1), reported per stage from the engine's own Timings (medians over the runs);
// optionally N MMDiT forwards alone at the CFG batch (2) with the real context length (154),
// the number to compare with bench/torch_mmdit_baseline.py. Peak memory: on CUDA, a thread
// samples the device's free memory every 5 ms and reports total − min free (so it includes
// the CUDA context and anything else on the GPU); on the CPU, peak RSS.
//
//   bench_generate MODEL... [--backend cpu|cuda] [--device N] [--text-device auto|cpu|gpu]
//       [--width 1024] [--height 1024] [--steps 20] [--cfg 4.5] [--sampler dpmpp_2m]
//       [--scheduler sgm_uniform] [--seed 0] [--compute bf16|f32] [--no-t5]
//       [--warmup 1] [--runs 1] [--mmdit-iters 0] [--threads N] [--no-cuda-graphs]
//
// MODEL: the checkpoint and text-encoder files, or one folder. The last stdout line is a
// single JSON object (bench/gpu_check.sh parses it).
#include <atomic>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "models/mmdit/mmdit.h"
#include "pipeline/engine.h"

namespace {

using namespace sd35;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: bench_generate MODEL... [--backend cpu|cuda] [--device N]\n"
    "         [--text-device auto|cpu|gpu] [--width 1024] [--height 1024] [--steps 20]\n"
    "         [--cfg 4.5] [--sampler dpmpp_2m] [--scheduler sgm_uniform] [--seed 0]\n"
    "         [--compute bf16|f32] [--no-t5] [--warmup 1] [--mmdit-iters 0] [--threads N]\n"
    "         [--runs 1] [--no-cuda-graphs]\n"
    "  MODEL: checkpoint + text encoder files, or a folder. One warm-up generation, then\n"
    "  --runs timed ones: load, text encode, s/step, sample, VAE decode, total (medians over\n"
    "  the runs), peak memory; with --mmdit-iters N also N MMDiT forwards alone (batch 2, 154\n"
    "  context tokens). With cuda the denoising forwards are replayed as captured CUDA graphs\n"
    "  (the engine's default in the CLI and server); --no-cuda-graphs runs them eagerly.\n"
    "  The JSON has FNV-1a hashes of the image and latent bytes (A/B identity checks) and\n"
    "  whether every timed run gave the same image.\n"
    "  The last line is JSON.\n";

struct Args {
  std::vector<std::string> models;
  std::string backend = "cuda", text_device = "auto", compute = "bf16";
  std::string sampler = "dpmpp_2m", scheduler = "sgm_uniform";
  int device = 0, width = 1024, height = 1024, steps = 20, warmup = 1, mmdit_iters = 0;
  int threads = 0, runs = 1;
  double cfg = 4.5;
  uint64_t seed = 0;
  bool use_t5 = true;
  bool cuda_graphs = true;  // only where the backend can capture (cuda)
};

// FNV-1a of a tensor's bytes, as 16 hex digits.
std::string fnv1a_hex(const Tensor& t) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(t.data());
  const size_t n = t.data() ? size_t(t.numel()) * t.element_size() : 0;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Returns false (with *exit_code) when main should exit.
bool parse_args(int argc, char** argv, Args& a, int* exit_code) {
  auto bad = [&](const std::string& msg) {
    std::fprintf(stderr, "bench_generate: %s\n%s", msg.c_str(), kUsage);
    *exit_code = 2;
    return false;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    const bool has_value = i + 1 < argc;
    auto str = [&](std::string& out) { return has_value ? (out = argv[++i], true) : false; };
    auto num = [&](int& out, long lo, long hi) {
      if (!has_value) return false;
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v < lo || v > hi) return false;
      out = int(v);
      return true;
    };
    if (s == "--help" || s == "-h") {
      std::printf("%s", kUsage);
      *exit_code = 0;
      return false;
    } else if (s == "--backend") {
      if (!str(a.backend)) return bad("--backend: cpu or cuda");
    } else if (s == "--text-device") {
      if (!str(a.text_device) ||
          (a.text_device != "auto" && a.text_device != "cpu" && a.text_device != "gpu"))
        return bad("--text-device: auto, cpu or gpu");
    } else if (s == "--compute") {
      if (!str(a.compute) || (a.compute != "bf16" && a.compute != "f32"))
        return bad("--compute: bf16 or f32");
    } else if (s == "--sampler") {
      if (!str(a.sampler)) return bad("--sampler: a ComfyUI sampler name");
    } else if (s == "--scheduler") {
      if (!str(a.scheduler)) return bad("--scheduler: a ComfyUI scheduler name");
    } else if (s == "--device") {
      if (!num(a.device, 0, 1024)) return bad("--device: a GPU index");
    } else if (s == "--width" || s == "-W") {
      if (!num(a.width, 16, 1 << 14) || a.width % 16) return bad("--width: a multiple of 16");
    } else if (s == "--height" || s == "-H") {
      if (!num(a.height, 16, 1 << 14) || a.height % 16) return bad("--height: a multiple of 16");
    } else if (s == "--steps") {
      if (!num(a.steps, 1, 10000)) return bad("--steps: a positive integer");
    } else if (s == "--warmup") {
      if (!num(a.warmup, 0, 100)) return bad("--warmup: 0 or more");
    } else if (s == "--runs") {
      if (!num(a.runs, 1, 1000)) return bad("--runs: a positive integer");
    } else if (s == "--mmdit-iters") {
      if (!num(a.mmdit_iters, 0, 100000)) return bad("--mmdit-iters: 0 or more");
    } else if (s == "--threads") {
      if (!num(a.threads, 1, 4096)) return bad("--threads: a positive integer");
    } else if (s == "--cfg") {
      char* end = nullptr;
      if (!has_value) return bad("--cfg: a number");
      a.cfg = std::strtod(argv[++i], &end);
      if (*end != '\0' || !std::isfinite(a.cfg)) return bad("--cfg: a number");
    } else if (s == "--seed") {
      char* end = nullptr;
      if (!has_value) return bad("--seed: an integer");
      a.seed = std::strtoull(argv[++i], &end, 10);
      if (*end != '\0') return bad("--seed: an integer");
    } else if (s == "--no-t5") {
      a.use_t5 = false;
    } else if (s == "--cuda-graphs") {
      a.cuda_graphs = true;
    } else if (s == "--no-cuda-graphs") {
      a.cuda_graphs = false;
    } else if (!s.empty() && s[0] != '-') {
      a.models.push_back(s);
    } else {
      return bad("unknown argument '" + s + "'");
    }
  }
  if (a.models.empty()) return bad("no model files given");
  return true;
}

// Peak device memory in use: total − min(free), sampled every 5 ms on its own thread. It sees
// what cudaMemGetInfo sees: our weights, arenas and library workspaces, the CUDA context, and
// any other process on the same GPU.
class VramSampler {
 public:
  VramSampler(bool enabled, int device) : device_(device) {
    if (!enabled) return;
    auto info = cuda_device_info(device_);
    if (!info.ok()) return;
    total_ = info->total_bytes;
    min_free_ = start_free_ = info->free_bytes;
    thread_ = std::thread([this] { loop(); });
  }
  ~VramSampler() { stop(); }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  bool valid() const { return total_ > 0; }
  size_t total() const { return total_; }
  size_t peak_used() const { return total_ - min_free_.load(); }
  size_t start_used() const { return total_ - start_free_; }

 private:
  void sample() {
    auto info = cuda_device_info(device_);
    if (!info.ok()) return;
    size_t cur = min_free_.load();
    while (info->free_bytes < cur && !min_free_.compare_exchange_weak(cur, info->free_bytes)) {
    }
  }
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      lock.unlock();
      sample();
      lock.lock();
      wake_.wait_for(lock, std::chrono::milliseconds(5), [this] { return stop_; });
    }
  }
  int device_;
  size_t total_ = 0, start_free_ = 0;
  std::atomic<size_t> min_free_{0};
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
};

// Peak resident set (VmHWM) of this process, bytes; 0 when /proc is unavailable.
double peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) * 1024.0;
  return 0;
}

// Median of a non-empty list (the mean of the middle two for an even count).
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Deterministic values in [-amp, amp): the MMDiT inputs only need a realistic scale.
void fill(std::vector<float>& v, uint64_t seed, float amp) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = amp * (float(int64_t(s >> 40) - (1 << 23)) / float(1 << 23));
  }
}

// A tensor in the workspace arena (on the backend's device once the arena allocates there)
// holding `host`, uploaded through the backend's memory.
Result<Tensor> upload(Workspace& ws, const Shape& shape, const std::vector<float>& host) {
  SD35_ASSIGN_OR_RETURN(Tensor t, ws.arena().tensor(shape, DType::kF32));
  SD35_RETURN_IF_ERROR(
      ws.backend().memory().copy_to_device(t.data(), host.data(), host.size() * sizeof(float)));
  return t;
}

// Mean milliseconds of `iters` MMDiT forwards at batch 2 (cond + uncond), 154 context tokens,
// after one untimed forward; each forward is followed by a synchronize so queued GPU work is
// inside the measurement.
Result<double> time_mmdit(const Engine& engine, Workspace& ws, const Args& a, DType compute) {
  const MMDiTConfig& cfg = engine.mmdit().config();
  const int64_t B = 2, L = 154, h = a.height / 8, w = a.width / 8;
  ArenaScope scope(ws.arena());
  std::vector<float> hx(size_t(B * cfg.in_channels * h * w)), hc(size_t(B * L * cfg.context_dim)),
      hy(size_t(B * cfg.adm_in_channels)), ht = {600.0f, 600.0f};
  fill(hx, 1, 1.7f);  // ~unit variance, like noise
  fill(hc, 2, 0.5f);
  fill(hy, 3, 1.0f);
  SD35_ASSIGN_OR_RETURN(Tensor x, upload(ws, {B, cfg.in_channels, h, w}, hx));
  SD35_ASSIGN_OR_RETURN(Tensor t, upload(ws, {B}, ht));
  SD35_ASSIGN_OR_RETURN(Tensor c, upload(ws, {B, L, cfg.context_dim}, hc));
  SD35_ASSIGN_OR_RETURN(Tensor y, upload(ws, {B, cfg.adm_in_channels}, hy));
  SD35_ASSIGN_OR_RETURN(Tensor out, ws.arena().tensor({B, cfg.out_channels, h, w}, DType::kF32));
  MMDiTOptions opt;
  opt.compute = compute;
  const MMDiTInputs in{x, t, c, y};
  Backend& backend = ws.backend();
  double total = 0;
  for (int i = 0; i <= a.mmdit_iters; ++i) {
    const auto t0 = Clock::now();
    SD35_RETURN_IF_ERROR(engine.mmdit().forward(backend, ws.arena(), in, out, opt));
    SD35_RETURN_IF_ERROR(backend.synchronize());
    if (i > 0) total += since(t0);  // forward 0 is the warm-up
  }
  return 1e3 * total / a.mmdit_iters;
}

int fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "bench_generate: %s: %s\n", what.c_str(), st.to_string().c_str());
  std::printf("{\"ok\": false, \"error\": \"%s\"}\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  int exit_code = 0;
  if (!parse_args(argc, argv, a, &exit_code)) return exit_code;
  const bool cuda = a.backend == "cuda";
  std::string gpu_name, cudnn = "n/a";
  if (cuda) {
    auto info = cuda_device_info(a.device);
    if (!info.ok()) return fail("CUDA device " + std::to_string(a.device), info.status());
    gpu_name = info->name;
    // For the JSON line: a load error may quote a path; keep the string JSON-safe.
    cudnn.clear();
    for (char c : info->cudnn) cudnn += (c == '"' || c == '\\' || c < 0x20) ? '_' : c;
  }
  VramSampler vram(cuda, a.device);  // started before load: the weights count

  EngineOptions eo = EngineOptions::with_defaults();
  for (const std::string& m : a.models) eo.models.push_back(WeightInput{m, std::nullopt});
  eo.backend = a.backend;
  eo.threads = a.threads;
  eo.load_t5 = a.use_t5;
  auto compute = compute_dtype_from_name(a.compute);
  if (!compute.ok()) return fail("--compute", compute.status());
  eo.compute = *compute;
  eo.text_device = a.text_device;
  eo.device = a.device;
  eo.cuda_graphs = a.cuda_graphs;
  GenerateParams gp;
  gp.prompt = "a photo of an astronaut riding a horse on the moon, highly detailed";
  gp.negative = "";
  gp.width = a.width;
  gp.height = a.height;
  gp.use_t5 = a.use_t5;
  auto sampler = sampler_from_name(a.sampler);
  if (!sampler.ok()) return fail("--sampler", sampler.status());
  auto scheduler = scheduler_from_name(a.scheduler);
  if (!scheduler.ok()) return fail("--scheduler", scheduler.status());
  gp.sample.sampler = *sampler;
  gp.sample.scheduler = *scheduler;
  gp.sample.steps = a.steps;
  gp.sample.cfg = a.cfg;
  gp.sample.seed = a.seed;

  const auto load_t0 = Clock::now();
  auto engine_or = Engine::load(eo);
  if (!engine_or.ok()) return fail("loading the models", engine_or.status());
  const Engine& engine = **engine_or;
  auto ws_or = engine.make_workspace();  // no prompt cache: every run encodes its prompts
  if (!ws_or.ok()) return fail("workspace", ws_or.status());
  Workspace& ws = **ws_or;
  const double load_s = since(load_t0);
  std::printf("backend %s%s%s, compute %s, text device %s (requested), %dx%d, %d steps %s/%s, "
              "cfg %.2f; load %.2f s\n",
              a.backend.c_str(), cuda ? " on " : "", gpu_name.c_str(), a.compute.c_str(),
              a.text_device.c_str(), a.width, a.height, a.steps, a.sampler.c_str(),
              a.scheduler.c_str(), a.cfg, load_s);
  std::fflush(stdout);

  Result<GenerateResult> res = unsupported("no run");
  double first_total_s = 0;
  // Per stage over the timed runs (medians: a GPU's first-touch or a host hiccup in one run
  // must not decide an A/B row).
  std::vector<double> encode_s, step_means, sample_s, vae_s, total_s;
  std::string first_image_hash;
  bool same_image = true;
  for (int run = 0; run < a.warmup + a.runs; ++run) {
    const auto t0 = Clock::now();
    res = engine.generate(ws, gp);
    if (!res.ok()) return fail(run < a.warmup ? "warm-up generation" : "generation", res.status());
    if (cuda) {
      Status st = ws.backend().synchronize();
      if (!st.ok()) return fail("synchronize", st);
    }
    if (run == 0) first_total_s = since(t0);
    if (run < a.warmup) {
      std::printf("warm-up generation %d: %.2f s\n", run + 1, since(t0));
      continue;
    }
    const Timings& t = res->timings;
    double steps_sum = 0;
    for (double x : t.step_s) steps_sum += x;
    encode_s.push_back(t.encode_prompt_s);
    step_means.push_back(t.step_s.empty() ? 0 : steps_sum / double(t.step_s.size()));
    sample_s.push_back(t.sample_s);
    vae_s.push_back(t.vae_decode_s);
    total_s.push_back(t.total_s);
    const std::string h = fnv1a_hex(res->image);
    if (first_image_hash.empty()) first_image_hash = h;
    same_image = same_image && h == first_image_hash;
  }
  const Timings& tm = res->timings;  // the last run: counts (model calls, replays)
  const double step_s = median(step_means);
  double mmdit_ms = 0;
  if (a.mmdit_iters > 0) {
    auto ms = time_mmdit(engine, ws, a, *compute);
    if (!ms.ok()) return fail("MMDiT forward", ms.status());
    mmdit_ms = *ms;
  }
  vram.stop();
  const double gb = 1e9;
  const double peak_vram = vram.valid() ? double(vram.peak_used()) / gb : 0;
  const double rss = peak_rss_bytes() / gb;

  std::printf("  load            %8.3f s\n", load_s);
  if (a.runs > 1) std::printf("  (medians of %d timed runs; same image every run: %s)\n", a.runs,
                              same_image ? "yes" : "NO");
  std::printf("  text encode     %8.3f s  (positive + negative prompt)\n", median(encode_s));
  std::printf("  per step        %8.4f s  (mean of %zu steps, %d model calls, %d replayed)\n",
              step_s, tm.step_s.size(), tm.model_calls, tm.graph_replays);
  std::printf("  sample          %8.3f s\n", median(sample_s));
  std::printf("  VAE decode      %8.3f s\n", median(vae_s));
  std::printf("  total           %8.3f s  (first run %.3f s)\n", median(total_s), first_total_s);
  if (a.mmdit_iters > 0)
    std::printf("  MMDiT forward   %8.2f ms (batch 2, 154 context tokens, mean of %d)\n", mmdit_ms,
                a.mmdit_iters);
  if (vram.valid())
    std::printf("  peak VRAM       %8.2f GB (total - min free: includes the CUDA context; "
                "%.2f GB in use before load)\n",
                peak_vram, double(vram.start_used()) / gb);
  std::printf("  peak RSS        %8.2f GB\n", rss);
  std::printf(
      "{\"ok\": true, \"backend\": \"%s\", \"gpu\": \"%s\", \"compute\": \"%s\", "
      "\"text_device\": \"%s\", \"width\": %d, \"height\": %d, \"steps\": %d, \"cfg\": %.3f, "
      "\"sampler\": \"%s\", \"scheduler\": \"%s\", \"load_s\": %.4f, \"text_encode_s\": %.4f, "
      "\"step_s\": %.5f, \"sample_s\": %.4f, \"vae_decode_s\": %.4f, \"total_s\": %.4f, "
      "\"first_total_s\": %.4f, \"model_calls\": %d, \"mmdit_forward_ms\": %.3f, "
      "\"mmdit_iters\": %d, \"peak_vram_gb\": %.3f, \"vram_before_load_gb\": %.3f, "
      "\"peak_rss_gb\": %.3f, \"cuda_graphs\": %s, \"graph_replays\": %d, "
      "\"image_fnv1a\": \"%s\", \"latent_fnv1a\": \"%s\", \"cudnn\": \"%s\", \"runs\": %d, "
      "\"same_image_every_run\": %s}\n",
      a.backend.c_str(), gpu_name.c_str(), a.compute.c_str(), a.text_device.c_str(), a.width,
      a.height, a.steps, a.cfg, a.sampler.c_str(), a.scheduler.c_str(), load_s,
      median(encode_s), step_s, median(sample_s), median(vae_s), median(total_s), first_total_s,
      tm.model_calls, mmdit_ms, a.mmdit_iters, peak_vram,
      vram.valid() ? double(vram.start_used()) / gb : 0.0, rss,
      a.cuda_graphs && cuda ? "true" : "false",
      tm.graph_replays, fnv1a_hex(res->image).c_str(), fnv1a_hex(res->latent).c_str(),
      cudnn.c_str(), a.runs, same_image ? "true" : "false");
  return 0;
}
