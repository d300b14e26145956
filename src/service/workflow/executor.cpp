// Executes a Plan on an Engine: each node's outputs are computed in plan order and kept by
// node id until the output nodes have their images.
//
// LATENT values are in the model latent space (Engine's convention), so ComfyUI's
// process_out / process_in round trip between two samplers is skipped (equal up to the last
// float bit of that round trip).
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "pipeline/engine.h"
#include "service/workflow/image_scale.h"
#include "service/workflow/plan.h"

namespace sd35::workflow {

namespace {

struct ModelValue {
  double shift = 3.0;
  SkipLayerGuidance slg;
};
// SampleParams with what every sampler node shares: the MODEL's ModelSamplingSD3 shift and
// skip-layer guidance, the sampler, CFG scale and noise seed.
SampleParams model_sample_params(const ModelValue& m, Sampler sampler, double cfg, uint64_t seed) {
  SampleParams p;
  p.sampler = sampler;
  p.cfg = cfg;
  p.seed = seed;
  p.shift = m.shift;
  p.slg = m.slg;
  return p;
}
struct ClipValue {};
struct VaeValue {};
struct CondEntry {
  std::shared_ptr<const Conditioning> cond;
  double start = 0.0, end = 1.0;
};
using CondValue = std::vector<CondEntry>;
struct NoiseValue {
  uint64_t seed = 0;
  bool disabled = false;
};
struct GuiderValue {
  ModelValue model;
  CondValue positive, negative;
  double cfg = 1.0;
};
struct SamplerValue {
  Sampler sampler = Sampler::kEuler;
};
struct SigmasValue {
  std::vector<float> sigmas;
};
using Value = std::variant<std::monostate, ModelValue, ClipValue, VaeValue, CondValue, Tensor,
                           NoiseValue, GuiderValue, SamplerValue, SigmasValue>;

Status node_fail(const PlanNode& n, const std::string& input, const Status& st) {
  WorkflowError e{n.id, n.class_type, input, st.message()};
  return Status(st.code(), e.to_string());
}

class Executor {
 public:
  Executor(const Engine& engine, Workspace& ws) : engine_(engine), ws_(ws) {}

  template <typename T>
  const T& in(const Link& l) const {
    return std::get<T>(values_.at(l.node).at(l.output));
  }

  Status run(const PlanNode& n, std::vector<SavedImage>& saved) {
    std::vector<Value> out;
    Status st = std::visit([&](const auto& op) { return eval(n, op, out, saved); }, n.op);
    if (!st.ok()) return st;
    values_[n.id] = std::move(out);
    return ok_status();
  }

