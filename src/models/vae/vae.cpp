// VAE: typed weights from the validated weight list, argument checks, and the SD3 latent
// format. The networks are in vae_blocks.cpp, the tiled decode in vae_tiled.cpp.
#include "models/vae/vae.h"

#include <string>

#include "models/vae/vae_internal.h"
#include "weights/weight_index.h"

namespace sd35 {
namespace vae_detail {
namespace {

class Binder {
 public:
  Binder(const WeightMap& map, WeightPlacer* placer) : map_(map), placer_(placer) {}

  // The field's tensor, uploaded when there is a placer (the first failure is kept).
  Tensor get(const std::string& field) {
    auto it = map_.find(field);
    if (it == map_.end()) {
      missing_ += (missing_.empty() ? "" : ", ") + field;
      return {};
    }
    if (!placer_) return it->second;
    auto placed = placer_->place(it->second);
    if (!placed.ok()) {
      if (status_.ok()) status_ = placed.status().with_context("VAE: placing weights: ");
      return {};
    }
    return *std::move(placed);
  }
  Norm norm(const std::string& f) { return {get(f + ".w"), get(f + ".b")}; }
  Conv conv(const std::string& f) { return {get(f + ".w"), get(f + ".b")}; }
  // A 1x1 conv [O, C, 1, 1] used as a Linear [O, C] on the [B, H·W, C] layout.
  Linear linear(const std::string& f) {
    Tensor w = get(f + ".w");
    if (w.defined() && w.ndim() == 4) w = w.reshape(Shape{w.size(0), w.size(1)});
    return {w, get(f + ".b")};
  }
  ResBlock resblock(const std::string& f, int in, int out) {
    ResBlock rb;
    rb.in = in;
    rb.out = out;
    rb.norm1 = norm(f + ".norm1");
    rb.conv1 = conv(f + ".conv1");
    rb.norm2 = norm(f + ".norm2");
    rb.conv2 = conv(f + ".conv2");
    if (in != out) rb.nin_shortcut = conv(f + ".nin_shortcut");
    return rb;
  }
  MidBlock mid(const std::string& side, int c) {
    MidBlock m;
    m.block_1 = resblock(side + ".mid.block_1", c, c);
    m.attn_1.channels = c;
    m.attn_1.norm = norm(side + ".mid.attn_1.norm");
    m.attn_1.q = linear(side + ".mid.attn_1.q");
    m.attn_1.k = linear(side + ".mid.attn_1.k");
    m.attn_1.v = linear(side + ".mid.attn_1.v");
    m.attn_1.proj_out = linear(side + ".mid.attn_1.proj_out");
    m.block_2 = resblock(side + ".mid.block_2", c, c);
    return m;
  }
  const std::string& missing() const { return missing_; }
  const Status& status() const { return status_; }

