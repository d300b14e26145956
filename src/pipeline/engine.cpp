// Engine: loading and the stage functions (see engine.h). The sampling math follows
// ComfyUI's KSampler path in f32 (SPEC-model.md §5.2, §5.3, §5.7) so that the tiny-model
// goldens match within the pipeline tolerance.
#include "pipeline/engine.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <span>

#include "backend/cuda/cuda_backend.h"
#include "backend/make_backend.h"
#include "backend/transfer.h"
#include "core/cpu_features.h"
#include "models/mmdit/mmdit.h"
#include "models/vae/vae.h"
#include "pipeline/captured_forwards.h"
#include "sampling/guidance.h"

namespace sd35 {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr double kGiB = double(size_t(1) << 30);
std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", double(bytes) / kGiB);
  return buf;
}

// Working margin kept free on the device beside the weights (1024² activations and the
// VAE decode's scratch) when deciding where the text encoders go.
constexpr size_t kDeviceWorkingMargin = size_t(6) << 30;

// Bytes a component's weights take on the device (stored dtypes; fp8 vectors widened to f32
// are a few KB, ignored).
size_t component_bytes(const WeightIndex& index, Component c) {
  const ComponentSources* src = index.component(c);
  if (!src) return 0;
  size_t total = 0;
  for (const TensorSource& t : src->tensors) {
    auto b = checked_nbytes(t.shape, t.dtype);
    if (b.ok()) total += *b;
  }
  return total;
}

// Rough peak scratch of an untiled VAE decode: a few full-resolution feature maps of the
// first level's width (f32), the largest buffers of the pass.
size_t vae_decode_estimate(const VAEConfig& cfg, int64_t B, int64_t H, int64_t W) {
  const int64_t ch = int64_t(cfg.ch) * (cfg.ch_mult.empty() ? 1 : cfg.ch_mult.front());
  return size_t(B) * size_t(H) * size_t(W) * size_t(ch) * sizeof(float) * 4;
}

// An owned contiguous f32 copy (the stages hand owned tensors between them, so a caller's
// buffers are never written and arena memory never escapes a stage).
// Always a host tensor: with a host backend the backend's cast does it; beside a device
// backend (whose ops take device tensors only) a host tensor is converted element by
// element here (exact widening) and a device tensor is downloaded.
Result<Tensor> owned_f32(Backend& backend, const Tensor& t) {
  SD35_ASSIGN_OR_RETURN(Tensor out, Tensor::zeros(t.shape(), DType::kF32));
  if (backend.device() == Device::kCPU && t.device() == Device::kCPU) {
    SD35_RETURN_IF_ERROR(backend.copy(t, out));
    return out;
  }
  if (t.device() != Device::kCPU) {
    if (t.dtype() != DType::kF32 || !t.is_contiguous())
      return invalid_argument("device tensors given to the engine must be contiguous f32, got " +
                              t.describe());
    SD35_RETURN_IF_ERROR(download_bytes(backend, t, out.data()));
    return out;
  }
  if (!dtype_is_compute_float(t.dtype()))
    return invalid_argument("expected a float tensor, got " + t.describe());
  float* o = out.data_as<float>();
  std::array<int64_t, kMaxDims> index{};
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t offset = 0;
    for (int d = 0; d < t.ndim(); ++d) offset += index[size_t(d)] * t.stride(d);
    o[i] = load_as_f32(t.data(), t.dtype(), offset);
    for (int d = t.ndim() - 1; d >= 0; --d) {  // row-major increment
      if (++index[size_t(d)] < t.size(d)) break;
      index[size_t(d)] = 0;
    }
  }
  return out;
}

// [1, ...] repeated n times along dim 0 into rows [offset, offset + n) of `dst`.
void repeat_into(const Tensor& src, const Tensor& dst, int64_t offset, int64_t n) {
  const size_t row = size_t(src.numel()) * sizeof(float);
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(dst.data_as<char>() + size_t(offset + i) * row, src.data(), row);
}

Status check_conditioning(const Conditioning& c, const MMDiTConfig& cfg, const char* which) {
  if (c.context.ndim() != 3 || c.context.size(0) != 1 || c.context.size(2) != cfg.context_dim ||
      c.context.dtype() != DType::kF32 || !c.context.is_contiguous())
    return invalid_argument(std::string(which) + " context must be contiguous f32 [1, L, " +
                            std::to_string(cfg.context_dim) + "], got " + c.context.describe());
  if (c.pooled.ndim() != 2 || c.pooled.size(0) != 1 || c.pooled.size(1) != cfg.adm_in_channels ||
      c.pooled.dtype() != DType::kF32 || !c.pooled.is_contiguous())
    return invalid_argument(std::string(which) + " pooled must be contiguous f32 [1, " +
                            std::to_string(cfg.adm_in_channels) + "], got " + c.pooled.describe());
  return ok_status();
}

}  // namespace

