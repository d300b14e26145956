// Encoders and format sniffing. libjpeg reports errors by longjmp: the functions that call it
// hold only trivially destructible locals between setjmp and the library calls.
#include "service/media/image_codec.h"

// jpeglib.h uses size_t and FILE without including their headers.
// clang-format off
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
// clang-format on
#include <webp/encode.h>

#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "io/png.h"

namespace sd35::media {
namespace {

Status check_view(const ImageView& img, const char* what, int max_side) {
  if (!img.data || img.width < 1 || img.height < 1)
    return invalid_argument(std::string(what) + ": empty image");
  if (img.width > max_side || img.height > max_side)
    return invalid_argument(std::string(what) + ": " + std::to_string(img.width) + "x" +
                            std::to_string(img.height) + " is above the format's limit of " +
                            std::to_string(max_side) + " pixels per side");
  if (img.stride != 0 && img.stride < size_t(img.width) * 3)
    return invalid_argument(std::string(what) + ": row stride smaller than width * 3");
  return ok_status();
}
size_t row_stride(const ImageView& img) { return img.stride ? img.stride : size_t(img.width) * 3; }

// ---- JPEG -----------------------------------------------------------------------------------

struct JpegError {
  jpeg_error_mgr mgr;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}
void jpeg_no_output(j_common_ptr) {}  // libjpeg's default prints warnings to stderr

// Encodes into a malloc'ed buffer (*out, *out_size) that the caller frees, also on failure.
bool jpeg_encode_impl(const ImageView& img, size_t stride, const JpegOptions& o,
                      unsigned char** out, unsigned long* out_size, char* err) {
  jpeg_compress_struct cinfo;
  JpegError jerr;
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = jpeg_error_exit;
  jerr.mgr.output_message = jpeg_no_output;
  if (setjmp(jerr.jump)) {
    std::snprintf(err, 256, "%s", jerr.message);
    jpeg_destroy_compress(&cinfo);
    return false;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, out, out_size);
  cinfo.image_width = JDIMENSION(img.width);
  cinfo.image_height = JDIMENSION(img.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  // force_baseline: quality < 25 would otherwise produce 16-bit quantisation tables that some
  // decoders reject; sharp (libvips) does the same.
  jpeg_set_quality(&cinfo, o.quality, TRUE);
  // Luma sampling factors; chroma stays 1x1, so 2x2 luma means chroma at a quarter resolution.
  int h = 1, v = 1;
  if (o.chroma_subsampling == ChromaSubsampling::k422) h = 2;
  if (o.chroma_subsampling == ChromaSubsampling::k420) h = v = 2;
  cinfo.comp_info[0].h_samp_factor = h;
  cinfo.comp_info[0].v_samp_factor = v;
  for (int c = 1; c < 3; ++c)
    cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
  cinfo.optimize_coding = o.optimize_coding ? TRUE : FALSE;
  if (o.progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(img.data + size_t(cinfo.next_scanline) * stride);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return true;
}

WebPPreset to_webp_preset(WebpPreset p) {
  switch (p) {
    case WebpPreset::kPhoto: return WEBP_PRESET_PHOTO;
    case WebpPreset::kPicture: return WEBP_PRESET_PICTURE;
    case WebpPreset::kDrawing: return WEBP_PRESET_DRAWING;
    case WebpPreset::kIcon: return WEBP_PRESET_ICON;
    case WebpPreset::kText: return WEBP_PRESET_TEXT;
    case WebpPreset::kDefault: break;
  }
  return WEBP_PRESET_DEFAULT;
}

std::string webp_error_name(WebPEncodingError e) {
  switch (e) {
    case VP8_ENC_ERROR_OUT_OF_MEMORY: return "out of memory";
    case VP8_ENC_ERROR_BITSTREAM_OUT_OF_MEMORY: return "out of memory (bitstream)";
    case VP8_ENC_ERROR_BAD_DIMENSION: return "bad dimension";
    case VP8_ENC_ERROR_PARTITION0_OVERFLOW: return "partition 0 overflow (try a lower quality)";
    case VP8_ENC_ERROR_PARTITION_OVERFLOW: return "partition overflow";
    case VP8_ENC_ERROR_FILE_TOO_BIG: return "file too big";
    default: return "error code " + std::to_string(int(e));
  }
}

}  // namespace

Result<ImageView> image_view_of(const Tensor& image_u8) {
  Tensor img = image_u8.ndim() == 4 && image_u8.size(0) == 1 ? image_u8.select(0, 0) : image_u8;
  if (img.ndim() != 3 || img.size(2) != 3 || img.dtype() != DType::kU8 || !img.is_contiguous() ||
      img.device() != Device::kCPU || img.size(0) < 1 || img.size(1) < 1 ||
      img.size(0) > (1 << 30) || img.size(1) > (1 << 30))
    return invalid_argument("image must be a contiguous CPU uint8 [H, W, 3] tensor, got " +
                            image_u8.describe());
  return ImageView{img.data_as<const uint8_t>(), int(img.size(1)), int(img.size(0)), 0};
}

std::string_view format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::kJpeg: return "jpeg";
    case ImageFormat::kWebp: return "webp";
    case ImageFormat::kPng: break;
  }
  return "png";
}

std::string_view mime_type(ImageFormat f) {
  switch (f) {
    case ImageFormat::kJpeg: return "image/jpeg";
    case ImageFormat::kWebp: return "image/webp";
    case ImageFormat::kPng: break;
  }
  return "image/png";
}

Result<std::string> encode_png(const ImageView& image) {
  // PNG's own limit is 2^31-1; this bound only keeps the byte count arithmetic obviously safe.
  SD35_RETURN_IF_ERROR(check_view(image, "PNG", 1 << 20));
  size_t stride = row_stride(image);
  size_t row = size_t(image.width) * 3;
  // io/png.h takes a contiguous tensor; copy only when rows are padded.
  std::vector<uint8_t> packed;
  const uint8_t* data = image.data;
  if (stride != row) {
    packed.resize(row * size_t(image.height));
    for (int y = 0; y < image.height; ++y)
      std::memcpy(packed.data() + size_t(y) * row, image.data + size_t(y) * stride, row);
    data = packed.data();
  }
  Tensor t = Tensor::view_of(const_cast<uint8_t*>(data), DType::kU8,
                             {int64_t(image.height), int64_t(image.width), 3});
  return sd35::encode_png(t);
}

Result<std::string> encode_jpeg(const ImageView& image, const JpegOptions& options) {
  SD35_RETURN_IF_ERROR(check_view(image, "JPEG", JPEG_MAX_DIMENSION));
  if (options.quality < 1 || options.quality > 100)
    return invalid_argument("JPEG quality must be 1..100, got " + std::to_string(options.quality));
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  char err[256] = "libjpeg error";
  bool ok = jpeg_encode_impl(image, row_stride(image), options, &buf, &size, err);
  std::string out;
  if (ok) out.assign(reinterpret_cast<const char*>(buf), size);
  std::free(buf);
  if (!ok) return internal_error(std::string("encoding JPEG: ") + err);
  return out;
}

Result<std::string> encode_webp(const ImageView& image, const WebpOptions& o) {
  SD35_RETURN_IF_ERROR(check_view(image, "WebP", WEBP_MAX_DIMENSION));
  if (o.quality < 1 || o.quality > 100)
    return invalid_argument("WebP quality must be 1..100, got " + std::to_string(o.quality));
  if (o.alpha_quality < 0 || o.alpha_quality > 100)
    return invalid_argument("WebP alpha quality must be 0..100");
  if (o.effort < 0 || o.effort > 6)
    return invalid_argument("WebP effort must be 0..6, got " + std::to_string(o.effort));
  size_t stride = row_stride(image);
  if (stride > size_t(1) << 30) return invalid_argument("WebP: row stride too large");

  WebPConfig config;
  if (!WebPConfigPreset(&config, to_webp_preset(o.preset), float(o.quality)))
    return internal_error("libwebp version mismatch (WebPConfigPreset failed)");
  config.method = o.effort;
  config.alpha_quality = o.alpha_quality;
  config.use_sharp_yuv = o.smart_subsample ? 1 : 0;
  config.autofilter = o.smart_deblock ? 1 : 0;
  if (o.lossless || o.near_lossless) config.lossless = 1;
  // Near-lossless is lossless coding after a pixel preprocessing whose strength is 100 - level;
  // sharp passes its quality as the level, so do we.
  if (o.near_lossless) config.near_lossless = o.quality;
  if (!WebPValidateConfig(&config)) return invalid_argument("WebP: invalid option combination");

  WebPPicture pic;
  if (!WebPPictureInit(&pic)) return internal_error("libwebp version mismatch");
  pic.width = image.width;
  pic.height = image.height;
  // Lossless coding works on ARGB; importing straight into it avoids a lossy YUV round trip.
  pic.use_argb = config.lossless ? 1 : 0;
  if (!WebPPictureImportRGB(&pic, image.data, int(stride))) {
    WebPPictureFree(&pic);
    return resource_exhausted("WebP: out of memory importing the image");
  }
  WebPMemoryWriter writer;
  WebPMemoryWriterInit(&writer);
  pic.writer = WebPMemoryWrite;
  pic.custom_ptr = &writer;
  int ok = WebPEncode(&config, &pic);
  WebPEncodingError code = pic.error_code;
  WebPPictureFree(&pic);
  std::string out;
  if (ok) out.assign(reinterpret_cast<const char*>(writer.mem), writer.size);
  WebPMemoryWriterClear(&writer);
  if (!ok) return internal_error("encoding WebP: " + webp_error_name(code));
  return out;
}

Result<ImageFormat> sniff_image_format(std::string_view b) {
  auto starts = [&](std::string_view magic) { return b.substr(0, magic.size()) == magic; };
  if (starts("\x89PNG\r\n\x1a\n")) return ImageFormat::kPng;
  if (starts("\xFF\xD8\xFF")) return ImageFormat::kJpeg;
  if (b.size() >= 12 && starts("RIFF") && b.substr(8, 4) == "WEBP") return ImageFormat::kWebp;
  std::string what;
  if (starts("GIF87a") || starts("GIF89a"))
    what = "GIF";
  else if (starts("BM"))
    what = "BMP";
  else if (starts(std::string_view("II*\0", 4)) || starts(std::string_view("MM\0*", 4)))
    what = "TIFF";
  else if (starts(std::string_view("\0\0\1\0", 4)))
    what = "ICO";
  else if (b.size() >= 12 && b.substr(4, 4) == "ftyp")
    what = "an ISO media file (AVIF/HEIC/MP4)";
  if (b.empty()) return invalid_argument("image data is empty");
  if (!what.empty())
    return unsupported("image format " + what + " is not supported (use PNG, JPEG or WebP)");
  return unsupported("image data is not PNG, JPEG or WebP (unrecognised magic bytes)");
}

}  // namespace sd35::media
