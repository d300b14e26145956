// Text conditioning of SD3 (the CLIPTextEncode node): the three text encoders, prompt
// weighting and the assembly of the MMDiT's context and pooled inputs, exactly as ComfyUI's
// SD3ClipModel.encode_token_weights does it (SPEC-model.md §4.5, §4.6):
//
//   per encoder (CLIP-L, CLIP-G, T5): all chunks encoded as one batch, plus the "empty"
//     sequence when some weight != 1; for every token with weight w != 1
//     z[j] = (z[j] - z_empty[j])·w + z_empty[j]; pooled = the real prompt's chunk 0 (unweighted)
//   lg      = cat_features(L[:cut], G[:cut]), cut = the shorter token count, zero-padded on the
//             right to the T5 width (T5 present) or the MMDiT context_dim (T5 absent)
//   context = cat_tokens(lg, T5)            [1, 77k + Lt, D]
//   pooled  = cat(L pooled, G pooled)       [1, wL + wG]
// Absent encoders: no L -> its features and pooled are zeros (G shifted right by wL); no G ->
// pooled zeros for G; no T5 -> context is lg only ([1, 77k, D], no zero block); nothing ->
// zeros [1, 77, D] and [1, wL + wG].
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/clip/clip.h"
#include "models/t5/t5.h"
#include "sd35/status.h"
#include "text/tokenizers.h"
#include "weights/model_configs.h"

namespace sd35 {

class WeightIndex;

// What the MMDiT receives for one prompt. Both tensors are owned, contiguous f32 CPU tensors.
struct Conditioning {
  Tensor context;  // [1, Lc, D]
  Tensor pooled;   // [1, P] (2048 for SD3.5: CLIP-L 768 + CLIP-G 1280)
};

// ComfyUI's ConditioningZeroOut: all-zero context and pooled of the same shapes.
Result<Conditioning> conditioning_zero_out(const Conditioning& c);

struct TextEncodersOptions {
  // Tokenizer data; nullopt: the files beside the models (tokenizer_files_near), else the
  // copy the program ships.
  std::optional<TokenizerFiles> tokenizer_files;
  ConfigOverrides overrides;  // CLIP heads (tiny models without metadata)
  // Components to load when the index has them (false: treat as absent).
  bool clip_l = true;
  bool clip_g = true;
  bool t5 = true;
  // nullptr: weights stay host views (CPU backends); else uploaded to the placer's device,
  // and encode_* must then get a backend on that device.
  WeightPlacer* placer = nullptr;
};

// The text encoders of one model set and the SD3 tokenizer; immutable after load, shared by
// every job (encode calls only need a per-job Arena).
class TextEncoders {
 public:
  // Loads whichever of CLIP-L, CLIP-G and T5-XXL the index holds (none is an error only
  // when the caller asked for none: an index of an MMDiT alone still conditions with zeros).
  static Result<std::unique_ptr<TextEncoders>> load(const WeightIndex& index,
                                                    const TextEncodersOptions& options = {});
  ~TextEncoders();

  const ClipTextModel* clip_l() const { return clip_l_.get(); }  // nullptr when absent
  const ClipTextModel* clip_g() const { return clip_g_.get(); }
  const T5Encoder* t5() const { return t5_.get(); }
  const SD3Tokenizer& tokenizer() const { return *tokenizer_; }
  // Distinguishes instances in a shared PromptCache (never reused within a process, unlike
  // an address).
  uint64_t id() const { return id_; }

 private:
  TextEncoders() = default;
  std::unique_ptr<SD3Tokenizer> tokenizer_;
  std::unique_ptr<ClipTextModel> clip_l_;
  std::unique_ptr<ClipTextModel> clip_g_;
  std::unique_ptr<T5Encoder> t5_;
  uint64_t id_ = 0;
};

// Seconds spent per encoder and in total, and how many encoder forwards ran (0 on a cache
// hit). For benchmarks and tests; timing never changes results.
struct EncodeStats {
  double clip_l_s = 0, clip_g_s = 0, t5_s = 0, total_s = 0;
  int encoder_calls = 0;
  bool cache_hit = false;
};

class PromptCache;

struct EncodeOptions {
  // Encoders to use, among those loaded (false: as if absent).
  bool use_clip_l = true;
  bool use_clip_g = true;
  bool use_t5 = true;
  // The MMDiT's context_dim: the zero-pad width of the CLIP features when T5 is not used.
  // 0: T5's d_model when T5 is used, else 4096 (the literal of both references). With T5
  // used it must equal T5's d_model.
  int context_dim = 0;
  // The MMDiT's adm_in_channels = wL + wG: gives the width of an absent CLIP's zeros (pooled,
  // and CLIP-L's features left of G's). 0: the present encoders' widths, 768 / 1280 for an
  // absent CLIP-L / CLIP-G (the references' literals).
  int pooled_dim = 0;
  // Reuses the conditioning of an identical earlier request (same encoders instance, prompt,
  // encoder selection and widths). Not owned; may be shared by threads.
  PromptCache* cache = nullptr;
  EncodeStats* stats = nullptr;  // optional, filled in
};

// The conditioning of already tokenized sequences (e.g. goldens' token ids, or separate
// texts per encoder as CLIPTextEncodeSD3 does). Chunks of CLIP-L and CLIP-G may differ in
// number (cut to the shorter); an encoder whose TokenChunks has no chunk is treated as absent.
// The encoders run on `backend` with scratch from `arena` (both on the device the encoders'
// weights live on); the result is always host memory.
Result<Conditioning> encode_tokens(Backend& backend, Arena& arena, const TextEncoders& encoders,
                                   const SD3Tokens& tokens, const EncodeOptions& options = {});

// tokenize (ComfyUI weights syntax) + encode_tokens, through options.cache when given.
Result<Conditioning> encode_prompt(Backend& backend, Arena& arena, const TextEncoders& encoders,
                                   std::string_view prompt, const EncodeOptions& options = {});

// Thread-safe bounded LRU of conditionings: a repeated (e.g. negative) prompt is encoded
// once. Entries are deep-copied in and out, so a caller that modifies its tensors never
// changes the cache. Two threads missing the same key at once both encode (the second insert
// wins); that wastes work but never gives a wrong result.
class PromptCache {
 public:
  explicit PromptCache(size_t max_entries = 32, size_t max_bytes = size_t(512) << 20);
  PromptCache(const PromptCache&) = delete;
  PromptCache& operator=(const PromptCache&) = delete;

  // A copy of the entry (and marks it most recently used), or nullopt.
  std::optional<Conditioning> get(const std::string& key);
  // Stores a copy; evicts least recently used entries beyond the bounds. An entry larger
  // than max_bytes is not stored.
  void put(const std::string& key, const Conditioning& value);
  void clear();

  struct Stats {
    uint64_t hits = 0, misses = 0, evictions = 0;
    size_t entries = 0, bytes = 0;
  };
  Stats stats() const;

  // The key encode_prompt uses.
  static std::string key(const TextEncoders& encoders, std::string_view prompt,
                         const EncodeOptions& options);

 private:
  struct Entry {
    std::string key;
    Conditioning value;
    size_t bytes = 0;
  };
  void evict_locked();

  const size_t max_entries_;
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> by_key_;
  Stats stats_;
};

}  // namespace sd35
