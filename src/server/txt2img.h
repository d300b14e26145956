// The built-in simplified endpoint POST /workflow/sd3.5-medium/txt2img (alias
// /workflow/txt2img): exactly the recipe's fields, ranges and defaults (comfyui-api 1.8.2
// OpenAPI document; reference/comfyui-api-contract.md §19.2), filled into the recipe's graph.
// Declarative: a field table and the graph with the inputs each field sets; no code per
// field, so WORKFLOW_DIR templates can reuse it later.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sd35::server {

struct TemplateField {
  std::string name;
  enum class Type { kString, kInteger, kNumber } type = Type::kString;
  bool required = false;
  std::optional<double> minimum, maximum;
  std::vector<std::string> choices;  // enum (strings); empty: any
  nlohmann::json default_value;      // null: none (required, or computed like the seed)
  std::string node, input;           // where the value goes in the graph
  std::string description;
};

struct WorkflowTemplate {
  std::string route;  // "/workflow/sd3.5-medium/txt2img"
  std::string summary;
  std::vector<TemplateField> fields;
  nlohmann::json graph;  // the recipe graph with default values in place
};

// The SD3.5 Medium txt2img template. `checkpoints` (files in models/checkpoints) become the
// checkpoint field's choices (the recipe's enum is the startup directory scan); the default
// stays sd3.5_medium.safetensors.
WorkflowTemplate sd35_txt2img_template(const std::vector<std::string>& checkpoints);

// The recipe graph itself (warm-up graph and the template's base).
const nlohmann::json& recipe_graph();

struct TemplateError {
  std::string field;  // "" when the input object itself is wrong
  std::string message;
};

// Validates `input` against the fields (unknown fields are refused: the OpenAPI schema says
// additionalProperties false), fills defaults (a random seed when absent) into *resolved and
// returns the graph. nullopt with *error on bad input.
std::optional<nlohmann::json> fill_template(const WorkflowTemplate& t, const nlohmann::json& input,
                                            nlohmann::json* resolved, TemplateError* error);

// The field a graph node/input belongs to ("" if none): maps a graph validation error back to
// the request field the client sent.
std::string field_for(const WorkflowTemplate& t, const std::string& node, const std::string& input);

}  // namespace sd35::server
