// KSampler.
#include "service/workflow/node_inputs.h"

namespace sd35::workflow {

Result<Op> parse_sampling_node(NodeInputs& in, bool& known) {
  known = true;
  if (in.class_type() != "KSampler") {
    known = false;
    return Op(CheckpointLoaderOp{});
  }
  KSamplerOp op;
  SD35_ASSIGN_OR_RETURN(op.model, in.link("model", ValueType::kModel));
  SD35_ASSIGN_OR_RETURN(op.seed, in.u64("seed"));
  SD35_ASSIGN_OR_RETURN(int64_t steps, in.integer("steps", 1, 10000));
  op.steps = int(steps);
  SD35_ASSIGN_OR_RETURN(op.cfg, in.number("cfg", 0.0, 100.0));
  SD35_ASSIGN_OR_RETURN(std::string sampler, in.str("sampler_name"));
  auto s = sampler_from_name(sampler);
  if (!s.ok()) return in.fail("sampler_name", s.status().message());
  op.sampler = *s;
  SD35_ASSIGN_OR_RETURN(std::string scheduler, in.str("scheduler"));
  auto sc = scheduler_from_name(scheduler);
  if (!sc.ok()) return in.fail("scheduler", sc.status().message());
  op.scheduler = *sc;
  SD35_ASSIGN_OR_RETURN(op.positive, in.link("positive", ValueType::kConditioning));
  SD35_ASSIGN_OR_RETURN(op.negative, in.link("negative", ValueType::kConditioning));
  SD35_ASSIGN_OR_RETURN(op.latent_image, in.link("latent_image", ValueType::kLatent));
  SD35_ASSIGN_OR_RETURN(op.denoise, in.number("denoise", 0.0, 1.0));
  return Op(op);
}

}  // namespace sd35::workflow
