// Image encoding (PNG, JPEG, WebP) of generated images and decoding (PNG, JPEG, WebP) of input
// images. Pixels are 8-bit RGB, row-major HWC: the layout of ComfyUI's IMAGE tensors after
// SaveImage's uint8 conversion, and of sd35's uint8 [H, W, 3] tensors (io/png.h).
//
// Every function returns a Status for bad or hostile input (corrupt, truncated, oversize,
// unsupported files); the libraries' longjmp error paths are contained in the .cpp files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35::media {

// A borrowed RGB image. `stride` is the distance between rows in bytes (0 = width * 3).
struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;
};
// A view of a contiguous uint8 [H, W, 3] or [1, H, W, 3] CPU tensor; fails on anything else.
Result<ImageView> image_view_of(const Tensor& image_u8);

enum class ImageFormat { kPng, kJpeg, kWebp };
std::string_view format_name(ImageFormat f);  // "png", "jpeg", "webp"
std::string_view mime_type(ImageFormat f);    // "image/png", …

enum class ChromaSubsampling { k444, k422, k420 };

// JPEG through libjpeg-turbo. The names follow comfyui-api's (sharp's) JPEG options; the
// mozjpeg-only ones are parsed by convert_output.h and reported there as not applied.
struct JpegOptions {
  int quality = 80;  // 1..100
  bool progressive = false;
  ChromaSubsampling chroma_subsampling = ChromaSubsampling::k420;
  bool optimize_coding = true;  // optimal Huffman tables (smaller file, same pixels)
};

enum class WebpPreset { kDefault, kPhoto, kPicture, kDrawing, kIcon, kText };

// WebP through libwebp, mapped from sharp's options (comfyui-api documents these names).
struct WebpOptions {
  int quality = 80;         // 1..100; for lossless it is the compression effort (as in sharp)
  int alpha_quality = 100;  // 0..100; our images have no alpha, kept for completeness
  bool lossless = false;
  bool near_lossless = false;    // lossless mode with `quality` as the preprocessing level
  bool smart_subsample = false;  // sharp YUV conversion (libwebp use_sharp_yuv)
  bool smart_deblock = false;    // adaptive deblocking filter strength (libwebp autofilter)
  WebpPreset preset = WebpPreset::kDefault;
  int effort = 4;  // 0 (fast) ..6 (slow, small) = libwebp `method`
};

// Encoders. Errors: empty/oversize image (WebP is limited to 16383 px per side, JPEG to
// 65500), bad options (out-of-range quality etc.), library failure.
Result<std::string> encode_png(const ImageView& image);
Result<std::string> encode_jpeg(const ImageView& image, const JpegOptions& options);
Result<std::string> encode_webp(const ImageView& image, const WebpOptions& options);

// Format of an encoded file from its first bytes (magic numbers); kUnsupported when it is not
// PNG/JPEG/WebP, naming what it looks like (GIF, BMP, TIFF, …) when that is recognised.
Result<ImageFormat> sniff_image_format(std::string_view bytes);

struct DecodeLimits {
  size_t max_bytes = size_t(64) << 20;  // encoded size
  int64_t max_pixels = int64_t(4096) * 4096;
  int max_side = 16384;  // MAX_RESOLUTION of ComfyUI
};

// Decodes PNG, JPEG or WebP (sniffed) to an owning uint8 [H, W, 3] tensor, as ComfyUI's
// LoadImage sees it: alpha is dropped without compositing (PIL's convert("RGB")), grayscale and
// palette images are expanded to RGB, 16-bit PNG samples keep their high byte, CMYK JPEGs are
// converted, and the EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF) is applied (LoadImage
// calls exif_transpose).
// Truncated files are errors (PIL refuses them too). Size limits are checked from the header,
// before pixels are allocated. Animated WebP is unsupported.
Result<Tensor> decode_image(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace sd35::media
