// The routes of POST /workflow/...: the built-in templates (compiled in) and the operator's
// JSON templates under WORKFLOW_DIR, loaded once at start-up and read-only afterwards (so
// request threads read them without locks).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/templates.h"

namespace sd35::server {

// A WORKFLOW_DIR file that was not loaded, and why (logged as an error; the server goes on
// without it, as comfyui-api does with a file that fails to load).
struct TemplateProblem {
  std::string file;
  std::string message;
};

struct RegistryOptions {
  std::string workflow_dir;  // "": built-ins only
  // --demo: the tiny model's position embedding covers 256x256 at most, so width/height
  // fields default to 256 there (clamped to the field's range).
  bool demo = false;
};

class WorkflowRegistry {
 public:
  // Built-ins first, then every *.json under options.workflow_dir, recursively, in sorted
  // order. Returns false with *error only when workflow_dir is set but is not a directory
  // (a typo in the deployment should stop the start, not silently serve no endpoints).
  bool load(const TemplateContext& ctx, const RegistryOptions& options,
            std::vector<TemplateProblem>* problems, std::vector<std::string>* notes,
            std::string* error);

  // The template served at `route` (its route or an alias); nullptr if none.
  const WorkflowTemplate* find(std::string_view route) const;
  const std::vector<std::shared_ptr<const WorkflowTemplate>>& templates() const { return all_; }

 private:
  bool add(std::shared_ptr<WorkflowTemplate> t, std::string* error);
  std::vector<std::shared_ptr<const WorkflowTemplate>> all_;
};

// "/workflow/a/b" for "a/b.json" (the comfyui-api rule: sub-folders and the file name without
// its extension); "" with *error when a path component is not [A-Za-z0-9._-] or starts with '.'.
std::string route_for_file(const std::string& relative_path, std::string* error);

}  // namespace sd35::server
