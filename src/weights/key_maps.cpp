#include "weights/key_maps.h"

#include <set>

namespace sd35 {
namespace {

using T = Transform;

// diffusers SD3Transformer2DModel -> MMDiT (SPEC-model §2.3; ComfyUI comfy/utils.py
// MMDIT_MAP_BASIC / MMDIT_MAP_BLOCK). Only AdaLayerNormContinuous (norm_out and the last
// block's norm1_context) stores [scale; shift]; the 6/9-chunk norms keep the SAI order.
const std::vector<KeyRule> kDiffusersMMDiT = {
    {"pos_embed", {"pos_embed.pos_embed"}},
    {"x_embedder.proj.{x}", {"pos_embed.proj.{x}"}},
    {"t_embedder.mlp.0.{x}", {"time_text_embed.timestep_embedder.linear_1.{x}"}},
    {"t_embedder.mlp.2.{x}", {"time_text_embed.timestep_embedder.linear_2.{x}"}},
    {"y_embedder.mlp.0.{x}", {"time_text_embed.text_embedder.linear_1.{x}"}},
    {"y_embedder.mlp.2.{x}", {"time_text_embed.text_embedder.linear_2.{x}"}},
    {"joint_blocks.{i}.x_block.attn.qkv.{x}",
     {"transformer_blocks.{i}.attn.to_q.{x}", "transformer_blocks.{i}.attn.to_k.{x}",
      "transformer_blocks.{i}.attn.to_v.{x}"}},
    {"joint_blocks.{i}.context_block.attn.qkv.{x}",
     {"transformer_blocks.{i}.attn.add_q_proj.{x}", "transformer_blocks.{i}.attn.add_k_proj.{x}",
      "transformer_blocks.{i}.attn.add_v_proj.{x}"}},
    {"joint_blocks.{i}.x_block.attn2.qkv.{x}",
     {"transformer_blocks.{i}.attn2.to_q.{x}", "transformer_blocks.{i}.attn2.to_k.{x}",
      "transformer_blocks.{i}.attn2.to_v.{x}"}},
    {"joint_blocks.{i}.x_block.attn.proj.{x}", {"transformer_blocks.{i}.attn.to_out.0.{x}"}},
    {"joint_blocks.{i}.context_block.attn.proj.{x}", {"transformer_blocks.{i}.attn.to_add_out.{x}"}},
    {"joint_blocks.{i}.x_block.attn2.proj.{x}", {"transformer_blocks.{i}.attn2.to_out.0.{x}"}},
    {"joint_blocks.{i}.x_block.attn.ln_q.{x}", {"transformer_blocks.{i}.attn.norm_q.{x}"}},
    {"joint_blocks.{i}.x_block.attn.ln_k.{x}", {"transformer_blocks.{i}.attn.norm_k.{x}"}},
    {"joint_blocks.{i}.context_block.attn.ln_q.{x}",
     {"transformer_blocks.{i}.attn.norm_added_q.{x}"}},
    {"joint_blocks.{i}.context_block.attn.ln_k.{x}",
     {"transformer_blocks.{i}.attn.norm_added_k.{x}"}},
    {"joint_blocks.{i}.x_block.attn2.ln_q.{x}", {"transformer_blocks.{i}.attn2.norm_q.{x}"}},
    {"joint_blocks.{i}.x_block.attn2.ln_k.{x}", {"transformer_blocks.{i}.attn2.norm_k.{x}"}},
    {"joint_blocks.{i}.x_block.adaLN_modulation.1.{x}", {"transformer_blocks.{i}.norm1.linear.{x}"}},
    {"joint_blocks.{i}.context_block.adaLN_modulation.1.{x}",
     {"transformer_blocks.{i}.norm1_context.linear.{x}"},
     T::kSwapHalvesIfLast},
    {"joint_blocks.{i}.x_block.mlp.fc1.{x}", {"transformer_blocks.{i}.ff.net.0.proj.{x}"}},
    {"joint_blocks.{i}.x_block.mlp.fc2.{x}", {"transformer_blocks.{i}.ff.net.2.{x}"}},
    {"joint_blocks.{i}.context_block.mlp.fc1.{x}",
     {"transformer_blocks.{i}.ff_context.net.0.proj.{x}"}},
    {"joint_blocks.{i}.context_block.mlp.fc2.{x}", {"transformer_blocks.{i}.ff_context.net.2.{x}"}},
    {"final_layer.adaLN_modulation.1.{x}", {"norm_out.linear.{x}"}, T::kSwapHalves},
    {"final_layer.linear.{x}", {"proj_out.{x}"}},
};

// diffusers AutoencoderKL -> LDM VAE (SPEC-model §2.5; ComfyUI
// comfy/diffusers_convert.py:convert_vae_state_dict). Specific rules precede generic ones:
// the first match wins. Old diffusers attention names (query/key/value/proj_attn) come
// after the current ones so that unmap_key produces the current names.
const std::vector<KeyRule> kDiffusersVAE = {
    {"encoder.down.{i}.block.{j}.nin_shortcut.{x}",
     {"encoder.down_blocks.{i}.resnets.{j}.conv_shortcut.{x}"}},
    {"encoder.down.{i}.block.{j}.{x}", {"encoder.down_blocks.{i}.resnets.{j}.{x}"}},
    {"encoder.down.{i}.downsample.conv.{x}", {"encoder.down_blocks.{i}.downsamplers.0.conv.{x}"}},
    {"encoder.norm_out.{x}", {"encoder.conv_norm_out.{x}"}},
    {"decoder.up.{r}.block.{j}.nin_shortcut.{x}",
     {"decoder.up_blocks.{r}.resnets.{j}.conv_shortcut.{x}"}},
    {"decoder.up.{r}.block.{j}.{x}", {"decoder.up_blocks.{r}.resnets.{j}.{x}"}},
    {"decoder.up.{r}.upsample.conv.{x}", {"decoder.up_blocks.{r}.upsamplers.0.conv.{x}"}},
    {"decoder.norm_out.{x}", {"decoder.conv_norm_out.{x}"}},
#define SD35_VAE_MID(side)                                                                     \
  {side ".mid.block_1.{x}", {side ".mid_block.resnets.0.{x}"}},                                \
      {side ".mid.block_2.{x}", {side ".mid_block.resnets.1.{x}"}},                            \
      {side ".mid.attn_1.norm.{x}", {side ".mid_block.attentions.0.group_norm.{x}"}},          \
      {side ".mid.attn_1.q.{x}", {side ".mid_block.attentions.0.to_q.{x}"}, T::kLinearToConv1x1}, \
      {side ".mid.attn_1.k.{x}", {side ".mid_block.attentions.0.to_k.{x}"}, T::kLinearToConv1x1}, \
      {side ".mid.attn_1.v.{x}", {side ".mid_block.attentions.0.to_v.{x}"}, T::kLinearToConv1x1}, \
      {side ".mid.attn_1.proj_out.{x}", {side ".mid_block.attentions.0.to_out.0.{x}"},          \
       T::kLinearToConv1x1},                                                                   \
      {side ".mid.attn_1.q.{x}", {side ".mid_block.attentions.0.query.{x}"}, T::kLinearToConv1x1}, \
      {side ".mid.attn_1.k.{x}", {side ".mid_block.attentions.0.key.{x}"}, T::kLinearToConv1x1}, \
      {side ".mid.attn_1.v.{x}", {side ".mid_block.attentions.0.value.{x}"}, T::kLinearToConv1x1}, \
      {side ".mid.attn_1.proj_out.{x}", {side ".mid_block.attentions.0.proj_attn.{x}"},         \
       T::kLinearToConv1x1}
    SD35_VAE_MID("encoder"),
    SD35_VAE_MID("decoder"),
#undef SD35_VAE_MID
};

const std::vector<KeyRule> kIdentity = {};

// Index placeholders accept at most 6 digits: no real model has a million blocks, and the
// bound keeps the arithmetic below trivially safe.
bool parse_index(std::string_view s, size_t& pos, int& value) {
  size_t start = pos;
  value = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - start < 6) {
    value = value * 10 + (s[pos] - '0');
    ++pos;
  }
  return pos > start && !(pos < s.size() && s[pos] >= '0' && s[pos] <= '9');
}

struct Bindings {
  int i = -1, j = -1, r = -1;
  std::string_view x;
};

// Matches `name` against `pattern`; fills bindings. {r} binds the raw (unreversed) value.
bool match(std::string_view pattern, std::string_view name, Bindings& b) {
  size_t p = 0, n = 0;
  while (p < pattern.size()) {
    if (pattern[p] == '{' && p + 2 < pattern.size() && pattern[p + 2] == '}') {
      char var = pattern[p + 1];
      p += 3;
      if (var == 'x') {
        if (n >= name.size()) return false;
        b.x = name.substr(n);
        n = name.size();
        continue;
      }
      int v;
      if (!parse_index(name, n, v)) return false;
      (var == 'i' ? b.i : var == 'j' ? b.j : b.r) = v;
      continue;
    }
    if (n >= name.size() || pattern[p] != name[n]) return false;
    ++p;
    ++n;
  }
  return n == name.size();
}

// `r_value` is what {r} expands to (already reversed by the caller as needed).
std::string expand(std::string_view pattern, const Bindings& b, int r_value) {
  std::string out;
  for (size_t p = 0; p < pattern.size();) {
    if (pattern[p] == '{' && p + 2 < pattern.size() && pattern[p + 2] == '}') {
      char var = pattern[p + 1];
      p += 3;
      if (var == 'x') out += b.x;
      else out += std::to_string(var == 'i' ? b.i : var == 'j' ? b.j : r_value);
      continue;
    }
    out += pattern[p++];
  }
  return out;
}

int count_distinct_indices(const std::vector<std::string>& names, std::string_view prefix) {
  std::set<int> seen;
  for (const auto& s : names) {
    if (s.size() <= prefix.size() || s.compare(0, prefix.size(), prefix) != 0) continue;
    size_t pos = prefix.size();
    int v;
    if (parse_index(s, pos, v) && pos < s.size() && s[pos] == '.') seen.insert(v);
  }
  return seen.empty() ? 0 : *seen.rbegin() + 1;
}

Transform resolve(Transform t, const Bindings& b, const MapContext& ctx) {
  if (t != Transform::kSwapHalvesIfLast) return t;
  return b.i == ctx.num_blocks - 1 ? Transform::kSwapHalves : Transform::kNone;
}

}  // namespace

