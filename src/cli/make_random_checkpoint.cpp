// `sd35 make-random-checkpoint`: a random-weight checkpoint with the real SAI single-file key
// names ("model.diffusion_model.*", "first_stage_model.*") and the SD3.5 Medium shapes, for
// benchmarks and memory measurements without the 5 GB download.
//
// The tensor list comes from the same spec tables the loader validates against
// (mmdit_weight_specs / vae_weight_specs), so the file always loads. Values are chosen so that
// forwards stay O(1) in bf16/f16: linear and conv weights uniform with std 1/sqrt(fan_in)
// (unit gain; the real model's 0.02-ish scale for D = 1536), norm weights 1, biases 0, and the
// pos_embed the real 2-D sincos table. The file (~5.1 GB at depth 24 with the VAE) is written
// streaming: the header first, then each tensor in 1M-element blocks generated and written in
// parallel (pwrite at their final offsets), so memory stays at ~8 MB per thread. Each block is
// seeded from (seed, tensor, block), so the bytes do not depend on the thread count.
//
// --text-encoders DIR writes the three SD3 text encoders the same way, with their real key
// names and sizes, from clip_weight_specs / t5_weight_specs: clip_l.safetensors (fp16, 12 x 768,
// no text_projection, as the released file), clip_g.safetensors (fp16, 32 x 1280 +
// text_projection), t5xxl_fp16.safetensors (24 x 4096, d_ff 10240, 64 heads; shared.weight only,
// ~9.5 GB) and t5xxl_fp8_e4m3fn_scaled.safetensors (ComfyUI scaled fp8, SPEC-model §2.4: every
// Linear weight F8_E4M3 holding w / scale_weight with |w / scale| < 440 (the format's range is
// 448), an F32 scalar <layer>.scale_weight per Linear, the empty `scaled_fp8` marker; the
// embedding, norms and relative bias stay fp16). The CLIP heads follow from width / 64 (12 and
// 20, the real values), T5's from relative_attention_bias [32, 64]. With less than 25 GB free
// on the target the fp16 T5 is skipped (said on stdout).
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/convert.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "weights/model_configs.h"
#include "weights/weight_specs.h"

