// Routing, authentication, probes, the API documentation (/docs) and request parsing. Jobs:
// api_jobs.cpp.
#include "server/api.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <filesystem>

#include "io/safetensors.h"
#include "server/docs_assets.h"
#include "server/openapi.h"
#include "server/util.h"

#ifndef SD35_VERSION
#define SD35_VERSION "0.0.0"
#endif

namespace sd35::server {

namespace fs = std::filesystem;
using nlohmann::json;
using service::Clock;

std::string Api::version() { return SD35_VERSION; }

namespace {
service::JobQueueOptions queue_options(const ServerConfig& config) {
  service::JobQueueOptions o;
  o.max_depth = size_t(std::max(0, config.max_queue_depth));
  return o;
}
}  // namespace

Api::Api(const ServerConfig& config, const Logger& log, boost::asio::io_context& io)
    : config_(config),
      log_(log),
      io_(io),
      queue_(queue_options(config)) {
  workflow_options_.models_dir = config.model_dir;
  // LoadImage: names inside INPUT_DIR only; inline images (base64, data:, http(s)) with the
  // media library's size limits and address policy.
  workflow_options_.input_dir = config.input_dir;
  workflow_options_.allow_absolute_image_paths = false;
  workflow_options_.input_images.net.allow_private_addresses = config.allow_private_input_urls;
  webhook_policy_.allow_private_addresses = config.allow_private_webhooks;
  // Four threads: validation is mostly waiting on input-image downloads (each bounded by its
  // timeout); decoding is short next to a generation.
  preprocess_ = std::make_unique<boost::asio::thread_pool>(4);
  // Four uploaders: mostly waiting on stores; each PUT is bounded by UPLOAD_TIMEOUT_S.
  upload_pool_ = std::make_unique<boost::asio::thread_pool>(4);
}

Api::~Api() {
  preprocess_->join();
  preprocess_.reset();
  // The drain already waited for uploads (pending_replies); what is left past it stops now.
  abort_uploads_ = true;
  upload_pool_->join();
  upload_pool_.reset();
}

Status Api::load_workflows() {
  // Enums of model files are the files present at start-up, as in comfyui-api.
  TemplateContext ctx;
  const json models = models_listing();
  for (auto it = models.begin(); it != models.end(); ++it)
    ctx.models[it.key()] = it.value().get<std::vector<std::string>>();
  std::vector<TemplateProblem> problems;
  std::vector<std::string> notes;
  std::string error;
  const bool ok = workflows_.load(
      ctx, RegistryOptions{.workflow_dir = config_.workflow_dir, .demo = config_.demo},
      &problems, &notes, &error);
  for (const auto& n : notes) log_.warn("workflow template skipped", {{"note", n}});
  // A bad file costs its own endpoint, not the server (comfyui-api logs and skips too).
  for (const auto& p : problems)
    log_.error("workflow template not loaded", {{"file", p.file}, {"reason", p.message}});
  if (!ok) return invalid_argument(error);
  json routes = json::array();
  for (const auto& t : workflows_.templates()) {
    routes.push_back(t->route);
    for (const auto& a : t->aliases) routes.push_back(a);
  }
  log_.info("workflow endpoints", {{"routes", routes},
                                   {"workflow_dir", config_.workflow_dir},
                                   {"skipped_files", problems.size()}});
  build_openapi_document(config_.port);
  return ok_status();
}

void Api::set_listen_port(uint16_t port) { build_openapi_document(port); }

void Api::build_openapi_document(int port) {
  OpenApiOptions o;
  o.version = version();
  o.port = port;
  o.markdown_descriptions = config_.markdown_schema_descriptions;
  o.api_key = !config_.api_key.empty();
  const json models = models_listing();
  for (auto it = models.begin(); it != models.end(); ++it) o.model_types.push_back(it.key());
  const json doc = build_openapi(o, workflows_.templates());
  openapi_json_ = doc.dump(2, ' ', false, json::error_handler_t::replace);
  openapi_yaml_ = to_yaml(doc);
}

void Api::set_engine(std::unique_ptr<Engine> engine, const workflow::Plan& loaded_from) {
  std::error_code ec;
  loaded_checkpoint_ = fs::weakly_canonical(loaded_from.checkpoint, ec).string();
  for (const auto& p : loaded_from.text_encoders)
    loaded_encoders_.insert(fs::weakly_canonical(p, ec).string());
  loaded_vae_ = loaded_from.vae.empty() ? "" : fs::weakly_canonical(loaded_from.vae, ec).string();
  prompt_cache_ = std::make_unique<PromptCache>();
  engine_ = std::shared_ptr<const Engine>(std::move(engine));
  engine_ready_ = true;
}

namespace {

Response make_response(unsigned version, unsigned status, const json& body) {
  Response r{http::int_to_status(status), version};
  r.set(http::field::content_type, "application/json; charset=utf-8");
  r.set(http::field::server, "sd35-server/" + Api::version());
  r.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

json error_body(const std::string& message, const std::string& location = "") {
  json b = {{"error", message}};
  if (!location.empty()) b["location"] = location;
  return b;
}

// Fastify's 404 body, which clients of comfyui-api may parse.
json not_found_body(const std::string& method, const std::string& path) {
  return {{"message", "Route " + method + ":" + path + " not found"},
          {"error", "Not Found"},
          {"statusCode", 404}};
}

std::string header_value(const Request& r, std::string_view name) {
  auto it = r.find(boost::beast::string_view(name.data(), name.size()));
  return it == r.end() ? std::string() : std::string(it->value().data(), it->value().size());
}

}  // namespace

void Api::respond(const std::shared_ptr<Call>& call, unsigned status, const json& body,
                  const std::vector<std::pair<std::string, std::string>>& headers) {
  if (call->answered.exchange(true)) return;
  Response r = make_response(call->version, status, body);
  r.set("X-Request-ID", call->request_id);
  for (const auto& [k, v] : headers) r.set(k, v);
  const double ms =
      std::chrono::duration<double, std::milli>(Clock::now() - call->start).count();
  json fields = {{"method", call->method}, {"path", call->path},     {"status", status},
                 {"ms", std::round(ms * 10) / 10}, {"request_id", call->request_id}};
  if (!call->job_id.empty()) fields["id"] = call->job_id;
  if (status >= 400 && body.contains("error") && body["error"].is_string())
    fields["error"] = body["error"];
  // Probes arrive every second or two; they are debug noise unless something is wrong.
  const bool probe = call->path == "/health" || call->path == "/ready";
  log_.log(probe && status < 500 ? LogLevel::kDebug
           : status >= 500        ? LogLevel::kError
                                  : LogLevel::kInfo,
           "request", fields);
  call->reply(std::move(r));
}

void Api::respond_raw(const std::shared_ptr<Call>& call, unsigned status, std::string_view body,
                      const std::vector<std::pair<std::string, std::string>>& headers) {
  if (call->answered.exchange(true)) return;
  Response r{http::int_to_status(status), call->version};
  r.set(http::field::server, "sd35-server/" + Api::version());
  r.set("X-Request-ID", call->request_id);
  for (const auto& [k, v] : headers) r.set(k, v);
  r.body().assign(body.data(), body.size());
  const double ms =
      std::chrono::duration<double, std::milli>(Clock::now() - call->start).count();
  // The page and its files are fetched in bursts by browsers: debug noise.
  log_.log(LogLevel::kDebug, "request",
           {{"method", call->method}, {"path", call->path}, {"status", status},
            {"ms", std::round(ms * 10) / 10}, {"request_id", call->request_id}});
  call->reply(std::move(r));
}

bool Api::handle_docs(const std::shared_ptr<Call>& call, const Request& request) {
  const std::string& path = call->path;
  if (path == "/docs/json" || path == "/docs/yaml") {
    const bool yaml = path == "/docs/yaml";
    respond_raw(call, 200, yaml ? openapi_yaml_ : openapi_json_,
                {{"Content-Type", yaml ? "application/yaml; charset=utf-8"
                                       : "application/json; charset=utf-8"},
                 {"Cache-Control", "no-cache"}});
    return true;
  }
  const DocsAsset* asset = find_docs_asset(path);
  if (!asset) return false;
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Cache-Control", asset->cache_control}, {"ETag", asset->etag},
      {"X-Content-Type-Options", "nosniff"}};
  if (etag_matches(header_value(request, "If-None-Match"), asset->etag)) {
    respond_raw(call, 304, "", headers);
    return true;
  }
  headers.emplace_back("Content-Type", asset->content_type);
  respond_raw(call, 200, asset->body, headers);
  return true;
}

Response Api::transport_error(const Request& headers, http::status status,
                              const std::string& why) {
  const unsigned code = unsigned(status);
  std::string rid = header_value(headers, "X-Request-ID");
  if (!is_acceptable_request_id(rid)) rid = make_uuid();
  const std::string target(headers.target().data(), headers.target().size());
  const std::string path = target.substr(0, target.find('?'));
  log_.log(code >= 500 ? LogLevel::kError : LogLevel::kInfo, "request",
           {{"method", std::string(headers.method_string())},
            {"path", path},
            {"status", code},
            {"request_id", rid},
            {"error", why}});
  Response r = make_response(headers.version() ? headers.version() : 11, code,
                             error_body(why, code == 413 ? "body" : ""));
  r.set("X-Request-ID", rid);
  return r;
}

bool Api::authorized(const Request& request) const {
  if (config_.api_key.empty()) return true;
  std::string key = header_value(request, "X-API-Key");
  if (key.empty()) key = header_value(request, "Salad-Api-Key");
  if (key.empty()) {
    const std::string auth = header_value(request, "Authorization");
    if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0))
      key = auth.substr(7);
  }
  return !key.empty() && constant_time_equals(key, config_.api_key);
}

