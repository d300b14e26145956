// Image encoding/decoding (src/service/media/image_codec.h): round trips, LoadImage semantics
// (alpha, gray, CMYK, EXIF orientation), hostile inputs (every truncation, corruption, size).
#include <gtest/gtest.h>
// jpeglib.h uses size_t and FILE without including their headers.
// clang-format off
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
// clang-format on
#include <png.h>
#include <webp/encode.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "service/media/base64.h"
#include "service/media/image_codec.h"
#include "service/media/image_input.h"

namespace sd35::media {
namespace {

// A smooth gradient with a little deterministic noise: realistic for lossy codecs.
std::vector<uint8_t> make_pixels(int w, int h, uint32_t seed = 1) {
  std::vector<uint8_t> px(size_t(w) * h * 3);
  std::mt19937 rng(seed);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &px[(size_t(y) * w + x) * 3];
      p[0] = uint8_t(x * 255 / std::max(1, w - 1));
      p[1] = uint8_t(y * 255 / std::max(1, h - 1));
      p[2] = uint8_t(128 + int(rng() % 9) - 4);
    }
  return px;
}

ImageView view(const std::vector<uint8_t>& px, int w, int h) { return {px.data(), w, h, 0}; }

std::vector<uint8_t> pixels_of(const Tensor& t) {
  const auto* p = t.data_as<const uint8_t>();
  return std::vector<uint8_t>(p, p + t.numel());
}

double mean_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) s += std::abs(int(a[i]) - int(b[i]));
  return s / double(a.size());
}

// Start-of-frame marker (C0 baseline, C2 progressive) and the luma sampling factors.
struct JpegFrame {
  int sof = 0, h = 0, v = 0;
};
JpegFrame jpeg_frame(const std::string& f) {
  for (size_t i = 2; i + 4 < f.size();) {
    if (uint8_t(f[i]) != 0xFF) return {};
    int m = uint8_t(f[i + 1]);
    size_t len = (uint8_t(f[i + 2]) << 8) | uint8_t(f[i + 3]);
    if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
      uint8_t s = uint8_t(f[i + 4 + 7]);  // precision(1) h(2) w(2) n(1) id(1) → sampling
      return {m, s >> 4, s & 15};
    }
    i += 2 + len;
  }
  return {};
}

TEST(ImageCodec, PngRoundTripIsExact) {
  auto px = make_pixels(37, 23);
  auto png = encode_png(view(px, 37, 23));
  ASSERT_TRUE(png.ok()) << png.status().to_string();
  EXPECT_EQ(*sniff_image_format(*png), ImageFormat::kPng);
  auto img = decode_image(*png);
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  EXPECT_EQ(img->shape(), Shape({23, 37, 3}));
  EXPECT_EQ(pixels_of(*img), px);
}

TEST(ImageCodec, EncodesFromPaddedRowsAndTensors) {
  int w = 5, h = 4;
  auto px = make_pixels(w, h);
  std::vector<uint8_t> padded(size_t(h) * 32, 0xEE);
  for (int y = 0; y < h; ++y) std::memcpy(&padded[size_t(y) * 32], &px[size_t(y) * w * 3], w * 3);
  auto png = encode_png({padded.data(), w, h, 32});
  ASSERT_TRUE(png.ok());
  EXPECT_EQ(pixels_of(*decode_image(*png)), px);

  Tensor t = Tensor::view_of(px.data(), DType::kU8, {1, h, w, 3});
  auto v = image_view_of(t);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->width, w);
  EXPECT_EQ(v->height, h);
  Tensor wrong = Tensor::view_of(px.data(), DType::kU8, {h, w * 3});
  EXPECT_FALSE(image_view_of(wrong).ok());
  EXPECT_FALSE(encode_png({nullptr, 0, 0, 0}).ok());
}

TEST(ImageCodec, JpegQuality100IsClose) {
  int w = 64, h = 48;
  auto px = make_pixels(w, h);
  JpegOptions o;
  o.quality = 100;
  o.chroma_subsampling = ChromaSubsampling::k444;
  auto jpg = encode_jpeg(view(px, w, h), o);
  ASSERT_TRUE(jpg.ok()) << jpg.status().to_string();
  EXPECT_EQ(*sniff_image_format(*jpg), ImageFormat::kJpeg);
  auto img = decode_image(*jpg);
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  EXPECT_EQ(img->shape(), Shape({h, w, 3}));
  EXPECT_LT(mean_abs_diff(pixels_of(*img), px), 1.5);
}

