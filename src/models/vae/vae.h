// The SD3 16-channel AutoencoderKL (SPEC-model.md §3): decoder, encoder (mean and logvar),
// the SD3 latent format, and a tiled decode that bounds memory for large images. Immutable
// after load; scratch per call from the caller's Arena.
#pragma once

#include <functional>
#include <memory>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "sd35/status.h"
#include "weights/model_configs.h"
#include "weights/weight_placer.h"

namespace sd35 {

class WeightIndex;

// ComfyUI latent_formats.SD3: model latent = (vae latent - shift) · scale.
inline constexpr float kSD3LatentScale = 1.5305f;
inline constexpr float kSD3LatentShift = 0.0609f;

struct VAEOptions {
  DType compute = DType::kF32;  // kF32 (golden precision) or kBF16 (fast mode)
  // Checked before every ResNet block (a 1024² decode takes many seconds on a CPU): true
  // stops the call with a kCancelled Status. May be empty.
  std::function<bool()> cancelled = nullptr;
};

struct VAETileOptions {
  int tile_latent = 64;    // tile edge in latent pixels (×8 in image pixels)
  int overlap_latent = 8;  // overlap between neighbouring tiles, blended linearly
};

class VAE {
 public:
  // placer: nullptr keeps host views; else every weight is uploaded to its device.
  static Result<std::unique_ptr<VAE>> load(const WeightIndex& index,
                                           WeightPlacer* placer = nullptr);
  ~VAE();

  const VAEConfig& config() const;
  // Image pixels per latent pixel: 2^(levels - 1), 8 for SD3 (the 8 in the shapes below).
  int scale_factor() const;
  bool has_encoder() const;
  bool has_decoder() const;

  // latent [B, z, h, w] f32 in VAE space -> image [B, 3, 8h, 8w] f32, the raw decoder output
  // (about [-1, 1], not clamped).
  Status decode(Backend& backend, Arena& arena, const Tensor& latent, const Tensor& image,
                const VAEOptions& options = {}) const;
  // decode() tile by tile (overlapping tiles blended with linear ramps), so memory is
  // bounded by the tile size. Not equal to decode() unless one tile covers the latent (then
  // it is decode()): a tile sees less context than the whole image (global mid attention).
  // Errors: tile_latent < 1, overlap_latent < 0 or >= tile_latent, and decode()'s.
  Status decode_tiled(Backend& backend, Arena& arena, const Tensor& latent, const Tensor& image,
                      const VAETileOptions& tiles, const VAEOptions& options = {}) const;
  // pixels [B, 3, H, W] f32 in [-1, 1] (H, W multiples of 8) -> mean [B, z, H/8, W/8] and,
  // when given, logvar clamped to [-30, 20] (what DiagonalGaussian uses).
  Status encode(Backend& backend, Arena& arena, const Tensor& pixels, const Tensor& mean,
                const Tensor* logvar, const VAEOptions& options = {}) const;

 private:
  struct Impl;
  explicit VAE(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Model latent <-> VAE latent (SD3 process_in / process_out), elementwise on the backend.
Status sd3_latent_to_vae(Backend& backend, const Tensor& model_latent, const Tensor& vae_latent);
Status sd3_vae_to_latent(Backend& backend, const Tensor& vae_latent, const Tensor& model_latent);

}  // namespace sd35
