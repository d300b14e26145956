// Sampling nodes: KSampler, KSamplerAdvanced, and SamplerCustomAdvanced with its inputs
// RandomNoise, DisableNoise, CFGGuider, BasicGuider, KSamplerSelect, BasicScheduler
// (ComfyUI nodes.py, comfy_extras/nodes_custom_sampler.py).
#include "service/workflow/node_inputs.h"

namespace sd35::workflow {

namespace {

Result<Sampler> sampler_input(NodeInputs& in) {
  SD35_ASSIGN_OR_RETURN(std::string name, in.str("sampler_name"));
  auto s = sampler_from_name(name);
  if (!s.ok()) return in.fail("sampler_name", s.status().message());
  return *s;
}

Result<Scheduler> scheduler_input(NodeInputs& in) {
  SD35_ASSIGN_OR_RETURN(std::string name, in.str("scheduler"));
  auto s = scheduler_from_name(name);
  if (!s.ok()) return in.fail("scheduler", s.status().message());
  return *s;
}

// ComfyUI's "enable"/"disable" combos.
Result<bool> enabled(NodeInputs& in, const std::string& name) {
  SD35_ASSIGN_OR_RETURN(std::string v, in.choice(name, {"enable", "disable"}));
  return v == "enable";
}

// The inputs KSampler and KSamplerAdvanced share (same names, ranges and links).
template <class SamplerOp>
Status ksampler_inputs(NodeInputs& in, SamplerOp& op) {
  SD35_ASSIGN_OR_RETURN(op.model, in.link("model", ValueType::kModel));
  SD35_ASSIGN_OR_RETURN(int64_t steps, in.integer("steps", 1, 10000));
  op.steps = int(steps);
  SD35_ASSIGN_OR_RETURN(op.cfg, in.number("cfg", 0.0, 100.0));
  SD35_ASSIGN_OR_RETURN(op.sampler, sampler_input(in));
  SD35_ASSIGN_OR_RETURN(op.scheduler, scheduler_input(in));
  SD35_ASSIGN_OR_RETURN(op.positive, in.link("positive", ValueType::kConditioning));
  SD35_ASSIGN_OR_RETURN(op.negative, in.link("negative", ValueType::kConditioning));
  SD35_ASSIGN_OR_RETURN(op.latent_image, in.link("latent_image", ValueType::kLatent));
  return ok_status();
}

}  // namespace

Result<Op> parse_sampling_node(NodeInputs& in, bool& known) {
  known = true;
  const std::string& c = in.class_type();
  if (c == "KSampler") {
    KSamplerOp op;
    SD35_RETURN_IF_ERROR(ksampler_inputs(in, op));
    SD35_ASSIGN_OR_RETURN(op.seed, in.u64("seed"));
    SD35_ASSIGN_OR_RETURN(op.denoise, in.number("denoise", 0.0, 1.0));
    return Op(op);
  }
  if (c == "KSamplerAdvanced") {
    KSamplerAdvancedOp op;
    SD35_RETURN_IF_ERROR(ksampler_inputs(in, op));
    SD35_ASSIGN_OR_RETURN(op.add_noise, enabled(in, "add_noise"));
    SD35_ASSIGN_OR_RETURN(op.noise_seed, in.u64("noise_seed"));
    SD35_ASSIGN_OR_RETURN(int64_t start, in.integer("start_at_step", 0, 10000));
    SD35_ASSIGN_OR_RETURN(int64_t end, in.integer("end_at_step", 0, 10000));
    op.start_at_step = int(start);
    op.end_at_step = int(end);
    SD35_ASSIGN_OR_RETURN(op.return_with_leftover_noise, enabled(in, "return_with_leftover_noise"));
    return Op(op);
  }
  if (c == "RandomNoise") {
    NoiseOp op;
    SD35_ASSIGN_OR_RETURN(op.seed, in.u64("noise_seed"));
    return Op(op);
  }
  if (c == "DisableNoise") {
    NoiseOp op;
    op.disabled = true;  // ComfyUI's Noise_EmptyNoise: zeros, seed 0
    return Op(op);
  }
  if (c == "CFGGuider") {
    GuiderOp op;
    SD35_ASSIGN_OR_RETURN(op.model, in.link("model", ValueType::kModel));
    SD35_ASSIGN_OR_RETURN(op.positive, in.link("positive", ValueType::kConditioning));
    SD35_ASSIGN_OR_RETURN(op.negative, in.link("negative", ValueType::kConditioning));
    SD35_ASSIGN_OR_RETURN(op.cfg, in.number("cfg", 0.0, 100.0));
    return Op(op);
  }
  if (c == "BasicGuider") {
    GuiderOp op;  // positive only, cfg 1: the uncond pass is skipped
    SD35_ASSIGN_OR_RETURN(op.model, in.link("model", ValueType::kModel));
    SD35_ASSIGN_OR_RETURN(op.positive, in.link("conditioning", ValueType::kConditioning));
    return Op(op);
  }
  if (c == "KSamplerSelect") {
    SamplerSelectOp op;
    SD35_ASSIGN_OR_RETURN(op.sampler, sampler_input(in));
    return Op(op);
  }
  if (c == "BasicScheduler") {
    BasicSchedulerOp op;
    SD35_ASSIGN_OR_RETURN(op.model, in.link("model", ValueType::kModel));
    SD35_ASSIGN_OR_RETURN(op.scheduler, scheduler_input(in));
    SD35_ASSIGN_OR_RETURN(int64_t steps, in.integer("steps", 1, 10000));
    op.steps = int(steps);
    SD35_ASSIGN_OR_RETURN(op.denoise, in.number("denoise", 0.0, 1.0));
    return Op(op);
  }
  if (c == "SamplerCustomAdvanced") {
    SamplerCustomAdvancedOp op;
    SD35_ASSIGN_OR_RETURN(op.noise, in.link("noise", ValueType::kNoise));
    SD35_ASSIGN_OR_RETURN(op.guider, in.link("guider", ValueType::kGuider));
    SD35_ASSIGN_OR_RETURN(op.sampler, in.link("sampler", ValueType::kSampler));
    SD35_ASSIGN_OR_RETURN(op.sigmas, in.link("sigmas", ValueType::kSigmas));
    SD35_ASSIGN_OR_RETURN(op.latent_image, in.link("latent_image", ValueType::kLatent));
    return Op(op);
  }
  known = false;
  return Op(CheckpointLoaderOp{});
}

}  // namespace sd35::workflow