TEST(ImageCodec, JpegOptionsReachTheFile) {
  int w = 64, h = 48;
  auto px = make_pixels(w, h);
  const std::pair<ChromaSubsampling, std::pair<int, int>> kModes[] = {
      {ChromaSubsampling::k444, {1, 1}},
      {ChromaSubsampling::k422, {2, 1}},
      {ChromaSubsampling::k420, {2, 2}}};
  for (bool progressive : {false, true})
    for (const auto& [mode, hv] : kModes) {
      JpegOptions o;
      o.progressive = progressive;
      o.chroma_subsampling = mode;
      auto jpg = encode_jpeg(view(px, w, h), o);
      ASSERT_TRUE(jpg.ok());
      JpegFrame f = jpeg_frame(*jpg);
      EXPECT_EQ(f.sof, progressive ? 0xC2 : 0xC0);
      EXPECT_EQ(f.h, hv.first);
      EXPECT_EQ(f.v, hv.second);
      auto img = decode_image(*jpg);
      ASSERT_TRUE(img.ok());
      EXPECT_LT(mean_abs_diff(pixels_of(*img), px), 6.0);
    }
  JpegOptions lo, hi;
  lo.quality = 10;
  hi.quality = 95;
  EXPECT_LT(encode_jpeg(view(px, w, h), lo)->size(), encode_jpeg(view(px, w, h), hi)->size());
  JpegOptions bad;
  bad.quality = 0;
  EXPECT_EQ(encode_jpeg(view(px, w, h), bad).status().code(), StatusCode::kInvalidArgument);
}

TEST(ImageCodec, WebpLosslessIsExactAndLossyIsClose) {
  int w = 40, h = 30;
  auto px = make_pixels(w, h);
  WebpOptions lossless;
  lossless.lossless = true;
  auto a = encode_webp(view(px, w, h), lossless);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(*sniff_image_format(*a), ImageFormat::kWebp);
  auto img = decode_image(*a);
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  EXPECT_EQ(pixels_of(*img), px);

  for (int effort : {0, 6})
    for (WebpPreset preset : {WebpPreset::kDefault, WebpPreset::kPhoto, WebpPreset::kText}) {
      WebpOptions o;
      o.quality = 90;
      o.effort = effort;
      o.preset = preset;
      o.smart_subsample = true;
      o.smart_deblock = true;
      auto b = encode_webp(view(px, w, h), o);
      ASSERT_TRUE(b.ok()) << b.status().to_string();
      auto d = decode_image(*b);
      ASSERT_TRUE(d.ok());
      EXPECT_LT(mean_abs_diff(pixels_of(*d), px), 6.0);
    }
  WebpOptions near;
  near.near_lossless = true;
  near.quality = 60;
  auto c = encode_webp(view(px, w, h), near);
  ASSERT_TRUE(c.ok());
  EXPECT_LT(mean_abs_diff(pixels_of(*decode_image(*c)), px), 3.0);
  WebpOptions bad;
  bad.effort = 7;
  EXPECT_EQ(encode_webp(view(px, w, h), bad).status().code(), StatusCode::kInvalidArgument);
}

// ---- LoadImage semantics ----------------------------------------------------------------------

// A PNG of any libpng color type, written with libpng directly (our encoder only writes RGB).
std::string write_png_raw(int w, int h, int color_type, int bit_depth,
                          const std::vector<uint8_t>& samples,
                          const std::vector<png_color>& palette = {},
                          const std::vector<uint8_t>& exif = {}) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep d, png_size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<char*>(d), n);
      },
      nullptr);
  png_set_IHDR(png, info, w, h, bit_depth, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), int(palette.size()));
  if (!exif.empty())
    png_set_eXIf_1(png, info, png_uint_32(exif.size()), const_cast<uint8_t*>(exif.data()));
  png_write_info(png, info);
  size_t row = samples.size() / h;
  for (int y = 0; y < h; ++y) png_write_row(png, const_cast<uint8_t*>(&samples[y * row]));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

