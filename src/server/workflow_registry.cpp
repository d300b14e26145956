#include "server/workflow_registry.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/embedded.h"

namespace sd35::server {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The built-ins and their short aliases (the consolidated recipe serves /workflow/txt2img).
struct Builtin {
  const char* file;
  const char* alias;
};
constexpr Builtin kBuiltins[] = {
    {"sd3.5-medium/txt2img.json", "/workflow/txt2img"},
    {"sd3.5-medium/img2img.json", "/workflow/img2img"},
    {"sd3.5-medium/txt2img-advanced.json", "/workflow/txt2img-advanced"},
};

constexpr uintmax_t kMaxTemplateBytes = 4u << 20;

void apply_demo_defaults(WorkflowTemplate* t) {
  for (auto& f : t->fields) {
    if ((f.name != "width" && f.name != "height") || !f.default_value.is_number()) continue;
    double v = 256;
    if (f.minimum) v = std::max(v, *f.minimum);
    if (f.maximum) v = std::min(v, *f.maximum);
    f.default_value = int64_t(v);
    for (const auto& [node, input] : f.targets) t->graph[node]["inputs"][input] = f.default_value;
  }
}

}  // namespace

std::string route_for_file(const std::string& relative_path, std::string* error) {
  std::string path = relative_path;
  if (path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0)
    path.resize(path.size() - 5);
  std::string route = "/workflow";
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    const bool ok = !part.empty() && part[0] != '.' &&
                    std::all_of(part.begin(), part.end(), [](char c) {
                      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                             c == '_' || c == '-';
                    });
    if (!ok) {
      *error = "the route part '" + part +
               "' must be letters, digits, '.', '_' and '-' and not start with '.'";
      return "";
    }
    route += "/" + part;
  }
  return route;
}

bool WorkflowRegistry::add(std::shared_ptr<WorkflowTemplate> t, std::string* error) {
  std::vector<std::string> routes = t->aliases;
  routes.insert(routes.begin(), t->route);
  for (const auto& r : routes)
    if (const WorkflowTemplate* other = find(r)) {
      *error = "route " + r + " is already served by " + other->source;
      return false;
    }
  all_.push_back(std::move(t));
  return true;
}

bool WorkflowRegistry::load(const TemplateContext& ctx, const RegistryOptions& options,
                            std::vector<TemplateProblem>* problems,
                            std::vector<std::string>* notes, std::string* error) {
  all_.clear();
  for (const auto& b : kBuiltins) {
    const auto files = builtin_workflow_files();
    auto it = std::find_if(files.begin(), files.end(),
                           [&](const EmbeddedFile& f) { return f.name == b.file; });
    std::string why = "not compiled in";
    std::optional<WorkflowTemplate> t;
    if (it != files.end()) t = parse_template(it->data, ctx, &why);
    if (!t) {
      *error = std::string("built-in ") + b.file + ": " + why;
      return false;
    }
    t->route = route_for_file(b.file, &why);
    t->aliases = {b.alias};
    t->source = std::string("built-in ") + b.file;
    if (options.demo) apply_demo_defaults(&*t);
    if (!add(std::make_shared<WorkflowTemplate>(std::move(*t)), &why)) {
      *error = why;
      return false;
    }
  }
  if (options.workflow_dir.empty()) return true;

  std::error_code ec;
  const fs::path dir(options.workflow_dir);
  if (!fs::is_directory(dir, ec)) {
    *error = "WORKFLOW_DIR " + options.workflow_dir + " is not a directory";
    return false;
  }
  std::vector<fs::path> files;
  const auto opts = fs::directory_options::follow_directory_symlink |
                    fs::directory_options::skip_permission_denied;
  for (fs::recursive_directory_iterator it(dir, opts, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Hidden entries (.git, Kubernetes ConfigMap "..data") are not templates; a depth limit
    // stops symlink loops.
    if (name.empty() || name[0] == '.' || it.depth() > 16) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    const std::string ext = it->path().extension().string();
    if (ext == ".json") files.push_back(it->path());
    else if (ext == ".ts" || ext == ".js")
      // comfyui-api's templates are TypeScript code; sd35 runs no code.
      notes->push_back(it->path().string() +
                       ": code templates (.ts/.js) are not loaded; write a JSON template "
                       "(docs/workflow-templates.md)");
  }
  if (ec) {
    *error = "cannot read WORKFLOW_DIR " + options.workflow_dir + ": " + ec.message();
    return false;
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    const std::string file = path.string();
    std::string why;
    const std::string route = route_for_file(path.lexically_relative(dir).generic_string(), &why);
    if (route.empty()) {
      problems->push_back({file, why});
      continue;
    }
    if (fs::file_size(path, ec) > kMaxTemplateBytes || ec) {
      problems->push_back({file, ec ? ec.message() : "larger than 4 MiB"});
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      problems->push_back({file, "cannot read the file"});
      continue;
    }
    auto t = parse_template(text.str(), ctx, &why);
    if (!t) {
      problems->push_back({file, why});
      continue;
    }
    t->route = route;
    t->source = file;
    if (t->summary.empty()) t->summary = path.stem().string();
    if (options.demo) apply_demo_defaults(&*t);
    if (!add(std::make_shared<WorkflowTemplate>(std::move(*t)), &why))
      problems->push_back({file, why});
  }
  return true;
}

const WorkflowTemplate* WorkflowRegistry::find(std::string_view route) const {
  for (const auto& t : all_) {
    if (t->route == route) return t.get();
    for (const auto& a : t->aliases)
      if (a == route) return t.get();
  }
  return nullptr;
}

}  // namespace sd35::server