namespace sd35::cli {
namespace {

struct RandomCheckpointOptions {
  std::string out;
  std::string dtype = "bf16";
  int depth = 24;
  uint64_t seed = 0;
  bool with_vae = false;
  int threads = 0;
  std::string text_encoders;  // folder for the random text encoders ("" = none)
};

// SD3.5 Medium (SPEC-model.md §1, fixtures README table); depth scales hidden = 64·depth and
// the head count as both references do, so --depth 2 gives a small file with the real key set.
MMDiTConfig medium_mmdit(int depth) {
  MMDiTConfig c;
  c.depth = depth;
  c.hidden = 64 * depth;
  c.heads = depth;
  c.head_dim = 64;
  c.patch_size = 2;
  c.in_channels = 16;
  c.out_channels = 16;
  c.pos_embed_max_size = 384;
  c.adm_in_channels = 2048;
  c.context_dim = 4096;
  c.mlp_hidden = 4 * c.hidden;
  c.freq_dim = 256;
  for (int i = 0; i <= 12 && i < depth; ++i) c.x_block_self_attn_layers.push_back(i);
  c.qk_norm = QKNorm::kRMS;
  return c;
}

VAEConfig medium_vae() {
  VAEConfig v;
  v.ch = 128;
  v.ch_mult = {1, 2, 4, 4};
  v.num_res_blocks = 2;
  v.z_channels = 16;
  v.image_channels = 3;
  v.has_encoder = true;
  v.has_decoder = true;
  return v;
}

enum class Init { kUniform, kOnes, kZeros, kSinCos, kConst };

struct Entry {
  std::string key;
  Shape shape;
  Init init = Init::kUniform;
  float half_width = 0;  // kUniform: U(-a, a) has std a/sqrt(3)
  float value = 0;       // kConst
  DType dtype = DType::kBF16;
  uint64_t offset = 0;  // in the data section
  uint64_t nbytes = 0;
};

void add_specs(std::vector<Entry>& out, const WeightSpecs& specs, const std::string& prefix,
               DType dtype, const std::function<bool(const WeightSpec&)>& keep = {}) {
  for (const WeightSpec& s : specs) {
    if (s.field.empty() || s.any_shape) continue;  // markers the loader merely tolerates
    if (keep && !keep(s)) continue;
    Entry e{prefix + s.canonical, s.shape};
    e.dtype = dtype;
    const bool bias =
        s.canonical.size() > 5 && s.canonical.compare(s.canonical.size() - 5, 5, ".bias") == 0;
    if (s.canonical == "pos_embed")
      e.init = Init::kSinCos;
    else if (bias)
      e.init = Init::kZeros;
    else if (s.shape.ndim() == 1)
      e.init = Init::kOnes;  // LayerNorm/RMSNorm/GroupNorm weights
    else {
      int64_t fan_in = 1;
      for (int d = 1; d < s.shape.ndim(); ++d) fan_in *= s.shape[d];
      e.half_width = float(std::sqrt(3.0 / double(std::max<int64_t>(fan_in, 1))));
    }
    out.push_back(std::move(e));
  }
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// get_2d_sincos_pos_embed(D, P) of the references, factored: position m = r·P + c of the P×P
// grid; the first D/2 features embed c, the last D/2 embed r, each as [sin(pos·ω_k),
// cos(pos·ω_k)], ω_k = 10000^(-k/(D/4)), k < D/4 (computed in double as numpy does). The 1-D
// table [pos][D/2] is all the 2-D one needs (P·D/2 values instead of P²·D sin/cos calls).
std::vector<float> sincos_table(const Entry& e) {
  const int64_t D = e.shape.back(), half = D / 2, quarter = D / 4;
  const int64_t P = std::llround(std::sqrt(double(e.shape[e.shape.ndim() - 2])));
  std::vector<float> t(size_t(P * half));
  for (int64_t pos = 0; pos < P; ++pos)
    for (int64_t k = 0; k < quarter; ++k) {
      const double omega = 1.0 / std::pow(10000.0, double(k) / double(quarter));
      t[size_t(pos * half + k)] = float(std::sin(double(pos) * omega));
      t[size_t(pos * half + quarter + k)] = float(std::cos(double(pos) * omega));
    }
  return t;
}

// Values of elements [begin, begin + n) of `e` (flat, row-major) into dst.
void fill_block(const Entry& e, uint64_t seed, uint64_t tensor_index, int64_t begin, int64_t n,
                const std::vector<float>& sincos, float* dst) {
  switch (e.init) {
    case Init::kZeros: std::fill(dst, dst + n, 0.0f); return;
    case Init::kOnes: std::fill(dst, dst + n, 1.0f); return;
    case Init::kConst: std::fill(dst, dst + n, e.value); return;
    case Init::kUniform: {
      uint64_t sm =
          seed ^ (tensor_index * 0xD1B54A32D192ED03ull) ^ (uint64_t(begin) * 0x8CB92BA72F3D8DD7ull);
      uint64_t s = splitmix64(sm) | 1;  // xorshift64* state must be non-zero
      const float scale = 2.0f * e.half_width / float(1u << 24);
      int64_t i = 0;
      for (; i + 1 < n; i += 2) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        const uint64_t r = s * 0x2545F4914F6CDD1Dull;
        // Two 24-bit uniforms per draw, centred: exact in f32.
        dst[i] = float(int64_t(r >> 40) - (1 << 23)) * scale;
        dst[i + 1] = float(int64_t((r >> 16) & 0xFFFFFF) - (1 << 23)) * scale;
      }
      if (i < n) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        dst[i] = float(int64_t((s * 0x2545F4914F6CDD1Dull) >> 40) - (1 << 23)) * scale;
      }
      return;
    }
    case Init::kSinCos: {
      // Element (m, d) of the [1, P·P, D] table is sincos[pos(m, d)·(D/2) + d mod (D/2)].
      const int64_t D = e.shape.back(), half = D / 2;
      const int64_t P = std::llround(std::sqrt(double(e.shape[e.shape.ndim() - 2])));
      for (int64_t i = 0; i < n; ++i) {
        const int64_t flat = begin + i, m = flat / D, d = flat % D;
        // The first D/2 features embed the column (np.meshgrid(w, h) puts w first).
        const int64_t pos = d < half ? m % P : m / P;
        dst[i] = sincos[size_t(pos * half + (d < half ? d : d - half))];
      }
      return;
    }
  }
}

std::string human(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, bytes >= 1e9 ? "%.2f GB" : "%.1f MB",
                bytes >= 1e9 ? bytes / 1e9 : bytes / 1e6);
  return buf;
}