void Api::handle(Request&& request, Reply reply) {
  auto call = std::make_shared<Call>();
  call->reply = std::move(reply);
  call->start = Clock::now();
  call->version = request.version();
  call->method = std::string(request.method_string().data(), request.method_string().size());
  const std::string target(request.target().data(), request.target().size());
  call->path = target.substr(0, target.find('?'));
  call->request_id = header_value(request, "X-Request-ID");
  if (!is_acceptable_request_id(call->request_id)) call->request_id = make_uuid();
  try {
    route(call, request);
  } catch (const std::exception& e) {
    respond(call, 500, error_body(std::string("internal error: ") + e.what()));
  }
}

void Api::route(const std::shared_ptr<Call>& call, Request& request) {
  const std::string& path = call->path;
  const http::verb method = request.method();
  const bool get = method == http::verb::get || method == http::verb::head;

  // Probes stay open without the API key (load balancers and orchestrators call them).
  if (path == "/health" && get) {
    const bool healthy = warm_.load();
    return respond(call, healthy ? 200 : 500,
                   {{"version", version()}, {"status", healthy ? "healthy" : "not healthy"}});
  }
  if (path == "/ready" && get) {
    const bool ready = warm_.load() && !draining_.load() && !queue_.full();
    return respond(call, ready ? 200 : 503,
                   {{"version", version()}, {"status", ready ? "ready" : "not ready"}});
  }

  // The API documentation stays open without the API key too (SPEC-api §5).
  if (get && (path == "/docs" || path.rfind("/docs/", 0) == 0) && handle_docs(call, request))
    return;

  const bool is_post = method == http::verb::post;
  const WorkflowTemplate* tmpl =
      is_post && path.rfind("/workflow/", 0) == 0 ? workflows_.find(path) : nullptr;
  const bool known = (path == "/models" && get) || tmpl != nullptr ||
                     (is_post && (path == "/prompt" || path == "/interrupt"));
  if (!known) return respond(call, 404, not_found_body(call->method, path));
  if (!authorized(request))
    return respond(call, 401, error_body("missing or wrong API key"),
                   {{"WWW-Authenticate", "Bearer"}});

  if (path == "/models") return respond(call, 200, models_listing());

  // POST routes: a JSON body.
  const std::string type = header_value(request, "Content-Type");
  if (!type.empty() && type.find("json") == std::string::npos)
    return respond(call, 415,
                   error_body("Content-Type must be application/json, got '" + type + "'"));
  // Deeply nested JSON would overflow the stack of the (recursive) serializer later.
  if (!json_nesting_within(request.body(), 128))
    return respond(call, 400, error_body("the body nests JSON deeper than 128 levels", "body"));
  json body;
  try {
    body = json::parse(request.body());
  } catch (const json::parse_error& e) {
    return respond(call, 400, error_body(std::string("the body is not valid JSON: ") + e.what(),
                                         "body"));
  }
  request.body().clear();  // the parsed copy is all we need; free the text early
  if (!body.is_object()) return respond(call, 400, error_body("the body must be a JSON object", "body"));

  if (path == "/prompt") return handle_prompt(call, body);
  if (path == "/interrupt") return handle_interrupt(call, body);
  return handle_workflow(call, body, *tmpl);
}

