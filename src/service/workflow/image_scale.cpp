// ImageScale resampling (see image_scale.h). Written from the documented behaviour of torch's
// CPU upsampling kernels, adaptive_avg_pool2d and Pillow's Resample.c; the float operation
// order follows those kernels so results agree to rounding.
#include "service/workflow/image_scale.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace sd35::workflow {

Result<UpscaleMethod> upscale_method_from_name(std::string_view name) {
  if (name == "nearest-exact") return UpscaleMethod::kNearestExact;
  if (name == "bilinear") return UpscaleMethod::kBilinear;
  if (name == "area") return UpscaleMethod::kArea;
  if (name == "bicubic") return UpscaleMethod::kBicubic;
  if (name == "lanczos") return UpscaleMethod::kLanczos;
  return invalid_argument("unknown upscale_method '" + std::string(name) +
                          "' (expected nearest-exact, bilinear, area, bicubic or lanczos)");
}

namespace {

// torch area_pixel_compute_scale without explicit scales: input / output in float.
float pixel_scale(int64_t in, int64_t out) { return float(in) / float(out); }

// Linear taps (torch compute_source_index_and_lambda, align_corners=False): source
// index clamped at 0, the upper tap clamped to the last pixel.
struct LinearTap {
  int64_t i0, i1;
  float l0, l1;
};
LinearTap linear_tap(float scale, int64_t dst, int64_t in) {
  float src = scale * (float(dst) + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  const int64_t i0 = std::min<int64_t>(int64_t(std::floor(src)), in - 1);
  const float l1 = std::min(std::max(src - float(i0), 0.0f), 1.0f);
  return {i0, i0 + (i0 < in - 1 ? 1 : 0), 1.0f - l1, l1};
}

// Cubic taps (torch HelperInterpCubic, A = -0.75): four indices clamped to the image, the
// convolution weights of t = src - floor(src).
struct CubicTap {
  int64_t i[4];
  float w[4];
};
CubicTap cubic_tap(float scale, int64_t dst, int64_t in) {
  const float src = scale * (float(dst) + 0.5f) - 0.5f;  // not clamped for cubic
  const int64_t i0 = std::min<int64_t>(int64_t(std::floor(src)), in - 1);
  const float t = std::min(std::max(src - float(i0), 0.0f), 1.0f);
  const float A = -0.75f;
  auto conv1 = [A](float x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
  auto conv2 = [A](float x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
  CubicTap c;
  c.w[0] = conv2(t + 1.0f);
  c.w[1] = conv1(t);
  c.w[2] = conv1(1.0f - t);
  c.w[3] = conv2(1.0f - t + 1.0f);
  for (int k = 0; k < 4; ++k) c.i[k] = std::clamp<int64_t>(i0 - 1 + k, 0, in - 1);
  return c;
}

// adaptive_avg_pool2d windows: [floor(o·in/out), ceil((o+1)·in/out)).
int64_t pool_start(int64_t o, int64_t out, int64_t in) { return (o * in) / out; }
int64_t pool_end(int64_t o, int64_t out, int64_t in) { return ((o + 1) * in + out - 1) / out; }

// ---- Pillow LANCZOS (8-bit images) ----------------------------------------------------------
constexpr int kPrecisionBits = 32 - 8 - 2;

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}
double lanczos3(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

// Pillow precompute_coeffs + normalize_coeffs_8bpc: per output pixel the first input pixel,
// the tap count and fixed-point weights (ksize per pixel).
struct LanczosCoeffs {
  int ksize = 0;
  std::vector<int> first, count, k;
};
LanczosCoeffs lanczos_coeffs(int64_t in_size, int64_t out_size) {
  const double scale = double(in_size) / double(out_size);
  const double filterscale = std::max(scale, 1.0);
  const double support = 3.0 * filterscale;
  LanczosCoeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.first.resize(size_t(out_size));
  c.count.resize(size_t(out_size));
  c.k.assign(size_t(out_size) * size_t(c.ksize), 0);
  std::vector<double> w(size_t(c.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (double(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int64_t xmin = int64_t(center - support + 0.5);  // C cast: truncation toward zero
    if (xmin < 0) xmin = 0;
    int64_t xmax = int64_t(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    xmax = std::min<int64_t>(xmax, c.ksize);
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      w[size_t(x)] = lanczos3((double(x + xmin) - center + 0.5) * ss);
      ww += w[size_t(x)];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[size_t(x)] / ww : w[size_t(x)];
      const double fixed = v * double(1 << kPrecisionBits);
      c.k[size_t(xx) * size_t(c.ksize) + size_t(x)] = int(v < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    c.first[size_t(xx)] = int(xmin);
    c.count[size_t(xx)] = int(xmax);
  }
  return c;
}

uint8_t clip8(int64_t v) {
  if (v >= (int64_t(1) << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return uint8_t(v >> kPrecisionBits);
}

// One uint8 RGB image [h, w, 3] resized to [oh, ow, 3] as Pillow's ImagingResample with the
// LANCZOS filter: a horizontal pass (only when the width changes) over the rows the vertical
// pass needs, then a vertical pass (only when the height changes), each rounding to uint8.
void lanczos_resize(const uint8_t* in, int64_t h, int64_t w, uint8_t* out, int64_t oh, int64_t ow) {
  std::vector<uint8_t> tmp;
  const uint8_t* src = in;
  int64_t sh = h, sw = w, row0 = 0;
  const LanczosCoeffs cv = lanczos_coeffs(h, oh);
  if (ow != w) {
    // Rows [first used, last used] of the vertical pass (all rows when it does not run).
    int64_t y_first = 0, y_last = h;
    if (oh != h) {
      y_first = cv.first[0];
      y_last = cv.first[size_t(oh - 1)] + cv.count[size_t(oh - 1)];
    }
    const LanczosCoeffs ch = lanczos_coeffs(w, ow);
    tmp.assign(size_t((y_last - y_first) * ow * 3), 0);
    for (int64_t y = y_first; y < y_last; ++y)
      for (int64_t xx = 0; xx < ow; ++xx) {
        const int* k = &ch.k[size_t(xx) * size_t(ch.ksize)];
        const int64_t x0 = ch.first[size_t(xx)];
        for (int c = 0; c < 3; ++c) {
          int64_t ss = int64_t(1) << (kPrecisionBits - 1);
          for (int x = 0; x < ch.count[size_t(xx)]; ++x)
            ss += int64_t(in[(y * w + x0 + x) * 3 + c]) * k[x];
          tmp[size_t(((y - y_first) * ow + xx) * 3 + c)] = clip8(ss);
        }
      }
    src = tmp.data();
    sh = y_last - y_first;
    sw = ow;
    row0 = y_first;
  }
  if (oh == h) {
    std::memcpy(out, src, size_t(oh * ow * 3));
    return;
  }
  for (int64_t yy = 0; yy < oh; ++yy) {
    const int* k = &cv.k[size_t(yy) * size_t(cv.ksize)];
    const int64_t y0 = cv.first[size_t(yy)] - row0;
    for (int64_t x = 0; x < sw; ++x)
      for (int c = 0; c < 3; ++c) {
        int64_t ss = int64_t(1) << (kPrecisionBits - 1);
        for (int y = 0; y < cv.count[size_t(yy)]; ++y)
          ss += int64_t(src[((y0 + y) * sw + x) * 3 + c]) * k[y];
        out[(yy * ow + x) * 3 + c] = clip8(ss);
      }
  }
  (void)sh;
}

// SaveImage's store of a float value: uint8(clip(255·v, 0, 255)) (float32 product, truncation).
uint8_t store_u8(float v) {
  const float s = 255.0f * v;
  if (!(s > 0.0f)) return 0;  // also NaN
  return uint8_t(std::min(s, 255.0f));
}

}  // namespace

void resample_plane(const float* in, int64_t ih, int64_t iw, int64_t step, int64_t in_stride,
                    float* out, int64_t oh, int64_t ow, int64_t out_stride, UpscaleMethod method) {
  auto at = [&](int64_t y, int64_t x) { return in[y * in_stride + x * step]; };
  auto put = [&](int64_t y, int64_t x, float v) { out[y * out_stride + x * step] = v; };
  const float sy = pixel_scale(ih, oh), sx = pixel_scale(iw, ow);
  switch (method) {
    case UpscaleMethod::kNearestExact:
      for (int64_t y = 0; y < oh; ++y) {
        // torch nearest_neighbor_exact_compute_source_index: floor((dst + 0.5) · scale).
        const int64_t y0 = std::min<int64_t>(int64_t(std::floor((float(y) + 0.5f) * sy)), ih - 1);
        for (int64_t x = 0; x < ow; ++x) {
          const int64_t x0 = std::min<int64_t>(int64_t(std::floor((float(x) + 0.5f) * sx)), iw - 1);
          put(y, x, at(y0, x0));
        }
      }
      break;
    case UpscaleMethod::kBilinear:
      for (int64_t y = 0; y < oh; ++y) {
        const LinearTap ty = linear_tap(sy, y, ih);
        for (int64_t x = 0; x < ow; ++x) {
          const LinearTap tx = linear_tap(sx, x, iw);
          // The channels-last kernel (ComfyUI's image.movedim(-1, 1) is channels-last):
          // w00·x00 + w01·x01 + w10·x10 + w11·x11 with w_ab = h_a·w_b.
          const float w00 = ty.l0 * tx.l0, w01 = ty.l0 * tx.l1;
          const float w10 = ty.l1 * tx.l0, w11 = ty.l1 * tx.l1;
          float v = w00 * at(ty.i0, tx.i0);
          v = v + w01 * at(ty.i0, tx.i1);
          v = v + w10 * at(ty.i1, tx.i0);
          v = v + w11 * at(ty.i1, tx.i1);
          put(y, x, v);
        }
      }
      break;
    case UpscaleMethod::kBicubic:
      for (int64_t y = 0; y < oh; ++y) {
        const CubicTap ty = cubic_tap(sy, y, ih);
        for (int64_t x = 0; x < ow; ++x) {
          const CubicTap tx = cubic_tap(sx, x, iw);
          // Separable: rows interpolated along x first, then combined along y.
          float v = 0;
          for (int a = 0; a < 4; ++a) {
            float r = at(ty.i[a], tx.i[0]) * tx.w[0];
            for (int b = 1; b < 4; ++b) r = r + at(ty.i[a], tx.i[b]) * tx.w[b];
            v = a == 0 ? r * ty.w[0] : v + r * ty.w[a];
          }
          put(y, x, v);
        }
      }
      break;
    case UpscaleMethod::kArea:
      for (int64_t y = 0; y < oh; ++y) {
        const int64_t y0 = pool_start(y, oh, ih), y1 = pool_end(y, oh, ih);
        for (int64_t x = 0; x < ow; ++x) {
          const int64_t x0 = pool_start(x, ow, iw), x1 = pool_end(x, ow, iw);
          float sum = 0;
          for (int64_t yy = y0; yy < y1; ++yy)
            for (int64_t xx = x0; xx < x1; ++xx) sum += at(yy, xx);
          put(y, x, sum / float((y1 - y0) * (x1 - x0)));
        }
      }
      break;
    case UpscaleMethod::kLanczos: break;  // uint8 only (lanczos_resize)
  }
}

Result<Tensor> common_upscale(const Tensor& image, int width, int height, UpscaleMethod method,
                              bool crop_center) {
  if (image.ndim() != 4 || image.dtype() != DType::kU8 || image.size(3) != 3 ||
      !image.is_contiguous() || image.numel() == 0)
    return invalid_argument("image must be contiguous uint8 [B, H, W, 3], got " + image.describe());
  if (width < 1 || height < 1) return invalid_argument("width and height must be >= 1");
  const int64_t B = image.size(0), H = image.size(1), W = image.size(2);
  int64_t x = 0, y = 0;
  if (crop_center) {
    // Python floats and round() (half to even, std::nearbyint's default mode).
    const double old_aspect = double(W) / double(H), new_aspect = double(width) / double(height);
    if (old_aspect > new_aspect)
      x = int64_t(std::nearbyint((double(W) - double(W) * (new_aspect / old_aspect)) / 2));
    else if (old_aspect < new_aspect)
      y = int64_t(std::nearbyint((double(H) - double(H) * (old_aspect / new_aspect)) / 2));
  }
  const int64_t ch = H - 2 * y, cw = W - 2 * x;
  if (ch < 1 || cw < 1) return invalid_argument("the center crop leaves no pixels");
  SD35_ASSIGN_OR_RETURN(Tensor out, Tensor::zeros({B, height, width, 3}, DType::kU8));
  const uint8_t* src = image.data_as<const uint8_t>();
  uint8_t* dst = out.data_as<uint8_t>();
  std::vector<uint8_t> crop(size_t(ch * cw * 3));
  std::vector<float> fin(size_t(ch * cw * 3)), fout(size_t(int64_t(height) * width * 3));
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* img = src + b * H * W * 3;
    uint8_t* o = dst + b * int64_t(height) * width * 3;
    for (int64_t r = 0; r < ch; ++r)
      std::memcpy(&crop[size_t(r * cw * 3)], img + ((r + y) * W + x) * 3, size_t(cw * 3));
    if (method == UpscaleMethod::kLanczos) {
      // comfy.utils.lanczos: clip(255·(u/255)).astype(uint8) is u again (exact round trip),
      // PIL resizes the uint8 image, and the result u'/255 is stored back as u'.
      lanczos_resize(crop.data(), ch, cw, o, height, width);
      continue;
    }
    for (size_t i = 0; i < crop.size(); ++i) fin[i] = float(crop[i]) / 255.0f;  // LoadImage
    for (int c = 0; c < 3; ++c)
      resample_plane(fin.data() + c, ch, cw, 3, cw * 3, fout.data() + c, height, width,
                     int64_t(width) * 3, method);
    for (size_t i = 0; i < fout.size(); ++i) o[i] = store_u8(fout[i]);
  }
  return out;
}

Result<Tensor> image_scale(const Tensor& image, int width, int height, UpscaleMethod method,
                           bool crop_center) {
  if (width < 0 || height < 0) return invalid_argument("width and height must be >= 0");
  if (width == 0 && height == 0) return image;
  if (image.ndim() != 4 || image.numel() == 0)
    return invalid_argument("image must be [B, H, W, 3], got " + image.describe());
  const double H = double(image.size(1)), W = double(image.size(2));
  if (width == 0) width = int(std::max(1.0, std::nearbyint(W * height / H)));
  if (height == 0) height = int(std::max(1.0, std::nearbyint(H * width / W)));
  return common_upscale(image, width, height, method, crop_center);
}

}  // namespace sd35::workflow