// Writes `entries` (each with its own dtype) as one safetensors file: header first, then the
// data streamed in independently seeded blocks; `path` appears only once complete (written as
// a temporary, then renamed). Returns the file size.
Result<uint64_t> write_streamed(const std::string& path, std::vector<Entry>& entries,
                                const nlohmann::ordered_json& metadata, uint64_t seed,
                                ThreadPool& pool) {
  // Header: same layout rules as write_safetensors (8-byte length, JSON, space padding to a
  // multiple of 8 so every tensor is aligned for its dtype). Larger dtypes first keeps every
  // offset a multiple of its element size. Empty tensors go last: a zero-length tensor at
  // another tensor's offset would look like an overlap to a strict reader.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    const bool ea = a.shape.numel() == 0, eb = b.shape.numel() == 0;
    if (ea != eb) return eb;
    return dtype_size(a.dtype) > dtype_size(b.dtype);
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (Entry& e : entries) {
    SD35_ASSIGN_OR_RETURN(size_t nb, checked_nbytes(e.shape, e.dtype));
    e.offset = offset;
    e.nbytes = nb;
    offset += nb;
    nlohmann::ordered_json j;
    j["dtype"] = std::string(dtype_to_safetensors(e.dtype));
    j["shape"] = nlohmann::ordered_json::array();
    for (int64_t d : e.shape) j["shape"].push_back(d);
    j["data_offsets"] = {e.offset, e.offset + e.nbytes};
    header[e.key] = std::move(j);
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(tmp + ": " + std::strerror(errno));
  auto fail = [&](const std::string& what) {
    ::close(fd);
    std::remove(tmp.c_str());
    return io_error(tmp + ": " + what);
  };
  // Each worker writes its own blocks at their final offsets: with many cores the kernel's
  // page-cache copy (a single writer's bottleneck, ~2 GB/s) runs in parallel too. Writes are
  // block-sized (4 MB in bf16) and cover the file in order batch by batch.
  std::atomic<int> write_errno{0};
  auto write_at = [&](const void* data, size_t bytes, uint64_t at) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::pwrite(fd, p, bytes, off_t(at));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int expected = 0;
        write_errno.compare_exchange_strong(expected, n < 0 ? errno : EIO);
        return;
      }
      p += n, bytes -= size_t(n), at += uint64_t(n);
    }
  };
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = char((uint64_t(text.size()) >> (8 * i)) & 0xFF);
  write_at(len, 8, 0);
  write_at(text.data(), text.size(), 8);
  const uint64_t data_start = 8 + text.size();
  if (write_errno.load() != 0) return fail(std::strerror(write_errno.load()));

  constexpr int64_t kBlock = int64_t(1) << 20;  // elements per independently seeded block
  constexpr int64_t kBatchBlocks = 64;          // blocks generated per parallel batch
  const int64_t kSlots = std::min<int64_t>(kBatchBlocks, pool.size());
  // One f32 scratch and one converted buffer per worker slot (~8 MB each).
  std::vector<std::vector<float>> scratch(static_cast<size_t>(kSlots),
                                          std::vector<float>(static_cast<size_t>(kBlock)));
  std::vector<std::vector<uint8_t>> out(static_cast<size_t>(kSlots),
                                        std::vector<uint8_t>(size_t(kBlock) * sizeof(float)));
  uint64_t written = 0, next_report = offset / 10;
  for (size_t ti = 0; ti < entries.size(); ++ti) {
    const Entry& e = entries[ti];
    const size_t esize = dtype_size(e.dtype);
    const int64_t numel = e.shape.numel();
    const std::vector<float> sincos =
        e.init == Init::kSinCos ? sincos_table(e) : std::vector<float>();
    for (int64_t first = 0; first < numel; first += kBlock * kBatchBlocks) {
      const int64_t blocks = std::min(kBatchBlocks, (numel - first + kBlock - 1) / kBlock);
      const int64_t slots = std::min(blocks, kSlots);
      // Slot s handles blocks s, s + slots, ...: its buffers are never shared.
      pool.parallel_for(slots, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t slot = s0; slot < s1; ++slot) {
          float* buf = scratch[size_t(slot)].data();
          uint8_t* conv = out[size_t(slot)].data();
          for (int64_t b = slot; b < blocks; b += slots) {
            const int64_t begin = first + b * kBlock, n = std::min(kBlock, numel - begin);
            fill_block(e, seed, ti, begin, n, sincos, buf);
            convert_from_f32(buf, conv, e.dtype, n);
            write_at(conv, size_t(n) * esize, data_start + e.offset + uint64_t(begin) * esize);
          }
        }
      });
      if (write_errno.load() != 0)
        return fail(std::string("write failed (disk full?): ") + std::strerror(write_errno.load()));
      written += uint64_t(std::min(numel - first, kBlock * kBatchBlocks)) * esize;
      if (written >= next_report && offset > (uint64_t(1) << 30)) {
        std::fprintf(stderr, "  %3.0f%% (%s)\n", 100.0 * double(written) / double(offset),
                     human(double(written)).c_str());
        next_report += offset / 10;
      }
    }
  }
  if (::close(fd) != 0) {
    std::remove(tmp.c_str());
    return io_error(tmp + ": close failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return io_error(path + ": rename failed: " + std::strerror(err));
  }
  return uint64_t(8 + text.size() + offset);
}

