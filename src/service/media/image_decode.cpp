// Decoders for input images (img2img). Inputs come from the network, so everything here assumes
// hostile bytes: sizes are checked from the headers before pixels are allocated, truncation is
// an error, and libpng/libjpeg's longjmp error paths run in functions that hold only trivially
// destructible locals (buffers they own are freed in the setjmp branch).
// jpeglib.h uses size_t and FILE without including their headers.
// clang-format off
#include <cstddef>
#include <cstdio>
#include <jerror.h>
#include <jpeglib.h>
// clang-format on
#include <png.h>
#include <webp/decode.h>

#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "service/media/image_codec.h"

namespace sd35::media {
namespace {

enum class Fail { kNone, kCorrupt, kTooLarge, kNoMemory };

struct Decoded {
  uint32_t w = 0, h = 0;
  int channels = 3;           // 3 RGB, 4 CMYK (JPEG only)
  bool adobe_cmyk = false;    // inverted CMYK as Adobe applications write it
  int orientation = 1;        // EXIF orientation, 1 = as stored
  uint8_t* pixels = nullptr;  // malloc'ed, w * h * channels
  Fail fail = Fail::kNone;
  char message[256] = "";
};

bool too_large(uint64_t w, uint64_t h, const DecodeLimits& lim) {
  return w > uint64_t(lim.max_side) || h > uint64_t(lim.max_side) ||
         w * h > uint64_t(lim.max_pixels);
}
void set_too_large(Decoded* out, const char* fmt, uint64_t w, uint64_t h, const DecodeLimits& lim) {
  out->fail = Fail::kTooLarge;
  std::snprintf(out->message, sizeof out->message,
                "%s image is %llux%llu, above the limit (%lld pixels, %d per side)", fmt,
                (unsigned long long)w, (unsigned long long)h, (long long)lim.max_pixels,
                lim.max_side);
}

uint32_t read_u16(const uint8_t* p, bool le) {
  return le ? p[0] | (p[1] << 8) : (p[0] << 8) | p[1];
}
uint32_t read_u32(const uint8_t* p, bool le) {
  return le ? uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) |
                  (uint32_t(p[3]) << 24)
            : (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

// Orientation (tag 0x0112 of IFD0) from an EXIF block: a TIFF structure, optionally behind the
// "Exif\0\0" header JPEG's APP1 uses (some writers put it in PNG eXIf / WebP EXIF too). 1 when
// absent or malformed (PIL also ignores broken EXIF blocks).
int exif_orientation(const uint8_t* p, size_t n) {
  if (n >= 6 && std::memcmp(p, "Exif\0\0", 6) == 0) {
    p += 6;
    n -= 6;
  }
  if (n < 8) return 1;
  bool le;
  if (std::memcmp(p, "II*\0", 4) == 0)
    le = true;
  else if (std::memcmp(p, "MM\0*", 4) == 0)
    le = false;
  else
    return 1;
  uint64_t ifd = read_u32(p + 4, le);  // offsets are relative to the TIFF header
  if (ifd + 2 > n) return 1;
  uint32_t count = read_u16(p + ifd, le);
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t e = ifd + 2 + uint64_t(i) * 12;
    if (e + 12 > n) return 1;
    if (read_u16(p + e, le) == 0x0112 && read_u16(p + e + 2, le) == 3) {
      uint32_t v = read_u16(p + e + 8, le);
      return v >= 1 && v <= 8 ? int(v) : 1;
    }
  }
  return 1;
}

// The EXIF chunk of an extended (VP8X) WebP file, walking the RIFF chunks; 1 without one.
int webp_exif_orientation(const uint8_t* p, size_t n) {
  size_t pos = 12;  // "RIFF" size "WEBP"
  while (pos + 8 <= n) {
    uint32_t size = read_u32(p + pos + 4, true);
    if (size > n - pos - 8) return 1;
    if (std::memcmp(p + pos, "EXIF", 4) == 0) return exif_orientation(p + pos + 8, size);
    pos += 8 + size + (size & 1);  // chunks are padded to even sizes
  }
  return 1;
}

// ---- PNG ------------------------------------------------------------------------------------

struct PngSource {
  const uint8_t* data;
  size_t size;
  size_t pos;
  png_bytepp rows;  // malloc'ed row pointers; here (not a local) so the error path frees them
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* out = static_cast<Decoded*>(png_get_error_ptr(png));
  if (out->fail == Fail::kNone) out->fail = Fail::kCorrupt;
  if (out->message[0] == '\0') std::snprintf(out->message, sizeof out->message, "%s", msg);
  png_longjmp(png, 1);
}
void png_on_warning(png_structp, png_const_charp) {}

void png_read_memory(png_structp png, png_bytep dst, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "truncated PNG data");
  std::memcpy(dst, src->data + src->pos, n);
  src->pos += n;
}

bool png_decode_impl(PngSource* src, const DecodeLimits* lim, Decoded* out) {
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, out, png_on_error, png_on_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    std::free(src->rows);
    src->rows = nullptr;
    std::free(out->pixels);
    out->pixels = nullptr;
    if (out->fail == Fail::kNone) out->fail = Fail::kCorrupt;
    return false;
  }
  png_set_read_fn(png, src, png_read_memory);
  // Dimensions are checked against our limits right after IHDR (libpng's own user limit,
  // 1'000'000 per side, stays as a backstop) and before any pixel allocation.
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (too_large(w, h, *lim)) {
    set_too_large(out, "PNG", w, h, *lim);
    png_error(png, out->message);
  }
  int color = png_get_color_type(png, info);
  png_set_expand(png);       // palette → RGB, gray < 8 bit → 8 bit, tRNS → alpha
  png_set_strip_16(png);     // high byte, as PIL reads 16-bit RGB
  png_set_strip_alpha(png);  // LoadImage's IMAGE ignores alpha (no compositing)
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != size_t(w) * 3) png_error(png, "unexpected PNG row layout");
  out->w = w;
  out->h = h;
  out->pixels = static_cast<uint8_t*>(std::malloc(size_t(w) * h * 3));
  src->rows = static_cast<png_bytepp>(std::malloc(sizeof(png_bytep) * h));
  if (!out->pixels || !src->rows) {
    out->fail = Fail::kNoMemory;
    png_error(png, "out of memory");
  }
  for (png_uint_32 y = 0; y < h; ++y) src->rows[y] = out->pixels + size_t(y) * w * 3;
  png_read_image(png, src->rows);
  png_read_end(png, info);  // checks the rest up to IEND: truncation is an error
  // eXIf may come before or after the image data; both end up in `info`.
  png_uint_32 exif_size = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(png, info, &exif_size, &exif) && exif)
    out->orientation = exif_orientation(exif, exif_size);
  png_destroy_read_struct(&png, &info, nullptr);
  std::free(src->rows);
  src->rows = nullptr;
  return true;
}