std::string_view transform_name(Transform t) {
  switch (t) {
    case Transform::kNone: return "none";
    case Transform::kSwapHalves: return "swap_halves";
    case Transform::kSwapHalvesIfLast: return "swap_halves_if_last";
    case Transform::kLinearToConv1x1: return "linear_to_conv1x1";
  }
  return "?";
}

MapContext scan_map_context(const std::vector<std::string>& names) {
  MapContext ctx;
  // The count is the highest index + 1, so a missing middle block still maps the others
  // to the right places (and shows up as missing in validation).
  ctx.num_up_blocks = count_distinct_indices(names, "decoder.up_blocks.");
  ctx.num_blocks = count_distinct_indices(names, "transformer_blocks.");
  return ctx;
}

const std::vector<KeyRule>& key_rules(Component c, Layout layout) {
  if (layout != Layout::kDiffusers) return kIdentity;
  if (c == Component::kMMDiT) return kDiffusersMMDiT;
  if (c == Component::kVAE) return kDiffusersVAE;
  // diffusers text encoders are HF CLIPTextModel(WithProjection) / T5EncoderModel: these
  // already are the canonical names.
  return kIdentity;
}

MappedKey map_key(const std::vector<KeyRule>& rules, std::string_view source,
                  const MapContext& ctx) {
  for (const KeyRule& rule : rules) {
    int nparts = rule.sources[1] ? 3 : 1;
    for (int k = 0; k < nparts; ++k) {
      Bindings b;
      if (!match(rule.sources[k], source, b)) continue;
      int r = b.r >= 0 ? ctx.num_up_blocks - 1 - b.r : -1;
      if (b.r >= 0 && r < 0) continue;  // cannot happen: num_up_blocks > b.r by construction
      return {expand(rule.canonical, b, r), k, nparts, resolve(rule.transform, b, ctx)};
    }
  }
  return {std::string(source), 0, 1, Transform::kNone};
}

std::optional<SourceKeys> unmap_key(const std::vector<KeyRule>& rules, std::string_view canonical,
                                    const MapContext& ctx) {
  for (const KeyRule& rule : rules) {
    Bindings b;
    if (!match(rule.canonical, canonical, b)) continue;
    int r = b.r >= 0 ? ctx.num_up_blocks - 1 - b.r : -1;
    SourceKeys out;
    for (int k = 0; k < 3 && rule.sources[k]; ++k) out.names.push_back(expand(rule.sources[k], b, r));
    out.transform = resolve(rule.transform, b, ctx);
    return out;
  }
  return std::nullopt;
}

}  // namespace sd35