EngineOptions EngineOptions::with_defaults() {
  EngineOptions o;
  o.compute = preferred_cpu_compute_dtype();
  return o;
}

Result<DType> compute_dtype_from_name(std::string_view name) {
  if (name == "f32") return DType::kF32;
  if (name == "bf16") return DType::kBF16;
  return invalid_argument("compute dtype must be f32 or bf16, not '" + std::string(name) + "'");
}

Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::load(const EngineOptions& options) {
  const auto t0 = Clock::now();
  if (options.models.empty()) return invalid_argument("no model files given");
  if (options.compute != DType::kF32 && options.compute != DType::kBF16)
    return invalid_argument("compute dtype must be f32 or bf16");
  if (options.text_device != "auto" && options.text_device != "cpu" &&
      options.text_device != "gpu")
    return invalid_argument("text device must be auto, cpu or gpu, not '" +
                            options.text_device + "'");
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  // Fail early on a bad backend name (or a missing GPU), before minutes of loading.
  SD35_ASSIGN_OR_RETURN(auto probe, e->new_backend());
  e->device_ = probe->device();
  probe.reset();

  SD35_ASSIGN_OR_RETURN(e->index_, WeightIndex::open(options.models));
  const WeightIndex& index = *e->index_;
  if (!index.has(Component::kMMDiT))
    return not_found("the model files hold no MMDiT (diffusion model) weights");
  if (!index.has(Component::kVAE)) return not_found("the model files hold no VAE weights");

  // Weight placement. A host backend uses the mapped files in place; a device backend gets
  // every weight uploaded once, after checking that it fits (a clear message instead of an
  // out-of-memory error half way through the load).
  std::unique_ptr<WeightPlacer> placer;
  if (e->device_ != Device::kCPU) {
    std::shared_ptr<DeviceMemory> memory = options.weight_memory;
    if (!memory) {
      if (options.backend_factory)
        return invalid_argument("a device backend_factory needs weight_memory too");
      SD35_ASSIGN_OR_RETURN(memory, cuda_weight_memory(options.device));
    }
    if (memory->device() != e->device_)
      return invalid_argument("weight_memory is on " + std::string(device_name(memory->device())) +
                              ", the backend on " + std::string(device_name(e->device_)));
    size_t free_bytes = 0, total_bytes = 0;
    SD35_RETURN_IF_ERROR(memory->mem_info(&free_bytes, &total_bytes));
    const bool want_t5 = options.load_t5 && index.has(Component::kT5XXL);
    const size_t main_bytes = component_bytes(index, Component::kMMDiT) +
                              component_bytes(index, Component::kVAE);
    const size_t clip_bytes = component_bytes(index, Component::kClipL) +
                              component_bytes(index, Component::kClipG);
    const size_t t5_bytes = want_t5 ? component_bytes(index, Component::kT5XXL) : 0;
    if (options.text_device == "gpu") {
      e->text_on_device_ = true;
    } else if (options.text_device == "auto") {
      e->text_on_device_ = free_bytes >= main_bytes + clip_bytes + t5_bytes + kDeviceWorkingMargin;
      e->log("text encoders on the " + std::string(e->text_on_device_ ? "GPU" : "CPU") +
             " (auto: " + gib(free_bytes) + " GiB free; MMDiT+VAE+CLIP " +
             gib(main_bytes + clip_bytes) + " GiB, T5 " + gib(t5_bytes) + " GiB, margin " +
             gib(kDeviceWorkingMargin) + " GiB)");
    }
    const size_t need = main_bytes + (e->text_on_device_ ? clip_bytes + t5_bytes : 0);
    if (need > free_bytes) {
      return resource_exhausted(
          "the GPU has " + gib(free_bytes) + " GiB free (of " + gib(total_bytes) + "); " +
          (e->text_on_device_ ? "MMDiT+VAE+CLIP+T5" : "MMDiT+VAE") + " need " + gib(need) +
          " GiB" + (e->text_on_device_ ? " (try --text-device cpu)" : ""));
    }
    placer = std::make_unique<WeightPlacer>(std::move(memory));
  }
  WeightPlacer* text_placer = e->text_on_device_ ? placer.get() : nullptr;

  auto mmdit = MMDiT::load(index, placer.get());
  if (!mmdit.ok()) return mmdit.status().with_context("loading the MMDiT: ");
  e->mmdit_ = std::move(mmdit).value();
  auto vae = VAE::load(index, placer.get());
  if (!vae.ok()) return vae.status().with_context("loading the VAE: ");
  e->vae_ = std::move(vae).value();
  if (!e->vae_->has_decoder()) return not_found("the VAE has no decoder weights");
  TextEncodersOptions to;
  to.tokenizer_files = options.tokenizer_files;
  to.t5 = options.load_t5;
  to.placer = text_placer;
  auto text = TextEncoders::load(index, to);
  if (!text.ok()) return text.status().with_context("loading the text encoders: ");
  e->text_ = std::move(text).value();
  if (placer) {
    e->device_weight_bytes_ = placer->bytes();
    e->log("uploaded " + std::to_string(placer->tensors()) + " weight tensors, " +
           gib(placer->bytes()) + " GiB, to the " + std::string(device_name(e->device_)) +
           " device");
  }
  e->load_s_ = seconds_since(t0);
  return e;
}

