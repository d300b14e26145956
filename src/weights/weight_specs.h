// Per-model weight lists: every tensor a model reads, listed once with the field the model
// binds it to, its canonical (SAI) name, the shape the derived config expects, and whether
// it is required. validate_weights() compares a component against its list and reports
// every missing, unexpected and mis-shaped tensor in ONE error, so a user fixing a broken
// file sees everything at once.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "sd35/status.h"
#include "weights/component.h"
#include "weights/model_configs.h"

namespace sd35 {

class WeightIndex;

struct WeightSpec {
  std::string field;      // what the model binds ("blocks.3.x.qkv.w"); empty: tolerated, unused
  std::string canonical;  // SAI name
  Shape shape;
  bool required = true;
  bool any_shape = false;  // shape not checked (markers, per-layer fp8 scales, position_ids)
  bool any_dtype = false;  // integer dtypes tolerated (position_ids)
};
using WeightSpecs = std::vector<WeightSpec>;

WeightSpecs mmdit_weight_specs(const MMDiTConfig& cfg);
WeightSpecs vae_weight_specs(const VAEConfig& cfg);
WeightSpecs clip_weight_specs(const ClipConfig& cfg, Component role);
WeightSpecs t5_weight_specs(const T5Config& cfg);

// Derives the config of `c` and returns its list.
Result<WeightSpecs> weight_specs_for(const WeightIndex& index, Component c,
                                     const ConfigOverrides& overrides = {});

// Ok, or one kInvalidArgument error naming every problem of the component.
Status validate_weights(const WeightIndex& index, Component c, const WeightSpecs& specs);

// Validates, then returns every present tensor with a field, by field. Zero-copy views
// except where the layout needs assembly (see WeightIndex::load).
using WeightMap = std::unordered_map<std::string, Tensor>;
Result<WeightMap> bind_weights(const WeightIndex& index, Component c, const WeightSpecs& specs);

}  // namespace sd35