// ---- JPEG -----------------------------------------------------------------------------------

struct JpegError {
  jpeg_error_mgr mgr;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  Decoded* out;
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  if (e->out->fail == Fail::kNone) {
    e->out->fail = Fail::kCorrupt;
    char msg[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, msg);
    std::snprintf(e->out->message, sizeof e->out->message, "%s", msg);
  }
  std::longjmp(e->jump, 1);
}
// Warnings are ignored (PIL tolerates "extraneous bytes" and similar) except the end of data:
// libjpeg then pads with a fake EOI and returns gray rows, where PIL raises "truncated".
void jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_error_exit(cinfo);
}
void jpeg_no_output(j_common_ptr) {}

// Progressive JPEGs with thousands of tiny scans are a known CPU-exhaustion input; no real
// encoder writes more than a few dozen.
constexpr int kMaxJpegScans = 500;
void jpeg_progress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->is_decompressor && d->input_scan_number > kMaxJpegScans) {
    auto* e = reinterpret_cast<JpegError*>(cinfo->err);
    e->out->fail = Fail::kCorrupt;
    std::snprintf(e->out->message, sizeof e->out->message,
                  "progressive JPEG has more than %d scans", kMaxJpegScans);
    std::longjmp(e->jump, 1);
  }
}

bool jpeg_decode_impl(const uint8_t* data, size_t size, const DecodeLimits* lim, Decoded* out) {
  jpeg_decompress_struct cinfo;
  JpegError jerr;
  jpeg_progress_mgr progress;
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = jpeg_error_exit;
  jerr.mgr.emit_message = jpeg_emit_message;
  jerr.mgr.output_message = jpeg_no_output;
  jerr.out = out;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::free(out->pixels);
    out->pixels = nullptr;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  progress.progress_monitor = jpeg_progress;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  if (too_large(cinfo.image_width, cinfo.image_height, *lim)) {
    set_too_large(out, "JPEG", cinfo.image_width, cinfo.image_height, *lim);
    std::longjmp(jerr.jump, 1);
  }
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
    if (m->marker == JPEG_APP0 + 1) {
      out->orientation = exif_orientation(m->data, m->data_length);
      if (out->orientation != 1) break;
    }
  // libjpeg-turbo cannot convert CMYK/YCCK to RGB itself; take CMYK and convert below.
  bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // gray → RGB is done by libjpeg
  out->adobe_cmyk = cmyk && cinfo.saw_Adobe_marker;
  jpeg_start_decompress(&cinfo);
  out->channels = cinfo.output_components;
  if (out->channels != (cmyk ? 4 : 3)) {
    out->fail = Fail::kCorrupt;
    std::snprintf(out->message, sizeof out->message, "unexpected JPEG component count %d",
                  out->channels);
    std::longjmp(jerr.jump, 1);
  }
  out->w = cinfo.output_width;
  out->h = cinfo.output_height;
  size_t row = size_t(out->w) * out->channels;
  out->pixels = static_cast<uint8_t*>(std::malloc(row * out->h));
  if (!out->pixels) {
    out->fail = Fail::kNoMemory;
    std::snprintf(out->message, sizeof out->message, "out of memory");
    std::longjmp(jerr.jump, 1);
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW r = out->pixels + size_t(cinfo.output_scanline) * row;
    jpeg_read_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// CMYK → RGB in place (4 → 3 bytes per pixel), as Pillow does: R = (255 − C)(255 − K)/255,
// where Adobe files store 255 − C.
void cmyk_to_rgb(Decoded* d) {
  size_t n = size_t(d->w) * d->h;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = d->pixels + i * 4;
    int k = d->adobe_cmyk ? s[3] : 255 - s[3];
    for (int c = 0; c < 3; ++c) {
      int inv = d->adobe_cmyk ? s[c] : 255 - s[c];  // 255 − C
      d->pixels[i * 3 + c] = uint8_t((inv * k + 127) / 255);
    }
  }
  d->channels = 3;
}

// PIL's ImageOps.exif_transpose for orientations 2..8. Returns nullptr on allocation failure.
uint8_t* apply_orientation(const uint8_t* src, uint32_t w, uint32_t h, int o, uint32_t* ow,
                           uint32_t* oh) {
  bool swap = o >= 5;
  *ow = swap ? h : w;
  *oh = swap ? w : h;
  auto* dst = static_cast<uint8_t*>(std::malloc(size_t(w) * h * 3));
  if (!dst) return nullptr;
  for (uint32_t y = 0; y < *oh; ++y)
    for (uint32_t x = 0; x < *ow; ++x) {
      uint32_t sx = x, sy = y;
      switch (o) {
        case 2: sx = w - 1 - x; break;  // mirror
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;                        // rotate 180
        case 4: sy = h - 1 - y; break;  // flip
        case 5:
          sx = y;
          sy = x;
          break;  // transpose
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;  // rotate 90 clockwise
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;  // transverse
        case 8:
          sx = w - 1 - y;
          sy = x;
          break;  // rotate 90 counter-clockwise
        default: break;
      }
      std::memcpy(dst + (size_t(y) * *ow + x) * 3, src + (size_t(sy) * w + sx) * 3, 3);
    }
  return dst;
}

Status to_status(const Decoded& d, const char* fmt) {
  std::string msg = std::string("decoding ") + fmt + ": " + d.message;
  switch (d.fail) {
    case Fail::kTooLarge: return resource_exhausted(d.message);
    case Fail::kNoMemory: return resource_exhausted(msg);
    default: return data_loss(msg + " (corrupt or truncated file)");
  }
}

Tensor wrap(uint8_t* pixels, uint32_t w, uint32_t h) {
  std::shared_ptr<void> owner(pixels, std::free);
  return Tensor::view_of(pixels, DType::kU8, {int64_t(h), int64_t(w), 3}, Device::kCPU, owner);
}

Status decode_webp(std::string_view bytes, const DecodeLimits& lim, Decoded* out) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures f;
  VP8StatusCode st = WebPGetFeatures(data, bytes.size(), &f);
  if (st == VP8_STATUS_NOT_ENOUGH_DATA) return data_loss("decoding WebP: truncated file");
  if (st != VP8_STATUS_OK)
    return data_loss("decoding WebP: corrupt file (status " + std::to_string(int(st)) + ")");
  if (f.has_animation) return unsupported("animated WebP images are not supported");
  if (f.width < 1 || f.height < 1) return data_loss("decoding WebP: bad dimensions");
  if (too_large(uint64_t(f.width), uint64_t(f.height), lim)) {
    set_too_large(out, "WebP", uint64_t(f.width), uint64_t(f.height), lim);
    return resource_exhausted(out->message);
  }
  size_t n = size_t(f.width) * size_t(f.height) * 3;
  auto* px = static_cast<uint8_t*>(std::malloc(n));
  if (!px) return resource_exhausted("decoding WebP: out of memory");
  // RGB output drops alpha without compositing, like PIL's convert("RGB").
  if (!WebPDecodeRGBInto(data, bytes.size(), px, n, f.width * 3)) {
    std::free(px);
    return data_loss("decoding WebP: corrupt or truncated file");
  }
  out->pixels = px;
  out->w = uint32_t(f.width);
  out->h = uint32_t(f.height);
  out->orientation = webp_exif_orientation(data, bytes.size());
  return ok_status();
}

}  // namespace

