// Conditioning nodes: CLIPTextEncode, CLIPTextEncodeSD3, ConditioningZeroOut,
// ConditioningSetTimestepRange, ConditioningCombine (SPEC-model.md §4.6, §5.9).
#include "service/workflow/node_inputs.h"

namespace sd35::workflow {

Result<Op> parse_conditioning_node(NodeInputs& in, bool& known) {
  known = true;
  const std::string& c = in.class_type();
  if (c == "CLIPTextEncode") {
    TextEncodeOp op;
    SD35_ASSIGN_OR_RETURN(op.text, in.str("text"));
    SD35_ASSIGN_OR_RETURN(op.clip, in.link("clip", ValueType::kClip));
    return Op(op);
  }
  if (c == "CLIPTextEncodeSD3") {
    TextEncodeSD3Op op;
    SD35_ASSIGN_OR_RETURN(op.clip, in.link("clip", ValueType::kClip));
    SD35_ASSIGN_OR_RETURN(op.clip_l, in.str("clip_l"));
    SD35_ASSIGN_OR_RETURN(op.clip_g, in.str("clip_g"));
    SD35_ASSIGN_OR_RETURN(op.t5xxl, in.str("t5xxl"));
    SD35_ASSIGN_OR_RETURN(std::string pad, in.choice("empty_padding", {"none", "empty_prompt"}));
    op.no_padding = pad == "none";
    return Op(op);
  }
  if (c == "ConditioningZeroOut") {
    ZeroOutOp op;
    SD35_ASSIGN_OR_RETURN(op.conditioning, in.link("conditioning", ValueType::kConditioning));
    return Op(op);
  }
  if (c == "ConditioningSetTimestepRange") {
    TimestepRangeOp op;
    SD35_ASSIGN_OR_RETURN(op.conditioning, in.link("conditioning", ValueType::kConditioning));
    SD35_ASSIGN_OR_RETURN(op.start, in.number("start", 0.0, 1.0));
    SD35_ASSIGN_OR_RETURN(op.end, in.number("end", 0.0, 1.0));
    return Op(op);
  }
  if (c == "ConditioningCombine") {
    CombineOp op;
    SD35_ASSIGN_OR_RETURN(op.conditioning_1, in.link("conditioning_1", ValueType::kConditioning));
    SD35_ASSIGN_OR_RETURN(op.conditioning_2, in.link("conditioning_2", ValueType::kConditioning));
    return Op(op);
  }
  known = false;
  return Op(CheckpointLoaderOp{});
}

}  // namespace sd35::workflow