namespace {

// The caller's id (a string, as comfyui-api's schema) or a fresh UUID.
std::optional<ApiError> job_id(const json& body, std::string* id) {
  if (!body.contains("id")) {
    *id = make_uuid();
    return std::nullopt;
  }
  const json& v = body["id"];
  if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 256)
    return ApiError{400, error_body("id must be a non-empty string of at most 256 characters", "id")};
  *id = v.get<std::string>();
  return std::nullopt;
}

}  // namespace

void Api::handle_prompt(const std::shared_ptr<Call>& call, const json& body) {
  if (!engine_ready_.load())
    return respond(call, 503, error_body("the model is still loading", "server"),
                   {{"Retry-After", "5"}});
  if (!body.contains("prompt") || !body["prompt"].is_object())
    return respond(call, 400, error_body("prompt (an API-format graph object) is required", "prompt"));
  Submission s;
  if (auto e = job_id(body, &s.id)) return respond(call, *e);
  // Unknown top-level keys are dropped, not echoed (comfyui-api's schema strips them too).
  if (auto e = parse_options(call, body, &s)) return respond(call, *e);
  if (auto e = parse_upload_options(body, uploads_, &s.options, &s.echo))
    return respond(call, 400, error_body(e->message, e->location));
  s.graph = body["prompt"];
  submit(call, std::move(s));
}

