#include "server/txt2img.h"

#include <stdexcept>

#include "server/embedded.h"

namespace sd35::server {

using nlohmann::json;

namespace {

std::string_view builtin_text(std::string_view name) {
  for (const auto& f : builtin_workflow_files())
    if (f.name == name) return f.data;
  throw std::logic_error("built-in workflow " + std::string(name) + " is not compiled in");
}

}  // namespace

WorkflowTemplate sd35_txt2img_template(const std::vector<std::string>& checkpoints) {
  TemplateContext ctx;
  ctx.models["checkpoints"] = checkpoints;
  std::string error;
  auto t = parse_template(builtin_text("sd3.5-medium/txt2img.json"), ctx, &error);
  // The built-ins are checked by the unit tests; a broken one is a build defect.
  if (!t) throw std::logic_error("built-in sd3.5-medium/txt2img.json: " + error);
  t->route = "/workflow/sd3.5-medium/txt2img";
  t->aliases = {"/workflow/txt2img"};
  t->source = "built-in sd3.5-medium/txt2img.json";
  return std::move(*t);
}

const json& recipe_graph() {
  // The SaladCloud recipe's graph (data/sd35-medium/workflow-txt2img.json) is the txt2img
  // template's graph, defaults in place.
  static const json graph = sd35_txt2img_template({}).graph;
  return graph;
}

}  // namespace sd35::server
