// ComfyUI API-format graphs ("prompt" JSON: node id -> {class_type, inputs}, links as
// [node_id, output_index]) validated into a typed Plan, and the Plan executed on an Engine
// (DESIGN.md: graph -> validated typed Plan; one file per node family).
//
// Validation never crashes: every problem is reported as an invalid_argument Status whose
// message names the node id, its class_type and the input, plus the same fields structured
// in a WorkflowError (ComfyUI's node_errors shape, for the HTTP server).
//
// The Plan knows nothing of JSON; JSON parsing stays inside src/service.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "sampling/guidance.h"
#include "sampling/sampling.h"
#include "sd35/status.h"
#include "weights/weight_index.h"

namespace sd35 {

class Engine;
class Workspace;

namespace workflow {

// One validation error: node id and class_type ("" for graph-level errors), the input name
// ("" when the node as a whole is wrong) and a message.
struct WorkflowError {
  std::string node_id;
  std::string class_type;
  std::string input;
  std::string message;
  // "node 6 (CLIPTextEncode), input 'clip': message"
  std::string to_string() const;
};

struct WorkflowOptions {
  // Model folder: checkpoints/<ckpt_name>, text_encoders/<name> or clip/<name>.
  std::string models_dir;
  // Relative LoadImage paths are looked up here (then as given).
  std::string input_dir;
  int max_size = 16384;  // width/height limit (pixels)
  int max_batch = 64;
};

// A link to output `output` of node `node` (its id in the graph).
struct Link {
  std::string node;
  int output = 0;
};

// Node families (typed, validated inputs). Paths are resolved, existing files.
struct CheckpointLoaderOp {  // CheckpointLoaderSimple -> MODEL, CLIP, VAE
  std::string path;
};
struct ClipLoaderOp {  // TripleCLIPLoader / DualCLIPLoader / CLIPLoader -> CLIP
  std::vector<std::string> paths;
};
struct ModelSamplingSD3Op {  // -> MODEL
  Link model;
  double shift = 3.0;
};
struct SkipLayerGuidanceOp {  // SkipLayerGuidanceSD3 -> MODEL
  Link model;
  SkipLayerGuidance slg;
};
struct TextEncodeOp {  // CLIPTextEncode -> CONDITIONING
  Link clip;
  std::string text;
};
struct ZeroOutOp {  // ConditioningZeroOut
  Link conditioning;
};
struct TimestepRangeOp {  // ConditioningSetTimestepRange
  Link conditioning;
  double start = 0.0, end = 1.0;
};
struct CombineOp {  // ConditioningCombine
  Link conditioning_1, conditioning_2;
};
struct EmptyLatentOp {  // EmptySD3LatentImage -> LATENT
  int width = 1024, height = 1024, batch = 1;
};
struct KSamplerOp {  // -> LATENT
  Link model, positive, negative, latent_image;
  uint64_t seed = 0;
  int steps = 20;
  double cfg = 4.5;
  Sampler sampler = Sampler::kDpmpp2m;
  Scheduler scheduler = Scheduler::kSgmUniform;
  double denoise = 1.0;
};
struct VAEDecodeOp {  // -> IMAGE
  Link samples, vae;
};
struct VAEEncodeOp {  // -> LATENT
  Link pixels, vae;
};
struct LoadImageOp {  // -> IMAGE, MASK
  std::string path;
};
struct SaveImageOp {  // output node
  Link images;
  std::string filename_prefix = "ComfyUI";
};

using Op = std::variant<CheckpointLoaderOp, ClipLoaderOp, ModelSamplingSD3Op, SkipLayerGuidanceOp,
                        TextEncodeOp, ZeroOutOp, TimestepRangeOp, CombineOp, EmptyLatentOp,
                        KSamplerOp, VAEDecodeOp, VAEEncodeOp, LoadImageOp, SaveImageOp>;

struct PlanNode {
  std::string id;
  std::string class_type;
  Op op;
};

struct Plan {
  // The nodes the outputs depend on, in execution (topological) order.
  std::vector<PlanNode> nodes;
  // The model files the graph loads (one checkpoint at most, text encoders): what the
  // caller gives Engine::load (engine_models()).
  std::string checkpoint;
  std::vector<std::string> text_encoders;
  std::vector<WeightInput> engine_models() const;
};

// Parses and validates a graph. On error, *error (when given) holds the structured error.
Result<Plan> parse_workflow(std::string_view json_text, const WorkflowOptions& options,
                            WorkflowError* error = nullptr);

// The images of one SaveImage node.
struct SavedImage {
  std::string node_id;
  std::string filename_prefix;
  Tensor images;  // uint8 [B, H, W, 3]
};

// Runs the plan on `engine`, which must have been loaded from plan.engine_models() (the
// caller loads it once). Returns the SaveImage nodes' images in plan order.
Result<std::vector<SavedImage>> execute_plan(const Plan& plan, const Engine& engine, Workspace& ws);

}  // namespace workflow
}  // namespace sd35