TEST(ImageDecode, PngAlphaIsDroppedGrayExpandedSixteenBitHighByte) {
  // RGBA: alpha dropped without compositing (PIL convert("RGB")).
  std::vector<uint8_t> rgba = {10, 20, 30, 0, 40, 50, 60, 128};
  auto img = decode_image(write_png_raw(2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba));
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  EXPECT_EQ(pixels_of(*img), (std::vector<uint8_t>{10, 20, 30, 40, 50, 60}));
  // Gray + alpha.
  img = decode_image(write_png_raw(2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, {7, 255, 200, 0}));
  ASSERT_TRUE(img.ok());
  EXPECT_EQ(pixels_of(*img), (std::vector<uint8_t>{7, 7, 7, 200, 200, 200}));
  // 16-bit RGB: high byte.
  img = decode_image(
      write_png_raw(1, 1, PNG_COLOR_TYPE_RGB, 16, {0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC}));
  ASSERT_TRUE(img.ok());
  EXPECT_EQ(pixels_of(*img), (std::vector<uint8_t>{0x12, 0x56, 0x9A}));
  // Palette.
  std::vector<png_color> pal = {{1, 2, 3}, {250, 251, 252}};
  img = decode_image(write_png_raw(2, 1, PNG_COLOR_TYPE_PALETTE, 8, {1, 0}, pal));
  ASSERT_TRUE(img.ok());
  EXPECT_EQ(pixels_of(*img), (std::vector<uint8_t>{250, 251, 252, 1, 2, 3}));
}

TEST(ImageDecode, WebpAlphaIsDropped) {
  std::vector<uint8_t> rgba = {10, 20, 30, 0, 40, 50, 60, 255, 70, 80, 90, 10, 1, 2, 3, 4};
  uint8_t* out = nullptr;
  size_t n = WebPEncodeLosslessRGBA(rgba.data(), 2, 2, 8, &out);
  ASSERT_GT(n, 0u);
  std::string file(reinterpret_cast<char*>(out), n);
  WebPFree(out);
  auto img = decode_image(file);
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  // Fully transparent pixels keep their RGB only with `exact`; compare the opaque ones.
  auto p = pixels_of(*img);
  EXPECT_EQ(std::vector<uint8_t>(p.begin() + 3, p.begin() + 6), (std::vector<uint8_t>{40, 50, 60}));
  EXPECT_EQ(std::vector<uint8_t>(p.begin() + 6, p.begin() + 9), (std::vector<uint8_t>{70, 80, 90}));
}

// A JPEG written with libjpeg directly: gray or CMYK input, optional APP1 EXIF orientation.
std::string write_jpeg_raw(int w, int h, int components, J_COLOR_SPACE space,
                           const std::vector<uint8_t>& samples, int orientation = 0) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = w;
  c.image_height = h;
  c.input_components = components;
  c.in_color_space = space;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  for (int i = 0; i < c.num_components; ++i)
    c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
  jpeg_start_compress(&c, TRUE);
  if (orientation) {
    // "Exif\0\0" + little-endian TIFF header + IFD0 with one SHORT entry 0x0112.
    const uint8_t exif[] = {'E', 'x',  'i',  'f', 0,
                            0,   'I',  'I',  42,  0,
                            8,   0,    0,    0,   1,
                            0,   0x12, 0x01, 3,   0,
                            1,   0,    0,    0,   uint8_t(orientation),
                            0,   0,    0,    0,   0,
                            0,   0};
    jpeg_write_marker(&c, JPEG_APP0 + 1, exif, sizeof exif);
  }
  size_t row = size_t(w) * components;
  while (c.next_scanline < c.image_height) {
    JSAMPROW r = const_cast<uint8_t*>(&samples[c.next_scanline * row]);
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::string out(reinterpret_cast<char*>(buf), size);
  std::free(buf);
  return out;
}

TEST(ImageDecode, GrayAndAdobeCmykJpegsBecomeRgb) {
  std::vector<uint8_t> gray(16 * 16, 77);
  auto img = decode_image(write_jpeg_raw(16, 16, 1, JCS_GRAYSCALE, gray));
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  EXPECT_EQ(img->shape(), Shape({16, 16, 3}));
  EXPECT_NEAR(pixels_of(*img)[0], 77, 1);
  EXPECT_NEAR(pixels_of(*img)[2], 77, 1);
  // libjpeg writes an Adobe marker for CMYK; Adobe CMYK is stored inverted, so stored
  // (c', m', y', k') = (200, 100, 50, 255) is C=55, M=155, Y=205, K=0 → RGB (200, 100, 50).
  std::vector<uint8_t> cmyk;
  for (int i = 0; i < 16 * 16; ++i) cmyk.insert(cmyk.end(), {200, 100, 50, 255});
  img = decode_image(write_jpeg_raw(16, 16, 4, JCS_CMYK, cmyk));
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  auto p = pixels_of(*img);
  EXPECT_NEAR(p[0], 200, 2);
  EXPECT_NEAR(p[1], 100, 2);
  EXPECT_NEAR(p[2], 50, 2);
}

