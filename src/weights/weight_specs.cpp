#include "weights/weight_specs.h"

#include <set>

#include "weights/weight_index.h"

namespace sd35 {
namespace {

std::string str(int v) { return std::to_string(v); }

class SpecList {
 public:
  void add(std::string field, std::string canonical, Shape shape, bool required = true) {
    specs_.push_back({std::move(field), std::move(canonical), shape, required, false, false});
  }
  // A Linear / conv: weight (+ bias).
  void lin(const std::string& field, const std::string& canonical, Shape w, bool bias = true,
           bool required = true) {
    add(field + ".w", canonical + ".weight", w, required);
    if (bias) add(field + ".b", canonical + ".bias", Shape{w[0]}, required);
  }
  void norm(const std::string& field, const std::string& canonical, int64_t n, bool bias = true) {
    add(field + ".w", canonical + ".weight", Shape{n});
    if (bias) add(field + ".b", canonical + ".bias", Shape{n});
  }
  void tolerate(std::string canonical, bool any_dtype = false) {
    specs_.push_back({"", std::move(canonical), Shape{}, false, true, any_dtype});
  }
  void push(WeightSpec w) { specs_.push_back(std::move(w)); }
  WeightSpecs take() { return std::move(specs_); }

 private:
  WeightSpecs specs_;
};

// One attention of a joint block (attn or attn2).
void mmdit_attn(SpecList& s, const MMDiTConfig& c, const std::string& f, const std::string& n,
                bool with_proj) {
  const int64_t D = c.hidden;
  s.lin(f + ".qkv", n + ".qkv", Shape{3 * D, D});
  if (c.qk_norm != QKNorm::kNone) {
    bool bias = c.qk_norm == QKNorm::kLayerNorm;
    s.norm(f + ".ln_q", n + ".ln_q", c.head_dim, bias);
    s.norm(f + ".ln_k", n + ".ln_k", c.head_dim, bias);
  }
  if (with_proj) s.lin(f + ".proj", n + ".proj", Shape{D, D});
}

}  // namespace

WeightSpecs mmdit_weight_specs(const MMDiTConfig& c) {
  SpecList s;
  const int64_t D = c.hidden, P = c.patch_size;
  s.add("pos_embed", "pos_embed", Shape{1, int64_t(c.pos_embed_max_size) * c.pos_embed_max_size, D});
  s.lin("x_embedder", "x_embedder.proj", Shape{D, c.in_channels, P, P});
  s.lin("t_embedder.0", "t_embedder.mlp.0", Shape{D, c.freq_dim});
  s.lin("t_embedder.2", "t_embedder.mlp.2", Shape{D, D});
  s.lin("y_embedder.0", "y_embedder.mlp.0", Shape{D, c.adm_in_channels});
  s.lin("y_embedder.2", "y_embedder.mlp.2", Shape{D, D});
  s.lin("context_embedder", "context_embedder", Shape{D, c.context_dim});
  std::set<int> dual(c.x_block_self_attn_layers.begin(), c.x_block_self_attn_layers.end());
  for (int i = 0; i < c.depth; ++i) {
    const bool pre_only = i == c.depth - 1;  // the last context block only feeds attention
    const std::string fb = "blocks." + str(i), nb = "joint_blocks." + str(i);
    // context block
    s.lin(fb + ".ctx.adaln", nb + ".context_block.adaLN_modulation.1",
          Shape{(pre_only ? 2 : 6) * D, D});
    mmdit_attn(s, c, fb + ".ctx.attn", nb + ".context_block.attn", !pre_only);
    if (!pre_only) {
      s.lin(fb + ".ctx.fc1", nb + ".context_block.mlp.fc1", Shape{c.mlp_hidden, D});
      s.lin(fb + ".ctx.fc2", nb + ".context_block.mlp.fc2", Shape{D, c.mlp_hidden});
    }
    // x block
    const bool two = dual.count(i) > 0;
    s.lin(fb + ".x.adaln", nb + ".x_block.adaLN_modulation.1", Shape{(two ? 9 : 6) * D, D});
    mmdit_attn(s, c, fb + ".x.attn", nb + ".x_block.attn", true);
    if (two) mmdit_attn(s, c, fb + ".x.attn2", nb + ".x_block.attn2", true);
    s.lin(fb + ".x.fc1", nb + ".x_block.mlp.fc1", Shape{c.mlp_hidden, D});
    s.lin(fb + ".x.fc2", nb + ".x_block.mlp.fc2", Shape{D, c.mlp_hidden});
  }
  s.lin("final.adaln", "final_layer.adaLN_modulation.1", Shape{2 * D, D});
  s.lin("final.linear", "final_layer.linear", Shape{P * P * c.out_channels, D});
  // ComfyUI scaled-fp8 marker; per-layer scales are not supported for the MMDiT yet and
  // would show up as unexpected tensors.
  s.tolerate("scaled_fp8", true);
  return s.take();
}

namespace {

void vae_resblock(SpecList& s, const std::string& f, const std::string& n, int64_t in,
                  int64_t out) {
  s.norm(f + ".norm1", n + ".norm1", in);
  s.lin(f + ".conv1", n + ".conv1", Shape{out, in, 3, 3});
  s.norm(f + ".norm2", n + ".norm2", out);
  s.lin(f + ".conv2", n + ".conv2", Shape{out, out, 3, 3});
  if (in != out) s.lin(f + ".nin_shortcut", n + ".nin_shortcut", Shape{out, in, 1, 1});
}

void vae_mid(SpecList& s, const std::string& side, int64_t C) {
  vae_resblock(s, side + ".mid.block_1", side + ".mid.block_1", C, C);
  s.norm(side + ".mid.attn_1.norm", side + ".mid.attn_1.norm", C);
  for (const char* p : {"q", "k", "v", "proj_out"}) {
    s.lin(side + ".mid.attn_1." + p, side + ".mid.attn_1." + p, Shape{C, C, 1, 1});
  }
  vae_resblock(s, side + ".mid.block_2", side + ".mid.block_2", C, C);
}

}  // namespace

WeightSpecs vae_weight_specs(const VAEConfig& c) {
  SpecList s;
  const int levels = int(c.ch_mult.size());
  const int64_t ch = c.ch, top = int64_t(c.ch) * c.ch_mult.back();
  if (c.has_encoder) {
    s.lin("encoder.conv_in", "encoder.conv_in", Shape{ch, c.image_channels, 3, 3});
    int64_t in = ch;
    for (int l = 0; l < levels; ++l) {
      const int64_t out = ch * c.ch_mult[size_t(l)];
      const std::string n = "encoder.down." + str(l);
      for (int j = 0; j < c.num_res_blocks; ++j) {
        vae_resblock(s, n + ".block." + str(j), n + ".block." + str(j), j == 0 ? in : out, out);
      }
      if (l != levels - 1) s.lin(n + ".downsample", n + ".downsample.conv", Shape{out, out, 3, 3});
      in = out;
    }
    vae_mid(s, "encoder", top);
    s.norm("encoder.norm_out", "encoder.norm_out", top);
    s.lin("encoder.conv_out", "encoder.conv_out", Shape{2 * int64_t(c.z_channels), top, 3, 3});
  }
  if (c.has_decoder) {
    s.lin("decoder.conv_in", "decoder.conv_in", Shape{top, c.z_channels, 3, 3});
    vae_mid(s, "decoder", top);
    int64_t in = top;
    for (int l = levels - 1; l >= 0; --l) {
      const int64_t out = ch * c.ch_mult[size_t(l)];
      const std::string n = "decoder.up." + str(l);
      for (int j = 0; j <= c.num_res_blocks; ++j) {
        vae_resblock(s, n + ".block." + str(j), n + ".block." + str(j), j == 0 ? in : out, out);
      }
      if (l != 0) s.lin(n + ".upsample", n + ".upsample.conv", Shape{out, out, 3, 3});
      in = out;
    }
    s.norm("decoder.norm_out", "decoder.norm_out", in);
    s.lin("decoder.conv_out", "decoder.conv_out", Shape{c.image_channels, in, 3, 3});
  }
  return s.take();
}

WeightSpecs clip_weight_specs(const ClipConfig& c, Component role) {
  SpecList s;
  const int64_t W = c.width, I = c.intermediate;
  s.add("token_embedding", "text_model.embeddings.token_embedding.weight", Shape{c.vocab, W});
  s.add("position_embedding", "text_model.embeddings.position_embedding.weight",
        Shape{c.positions, W});
  for (int i = 0; i < c.layers; ++i) {
    const std::string f = "layers." + str(i), n = "text_model.encoder.layers." + str(i);
    s.norm(f + ".ln1", n + ".layer_norm1", W);
    for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      s.lin(f + "." + p, n + ".self_attn." + p, Shape{W, W});
    }
    s.norm(f + ".ln2", n + ".layer_norm2", W);
    s.lin(f + ".fc1", n + ".mlp.fc1", Shape{I, W});
    s.lin(f + ".fc2", n + ".mlp.fc2", Shape{W, I});
  }
  s.norm("final_layer_norm", "text_model.final_layer_norm", W);
  // SD3 projects only CLIP-G's pooled output; CLIP-L files may carry an unused projection.
  s.lin("text_projection", "text_projection", Shape{c.has_projection ? c.projection_dim : W, W},
        /*bias=*/false, /*required=*/role == Component::kClipG);
  s.tolerate("text_model.embeddings.position_ids", /*any_dtype=*/true);
  s.tolerate("logit_scale");
  return s.take();
}