Result<Tensor> decode_image(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.size() > limits.max_bytes)
    return resource_exhausted("image is " + std::to_string(bytes.size()) +
                              " bytes, above the limit of " + std::to_string(limits.max_bytes));
  SD35_ASSIGN_OR_RETURN(ImageFormat format, sniff_image_format(bytes));
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  Decoded d;
  switch (format) {
    case ImageFormat::kWebp: SD35_RETURN_IF_ERROR(decode_webp(bytes, limits, &d)); break;
    case ImageFormat::kPng: {
      PngSource src{data, bytes.size(), 0, nullptr};
      if (!png_decode_impl(&src, &limits, &d)) return to_status(d, "PNG");
      break;
    }
    case ImageFormat::kJpeg:
      if (!jpeg_decode_impl(data, bytes.size(), &limits, &d)) return to_status(d, "JPEG");
      if (d.channels == 4) cmyk_to_rgb(&d);
      break;
  }
  if (d.orientation != 1) {
    uint32_t w = 0, h = 0;
    uint8_t* rotated = apply_orientation(d.pixels, d.w, d.h, d.orientation, &w, &h);
    std::free(d.pixels);
    if (!rotated) return resource_exhausted("decoding image: out of memory");
    d.pixels = rotated;
    d.w = w;
    d.h = h;
  }
  return wrap(d.pixels, d.w, d.h);
}

}  // namespace sd35::media
