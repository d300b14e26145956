// The built-in simplified endpoint POST /workflow/sd3.5-medium/txt2img (alias
// /workflow/txt2img): exactly the recipe's fields, ranges and defaults (comfyui-api 1.8.2
// OpenAPI document; reference/comfyui-api-contract.md §19.2), filled into the recipe's graph.
// The template itself is data (src/server/workflows/sd3.5-medium/txt2img.json, compiled in);
// these helpers give the server's start-up and the tests direct access to it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/templates.h"

namespace sd35::server {

// The SD3.5 Medium txt2img template. `checkpoints` (files in models/checkpoints) become the
// checkpoint field's choices (the recipe's enum is the startup directory scan); the default
// stays sd3.5_medium.safetensors.
WorkflowTemplate sd35_txt2img_template(const std::vector<std::string>& checkpoints);

// The recipe graph itself (warm-up graph and the template's base).
const nlohmann::json& recipe_graph();

}  // namespace sd35::server
