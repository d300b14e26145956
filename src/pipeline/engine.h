// Engine: the models of one SD3.5 model set, loaded once and immutable afterwards, and the
// stage functions of a ComfyUI txt2img / img2img graph (SPEC-model.md §5.7):
//
//   encode_prompt  (CLIPTextEncode)        -> Conditioning
//   empty_latent   (EmptySD3LatentImage)   -> zeros [B, 16, H/8, W/8], model latent space
//   vae_encode     (LoadImage + VAEEncode) -> mean latent with process_in applied
//   sample         (KSampler)              -> model-space latent
//   vae_decode     (VAEDecode + SaveImage) -> uint8 [B, H, W, 3]
//
// Latents passed between stages are always in the *model* latent space ((z − shift)·scale);
// the all-zero empty latent is used as is, exactly as ComfyUI skips process_in for it.
//
// Devices: with a device backend ("cuda", or a backend_factory whose backend is not on the
// host) the weights are uploaded once at load and every model runs on that device; the
// sampler state, conditionings and stage results stay small host tensors that the stages
// upload and download. The CPU path moves nothing.
//
// Every method is const. Concurrency: each concurrent job brings its own Workspace (backend
// instance, scratch arena, progress/cancel, timings); the engine itself holds no per-job
// state, so two jobs (or two engines) never influence each other.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "pipeline/conditioning.h"
#include "sampling/guidance.h"
#include "sampling/sampling.h"
#include "sd35/status.h"
#include "weights/weight_index.h"

namespace sd35 {

class MMDiT;
class VAE;

struct EngineOptions {
  // Checkpoint, text-encoder files (with optional forced roles) or one folder.
  std::vector<WeightInput> models;
  std::string backend = "cpu";  // "cpu", "reference" or "cuda"
  int device = 0;               // CUDA device index (backend "cuda")
  // Where CLIP and T5 run with a device backend: "gpu" (the main backend, weights on the
  // device), "cpu" (a CPU backend per workspace, host weights), or "auto": gpu when the
  // device's free memory after the MMDiT, VAE and CLIP weights leaves room for T5 plus a
  // working margin, else cpu. Ignored with a host backend (everything runs there).
  std::string text_device = "auto";
  // Extension point: when set, every workspace's main backend comes from this factory
  // instead of `backend` (a custom or instrumented backend). With a factory whose backend
  // is not on the host, weight_memory must be set too.
  std::function<Result<std::unique_ptr<Backend>>()> backend_factory;
  // Where the weights go for a device backend (shared by every engine on the device);
  // unset with backend "cuda": cuda_weight_memory(device).
  std::shared_ptr<DeviceMemory> weight_memory;
  // Optional: one-line notes about placement decisions (text device, tiled decode).
  std::function<void(const std::string&)> log;
  // Activation precision of the MMDiT and the VAE (text encoders compute in f32).
  DType compute = DType::kF32;  // load() callers usually pass preferred_cpu_compute_dtype()
  int threads = 0;              // CPU threads per workspace backend; <= 0: all
  bool load_t5 = true;          // false: T5 is not loaded even when present (saves ~10 GB)
  // With a backend that can capture work (CUDA): each kind of MMDiT forward of a sample()
  // call runs eagerly once, is then captured as a graph and replayed for the remaining steps
  // (pipeline/captured_forwards.h). Same results bit for bit; fewer launches.
  bool cuda_graphs = false;
  std::optional<TokenizerFiles> tokenizer_files;  // nullopt: beside the models, else shipped
  // Default EngineOptions with compute = preferred_cpu_compute_dtype().
  static EngineOptions with_defaults();
};

// Seconds per stage of one job (accumulated when a stage runs several times).
struct Timings {
  double encode_prompt_s = 0;
  double vae_encode_s = 0;
  double sample_s = 0;
  double vae_decode_s = 0;
  double total_s = 0;          // generate() only
  std::vector<double> step_s;  // seconds per sampler step (last sample() call)
  int model_calls = 0;         // MMDiT forwards (a batched cond+uncond pass counts once)
  int graph_replays = 0;       // of those, run as a replayed capture (cuda_graphs)
};

// Per-job state. Not thread-safe itself: one Workspace per concurrent job.
class Workspace {
 public:
  // The job's main backend and its scratch arena (on the backend's device).
  Backend& backend() { return *backend_; }
  Arena& arena() { return *arena_; }
  // Host scratch for staging (the CPU text backend's arena when text runs on the CPU).
  Arena& host_arena() { return *host_arena_; }
  // The backend the text encoders run on (the main one unless text runs on the CPU) and
  // its arena.
  Backend& text_backend() { return text_backend_ ? *text_backend_ : *backend_; }
  Arena& text_arena() { return text_backend_ ? *host_arena_ : *arena_; }
  PromptCache* prompt_cache() const { return cache_; }