nlohmann::ordered_json metadata_for(const RandomCheckpointOptions& opt, const std::string& note) {
  return {{"format", "pt"},
          {"sd35.generator", "sd35 make-random-checkpoint"},
          {"sd35.seed", std::to_string(opt.seed)},
          {"sd35.note", note}};
}

Status write_random_checkpoint(const RandomCheckpointOptions& opt, ThreadPool& pool) {
  DType dtype;
  if (opt.dtype == "bf16")
    dtype = DType::kBF16;
  else if (opt.dtype == "f16" || opt.dtype == "fp16")
    dtype = DType::kF16;
  else
    return invalid_argument("--dtype must be bf16 or f16, not '" + opt.dtype + "'");
  if (opt.depth < 1 || opt.depth > 64) return invalid_argument("--depth must be in 1..64");

  std::vector<Entry> entries;
  add_specs(entries, mmdit_weight_specs(medium_mmdit(opt.depth)), "model.diffusion_model.", dtype);
  if (opt.with_vae) {
    add_specs(entries, vae_weight_specs(medium_vae()), "first_stage_model.", dtype);
  }
  const auto t0 = std::chrono::steady_clock::now();
  SD35_ASSIGN_OR_RETURN(
      uint64_t size,
      write_streamed(opt.out, entries,
                     metadata_for(opt, "random weights, SD3.5 Medium key names and shapes"),
                     opt.seed, pool));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %zu tensors, %s (%s data), depth %d, %s%s, %.1f s (%.2f GB/s)\n",
              opt.out.c_str(), entries.size(), human(double(size)).c_str(), opt.dtype.c_str(),
              opt.depth, "MMDiT", opt.with_vae ? " + VAE" : "", s,
              double(size) / 1e9 / std::max(s, 1e-9));
  return ok_status();
}

// The released text encoders' configurations (SPEC-model §4.1-4.3).
ClipConfig real_clip(Component role) {
  ClipConfig c;
  const bool g = role == Component::kClipG;
  c.layers = g ? 32 : 12;
  c.width = g ? 1280 : 768;
  c.heads = c.width / 64;
  c.intermediate = 4 * c.width;
  c.vocab = 49408;
  c.positions = 77;
  c.has_projection = g;
  c.projection_dim = g ? 1280 : 0;
  c.activation = g ? "gelu" : "quick_gelu";
  return c;
}

T5Config real_t5() {
  T5Config c;
  c.layers = 24;
  c.d_model = 4096;
  c.d_ff = 10240;
  c.heads = 64;
  c.d_kv = 64;
  c.vocab = 32128;
  c.num_buckets = 32;
  return c;
}

bool is_t5_linear(const std::string& key) {
  return key.find(".SelfAttention.") != std::string::npos
             ? key.find("relative_attention_bias") == std::string::npos
             : key.find(".DenseReluDense.") != std::string::npos;
}

// T5 entries: every required tensor plus shared.weight (the released files also carry the
// duplicate encoder.embed_tokens.weight; ComfyUI reads shared.weight, so it is left out).
std::vector<Entry> t5_entries(bool scaled_fp8) {
  std::vector<Entry> entries;
  add_specs(entries, t5_weight_specs(real_t5()), "", DType::kF16,
            [](const WeightSpec& s) { return s.required || s.canonical == "shared.weight"; });
  std::vector<Entry> scales;
  for (Entry& e : entries) {
    if (e.key == "shared.weight") {
      e.half_width = 1.0f;  // O(1) embeddings, as the real table; RMSNorm follows
    } else if (scaled_fp8 && e.shape.ndim() == 2 && is_t5_linear(e.key)) {
      // Stored values w / scale fill the fp8 range; scale_weight restores the 1/sqrt(fan_in)
      // magnitudes (what ComfyUI's scaled files do to keep fp8's precision).
      constexpr float kFp8Range = 440.0f;
      const std::string layer = e.key.substr(0, e.key.size() - std::string(".weight").size());
      Entry sc{layer + ".scale_weight", Shape{}};
      sc.init = Init::kConst;
      sc.value = e.half_width / kFp8Range;
      sc.dtype = DType::kF32;
      scales.push_back(std::move(sc));
      e.half_width = kFp8Range;
      e.dtype = DType::kF8E4M3FN;
    }
  }
  entries.insert(entries.end(), scales.begin(), scales.end());
  return entries;
}

