// Loader and model-patch nodes: CheckpointLoaderSimple, TripleCLIPLoader, DualCLIPLoader,
// CLIPLoader, VAELoader, ModelSamplingSD3, SkipLayerGuidanceSD3.
#include "service/workflow/node_inputs.h"

namespace sd35::workflow {

namespace {

const std::vector<std::string> kClipDirs = {"text_encoders", "clip"};

// "7, 8, 9" -> {7, 8, 9} as the ComfyUI node reads it; empty -> disabled.
Result<std::vector<int>> parse_layers(NodeInputs& in, const std::string& s) {
  std::vector<int> out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      size_t a = cur.find_first_not_of(" \t"), b = cur.find_last_not_of(" \t");
      std::string t = a == std::string::npos ? "" : cur.substr(a, b - a + 1);
      cur.clear();
      if (t.empty()) continue;
      if (t.size() > 6 || t.find_first_not_of("0123456789") != std::string::npos)
        return in.fail("layers", "expected comma-separated layer numbers, got '" + s + "'");
      out.push_back(std::stoi(t));
    } else {
      cur += c;
    }
  }
  return out;
}

}  // namespace

Result<Op> parse_loader_node(NodeInputs& in, bool& known) {
  known = true;
  const std::string& c = in.class_type();
  if (c == "CheckpointLoaderSimple") {
    CheckpointLoaderOp op;
    SD35_ASSIGN_OR_RETURN(op.path, in.model_file("ckpt_name", {"checkpoints"}));
    return Op(op);
  }
  if (c == "TripleCLIPLoader" || c == "DualCLIPLoader" || c == "CLIPLoader") {
    ClipLoaderOp op;
    if (c == "CLIPLoader") {
      SD35_ASSIGN_OR_RETURN(std::string p, in.model_file("clip_name", kClipDirs));
      op.paths.push_back(p);
    } else {
      const int n = c == "TripleCLIPLoader" ? 3 : 2;
      for (int i = 1; i <= n; ++i) {
        SD35_ASSIGN_OR_RETURN(std::string p,
                              in.model_file("clip_name" + std::to_string(i), kClipDirs));
        op.paths.push_back(p);
      }
    }
    if (c != "TripleCLIPLoader") {
      SD35_ASSIGN_OR_RETURN(std::string type, in.str("type"));
      if (type != "sd3") return in.fail("type", "only type 'sd3' is supported, got '" + type + "'");
      in.ignore("device");
    }
    return Op(op);
  }
  if (c == "VAELoader") {
    // ComfyUI also offers names without a file: the approximate (TAESD-family) decoders and
    // "pixel_space"; none of them is an SD3.5 VAE we run, so they get a clear refusal rather
    // than "file not found".
    static const std::set<std::string> kSpecial = {"taesd",        "taesdxl",      "taesd3",
                                                   "taef1",        "pixel_space",  "taehv",
                                                   "lighttaew2_2", "lighttaew2_1", "lighttaehy1_5"};
    SD35_ASSIGN_OR_RETURN(std::string name, in.str("vae_name"));
    if (kSpecial.count(name))
      return in.fail("vae_name", "'" + name +
                                     "' (an approximate or pixel-space VAE) is not supported; "
                                     "name a VAE file in models/vae/");
    VAELoaderOp op;
    SD35_ASSIGN_OR_RETURN(op.path, in.model_file("vae_name", {"vae"}));
    return Op(op);
  }
  if (c == "ModelSamplingSD3") {
    ModelSamplingSD3Op op;
    SD35_ASSIGN_OR_RETURN(op.model, in.link("model", ValueType::kModel));
    SD35_ASSIGN_OR_RETURN(op.shift, in.number("shift", 0.0, 100.0));
    if (!(op.shift > 0)) return in.fail("shift", "must be > 0");
    return Op(op);
  }
  if (c == "SkipLayerGuidanceSD3") {
    SkipLayerGuidanceOp op;
    SD35_ASSIGN_OR_RETURN(op.model, in.link("model", ValueType::kModel));
    SD35_ASSIGN_OR_RETURN(std::string layers, in.str("layers"));
    SD35_ASSIGN_OR_RETURN(op.slg.layers, parse_layers(in, layers));
    SD35_ASSIGN_OR_RETURN(op.slg.scale, in.number("scale", 0.0, 10.0));
    SD35_ASSIGN_OR_RETURN(op.slg.start_percent, in.number("start_percent", 0.0, 1.0));
    SD35_ASSIGN_OR_RETURN(op.slg.end_percent, in.number("end_percent", 0.0, 1.0));
    return Op(op);
  }
  known = false;
  return Op(CheckpointLoaderOp{});
}

}  // namespace sd35::workflow