  // Called after each sampler step (1-based step, total). May be empty.
  std::function<void(int step, int total)> progress;
  // Set (from any thread) to stop the job; checked between steps and stages.
  std::atomic<bool> cancel{false};
  Timings timings;

 private:
  friend class Engine;
  Workspace(std::unique_ptr<Backend> backend, std::unique_ptr<Backend> text_backend,
            PromptCache* cache)
      : backend_(std::move(backend)),
        text_backend_(std::move(text_backend)),
        arena_(std::make_unique<Arena>(backend_->memory())),
        host_arena_(std::make_unique<Arena>()),
        cache_(cache) {}
  // Declaration order matters: the arenas give their chunks back to the backends' memory.
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Backend> text_backend_;  // null: text runs on backend_
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Arena> host_arena_;
  PromptCache* cache_ = nullptr;
};

// What the Denoiser saw at one model evaluation (for goldens and debugging).
struct DenoiseStep {
  int call = 0;  // 0-based model evaluation
  float sigma = 0;
  const Tensor* x = nullptr;  // the sampler state given to the model
  const Tensor* denoised_cond = nullptr;
  const Tensor* denoised_uncond = nullptr;  // nullptr when cfg == 1 (uncond skipped)
  const Tensor* denoised = nullptr;         // after CFG
};

struct SampleParams {
  Sampler sampler = Sampler::kDpmpp2m;
  Scheduler scheduler = Scheduler::kSgmUniform;
  int steps = 40;
  double cfg = 4.5;
  double denoise = 1.0;
  uint64_t seed = 0;
  double shift = 3.0;  // ModelSamplingSD3
  // SkipLayerGuidanceSD3 (off unless layers are given; SD3.5 Medium's usual: 7, 8, 9).
  SkipLayerGuidance slg;
  // Optional: every model evaluation's tensors (valid during the call only).
  std::function<void(const DenoiseStep&)> observe;
  // Overrides for checks against goldens (SamplerCustom-like): this exact sigma schedule
  // instead of scheduler/steps/denoise, and this initial noise (shaped like the latent)
  // instead of prepare_noise(seed). `seed` still seeds the ancestral/SDE samplers.
  std::optional<std::vector<float>> sigmas;
  Tensor noise;
};

// One entry of a conditioning list (ConditioningCombine keeps entries side by side; each may
// carry a ConditioningSetTimestepRange window, as percents of the schedule).
struct ConditioningEntry {
  const Conditioning* conditioning = nullptr;  // not owned; [1, L, D] context, [1, P] pooled
  double start_percent = 0.0;
  double end_percent = 1.0;
};

struct GenerateParams {
  std::string prompt;
  std::string negative;
  int width = 1024, height = 1024, batch = 1;
  bool use_t5 = true;
  SampleParams sample;
  // img2img: uint8 [H, W, 3] or [1, H, W, 3] (center-cropped to multiples of 8 as VAEEncode;
  // the output has its size, width/height are ignored); undefined: txt2img at width × height.
  Tensor init_image;
};

struct GenerateResult {
  Tensor latent;  // model latent space [B, 16, h, w]
  Tensor image;   // uint8 [B, H, W, 3]
  Timings timings;
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> load(const EngineOptions& options);
  ~Engine();

  // A fresh per-job workspace (its own backend instance and arena). `cache` (optional, not
  // owned, thread-safe) lets jobs share repeated prompts.
  Result<std::unique_ptr<Workspace>> make_workspace(PromptCache* cache = nullptr) const;

  const EngineOptions& options() const { return options_; }
  const WeightIndex& weights() const { return *index_; }
  const MMDiT& mmdit() const { return *mmdit_; }
  const VAE& vae() const { return *vae_; }
  const TextEncoders& text_encoders() const { return *text_; }
  double load_seconds() const { return load_s_; }
  // The device the MMDiT and the VAE run on, whether the text encoders run there too, and
  // the weight bytes uploaded to it (0 with a host backend).
  Device device() const { return device_; }
  bool text_on_device() const { return text_on_device_; }
  size_t device_weight_bytes() const { return device_weight_bytes_; }

