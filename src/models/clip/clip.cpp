// CLIP text tower forward pass (SPEC-model.md §4.1, §4.2; ComfyUI comfy/clip_model.py
// CLIPTextModel_, SAI other_impls.py CLIPTextModel) on Backend ops, f32 activations.
#include "models/clip/clip.h"

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "backend/transfer.h"
#include "weights/weight_binder.h"
#include "weights/weight_index.h"
#include "weights/weight_specs.h"

namespace sd35 {

using S = Shape;

namespace {

// LayerNorm eps of every CLIP norm (HF layer_norm_eps, OpenCLIP default).
constexpr float kLnEps = 1e-5f;

struct ClipLinear {
  Tensor w;  // [out, in], stored dtype
  Tensor b;  // [out], activation dtype (widened at load when stored otherwise)
  const Tensor* bias() const { return b.defined() ? &b : nullptr; }
};

struct ClipLayer {
  Tensor ln1_w, ln1_b, ln2_w, ln2_b;
  ClipLinear q, k, v, o, fc1, fc2;
};

struct ClipWeights {
  Tensor token_embedding;     // [vocab, W]
  Tensor position_embedding;  // [positions, W]
  std::vector<ClipLayer> layers;
  Tensor final_ln_w, final_ln_b;
  Tensor projection;  // [P, W] (no bias); undefined when the file has none
};

class Binder : public WeightBinder {
 public:
  Binder(WeightMap& map, WeightPlacer* placer) : WeightBinder(map, "CLIP", placer) {}
  Tensor vec(const std::string& field) { return take_vector(field); }
  ClipLinear linear(const std::string& field) {
    return {take(field + ".w"), take_vector(field + ".b")};
  }
};

Result<ClipWeights> weights_from_map(const ClipConfig& cfg, WeightMap map, WeightPlacer* placer) {
  Binder b(map, placer);
  ClipWeights w;
  w.token_embedding = b.take("token_embedding");
  w.position_embedding = b.vec("position_embedding");
  w.layers.resize(size_t(cfg.layers));
  for (int i = 0; i < cfg.layers; ++i) {
    const std::string f = "layers." + std::to_string(i);
    ClipLayer& l = w.layers[size_t(i)];
    l.ln1_w = b.vec(f + ".ln1.w");
    l.ln1_b = b.vec(f + ".ln1.b");
    l.q = b.linear(f + ".q_proj");
    l.k = b.linear(f + ".k_proj");
    l.v = b.linear(f + ".v_proj");
    l.o = b.linear(f + ".out_proj");
    l.ln2_w = b.vec(f + ".ln2.w");
    l.ln2_b = b.vec(f + ".ln2.b");
    l.fc1 = b.linear(f + ".fc1");
    l.fc2 = b.linear(f + ".fc2");
  }
  w.final_ln_w = b.vec("final_layer_norm.w");
  w.final_ln_b = b.vec("final_layer_norm.b");
  w.projection = b.take("text_projection.w", /*required=*/false);
  SD35_RETURN_IF_ERROR(b.status());
  return w;
}

}  // namespace

struct ClipTextModel::Impl {
  ClipConfig cfg;
  Component role = Component::kClipL;
  Activation act = Activation::kQuickGelu;
  ClipWeights w;
};

ClipTextModel::ClipTextModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClipTextModel::~ClipTextModel() = default;
const ClipConfig& ClipTextModel::config() const { return impl_->cfg; }
Component ClipTextModel::role() const { return impl_->role; }
int ClipTextModel::pooled_width() const {
  // SD3 projects CLIP-G's pooled output only (SDXLClipG / SD3ClipModel); CLIP-L's pooled output
  // is the unprojected final-LN state even when the file carries a projection.
  return impl_->role == Component::kClipG ? int(impl_->w.projection.size(0)) : impl_->cfg.width;
}

Result<std::unique_ptr<ClipTextModel>> ClipTextModel::load(const WeightIndex& index, Component role,
                                                           const ConfigOverrides& overrides,
                                                           WeightPlacer* placer) {
  if (role != Component::kClipL && role != Component::kClipG) {
    return invalid_argument("ClipTextModel::load: role must be clip_l or clip_g, got " +
                            std::string(component_name(role)));
  }
  const std::string who(component_name(role));
  SD35_ASSIGN_OR_RETURN(ClipConfig cfg, derive_clip_config(index, role, overrides));
  // SD3 takes the output of layer -2 (ComfyUI layer_idx=-2): a one-layer tower has none.
  if (cfg.layers < 2) {
    return unsupported(who + ": " + std::to_string(cfg.layers) +
                       " layer(s); SD3 uses the penultimate layer's output, which needs >= 2");
  }
  if (role == Component::kClipG && !cfg.has_projection) {
    return invalid_argument(who + ": text_projection.weight is missing; SD3 projects CLIP-G's " +
                            "pooled output with it");
  }
  SD35_ASSIGN_OR_RETURN(WeightMap map, bind_weights(index, role, clip_weight_specs(cfg, role)));
  auto impl = std::make_unique<Impl>();
  SD35_ASSIGN_OR_RETURN(impl->w, weights_from_map(cfg, std::move(map), placer));
  impl->role = role;
  impl->act = cfg.activation == "quick_gelu" ? Activation::kQuickGelu : Activation::kGeluErf;
  impl->cfg = std::move(cfg);
  return std::unique_ptr<ClipTextModel>(new ClipTextModel(std::move(impl)));
}

Status ClipTextModel::encode(
    Backend& be, Arena& arena, const Tensor& ids, const ClipOutputs& out,
    const std::function<void(std::string_view, const Tensor&)>& observe) const {
  const ClipConfig& cfg = impl_->cfg;
  const ClipWeights& w = impl_->w;
  const std::string who(component_name(impl_->role));
  auto bad = [&](const std::string& m) { return invalid_argument(who + " encode: " + m); };
  if (!ids.defined() || ids.data() == nullptr) return bad("ids are missing");
  if (ids.dtype() != DType::kI32) return bad("ids must be int32, got " + ids.describe());
  if (ids.ndim() != 2 || ids.size(0) < 1 || ids.size(1) < 1) {
    return bad("ids must be [B, L] with B, L >= 1, got " + ids.describe());
  }
  // The end-token search and the id check read the ids on the host.
  if (!ids.is_contiguous()) return bad("ids must be contiguous");
  if (ids.device() != Device::kCPU && ids.device() != be.device()) {
    return bad("ids must be host memory or on the backend's device");
  }
  const int64_t B = ids.size(0), L = ids.size(1), W = cfg.width;
  if (L > cfg.positions) {
    return bad(std::to_string(L) + " tokens exceed the " + std::to_string(cfg.positions) +
               " positions of the model (chunk longer prompts into " +
               std::to_string(cfg.positions) + "-token sequences)");
  }
  const Shape want_hidden{B, L, W}, want_pooled{B, int64_t(pooled_width())};
  for (const auto& [t, want, name] : {std::tuple{&out.hidden, want_hidden, "hidden"},
                                      std::tuple{&out.pooled, want_pooled, "pooled"}}) {
    if (!t->defined() || t->data() == nullptr || t->dtype() != DType::kF32 || t->shape() != want) {
      return bad(std::string("out.") + name + " must be f32" + want.to_string() + ", got " +
                 (t->defined() ? t->describe() : std::string("nothing")));
    }
    if (t->device() != be.device())
      return bad(std::string("out.") + name + " is not on the backend's device");
  }
  std::vector<std::byte> ids_storage;
  SD35_ASSIGN_OR_RETURN(const Tensor host_ids, to_host(be, ids, ids_storage));
  const int32_t* id = host_ids.data_as<const int32_t>();
  std::vector<int64_t> eos(size_t(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    bool found = false;
    for (int64_t l = 0; l < L; ++l) {
      const int32_t t = id[b * L + l];
      if (t < 0 || t >= cfg.vocab) {
        return bad("token id " + std::to_string(t) + " at [" + std::to_string(b) + ", " +
                   std::to_string(l) + "] is outside the vocabulary [0, " +
                   std::to_string(cfg.vocab) + ")");
      }
      // Pooled position: the FIRST end token (ComfyUI: (ids == eos).argmax(-1); SAI:
      // ids.argmax(-1), the same since 49407 is the largest id). Without an end token ComfyUI's
      // argmax of an all-false mask gives position 0, which is what we do; SAI would take the
      // position of the largest id instead.
      if (!found && t == kClipEndToken) {
        eos[size_t(b)] = l;
        found = true;
      }
    }
  }
  auto emit = [&](std::string_view name, const Tensor& t) {
    if (observe) observe(name, t);
  };

  ArenaScope scope(arena);
  SD35_ASSIGN_OR_RETURN(const Tensor dev_ids, to_backend(be, arena, ids));
  // x = token_embedding[ids] + position_embedding[:L], f32 (fp16 rows widen exactly).
  SD35_ASSIGN_OR_RETURN(Tensor x, arena.tensor(S{B, L, W}, DType::kF32));
  SD35_RETURN_IF_ERROR(
      be.gather_rows(w.token_embedding, dev_ids.reshape(S{B * L}), x.reshape(S{B * L, W})));
  SD35_RETURN_IF_ERROR(be.add(x, w.position_embedding.slice(0, 0, L), x));
  emit("embeddings", x);

  const int heads = cfg.heads;
  const float scale = float(1.0 / std::sqrt(double(W / heads)));
  const int64_t I = cfg.intermediate;
  for (int i = 0; i < cfg.layers; ++i) {
    const ClipLayer& l = w.layers[size_t(i)];
    {
      ArenaScope layer_scope(arena);
      SD35_ASSIGN_OR_RETURN(Tensor h, arena.tensor(S{B, L, W}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor q, arena.tensor(S{B, L, W}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor k, arena.tensor(S{B, L, W}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor v, arena.tensor(S{B, L, W}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor m, arena.tensor(S{B, L, I}, DType::kF32));
      // x += out_proj(MHA(LN1 x)): causal, and no padding mask (enable_attention_masks=False):
      // pad tokens after the end token are attended to by later positions, as in ComfyUI.
      SD35_RETURN_IF_ERROR(be.layer_norm(x, &l.ln1_w, &l.ln1_b, kLnEps, h));
      SD35_RETURN_IF_ERROR(be.gemm(h, l.q.w, l.q.bias(), q, {}));
      SD35_RETURN_IF_ERROR(be.gemm(h, l.k.w, l.k.bias(), k, {}));
      SD35_RETURN_IF_ERROR(be.gemm(h, l.v.w, l.v.bias(), v, {}));
      SD35_RETURN_IF_ERROR(be.attention_masked(q, k, v, h, heads, scale, /*causal=*/true, nullptr));
      SD35_RETURN_IF_ERROR(be.gemm(h, l.o.w, l.o.bias(), x, {Activation::kNone, true}));
      // x += fc2(act(fc1(LN2 x))).
      SD35_RETURN_IF_ERROR(be.layer_norm(x, &l.ln2_w, &l.ln2_b, kLnEps, h));
      SD35_RETURN_IF_ERROR(be.gemm(h, l.fc1.w, l.fc1.bias(), m, {impl_->act, false}));
      SD35_RETURN_IF_ERROR(be.gemm(m, l.fc2.w, l.fc2.bias(), x, {Activation::kNone, true}));
    }
    if (observe) emit("layer" + std::to_string(i) + "_out", x);
    // SD3's hidden state: the output of layer -2, without the final LayerNorm.
    if (i == cfg.layers - 2) {
      SD35_RETURN_IF_ERROR(be.copy(x, out.hidden));
      emit("penultimate", out.hidden);
    }
  }

  // pooled = final_layer_norm(last output)[b, eos_b]. The norm is row-wise, so normalising
  // only the pooled rows would do; the whole state is normalised because it is cheap next to
  // the layers and the goldens check it ("last_hidden_state").
  SD35_ASSIGN_OR_RETURN(Tensor last, arena.tensor(S{B, L, W}, DType::kF32));
  SD35_RETURN_IF_ERROR(be.layer_norm(x, &w.final_ln_w, &w.final_ln_b, kLnEps, last));
  emit("last_hidden_state", last);
  SD35_ASSIGN_OR_RETURN(Tensor pooled, arena.tensor(S{B, W}, DType::kF32));
  for (int64_t b = 0; b < B; ++b) {
    SD35_RETURN_IF_ERROR(be.copy(last.select(0, b).select(0, eos[size_t(b)]), pooled.select(0, b)));
  }
  emit("pooled", pooled);
  Tensor projected;
  if (w.projection.defined()) {
    SD35_ASSIGN_OR_RETURN(projected, arena.tensor(S{B, w.projection.size(0)}, DType::kF32));
    SD35_RETURN_IF_ERROR(be.gemm(pooled, w.projection, nullptr, projected, {}));
    emit("pooled_projected", projected);
  }
  return be.copy(impl_->role == Component::kClipG ? projected : pooled, out.pooled);
}

}  // namespace sd35
