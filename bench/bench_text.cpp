// Text-encoder benchmark on full-size files (e.g. the random ones written by
// `sd35 make-random-checkpoint --text-encoders DIR`): load time (open + bind), one SD3
// conditioning of a prompt that fills one 77-token CLIP chunk and a 77-token T5 sequence,
// seconds per encoder (CLIP-L, CLIP-G, T5-XXL) and in total, and peak RSS against the files'
// size. Run once per T5 file (fp16, scaled fp8): peak RSS is per process.
//
//   bench_text --clip-l FILE --clip-g FILE --t5 FILE [--reps 2] [--threads N]
//              [--tokenizer-dir DIR] [--json]
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_common.h"
#include "pipeline/conditioning.h"
#include "weights/weight_index.h"

namespace {

using namespace sd35;

constexpr const char* kUsage =
    "usage: bench_text [--clip-l FILE] [--clip-g FILE] [--t5 FILE] [--reps 2] [--threads N]\n"
    "                  [--tokenizer-dir DIR] [--json]\n"
    "  SD3 conditioning of a 77-token prompt with the given encoders: load time, seconds per\n"
    "  encoder and in total (first call and best of reps), peak RSS vs the files' size.\n"
    "  --tokenizer-dir: a folder with clip/vocab.json, clip/merges.txt, t5/tokenizer.json\n"
    "  (default: the data the program ships).\n";

// ~60 CLIP tokens and ~70 T5 tokens: one CLIP chunk (77 with start/end/pad) and a T5
// sequence of exactly 77 (the minimum length), i.e. the typical SD3 context [1, 154, 4096].
constexpr const char* kPrompt =
    "a highly detailed photograph of an old lighthouse standing on a rocky cliff above a stormy "
    "sea at sunset, dramatic orange and purple clouds, waves crashing against the rocks, a "
    "small fishing boat in the distance, seagulls in the sky, cinematic lighting, sharp focus, "
    "wide angle lens, award winning landscape photography";

struct Args {
  std::string clip_l, clip_g, t5, tokenizer_dir;
  int reps = 2, threads = 0;
  bool json = false;
};

bool parse_args(int argc, char** argv, Args& a, int* exit_code) {
  auto bad = [&](const std::string& msg) {
    std::fprintf(stderr, "bench_text: %s\n%s", msg.c_str(), kUsage);
    *exit_code = 2;
    return false;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto str_value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
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
    } else if (s == "--clip-l") {
      if (!str_value(a.clip_l)) return bad("--clip-l: a file");
    } else if (s == "--clip-g") {
      if (!str_value(a.clip_g)) return bad("--clip-g: a file");
    } else if (s == "--t5") {
      if (!str_value(a.t5)) return bad("--t5: a file");
    } else if (s == "--tokenizer-dir") {
      if (!str_value(a.tokenizer_dir)) return bad("--tokenizer-dir: a folder");
    } else if (s == "--reps") {
      if (!int_value(a.reps)) return bad("--reps: a positive integer");
    } else if (s == "--threads") {
      if (!int_value(a.threads)) return bad("--threads: a positive integer");
    } else if (s == "--json") {
      a.json = true;
    } else {
      return bad("unknown argument '" + s + "'");
    }
  }
  if (a.clip_l.empty() && a.clip_g.empty() && a.t5.empty()) return bad("no encoder file given");
  return true;
}

int fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "bench_text: %s: %s\n", what.c_str(), st.to_string().c_str());
  return 1;
}

int64_t non_finite(const Tensor& t) {
  int64_t n = 0;
  const float* p = t.data_as<const float>();
  for (int64_t i = 0; i < t.numel(); ++i) n += !std::isfinite(p[i]);
  return n;
}

