// ComfyUI's ImageScale node (nodes.py ImageScale over comfy/utils.py common_upscale) on the
// uint8 [B, H, W, 3] images that flow between this executor's nodes.
//
// ComfyUI keeps IMAGE values as float32 in [0, 1]; here an IMAGE is uint8 and stands for the
// float image u / 255 (exactly what LoadImage produces, and what SaveImage writes back: the
// float32 round trip u / 255 · 255 is exact for every u). So the resampling runs in float32
// on u / 255, as torch.nn.functional.interpolate does (align_corners=False, no antialias),
// and its result is stored the way SaveImage stores it: uint8(clip(255·v, 0, 255)), a
// truncation. An ImageScale feeding SaveImage therefore gives ComfyUI's pixels (up to float
// rounding in the last bit); one feeding VAEEncode loses what the truncation drops (< 1/255).
//
// Methods (ComfyUI's names): nearest-exact (torch "nearest-exact"), bilinear, bicubic (A =
// -0.75, indices clamped at the border, values may overshoot and are clipped on store), area
// (torch adaptive_avg_pool2d windows), lanczos (PIL's LANCZOS resize of the uint8 image, as
// ComfyUI's comfy.utils.lanczos does: 8-bit fixed-point, horizontal pass then vertical).
#pragma once

#include <string_view>

#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35::workflow {

enum class UpscaleMethod { kNearestExact, kBilinear, kArea, kBicubic, kLanczos };
Result<UpscaleMethod> upscale_method_from_name(std::string_view name);

// common_upscale(image, width, height, method, crop) with crop "center" (true) or "disabled".
// width, height >= 1. The image: contiguous uint8 [B, H, W, 3].
Result<Tensor> common_upscale(const Tensor& image_u8, int width, int height, UpscaleMethod method,
                              bool crop_center);

// The ImageScale node: width = height = 0 keeps the image; one of them 0 keeps the aspect
// ratio (max(1, round(other · size / size)), Python's round half to even).
Result<Tensor> image_scale(const Tensor& image_u8, int width, int height, UpscaleMethod method,
                           bool crop_center);

// One float32 plane (row stride `in_stride` elements, pixel stride `step`) resampled as torch
// does for the float methods (not lanczos) into `out` (same layout conventions). Exposed for
// the unit tests.
void resample_plane(const float* in, int64_t ih, int64_t iw, int64_t step, int64_t in_stride,
                    float* out, int64_t oh, int64_t ow, int64_t out_stride, UpscaleMethod method);

}  // namespace sd35::workflow
