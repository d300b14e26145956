// The OpenAPI 3.0 document of GET /docs/json (and /docs/yaml), generated once at start-up from
// the server's routes and the loaded workflow templates, in the shape comfyui-api's
// @fastify/swagger produces (reference/comfyui-api-contract.md §2, §11): every route with its
// request and response schemas, status codes and examples; each template's input schema with
// types, ranges, enums and defaults, and the markdown field table in the operation's
// description when MARKDOWN_SCHEMA_DESCRIPTIONS is true.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/templates.h"

namespace sd35::server {

struct OpenApiOptions {
  std::string version;                 // the server's version (info.version, /health's)
  int port = 3000;                     // servers[0]'s default URL http://localhost:<port>
  bool markdown_descriptions = true;   // MARKDOWN_SCHEMA_DESCRIPTIONS
  bool api_key = false;                // API_KEY set: security schemes on protected routes
  std::vector<std::string> model_types;  // /models keys (folders of MODEL_DIR at start-up)
};

nlohmann::json build_openapi(const OpenApiOptions& options,
                             const std::vector<std::shared_ptr<const WorkflowTemplate>>& templates);

// The JSON schema of a template's `input` object (additionalProperties false).
nlohmann::json template_input_schema(const WorkflowTemplate& t);

// comfyui-api's "| Field | Type | Description | Default |" table of a template's fields.
std::string markdown_field_table(const WorkflowTemplate& t);

// The document as YAML (block style; strings double-quoted with JSON escapes, which YAML
// reads the same way), for GET /docs/yaml.
std::string to_yaml(const nlohmann::json& value);

}  // namespace sd35::server