 private:
  const WeightMap& map_;
  WeightPlacer* placer_;
  std::string missing_;
  Status status_;
};

}  // namespace

Result<VAEWeights> make_vae_weights(const VAEConfig& cfg, const WeightMap& map,
                                    WeightPlacer* placer) {
  Binder b(map, placer);
  VAEWeights w;
  const int levels = int(cfg.ch_mult.size());
  const int top = cfg.ch * cfg.ch_mult.back();
  auto level_ch = [&](int l) { return cfg.ch * cfg.ch_mult[size_t(l)]; };
  if (cfg.has_encoder) {
    EncoderWeights e;
    e.conv_in = b.conv("encoder.conv_in");
    int in = cfg.ch;
    for (int l = 0; l < levels; ++l) {
      Level lv;
      lv.channels = level_ch(l);
      const std::string n = "encoder.down." + std::to_string(l);
      for (int j = 0; j < cfg.num_res_blocks; ++j) {
        lv.blocks.push_back(
            b.resblock(n + ".block." + std::to_string(j), j == 0 ? in : lv.channels, lv.channels));
      }
      if (l != levels - 1) lv.resample = b.conv(n + ".downsample");
      in = lv.channels;
      e.down.push_back(std::move(lv));
    }
    e.mid = b.mid("encoder", top);
    e.norm_out = b.norm("encoder.norm_out");
    e.conv_out = b.conv("encoder.conv_out");
    w.encoder = std::move(e);
  }
  if (cfg.has_decoder) {
    DecoderWeights d;
    d.conv_in = b.conv("decoder.conv_in");
    d.mid = b.mid("decoder", top);
    d.up.resize(size_t(levels));
    int in = top;
    for (int l = levels - 1; l >= 0; --l) {
      Level& lv = d.up[size_t(l)];
      lv.channels = level_ch(l);
      const std::string n = "decoder.up." + std::to_string(l);
      for (int j = 0; j <= cfg.num_res_blocks; ++j) {
        lv.blocks.push_back(
            b.resblock(n + ".block." + std::to_string(j), j == 0 ? in : lv.channels, lv.channels));
      }
      if (l != 0) lv.resample = b.conv(n + ".upsample");
      in = lv.channels;
    }
    d.norm_out = b.norm("decoder.norm_out");
    d.conv_out = b.conv("decoder.conv_out");
    w.decoder = std::move(d);
  }
  // bind_weights() validated the list these fields come from, so this is a consistency
  // check between vae_weight_specs() and this file.
  if (!b.missing().empty()) return internal_error("VAE weights lack fields: " + b.missing());
  SD35_RETURN_IF_ERROR(b.status());
  return w;
}

}  // namespace vae_detail

using namespace vae_detail;

VAE::VAE(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VAE::~VAE() = default;

const VAEConfig& VAE::config() const { return impl_->cfg; }
int VAE::scale_factor() const { return vae_detail::scale_factor(impl_->cfg); }
bool VAE::has_encoder() const { return impl_->weights.encoder.has_value(); }
bool VAE::has_decoder() const { return impl_->weights.decoder.has_value(); }

Result<std::unique_ptr<VAE>> VAE::load(const WeightIndex& index, WeightPlacer* placer) {
  auto impl = std::make_unique<Impl>();
  SD35_ASSIGN_OR_RETURN(impl->cfg, derive_vae_config(index));
  const VAEConfig& cfg = impl->cfg;
  // GroupNorm(32) needs every width to be a multiple of 32; the references would fail too.
  for (int m : cfg.ch_mult) {
    if ((cfg.ch * m) % kGroups != 0) {
      return invalid_argument("VAE: channel count " + std::to_string(cfg.ch * m) +
                              " is not a multiple of the " + std::to_string(kGroups) +
                              " GroupNorm groups");
    }
  }
  if (cfg.ch_mult.size() > 16) return invalid_argument("VAE: too many resolution levels");
  SD35_ASSIGN_OR_RETURN(WeightMap map, bind_weights(index, Component::kVAE, vae_weight_specs(cfg)));
  SD35_ASSIGN_OR_RETURN(impl->weights, make_vae_weights(cfg, map, placer));
  return std::unique_ptr<VAE>(new VAE(std::move(impl)));
}

namespace {

Status check_compute(const VAEOptions& o, std::string_view op) {
  if (o.compute == DType::kF32 || o.compute == DType::kBF16) return ok_status();
  return unsupported(std::string(op) + ": compute dtype " + std::string(dtype_name(o.compute)) +
                     " (use f32 or bf16)");
}

// An f32 tensor with data on the backend's device and exactly `shape`.
Status check_operand(const Backend& be, const Tensor& t, const Shape& shape, std::string_view op,
                     std::string_view what) {
  const std::string p = std::string(op) + ": " + std::string(what);
  if (t.data() == nullptr) return invalid_argument(p + " has no data");
  if (t.device() != be.device()) {
    return invalid_argument(p + " is on " + std::string(device_name(t.device())) +
                            ", the backend on " + std::string(device_name(be.device())));
  }
  if (t.dtype() != DType::kF32) return unsupported(p + " must be f32, got " + t.describe());
  if (t.shape() != shape) {
    return invalid_argument(p + " must be " + shape.to_string() + ", got " + t.describe());
  }
  return ok_status();
}

}  // namespace

Status vae_detail::check_decode_args(const Backend& backend, const VAEConfig& cfg, bool has_decoder,
                                     const Tensor& latent, const Tensor& image,
                                     const VAEOptions& options, std::string_view op) {
  if (!has_decoder) return unsupported(std::string(op) + ": the weights have no decoder");
  SD35_RETURN_IF_ERROR(check_compute(options, op));
  if (latent.ndim() != 4 || latent.size(0) < 1 || latent.size(1) != cfg.z_channels ||
      latent.size(2) < 1 || latent.size(3) < 1) {
    return invalid_argument(std::string(op) + ": latent must be [B, " +
                            std::to_string(cfg.z_channels) + ", h, w], got " + latent.describe());
  }
  SD35_RETURN_IF_ERROR(check_operand(backend, latent, latent.shape(), op, "latent"));
  const int64_t f = vae_detail::scale_factor(cfg);
  return check_operand(
      backend, image,
      Shape{latent.size(0), cfg.image_channels, f * latent.size(2), f * latent.size(3)}, op,
      "image");
}

Status VAE::decode(Backend& backend, Arena& arena, const Tensor& latent, const Tensor& image,
                   const VAEOptions& options) const {
  constexpr std::string_view op = "VAE::decode";
  SD35_RETURN_IF_ERROR(
      check_decode_args(backend, impl_->cfg, has_decoder(), latent, image, options, op));
  return run_decoder(backend, arena, impl_->cfg, *impl_->weights.decoder, latent, image, options)
      .with_context(std::string(op) + ": ");
}

Status VAE::encode(Backend& backend, Arena& arena, const Tensor& pixels, const Tensor& mean,
                   const Tensor* logvar, const VAEOptions& options) const {
  constexpr std::string_view op = "VAE::encode";
  if (!impl_->weights.encoder) return unsupported("VAE::encode: the weights have no encoder");
  SD35_RETURN_IF_ERROR(check_compute(options, op));
  const VAEConfig& cfg = impl_->cfg;
  const int64_t f = scale_factor();
  if (pixels.ndim() != 4 || pixels.size(0) < 1 || pixels.size(1) != cfg.image_channels ||
      pixels.size(2) < f || pixels.size(3) < f || pixels.size(2) % f != 0 ||
      pixels.size(3) % f != 0) {
    return invalid_argument("VAE::encode: pixels must be [B, " +
                            std::to_string(cfg.image_channels) + ", H, W] with H and W positive " +
                            "multiples of " + std::to_string(f) + ", got " + pixels.describe());
  }
  SD35_RETURN_IF_ERROR(check_operand(backend, pixels, pixels.shape(), op, "pixels"));
  const Shape lat{pixels.size(0), cfg.z_channels, pixels.size(2) / f, pixels.size(3) / f};
  SD35_RETURN_IF_ERROR(check_operand(backend, mean, lat, op, "mean"));
  if (logvar) SD35_RETURN_IF_ERROR(check_operand(backend, *logvar, lat, op, "logvar"));

  ArenaScope scope(arena);
  SD35_ASSIGN_OR_RETURN(Tensor moments,
                        arena.tensor(Shape{lat[0], 2 * lat[1], lat[2], lat[3]}, DType::kF32));
  SD35_RETURN_IF_ERROR(
      run_encoder(backend, arena, cfg, *impl_->weights.encoder, pixels, moments, options)
          .with_context(std::string(op) + ": "));
  // DiagonalGaussianDistribution: moments.chunk(2, dim=1) -> mean, logvar (clamped).
  SD35_RETURN_IF_ERROR(backend.copy(moments.slice(1, 0, lat[1]), mean));
  if (logvar) {
    AffineParams clamp;
    clamp.lo = kLogvarMin;
    clamp.hi = kLogvarMax;
    SD35_RETURN_IF_ERROR(backend.affine(moments.slice(1, lat[1], 2 * lat[1]), clamp, *logvar));
  }
  return ok_status();
}

// ComfyUI computes x / 1.5305 + 0.0609 and (x - 0.0609) · 1.5305; one fused multiply-add
// per element instead differs from that by a rounding or two (~1e-7 relative), far below
// any tolerance downstream.
Status sd3_latent_to_vae(Backend& backend, const Tensor& model_latent, const Tensor& vae_latent) {
  AffineParams p;
  p.scale = 1.0f / kSD3LatentScale;
  p.shift = kSD3LatentShift;
  return backend.affine(model_latent, p, vae_latent).with_context("sd3_latent_to_vae: ");
}

Status sd3_vae_to_latent(Backend& backend, const Tensor& vae_latent, const Tensor& model_latent) {
  AffineParams p;
  p.scale = kSD3LatentScale;
  p.shift = -kSD3LatentShift * kSD3LatentScale;
  return backend.affine(vae_latent, p, model_latent).with_context("sd3_vae_to_latent: ");
}

}  // namespace sd35