 private:
  Status eval(const PlanNode&, const CheckpointLoaderOp&, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    out = {ModelValue{}, ClipValue{}, VaeValue{}};
    return ok_status();
  }
  Status eval(const PlanNode&, const ClipLoaderOp&, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    out = {ClipValue{}};
    return ok_status();
  }
  // The engine was loaded with this file as its VAE (Plan::engine_models), so the value is
  // the engine's VAE, as for the checkpoint's VAE output.
  Status eval(const PlanNode&, const VAELoaderOp&, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    out = {VaeValue{}};
    return ok_status();
  }
  Status eval(const PlanNode&, const ModelSamplingSD3Op& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    ModelValue m = in<ModelValue>(op.model);
    m.shift = op.shift;
    out = {m};
    return ok_status();
  }
  Status eval(const PlanNode&, const SkipLayerGuidanceOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    ModelValue m = in<ModelValue>(op.model);
    m.slg = op.slg;
    out = {m};
    return ok_status();
  }
  Status eval(const PlanNode& n, const TextEncodeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto c = engine_.encode_prompt(ws_, op.text, /*use_t5=*/true);
    if (!c.ok()) return node_fail(n, "text", c.status());
    out = {CondValue{CondEntry{std::make_shared<const Conditioning>(std::move(*c))}}};
    return ok_status();
  }
  // CLIPTextEncodeSD3 (comfy_extras/nodes_sd3.py): each encoder gets its own text's tokens;
  // with empty_padding "none" an empty text gives that encoder no tokens at all (absent in
  // SD3ClipModel); then the CLIP-L / CLIP-G chunk counts are evened out with the empty
  // prompt's chunks.
  Status eval(const PlanNode& n, const TextEncodeSD3Op& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    const SD3Tokenizer& tok = engine_.text_encoders().tokenizer();
    SD3Tokens t;
    if (!(op.clip_g.empty() && op.no_padding)) t.clip_g = tok.tokenize(op.clip_g).clip_g;
    if (!(op.clip_l.empty() && op.no_padding)) t.clip_l = tok.tokenize(op.clip_l).clip_l;
    if (!(op.t5xxl.empty() && op.no_padding)) t.t5xxl = tok.tokenize(op.t5xxl).t5xxl;
    if (t.clip_l.ids.size() != t.clip_g.ids.size()) {
      const SD3Tokens empty = tok.tokenize("");
      auto append = [](TokenChunks& to, const TokenChunks& from) {
        to.ids.insert(to.ids.end(), from.ids.begin(), from.ids.end());
        to.weights.insert(to.weights.end(), from.weights.begin(), from.weights.end());
      };
      while (t.clip_l.ids.size() < t.clip_g.ids.size()) append(t.clip_l, empty.clip_l);
      while (t.clip_l.ids.size() > t.clip_g.ids.size()) append(t.clip_g, empty.clip_g);
    }
    auto c = engine_.encode_tokens(ws_, t, /*use_t5=*/true);
    if (!c.ok()) return node_fail(n, "clip", c.status());
    out = {CondValue{CondEntry{std::make_shared<const Conditioning>(std::move(*c))}}};
    return ok_status();
  }
  Status eval(const PlanNode& n, const ZeroOutOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    CondValue v = in<CondValue>(op.conditioning);
    for (auto& e : v) {
      auto z = conditioning_zero_out(*e.cond);
      if (!z.ok()) return node_fail(n, "conditioning", z.status());
      e.cond = std::make_shared<const Conditioning>(std::move(*z));
    }
    out = {std::move(v)};
    return ok_status();
  }
  Status eval(const PlanNode&, const TimestepRangeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    CondValue v = in<CondValue>(op.conditioning);
    for (auto& e : v) e.start = op.start, e.end = op.end;
    out = {std::move(v)};
    return ok_status();
  }
  Status eval(const PlanNode&, const CombineOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    CondValue v = in<CondValue>(op.conditioning_1);
    const CondValue& b = in<CondValue>(op.conditioning_2);
    v.insert(v.end(), b.begin(), b.end());
    out = {std::move(v)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const EmptyLatentOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto t = engine_.empty_latent(op.width, op.height, op.batch);
    if (!t.ok()) return node_fail(n, "width", t.status());
    out = {std::move(*t)};
    return ok_status();
  }
  // A conditioning value as the Engine's entry list (pointers into the value, which outlives
  // the sample call).
  static std::vector<ConditioningEntry> entries(const CondValue& v) {
    std::vector<ConditioningEntry> out;
    for (const auto& e : v) out.push_back(ConditioningEntry{e.cond.get(), e.start, e.end});
    return out;
  }
  Status eval(const PlanNode& n, const KSamplerOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    const ModelValue& m = in<ModelValue>(op.model);
    const std::vector<ConditioningEntry> pos = entries(in<CondValue>(op.positive));
    const std::vector<ConditioningEntry> neg = entries(in<CondValue>(op.negative));
    if (pos.empty()) return node_fail(n, "positive", invalid_argument("conditioning is empty"));
    SampleParams p = model_sample_params(m, op.sampler, op.cfg, op.seed);
    p.scheduler = op.scheduler;
    p.steps = op.steps;
    p.denoise = op.denoise;
    auto x = engine_.sample(ws_, pos, neg, in<Tensor>(op.latent_image), p);
    if (!x.ok()) return node_fail(n, "", x.status());
    out = {std::move(*x)};
    return ok_status();
  }
  // KSamplerAdvanced (nodes.py common_ksampler, comfy/samplers.py KSampler.sample): the
  // KSampler schedule for `steps` (denoise 1, the penultimate-sigma rule of dpm_2 / uni_pc),
  // cut after end_at_step (its last sigma set to 0 unless leftover noise is returned), then
  // from start_at_step; nothing left to run returns the input latent.
  Status eval(const PlanNode& n, const KSamplerAdvancedOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    const ModelValue& m = in<ModelValue>(op.model);
    const std::vector<ConditioningEntry> pos = entries(in<CondValue>(op.positive));
    const std::vector<ConditioningEntry> neg = entries(in<CondValue>(op.negative));
    if (pos.empty()) return node_fail(n, "positive", invalid_argument("conditioning is empty"));
    const Tensor& latent = in<Tensor>(op.latent_image);
    FlowModelSampling ms(m.shift);
    auto full =
        ksampler_sigmas(ms, op.scheduler, op.steps, 1.0, discards_penultimate_sigma(op.sampler));
    if (!full.ok()) return node_fail(n, "scheduler", full.status());
    std::vector<float> sigmas = std::move(*full);
    if (op.end_at_step < int64_t(sigmas.size()) - 1) {
      sigmas.resize(size_t(op.end_at_step) + 1);
      if (!op.return_with_leftover_noise) sigmas.back() = 0.0f;
    }
    if (op.start_at_step >= int64_t(sigmas.size()) - 1) {
      out = {latent};
      return ok_status();
    }
    sigmas.erase(sigmas.begin(), sigmas.begin() + op.start_at_step);
    SampleParams p = model_sample_params(m, op.sampler, op.cfg, op.noise_seed);
    p.scheduler = op.scheduler;
    p.steps = op.steps;
    p.sigmas = std::move(sigmas);
    if (!op.add_noise) {
      auto z = Tensor::zeros(latent.shape(), DType::kF32);
      if (!z.ok()) return node_fail(n, "", z.status());
      p.noise = std::move(*z);
    }
    auto x = engine_.sample(ws_, pos, neg, latent, p);
    if (!x.ok()) return node_fail(n, "", x.status());
    out = {std::move(*x)};
    return ok_status();
  }
  Status eval(const PlanNode&, const NoiseOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    out = {NoiseValue{op.disabled ? 0 : op.seed, op.disabled}};
    return ok_status();
  }
  Status eval(const PlanNode&, const GuiderOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    GuiderValue g;
    g.model = in<ModelValue>(op.model);
    g.positive = in<CondValue>(op.positive);
    if (op.negative) g.negative = in<CondValue>(*op.negative);
    g.cfg = op.cfg;
    out = {std::move(g)};
    return ok_status();
  }
  Status eval(const PlanNode&, const SamplerSelectOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    out = {SamplerValue{op.sampler}};
    return ok_status();
  }
  // BasicScheduler (comfy_extras/nodes_custom_sampler.py): denoise < 1 computes
  // int(steps / denoise) steps and keeps the last steps + 1 sigmas; denoise <= 0 gives none.
  // Unlike KSampler there is no penultimate-sigma rule for dpm_2 / uni_pc.
  Status eval(const PlanNode& n, const BasicSchedulerOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    const ModelValue& m = in<ModelValue>(op.model);
    SigmasValue v;
    if (op.denoise < 1.0 && op.denoise <= 0.0) {
      out = {std::move(v)};
      return ok_status();
    }
    const int total = op.denoise < 1.0 ? int(double(op.steps) / op.denoise) : op.steps;
    if (total > 100000)
      return node_fail(n, "denoise", invalid_argument("steps / denoise is too large"));
    auto s = calculate_sigmas(FlowModelSampling(m.shift), op.scheduler, total);
    if (!s.ok()) return node_fail(n, "scheduler", s.status());
    const size_t keep = size_t(op.steps) + 1;
    if (s->size() > keep) s->erase(s->begin(), s->end() - ptrdiff_t(keep));
    v.sigmas = std::move(*s);
    out = {std::move(v)};
    return ok_status();
  }
  // SamplerCustomAdvanced: the guider's sample with the given noise, sampler and sigmas.
  // denoised_output is ComfyUI's x0 of the step callback: the denoised prediction of the
  // last step (its first model evaluation); with no sigmas both outputs are the input.
  Status eval(const PlanNode& n, const SamplerCustomAdvancedOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    const NoiseValue& nz = in<NoiseValue>(op.noise);
    const GuiderValue& g = in<GuiderValue>(op.guider);
    const std::vector<float>& sigmas = in<SigmasValue>(op.sigmas).sigmas;
    const Tensor& latent = in<Tensor>(op.latent_image);
    if (sigmas.empty()) {
      out = {latent, latent};
      return ok_status();
    }
    const std::vector<ConditioningEntry> pos = entries(g.positive);
    const std::vector<ConditioningEntry> neg = entries(g.negative);
    if (pos.empty()) return node_fail(n, "guider", invalid_argument("conditioning is empty"));
    SampleParams p = model_sample_params(g.model, in<SamplerValue>(op.sampler).sampler, g.cfg, nz.seed);
    p.sigmas = sigmas;
    p.steps = std::max<int>(1, int(sigmas.size()) - 1);
    auto noise = Tensor::zeros(latent.shape(), DType::kF32);
    if (!noise.ok()) return node_fail(n, "noise", noise.status());
    if (!nz.disabled) {
      if (latent.dtype() != DType::kF32 || !latent.is_contiguous())
        return node_fail(n, "latent_image", invalid_argument("latent must be contiguous f32"));
      if (Status st = prepare_noise(nz.seed, *noise); !st.ok()) return node_fail(n, "noise", st);
    }
    p.noise = std::move(*noise);
    // The first model evaluation after each step boundary is that step's callback x0.
    Tensor x0;
    bool fresh = true;
    Status copy_status;
    p.observe = [&](const DenoiseStep& s) {
      if (!fresh || !s.denoised) return;
      fresh = false;
      auto c = Tensor::zeros(s.denoised->shape(), DType::kF32);
      if (!c.ok()) {
        copy_status = c.status();
        return;
      }
      std::memcpy(c->data(), s.denoised->data(), size_t(c->numel()) * sizeof(float));
      x0 = std::move(*c);
    };
    auto outer = ws_.progress;
    ws_.progress = [&](int step, int total) {
      fresh = true;
      if (outer) outer(step, total);
    };
    auto x = engine_.sample(ws_, pos, neg, latent, p);
    ws_.progress = outer;
    if (!x.ok()) return node_fail(n, "", x.status());
    if (!copy_status.ok()) return node_fail(n, "", copy_status);
    Tensor denoised = x0.defined() ? x0 : *x;
    out = {std::move(*x), std::move(denoised)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const VAEDecodeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto img = engine_.vae_decode(ws_, in<Tensor>(op.samples));
    if (!img.ok()) return node_fail(n, "samples", img.status());
    out = {std::move(*img)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const VAEEncodeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto lat = engine_.vae_encode(ws_, in<Tensor>(op.pixels));
    if (!lat.ok()) return node_fail(n, "pixels", lat.status());
    out = {std::move(*lat)};
    return ok_status();
  }
  // VAEDecodeTiled (nodes.py): overlap cut to tile_size / 4 when larger, both divided by the
  // VAE's 8x compression; the temporal inputs do not apply to an image VAE.
  Status eval(const PlanNode& n, const VAEDecodeTiledOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    int overlap = op.overlap;
    if (op.tile_size < overlap * 4) overlap = op.tile_size / 4;
    const int tile = op.tile_size / 8;
    auto img = engine_.vae_decode_tiled(ws_, in<Tensor>(op.samples), tile, tile, overlap / 8);
    if (!img.ok()) return node_fail(n, "tile_size", img.status());
    out = {std::move(*img)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const ImageScaleOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto img = image_scale(in<Tensor>(op.image), op.width, op.height, op.method, op.crop_center);
    if (!img.ok()) return node_fail(n, "image", img.status());
    out = {std::move(*img)};
    return ok_status();
  }
  Status eval(const PlanNode&, const LoadImageOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    // Decoded while parsing. MASK (output 1) is not produced: no supported node takes one.
    out = {*op.pixels, std::monostate{}};
    return ok_status();
  }
  Status eval(const PlanNode& n, const SaveImageOp& op, std::vector<Value>&,
              std::vector<SavedImage>& saved) {
    saved.push_back(SavedImage{n.id, op.filename_prefix, in<Tensor>(op.images), op.preview});
    return ok_status();
  }

  const Engine& engine_;
  Workspace& ws_;
  std::map<std::string, std::vector<Value>> values_;
};

}  // namespace

Result<std::vector<SavedImage>> execute_plan(
    const Plan& plan, const Engine& engine, Workspace& ws,
    const std::function<void(const PlanNode&)>& on_node_start) {
  Executor ex(engine, ws);
  std::vector<SavedImage> saved;
  for (const PlanNode& n : plan.nodes) {
    if (ws.cancel.load()) return cancelled("job cancelled");
    if (on_node_start) on_node_start(n);
    SD35_RETURN_IF_ERROR(ex.run(n, saved));
  }
  return saved;
}

}  // namespace sd35::workflow
