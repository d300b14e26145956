// Engine::vae_decode_tiled: ComfyUI's VAEDecodeTiled decode (comfy/sd.py VAE.decode_tiled_ over
// comfy/utils.py tiled_scale_multidim), written from its described behaviour:
//
//   out = process_output((pass(tx/2, ty*2) + pass(tx*2, ty/2) + pass(tx, ty)) / 3)
//   pass(tile): per batch entry, when the latent fits the tile: decode(latent); else tiles at
//     positions range(0, size - overlap, tile - overlap) per axis (clamped to size - overlap,
//     cut to the latent), each decoded and weighted by a mask that ramps (t+1)/feather over
//     `feather` = 8·overlap image pixels at both ends of each axis (also at the image border;
//     the division by the summed masks makes that harmless); out = Σ decode·mask / Σ mask.
//
// The float operations follow the reference's order (mask products axis by axis, a sum per
// tile, passes added left to right, then / 3) so that results agree to rounding.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "backend/transfer.h"
#include "models/vae/vae.h"
#include "pipeline/engine.h"

namespace sd35 {
namespace {

// comfy.utils.tiled_scale_multidim's positions along one axis (latent pixels): the
// tile starts and lengths.
struct AxisTiles {
  std::vector<int64_t> pos, len;
};
AxisTiles axis_tiles(int64_t size, int64_t tile, int64_t overlap) {
  AxisTiles a;
  if (size <= tile) {
    a.pos = {0};
  } else {
    for (int64_t it = 0; it < size - overlap; it += tile - overlap)
      a.pos.push_back(std::max<int64_t>(0, std::min(size - overlap, it)));
  }
  for (int64_t p : a.pos) a.len.push_back(std::min(tile, size - p));
  return a;
}

// The mask factors of one axis for a tile of n image pixels: both ends multiplied by
// (t+1)/feather, unless the feather is at least the tile (then no ramp at all). Returned as
// up to two factors per pixel, applied in the reference's order (front ramp, then back).
struct AxisMask {
  std::vector<float> front, back;  // 1 where no ramp
};
AxisMask axis_mask(int64_t n, int64_t feather) {
  AxisMask m{std::vector<float>(size_t(n), 1.0f), std::vector<float>(size_t(n), 1.0f)};
  if (feather >= n) return m;
  for (int64_t t = 0; t < feather; ++t) {
    // Python: a = (t + 1) / feather (double), mul_ on a float32 tensor rounds a to float.
    const float a = float(double(t + 1) / double(feather));
    m.front[size_t(t)] *= a;
    m.back[size_t(n - 1 - t)] *= a;
  }
  return m;
}

}  // namespace

Status Engine::decode_raw(Workspace& ws, const Tensor& vae_latent, const Tensor& raw) const {
  Backend& backend = ws.backend();
  VAEOptions vo;
  vo.compute = options_.compute;
  vo.cancelled = [&ws] { return ws.cancel.load(); };
  ArenaScope scope(ws.arena());
  if (backend.device() == Device::kCPU)
    return vae_->decode(backend, ws.arena(), vae_latent, raw, vo);
  SD35_ASSIGN_OR_RETURN(Tensor lat, to_backend(backend, ws.arena(), vae_latent));
  SD35_ASSIGN_OR_RETURN(Tensor img, ws.arena().tensor(raw.shape(), DType::kF32));
  SD35_RETURN_IF_ERROR(vae_->decode(backend, ws.arena(), lat, img, vo));
  return download_bytes(backend, img, raw.data());
}

Result<Tensor> Engine::vae_decode_tiled(Workspace& ws, const Tensor& latent, int tile_x, int tile_y,
                                        int overlap) const {
  if (ws.cancel.load()) return cancelled("job cancelled");
  const int64_t z = vae_->config().z_channels;
  if (latent.ndim() != 4 || latent.size(1) != z || latent.numel() == 0)
    return invalid_argument("latent must be [B, " + std::to_string(z) + ", h, w], got " +
                            latent.describe());
  // The three passes' tiles; each must stay larger than the overlap (the reference's
  // position step tile - overlap must be positive).
  const int passes[3][2] = {{tile_x / 2, tile_y * 2}, {tile_x * 2, tile_y / 2}, {tile_x, tile_y}};
  if (overlap < 0) return invalid_argument("tile overlap must be >= 0");
  for (const auto& p : passes)
    if (p[0] <= overlap || p[1] <= overlap)
      return invalid_argument("tiles of " + std::to_string(p[0]) + "x" + std::to_string(p[1]) +
                              " latent pixels must be larger than the overlap " +
                              std::to_string(overlap));
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t f = vae_->scale_factor();
  const int64_t B = latent.size(0), h = latent.size(2), w = latent.size(3), H = h * f, W = w * f;
  const int64_t plane = H * W;

  // The VAE-space latent on the host (process_out), then everything per batch entry.
  SD35_ASSIGN_OR_RETURN(Tensor model_latent, Tensor::zeros(latent.shape(), DType::kF32));
  {
    // A plain host copy (the engine's stage inputs are host tensors); process_out follows.
    if (latent.device() != Device::kCPU || latent.dtype() != DType::kF32 || !latent.is_contiguous())
      return invalid_argument("latent must be a contiguous f32 host tensor, got " +
                              latent.describe());
    std::memcpy(model_latent.data(), latent.data(), size_t(latent.numel()) * sizeof(float));
  }
  SD35_ASSIGN_OR_RETURN(Tensor vae_latent, Tensor::zeros(latent.shape(), DType::kF32));
  if (ws.backend().device() == Device::kCPU) {
    SD35_RETURN_IF_ERROR(sd3_latent_to_vae(ws.backend(), model_latent, vae_latent));
  } else {
    ArenaScope scope(ws.arena());
    SD35_ASSIGN_OR_RETURN(Tensor dl, to_backend(ws.backend(), ws.arena(), model_latent));
    SD35_ASSIGN_OR_RETURN(Tensor dv, ws.arena().tensor(latent.shape(), DType::kF32));
    SD35_RETURN_IF_ERROR(sd3_latent_to_vae(ws.backend(), dl, dv));
    SD35_RETURN_IF_ERROR(download_bytes(ws.backend(), dv, vae_latent.data()));
  }

  SD35_ASSIGN_OR_RETURN(Tensor raw, Tensor::zeros({B, 3, H, W}, DType::kF32));
  std::vector<float> sum(size_t(3 * plane)), out(size_t(3 * plane)), div(size_t(3 * plane));
  for (int64_t b = 0; b < B; ++b) {
    const Tensor lb = vae_latent.slice(0, b, b + 1);
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (int pass = 0; pass < 3; ++pass) {
      const int64_t tx = passes[pass][0], ty = passes[pass][1];
      if (h <= ty && w <= tx) {
        // The whole latent fits: one plain decode.
        SD35_ASSIGN_OR_RETURN(Tensor whole, Tensor::zeros({1, 3, H, W}, DType::kF32));
        SD35_ASSIGN_OR_RETURN(Tensor lc, Tensor::zeros(lb.shape(), DType::kF32));
        std::memcpy(lc.data(), lb.data(), size_t(lb.numel()) * sizeof(float));
        SD35_RETURN_IF_ERROR(decode_raw(ws, lc, whole));
        const float* d = whole.data_as<const float>();
        for (int64_t i = 0; i < 3 * plane; ++i) sum[size_t(i)] += d[i];
        continue;
      }
      std::fill(out.begin(), out.end(), 0.0f);
      std::fill(div.begin(), div.end(), 0.0f);
      const AxisTiles ay = axis_tiles(h, ty, overlap), ax = axis_tiles(w, tx, overlap);
      const int64_t feather = int64_t(overlap) * f;
      for (size_t iy = 0; iy < ay.pos.size(); ++iy) {
        for (size_t ix = 0; ix < ax.pos.size(); ++ix) {
          if (ws.cancel.load()) return cancelled("job cancelled");
          const int64_t y0 = ay.pos[iy], x0 = ax.pos[ix], th = ay.len[iy], tw = ax.len[ix];
          SD35_ASSIGN_OR_RETURN(Tensor lt, Tensor::zeros({1, z, th, tw}, DType::kF32));
          for (int64_t c = 0; c < z; ++c)
            for (int64_t y = 0; y < th; ++y)
              std::memcpy(lt.data_as<float>() + (c * th + y) * tw,
                          lb.data_as<const float>() + (c * h + y0 + y) * w + x0,
                          size_t(tw) * sizeof(float));
          const int64_t TH = th * f, TW = tw * f;
          SD35_ASSIGN_OR_RETURN(Tensor timg, Tensor::zeros({1, 3, TH, TW}, DType::kF32));
          SD35_RETURN_IF_ERROR(decode_raw(ws, lt, timg));
          const AxisMask my = axis_mask(TH, feather), mx = axis_mask(TW, feather);
          const float* d = timg.data_as<const float>();
          for (int64_t c = 0; c < 3; ++c)
            for (int64_t y = 0; y < TH; ++y)
              for (int64_t x = 0; x < TW; ++x) {
                // mask = ones, ×front_y ×back_y (axis H first), ×front_x ×back_x.
                float m = 1.0f;
                m *= my.front[size_t(y)];
                m *= my.back[size_t(y)];
                m *= mx.front[size_t(x)];
                m *= mx.back[size_t(x)];
                const size_t o = size_t(c * plane + (y0 * f + y) * W + x0 * f + x);
                out[o] += d[(c * TH + y) * TW + x] * m;
                div[o] += m;
              }
        }
      }
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += out[i] / div[i];
    }
    float* r = raw.data_as<float>() + b * 3 * plane;
    for (size_t i = 0; i < sum.size(); ++i) r[i] = sum[i] / 3.0f;
  }
  SD35_ASSIGN_OR_RETURN(Tensor image, image_from_raw(raw));
  ws.timings.vae_decode_s +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return image;
}

}  // namespace sd35
