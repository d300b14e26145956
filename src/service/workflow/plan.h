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
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "sampling/guidance.h"
#include "sampling/sampling.h"
#include "sd35/status.h"
#include "service/media/image_input.h"
#include "service/workflow/image_scale.h"
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
  // Model folder: checkpoints/<ckpt_name>, text_encoders/<name> or clip/<name>,
  // vae/<vae_name>.
  std::string models_dir;
  // Relative LoadImage paths are looked up here (then as given, unless
  // allow_absolute_image_paths is false).
  std::string input_dir;
  int max_size = 16384;  // width/height limit (pixels)
  int max_batch = 64;
  // LoadImage's inline images (base64, data: URLs, http(s) URLs; comfyui-api contract §6):
  // size limits, whether URLs are fetched, the network policy. Also limits file inputs.
  media::InputImageOptions input_images;
  // true: LoadImage also reads absolute paths and names relative to the working directory
  // (the CLI). false (the server): only names relative to input_dir, without "..".
  bool allow_absolute_image_paths = true;
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
struct VAELoaderOp {  // VAELoader -> VAE (a file in models/vae/)
  std::string path;
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
struct TextEncodeSD3Op {  // CLIPTextEncodeSD3 -> CONDITIONING
  Link clip;
  std::string clip_l, clip_g, t5xxl;
  bool no_padding = true;  // empty_padding "none": an empty text drops that encoder's tokens
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
// KSamplerAdvanced -> LATENT: KSampler's sigmas sliced [start_at_step, end_at_step]; the
// last one forced to 0 unless return_with_leftover_noise; add_noise "disable" = zero noise.
struct KSamplerAdvancedOp {
  Link model, positive, negative, latent_image;
  bool add_noise = true;
  uint64_t noise_seed = 0;
  int steps = 20;
  double cfg = 8.0;
  Sampler sampler = Sampler::kEuler;
  Scheduler scheduler = Scheduler::kNormal;
  int start_at_step = 0, end_at_step = 10000;
  bool return_with_leftover_noise = false;
};
struct NoiseOp {  // RandomNoise / DisableNoise -> NOISE
  uint64_t seed = 0;
  bool disabled = false;
};
// CFGGuider (positive, negative, cfg) / BasicGuider (positive only, cfg 1) -> GUIDER.
struct GuiderOp {
  Link model, positive;
  std::optional<Link> negative;
  double cfg = 1.0;
};
struct SamplerSelectOp {  // KSamplerSelect -> SAMPLER
  Sampler sampler = Sampler::kEuler;
};
struct BasicSchedulerOp {  // -> SIGMAS
  Link model;
  Scheduler scheduler = Scheduler::kSimple;
  int steps = 20;
  double denoise = 1.0;
};
struct SamplerCustomAdvancedOp {  // -> LATENT output, LATENT denoised_output
  Link noise, guider, sampler, sigmas, latent_image;
};
struct VAEDecodeOp {  // -> IMAGE
  Link samples, vae;
};
// VAEDecodeTiled -> IMAGE. Sizes in image pixels as the node takes them; temporal_* are
// accepted and ignored (the SD3 VAE has no temporal axis, ComfyUI drops them too).
struct VAEDecodeTiledOp {
  Link samples, vae;
  int tile_size = 512, overlap = 64, temporal_size = 64, temporal_overlap = 8;
};
struct ImageScaleOp {  // -> IMAGE
  Link image;
  UpscaleMethod method = UpscaleMethod::kNearestExact;
  int width = 512, height = 512;
  bool crop_center = false;
};
struct VAEEncodeOp {  // -> LATENT
  Link pixels, vae;
};
// LoadImage -> IMAGE, MASK. The image is decoded while parsing (a file, base64, a data: URL
// or an http(s) URL), so execution does no I/O. MASK is not produced (no supported node takes
// a MASK; a link to it fails the type check).
struct LoadImageOp {
  std::string source;                    // the file path read, or "base64", "data URL", the URL
  std::shared_ptr<const Tensor> pixels;  // uint8 [1, H, W, 3]
};
// SaveImage, and PreviewImage (preview = true, filename_prefix "ComfyUI_temp_" + 5 random
// letters as ComfyUI names its temp files).
struct SaveImageOp {
  Link images;
  std::string filename_prefix = "ComfyUI";
  bool preview = false;
};

using Op =
    std::variant<CheckpointLoaderOp, ClipLoaderOp, VAELoaderOp, ModelSamplingSD3Op,
                 SkipLayerGuidanceOp, TextEncodeOp, TextEncodeSD3Op, ZeroOutOp, TimestepRangeOp,
                 CombineOp, EmptyLatentOp, KSamplerOp, KSamplerAdvancedOp, NoiseOp, GuiderOp,
                 SamplerSelectOp, BasicSchedulerOp, SamplerCustomAdvancedOp, VAEDecodeOp,
                 VAEDecodeTiledOp, VAEEncodeOp, ImageScaleOp, LoadImageOp, SaveImageOp>;

struct PlanNode {
  std::string id;
  std::string class_type;
  Op op;
};

struct Plan {
  // The nodes the outputs depend on, in execution (topological) order.
  std::vector<PlanNode> nodes;
  // The model files the graph loads (one checkpoint at most, text encoders, a VAELoader's
  // file): what the caller gives Engine::load (engine_models()). `vae` empty: the VAE nodes
  // use the checkpoint's VAE; set: every VAE node uses this file's (a graph mixing both is
  // refused, the engine holds one VAE), given to the engine with the VAE role forced so it
  // wins over the checkpoint's copy.
  std::string checkpoint;
  std::vector<std::string> text_encoders;
  std::string vae;
  std::vector<WeightInput> engine_models() const;
};

// Parses and validates a graph. On error, *error (when given) holds the structured error.
Result<Plan> parse_workflow(std::string_view json_text, const WorkflowOptions& options,
                            WorkflowError* error = nullptr);

// The images of one SaveImage or PreviewImage node.
struct SavedImage {
  std::string node_id;
  std::string filename_prefix;
  Tensor images;  // uint8 [B, H, W, 3]
  // PreviewImage: ComfyUI writes these to its temp folder (type "temp" in /history), and
  // comfyui-api, which reads outputs from the output folder only, never returns them. A
  // server answering in comfyui-api's shape skips them; ComfyUI's native API lists them.
  bool preview = false;
};

// Runs the plan on `engine`, which must have been loaded from plan.engine_models() (the
// caller loads it once). Returns the SaveImage and PreviewImage nodes' images in plan order.
// `on_node_start` (optional) is called before each node runs (per-node timing, progress).
Result<std::vector<SavedImage>> execute_plan(
    const Plan& plan, const Engine& engine, Workspace& ws,
    const std::function<void(const PlanNode&)>& on_node_start = nullptr);

}  // namespace workflow
}  // namespace sd35