WeightSpecs t5_weight_specs(const T5Config& c) {
  SpecList s;
  const int64_t d = c.d_model, inner = int64_t(c.heads) * c.d_kv, ff = c.d_ff;
  // ComfyUI reads shared.weight, SAI encoder.embed_tokens.weight; files carry one or both
  // (derive_t5_config fails when neither is there).
  s.add("shared", "shared.weight", Shape{c.vocab, d}, /*required=*/false);
  s.add("embed_tokens", "encoder.embed_tokens.weight", Shape{c.vocab, d}, /*required=*/false);
  std::vector<std::string> linears;
  for (int i = 0; i < c.layers; ++i) {
    const std::string f = "blocks." + str(i), n = "encoder.block." + str(i);
    for (const char* p : {"q", "k", "v"}) {
      s.lin(f + "." + p, n + ".layer.0.SelfAttention." + p, Shape{inner, d}, /*bias=*/false);
      linears.push_back(n + ".layer.0.SelfAttention." + p);
    }
    s.lin(f + ".o", n + ".layer.0.SelfAttention.o", Shape{d, inner}, /*bias=*/false);
    linears.push_back(n + ".layer.0.SelfAttention.o");
    if (i == 0) {
      s.add("relative_attention_bias", n + ".layer.0.SelfAttention.relative_attention_bias.weight",
            Shape{c.num_buckets, c.heads});
    }
    s.add(f + ".ln0", n + ".layer.0.layer_norm.weight", Shape{d});
    s.lin(f + ".wi_0", n + ".layer.1.DenseReluDense.wi_0", Shape{ff, d}, /*bias=*/false);
    s.lin(f + ".wi_1", n + ".layer.1.DenseReluDense.wi_1", Shape{ff, d}, /*bias=*/false);
    s.lin(f + ".wo", n + ".layer.1.DenseReluDense.wo", Shape{d, ff}, /*bias=*/false);
    for (const char* p : {"wi_0", "wi_1", "wo"}) linears.push_back(n + ".layer.1.DenseReluDense." + p);
    s.add(f + ".ln1", n + ".layer.1.layer_norm.weight", Shape{d});
  }
  s.add("final_layer_norm", "encoder.final_layer_norm.weight", Shape{d});
  // ComfyUI scaled fp8 (SPEC-model §2.4): marker + per-Linear scale_weight / scale_input.
  s.tolerate("scaled_fp8", true);
  for (const auto& l : linears) {
    s.push({l + ".scale_weight", l + ".scale_weight", Shape{}, false, true, false});
    s.push({"", l + ".scale_input", Shape{}, false, true, false});
  }
  return s.take();
}

