// PNG files through libpng: 8-bit RGB images as uint8 [H, W, 3] tensors (HWC, what ComfyUI's
// IMAGE tensors and SaveImage use), with tEXt chunks for generation parameters.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35 {

struct PngText {
  std::string key;    // 1..79 Latin-1 characters (PNG tEXt keyword)
  std::string value;  // stored as is (UTF-8 text is accepted by readers in practice)
};

// Writes uint8 [H, W, 3] (or [1, H, W, 3]) RGB. Errors: wrong shape/dtype, I/O.
Status write_png(const std::string& path, const Tensor& image_u8,
                 const std::vector<PngText>& text = {});
// The same PNG bytes in memory (the HTTP server's base64 images).
Result<std::string> encode_png(const Tensor& image_u8, const std::vector<PngText>& text = {});
// Reads any PNG (gray, palette, alpha, 16-bit) as 8-bit RGB uint8 [H, W, 3]; alpha is
// dropped as ComfyUI's LoadImage does for the IMAGE output.
Result<Tensor> read_png(const std::string& path);
// tEXt chunks of a PNG file (for tests and inspection).
Result<std::vector<PngText>> read_png_text(const std::string& path);

}  // namespace sd35
