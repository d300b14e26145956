// WeightIndex: the opened weight files of one model set (checkpoint + text encoders, a
// diffusers folder, a directory of single files) and, per component, the map from canonical
// (SAI) tensor names to where the data lives. Nothing is read or converted here: tensors
// stay in their stored dtype, as views into the read-only mappings; only tensors that a
// layout stores split (diffusers q/k/v) or permuted (shift/scale halves) are assembled
// into an owned buffer, and only when load() asks for them.
//
// Component detection per file:
//  * prefixed (single-file checkpoints): model.diffusion_model. -> MMDiT,
//    first_stage_model. -> VAE, text_encoders.{clip_l,clip_g,t5xxl}.transformer. -> that
//    encoder. Keys outside these prefixes are ignored with a note (as ComfyUI does).
//  * bare files, by marker keys: joint_blocks.* (MMDiT), transformer_blocks.* + pos_embed.proj
//    (diffusers MMDiT), decoder.up_blocks./encoder.down_blocks. (diffusers VAE),
//    decoder.conv_in / encoder.conv_in (LDM VAE), text_model.* (CLIP), encoder.block.* (T5).
//  * CLIP-L vs CLIP-G (the shapes differ only in size, the activation is not stored), in
//    order: the caller's role (CLI flag; like ComfyUI's loader slots), the checkpoint prefix,
//    the diffusers folder (text_encoder = L, text_encoder_2 = G), the file name (clip_l /
//    clip_g / bigg), the real dimensions (32 layers or width 1280 -> G; 12 layers of width
//    768 -> L), then relative size when two are unresolved (the wider one, else the deeper
//    one, is G) or when the other role is already taken. Otherwise it is an error that asks
//    for an explicit role.
//  * a component present in several inputs: an input given with a role (WeightInput::role,
//    e.g. --vae or a graph's VAELoader) wins over the same component detected in the others,
//    whatever the order; a prefixed file given with a role contributes that component only.
//    Without roles, a later file with overlapping names replaces the earlier copy.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "sd35/status.h"
#include "weights/component.h"
#include "weights/key_maps.h"

namespace sd35 {

struct WeightInput {
  std::string path;                // a .safetensors file or a folder
  std::optional<Component> role;   // forced component (e.g. --clip-l PATH)
};

struct TensorPart {
  const SafetensorsFile* file = nullptr;  // owned by the index
  const TensorInfo* info = nullptr;
};

// Where one canonical tensor comes from.
struct TensorSource {
  std::string name;                // canonical
  std::vector<TensorPart> parts;   // > 1: concatenated along dim 0 (q, k, v)
  Transform transform = Transform::kNone;
  DType dtype = DType::kF32;
  Shape shape;                     // after concatenation / transform
  bool zero_copy() const { return parts.size() == 1 && transform != Transform::kSwapHalves; }
};

struct ComponentSources {
  Component component = Component::kMMDiT;
  Layout layout = Layout::kSai;
  std::vector<std::string> files;  // paths that contribute
  std::string prefix;              // key prefix in the file ("" for bare files)
  std::string role_reason;         // how the component was decided (for CLIP roles)
  std::vector<TensorSource> tensors;  // canonical, in file order
  std::unordered_map<std::string, size_t> by_name;
  // Layout problems found while indexing (incomplete q/k/v, mismatched parts); validation
  // reports them together with missing and mis-shaped tensors.
  std::vector<std::string> problems;
  // Values shapes cannot give (attention heads of CLIP, activation), from the file's
  // __metadata__ ("sd35.num_attention_heads", "sd35.<role>.num_attention_heads") or a
  // config.json next to it; see model_configs.h for how they are used.
  std::map<std::string, std::string> hints;
  std::string hints_source;

  const TensorSource* find(std::string_view canonical) const;
};

struct FileReport {
  std::string path;
  uint64_t size = 0;
  size_t tensors = 0;
  std::vector<std::string> components;  // "mmdit (model.diffusion_model.)", empty = ignored
  size_t ignored_tensors = 0;           // keys outside every detected component
};

class WeightIndex {
 public:
  static Result<std::unique_ptr<WeightIndex>> open(const std::vector<WeightInput>& inputs);

  bool has(Component c) const { return components_[int(c)].has_value(); }
  // nullptr when absent.
  const ComponentSources* component(Component c) const;
  const TensorSource* find(Component c, std::string_view canonical) const;

  // The canonical tensor: a read-only view into the mapping when zero_copy(), else an owned
  // buffer with the parts concatenated / halves swapped (same dtype as stored).
  Result<Tensor> load(Component c, std::string_view canonical) const;
  static Result<Tensor> load(const TensorSource& src);

  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return files_; }
  const std::vector<FileReport>& file_reports() const { return reports_; }
  // Non-fatal observations (ignored files, replaced components).
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  friend class WeightIndexBuilder;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::optional<ComponentSources> components_[kNumComponents];
  std::vector<FileReport> reports_;
  std::vector<std::string> notes_;
};

}  // namespace sd35
