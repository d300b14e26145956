// Declarative key maps: how another layout's tensor names become canonical (SAI) names.
//
// A rule says "canonical pattern <- one source pattern" (rename) or "<- three source
// patterns" (q, k, v concatenated along dim 0), plus a transform. Patterns are literal text
// with placeholders: {i}, {j} match a decimal index; {r} matches an index that is reversed
// (n-1-i, n = number of decoder up blocks: diffusers counts VAE up blocks from the bottom);
// {x} matches the rest of the name and must come last. Names that match no rule keep their
// name (so they surface as unexpected tensors in validation rather than vanishing).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "weights/component.h"

namespace sd35 {

enum class Transform : uint8_t {
  kNone,
  kSwapHalves,        // [a; b] -> [b; a] along dim 0 (diffusers AdaLayerNormContinuous)
  kSwapHalvesIfLast,  // kSwapHalves only for the last block ({i} == num_blocks - 1)
  kLinearToConv1x1,   // [out, in] -> [out, in, 1, 1] (diffusers VAE attention); 1-D unchanged
};
std::string_view transform_name(Transform t);

struct KeyRule {
  const char* canonical;
  const char* sources[3];  // sources[1..2] null for a rename
  Transform transform = Transform::kNone;
};

// Counts a layout needs to resolve {r} and kSwapHalvesIfLast, taken from the source names.
struct MapContext {
  int num_up_blocks = 0;  // distinct decoder.up_blocks.N
  int num_blocks = 0;     // distinct transformer_blocks.N
};
MapContext scan_map_context(const std::vector<std::string>& source_names);

struct MappedKey {
  std::string canonical;
  int part = 0;    // index among the rule's sources
  int nparts = 1;  // 1 or 3
  Transform transform = Transform::kNone;  // resolved (never kSwapHalvesIfLast)
};

// The rules for a component in a layout; empty means identity (the SAI layout).
const std::vector<KeyRule>& key_rules(Component c, Layout layout);

// Maps one source name (prefix stripped). Identity when no rule matches.
MappedKey map_key(const std::vector<KeyRule>& rules, std::string_view source,
                  const MapContext& ctx);

// The inverse direction, for tools and tests: the source names (1 or 3 parts) a canonical
// name is stored under in `layout`, or nullopt when the canonical name has no rule (stored
// under its own name).
struct SourceKeys {
  std::vector<std::string> names;
  Transform transform = Transform::kNone;  // resolved
};
std::optional<SourceKeys> unmap_key(const std::vector<KeyRule>& rules, std::string_view canonical,
                                    const MapContext& ctx);

}  // namespace sd35