TEST(ImageDecode, JpegExifOrientationIsApplied) {
  // 16 wide, 8 high: left half black, right half white.
  int w = 16, h = 8;
  std::vector<uint8_t> px(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) px[(size_t(y) * w + x) * 3 + c] = x < w / 2 ? 0 : 255;
  auto at = [](const Tensor& t, int y, int x) {
    return t.data_as<const uint8_t>()[(size_t(y) * t.size(1) + x) * 3];
  };
  auto none = decode_image(write_jpeg_raw(w, h, 3, JCS_RGB, px, 1));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->shape(), Shape({8, 16, 3}));
  // 6 = rotate 90° clockwise: the left (black) half ends on top.
  auto cw = decode_image(write_jpeg_raw(w, h, 3, JCS_RGB, px, 6));
  ASSERT_TRUE(cw.ok()) << cw.status().to_string();
  EXPECT_EQ(cw->shape(), Shape({16, 8, 3}));
  EXPECT_LT(at(*cw, 1, 4), 30);
  EXPECT_GT(at(*cw, 14, 4), 225);
  // 8 = rotate 90° counter-clockwise: the white half on top.
  auto ccw = decode_image(write_jpeg_raw(w, h, 3, JCS_RGB, px, 8));
  ASSERT_TRUE(ccw.ok());
  EXPECT_GT(at(*ccw, 1, 4), 225);
  EXPECT_LT(at(*ccw, 14, 4), 30);
  // 2 = mirror: white on the left.
  auto mirror = decode_image(write_jpeg_raw(w, h, 3, JCS_RGB, px, 2));
  ASSERT_TRUE(mirror.ok());
  EXPECT_EQ(mirror->shape(), Shape({8, 16, 3}));
  EXPECT_GT(at(*mirror, 4, 1), 225);
}

// A little-endian TIFF block whose IFD0 has one entry: Orientation = o.
std::vector<uint8_t> tiff_orientation(int o) {
  return {'I', 'I', 42, 0, 8, 0,          0, 0, 1, 0, 0x12, 0x01, 3,
          0,   1,   0,  0, 0, uint8_t(o), 0, 0, 0, 0, 0,    0,    0};
}

// 4 wide, 2 high: left half black, right half white; after orientation 6 (90° clockwise) the
// image is 2 wide, 4 high with black on top.
std::vector<uint8_t> half_black_half_white() {
  std::vector<uint8_t> px;
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) px.insert(px.end(), 3, x < 2 ? 0 : 255);
  return px;
}
void expect_rotated_clockwise(const Result<Tensor>& img) {
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  ASSERT_EQ(img->shape(), Shape({4, 2, 3}));
  auto p = pixels_of(*img);
  EXPECT_EQ(p[0], 0);                  // top-left
  EXPECT_EQ(p[(3 * 2 + 1) * 3], 255);  // bottom-right
}

TEST(ImageDecode, PngAndWebpExifOrientationIsApplied) {
  auto px = half_black_half_white();
  expect_rotated_clockwise(
      decode_image(write_png_raw(4, 2, PNG_COLOR_TYPE_RGB, 8, px, {}, tiff_orientation(6))));

  // WebP: a VP8X container around a lossless bitstream, with an EXIF chunk.
  WebpOptions lossless;
  lossless.lossless = true;
  std::string simple = *encode_webp({px.data(), 4, 2, 0}, lossless);
  ASSERT_EQ(simple.substr(12, 4), "VP8L");
  auto le32 = [](uint32_t v) {
    return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
  };
  std::vector<uint8_t> tiff = tiff_orientation(6);
  std::string exif_chunk =
      "EXIF" + le32(uint32_t(tiff.size())) + std::string(tiff.begin(), tiff.end());
  // VP8X: flags (0x08 = EXIF present), 3 reserved bytes, canvas width−1 and height−1 (24 bit).
  std::string vp8x = std::string("VP8X") + le32(10) + std::string("\x08\0\0\0", 4) +
                     std::string("\x03\0\0\x01\0\0", 6);
  std::string body = "WEBP" + vp8x + simple.substr(12) + exif_chunk;
  std::string file = "RIFF" + le32(uint32_t(body.size())) + body;
  expect_rotated_clockwise(decode_image(file));
}

// ---- hostile input ----------------------------------------------------------------------------

std::vector<std::pair<const char*, std::string>> small_files() {
  int w = 13, h = 9;
  auto px = make_pixels(w, h, 3);
  JpegOptions prog;
  prog.progressive = true;
  WebpOptions lossless;
  lossless.lossless = true;
  return {{"png", *encode_png(view(px, w, h))},
          {"jpeg", *encode_jpeg(view(px, w, h), {})},
          {"jpeg-progressive", *encode_jpeg(view(px, w, h), prog)},
          {"webp", *encode_webp(view(px, w, h), {})},
          {"webp-lossless", *encode_webp(view(px, w, h), lossless)}};
}

