#include "models/mmdit/mmdit_weights.h"

#include <set>
#include <string>

#include "weights/weight_binder.h"

namespace sd35::mmdit {
namespace {

class Binder : public WeightBinder {
 public:
  Binder(WeightMap& map, WeightPlacer* placer) : WeightBinder(map, "MMDiT", placer) {}

  Linear linear(const std::string& field) {
    Linear l;
    l.w = take(field + ".w");
    l.b = take(field + ".b", /*required=*/false);  // every SD3 release has biases
    return l;
  }
  AttentionWeights attention(const std::string& field, QKNorm qk, bool with_proj) {
    AttentionWeights a;
    a.qkv = linear(field + ".qkv");
    if (qk != QKNorm::kNone) {
      a.ln_q_w = take(field + ".ln_q.w");
      a.ln_k_w = take(field + ".ln_k.w");
      if (qk == QKNorm::kLayerNorm) {
        a.ln_q_b = take(field + ".ln_q.b");
        a.ln_k_b = take(field + ".ln_k.b");
      }
    }
    if (with_proj) a.proj = linear(field + ".proj");
    return a;
  }
};

}  // namespace

Result<Weights> weights_from_map(const MMDiTConfig& cfg, WeightMap map, WeightPlacer* placer) {
  Binder b(map, placer);
  Weights w;
  w.pos_embed = b.take("pos_embed");
  w.x_embedder = b.linear("x_embedder");
  w.t_mlp0 = b.linear("t_embedder.0");
  w.t_mlp2 = b.linear("t_embedder.2");
  w.y_mlp0 = b.linear("y_embedder.0");
  w.y_mlp2 = b.linear("y_embedder.2");
  w.context_embedder = b.linear("context_embedder");
  const std::set<int> dual(cfg.x_block_self_attn_layers.begin(),
                           cfg.x_block_self_attn_layers.end());
  w.blocks.resize(size_t(cfg.depth));
  for (int i = 0; i < cfg.depth; ++i) {
    const std::string f = "blocks." + std::to_string(i);
    BlockWeights& bw = w.blocks[size_t(i)];
    StreamWeights& c = bw.ctx;
    // ComfyUI / SAI: the last context block is pre_only (its output is never used).
    c.pre_only = i == cfg.depth - 1;
    c.n_mods = c.pre_only ? 2 : 6;
    c.adaln = b.linear(f + ".ctx.adaln");
    c.attn = b.attention(f + ".ctx.attn", cfg.qk_norm, !c.pre_only);
    if (!c.pre_only) {
      c.fc1 = b.linear(f + ".ctx.fc1");
      c.fc2 = b.linear(f + ".ctx.fc2");
    }
    StreamWeights& x = bw.x;
    x.dual = dual.count(i) > 0;
    x.n_mods = x.dual ? 9 : 6;
    x.adaln = b.linear(f + ".x.adaln");
    x.attn = b.attention(f + ".x.attn", cfg.qk_norm, true);
    if (x.dual) x.attn2 = b.attention(f + ".x.attn2", cfg.qk_norm, true);
    x.fc1 = b.linear(f + ".x.fc1");
    x.fc2 = b.linear(f + ".x.fc2");
  }
  w.final_adaln = b.linear("final.adaln");
  w.final_linear = b.linear("final.linear");
  SD35_RETURN_IF_ERROR(b.status());
  return w;
}

}  // namespace sd35::mmdit