Result<std::unique_ptr<Backend>> Engine::new_backend() const {
  if (options_.backend_factory) {
    auto b = options_.backend_factory();
    if (b.ok() && !*b) return internal_error("the backend factory returned no backend");
    return b;
  }
  return make_backend_by_name(options_.backend, BackendSpec{options_.threads, options_.device});
}

void Engine::log(const std::string& message) const {
  if (options_.log) options_.log(message);
}

Result<std::unique_ptr<Workspace>> Engine::make_workspace(PromptCache* cache) const {
  SD35_ASSIGN_OR_RETURN(auto backend, new_backend());
  if (backend->device() != device_)
    return internal_error("the backend factory changed device between calls");
  // Text encoders with host weights beside a device backend run on their own CPU backend.
  std::unique_ptr<Backend> text_backend;
  if (device_ != Device::kCPU && !text_on_device_) {
    SD35_ASSIGN_OR_RETURN(text_backend, make_backend_by_name("cpu", {options_.threads, 0}));
  }
  return std::unique_ptr<Workspace>(
      new Workspace(std::move(backend), std::move(text_backend), cache));
}

EncodeOptions Engine::encode_options(bool use_t5) const {
  const MMDiTConfig& cfg = mmdit_->config();
  EncodeOptions eo;
  eo.use_t5 = use_t5;
  // The MMDiT's widths, so that absent encoders are zero-padded to what it expects.
  eo.context_dim = cfg.context_dim;
  eo.pooled_dim = cfg.adm_in_channels;
  return eo;
}

Result<Conditioning> Engine::encode_prompt(Workspace& ws, std::string_view text,
                                           bool use_t5) const {
  if (ws.cancel.load()) return cancelled("job cancelled");
  const auto t0 = Clock::now();
  EncodeOptions eo = encode_options(use_t5);
  eo.cache = ws.prompt_cache();
  auto c = sd35::encode_prompt(ws.text_backend(), ws.text_arena(), *text_, text, eo);
  ws.timings.encode_prompt_s += seconds_since(t0);
  if (!c.ok()) return c.status().with_context("encoding the prompt: ");
  return c;
}

Result<Conditioning> Engine::encode_tokens(Workspace& ws, const SD3Tokens& tokens,
                                           bool use_t5) const {
  if (ws.cancel.load()) return cancelled("job cancelled");
  const auto t0 = Clock::now();
  const EncodeOptions eo = encode_options(use_t5);
  auto c = sd35::encode_tokens(ws.text_backend(), ws.text_arena(), *text_, tokens, eo);
  ws.timings.encode_prompt_s += seconds_since(t0);
  if (!c.ok()) return c.status().with_context("encoding the prompt: ");
  return c;
}

Result<Tensor> Engine::empty_latent(int width, int height, int batch) const {
  // EmptySD3LatentImage: sizes in steps of 16, min 16 (comfy_extras/nodes_sd3.py).
  if (width < 16 || height < 16 || width % 16 || height % 16)
    return invalid_argument("width and height must be multiples of 16 (at least 16), got " +
                            std::to_string(width) + "x" + std::to_string(height));
  if (width > 16384 || height > 16384)
    return invalid_argument("width and height must be at most 16384");
  if (batch < 1 || batch > 64) return invalid_argument("batch must be in [1, 64]");
  const int f = vae_->scale_factor();
  return Tensor::zeros({batch, mmdit_->config().in_channels, height / f, width / f}, DType::kF32);
}

