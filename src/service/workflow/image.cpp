// Image nodes: LoadImage (a file, or an inline image: base64, data: URL, http(s) URL),
// ImageScale, SaveImage, PreviewImage.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "service/media/image_codec.h"
#include "service/media/image_input.h"
#include "service/workflow/node_inputs.h"

namespace sd35::workflow {

namespace {

namespace fs = std::filesystem;

// A LoadImage file name -> the file to read, by the options' path policy: names relative to
// input_dir always; with allow_absolute_image_paths also absolute paths and names relative
// to the working directory (the CLI's convenience). Never a name with "..", when restricted.
Result<fs::path> resolve_image_path(NodeInputs& in, const std::string& name) {
  const WorkflowOptions& o = in.options();
  std::error_code ec;
  const fs::path p(name);
  if (!o.allow_absolute_image_paths) {
    if (p.is_absolute())
      return in.fail("image",
                     "absolute image paths are not allowed; give a file name inside "
                     "the input folder, or the image itself (base64, data: URL, URL)");
    for (const auto& part : p)
      if (part == "..") return in.fail("image", "image file names must not contain '..'");
    if (o.input_dir.empty())
      return in.fail("image", "image file '" + name + "' not found (no input folder)");
    const fs::path q = fs::path(o.input_dir) / p;
    if (!fs::is_regular_file(q, ec))
      return in.fail("image", "image file '" + name + "' not found in the input folder");
    return q;
  }
  if (p.is_relative() && !o.input_dir.empty() && fs::is_regular_file(fs::path(o.input_dir) / p, ec))
    return fs::path(o.input_dir) / p;
  if (!fs::is_regular_file(p, ec)) return in.fail("image", "image file '" + name + "' not found");
  return p;
}

Result<Tensor> read_image_file(NodeInputs& in, const fs::path& path) {
  const media::DecodeLimits& limits = in.options().input_images.limits;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return in.fail("image", "cannot read '" + path.string() + "': " + ec.message());
  if (size > limits.max_bytes)
    return in.fail("image", "image file '" + path.string() + "' is " + std::to_string(size) +
                                " bytes, more than the limit of " +
                                std::to_string(limits.max_bytes));
  std::ifstream f(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << f.rdbuf();
  if (!f.good() && !f.eof()) return in.fail("image", "cannot read '" + path.string() + "'");
  auto img = media::decode_image(bytes.str(), limits);
  if (!img.ok()) return in.fail("image", path.filename().string() + ": " + img.status().message());
  return std::move(*img);
}

// ComfyUI's PreviewImage prefix: "_temp_" + 5 letters drawn from its own alphabet (which
// has 'p' twice and no 'w').
std::string preview_prefix() {
  static const char kLetters[] = "abcdefghijklmnopqrstupvxyz";
  std::random_device rd;
  std::mt19937 gen(rd());
  std::uniform_int_distribution<int> pick(0, int(sizeof kLetters) - 2);
  std::string s = "ComfyUI_temp_";
  for (int i = 0; i < 5; ++i) s += kLetters[pick(gen)];
  return s;
}

}  // namespace

Result<Op> parse_image_node(NodeInputs& in, bool& known) {
  known = true;
  const std::string& c = in.class_type();
  if (c == "LoadImage") {
    LoadImageOp op;
    SD35_ASSIGN_OR_RETURN(std::string value, in.str("image"));
    in.ignore("upload");
    if (value.empty()) return in.fail("image", "empty image");
    const media::InputImageKind kind = media::classify_input_image(value);
    Tensor t;
    bool is_file = kind == media::InputImageKind::kPath;
    if (kind == media::InputImageKind::kBase64 && value.size() < 4096 &&
        !in.options().input_dir.empty()) {
      // A plain name such as "example.png" (ComfyUI's own convention: a file uploaded to the
      // input folder) reads as base64 to comfyui-api's classifier; a file of that name wins.
      std::error_code ec;
      const fs::path p(value);
      bool clean = p.is_relative();
      for (const auto& part : p) clean = clean && part != "..";
      is_file = clean && fs::is_regular_file(fs::path(in.options().input_dir) / p, ec);
    }
    if (kind == media::InputImageKind::kBase64 && !is_file && value.size() < 4096 &&
        in.options().allow_absolute_image_paths) {
      std::error_code ec;
      is_file = fs::is_regular_file(fs::path(value), ec);  // relative to the working directory
    }
    if (is_file) {
      SD35_ASSIGN_OR_RETURN(fs::path path, resolve_image_path(in, value));
      SD35_ASSIGN_OR_RETURN(t, read_image_file(in, path));
      op.source = path.string();
    } else {
      auto img = media::load_input_image(value, in.options().input_images);
      if (!img.ok()) {
        // A short value with a dot is more likely a missing file than broken base64.
        if (kind == media::InputImageKind::kBase64 && value.size() < 256 &&
            value.find('.') != std::string::npos)
          return in.fail("image",
                         "image file '" + value + "' not found" +
                             (in.options().input_dir.empty() ? "" : " in the input folder") +
                             " (and it is not base64: " + img.status().message() + ")");
        return in.fail("image", img.status().message());
      }
      t = std::move(*img);
      op.source = kind == media::InputImageKind::kHttpUrl   ? value.substr(0, 2048)
                  : kind == media::InputImageKind::kDataUrl ? "data URL"
                                                            : "base64";
    }
    if (t.ndim() == 3) t = t.reshape({1, t.size(0), t.size(1), t.size(2)});
    op.pixels = std::make_shared<const Tensor>(std::move(t));
    return Op(op);
  }
  if (c == "ImageScale") {
    ImageScaleOp op;
    SD35_ASSIGN_OR_RETURN(op.image, in.link("image", ValueType::kImage));
    SD35_ASSIGN_OR_RETURN(
        std::string m,
        in.choice("upscale_method", {"nearest-exact", "bilinear", "area", "bicubic", "lanczos"}));
    SD35_ASSIGN_OR_RETURN(op.method, upscale_method_from_name(m));
    const int64_t max = in.options().max_size;
    SD35_ASSIGN_OR_RETURN(int64_t w, in.integer("width", 0, max));
    SD35_ASSIGN_OR_RETURN(int64_t h, in.integer("height", 0, max));
    op.width = int(w);
    op.height = int(h);
    SD35_ASSIGN_OR_RETURN(std::string crop, in.choice("crop", {"disabled", "center"}));
    op.crop_center = crop == "center";
    return Op(op);
  }
  if (c == "SaveImage") {
    SaveImageOp op;
    SD35_ASSIGN_OR_RETURN(op.images, in.link("images", ValueType::kImage));
    SD35_ASSIGN_OR_RETURN(op.filename_prefix, in.str("filename_prefix"));
    if (op.filename_prefix.find("..") != std::string::npos)
      return in.fail("filename_prefix", "must not contain '..'");
    return Op(op);
  }
  if (c == "PreviewImage") {
    SaveImageOp op;
    SD35_ASSIGN_OR_RETURN(op.images, in.link("images", ValueType::kImage));
    op.filename_prefix = preview_prefix();
    op.preview = true;
    return Op(op);
  }
  known = false;
  return Op(CheckpointLoaderOp{});
}

}  // namespace sd35::workflow