Result<WeightSpecs> weight_specs_for(const WeightIndex& index, Component c,
                                     const ConfigOverrides& overrides) {
  switch (c) {
    case Component::kMMDiT: {
      SD35_ASSIGN_OR_RETURN(MMDiTConfig cfg, derive_mmdit_config(index));
      return mmdit_weight_specs(cfg);
    }
    case Component::kVAE: {
      SD35_ASSIGN_OR_RETURN(VAEConfig cfg, derive_vae_config(index));
      return vae_weight_specs(cfg);
    }
    case Component::kClipL:
    case Component::kClipG: {
      SD35_ASSIGN_OR_RETURN(ClipConfig cfg, derive_clip_config(index, c, overrides));
      return clip_weight_specs(cfg, c);
    }
    case Component::kT5XXL: {
      SD35_ASSIGN_OR_RETURN(T5Config cfg, derive_t5_config(index, overrides));
      return t5_weight_specs(cfg);
    }
  }
  return internal_error("unknown component");
}

Status validate_weights(const WeightIndex& index, Component c, const WeightSpecs& specs) {
  const ComponentSources* cs = index.component(c);
  if (!cs) return not_found("no " + std::string(component_name(c)) + " weights");
  std::vector<std::string> missing, unexpected, misshaped, bad_dtype;
  std::set<std::string_view> known;
  for (const WeightSpec& w : specs) {
    known.insert(w.canonical);
    const TensorSource* src = cs->find(w.canonical);
    if (!src) {
      if (w.required) missing.push_back(w.canonical + " " + w.shape.to_string());
      continue;
    }
    if (!w.any_shape && src->shape != w.shape) {
      misshaped.push_back(w.canonical + " is " + src->shape.to_string() + ", expected " +
                          w.shape.to_string());
    }
    if (!w.any_dtype && !dtype_is_compute_float(src->dtype)) {
      bad_dtype.push_back(w.canonical + " is " + std::string(dtype_name(src->dtype)));
    }
  }
  for (const TensorSource& t : cs->tensors) {
    if (!known.count(t.name)) {
      unexpected.push_back(t.name + " " + std::string(dtype_name(t.dtype)) + t.shape.to_string());
    }
  }
  const size_t n = missing.size() + unexpected.size() + misshaped.size() + bad_dtype.size() +
                   cs->problems.size();
  if (n == 0) return ok_status();
  std::string files;
  for (const auto& f : cs->files) files += (files.empty() ? "" : ", ") + f;
  std::string msg = std::string(component_name(c)) + " weights (" + files + ") do not match " +
                    "the configuration derived from their shapes: " + std::to_string(n) +
                    " problem" + (n == 1 ? "" : "s");
  auto section = [&](const char* title, const std::vector<std::string>& items) {
    for (const auto& i : items) msg += std::string("\n  ") + title + ": " + i;
  };
  section("missing", missing);
  section("unexpected", unexpected);
  section("mis-shaped", misshaped);
  section("bad dtype", bad_dtype);
  section("layout", cs->problems);
  return invalid_argument(msg);
}

Result<WeightMap> bind_weights(const WeightIndex& index, Component c, const WeightSpecs& specs) {
  SD35_RETURN_IF_ERROR(validate_weights(index, c, specs));
  WeightMap out;
  for (const WeightSpec& w : specs) {
    if (w.field.empty()) continue;
    const TensorSource* src = index.find(c, w.canonical);
    if (!src) continue;
    SD35_ASSIGN_OR_RETURN(Tensor t, WeightIndex::load(*src));
    out.emplace(w.field, std::move(t));
  }
  return out;
}

}  // namespace sd35