Result<Tensor> Engine::vae_encode(Workspace& ws, const Tensor& image_u8) const {
  if (ws.cancel.load()) return cancelled("job cancelled");
  if (!vae_->has_encoder()) return unsupported("the VAE has no encoder weights (img2img)");
  Tensor img = image_u8.ndim() == 3 ? image_u8.unsqueeze(0) : image_u8;
  if (img.ndim() != 4 || img.dtype() != DType::kU8 || img.size(3) != 3 || !img.is_contiguous())
    return invalid_argument("image must be contiguous uint8 [B, H, W, 3], got " +
                            image_u8.describe());
  const int f = vae_->scale_factor();
  const int64_t B = img.size(0), H0 = img.size(1), W0 = img.size(2);
  const int64_t H = H0 / f * f, W = W0 / f * f;
  if (H < f || W < f) return invalid_argument("image is smaller than the VAE's 8x8 pixels");
  // ComfyUI VAEEncode crops to multiples of 8 around the centre (offset = remainder / 2).
  const int64_t oy = (H0 - H) / 2, ox = (W0 - W) / 2;
  const auto t0 = Clock::now();
  SD35_ASSIGN_OR_RETURN(Tensor pixels, Tensor::zeros({B, 3, H, W}, DType::kF32));
  const uint8_t* s = img.data_as<const uint8_t>();
  float* d = pixels.data_as<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          // LoadImage: u8 / 255 (f32); VAE.encode's process_input: 2p − 1.
          const float p = float(s[((b * H0 + y + oy) * W0 + x + ox) * 3 + c]) / 255.0f;
          d[((b * 3 + c) * H + y) * W + x] = p * 2.0f - 1.0f;
        }
  const int64_t z = vae_->config().z_channels;
  Backend& backend = ws.backend();
  SD35_ASSIGN_OR_RETURN(Tensor latent, Tensor::zeros({B, z, H / f, W / f}, DType::kF32));
  VAEOptions vo;
  vo.compute = options_.compute;
  vo.cancelled = [&ws] { return ws.cancel.load(); };
  if (backend.device() == Device::kCPU) {
    SD35_ASSIGN_OR_RETURN(Tensor mean, Tensor::zeros(latent.shape(), DType::kF32));
    {
      ArenaScope scope(ws.arena());
      SD35_RETURN_IF_ERROR(vae_->encode(backend, ws.arena(), pixels, mean, nullptr, vo));
    }
    SD35_RETURN_IF_ERROR(sd3_vae_to_latent(backend, mean, latent));
  } else {
    // Pixels up, the model-space latent down; everything between stays on the device.
    ArenaScope scope(ws.arena());
    SD35_ASSIGN_OR_RETURN(Tensor px, to_backend(backend, ws.arena(), pixels));
    SD35_ASSIGN_OR_RETURN(Tensor mean, ws.arena().tensor(latent.shape(), DType::kF32));
    SD35_ASSIGN_OR_RETURN(Tensor lat, ws.arena().tensor(latent.shape(), DType::kF32));
    SD35_RETURN_IF_ERROR(vae_->encode(backend, ws.arena(), px, mean, nullptr, vo));
    SD35_RETURN_IF_ERROR(sd3_vae_to_latent(backend, mean, lat));
    SD35_RETURN_IF_ERROR(download_bytes(backend, lat, latent.data()));
  }
  ws.timings.vae_encode_s += seconds_since(t0);
  return latent;
}

Result<Tensor> Engine::sample(Workspace& ws, const Conditioning& positive,
                              const Conditioning& negative, const Tensor& latent,
                              const SampleParams& p) const {
  const ConditioningEntry pos{&positive}, neg{&negative};
  return sample(ws, std::span<const ConditioningEntry>(&pos, 1),
                std::span<const ConditioningEntry>(&neg, 1), latent, p);
}