// Tokens before the padding (start/end included) of one chunk.
int64_t used_tokens(const std::vector<int32_t>& ids, int32_t pad, bool pad_is_end) {
  int64_t n = int64_t(ids.size());
  while (n > 1 && ids[size_t(n - 1)] == pad) --n;
  return pad_is_end ? n + 1 : n;  // CLIP-L pads with its end token: count the real end
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  int exit_code = 0;
  if (!parse_args(argc, argv, a, &exit_code)) return exit_code;
  const auto log = [&](const char* fmt, auto... args) {
    if (!a.json) std::printf(fmt, args...), std::fflush(stdout);
  };

  std::vector<WeightInput> inputs;
  double file_bytes = 0;
  struct Named {
    const std::string* path;
    Component role;
  };
  for (const Named& n : {Named{&a.clip_l, Component::kClipL}, Named{&a.clip_g, Component::kClipG},
                         Named{&a.t5, Component::kT5XXL}}) {
    if (n.path->empty()) continue;
    struct stat sb {};
    if (::stat(n.path->c_str(), &sb) != 0) {
      std::fprintf(stderr, "bench_text: %s: no such file\n", n.path->c_str());
      return 1;
    }
    file_bytes += double(sb.st_size);
    inputs.push_back({*n.path, n.role});
  }
  TextEncodersOptions topt;
  if (!a.tokenizer_dir.empty()) {
    topt.tokenizer_files =
        TokenizerFiles{a.tokenizer_dir + "/clip/vocab.json", a.tokenizer_dir + "/clip/merges.txt",
                       a.tokenizer_dir + "/t5/tokenizer.json"};
  }

  // Load: open (mmap + header validation) and bind (zero-copy views, validated shapes).
  const auto t0 = std::chrono::steady_clock::now();
  auto index = WeightIndex::open(inputs);
  if (!index.ok()) return fail("opening the files", index.status());
  auto te_or = TextEncoders::load(**index, topt);
  if (!te_or.ok()) return fail("loading the encoders", te_or.status());
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const TextEncoders& te = **te_or;
  std::string t5_dtype = "-";
  if (te.t5()) {
    const TensorSource* q =
        (*index)->find(Component::kT5XXL, "encoder.block.0.layer.0.SelfAttention.q.weight");
    t5_dtype = q ? std::string(dtype_name(q->dtype)) : "?";
    if (te.t5()->config().scaled_fp8) t5_dtype += " (scaled)";
  }
  log("files %.2f GB; load (open + bind) %.3f s; CLIP-L %s, CLIP-G %s, T5 %s%s%s\n",
      file_bytes / 1e9, load_s,
      te.clip_l() ? (std::to_string(te.clip_l()->config().layers) + "x" +
                     std::to_string(te.clip_l()->config().width))
                        .c_str()
                  : "-",
      te.clip_g() ? (std::to_string(te.clip_g()->config().layers) + "x" +
                     std::to_string(te.clip_g()->config().width))
                        .c_str()
                  : "-",
      te.t5() ? (std::to_string(te.t5()->config().layers) + "x" +
                 std::to_string(te.t5()->config().d_model))
                    .c_str()
              : "-",
      te.t5() ? " " : "", te.t5() ? t5_dtype.c_str() : "");

  const SD3Tokens tokens = te.tokenizer().tokenize(kPrompt);
  log("prompt: CLIP %zu chunk(s), %ld of 77 tokens used; T5 %zu tokens (%ld before padding)\n",
      tokens.clip_l.ids.size(), long(used_tokens(tokens.clip_l.ids[0], ClipTokenizer::kEnd, true)),
      tokens.t5xxl.ids[0].size(), long(used_tokens(tokens.t5xxl.ids[0], T5Tokenizer::kPad, false)));

  auto backend = make_cpu_backend(a.threads);
  Arena arena;
  EncodeOptions opt;
  EncodeStats stats, first, best;
  opt.stats = &stats;
  best.total_s = 1e30;
  Conditioning cond;
  for (int r = 0; r <= a.reps; ++r) {  // r == 0: first call (page faults, arena sizing)
    auto c = encode_tokens(*backend, arena, te, tokens, opt);
    if (!c.ok()) return fail("encoding", c.status());
    cond = std::move(*c);
    if (r == 0) {
      first = stats;
    } else {
      best.clip_l_s = std::min(r == 1 ? 1e30 : best.clip_l_s, stats.clip_l_s);
      best.clip_g_s = std::min(r == 1 ? 1e30 : best.clip_g_s, stats.clip_g_s);
      best.t5_s = std::min(r == 1 ? 1e30 : best.t5_s, stats.t5_s);
      best.total_s = std::min(best.total_s, stats.total_s);
    }
  }
  if (a.reps == 0) best = first;
  const int64_t bad = non_finite(cond.context) + non_finite(cond.pooled);
  log("context %s, pooled %s%s\n", cond.context.shape().to_string().c_str(),
      cond.pooled.shape().to_string().c_str(), bad ? " NON-FINITE OUTPUT" : "");
  log("%-8s %10s %10s\n", "encoder", "first s", "best s");
  log("%-8s %10.3f %10.3f\n", "CLIP-L", first.clip_l_s, best.clip_l_s);
  log("%-8s %10.3f %10.3f\n", "CLIP-G", first.clip_g_s, best.clip_g_s);
  log("%-8s %10.3f %10.3f\n", "T5-XXL", first.t5_s, best.t5_s);
  log("%-8s %10.3f %10.3f\n", "total", first.total_s, best.total_s);

  const bench::PeakMemory mem = bench::peak_memory();
  const double rss = double(std::max(mem.ru_maxrss_bytes, mem.vm_hwm_bytes));
  log("peak RSS %.2f GB = %.2f x the files (%.2f GB); arena peak %.1f MB\n", rss / 1e9,
      rss / file_bytes, file_bytes / 1e9, double(arena.peak_bytes()) / 1e6);
  if (a.json) {
    std::printf(
        "{\"files_bytes\": %.0f, \"t5_dtype\": \"%s\", \"load_s\": %.4f,\n"
        " \"first\": {\"clip_l_s\": %.4f, \"clip_g_s\": %.4f, \"t5_s\": %.4f, \"total_s\": %.4f},\n"
        " \"best\": {\"clip_l_s\": %.4f, \"clip_g_s\": %.4f, \"t5_s\": %.4f, \"total_s\": %.4f},\n"
        " \"context_tokens\": %ld, \"non_finite\": %ld, \"ru_maxrss_bytes\": %llu, "
        "\"vm_hwm_bytes\": %llu, \"peak_rss_over_files\": %.3f, \"arena_peak_bytes\": %zu}\n",
        file_bytes, t5_dtype.c_str(), load_s, first.clip_l_s, first.clip_g_s, first.t5_s,
        first.total_s, best.clip_l_s, best.clip_g_s, best.t5_s, best.total_s,
        long(cond.context.size(1)), long(bad), (unsigned long long)mem.ru_maxrss_bytes,
        (unsigned long long)mem.vm_hwm_bytes, rss / file_bytes, arena.peak_bytes());
  }
  return bad ? 1 : 0;
}
