// Tiled decode: the latent is cut into overlapping tiles, each decoded on its own with
// decode(), and the tiles are blended with linear ramps across their overlaps. Scratch is
// one tile's decode (plus the tile's image), so memory is bounded by the tile size however
// large the image.
//
// The result differs from decode(): the decoder's receptive field is wide and its mid
// attention is global, so a tile sees less context than the whole image. The blend hides
// the seams; it does not make the two equal (see tests/models/test_vae.cpp for numbers).
#include <algorithm>

#include "backend/transfer.h"
#include "models/vae/vae.h"
#include "models/vae/vae_internal.h"

namespace sd35 {
namespace vae_detail {

std::vector<int64_t> tile_starts(int64_t length, int64_t tile, int64_t overlap) {
  if (tile >= length) return {0};
  const int64_t step = tile - overlap;  // >= 1: validated
  std::vector<int64_t> starts;
  for (int64_t p = 0;; p = std::min(p + step, length - tile)) {
    starts.push_back(p);
    if (p + tile >= length) break;
  }
  return starts;
}

std::vector<float> tile_blend_weights(const std::vector<int64_t>& starts, int64_t edge,
                                      size_t index) {
  const size_t n = starts.size();
  // Unnormalised trapezoid of tile j at pixel g: 1 inside, falling linearly to ~0 across its
  // overlap with the previous / next tile (the actual overlap: the last tile sits flush with
  // the end, so its overlap can exceed the requested one). Pixel centres (g + 0.5) keep every
  // covered pixel's value positive, so the normalisation below is always defined.
  auto raw = [&](size_t j, int64_t g) -> double {
    const int64_t s = starts[j], e = s + edge;
    if (g < s || g >= e) return 0.0;
    double r = 1.0;
    if (j > 0) {
      const int64_t ov = starts[j - 1] + edge - s;
      if (ov > 0) r = std::min(r, (double(g - s) + 0.5) / double(ov));
    }
    if (j + 1 < n) {
      const int64_t ov = e - starts[j + 1];
      if (ov > 0) r = std::min(r, (double(e - g) - 0.5) / double(ov));
    }
    return r;
  };
  std::vector<float> w(static_cast<size_t>(edge));
  for (int64_t p = 0; p < edge; ++p) {
    const int64_t g = starts[index] + p;
    double sum = 0.0;
    for (size_t j = 0; j < n; ++j) sum += raw(j, g);
    w[size_t(p)] = float(raw(index, g) / sum);
  }
  return w;
}

}  // namespace vae_detail

using namespace vae_detail;

Status VAE::decode_tiled(Backend& backend, Arena& arena, const Tensor& latent, const Tensor& image,
                         const VAETileOptions& tiles, const VAEOptions& options) const {
  if (tiles.tile_latent < 1 || tiles.overlap_latent < 0 ||
      tiles.overlap_latent >= tiles.tile_latent) {
    return invalid_argument(
        "VAE::decode_tiled: need tile_latent >= 1 and 0 <= overlap_latent < "
        "tile_latent, got tile " +
        std::to_string(tiles.tile_latent) + ", overlap " + std::to_string(tiles.overlap_latent));
  }
  SD35_RETURN_IF_ERROR(check_decode_args(backend, impl_->cfg, impl_->weights.decoder.has_value(),
                                         latent, image, options, "VAE::decode_tiled"));
  const int64_t h = latent.size(2), w = latent.size(3), tile = tiles.tile_latent;
  // One tile covers everything: exactly decode(), without the blending copies.
  if (h <= tile && w <= tile) return decode(backend, arena, latent, image, options);

  const int64_t f = scale_factor();
  const int64_t B = latent.size(0), C = image.size(1);
  const int64_t th = std::min(tile, h), tw = std::min(tile, w);
  const int64_t TH = th * f, TW = tw * f;
  const std::vector<int64_t> ys = tile_starts(h, tile, tiles.overlap_latent);
  const std::vector<int64_t> xs = tile_starts(w, tile, tiles.overlap_latent);
  std::vector<int64_t> ys_px(ys.size()), xs_px(xs.size());
  for (size_t i = 0; i < ys.size(); ++i) ys_px[i] = ys[i] * f;
  for (size_t j = 0; j < xs.size(); ++j) xs_px[j] = xs[j] * f;

  for (size_t i = 0; i < ys.size(); ++i) {
    const std::vector<float> wy = tile_blend_weights(ys_px, TH, i);
    // Rows [new_y0, TH) of this tile row are covered for the first time.
    const int64_t new_y0 = i == 0 ? 0 : ys_px[i - 1] + TH - ys_px[i];
    for (size_t j = 0; j < xs.size(); ++j) {
      const std::vector<float> wx = tile_blend_weights(xs_px, TW, j);
      const int64_t new_x0 = j == 0 ? 0 : xs_px[j - 1] + TW - xs_px[j];
      ArenaScope scope(arena);
      SD35_ASSIGN_OR_RETURN(Tensor lt, arena.tensor(Shape{B, latent.size(1), th, tw}, DType::kF32));
      SD35_RETURN_IF_ERROR(
          backend.copy(latent.slice(2, ys[i], ys[i] + th).slice(3, xs[j], xs[j] + tw), lt));
      SD35_ASSIGN_OR_RETURN(Tensor timg, arena.tensor(Shape{B, C, TH, TW}, DType::kF32));
      SD35_RETURN_IF_ERROR(decode(backend, arena, lt, timg, options));

      // The image is not initialised, so there is nothing to add to where this tile is the
      // first to cover a pixel: those pixels get a copy of the tile and a gate of w - 1
      // (t + (w - 1)·t = w·t), the others accumulate w·t. The weights of all tiles covering
      // a pixel sum to 1, so no normalisation pass follows.
      //
      // The gate map is written on the host, in place for a host arena and uploaded for a
      // device one (TH·TW floats per tile, small next to the decode).
      SD35_ASSIGN_OR_RETURN(Tensor gate, arena.tensor(Shape{TH, TW}, DType::kF32));
      HostStaging staging(backend, gate);
      float* g = staging.data<float>();
      if (!g) return resource_exhausted("VAE::decode_tiled: out of host memory for the blend");
      for (int64_t y = 0; y < TH; ++y) {
        for (int64_t x = 0; x < TW; ++x) {
          const bool first = y >= new_y0 && x >= new_x0;
          g[y * TW + x] = wy[size_t(y)] * wx[size_t(x)] - (first ? 1.0f : 0.0f);
        }
      }
      SD35_RETURN_IF_ERROR(staging.commit());
      const Tensor region =
          image.slice(2, ys_px[i], ys_px[i] + TH).slice(3, xs_px[j], xs_px[j] + TW);
      if (new_y0 < TH && new_x0 < TW) {
        SD35_RETURN_IF_ERROR(backend.copy(timg.slice(2, new_y0, TH).slice(3, new_x0, TW),
                                          region.slice(2, new_y0, TH).slice(3, new_x0, TW)));
      }
      // gated_add works on [rows, L, D] with a per-(row, column) gate: one call per plane.
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t c = 0; c < C; ++c) {
          const Tensor dst = region.select(0, b).select(0, c).unsqueeze(1);  // [TH, 1, TW]
          const Tensor src = timg.select(0, b).select(0, c).unsqueeze(1);
          SD35_RETURN_IF_ERROR(backend.gated_add(dst, gate, src, dst));
        }
      }
    }
  }
  return ok_status();
}

}  // namespace sd35