Result<Tensor> Engine::sample(Workspace& ws, std::span<const ConditioningEntry> positive,
                              std::span<const ConditioningEntry> negative, const Tensor& latent,
                              const SampleParams& p) const {
  const MMDiTConfig& cfg = mmdit_->config();
  if (latent.ndim() != 4 || latent.size(1) != cfg.in_channels || latent.numel() == 0)
    return invalid_argument("latent must be [B, " + std::to_string(cfg.in_channels) +
                            ", h, w], got " + latent.describe());
  if (p.steps < 1 || p.steps > 10000) return invalid_argument("steps must be in [1, 10000]");
  if (!std::isfinite(p.cfg) || p.cfg < 0 || p.cfg > 100)
    return invalid_argument("cfg must be in [0, 100]");
  if (!std::isfinite(p.denoise)) return invalid_argument("denoise must be finite");
  if (!(p.shift > 0) || !std::isfinite(p.shift)) return invalid_argument("shift must be > 0");
  if (positive.empty()) return invalid_argument("positive conditioning is empty");
  // Entries [0, P) are the positive side, [P, P + N) the negative: the guidance's indices.
  std::vector<ConditioningEntry> entries(positive.begin(), positive.end());
  entries.insert(entries.end(), negative.begin(), negative.end());
  for (size_t k = 0; k < entries.size(); ++k) {
    const bool is_pos = k < positive.size();
    const std::string which = is_pos ? "positive" : "negative";
    if (!entries[k].conditioning) return invalid_argument(which + " conditioning entry is null");
    SD35_RETURN_IF_ERROR(check_conditioning(*entries[k].conditioning, cfg, which.c_str()));
  }
  if (ws.cancel.load()) return cancelled("job cancelled");

  const auto t0 = Clock::now();
  Backend& backend = ws.backend();
  FlowModelSampling ms(p.shift);
  std::vector<float> sigmas;
  if (p.sigmas) {
    sigmas = *p.sigmas;
    for (float v : sigmas)
      if (!std::isfinite(v) || v < 0) return invalid_argument("sigmas must be finite and >= 0");
  } else {
    SD35_ASSIGN_OR_RETURN(sigmas, ksampler_sigmas(ms, p.scheduler, p.steps, p.denoise,
                                                  discards_penultimate_sigma(p.sampler)));
  }
  SD35_ASSIGN_OR_RETURN(Tensor lat, owned_f32(backend, latent));
  if (sigmas.empty()) return lat;  // denoise <= 0: KSampler returns the input

  const int64_t B = lat.size(0), n = lat.numel();
  SD35_ASSIGN_OR_RETURN(Tensor x, Tensor::zeros(lat.shape(), DType::kF32));
  {
    // prepare_noise over the whole batch (one randn), then CONST.noise_scaling in f32.
    Tensor noise;
    if (p.noise.defined()) {
      if (p.noise.shape() != lat.shape())
        return invalid_argument("noise must be shaped like the latent " + lat.shape().to_string() +
                                ", got " + p.noise.describe());
      SD35_ASSIGN_OR_RETURN(noise, owned_f32(backend, p.noise));
    } else {
      SD35_ASSIGN_OR_RETURN(noise, Tensor::zeros(lat.shape(), DType::kF32));
      SD35_RETURN_IF_ERROR(prepare_noise(p.seed, noise));
    }
    const float s0 = sigmas.front();
    const float* nz = noise.data_as<const float>();
    const float* l = lat.data_as<const float>();
    float* xp = x.data_as<float>();
    for (int64_t i = 0; i < n; ++i) xp[i] = s0 * nz[i] + (1.0f - s0) * l[i];
  }

  // math.isclose(cfg, 1.0): the uncond pass is skipped (ComfyUI sampling_function).
  const bool use_uncond = std::fabs(p.cfg - 1.0) > 1e-9 * std::max(1.0, std::fabs(p.cfg));
  const Shape xs = lat.shape();
  const int64_t per_row = n / B;
  // Each entry's context and pooled vector repeated over the batch ([B, L, D], [B, P]).
  std::vector<Tensor> ctx_of(entries.size()), y_of(entries.size());
  for (size_t k = 0; k < entries.size(); ++k) {
    const Conditioning& c = *entries[k].conditioning;
    SD35_ASSIGN_OR_RETURN(ctx_of[k],
                          Tensor::zeros({B, c.context.size(1), c.context.size(2)}, DType::kF32));
    SD35_ASSIGN_OR_RETURN(y_of[k], Tensor::zeros({B, c.pooled.size(1)}, DType::kF32));
    repeat_into(c.context, ctx_of[k], 0, B);
    repeat_into(c.pooled, y_of[k], 0, B);
  }
  // Stacked contexts of the condition groups that run as one forward, built once per group.
  std::map<std::vector<int>, std::pair<Tensor, Tensor>> stacked;
  auto group_inputs = [&](const std::vector<int>& group) -> Result<std::pair<Tensor, Tensor>> {
    if (group.size() == 1) return std::make_pair(ctx_of[size_t(group[0])], y_of[size_t(group[0])]);
    auto it = stacked.find(group);
    if (it != stacked.end()) return it->second;
    const Tensor& c0 = ctx_of[size_t(group[0])];
    const Tensor& y0 = y_of[size_t(group[0])];
    const int64_t rows = int64_t(group.size()) * B;
    SD35_ASSIGN_OR_RETURN(Tensor ctx, Tensor::zeros({rows, c0.size(1), c0.size(2)}, DType::kF32));
    SD35_ASSIGN_OR_RETURN(Tensor y, Tensor::zeros({rows, y0.size(1)}, DType::kF32));
    for (size_t g = 0; g < group.size(); ++g) {
      repeat_into(ctx_of[size_t(group[g])], ctx, int64_t(g), 1);  // offset in B-row units
      repeat_into(y_of[size_t(group[g])], y, int64_t(g), 1);
    }
    return stacked.emplace(group, std::make_pair(ctx, y)).first->second;
  };
  Tensor x_in, v_out, ts;  // grown to the largest group's rows
  SD35_ASSIGN_OR_RETURN(Tensor d_cond, Tensor::zeros(xs, DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor d_uncond, Tensor::zeros(xs, DType::kF32));

  // The sampler and the guidance math stay on the host (small latents, f32 op by op as
  // ComfyUI). With a device backend each group's conditioning is uploaded once per sample()
  // call, x goes up and the prediction comes down once per model call, and the timesteps stay
  // host values (the MMDiT reads them on the host). Device buffers live in the arena for the
  // whole call.
  const bool on_host = backend.device() == Device::kCPU;
  ArenaScope sample_scope(ws.arena());
  std::map<std::vector<int>, std::pair<Tensor, Tensor>> device_inputs;
  // With a device backend the timestep sinusoid is computed here and uploaded next to x, so
  // the forward itself is device work only (capturable).
  Tensor x_dev, v_dev, tf_dev;
  std::vector<float> tf_host;
  CapturedForwards graphs(backend, [this](const std::string& m) { log(m); });
  const bool use_graphs = !on_host && options_.cuda_graphs;

  // One forward over a group of conditions whose contexts share a shape (calc_cond_batch
  // concatenates such conds, cond and uncond alike, into one batch).
  auto run_group = [&](const Tensor& xcur, float sigma, const std::vector<int>& group,
                       std::span<const int> skip) -> Status {
    const int64_t rows = int64_t(group.size()) * B;
    if (!x_in.defined() || x_in.size(0) < rows) {
      Shape in_shape = xs;
      in_shape[0] = rows;
      SD35_ASSIGN_OR_RETURN(x_in, Tensor::zeros(in_shape, DType::kF32));
      SD35_ASSIGN_OR_RETURN(v_out, Tensor::zeros(in_shape, DType::kF32));
      SD35_ASSIGN_OR_RETURN(ts, Tensor::zeros({rows}, DType::kF32));
      if (!on_host) {
        SD35_ASSIGN_OR_RETURN(x_dev, ws.arena().tensor(in_shape, DType::kF32));
        SD35_ASSIGN_OR_RETURN(v_dev, ws.arena().tensor(in_shape, DType::kF32));
        SD35_ASSIGN_OR_RETURN(tf_dev, ws.arena().tensor({rows, cfg.freq_dim}, DType::kF32));
        tf_host.assign(size_t(rows * cfg.freq_dim), 0.0f);
      }
    }
    SD35_ASSIGN_OR_RETURN(auto inputs, group_inputs(group));
    if (!on_host) {
      auto it = device_inputs.find(group);
      if (it == device_inputs.end()) {
        SD35_ASSIGN_OR_RETURN(Tensor c, to_backend(backend, ws.arena(), inputs.first));
        SD35_ASSIGN_OR_RETURN(Tensor y, to_backend(backend, ws.arena(), inputs.second));
        it = device_inputs.emplace(group, std::make_pair(c, y)).first;
      }
      inputs = it->second;
    }
    const size_t bytes = size_t(n) * sizeof(float);
    for (size_t g = 0; g < group.size(); ++g)
      std::memcpy(x_in.data_as<char>() + g * bytes, xcur.data(), bytes);
    const float t = ms.timestep(sigma);
    for (int64_t r = 0; r < rows; ++r) ts.data_as<float>()[r] = t;
    MMDiTOptions mo;
    mo.compute = options_.compute;
    mo.skip_layers.assign(skip.begin(), skip.end());
    Tensor xi = (on_host ? x_in : x_dev).slice(0, 0, rows);
    Tensor vo = (on_host ? v_out : v_dev).slice(0, 0, rows);
    MMDiTInputs in{xi, ts.slice(0, 0, rows), inputs.first, inputs.second, Tensor()};
    if (!on_host) {
      SD35_RETURN_IF_ERROR(upload_bytes(backend, x_in.data(), xi));
      in.timestep_features = tf_dev.slice(0, 0, rows);
      mmdit_->timestep_features(std::span<const float>(ts.data_as<const float>(), size_t(rows)),
                                tf_host.data());
      SD35_RETURN_IF_ERROR(upload_bytes(backend, tf_host.data(), in.timestep_features));
    }
    ArenaScope scope(ws.arena());
    ++ws.timings.model_calls;
    auto forward = [&] { return mmdit_->forward(backend, ws.arena(), in, vo, mo); };
    if (use_graphs) {
      // Everything the recorded forward depends on (see captured_forwards.h).
      const Arena::Mark mark = ws.arena().mark();
      CapturedForwards::Key key{rows, int64_t(mark.chunk), int64_t(mark.offset)};
      for (const Tensor* t : {&xi, &vo, &inputs.first, &inputs.second, &in.timestep_features}) {
        key.push_back(int64_t(reinterpret_cast<uintptr_t>(t->data())));
        for (int d = 0; d < t->ndim(); ++d) key.push_back(t->size(d));
      }
      key.push_back(-1);  // separates the group from the skipped layers
      key.insert(key.end(), group.begin(), group.end());
      key.push_back(-1);
      key.insert(key.end(), skip.begin(), skip.end());
      const int before = graphs.replays();
      SD35_RETURN_IF_ERROR(graphs.run(key, forward));
      ws.timings.graph_replays += graphs.replays() - before;
    } else {
      SD35_RETURN_IF_ERROR(forward());
    }
    if (!on_host) SD35_RETURN_IF_ERROR(download_bytes(backend, vo, v_out.data()));
    return ok_status();
  };
  ModelCall model = [&](const Tensor& xcur, float sigma, std::span<const int> conds,
                        std::span<const int> skip, std::span<const Tensor> outs) -> Status {
    if (ws.cancel.load()) return cancelled("job cancelled");
    if (!xcur.is_contiguous() || xcur.numel() != n)
      return internal_error("sampler passed a non-contiguous or mis-sized state");
    // Group the requested conditions by context/pooled shape, in request order.
    std::vector<std::vector<int>> groups;
    std::vector<std::vector<size_t>> slots;
    for (size_t i = 0; i < conds.size(); ++i) {
      const int k = conds[i];
      if (k < 0 || size_t(k) >= entries.size() || !outs[i].is_contiguous() || outs[i].numel() != n)
        return internal_error("guidance asked for a bad condition or output");
      size_t g = 0;
      for (; g < groups.size(); ++g) {
        const int k0 = groups[g][0];
        if (ctx_of[size_t(k0)].shape() == ctx_of[size_t(k)].shape() &&
            y_of[size_t(k0)].shape() == y_of[size_t(k)].shape())
          break;
      }
      if (g == groups.size()) groups.emplace_back(), slots.emplace_back();
      groups[g].push_back(k);
      slots[g].push_back(i);
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      SD35_RETURN_IF_ERROR(run_group(xcur, sigma, groups[g], skip));
      // CONST.calculate_denoised: x − v·σ in f32.
      const float* xp = xcur.data_as<const float>();
      for (size_t j = 0; j < groups[g].size(); ++j) {
        const float* v = v_out.data_as<const float>() + int64_t(j) * B * per_row;
        float* o = outs[slots[g][j]].data_as<float>();
        for (int64_t i = 0; i < n; ++i) o[i] = xp[i] - v[i] * sigma;
      }
    }
    return ok_status();
  };

  GuidanceOptions go;
  for (size_t k = 0; k < entries.size(); ++k) {
    const GuidanceCondition gc{int(k), entries[k].start_percent, entries[k].end_percent};
    (k < positive.size() ? go.positive : go.negative).push_back(gc);
  }
  go.cfg = p.cfg;
  go.slg = p.slg;
  go.on_sides = [&](const Tensor& c, const Tensor& u) {
    std::memcpy(d_cond.data(), c.data(), size_t(n) * sizeof(float));
    std::memcpy(d_uncond.data(), u.data(), size_t(n) * sizeof(float));
  };
  for (int l : go.slg.layers)
    if (l < 0 || l >= cfg.depth)
      return invalid_argument("skip-layer guidance layer " + std::to_string(l) +
                              " is outside the MMDiT's " + std::to_string(cfg.depth) +
                              " joint blocks");
  SD35_ASSIGN_OR_RETURN(Denoiser guided, make_guidance_denoiser(model, ms, go));
  int call = 0;
  Denoiser denoiser = [&](const Tensor& xcur, float sigma, const Tensor& denoised) -> Status {
    if (ws.cancel.load()) return cancelled("job cancelled");
    SD35_RETURN_IF_ERROR(guided(xcur, sigma, denoised));
    if (p.observe) {
      DenoiseStep s;
      s.call = call;
      s.sigma = sigma;
      s.x = &xcur;
      s.denoised_cond = &d_cond;
      s.denoised_uncond = use_uncond ? &d_uncond : nullptr;
      s.denoised = &denoised;
      p.observe(s);
    }
    ++call;
    return ok_status();
  };

  SampleOptions so;
  so.seed = p.seed;
  so.shift = p.shift;  // the SDE samplers' first-sigma offset depends on it
  ws.timings.step_s.clear();
  auto step_t0 = Clock::now();
  so.progress = [&](int step, int total) {
    ws.timings.step_s.push_back(seconds_since(step_t0));
    step_t0 = Clock::now();
    if (ws.progress) ws.progress(step, total);
  };
  so.cancelled = [&ws] { return ws.cancel.load(); };
  Status st = sd35::sample(p.sampler, denoiser, x, sigmas, so);
  ws.timings.sample_s += seconds_since(t0);
  if (!st.ok()) return st;
  // inverse_noise_scaling with σ_last (an exact identity when the schedule ends at 0).
  const float last = sigmas.back();
  if (last != 0.0f) {
    float* xp = x.data_as<float>();
    for (int64_t i = 0; i < n; ++i) xp[i] = xp[i] / (1.0f - last);
  }
  return x;
}

Result<Tensor> Engine::vae_decode(Workspace& ws, const Tensor& latent) const {
  if (ws.cancel.load()) return cancelled("job cancelled");
  const int64_t z = vae_->config().z_channels;
  if (latent.ndim() != 4 || latent.size(1) != z || latent.numel() == 0)
    return invalid_argument("latent must be [B, " + std::to_string(z) + ", h, w], got " +
                            latent.describe());
  const auto t0 = Clock::now();
  Backend& backend = ws.backend();
  const int f = vae_->scale_factor();
  const int64_t B = latent.size(0), H = latent.size(2) * f, W = latent.size(3) * f;
  SD35_ASSIGN_OR_RETURN(Tensor raw, Tensor::zeros({B, 3, H, W}, DType::kF32));
  VAEOptions vo;
  vo.compute = options_.compute;
  vo.cancelled = [&ws] { return ws.cancel.load(); };
  if (backend.device() == Device::kCPU) {
    SD35_ASSIGN_OR_RETURN(Tensor vae_latent, Tensor::zeros(latent.shape(), DType::kF32));
    SD35_RETURN_IF_ERROR(sd3_latent_to_vae(backend, latent, vae_latent));
    ArenaScope scope(ws.arena());
    SD35_RETURN_IF_ERROR(vae_->decode(backend, ws.arena(), vae_latent, raw, vo));
  } else {
    // Latent up, image down. Device memory is the scarce resource: when an untiled decode
    // would not fit next to what is free (plus what the arena already holds), decode in
    // tiles (bounded scratch; seams blended, see VAE::decode_tiled).
    Arena& arena = ws.arena();
    ArenaScope scope(arena);
    SD35_ASSIGN_OR_RETURN(Tensor host_latent, owned_f32(backend, latent));
    SD35_ASSIGN_OR_RETURN(Tensor lat, to_backend(backend, arena, host_latent));
    SD35_ASSIGN_OR_RETURN(Tensor vae_latent, arena.tensor(latent.shape(), DType::kF32));
    SD35_RETURN_IF_ERROR(sd3_latent_to_vae(backend, lat, vae_latent));
    SD35_ASSIGN_OR_RETURN(Tensor img, arena.tensor(raw.shape(), DType::kF32));
    size_t free_bytes = 0, total_bytes = 0;
    SD35_RETURN_IF_ERROR(backend.memory().mem_info(&free_bytes, &total_bytes));
    const size_t available = free_bytes + (arena.capacity_bytes() - arena.bytes_in_use());
    const size_t need = vae_decode_estimate(vae_->config(), B, H, W);
    if (need > available) {
      log("VAE decode in tiles: an untiled " + std::to_string(W) + "x" + std::to_string(H) +
          " decode needs about " + gib(need) + " GiB, " + gib(available) + " GiB available");
      SD35_RETURN_IF_ERROR(
          vae_->decode_tiled(backend, arena, vae_latent, img, VAETileOptions{}, vo));
    } else {
      SD35_RETURN_IF_ERROR(vae_->decode(backend, arena, vae_latent, img, vo));
    }
    SD35_RETURN_IF_ERROR(download_bytes(backend, img, raw.data()));
  }
  SD35_ASSIGN_OR_RETURN(Tensor image, image_from_raw(raw));
  ws.timings.vae_decode_s += seconds_since(t0);
  return image;
}

Result<Tensor> Engine::image_from_raw(const Tensor& raw) {
  const int64_t B = raw.size(0), H = raw.size(2), W = raw.size(3);
  SD35_ASSIGN_OR_RETURN(Tensor image, Tensor::zeros({B, H, W, 3}, DType::kU8));
  const float* r = raw.data_as<const float>();
  uint8_t* o = image.data_as<uint8_t>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          // clamp((raw + 1) / 2, 0, 1), then SaveImage's clip(255·v).astype(uint8): truncation.
          float v = (r[((b * 3 + c) * H + y) * W + x] + 1.0f) / 2.0f;
          v = std::isnan(v) ? 0.0f : std::clamp(v, 0.0f, 1.0f);
          o[((b * H + y) * W + x) * 3 + c] = uint8_t(std::clamp(255.0f * v, 0.0f, 255.0f));
        }
  return image;
}

