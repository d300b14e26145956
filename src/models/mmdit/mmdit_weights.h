// Typed MMDiT-X weights: views of the bound tensors (stored dtype, usually bf16/fp16, never
// converted here; the kernels convert). Built from bind_weights() by field name, so the list
// of tensors lives in one place (weights/weight_specs.cpp).
#pragma once

#include <vector>

#include "core/tensor.h"
#include "sd35/status.h"
#include "weights/model_configs.h"
#include "weights/weight_placer.h"
#include "weights/weight_specs.h"

namespace sd35::mmdit {

// nn.Linear (or the patch-embed conv): weight [out, in(, kh, kw)], optional bias [out].
struct Linear {
  Tensor w;
  Tensor b;  // undefined when the layer has no bias
  const Tensor* bias() const { return b.defined() ? &b : nullptr; }
  int64_t out_features() const { return w.size(0); }
};

// One attention of a joint block (attn or attn2). ln_q/ln_k: the per-head q/k norm weights
// [head_dim] (RMSNorm; LayerNorm adds the biases), undefined without qk-norm. proj is
// undefined for the pre-only context block.
struct AttentionWeights {
  Linear qkv;
  Tensor ln_q_w, ln_q_b, ln_k_w, ln_k_b;
  Linear proj;
};

// One half (context or x) of a joint block ("DismantledBlock").
struct StreamWeights {
  int n_mods = 0;         // adaLN chunks: 2 (pre-only), 6, or 9 (dual attention)
  bool pre_only = false;  // last context block: adaLN shift/scale and qkv only
  bool dual = false;      // x block with attn2 (SD3.5 "MMDiT-X" layers)
  Linear adaln;           // [n_mods·D, D], input SiLU(c)
  AttentionWeights attn;
  AttentionWeights attn2;  // only when dual
  Linear fc1, fc2;         // undefined when pre_only
};

struct BlockWeights {
  StreamWeights ctx;
  StreamWeights x;
};

struct Weights {
  Tensor pos_embed;   // [1, P·P, D]
  Linear x_embedder;  // conv [D, C_in, p, p], stride p
  Linear t_mlp0, t_mlp2, y_mlp0, y_mlp2;
  Linear context_embedder;
  std::vector<BlockWeights> blocks;
  Linear final_adaln;   // [2D, D]: shift, scale (shift FIRST)
  Linear final_linear;  // [p·p·C_out, D]
};

// Moves the bound tensors into the typed struct; every field the config implies must be
// present (bind_weights already validated names and shapes, so a miss here is a bug in the
// spec list and is reported as an internal error).
Result<Weights> weights_from_map(const MMDiTConfig& cfg, WeightMap map,
                                 WeightPlacer* placer = nullptr);

}  // namespace sd35::mmdit
