// Model configurations derived from tensor shapes, never hard-coded: the same code reads
// the 5 GB SD3.5 Medium files and the tiny test models.
//
// Attention heads are the one thing shapes cannot give for CLIP (q_proj is [W, W] for any
// head count). The references hard-wire them (CLIP-L 12, CLIP-G 20 = width / 64). Here, in
// order of precedence:
//   1. an explicit override from the caller (CLI --heads clip_l=12);
//   2. the safetensors __metadata__ entry "sd35.<role>.num_attention_heads" or
//      "sd35.num_attention_heads" (tools that write tiny models should set it);
//   3. a config.json next to the file: the HF form (diffusers text_encoder/config.json,
//      model_type clip_text_model, top-level num_attention_heads) or keyed by role
//      ({"clip_l": {"num_attention_heads": 2}}, as in the test model-set directories);
//   4. width / 64 when width is a multiple of 64 (head dim 64 is what every released CLIP
//      text tower uses: ViT-L/14 768/12, ViT-H/14 1024/16, ViT-bigG/14 1280/20);
//   5. otherwise an error asking for 1-3.
// A hint that does not divide the width is an error. For T5 the heads are exact:
// relative_attention_bias.weight is [num_buckets, heads]. The CLIP activation is not stored
// either: quick_gelu for CLIP-L, gelu for CLIP-G (the references' fixed configs), unless a
// hint ("hidden_act") says otherwise.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sd35/status.h"
#include "weights/component.h"

namespace sd35 {

class WeightIndex;

enum class QKNorm : uint8_t { kNone, kRMS, kLayerNorm };
std::string_view qk_norm_name(QKNorm q);  // "none", "rms", "ln"

struct MMDiTConfig {
  int depth = 0;        // joint blocks = x_embedder out / 64 (ComfyUI / SAI rule)
  int hidden = 0;       // 64 * depth
  int heads = 0;        // = depth (head dim 64), as both references hard-wire
  int head_dim = 64;
  int patch_size = 0;
  int in_channels = 0;
  int out_channels = 0;
  int pos_embed_max_size = 0;  // pos_embed is [1, P*P, hidden]
  int adm_in_channels = 0;     // pooled y width
  int context_dim = 0;         // context_embedder input (T5 width)
  int mlp_hidden = 0;          // fc1 rows (4 * hidden for SD3.5)
  int freq_dim = 0;            // timestep embedding width (256)
  std::vector<int> x_block_self_attn_layers;  // blocks with x_block.attn2
  QKNorm qk_norm = QKNorm::kNone;
};

struct VAEConfig {
  int ch = 0;                 // base channels
  std::vector<int> ch_mult;   // per level
  int num_res_blocks = 0;     // encoder blocks per level (decoder has one more)
  int z_channels = 0;         // latent channels
  int image_channels = 0;     // 3
  bool has_encoder = false;
  bool has_decoder = false;
};

struct ClipConfig {
  int layers = 0;
  int width = 0;
  int heads = 0;
  int intermediate = 0;
  int vocab = 0;
  int positions = 0;
  bool has_projection = false;
  int projection_dim = 0;
  std::string activation;    // "quick_gelu" | "gelu"
  std::string heads_source;  // where `heads` came from, for messages
};

struct T5Config {
  int layers = 0;
  int d_model = 0;
  int d_ff = 0;
  int heads = 0;
  int d_kv = 0;           // per-head width (inner dim / heads)
  int vocab = 0;
  int num_buckets = 0;
  bool scaled_fp8 = false;  // ComfyUI scaled-fp8 file (per-layer scale_weight)
};

struct ConfigOverrides {
  std::map<Component, int> heads;  // CLIP heads (T5 heads are checked against the file)
};

Result<MMDiTConfig> derive_mmdit_config(const WeightIndex& index);
Result<VAEConfig> derive_vae_config(const WeightIndex& index);
Result<ClipConfig> derive_clip_config(const WeightIndex& index, Component role,
                                      const ConfigOverrides& overrides = {});
Result<T5Config> derive_t5_config(const WeightIndex& index, const ConfigOverrides& overrides = {});

}  // namespace sd35
