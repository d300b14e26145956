#include "server/openapi.h"

#include <functional>
#include <sstream>

#include "server/txt2img.h"

namespace sd35::server {

using nlohmann::json;

namespace {

json ref(const std::string& name) { return {{"$ref", "#/components/schemas/" + name}}; }

json json_content(const json& schema, const json& example = nullptr) {
  json media = {{"schema", schema}};
  if (!example.is_null()) media["example"] = example;
  return {{"application/json", media}};
}

json response(const std::string& description, const json& schema, const json& example = nullptr) {
  return {{"description", description}, {"content", json_content(schema, example)}};
}

json error_response(const std::string& description, const std::string& example_error,
                    const std::string& location = "") {
  json ex = {{"error", example_error}};
  if (!location.empty()) ex["location"] = location;
  return response(description, ref("Error"), ex);
}

json probe_schema(const std::string& ok) {
  return {{"type", "object"},
          {"properties",
           {{"version", {{"type", "string"}}},
            {"status", {{"type", "string"}, {"enum", json::array({ok, "not " + ok})}}}}},
          {"required", {"version", "status"}}};
}

// The schemas every route shares (components.schemas).
json component_schemas() {
  json s;
  s["Error"] = {
      {"type", "object"},
      {"description", "A refused request. `location` names the offending part of the body "
                      "(\"input.steps\", \"prompt.294.inputs.steps\"); graph errors add "
                      "ComfyUI's `node_errors`."},
      {"properties",
       {{"error", {{"type", "string"}}},
        {"location", {{"type", "string"}}},
        {"node_errors",
         {{"type", "object"},
          {"additionalProperties",
           {{"type", "object"},
            {"properties",
             {{"errors",
               {{"type", "array"},
                {"items",
                 {{"type", "object"},
                  {"properties",
                   {{"type", {{"type", "string"}}},
                    {"message", {{"type", "string"}}},
                    {"details", {{"type", "string"}}},
                    {"extra_info", {{"type", "object"}}}}}}}}},
              {"dependent_outputs", {{"type", "array"}, {"items", json::object()}}},
              {"class_type", {{"type", "string"}}}}}}}}}}},
      {"required", {"error"}}};
  s["NotFound"] = {{"type", "object"},
                   {"properties",
                    {{"message", {{"type", "string"}}},
                     {"error", {{"type", "string"}}},
                     {"statusCode", {{"type", "integer"}}}}}};
  s["Node"] = {{"type", "object"},
               {"properties",
                {{"inputs", {{"type", "object"}, {"additionalProperties", true}}},
                 {"class_type", {{"type", "string"}}},
                 {"_meta", {{"type", "object"}}}}},
               {"required", {"class_type"}}};
  s["Graph"] = {{"type", "object"},
                {"description", "A ComfyUI API-format graph: node id -> node. Links are "
                                "[\"<node id>\", <output index>]."},
                {"additionalProperties", ref("Node")}};
  s["ConvertOutput"] = {
      {"type", "object"},
      {"description", "Re-encode the images (PNG without this block)."},
      {"properties",
       {{"format", {{"type", "string"}, {"enum", {"jpeg", "jpg", "webp"}}}},
        {"options",
         {{"type", "object"},
          {"description", "JPEG: quality (1-100, 80), progressive (false), chromaSubsampling "
                          "(\"4:2:0\"), optimizeCoding (true). WebP: quality (1-100, 80), "
                          "alphaQuality (100), lossless (false), nearLossless (false), "
                          "smartSubsample (false), preset (default, photo, picture, drawing, "
                          "icon, text), effort (0-6, 4). Options an encoder cannot apply are "
                          "accepted and logged."},
          {"additionalProperties", true}}}}},
      {"required", {"format"}}};
  s["HttpUpload"] = {
      {"type", "object"},
      {"description", "PUT each image to <url_prefix>/<filename> (Content-Type of its format, "
                      "plus HTTP_AUTH_HEADER_NAME/VALUE when set); images become those URLs. "
                      "A failed PUT fails the request (500, or prompt.failed when async)."},
      {"properties",
       {{"url_prefix", {{"type", "string"}, {"format", "uri"}}},
        {"async", {{"type", "boolean"}, {"default", false},
                   {"description", "true: 202 at once, the upload happens after the job"}}}}},
      {"required", {"url_prefix"}}};
  s["S3Upload"] = {
      {"type", "object"},
      {"description", "Upload each image to s3://<bucket>/<prefix><filename> (SigV4, the "
                      "server's AWS_* settings; AWS_ENDPOINT_URL for S3-compatible stores); "
                      "images become those s3:// URLs. A failed PUT fails the request."},
      {"properties",
       {{"bucket", {{"type", "string"}}},
        {"prefix", {{"type", "string"}, {"description", "key prefix, \"\" for the root"}}},
        {"async", {{"type", "boolean"}, {"default", false},
                   {"description", "true: 202 at once, the upload happens after the job"}}}}},
      {"required", {"bucket", "prefix"}}};
  s["Stats"] = {{"type", "object"},
                {"description", "Timings in milliseconds (comfyui-api's, plus queue_time and "
                                "engine, where the time went)."},
                {"properties",
                 {{"comfy_execution", {{"type", "object"}}},
                  {"preprocess_time", {{"type", "number"}}},
                  {"comfy_round_trip_time", {{"type", "number"}}},
                  {"postprocess_time", {{"type", "number"}}},
                  {"upload_time", {{"type", "number"}}},
                  {"total_time", {{"type", "number"}}},
                  {"queue_time", {{"type", "number"}}},
                  {"engine", {{"type", "object"}}}}}};
  s["PromptResponse"] = {
      {"type", "object"},
      {"properties",
       {{"id", {{"type", "string"}}},
        {"prompt", ref("Graph")},
        {"images", {{"type", "array"},
                    {"items", {{"type", "string"}, {"format", "byte"}}},
                    {"description", "base64 images (no data: prefix), one per saved image; "
                                    "with http_upload or s3, their destination URLs"}}},
        {"filenames", {{"type", "array"}, {"items", {{"type", "string"}}},
                       {"description", "\"<id>_ComfyUI_00001_.png\", one per image"}}},
        {"stats", ref("Stats")},
        {"webhook", {{"type", "string"}}},
        {"webhook_v2", {{"type", "string"}}},
        {"convert_output", ref("ConvertOutput")},
        {"http_upload", ref("HttpUpload")},
        {"s3", ref("S3Upload")},
        {"status", {{"type", "string"}, {"enum", {"ok"}}}}}},
      {"required", {"id", "prompt"}}};
  s["JobFailed"] = {{"type", "object"},
                    {"properties",
                     {{"id", {{"type", "string"}}},
                      {"status", {{"type", "string"}, {"enum", {"failed", "interrupted"}}}},
                      {"error", {{"type", "string"}}}}},
                    {"required", {"id", "error"}}};
  return s;
}

// The keys /prompt and /workflow/... share besides the graph or the input.
json request_common_properties() {
  return {
      {"id", {{"type", "string"},
              {"description", "Your id for the job (default: a random UUID); filenames start "
                              "with it and /interrupt takes it."}}},
      {"webhook", {{"type", "string"},
                   {"format", "uri"},
                   {"deprecated", true},
                   {"description", "Legacy webhook: answered 202 at once, then one unsigned "
                                   "POST {event: \"output.complete\", image, id, filename, "
                                   "prompt, stats} per image ({event: \"prompt.failed\"} on "
                                   "failure)."}}},
      {"webhook_v2", {{"type", "string"},
                      {"format", "uri"},
                      {"description", "Standard Webhooks: answered 202 at once, then one signed "
                                      "POST (webhook-id, webhook-timestamp, webhook-signature "
                                      "with WEBHOOK_SECRET) of type prompt.complete (the 200 "
                                      "body) or prompt.failed."}}},
      {"convert_output", ref("ConvertOutput")},
      {"http_upload", ref("HttpUpload")},
      {"s3", ref("S3Upload")}};
}

// Status codes every job route answers besides 200/202.
void add_job_errors(json& responses, bool template_route) {
  responses["400"] = error_response(
      "Bad request: invalid JSON, a field out of range, or a graph error naming the node and "
      "input",
      template_route ? "input.steps must be between 1 and 100, got 500"
                     : "node 294 (KSampler), input 'steps': must be between 1 and 10000, got 0",
      template_route ? "input.steps" : "prompt.294.inputs.steps");
  responses["409"] = error_response("A job with this id is queued or running", "a job with id x is already queued or running", "id");
  responses["413"] = error_response("Body larger than MAX_BODY_SIZE_MB", "the request body is larger than 100 MB (MAX_BODY_SIZE_MB)", "body");
  responses["415"] = error_response("Content-Type is not JSON", "Content-Type must be application/json, got 'text/plain'");
  responses["429"] = error_response("Queue full (MAX_QUEUE_DEPTH); see Retry-After", "queue full: 4 jobs waiting or running (MAX_QUEUE_DEPTH 4)", "queue");
  responses["429"]["headers"] = {{"Retry-After", {{"schema", {{"type", "integer"}}}}}};
  responses["500"] = response("The job failed or was interrupted", ref("JobFailed"),
                              {{"id", "my-job"}, {"status", "interrupted"},
                               {"error", "Prompt execution interrupted"}});
  responses["503"] = error_response("Loading the model or shutting down; see Retry-After", "the model is still loading", "server");
}

json workflow_operation(const WorkflowTemplate& t, const std::string& route,
                        const OpenApiOptions& o) {
  json props = request_common_properties();
  props["input"] = template_input_schema(t);
  json example_input = json::object();
  for (const auto& f : t.fields)
    if (f.required) example_input[f.name] = f.example.is_null() ? json("") : f.example;
    else if (!f.example.is_null()) example_input[f.name] = f.example;
  json op;
  op["summary"] = t.summary;
  std::string description = t.description;
  if (o.markdown_descriptions)
    description += (description.empty() ? "" : "\n\n") + markdown_field_table(t);
  if (route != t.route) description = "Alias of `" + t.route + "`.\n\n" + description;
  op["description"] = description;
  op["tags"] = {"workflows"};
  op["requestBody"] = {{"required", true},
                       {"content", json_content({{"type", "object"},
                                                 {"properties", props},
                                                 {"required", {"input"}},
                                                 {"additionalProperties", false}},
                                                {{"input", example_input}})}};
  json ok = ref("PromptResponse");
  ok = {{"allOf", {ok, {{"type", "object"},
                        {"properties", {{"input", {{"type", "object"},
                                                   {"description", "The input used, defaults "
                                                                   "and the seed included"}}}}}}}}};
  op["responses"]["200"] = response("The images (synchronous request)", ok);
  op["responses"]["202"] = response("Accepted: results go to the webhook", ok);
  add_job_errors(op["responses"], true);
  return op;
}

}  // namespace

json template_input_schema(const WorkflowTemplate& t) {
  json props = json::object(), required = json::array();
  for (const auto& f : t.fields) {
    json p = {{"type", type_name(f.type)}};
    if (f.minimum) p["minimum"] = f.type == TemplateField::Type::kInteger ? json(int64_t(*f.minimum)) : json(*f.minimum);
    if (f.maximum) p["maximum"] = f.type == TemplateField::Type::kInteger ? json(int64_t(*f.maximum)) : json(*f.maximum);
    if (!f.choices.empty()) p["enum"] = f.choices;
    if (!f.default_value.is_null()) p["default"] = f.default_value;
    std::string d = f.description;
    // comfyui-api puts one random number here; a fixed "default" would mislead clients.
    if (f.random) d += std::string(d.empty() ? "" : " ") + "(random when absent; at least 0)";
    if (!d.empty()) p["description"] = d;
    if (!f.example.is_null()) p["example"] = f.example;
    if (f.required) required.push_back(f.name);
    props[f.name] = p;
  }
  json s = {{"type", "object"}, {"properties", props}, {"additionalProperties", false}};
  if (!required.empty()) s["required"] = required;
  return s;
}

std::string markdown_field_table(const WorkflowTemplate& t) {
  auto cell = [](std::string s) {
    std::string out;
    for (char c : s) {
      if (c == '|') out += "\\|";
      else if (c == '\n') out += ' ';
      else out += c;
    }
    return out;
  };
  std::string md = "| Field | Type | Description | Default |\n|---|---|---|---|\n";
  for (const auto& f : t.fields) {
    std::string type = type_name(f.type);
    if (!f.choices.empty()) type = "enum";
    std::string def = f.required ? "**Required**"
                      : f.random ? "random"
                                 : "`" + f.default_value.dump() + "`";
    std::string desc = f.description;
    if (f.minimum || f.maximum) {
      std::ostringstream r;
      r << " (";
      if (f.minimum) r << *f.minimum;
      r << "…";
      if (f.maximum) r << *f.maximum;
      r << ")";
      desc += r.str();
    }
    if (!f.choices.empty() && f.choices.size() <= 12) {
      std::string list;
      for (const auto& c : f.choices) list += (list.empty() ? "" : ", ") + c.dump();
      desc += " One of: " + list + ".";
    }
    md += "| " + cell(f.name) + " | " + type + " | " + cell(desc) + " | " + cell(def) + " |\n";
  }
  return md;
}

json build_openapi(const OpenApiOptions& o,
                   const std::vector<std::shared_ptr<const WorkflowTemplate>>& templates) {
  json doc;
  doc["openapi"] = "3.0.3";
  // comfyui-api's title, so tools keyed on it keep working; the description says what it is.
  doc["info"] = {{"title", "ComfyUI API"},
                 {"version", o.version},
                 {"description", "sd35-server: Stable Diffusion 3.5 Medium with the comfyui-api "
                                 "HTTP contract (a native C++ server, no ComfyUI inside)."}};
  doc["servers"] = {{{"url", "{accessDomainName}"},
                     {"description", "Your server"},
                     {"variables",
                      {{"accessDomainName",
                        {{"default", "http://localhost:" + std::to_string(o.port)},
                         {"description",
                          "The domain name of the server, protocol included, port optional"}}}}}}};
  doc["components"]["schemas"] = component_schemas();
  json security = nullptr;
  if (o.api_key) {
    doc["components"]["securitySchemes"] = {
        {"bearer", {{"type", "http"}, {"scheme", "bearer"}}},
        {"apiKey", {{"type", "apiKey"}, {"in", "header"}, {"name", "X-API-Key"}}},
        {"saladApiKey", {{"type", "apiKey"}, {"in", "header"}, {"name", "Salad-Api-Key"}}}};
    security = {{{"bearer", json::array()}}, {{"apiKey", json::array()}},
                {{"saladApiKey", json::array()}}};
  }
  json& paths = doc["paths"];

  const json health_ex = {{"version", o.version}, {"status", "healthy"}};
  paths["/health"]["get"] = {
      {"summary", "Health Probe"},
      {"description", "Liveness/startup probe: 500 until the model is loaded and the warm-up "
                      "(WARMUP_PROMPT_FILE) ran, then 200. Open without the API key."},
      {"tags", {"probes"}},
      {"responses",
       {{"200", response("Healthy", probe_schema("healthy"), health_ex)},
        {"500", response("Not healthy yet", probe_schema("healthy"),
                         {{"version", o.version}, {"status", "not healthy"}})}}}};
  paths["/ready"]["get"] = {
      {"summary", "Readiness Probe"},
      {"description", "200 when warm and the queue is below MAX_QUEUE_DEPTH; 503 while "
                      "loading, draining (SIGTERM) or full. Open without the API key."},
      {"tags", {"probes"}},
      {"responses",
       {{"200", response("Ready", probe_schema("ready"), {{"version", o.version}, {"status", "ready"}})},
        {"503", response("Not ready", probe_schema("ready"),
                         {{"version", o.version}, {"status", "not ready"}})}}}};

  json models_props = json::object();
  for (const auto& m : o.model_types) models_props[m] = {{"type", "array"}, {"items", {{"type", "string"}}}};
  paths["/models"]["get"] = {
      {"summary", "List Models"},
      {"description", "The files of every folder of MODEL_DIR (ComfyUI layout)."},
      {"tags", {"models"}},
      {"responses",
       {{"200", response("Model files per folder",
                         {{"type", "object"},
                          {"properties", models_props},
                          {"additionalProperties", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
                         {{"checkpoints", {"sd3.5_medium.safetensors"}},
                          {"text_encoders", {"clip_g.safetensors", "clip_l.safetensors",
                                             "t5xxl_fp8_e4m3fn.safetensors"}}})}}}};

  json prompt_props = request_common_properties();
  prompt_props["prompt"] = ref("Graph");
  // The recipe's graph: "Try it out" in Swagger UI then makes an image as it is.
  const json prompt_example = {{"prompt", recipe_graph()}, {"id", "my-job-1"}};
  json prompt_op = {
      {"summary", "Submit Prompt"},
      {"description", "Run an API-format ComfyUI graph. Synchronous (200 with base64 images) "
                      "unless a webhook is given (202 at once, results to the webhook). "
                      "Unknown top-level keys are ignored, as comfyui-api."},
      {"tags", {"prompt"}},
      {"requestBody",
       {{"required", true},
        {"content", json_content({{"type", "object"},
                                  {"properties", prompt_props},
                                  {"required", {"prompt"}}},
                                 prompt_example)}}}};
  prompt_op["responses"]["200"] = response("The images (synchronous request)", ref("PromptResponse"));
  prompt_op["responses"]["202"] = response("Accepted: results go to the webhook", ref("PromptResponse"));
  add_job_errors(prompt_op["responses"], false);
  paths["/prompt"]["post"] = prompt_op;

  paths["/interrupt"]["post"] = {
      {"summary", "Interrupt Prompt"},
      {"description", "Cancel a queued or running job by its id; the job then answers 500 "
                      "with status \"interrupted\" (and its webhook says prompt.failed)."},
      {"tags", {"prompt"}},
      {"requestBody",
       {{"required", true},
        {"content", json_content({{"type", "object"},
                                  {"properties", {{"id", {{"type", "string"}}}}},
                                  {"required", {"id"}}},
                                 {{"id", "my-job-1"}})}}},
      {"responses",
       {{"200", response("Interrupted",
                         {{"type", "object"},
                          {"properties", {{"id", {{"type", "string"}}},
                                          {"interrupted", {{"type", "string"}, {"enum", {"success"}}}}}}},
                         {{"id", "my-job-1"}, {"interrupted", "success"}})},
        {"400", error_response("No id", "id (string) is required", "id")},
        {"404", response("No such job queued or running",
                         {{"type", "object"},
                          {"properties", {{"id", {{"type", "string"}}},
                                          {"interrupted", {{"type", "string"}, {"enum", {"failed"}}}}}}},
                         {{"id", "my-job-1"}, {"interrupted", "failed"}})}}}};

  for (const auto& t : templates) {
    paths[t->route]["post"] = workflow_operation(*t, t->route, o);
    for (const auto& a : t->aliases) paths[a]["post"] = workflow_operation(*t, a, o);
  }

  // API_KEY protects everything but the probes (and /docs, which is not listed, as in
  // comfyui-api's document).
  for (auto& [path, item] : paths.items())
    for (auto& [method, op] : item.items()) {
      const bool probe = path == "/health" || path == "/ready";
      if (!probe && !security.is_null()) {
        op["security"] = security;
        op["responses"]["401"] = error_response("Missing or wrong API key", "missing or wrong API key");
      }
    }
  return doc;
}

std::string to_yaml(const json& value) {
  std::string out;
  // Scalars as JSON: double-quoted strings with JSON escapes are YAML double-quoted scalars.
  auto scalar = [](const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); };
  std::function<void(const json&, int)> emit = [&](const json& v, int indent) {
    const std::string pad(size_t(indent), ' ');
    if (v.is_object()) {
      for (auto it = v.begin(); it != v.end(); ++it) {
        const json& c = it.value();
        out += pad + scalar(json(it.key())) + ":";
        if ((c.is_object() || c.is_array()) && !c.empty()) {
          out += "\n";
          emit(c, indent + 2);
        } else {
          out += " " + scalar(c) + "\n";
        }
      }
    } else if (v.is_array()) {
      for (const auto& c : v) {
        if ((c.is_object() || c.is_array()) && !c.empty()) {
          // "- " then the first line of the nested block on the same line.
          std::string saved;
          saved.swap(out);
          emit(c, indent + 2);
          std::string block;
          block.swap(out);
          out.swap(saved);
          out += pad + "- " + block.substr(size_t(indent) + 2);
        } else {
          out += pad + "- " + scalar(c) + "\n";
        }
      }
    } else {
      out += pad + scalar(v) + "\n";
    }
  };
  if ((value.is_object() || value.is_array()) && !value.empty()) emit(value, 0);
  else out = scalar(value) + "\n";
  return out;
}

}  // namespace sd35::server
