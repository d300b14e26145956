#include "pipeline/conditioning.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>

#include "backend/transfer.h"
#include "weights/weight_index.h"

namespace sd35 {
namespace {

std::atomic<uint64_t> g_next_encoders_id{1};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// An owned contiguous f32 copy (cache entries must not share buffers with callers).
Result<Tensor> clone_f32(const Tensor& t) {
  if (t.dtype() != DType::kF32 || t.device() != Device::kCPU || !t.is_contiguous()) {
    return invalid_argument("conditioning tensors must be contiguous f32 CPU tensors, not " +
                            t.describe());
  }
  SD35_ASSIGN_OR_RETURN(Tensor c, Tensor::zeros(t.shape(), DType::kF32));
  if (t.numel() > 0) std::memcpy(c.data(), t.data(), size_t(t.numel()) * sizeof(float));
  return c;
}

Result<Conditioning> clone(const Conditioning& c) {
  Conditioning out;
  SD35_ASSIGN_OR_RETURN(out.context, clone_f32(c.context));
  SD35_ASSIGN_OR_RETURN(out.pooled, clone_f32(c.pooled));
  return out;
}

// Special tokens of gen_empty_tokens (ComfyUI sd1_clip.py): [start?, end, pad, pad, ...].
struct SpecialTokens {
  std::optional<int32_t> start;
  int32_t end;
  int32_t pad;
};
// CLIP-L pads with its end token, CLIP-G with 0 ("!"), T5 has no start token and pads with 0.
constexpr SpecialTokens kClipLSpecial{ClipTokenizer::kStart, ClipTokenizer::kEnd,
                                      ClipTokenizer::kEnd};
constexpr SpecialTokens kClipGSpecial{ClipTokenizer::kStart, ClipTokenizer::kEnd, 0};
constexpr SpecialTokens kT5Special{std::nullopt, T5Tokenizer::kEnd, T5Tokenizer::kPad};

// gen_empty_tokens(special, length): never shorter than its start/end tokens (with no chunk
// at all ComfyUI asks for length 0 and gets [start, end]).
std::vector<int32_t> empty_tokens(const SpecialTokens& s, size_t length) {
  std::vector<int32_t> out;
  if (s.start) out.push_back(*s.start);
  out.push_back(s.end);
  while (out.size() < length) out.push_back(s.pad);
  return out;
}

// One encoder's output for the prompt: its chunks' hidden states concatenated along tokens
// (weights applied) and the pooled vector of chunk 0. Arena views.
struct Encoded {
  Tensor hidden;  // [1, k·L, W]
  Tensor pooled;  // [1, P] (CLIP only)
};

using Forward =
    std::function<Status(const Tensor& ids, const Tensor& hidden, const Tensor& pooled)>;

// ComfyUI ClipTokenWeightEncoder.encode_token_weights for one encoder: the chunks (plus the
// empty sequence when weighted, or alone when there is no chunk) run as one batch; rows are
// independent (no padding mask), so batching changes nothing numerically.
Status encode_weighted(Backend& backend, Arena& arena, std::string_view what,
                       const TokenChunks& tokens, const SpecialTokens& special, int64_t width,
                       int64_t pooled_width, const Forward& forward, Encoded& out) {
  const size_t sections = tokens.ids.size();
  size_t length = 0;
  bool weighted = false;
  for (size_t c = 0; c < sections; ++c) {
    const auto& ids = tokens.ids[c];
    if (c > 0 && ids.size() != length) {
      return invalid_argument(std::string(what) + ": token chunks of different lengths (" +
                              std::to_string(length) + " and " + std::to_string(ids.size()) + ")");
    }
    length = ids.size();
    if (c < tokens.weights.size()) {
      const auto& w = tokens.weights[c];
      if (!w.empty() && w.size() != ids.size()) {
        return invalid_argument(std::string(what) + ": chunk " + std::to_string(c) + " has " +
                                std::to_string(ids.size()) + " ids but " +
                                std::to_string(w.size()) + " weights");
      }
      for (float v : w) weighted = weighted || v != 1.0f;
    }
  }
  const bool with_empty = weighted || sections == 0;
  std::vector<int32_t> empty;
  if (with_empty) {
    empty = empty_tokens(special, length);
    length = empty.size();
  }
  if (length == 0) return invalid_argument(std::string(what) + ": empty token chunk");
  const int64_t batch = int64_t(sections) + (with_empty ? 1 : 0), L = int64_t(length);

  // Token ids are host memory: the encoders check them (and find CLIP's end token) on the
  // host, and upload them themselves for a device backend.
  std::vector<int32_t> id_buffer(size_t(batch) * length);
  const Tensor ids = Tensor::view_of(id_buffer.data(), DType::kI32, {batch, L});
  int32_t* p = id_buffer.data();
  for (size_t c = 0; c < sections; ++c)
    std::copy(tokens.ids[c].begin(), tokens.ids[c].end(), p + c * length);
  if (with_empty) std::copy(empty.begin(), empty.end(), p + sections * length);

  SD35_ASSIGN_OR_RETURN(Tensor hidden, arena.tensor({batch, L, width}, DType::kF32));
  Tensor pooled;
  if (pooled_width > 0) {
    SD35_ASSIGN_OR_RETURN(pooled, arena.tensor({batch, pooled_width}, DType::kF32));
  }
  SD35_RETURN_IF_ERROR(forward(ids, hidden, pooled).with_context(std::string(what) + ": "));

  if (weighted) {
    // z = (z - z_empty)·w + z_empty, evaluated in that order (as torch does, in f32) over
    // runs of equal weight, so the result is the reference's to the last bit.
    const Tensor z_empty = hidden.select(0, batch - 1);  // [L, W]
    SD35_ASSIGN_OR_RETURN(Tensor neg_empty, arena.tensor({L, width}, DType::kF32));
    SD35_RETURN_IF_ERROR(backend.affine(z_empty, AffineParams{-1.0f, 0.0f}, neg_empty));
    for (size_t c = 0; c < sections; ++c) {
      if (c >= tokens.weights.size() || tokens.weights[c].empty()) continue;
      const auto& w = tokens.weights[c];
      const Tensor z = hidden.select(0, int64_t(c));
      for (size_t j0 = 0; j0 < w.size();) {
        size_t j1 = j0 + 1;
        while (j1 < w.size() && w[j1] == w[j0]) ++j1;
        if (w[j0] != 1.0f) {
          const Tensor zr = z.slice(0, int64_t(j0), int64_t(j1));
          SD35_RETURN_IF_ERROR(backend.add(zr, neg_empty.slice(0, int64_t(j0), int64_t(j1)), zr));
          SD35_RETURN_IF_ERROR(backend.affine(zr, AffineParams{w[j0], 0.0f}, zr));
          SD35_RETURN_IF_ERROR(backend.add(zr, z_empty.slice(0, int64_t(j0), int64_t(j1)), zr));
        }
        j0 = j1;
      }
    }
  }
  // No chunk: the output is the empty sequence itself (out[-1:]).
  const int64_t rows = sections == 0 ? 1 : int64_t(sections);
  const int64_t first = sections == 0 ? batch - 1 : 0;
  out.hidden = hidden.slice(0, first, first + rows).reshape({1, rows * L, width});
  if (pooled_width > 0) out.pooled = pooled.slice(0, 0, 1);  // the real prompt's chunk 0
  return ok_status();
}

Status encode_clip(Backend& backend, Arena& arena, const ClipTextModel& model,
                   const TokenChunks& tokens, const SpecialTokens& special, std::string_view what,
                   EncodeStats& stats, double& seconds, Encoded& out) {
  const auto t0 = std::chrono::steady_clock::now();
  Forward fwd = [&](const Tensor& ids, const Tensor& hidden, const Tensor& pooled) {
    ++stats.encoder_calls;
    return model.encode(backend, arena, ids, ClipOutputs{hidden, pooled});
  };
  Status st = encode_weighted(backend, arena, what, tokens, special, model.config().width,
                              model.pooled_width(), fwd, out);
  seconds += seconds_since(t0);
  return st;
}

// A run of `n` rows of `src` [1, n, w] into context[:, row0:row0+n, col0:col0+w].
Status place(Backend& backend, const Tensor& src, const Tensor& context, int64_t row0,
             int64_t col0) {
  const int64_t n = src.size(1), w = src.size(2);
  return backend.copy(src, context.slice(1, row0, row0 + n).slice(2, col0, col0 + w));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Result<Conditioning> conditioning_zero_out(const Conditioning& c) {
  Conditioning z;
  SD35_ASSIGN_OR_RETURN(z.context, Tensor::zeros(c.context.shape(), DType::kF32));
  SD35_ASSIGN_OR_RETURN(z.pooled, Tensor::zeros(c.pooled.shape(), DType::kF32));
  return z;
}

TextEncoders::~TextEncoders() = default;

Result<std::unique_ptr<TextEncoders>> TextEncoders::load(const WeightIndex& index,
                                                         const TextEncodersOptions& options) {
  std::unique_ptr<TextEncoders> te(new TextEncoders());
  te->id_ = g_next_encoders_id.fetch_add(1);
  TokenizerFiles files;
  if (options.tokenizer_files) {
    files = *options.tokenizer_files;
  } else {
    std::vector<std::string> model_files;
    for (const auto& f : index.files()) model_files.push_back(f->path());
    auto found = tokenizer_files_near(model_files);
    if (!found.ok()) return found.status().with_context("tokenizer data: ");
    files = std::move(*found);
  }
  auto tok = SD3Tokenizer::load(files);
  if (!tok.ok()) return tok.status().with_context("loading the tokenizers: ");
  te->tokenizer_ = std::move(*tok);

  if (options.clip_l && index.has(Component::kClipL)) {
    auto m = ClipTextModel::load(index, Component::kClipL, options.overrides, options.placer);
    if (!m.ok()) return m.status().with_context("loading CLIP-L: ");
    te->clip_l_ = std::move(*m);
  }
  if (options.clip_g && index.has(Component::kClipG)) {
    auto m = ClipTextModel::load(index, Component::kClipG, options.overrides, options.placer);
    if (!m.ok()) return m.status().with_context("loading CLIP-G: ");
    te->clip_g_ = std::move(*m);
  }
  if (options.t5 && index.has(Component::kT5XXL)) {
    auto m = T5Encoder::load(index, options.overrides, options.placer);
    if (!m.ok()) return m.status().with_context("loading T5-XXL: ");
    te->t5_ = std::move(*m);
  }
  return te;
}

Result<Conditioning> encode_tokens(Backend& backend, Arena& arena, const TextEncoders& encoders,
                                   const SD3Tokens& tokens, const EncodeOptions& options) {
  const auto t_start = std::chrono::steady_clock::now();
  EncodeStats local;
  EncodeStats& stats = options.stats ? *options.stats : local;
  stats = EncodeStats{};
  const ClipTextModel* l = options.use_clip_l ? encoders.clip_l() : nullptr;
  const ClipTextModel* g = options.use_clip_g ? encoders.clip_g() : nullptr;
  const T5Encoder* t5 = options.use_t5 ? encoders.t5() : nullptr;
  if (options.context_dim < 0 || options.pooled_dim < 0)
    return invalid_argument("context_dim and pooled_dim must not be negative");

  // Widths. An absent CLIP's share of pooled (and CLIP-L's of the features) comes from
  // pooled_dim, else from the references' literals 768 / 1280.
  int64_t pl = l ? l->pooled_width() : 0, pg = g ? g->pooled_width() : 0;
  if (l && g) {
    if (options.pooled_dim != 0 && options.pooled_dim != pl + pg) {
      return invalid_argument("pooled_dim " + std::to_string(options.pooled_dim) +
                              " differs from CLIP-L + CLIP-G pooled widths " + std::to_string(pl) +
                              " + " + std::to_string(pg));
    }
  } else if (l) {
    pg = options.pooled_dim != 0 ? options.pooled_dim - pl : 1280;
  } else if (g) {
    pl = options.pooled_dim != 0 ? options.pooled_dim - pg : 768;
  } else {
    pl = options.pooled_dim != 0 ? options.pooled_dim : 2048;
    pg = 0;
  }
  if (pl < 0 || pg < 0) {
    return invalid_argument("pooled_dim " + std::to_string(options.pooled_dim) +
                            " is smaller than the loaded CLIP's pooled width");
  }
  int64_t width = options.context_dim != 0 ? options.context_dim : 4096;
  if (t5) {
    width = t5->config().d_model;
    if (options.context_dim != 0 && options.context_dim != width) {
      return invalid_argument("context_dim " + std::to_string(options.context_dim) +
                              " differs from the T5 width " + std::to_string(width));
    }
  }

  ArenaScope scope(arena);
  // CLIP part (ComfyUI runs it when either CLIP has tokens, whichever encoders are loaded).
  const bool clip_block = !tokens.clip_l.ids.empty() || !tokens.clip_g.ids.empty();
  Encoded el, eg, et;
  if (clip_block && l) {
    SD35_RETURN_IF_ERROR(encode_clip(backend, arena, *l, tokens.clip_l, kClipLSpecial, "CLIP-L",
                                     stats, stats.clip_l_s, el));
  }
  if (clip_block && g) {
    SD35_RETURN_IF_ERROR(encode_clip(backend, arena, *g, tokens.clip_g, kClipGSpecial, "CLIP-G",
                                     stats, stats.clip_g_s, eg));
  }
  if (t5) {
    const auto t0 = std::chrono::steady_clock::now();
    const T5Encoder& m = *t5;
    Forward fwd = [&](const Tensor& ids, const Tensor& hidden, const Tensor&) {
      ++stats.encoder_calls;
      return m.encode(backend, arena, ids, hidden);
    };
    Status st =
        encode_weighted(backend, arena, "T5-XXL", tokens.t5xxl, kT5Special, width, 0, fwd, et);
    stats.t5_s += seconds_since(t0);
    SD35_RETURN_IF_ERROR(st);
  }

  // Token rows of the CLIP part: L and G cut to the shorter one.
  int64_t clip_rows = 0;
  if (l && g && clip_block)
    clip_rows = std::min(el.hidden.size(1), eg.hidden.size(1));
  else if (l && clip_block)
    clip_rows = el.hidden.size(1);
  else if (g && clip_block)
    clip_rows = eg.hidden.size(1);
  const int64_t wl = l ? l->config().width : pl;  // G's features start after CLIP-L's
  const int64_t wg = g ? g->config().width : 0;
  if (clip_rows > 0 && wl + wg > width) {
    return invalid_argument("CLIP features (" + std::to_string(wl + wg) +
                            ") are wider than the context width " + std::to_string(width));
  }
  const int64_t t5_rows = t5 ? et.hidden.size(1) : 0;
  const int64_t rows = clip_rows + t5_rows == 0 ? 77 : clip_rows + t5_rows;

  Conditioning out;
  SD35_ASSIGN_OR_RETURN(out.context, Tensor::zeros({1, rows, width}, DType::kF32));
  SD35_ASSIGN_OR_RETURN(out.pooled, Tensor::zeros({1, pl + pg}, DType::kF32));
  // The result is host memory (it outlives the job's arena and goes into the prompt cache).
  // A host backend assembles it in place; a device backend assembles it in device scratch
  // (strided copies stay on the device) and downloads the two finished tensors.
  Tensor ctx = out.context, pooled = out.pooled;
  if (backend.device() != Device::kCPU) {
    SD35_ASSIGN_OR_RETURN(ctx, arena.tensor(out.context.shape(), DType::kF32));
    SD35_ASSIGN_OR_RETURN(pooled, arena.tensor(out.pooled.shape(), DType::kF32));
    SD35_RETURN_IF_ERROR(upload_bytes(backend, out.context.data(), ctx));  // the zeros
    SD35_RETURN_IF_ERROR(upload_bytes(backend, out.pooled.data(), pooled));
  }
  if (clip_rows > 0 && l) {
    SD35_RETURN_IF_ERROR(place(backend, el.hidden.slice(1, 0, clip_rows), ctx, 0, 0));
  }
  if (clip_rows > 0 && g) {
    SD35_RETURN_IF_ERROR(place(backend, eg.hidden.slice(1, 0, clip_rows), ctx, 0, wl));
  }
  if (t5) SD35_RETURN_IF_ERROR(place(backend, et.hidden, ctx, clip_rows, 0));
  // Pooled only when the CLIP part ran (ComfyUI leaves it None -> zeros otherwise).
  if (clip_block && l) {
    SD35_RETURN_IF_ERROR(backend.copy(el.pooled, pooled.slice(1, 0, pl)));
  }
  if (clip_block && g) {
    SD35_RETURN_IF_ERROR(backend.copy(eg.pooled, pooled.slice(1, pl, pl + pg)));
  }
  if (backend.device() != Device::kCPU) {
    SD35_RETURN_IF_ERROR(download_bytes(backend, ctx, out.context.data()));
    SD35_RETURN_IF_ERROR(download_bytes(backend, pooled, out.pooled.data()));
  }
  stats.total_s = seconds_since(t_start);
  return out;
}

Result<Conditioning> encode_prompt(Backend& backend, Arena& arena, const TextEncoders& encoders,
                                   std::string_view prompt, const EncodeOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string key;
  if (options.cache) {
    key = PromptCache::key(encoders, prompt, options);
    if (auto hit = options.cache->get(key)) {
      if (options.stats) {
        *options.stats = EncodeStats{};
        options.stats->cache_hit = true;
        options.stats->total_s = seconds_since(t0);
      }
      return std::move(*hit);
    }
  }
  const SD3Tokens tokens = encoders.tokenizer().tokenize(prompt);
  SD35_ASSIGN_OR_RETURN(Conditioning c, encode_tokens(backend, arena, encoders, tokens, options));
  if (options.cache) options.cache->put(key, c);
  if (options.stats) options.stats->total_s = seconds_since(t0);
  return c;
}

// ---------------------------------------------------------------------------------------------

PromptCache::PromptCache(size_t max_entries, size_t max_bytes)
    : max_entries_(max_entries), max_bytes_(max_bytes) {}

std::string PromptCache::key(const TextEncoders& encoders, std::string_view prompt,
                             const EncodeOptions& options) {
  // Only what changes the result: the instance, the encoders actually used, the widths.
  const bool l = options.use_clip_l && encoders.clip_l();
  const bool g = options.use_clip_g && encoders.clip_g();
  const bool t = options.use_t5 && encoders.t5();
  std::string k = std::to_string(encoders.id()) + "|" + (l ? "L" : "-") + (g ? "G" : "-") +
                  (t ? "T" : "-") + "|" + std::to_string(options.context_dim) + "|" +
                  std::to_string(options.pooled_dim) + "|";
  k.append(prompt);
  return k;
}

std::optional<Conditioning> PromptCache::get(const std::string& key) {
  Conditioning shared;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_key_.find(key);
    if (it == by_key_.end()) {
      ++stats_.misses;
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.hits;
    shared = it->second->value;  // buffers shared until copied below, outside the lock
  }
  auto copy = clone(shared);
  if (!copy.ok()) return std::nullopt;  // out of memory: encode again
  return std::move(*copy);
}

void PromptCache::put(const std::string& key, const Conditioning& value) {
  auto copy = clone(value);
  if (!copy.ok()) return;
  const size_t bytes = size_t(value.context.numel() + value.pooled.numel()) * sizeof(float);
  if (bytes > max_bytes_ || max_entries_ == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    stats_.bytes -= it->second->bytes;
    lru_.erase(it->second);
    by_key_.erase(it);
  }
  lru_.push_front(Entry{key, std::move(*copy), bytes});
  by_key_[key] = lru_.begin();
  stats_.bytes += bytes;
  evict_locked();
}

void PromptCache::evict_locked() {
  while (!lru_.empty() && (lru_.size() > max_entries_ || stats_.bytes > max_bytes_)) {
    stats_.bytes -= lru_.back().bytes;
    by_key_.erase(lru_.back().key);
    lru_.pop_back();
    ++stats_.evictions;
  }
}

void PromptCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  lru_.clear();
  by_key_.clear();
  stats_.bytes = 0;
}

PromptCache::Stats PromptCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Stats s = stats_;
  s.entries = lru_.size();
  return s;
}

}  // namespace sd35
