// Internals of the VAE shared by vae.cpp (loading, validation, public entry points),
// vae_blocks.cpp (the encoder and decoder on Backend ops) and vae_tiled.cpp.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/vae/vae.h"
#include "sd35/status.h"
#include "weights/model_configs.h"
#include "weights/weight_placer.h"
#include "weights/weight_specs.h"

namespace sd35::vae_detail {

// GroupNorm of the LDM VAE: 32 groups, eps 1e-6, affine (SPEC-model.md §3).
inline constexpr int kGroups = 32;
inline constexpr float kNormEps = 1e-6f;
// DiagonalGaussianDistribution clamps logvar to this range.
inline constexpr float kLogvarMin = -30.0f;
inline constexpr float kLogvarMax = 20.0f;

// Views into the mapped weight files, stored dtype (bf16 in the SD3.5 checkpoint); the
// kernels convert them.
struct Norm {
  Tensor w, b;  // [C]
};
struct Conv {
  Tensor w;  // [O, C, KH, KW]
  Tensor b;  // [O]
};
struct Linear {
  Tensor w;  // [O, C]: a 1x1 conv weight viewed as an nn.Linear weight
  Tensor b;  // [O]
};
struct ResBlock {
  int in = 0, out = 0;
  Norm norm1, norm2;
  Conv conv1, conv2;
  std::optional<Conv> nin_shortcut;  // 1x1, only when in != out
};
struct AttnBlock {
  int channels = 0;
  Norm norm;
  Linear q, k, v, proj_out;
};
struct MidBlock {
  ResBlock block_1;
  AttnBlock attn_1;
  ResBlock block_2;
};
struct Level {
  int channels = 0;  // output channels of the level
  std::vector<ResBlock> blocks;
  std::optional<Conv> resample;  // encoder: downsample.conv; decoder: upsample.conv
};
struct EncoderWeights {
  Conv conv_in;
  std::vector<Level> down;  // level 0 (full resolution) first
  MidBlock mid;
  Norm norm_out;
  Conv conv_out;  // -> 2·z channels (mean, logvar)
};
struct DecoderWeights {
  Conv conv_in;
  MidBlock mid;
  std::vector<Level> up;  // indexed by level like the checkpoint: run from back() to [0]
  Norm norm_out;
  Conv conv_out;
};

struct VAEWeights {
  std::optional<EncoderWeights> encoder;
  std::optional<DecoderWeights> decoder;
};

// Builds the typed weights from bind_weights()' field map (fields of vae_weight_specs).
Result<VAEWeights> make_vae_weights(const VAEConfig& cfg, const WeightMap& map,
                                    WeightPlacer* placer = nullptr);

// Pixels per latent pixel: each level but the last halves the resolution.
inline int scale_factor(const VAEConfig& cfg) { return 1 << (int(cfg.ch_mult.size()) - 1); }

// latent [B, z, h, w] f32 (any strides) -> image [B, image_channels, f·h, f·w] f32.
// Arguments are validated by the caller.
Status run_decoder(Backend& backend, Arena& arena, const VAEConfig& cfg, const DecoderWeights& w,
                   const Tensor& latent, const Tensor& image, const VAEOptions& options);
// pixels [B, image_channels, H, W] f32 -> moments [B, 2·z, H/f, W/f] f32 (raw conv_out).
Status run_encoder(Backend& backend, Arena& arena, const VAEConfig& cfg, const EncoderWeights& w,
                   const Tensor& pixels, const Tensor& moments, const VAEOptions& options);

// Tile layout along one axis of the latent: starts of tiles of edge min(tile, length),
// stepping by tile - overlap, the last one flush with the end.
std::vector<int64_t> tile_starts(int64_t length, int64_t tile, int64_t overlap);
// Blend weights along one axis of the image for tile `index` (pixel units: starts and edge
// already multiplied by the scale factor): a trapezoid that ramps linearly across its
// overlap with each neighbour, normalised so that the weights of all tiles covering a pixel
// sum to 1 (two overlapping tiles: a linear crossfade). Returns `edge` weights.
std::vector<float> tile_blend_weights(const std::vector<int64_t>& starts, int64_t edge,
                                      size_t index);

// Argument checks shared by decode() and decode_tiled().
Status check_decode_args(const Backend& backend, const VAEConfig& cfg, bool has_decoder,
                         const Tensor& latent, const Tensor& image, const VAEOptions& options,
                         std::string_view op);

}  // namespace sd35::vae_detail

namespace sd35 {

struct VAE::Impl {
  VAEConfig cfg;
  vae_detail::VAEWeights weights;
};

}  // namespace sd35