Result<GenerateResult> Engine::generate(Workspace& ws, const GenerateParams& gp) const {
  const auto t0 = Clock::now();
  ws.timings = Timings{};
  if (gp.batch < 1 || gp.batch > 64) return invalid_argument("batch must be in [1, 64]");
  Tensor latent;
  if (gp.init_image.defined()) {
    SD35_ASSIGN_OR_RETURN(Tensor one, vae_encode(ws, gp.init_image));
    if (one.size(0) == gp.batch) {
      latent = one;
    } else if (one.size(0) == 1) {
      // One input image, several outputs: the same latent per batch entry (distinct noise).
      Shape s = one.shape();
      s[0] = gp.batch;
      SD35_ASSIGN_OR_RETURN(latent, Tensor::zeros(s, DType::kF32));
      repeat_into(one, latent, 0, gp.batch);
    } else {
      return invalid_argument("the init image batch does not match the batch size");
    }
  } else {
    SD35_ASSIGN_OR_RETURN(latent, empty_latent(gp.width, gp.height, gp.batch));
  }
  SD35_ASSIGN_OR_RETURN(Conditioning pos, encode_prompt(ws, gp.prompt, gp.use_t5));
  SD35_ASSIGN_OR_RETURN(Conditioning neg, encode_prompt(ws, gp.negative, gp.use_t5));
  GenerateResult out;
  SD35_ASSIGN_OR_RETURN(out.latent, sample(ws, pos, neg, latent, gp.sample));
  SD35_ASSIGN_OR_RETURN(out.image, vae_decode(ws, out.latent));
  ws.timings.total_s = seconds_since(t0);
  out.timings = ws.timings;
  return out;
}

}  // namespace sd35