uint64_t free_bytes(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return 0;
  return uint64_t(st.f_bavail) * uint64_t(st.f_frsize);
}

Status write_text_encoders(const RandomCheckpointOptions& opt, ThreadPool& pool) {
  const std::string& dir = opt.text_encoders;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error(dir + ": " + ec.message());
  const bool fp16_t5 = free_bytes(dir) >= (uint64_t(25) << 30);
  if (!fp16_t5) {
    std::printf("less than 25 GB free in %s: writing the fp8 T5 only (no t5xxl_fp16)\n",
                dir.c_str());
  }
  struct File {
    std::string name, note;
    std::vector<Entry> entries;
    bool fp8_marker = false;
  };
  std::vector<File> files;
  for (Component role : {Component::kClipL, Component::kClipG}) {
    File f{std::string(component_name(role)) + ".safetensors",
           "random weights, " + std::string(component_name(role)) + " key names and shapes",
           {}};
    // CLIP-L: the released file has no text_projection (SD3 does not project its pooled).
    add_specs(f.entries, clip_weight_specs(real_clip(role), role), "", DType::kF16,
              [](const WeightSpec& s) { return s.required; });
    files.push_back(std::move(f));
  }
  if (fp16_t5) {
    files.push_back(
        {"t5xxl_fp16.safetensors", "random weights, T5-XXL v1.1 encoder", t5_entries(false)});
  }
  files.push_back({"t5xxl_fp8_e4m3fn_scaled.safetensors",
                   "random weights, T5-XXL v1.1 encoder, ComfyUI scaled fp8", t5_entries(true),
                   true});
  for (File& f : files) {
    const auto t0 = std::chrono::steady_clock::now();
    if (f.fp8_marker) {
      // An empty tensor whose dtype names the fp8 format (written last, see write_streamed).
      Entry m{"scaled_fp8", Shape{0}};
      m.init = Init::kZeros;
      m.dtype = DType::kF8E4M3FN;
      f.entries.push_back(std::move(m));
    }
    const std::string path = dir + "/" + f.name;
    SD35_ASSIGN_OR_RETURN(
        uint64_t size, write_streamed(path, f.entries, metadata_for(opt, f.note), opt.seed, pool));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %s: %zu tensors, %s, %.1f s (%.2f GB/s)\n", path.c_str(), f.entries.size(),
                human(double(size)).c_str(), s, double(size) / 1e9 / std::max(s, 1e-9));
    std::fflush(stdout);
  }
  return ok_status();
}

}  // namespace

void register_make_random_checkpoint(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<RandomCheckpointOptions>();
  CLI::App* cmd = app.add_subcommand(
      "make-random-checkpoint",
      "Write a random-weight checkpoint with the SD3.5 Medium key names and shapes (benchmarks)");
  cmd->add_option("out", opt->out, "output .safetensors file (MMDiT [+ VAE])");
  cmd->add_option("--text-encoders", opt->text_encoders,
                  "also write clip_l, clip_g, t5xxl_fp16 and t5xxl_fp8_e4m3fn_scaled "
                  ".safetensors (real sizes, fp16 / scaled fp8) into this folder");
  cmd->add_option("--dtype", opt->dtype, "bf16 (default) or f16");
  cmd->add_option("--depth", opt->depth,
                  "joint blocks (24 = SD3.5 Medium; hidden = 64·depth; smaller for tests)");
  cmd->add_option("--seed", opt->seed, "random seed (default 0)");
  cmd->add_flag("--with-vae", opt->with_vae, "also write the VAE (first_stage_model.*)");
  cmd->add_option("--threads", opt->threads, "generator threads (default: all)");
  cmd->callback([opt, &exit_code] {
    Status st;
    ThreadPool pool(opt->threads);
    if (opt->out.empty() && opt->text_encoders.empty())
      st = invalid_argument("give an output file, --text-encoders DIR, or both");
    if (st.ok() && !opt->out.empty()) st = write_random_checkpoint(*opt, pool);
    if (st.ok() && !opt->text_encoders.empty()) st = write_text_encoders(*opt, pool);
    if (!st.ok())
      std::fprintf(stderr, "sd35 make-random-checkpoint: error: %s\n", st.to_string().c_str());
    exit_code = st.ok() ? 0 : 1;
  });
}

}  // namespace sd35::cli