  // CLIPTextEncode (with the MMDiT's context/pooled widths). use_t5 false: CLIP only.
  Result<Conditioning> encode_prompt(Workspace& ws, std::string_view text,
                                     bool use_t5 = true) const;
  // Already tokenized sequences (CLIPTextEncodeSD3: one text per encoder, tokenized with
  // text_encoders().tokenizer()); an encoder whose TokenChunks has no chunk is absent, as
  // ComfyUI's SD3ClipModel treats an empty token list. Not cached.
  Result<Conditioning> encode_tokens(Workspace& ws, const SD3Tokens& tokens,
                                     bool use_t5 = true) const;
  // EmptySD3LatentImage: zeros [batch, C, height/8, width/8]; width/height multiples of 16,
  // at least 16; batch >= 1.
  Result<Tensor> empty_latent(int width, int height, int batch) const;
  // uint8 [B, H, W, 3] (or [H, W, 3]) pixels -> model-space latent [B, C, H/8, W/8] (VAE mean,
  // then process_in). The image is center-cropped to multiples of 8 as ComfyUI's VAEEncode.
  Result<Tensor> vae_encode(Workspace& ws, const Tensor& image_u8) const;
  // KSampler: noise from `seed` over the whole batch, ksampler sigmas, x0 = σ0·noise +
  // (1−σ0)·latent, the sampler over CFG'd denoised predictions, then /(1 − σ_last).
  // positive/negative are [1, L, D] (repeated over the batch). denoise <= 0 returns the
  // latent unchanged.
  Result<Tensor> sample(Workspace& ws, const Conditioning& positive, const Conditioning& negative,
                        const Tensor& latent, const SampleParams& params) const;
  // The same with conditioning lists: on each side the entries active at σ are averaged
  // (ComfyUI calc_cond_batch), and entries of equal shapes run as one batched forward. The
  // positive list must not be empty; an empty negative list means uncond = 0.
  Result<Tensor> sample(Workspace& ws, std::span<const ConditioningEntry> positive,
                        std::span<const ConditioningEntry> negative, const Tensor& latent,
                        const SampleParams& params) const;
  // process_out, VAE decode, clamp((x+1)/2), ×255 truncated to uint8 [B, H, W, 3].
  Result<Tensor> vae_decode(Workspace& ws, const Tensor& latent) const;
  // The same decoded in tiles exactly as ComfyUI's VAE.decode_tiled_ (the VAEDecodeTiled
  // node): three tiled passes with tiles (tile_x/2, tile_y*2), (tile_x*2, tile_y/2) and
  // (tile_x, tile_y) latent pixels, `overlap` latent pixels between tiles, each pass blended
  // with comfy.utils.tiled_scale's feathered masks, the passes averaged, then clamp((x+1)/2).
  // A pass whose tile covers the latent decodes it whole. Sizes in latent pixels, >= 1;
  // overlap >= 0 and below every pass's tile edge.
  Result<Tensor> vae_decode_tiled(Workspace& ws, const Tensor& latent, int tile_x, int tile_y,
                                  int overlap) const;

  // The whole txt2img / img2img flow.
  Result<GenerateResult> generate(Workspace& ws, const GenerateParams& params) const;

 private:
  Engine() = default;
  Result<std::unique_ptr<Backend>> new_backend() const;
  // Text-encoding options with the MMDiT's context and pooled widths.
  EncodeOptions encode_options(bool use_t5) const;
  void log(const std::string& message) const;
  // The raw VAE decoder output [B, 3, H, W] (f32, host) of a VAE-space host latent.
  Status decode_raw(Workspace& ws, const Tensor& vae_latent, const Tensor& raw) const;
  // clamp((raw + 1) / 2, 0, 1), ×255 truncated (SaveImage) -> uint8 [B, H, W, 3].
  static Result<Tensor> image_from_raw(const Tensor& raw);

  EngineOptions options_;
  Device device_ = Device::kCPU;
  bool text_on_device_ = false;
  size_t device_weight_bytes_ = 0;
  std::unique_ptr<WeightIndex> index_;
  std::unique_ptr<MMDiT> mmdit_;
  std::unique_ptr<VAE> vae_;
  std::unique_ptr<TextEncoders> text_;
  double load_s_ = 0;
};

// Parses "f32" / "bf16".
Result<DType> compute_dtype_from_name(std::string_view name);

}  // namespace sd35
