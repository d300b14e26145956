// Image nodes: LoadImage (a file path), SaveImage.
#include <filesystem>

#include "service/workflow/node_inputs.h"

namespace sd35::workflow {

Result<Op> parse_image_node(NodeInputs& in, bool& known) {
  known = true;
  const std::string& c = in.class_type();
  if (c == "LoadImage") {
    LoadImageOp op;
    SD35_ASSIGN_OR_RETURN(std::string name, in.str("image"));
    in.ignore("upload");
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path p(name);
    if (p.is_relative() && !in.options().input_dir.empty() &&
        fs::is_regular_file(fs::path(in.options().input_dir) / p, ec))
      p = fs::path(in.options().input_dir) / p;
    if (name.empty() || !fs::is_regular_file(p, ec))
      return in.fail("image", "image file '" + name + "' not found");
    op.path = p.string();
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
  known = false;
  return Op(CheckpointLoaderOp{});
}

}  // namespace sd35::workflow
