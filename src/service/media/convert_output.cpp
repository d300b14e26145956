#include "service/media/convert_output.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

namespace sd35::media {
namespace {

using nlohmann::json;

const char* kOptionsPath = "convert_output.options.";

std::string type_name(const json& v) { return v.type_name(); }

Status field_error(std::string_view key, const std::string& what) {
  return invalid_argument(std::string(kOptionsPath) + std::string(key) + ": " + what);
}

Result<bool> get_bool(const json& v, std::string_view key) {
  if (!v.is_boolean())
    return field_error(key, "must be true or false, got " + type_name(v) + " " + v.dump());
  return v.get<bool>();
}

// Integers may arrive as 80 or 80.0 (JavaScript clients); 80.5 is an error.
Result<int> get_int(const json& v, std::string_view key, int lo, int hi) {
  std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  if (!v.is_number())
    return field_error(key, "must be an integer " + range + ", got " + type_name(v));
  double d = v.get<double>();
  if (!std::isfinite(d) || d != std::floor(d))
    return field_error(key, "must be an integer " + range + ", got " + v.dump());
  if (d < lo || d > hi) return field_error(key, "must be " + range + ", got " + v.dump());
  return int(d);
}

// Keys that exist in sharp for the other format: accepted, reported as not applying.
const std::set<std::string, std::less<>> kJpegKeys = {"quality",
                                                      "progressive",
                                                      "chromaSubsampling",
                                                      "optimiseCoding",
                                                      "optimizeCoding",
                                                      "mozjpeg",
                                                      "trellisQuantisation",
                                                      "trellisQuantization",
                                                      "overshootDeringing",
                                                      "optimiseScans",
                                                      "optimizeScans",
                                                      "quantisationTable",
                                                      "quantizationTable",
                                                      "force"};
const std::set<std::string, std::less<>> kWebpKeys = {
    "quality", "alphaQuality", "lossless",        "nearLossless", "smartSubsample", "smartDeblock",
    "preset",  "effort",       "reductionEffort", "minSize",      "mixed",          "loop",
    "delay",   "force"};

Status parse_jpeg(const json& opts, ConvertOutput& c) {
  JpegOptions& o = c.jpeg;
  for (const auto& [key, v] : opts.items()) {
    if (key == "quality") {
      SD35_ASSIGN_OR_RETURN(o.quality, get_int(v, key, 1, 100));
    } else if (key == "progressive") {
      SD35_ASSIGN_OR_RETURN(bool b, get_bool(v, key));
      o.progressive = o.progressive || b;  // optimiseScans/mozjpeg may have forced it on
    } else if (key == "chromaSubsampling") {
      if (!v.is_string()) return field_error(key, "must be \"4:4:4\", \"4:2:2\" or \"4:2:0\"");
      std::string s = v.get<std::string>();
      if (s == "4:4:4")
        o.chroma_subsampling = ChromaSubsampling::k444;
      else if (s == "4:2:2")
        o.chroma_subsampling = ChromaSubsampling::k422;
      else if (s == "4:2:0")
        o.chroma_subsampling = ChromaSubsampling::k420;
      else
        return field_error(key, "must be \"4:4:4\", \"4:2:2\" or \"4:2:0\", got " + v.dump());
    } else if (key == "optimiseCoding" || key == "optimizeCoding") {
      SD35_ASSIGN_OR_RETURN(o.optimize_coding, get_bool(v, key));
    } else if (key == "optimiseScans" || key == "optimizeScans" || key == "mozjpeg") {
      SD35_ASSIGN_OR_RETURN(bool b, get_bool(v, key));
      if (b) {
        // sharp turns progressive on for both; the scan optimisation itself is mozjpeg's.
        o.progressive = true;
        c.warnings.push_back(std::string(kOptionsPath) + key +
                             ": mozjpeg features are not available (libjpeg-turbo); the JPEG is "
                             "progressive with standard scans and tables");
      }
    } else if (key == "trellisQuantisation" || key == "trellisQuantization" ||
               key == "overshootDeringing") {
      SD35_ASSIGN_OR_RETURN(bool b, get_bool(v, key));
      if (b)
        c.warnings.push_back(std::string(kOptionsPath) + key +
                             ": mozjpeg-only, not applied (libjpeg-turbo)");
    } else if (key == "quantisationTable" || key == "quantizationTable") {
      SD35_ASSIGN_OR_RETURN(int t, get_int(v, key, 0, 8));
      if (t != 0)
        c.warnings.push_back(std::string(kOptionsPath) + key +
                             ": mozjpeg-only tables, not applied; the standard table (0) is used");
    } else if (key == "force") {
      SD35_RETURN_IF_ERROR(get_bool(v, key).status());  // chooses output format in sharp: moot
    } else if (kWebpKeys.count(key)) {
      c.warnings.push_back(std::string(kOptionsPath) + key + ": a WebP option, ignored for " +
                           c.extension);
    } else {
      c.warnings.push_back(std::string(kOptionsPath) + key + ": unknown option, ignored");
    }
  }
  return ok_status();
}

Status parse_webp(const json& opts, ConvertOutput& c) {
  WebpOptions& o = c.webp;
  for (const auto& [key, v] : opts.items()) {
    if (key == "quality") {
      SD35_ASSIGN_OR_RETURN(o.quality, get_int(v, key, 1, 100));
    } else if (key == "alphaQuality") {
      SD35_ASSIGN_OR_RETURN(o.alpha_quality, get_int(v, key, 0, 100));
    } else if (key == "lossless") {
      SD35_ASSIGN_OR_RETURN(o.lossless, get_bool(v, key));
    } else if (key == "nearLossless") {
      SD35_ASSIGN_OR_RETURN(o.near_lossless, get_bool(v, key));
    } else if (key == "smartSubsample") {
      SD35_ASSIGN_OR_RETURN(o.smart_subsample, get_bool(v, key));
    } else if (key == "smartDeblock") {
      SD35_ASSIGN_OR_RETURN(o.smart_deblock, get_bool(v, key));
    } else if (key == "effort" || key == "reductionEffort") {  // the latter: sharp's old name
      SD35_ASSIGN_OR_RETURN(o.effort, get_int(v, key, 0, 6));
    } else if (key == "preset") {
      static const std::pair<const char*, WebpPreset> kPresets[] = {
          {"default", WebpPreset::kDefault}, {"photo", WebpPreset::kPhoto},
          {"picture", WebpPreset::kPicture}, {"drawing", WebpPreset::kDrawing},
          {"icon", WebpPreset::kIcon},       {"text", WebpPreset::kText}};
      bool found = false;
      if (v.is_string())
        for (const auto& [name, p] : kPresets)
          if (v.get<std::string>() == name) {
            o.preset = p;
            found = true;
          }
      if (!found)
        return field_error(
            key, "must be one of default, photo, picture, drawing, icon, text; got " + v.dump());
    } else if (key == "minSize" || key == "mixed") {
      SD35_ASSIGN_OR_RETURN(bool b, get_bool(v, key));
      if (b)
        c.warnings.push_back(std::string(kOptionsPath) + key +
                             ": animated WebP only, not applicable to a still image");
    } else if (key == "loop" || key == "delay") {
      c.warnings.push_back(std::string(kOptionsPath) + key +
                           ": animated WebP only, not applicable to a still image");
    } else if (key == "force") {
      SD35_RETURN_IF_ERROR(get_bool(v, key).status());
    } else if (kJpegKeys.count(key)) {
      c.warnings.push_back(std::string(kOptionsPath) + key + ": a JPEG option, ignored for webp");
    } else {
      c.warnings.push_back(std::string(kOptionsPath) + key + ": unknown option, ignored");
    }
  }
  return ok_status();
}

}  // namespace

Result<ConvertOutput> parse_convert_output(const json& value) {
  ConvertOutput c;
  if (value.is_null()) return c;
  if (!value.is_object())
    return invalid_argument("convert_output: must be an object like {\"format\": \"jpeg\"}, got " +
                            type_name(value));
  auto fmt = value.find("format");
  if (fmt == value.end()) return invalid_argument("convert_output.format: required");
  if (!fmt->is_string())
    return invalid_argument("convert_output.format: must be \"jpeg\", \"jpg\" or \"webp\", got " +
                            fmt->dump());
  c.extension = fmt->get<std::string>();
  if (c.extension == "jpeg" || c.extension == "jpg")
    c.format = ImageFormat::kJpeg;
  else if (c.extension == "webp")
    c.format = ImageFormat::kWebp;
  else if (c.extension == "png")
    c.format = ImageFormat::kPng;
  else
    return invalid_argument("convert_output.format: must be \"jpeg\", \"jpg\" or \"webp\", got " +
                            fmt->dump());
  for (const auto& [key, v] : value.items())
    if (key != "format" && key != "options")
      c.warnings.push_back("convert_output." + key + ": unknown key, ignored");

  auto opts = value.find("options");
  if (opts == value.end() || opts->is_null()) return c;
  if (!opts->is_object())
    return invalid_argument("convert_output.options: must be an object, got " + type_name(*opts));
  if (c.format == ImageFormat::kJpeg) SD35_RETURN_IF_ERROR(parse_jpeg(*opts, c));
  if (c.format == ImageFormat::kWebp) SD35_RETURN_IF_ERROR(parse_webp(*opts, c));
  if (c.format == ImageFormat::kPng && !opts->empty())
    c.warnings.push_back("convert_output.options: ignored for png");
  return c;
}

json convert_output_to_json(const ConvertOutput& c) {
  json j = {{"format", c.extension}};
  if (c.format == ImageFormat::kJpeg) {
    const JpegOptions& o = c.jpeg;
    const char* cs = o.chroma_subsampling == ChromaSubsampling::k444   ? "4:4:4"
                     : o.chroma_subsampling == ChromaSubsampling::k422 ? "4:2:2"
                                                                       : "4:2:0";
    j["options"] = {{"quality", o.quality},
                    {"progressive", o.progressive},
                    {"chromaSubsampling", cs},
                    {"optimizeCoding", o.optimize_coding}};
  } else if (c.format == ImageFormat::kWebp) {
    const WebpOptions& o = c.webp;
    static const char* kNames[] = {"default", "photo", "picture", "drawing", "icon", "text"};
    j["options"] = {{"quality", o.quality},
                    {"alphaQuality", o.alpha_quality},
                    {"lossless", o.lossless},
                    {"nearLossless", o.near_lossless},
                    {"smartSubsample", o.smart_subsample},
                    {"smartDeblock", o.smart_deblock},
                    {"preset", kNames[int(o.preset)]},
                    {"effort", o.effort}};
  }
  return j;
}

Result<std::string> encode_image(const ImageView& image, const ConvertOutput& c) {
  switch (c.format) {
    case ImageFormat::kJpeg: return encode_jpeg(image, c.jpeg);
    case ImageFormat::kWebp: return encode_webp(image, c.webp);
    case ImageFormat::kPng: break;
  }
  return encode_png(image);
}

std::string output_filename(std::string_view png_filename, const ConvertOutput& c) {
  size_t slash = png_filename.find_last_of('/');
  size_t dot = png_filename.find_last_of('.');
  std::string_view stem = png_filename;
  if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash))
    stem = png_filename.substr(0, dot);
  return std::string(stem) + "." + c.extension;
}

}  // namespace sd35::media