void Api::handle_workflow(const std::shared_ptr<Call>& call, const json& body,
                          const WorkflowTemplate& tmpl) {
  if (!engine_ready_.load())
    return respond(call, 503, error_body("the model is still loading", "server"),
                   {{"Retry-After", "5"}});
  // Unsupported comfyui-api fields (hf_upload, …) get parse_upload_options' clearer message.
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "input" && it.key() != "id" && it.key() != "webhook" &&
        it.key() != "webhook_v2" && it.key() != "convert_output" && it.key() != "http_upload" &&
        it.key() != "s3" && it.key() != "hf_upload" && it.key() != "azure_blob_upload" &&
        it.key() != "credentials")
      return respond(call, 400,
                     error_body(it.key() + " is not a field of this endpoint (input, id, webhook, "
                                           "webhook_v2, convert_output, s3, http_upload)",
                                it.key()));
  if (!body.contains("input")) return respond(call, 400, error_body("input is required", "input"));
  Submission s;
  if (auto e = job_id(body, &s.id)) return respond(call, *e);
  if (auto e = parse_options(call, body, &s)) return respond(call, *e);
  if (auto e = parse_upload_options(body, uploads_, &s.options, &s.echo))
    return respond(call, 400, error_body(e->message, e->location));
  TemplateError terr;
  auto graph = fill_template(tmpl, body["input"], &s.input, &terr);
  if (!graph)
    return respond(call, 400,
                   error_body(terr.message, terr.field.empty() ? "input" : "input." + terr.field));
  s.graph = std::move(*graph);
  s.tmpl = &tmpl;
  submit(call, std::move(s));
}

void Api::handle_interrupt(const std::shared_ptr<Call>& call, const json& body) {
  if (!body.contains("id") || !body["id"].is_string())
    return respond(call, 400, error_body("id (string) is required", "id"));
  const std::string id = body["id"].get<std::string>();
  call->job_id = id;
  if (queue_.cancel(id)) return respond(call, 200, {{"id", id}, {"interrupted", "success"}});
  respond(call, 404, {{"id", id}, {"interrupted", "failed"}});
}

json Api::models_listing() const {
  // Every sub-folder of MODEL_DIR with its files (as ComfyUI's /models per type), skipping
  // the "put_*_here" placeholders of ComfyUI's tree.
  json out = json::object();
  std::error_code ec;
  for (fs::directory_iterator it(config_.model_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec)) continue;
    std::vector<std::string> files;
    for (fs::recursive_directory_iterator f(it->path(), ec), fend; !ec && f != fend;
         f.increment(ec)) {
      const std::string name = f->path().filename().string();
      if (name.rfind("put_", 0) == 0 && name.size() > 9 &&
          name.compare(name.size() - 5, 5, "_here") == 0)
        continue;
      if (!f->is_regular_file(ec)) continue;  // follows symlinks (the --demo folder)
      if (name == "config.json") continue;    // tiny models' side files are not models
      files.push_back(f->path().lexically_relative(it->path()).string());
    }
    std::sort(files.begin(), files.end());
    out[it->path().filename().string()] = files;
  }
  return out;
}

}  // namespace sd35::server
