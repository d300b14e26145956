// `convert_output` of comfyui-api requests: {"format": "jpeg"|"jpg"|"webp", "options": {…}}.
//
// Option names are those comfyui-api documents (sharp's), in both spellings sharp accepts
// (optimise/optimize, quantisation/quantization). Unlike comfyui-api, whose schema union drops
// every WebP option but `quality`, all of them are honoured. Options libjpeg-turbo/libwebp
// cannot do (mozjpeg's trellis quantisation, overshoot deringing, scan optimisation, custom
// quantisation tables; WebP animation settings) and unknown keys are accepted — comfyui-api
// accepted them too, and rejecting them would break existing clients — but each is reported in
// `warnings` for the server to log, so nothing is dropped silently. Wrong types and values out
// of range are errors naming the field ("convert_output.options.quality: …").
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "sd35/status.h"
#include "service/media/image_codec.h"

namespace sd35::media {

struct ConvertOutput {
  ImageFormat format = ImageFormat::kPng;
  // Filename extension without the dot, as the client spelled the format ("jpeg", "jpg",
  // "webp"; "png" when there is no conversion): comfyui-api names files "<…>.<format>".
  std::string extension = "png";
  JpegOptions jpeg;
  WebpOptions webp;
  std::vector<std::string> warnings;  // accepted but not applied, one sentence each

  bool converts() const { return format != ImageFormat::kPng; }
};

// Parses the value of the request's `convert_output` key. null (or a missing key, which the
// caller passes as null) means PNG output. The "png" format is also accepted (no conversion),
// an extension over comfyui-api, which only knows jpeg/jpg/webp.
Result<ConvertOutput> parse_convert_output(const nlohmann::json& value);

// The options as applied, for echoing in responses: {"format", "options": {…}} with defaults
// filled in (comfyui-api echoes the validated block with its defaults).
nlohmann::json convert_output_to_json(const ConvertOutput& c);

// Encodes one generated image as asked (PNG when c.converts() is false).
Result<std::string> encode_image(const ImageView& image, const ConvertOutput& c);

// "<id>_ComfyUI_00001_.png" → "<id>_ComfyUI_00001_.jpeg": replaces the extension after the last
// '.' of the last path component (or appends one) with c.extension.
std::string output_filename(std::string_view png_filename, const ConvertOutput& c);

}  // namespace sd35::media
