#include "weights/model_configs.h"

#include <cctype>
#include <cmath>
#include <set>

#include "weights/weight_index.h"

namespace sd35 {
namespace {

std::string prefix_of(Component c) { return std::string(component_name(c)) + ": "; }

// The shape of a tensor that config derivation needs, with its rank checked. Dimensions
// above 2^30 are rejected so that int arithmetic below cannot overflow.
Result<Shape> shape_of(const WeightIndex& index, Component c, const std::string& name, int ndim) {
  const TensorSource* s = index.find(c, name);
  if (!s) {
    return not_found(prefix_of(c) + "missing tensor '" + name + "' (needed to derive the config)");
  }
  if (s->shape.ndim() != ndim) {
    return invalid_argument(prefix_of(c) + "'" + name + "' has shape " + s->shape.to_string() +
                            ", expected " + std::to_string(ndim) + " dimensions");
  }
  for (int64_t d : s->shape) {
    if (d <= 0 || d > (int64_t(1) << 30)) {
      return invalid_argument(prefix_of(c) + "'" + name + "' has an unusable shape " +
                              s->shape.to_string());
    }
  }
  return s->shape;
}

// Indices N of "<prefix>N." among the canonical names, sorted.
std::vector<int> indices(const ComponentSources& cs, const std::string& prefix,
                         const std::string& suffix = "") {
  std::set<int> seen;
  for (const auto& t : cs.tensors) {
    const std::string& n = t.name;
    if (n.compare(0, prefix.size(), prefix) != 0) continue;
    size_t pos = prefix.size(), start = pos;
    int v = 0;
    while (pos < n.size() && std::isdigit(static_cast<unsigned char>(n[pos])) && pos - start < 6)
      v = v * 10 + (n[pos++] - '0');
    if (pos == start || pos >= n.size() || n[pos] != '.') continue;
    if (!suffix.empty() && n.compare(pos, std::string::npos, suffix) != 0) continue;
    seen.insert(v);
  }
  return {seen.begin(), seen.end()};
}

int count_levels(const ComponentSources& cs, const std::string& prefix) {
  auto v = indices(cs, prefix);
  return v.empty() ? 0 : v.back() + 1;
}

Result<int> hint_int(const ComponentSources& cs, const std::string& key) {
  auto it = cs.hints.find(key);
  if (it == cs.hints.end()) return not_found(key);
  try {
    size_t used = 0;
    long v = std::stol(it->second, &used);
    if (used != it->second.size() || v <= 0 || v > (1 << 20)) throw std::invalid_argument("");
    return int(v);
  } catch (const std::exception&) {
    return invalid_argument(prefix_of(cs.component) + key + " '" + it->second + "' from " +
                            cs.hints_source + " is not a positive integer");
  }
}

}  // namespace

std::string_view qk_norm_name(QKNorm q) {
  switch (q) {
    case QKNorm::kNone: return "none";
    case QKNorm::kRMS: return "rms";
    case QKNorm::kLayerNorm: return "ln";
  }
  return "?";
}

Result<MMDiTConfig> derive_mmdit_config(const WeightIndex& index) {
  const Component c = Component::kMMDiT;
  const ComponentSources* cs = index.component(c);
  if (!cs) return not_found("no MMDiT weights");
  MMDiTConfig cfg;
  // ComfyUI model_detection / SAI BaseModel: depth = x_embedder.proj.weight.shape[0] // 64,
  // hidden = 64 * depth, heads = depth.
  SD35_ASSIGN_OR_RETURN(Shape xe, shape_of(index, c, "x_embedder.proj.weight", 4));
  if (xe[0] % 64 != 0) {
    return unsupported(prefix_of(c) + "hidden size " + std::to_string(xe[0]) +
                       " is not a multiple of 64 (head dim 64 is assumed, as in the references)");
  }
  cfg.hidden = int(xe[0]);
  cfg.depth = cfg.hidden / 64;
  cfg.heads = cfg.depth;
  cfg.head_dim = 64;
  cfg.in_channels = int(xe[1]);
  cfg.patch_size = int(xe[2]);
  if (xe[2] != xe[3]) return unsupported(prefix_of(c) + "non-square patch " + xe.to_string());

  SD35_ASSIGN_OR_RETURN(Shape fl, shape_of(index, c, "final_layer.linear.weight", 2));
  const int64_t pp = int64_t(cfg.patch_size) * cfg.patch_size;
  if (fl[0] % pp != 0) {
    return invalid_argument(prefix_of(c) + "final_layer.linear.weight rows " +
                            std::to_string(fl[0]) + " are not a multiple of patch² " +
                            std::to_string(pp));
  }
  cfg.out_channels = int(fl[0] / pp);

  SD35_ASSIGN_OR_RETURN(Shape pe, shape_of(index, c, "pos_embed", 3));
  const int p = int(std::lround(std::sqrt(double(pe[1]))));
  if (int64_t(p) * p != pe[1]) {
    return unsupported(prefix_of(c) + "pos_embed has " + std::to_string(pe[1]) +
                       " positions, not a square grid");
  }
  cfg.pos_embed_max_size = p;

  SD35_ASSIGN_OR_RETURN(Shape ye, shape_of(index, c, "y_embedder.mlp.0.weight", 2));
  cfg.adm_in_channels = int(ye[1]);
  SD35_ASSIGN_OR_RETURN(Shape ce, shape_of(index, c, "context_embedder.weight", 2));
  cfg.context_dim = int(ce[1]);
  SD35_ASSIGN_OR_RETURN(Shape te, shape_of(index, c, "t_embedder.mlp.0.weight", 2));
  cfg.freq_dim = int(te[1]);
  SD35_ASSIGN_OR_RETURN(Shape fc1, shape_of(index, c, "joint_blocks.0.x_block.mlp.fc1.weight", 2));
  cfg.mlp_hidden = int(fc1[0]);

  cfg.x_block_self_attn_layers = indices(*cs, "joint_blocks.", ".x_block.attn2.qkv.weight");
  // sd.cpp: "ln" when the q/k norms have a bias, "rms" otherwise (ComfyUI only knows rms).
  if (cs->find("joint_blocks.0.context_block.attn.ln_q.weight")) {
    cfg.qk_norm = cs->find("joint_blocks.0.context_block.attn.ln_q.bias") ? QKNorm::kLayerNorm
                                                                          : QKNorm::kRMS;
  }
  return cfg;
}

Result<VAEConfig> derive_vae_config(const WeightIndex& index) {
  const Component c = Component::kVAE;
  const ComponentSources* cs = index.component(c);
  if (!cs) return not_found("no VAE weights");
  VAEConfig cfg;
  cfg.has_encoder = cs->find("encoder.conv_in.weight") != nullptr;
  cfg.has_decoder = cs->find("decoder.conv_in.weight") != nullptr;
  if (!cfg.has_encoder && !cfg.has_decoder) {
    return not_found(prefix_of(c) + "neither encoder.conv_in.weight nor decoder.conv_in.weight");
  }
  std::vector<int> level_out;  // output channels per level
  if (cfg.has_encoder) {
    SD35_ASSIGN_OR_RETURN(Shape in, shape_of(index, c, "encoder.conv_in.weight", 4));
    cfg.ch = int(in[0]);
    cfg.image_channels = int(in[1]);
    SD35_ASSIGN_OR_RETURN(Shape out, shape_of(index, c, "encoder.conv_out.weight", 4));
    if (out[0] % 2 != 0) {
      return invalid_argument(prefix_of(c) + "encoder.conv_out has odd " +
                              std::to_string(out[0]) + " channels (mean and logvar expected)");
    }
    cfg.z_channels = int(out[0] / 2);
    int levels = count_levels(*cs, "encoder.down.");
    cfg.num_res_blocks = count_levels(*cs, "encoder.down.0.block.");
    for (int l = 0; l < levels; ++l) {
      SD35_ASSIGN_OR_RETURN(
          Shape w, shape_of(index, c, "encoder.down." + std::to_string(l) + ".block.0.conv1.weight", 4));
      level_out.push_back(int(w[0]));
    }
  }
  if (cfg.has_decoder) {
    SD35_ASSIGN_OR_RETURN(Shape in, shape_of(index, c, "decoder.conv_in.weight", 4));
    SD35_ASSIGN_OR_RETURN(Shape out, shape_of(index, c, "decoder.conv_out.weight", 4));
    if (cfg.has_encoder && in[1] != cfg.z_channels) {
      return invalid_argument(prefix_of(c) + "decoder takes " + std::to_string(in[1]) +
                              " latent channels but the encoder makes " +
                              std::to_string(cfg.z_channels));
    }
    cfg.z_channels = int(in[1]);
    cfg.image_channels = int(out[0]);
    int levels = count_levels(*cs, "decoder.up.");
    if (!cfg.has_encoder) {
      // Decoder only: the last level works at ch * ch_mult[0]; ch_mult[0] is 1 in every
      // LDM/SD VAE, which is what this assumes.
      cfg.ch = int(out[1]);
      cfg.num_res_blocks = count_levels(*cs, "decoder.up.0.block.") - 1;
      for (int l = 0; l < levels; ++l) {
        SD35_ASSIGN_OR_RETURN(
            Shape w, shape_of(index, c, "decoder.up." + std::to_string(l) + ".block.0.conv1.weight", 4));
        level_out.push_back(int(w[0]));
      }
    } else if (levels != int(level_out.size())) {
      return invalid_argument(prefix_of(c) + "encoder has " + std::to_string(level_out.size()) +
                              " levels, decoder " + std::to_string(levels));
    }
  }
  if (level_out.empty() || cfg.ch <= 0 || cfg.num_res_blocks <= 0) {
    return invalid_argument(prefix_of(c) + "cannot find the resolution levels and blocks");
  }
  for (int o : level_out) {
    if (o % cfg.ch != 0) {
      return invalid_argument(prefix_of(c) + "level width " + std::to_string(o) +
                              " is not a multiple of the base width " + std::to_string(cfg.ch));
    }
    cfg.ch_mult.push_back(o / cfg.ch);
  }
  return cfg;
}

Result<ClipConfig> derive_clip_config(const WeightIndex& index, Component role,
                                      const ConfigOverrides& overrides) {
  const ComponentSources* cs = index.component(role);
  if (!cs) return not_found("no " + std::string(component_name(role)) + " weights");
  ClipConfig cfg;
  SD35_ASSIGN_OR_RETURN(Shape tok,
                        shape_of(index, role, "text_model.embeddings.token_embedding.weight", 2));
  cfg.vocab = int(tok[0]);
  cfg.width = int(tok[1]);
  SD35_ASSIGN_OR_RETURN(
      Shape pos, shape_of(index, role, "text_model.embeddings.position_embedding.weight", 2));
  cfg.positions = int(pos[0]);
  cfg.layers = count_levels(*cs, "text_model.encoder.layers.");
  if (cfg.layers == 0) return not_found(prefix_of(role) + "no encoder layers");
  SD35_ASSIGN_OR_RETURN(Shape fc1,
                        shape_of(index, role, "text_model.encoder.layers.0.mlp.fc1.weight", 2));
  cfg.intermediate = int(fc1[0]);
  if (const TensorSource* p = cs->find("text_projection.weight")) {
    SD35_ASSIGN_OR_RETURN(Shape ps, shape_of(index, role, "text_projection.weight", 2));
    cfg.has_projection = true;
    cfg.projection_dim = int(ps[0]);
    (void)p;
  }

  // A config.json that describes another width is about another model: refuse to take its
  // heads rather than silently mis-splitting the attention.
  if (auto hs = cs->hints.find("hidden_size"); hs != cs->hints.end()) {
    if (hs->second != std::to_string(cfg.width)) {
      return invalid_argument(prefix_of(role) + cs->hints_source + " gives hidden_size " +
                              hs->second + " but the weights have width " +
                              std::to_string(cfg.width));
    }
  }
  // Heads: see the precedence in model_configs.h.
  auto ov = overrides.heads.find(role);
  if (ov != overrides.heads.end()) {
    cfg.heads = ov->second;
    cfg.heads_source = "override";
  } else if (cs->hints.count("num_attention_heads")) {
    SD35_ASSIGN_OR_RETURN(cfg.heads, hint_int(*cs, "num_attention_heads"));
    cfg.heads_source = cs->hints_source;
  } else if (cfg.width % 64 == 0) {
    cfg.heads = cfg.width / 64;
    cfg.heads_source = "width / 64";
  } else {
    return invalid_argument(
        prefix_of(role) + "cannot derive the attention heads of a width-" +
        std::to_string(cfg.width) +
        " CLIP (not a multiple of 64): give them with --heads " + std::string(component_name(role)) +
        "=N, a 'sd35.num_attention_heads' metadata entry or a config.json next to the file");
  }
  if (cfg.heads <= 0 || cfg.width % cfg.heads != 0) {
    return invalid_argument(prefix_of(role) + std::to_string(cfg.heads) + " heads (" +
                            cfg.heads_source + ") do not divide the width " +
                            std::to_string(cfg.width));
  }
  auto act = cs->hints.find("hidden_act");
  cfg.activation = act != cs->hints.end() ? act->second
                   : role == Component::kClipL ? "quick_gelu"
                                               : "gelu";
  if (cfg.activation != "quick_gelu" && cfg.activation != "gelu") {
    return unsupported(prefix_of(role) + "activation '" + cfg.activation + "'");
  }
  return cfg;
}

Result<T5Config> derive_t5_config(const WeightIndex& index, const ConfigOverrides& overrides) {
  const Component c = Component::kT5XXL;
  const ComponentSources* cs = index.component(c);
  if (!cs) return not_found("no T5 weights");
  T5Config cfg;
  const char* emb_name = cs->find("shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
  SD35_ASSIGN_OR_RETURN(Shape emb, shape_of(index, c, emb_name, 2));
  cfg.vocab = int(emb[0]);
  cfg.d_model = int(emb[1]);
  cfg.layers = count_levels(*cs, "encoder.block.");
  if (cfg.layers == 0) return not_found(prefix_of(c) + "no encoder blocks");
  if (!cs->find("encoder.block.0.layer.1.DenseReluDense.wi_0.weight") &&
      cs->find("encoder.block.0.layer.1.DenseReluDense.wi.weight")) {
    return unsupported(prefix_of(c) + "non-gated T5 (v1.0) feed-forward; T5 v1.1 expected");
  }
  SD35_ASSIGN_OR_RETURN(
      Shape wi, shape_of(index, c, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", 2));
  cfg.d_ff = int(wi[0]);
  // relative_attention_bias is [num_buckets, heads]: the heads are stored exactly.
  SD35_ASSIGN_OR_RETURN(
      Shape rb,
      shape_of(index, c, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2));
  cfg.num_buckets = int(rb[0]);
  cfg.heads = int(rb[1]);
  auto ov = overrides.heads.find(c);
  if (ov != overrides.heads.end() && ov->second != cfg.heads) {
    return invalid_argument(prefix_of(c) + "heads override " + std::to_string(ov->second) +
                            " contradicts relative_attention_bias (" + std::to_string(cfg.heads) +
                            " heads)");
  }
  SD35_ASSIGN_OR_RETURN(Shape q,
                        shape_of(index, c, "encoder.block.0.layer.0.SelfAttention.q.weight", 2));
  if (q[0] % cfg.heads != 0) {
    return invalid_argument(prefix_of(c) + "attention width " + std::to_string(q[0]) +
                            " is not a multiple of " + std::to_string(cfg.heads) + " heads");
  }
  cfg.d_kv = int(q[0] / cfg.heads);
  cfg.scaled_fp8 = cs->find("scaled_fp8") != nullptr;
  return cfg;
}

}  // namespace sd35
