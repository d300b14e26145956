// Declarative workflow templates: the simplified endpoints POST /workflow/<path>
// (reference/comfyui-api-contract.md §11). A template is data, never code: a summary, a
// description, typed input fields (type, required, minimum, maximum, enum, default, where each
// value goes in the graph) and the ComfyUI API-format graph with the defaults in place. The
// format is documented in docs/workflow-templates.md; the built-in ones are JSON files under
// src/server/workflows compiled into the binary, the operator's come from WORKFLOW_DIR.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sd35::server {

struct TemplateField {
  std::string name;
  enum class Type { kString, kInteger, kNumber, kBoolean } type = Type::kString;
  bool required = false;
  std::optional<double> minimum, maximum;
  std::vector<nlohmann::json> choices;  // enum; empty: any value of the type
  nlohmann::json default_value;         // null: none (required, or random)
  // A seed: absent means a random integer in [0, 1e15) (the recipe's Math.random() * 1e15),
  // and negative values are refused (KSampler seeds are 0 .. 2^64-1).
  bool random = false;
  nlohmann::json example;  // for the OpenAPI document; null: none
  std::vector<std::pair<std::string, std::string>> targets;  // [node id, input name]
  std::string description;
};

struct WorkflowTemplate {
  std::string route;                 // "/workflow/sd3.5-medium/txt2img"
  std::vector<std::string> aliases;  // more routes serving it ("/workflow/txt2img")
  std::string summary;
  std::string description;
  std::vector<TemplateField> fields;
  nlohmann::json graph;  // API format, defaults in place
  std::string source;    // where it came from, for logs: "built-in sd3.5-medium/txt2img.json"
};

// What `enum_from` refers to: "samplers", "schedulers", "models/<folder>" (the files found in
// MODEL_DIR/<folder> at start-up, as comfyui-api's config.models[type].enum).
struct TemplateContext {
  std::map<std::string, std::vector<std::string>> models;
};

// ComfyUI's KSampler.SAMPLERS / SCHEDULERS as the recipe's OpenAPI document (1.8.2) lists
// them. A name the engine does not implement passes the template and is refused by the graph
// validation (a 400 naming the field), never replaced by another sampler.
const std::vector<std::string>& comfy_samplers();
const std::vector<std::string>& comfy_schedulers();

// Parses and validates one template file: JSON shape, field names (unique, identifiers),
// types, ranges, enums, defaults within them, and that every target is an existing,
// non-link input of a graph node. nullopt with *error (naming the field and the problem).
std::optional<WorkflowTemplate> parse_template(std::string_view text, const TemplateContext& ctx,
                                               std::string* error);

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

// "integer", "number", "string", "boolean" (the JSON-schema type names).
std::string type_name(TemplateField::Type type);

}  // namespace sd35::server
