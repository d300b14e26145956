// Latent nodes: EmptySD3LatentImage, VAEEncode, VAEDecode, VAEDecodeTiled.
#include "service/workflow/node_inputs.h"

namespace sd35::workflow {

Result<Op> parse_latent_node(NodeInputs& in, bool& known) {
  known = true;
  const std::string& c = in.class_type();
  if (c == "EmptySD3LatentImage") {
    EmptyLatentOp op;
    const int64_t max = in.options().max_size;
    for (const char* name : {"width", "height"}) {
      SD35_ASSIGN_OR_RETURN(int64_t v, in.integer(name, 16, max));
      if (v % 16) return in.fail(name, "must be a multiple of 16, got " + std::to_string(v));
      (std::string(name) == "width" ? op.width : op.height) = int(v);
    }
    SD35_ASSIGN_OR_RETURN(int64_t b, in.integer("batch_size", 1, in.options().max_batch));
    op.batch = int(b);
    return Op(op);
  }
  if (c == "VAEEncode") {
    VAEEncodeOp op;
    SD35_ASSIGN_OR_RETURN(op.pixels, in.link("pixels", ValueType::kImage));
    SD35_ASSIGN_OR_RETURN(op.vae, in.link("vae", ValueType::kVae));
    return Op(op);
  }
  if (c == "VAEDecode") {
    VAEDecodeOp op;
    SD35_ASSIGN_OR_RETURN(op.samples, in.link("samples", ValueType::kLatent));
    SD35_ASSIGN_OR_RETURN(op.vae, in.link("vae", ValueType::kVae));
    return Op(op);
  }
  if (c == "VAEDecodeTiled") {
    // ComfyUI's ranges (nodes.py VAEDecodeTiled). overlap and the temporal inputs came in
    // later ComfyUI versions: optional here, with ComfyUI's defaults.
    VAEDecodeTiledOp op;
    SD35_ASSIGN_OR_RETURN(op.samples, in.link("samples", ValueType::kLatent));
    SD35_ASSIGN_OR_RETURN(op.vae, in.link("vae", ValueType::kVae));
    SD35_ASSIGN_OR_RETURN(int64_t tile, in.integer("tile_size", 64, 4096));
    op.tile_size = int(tile);
    if (in.has("overlap")) {
      SD35_ASSIGN_OR_RETURN(int64_t v, in.integer("overlap", 0, 4096));
      op.overlap = int(v);
    }
    if (in.has("temporal_size")) {
      SD35_ASSIGN_OR_RETURN(int64_t v, in.integer("temporal_size", 8, 4096));
      op.temporal_size = int(v);
    }
    if (in.has("temporal_overlap")) {
      SD35_ASSIGN_OR_RETURN(int64_t v, in.integer("temporal_overlap", 4, 4096));
      op.temporal_overlap = int(v);
    }
    return Op(op);
  }
  known = false;
  return Op(CheckpointLoaderOp{});
}

}  // namespace sd35::workflow