TEST(ImageDecode, EveryTruncationIsAnErrorNotACrash) {
  for (const auto& [name, file] : small_files()) {
    ASSERT_TRUE(decode_image(file).ok()) << name;
    for (size_t n = 0; n < file.size(); ++n) {
      auto r = decode_image(std::string_view(file.data(), n));
      EXPECT_FALSE(r.ok()) << name << " truncated to " << n << " of " << file.size();
      if (!r.ok()) {
        EXPECT_FALSE(r.status().message().empty());
      }
    }
  }
}

TEST(ImageDecode, CorruptBytesNeverCrash) {
  std::mt19937 rng(11);
  for (const auto& [name, file] : small_files()) {
    for (int trial = 0; trial < 300; ++trial) {
      std::string f = file;
      int flips = 1 + int(rng() % 4);
      for (int i = 0; i < flips; ++i) f[rng() % f.size()] = char(rng());
      auto r = decode_image(f);  // either outcome is fine; no crash, no hang
      if (r.ok()) {
        EXPECT_EQ(r->ndim(), 3);
        EXPECT_EQ(r->size(2), 3);
      }
    }
  }
}

TEST(ImageDecode, LimitsAreEnforcedBeforeDecoding) {
  for (const auto& [name, file] : small_files()) {
    DecodeLimits pixels;
    pixels.max_pixels = 100;  // 13 × 9 = 117
    auto r = decode_image(file, pixels);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << name;
    EXPECT_NE(r.status().message().find("13x9"), std::string::npos) << r.status().message();
    DecodeLimits side;
    side.max_side = 12;
    EXPECT_EQ(decode_image(file, side).status().code(), StatusCode::kResourceExhausted) << name;
    DecodeLimits bytes;
    bytes.max_bytes = file.size() - 1;
    EXPECT_EQ(decode_image(file, bytes).status().code(), StatusCode::kResourceExhausted) << name;
  }
}

TEST(ImageDecode, UnsupportedFormatsAreNamed) {
  auto gif = decode_image(std::string("GIF89a\x01\x00\x01\x00", 10));
  ASSERT_FALSE(gif.ok());
  EXPECT_EQ(gif.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(gif.status().message().find("GIF"), std::string::npos);
  EXPECT_EQ(decode_image("hello world").status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(decode_image("").status().code(), StatusCode::kInvalidArgument);
}

TEST(ImageInput, ClassifiesLikeComfyuiApi) {
  EXPECT_EQ(classify_input_image("data:image/png;base64,AA=="), InputImageKind::kDataUrl);
  EXPECT_EQ(classify_input_image("HTTPS://x.org/a.png"), InputImageKind::kHttpUrl);
  EXPECT_EQ(classify_input_image("s3://bucket/a.png"), InputImageKind::kOtherUrl);
  EXPECT_EQ(classify_input_image("/opt/in/a.png"), InputImageKind::kPath);
  EXPECT_EQ(classify_input_image("./a.png"), InputImageKind::kPath);
  EXPECT_EQ(classify_input_image("/9j/4AAQSkZJRgABAQ=="), InputImageKind::kBase64);  // a JPEG
  EXPECT_EQ(classify_input_image("iVBORw0KGgo="), InputImageKind::kBase64);
}

TEST(ImageInput, DecodesBase64AndDataUrls) {
  int w = 6, h = 5;
  auto px = make_pixels(w, h);
  std::string png = *encode_png(view(px, w, h));
  InputImageOptions o;
  auto a = load_input_image(base64_encode(png), o);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(pixels_of(*a), px);
  // The media type is not trusted: a PNG labelled JPEG is still a PNG.
  auto b = load_input_image("data:image/jpeg;base64," + base64_encode(png), o);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_EQ(pixels_of(*b), px);
  auto bad = load_input_image("iVBOR!!!", o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("offset 5"), std::string::npos) << bad.status().message();
  auto junk = load_input_image(base64_encode("not an image at all"), o);
  EXPECT_EQ(junk.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(load_input_image("s3://b/k.png", o).status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(load_input_image("/etc/passwd", o).status().code(), StatusCode::kUnsupported);
  o.limits.max_bytes = png.size() - 1;
  EXPECT_EQ(load_input_image(base64_encode(png), o).status().code(),
            StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace sd35::media
