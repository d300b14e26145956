// A graph's way through the server: validation (before any work; errors name node and
// input, ComfyUI's node_errors shape), the model check, the queue, the job on the engine, and
// the comfyui-api response (base64 PNG/JPEG/WebP, "<id>_ComfyUI_00001_.png" names, stats), or
// for webhook requests a 202 at once and the result as webhook deliveries (outputs.h).
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>

#include "server/api.h"
#include "server/util.h"
#include "service/media/base64.h"

namespace sd35::server {

namespace fs = std::filesystem;
using nlohmann::json;
using service::Clock;
using service::JobInfo;
using service::JobState;
using service::SubmitOutcome;

// What a job leaves for its response.
struct JobOutput {
  std::vector<workflow::SavedImage> saved;
  Timings timings;
  double execute_ms = 0;  // execute_plan wall time (the engine's share of the request)
  // When each graph node started (stats.comfy_execution.nodes, as ComfyUI's "executing").
  std::vector<std::pair<std::string, Clock::time_point>> node_starts;
};

namespace {

json error_body(const std::string& message, const std::string& location) {
  return {{"error", message}, {"location", location}};
}

// ComfyUI's /prompt error: node_errors keyed by node id, each with errors[] of
// {type, message, details, extra_info}. "error"/"location" as comfyui-api's own 400s.
json node_error_body(const workflow::WorkflowError& e, const std::string& location) {
  json body = {{"error", e.to_string()}, {"location", location}, {"node_errors", json::object()}};
  if (e.node_id.empty()) return body;
  const bool unknown_class = e.input.empty() && e.message.rfind("unknown class_type", 0) == 0;
  json err = {{"type", unknown_class ? "missing_node_type"
                       : e.input.empty() ? "invalid_node"
                                         : "invalid_input"},
              {"message", e.message},
              {"details", e.input.empty() ? e.message : e.input + ": " + e.message},
              {"extra_info", e.input.empty() ? json::object() : json{{"input_name", e.input}}}};
  body["node_errors"][e.node_id] = {
      {"errors", json::array({err})}, {"dependent_outputs", json::array()}, {"class_type", e.class_type}};
  return body;
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Epoch milliseconds of a steady-clock instant (stats.comfy_execution.start/end).
int64_t epoch_ms(Clock::time_point t) {
  const auto sys_now = std::chrono::system_clock::now();
  const auto steady_now = Clock::now();
  const auto sys = sys_now - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                 steady_now - t);
  return std::chrono::duration_cast<std::chrono::milliseconds>(sys.time_since_epoch()).count();
}

double round1(double v) { return std::round(v * 10) / 10; }

// Gives back one count of Api::pending_ (a request whose answer is not out yet) on scope exit.
struct PendingRelease {
  std::atomic<int>& n;
  ~PendingRelease() { --n; }
};

// stats.comfy_execution.nodes: {"<node id>": {"start": epoch ms}} for every executed node.
json node_stats(const JobOutput& result) {
  json nodes = json::object();
  for (const auto& [id, t] : result.node_starts) nodes[id] = {{"start", epoch_ms(t)}};
  return nodes;
}

}  // namespace

std::optional<ApiError> Api::check_models(const workflow::Plan& plan) const {
  // The engine holds one model set; a graph naming another would silently run the loaded one.
  std::error_code ec;
  auto node_input_of = [&](const std::string& path, std::string* node, std::string* input,
                           std::string* cls) {
    for (const auto& n : plan.nodes) {
      if (auto* c = std::get_if<workflow::CheckpointLoaderOp>(&n.op); c && c->path == path) {
        *node = n.id, *input = "ckpt_name", *cls = n.class_type;
        return;
      }
      if (auto* c = std::get_if<workflow::VAELoaderOp>(&n.op); c && c->path == path) {
        *node = n.id, *input = "vae_name", *cls = n.class_type;
        return;
      }
      if (auto* c = std::get_if<workflow::ClipLoaderOp>(&n.op))
        for (size_t i = 0; i < c->paths.size(); ++i)
          if (c->paths[i] == path) {
            *node = n.id, *cls = n.class_type;
            *input = n.class_type == "CLIPLoader" ? "clip_name" : "clip_name" + std::to_string(i + 1);
            return;
          }
    }
  };
  auto refuse = [&](const std::string& path, const std::string& why) {
    workflow::WorkflowError e;
    node_input_of(path, &e.node_id, &e.input, &e.class_type);
    e.message = why;
    return ApiError{400, node_error_body(e, e.node_id.empty() ? "prompt"
                                                              : "prompt." + e.node_id + ".inputs." + e.input)};
  };
  if (!plan.checkpoint.empty() &&
      fs::weakly_canonical(plan.checkpoint, ec).string() != loaded_checkpoint_)
    return refuse(plan.checkpoint, "this server has " + fs::path(loaded_checkpoint_).filename().string() +
                                       " loaded; " + fs::path(plan.checkpoint).filename().string() +
                                       " is not available (one model set per server)");
  std::multiset<std::string> encoders;
  for (const auto& p : plan.text_encoders) encoders.insert(fs::weakly_canonical(p, ec).string());
  if (encoders != loaded_encoders_) {
    std::string loaded;
    for (const auto& p : loaded_encoders_)
      loaded += (loaded.empty() ? "" : ", ") + fs::path(p).filename().string();
    for (const auto& p : plan.text_encoders)
      if (!loaded_encoders_.count(fs::weakly_canonical(p, ec).string()))
        return refuse(p, "text encoder " + fs::path(p).filename().string() +
                             " is not loaded by this server (loaded: " + loaded + ")");
    workflow::WorkflowError e{"", "", "", "the graph must load the text encoders this server has loaded: " + loaded};
    return ApiError{400, node_error_body(e, "prompt")};
  }
  return check_vae(plan);
}

std::optional<ApiError> Api::check_vae(const workflow::Plan& plan) const {
  // The engine's VAE is the warm-up graph's VAELoader file (loaded_vae_) or, without one, the
  // checkpoint's own (loaded_vae_ empty). A graph asking for any other decodes wrongly.
  std::error_code ec;
  const std::string loaded_name = fs::path(loaded_vae_).filename().string();
  if (!plan.vae.empty() && fs::weakly_canonical(plan.vae, ec).string() != loaded_vae_) {
    workflow::WorkflowError e;
    for (const auto& n : plan.nodes)
      if (std::holds_alternative<workflow::VAELoaderOp>(n.op))
        e = {n.id, n.class_type, "vae_name", ""};
    const std::string name = fs::path(plan.vae).filename().string();
    e.message = loaded_vae_.empty() ? "this server uses the checkpoint's VAE; VAE file " + name +
                                          " is not loaded (one model set per server)"
                                    : "this server has VAE file " + loaded_name + " loaded; " +
                                          name + " is not available (one model set per server)";
    return ApiError{400, node_error_body(e, "prompt." + e.node_id + ".inputs.vae_name")};
  }
  if (!plan.vae.empty() || loaded_vae_.empty()) return std::nullopt;
  // No VAELoader here, but the server decodes with a VAE file: a VAE input fed by the
  // checkpoint would get that file's VAE, not the checkpoint's.
  for (const auto& n : plan.nodes) {
    const workflow::Link* l = nullptr;
    if (auto* o = std::get_if<workflow::VAEDecodeOp>(&n.op)) l = &o->vae;
    if (auto* o = std::get_if<workflow::VAEDecodeTiledOp>(&n.op)) l = &o->vae;
    if (auto* o = std::get_if<workflow::VAEEncodeOp>(&n.op)) l = &o->vae;
    if (!l) continue;
    workflow::WorkflowError e{n.id, n.class_type, "vae",
                              "this server decodes with VAE file " + loaded_name +
                                  " (VAELoader), not the checkpoint's VAE; load it with a "
                                  "VAELoader node (one model set per server)"};
    return ApiError{400, node_error_body(e, "prompt." + n.id + ".inputs.vae")};
  }
  return std::nullopt;
}

std::optional<ApiError> Api::prepare(const Submission& s, json* rewritten,
                                     workflow::Plan* plan) const {
  // comfyui-api's exact message for a graph without an output node.
  bool has_output = false;
  for (auto it = s.graph.begin(); it != s.graph.end(); ++it)
    if (it->is_object() && it->contains("inputs") && (*it)["inputs"].is_object() &&
        (*it)["inputs"].contains("filename_prefix") && (*it)["inputs"]["filename_prefix"].is_string())
      has_output = true;
  if (!has_output)
    return ApiError{400, error_body("Prompt must contain a node with a \"filename_prefix\" input, "
                                    "such as \"SaveImage\"",
                                    "prompt")};
  // PREPEND_FILENAMES (comfyui-api's default): every prefix becomes "<id>_<prefix>"; without
  // it the prefix is replaced by "<id>" (comfyui-api's legacy naming).
  *rewritten = s.graph;
  for (auto it = rewritten->begin(); it != rewritten->end(); ++it)
    if (it->is_object() && it->contains("inputs") && (*it)["inputs"].is_object() &&
        (*it)["inputs"].contains("filename_prefix") && (*it)["inputs"]["filename_prefix"].is_string())
      (*it)["inputs"]["filename_prefix"] =
          config_.prepend_filenames
              ? s.id + "_" + (*it)["inputs"]["filename_prefix"].get<std::string>()
              : s.id;

  workflow::WorkflowError err;
  auto parsed = workflow::parse_workflow(rewritten->dump(), workflow_options_, &err);
  if (!parsed.ok()) {
    // Template requests: name the field the client sent, not the graph node it went into.
    if (s.tmpl) {
      const std::string field = field_for(*s.tmpl, err.node_id, err.input);
      if (!field.empty())
        return ApiError{400, error_body("input." + field + ": " + err.message, "input." + field)};
    }
    std::string location = "prompt";
    if (!err.node_id.empty()) location += "." + err.node_id;
    if (!err.input.empty()) location += ".inputs." + err.input;
    return ApiError{400, node_error_body(err, location)};
  }
  if (auto e = check_models(*parsed)) {
    // Template requests: "prompt.<node>.inputs.<input>" back to the field that set it.
    const std::string loc = e->body.value("location", std::string());
    const size_t mid = loc.find(".inputs.");
    if (s.tmpl && loc.rfind("prompt.", 0) == 0 && mid != std::string::npos) {
      const std::string field = field_for(*s.tmpl, loc.substr(7, mid - 7), loc.substr(mid + 8));
      if (!field.empty())
        return ApiError{400, error_body("input." + field + ": " + e->body["error"].get<std::string>(),
                                        "input." + field)};
    }
    return e;
  }
  *plan = std::move(*parsed);
  return std::nullopt;
}

service::JobFunction Api::make_job(std::shared_ptr<const workflow::Plan> plan,
                                   std::shared_ptr<JobOutput> out) const {
  std::shared_ptr<const Engine> engine = engine_;
  PromptCache* cache = prompt_cache_.get();
  const Logger* log = &log_;
  return [engine, plan, out, cache, log](service::JobControl& control) -> Status {
    auto ws_or = engine->make_workspace(cache);
    if (!ws_or.ok()) return ws_or.status();
    std::unique_ptr<Workspace> ws = std::move(*ws_or);
    Workspace* w = ws.get();
    control.on_cancel([w] { w->cancel = true; });
    // The workspace dies with this frame (also if execute_plan throws): no cancel may reach
    // it afterwards.
    struct Unhook {
      service::JobControl& c;
      ~Unhook() { c.on_cancel(nullptr); }
    } unhook{control};
    // Sampler steps become the job's progress events (JobQueue snapshots, debug logs).
    const bool debug = log->enabled(LogLevel::kDebug);
    w->progress = [log, debug, &control](int step, int total) {
      control.report_progress(step, total);
      if (debug) log->debug("progress", {{"step", step}, {"total", total}});
    };
    const auto t0 = Clock::now();
    auto saved = workflow::execute_plan(*plan, *engine, *w, [&out](const workflow::PlanNode& n) {
      out->node_starts.emplace_back(n.id, Clock::now());
    });
    out->execute_ms = ms_since(t0);
    out->timings = w->timings;
    if (!saved.ok()) return saved.status();
    out->saved = std::move(*saved);
    return ok_status();
  };
}

ApiError Api::queue_refusal(SubmitOutcome outcome, const std::string& id) const {
  switch (outcome) {
    case SubmitOutcome::kQueueFull: {
      // A hint from recent jobs: the whole queue's expected time, at least a second.
      const double est_s = queue_.average_run_ms() / 1000.0 * double(queue_.depth());
      const int retry = std::max(1, int(std::ceil(est_s)));
      return ApiError{429,
                      error_body("queue full: " + std::to_string(queue_.depth()) +
                                     " jobs waiting or running (MAX_QUEUE_DEPTH " +
                                     std::to_string(queue_.max_depth()) + ")",
                                 "queue"),
                      {{"Retry-After", std::to_string(retry)}}};
    }
    case SubmitOutcome::kDraining:
      return ApiError{503, error_body("the server is shutting down", "server")};
    case SubmitOutcome::kDuplicateId:
      return ApiError{409, error_body("a job with id " + id + " is already queued or running", "id")};
    case SubmitOutcome::kAccepted: break;
  }
  return ApiError{500, error_body("unexpected queue state", "server")};
}

std::optional<ApiError> Api::parse_options(const std::shared_ptr<Call>& call, const json& body,
                                           Submission* s) const {
  s->request_id = call->request_id;
  s->echo = json::object();
  if (auto e = parse_request_options(body, webhook_policy_, &s->options, &s->echo))
    return ApiError{400, error_body(e->message, e->location)};
  if (!s->options.convert.warnings.empty()) {
    // Accepted for compatibility (comfyui-api took them), but the client should learn, from the
    // operator's logs at least, that they changed nothing.
    json warnings = s->options.convert.warnings;
    log_.warn("convert_output options accepted but not applied",
              {{"request_id", call->request_id}, {"id", s->id}, {"warnings", warnings}});
  }
  return std::nullopt;
}

void Api::deliver(std::vector<media::WebhookDelivery> deliveries, const std::string& id,
                  const std::string& request_id) const {
  for (auto& d : deliveries) {
    const std::string event = d.event, url = d.url;
    Status st = webhooks_ ? webhooks_->enqueue(std::move(d))
                          : unsupported("no webhook sender configured");
    // Never silently dropped: the result of an accepted job is lost, so say which one.
    if (!st.ok())
      log_.error("webhook not queued, result not delivered",
                 {{"id", id}, {"request_id", request_id}, {"event", event}, {"url", url},
                  {"error", st.to_string()}});
  }
}

void Api::submit(const std::shared_ptr<Call>& call, Submission s) {
  call->job_id = s.id;
  if (!engine_ready_.load())
    return respond(call, 503, error_body("the model is still loading", "server"),
                   {{"Retry-After", "5"}});
  if (draining_.load()) return respond(call, queue_refusal(SubmitOutcome::kDraining, s.id));
  if (s.options.has_webhook() && !webhooks_)
    return respond(call, 503, error_body("webhooks are not available on this server", "server"));
  // Counted as pending until validated, so a SIGTERM drain waits for its answer too.
  ++pending_;
  boost::asio::post(*preprocess_, [this, call, s = std::move(s)]() mutable {
    PendingRelease release{pending_};
    try {
      submit_prepared(call, std::move(s));
    } catch (const std::exception& e) {
      respond(call, 500, error_body(std::string("internal error: ") + e.what(), "server"));
    }
  });
}

void Api::submit_prepared(const std::shared_ptr<Call>& call, Submission s) {
  const auto t_received = call->start;
  json rewritten;
  workflow::Plan plan;
  if (auto e = prepare(s, &rewritten, &plan)) return respond(call, *e);
  // Full queues answer before the graph is copied anywhere.
  if (queue_.full()) return respond(call, queue_refusal(SubmitOutcome::kQueueFull, s.id));

  auto out = std::make_shared<JobOutput>();
  auto plan_ptr = std::make_shared<const workflow::Plan>(std::move(plan));
  const double preprocess_ms = ms_since(t_received);
  const auto t_submit = Clock::now();
  auto state = std::make_shared<Submission>(std::move(s));
  auto graph = std::make_shared<json>(std::move(rewritten));
  // The 202 of webhook requests (contract §2.3): the echo, status, id and the rewritten
  // graph, built before the job may start (the job never writes the graph).
  json accepted;
  if (state->options.async()) {
    accepted = state->echo;
    accepted["status"] = "ok";
    accepted["id"] = state->id;
    accepted["prompt"] = *graph;
    if (state->tmpl) accepted["input"] = state->input;
  }
  ++pending_;
  // Runs on the worker thread: hand the response building (PNG, base64) to the I/O threads, or
  // with uploads to the upload pool, so the engine can start the next job at once.
  auto done = [this, call, out, state, graph, preprocess_ms, t_submit](const JobInfo& info) {
    auto respond_later = [this, call, out, state, graph, preprocess_ms, t_submit, info] {
      PendingRelease release{pending_};
      try {
        finish(call, *out, *state, *graph, preprocess_ms, t_submit, info);
      } catch (const std::exception& e) {
        const std::string why = std::string("internal error: ") + e.what();
        if (state->options.async())
          deliver(failure_deliveries(state->options, state->id, *graph, why, state->request_id),
                  state->id, state->request_id);
        respond(call, 500, {{"id", state->id}, {"error", why}});
      }
    };
    if (state->options.uploads())
      boost::asio::post(*upload_pool_, std::move(respond_later));
    else
      boost::asio::post(io_, std::move(respond_later));
  };
  const SubmitOutcome outcome = queue_.submit(state->id, make_job(plan_ptr, out), done);
  if (outcome != SubmitOutcome::kAccepted) {
    --pending_;
    return respond(call, queue_refusal(outcome, state->id));
  }
  log_.debug("queued", {{"id", state->id}, {"request_id", call->request_id}, {"depth", queue_.depth()}});
  if (!state->options.webhook.empty())
    log_.warn("webhook is deprecated in favour of webhook_v2 (signed, one call per job)",
              {{"id", state->id}, {"request_id", call->request_id}});
  if (state->options.async()) respond(call, 202, accepted);
}

void Api::finish(const std::shared_ptr<Call>& call, const JobOutput& result,
                 const Submission& submission, const json& rewritten, double preprocess_ms,
                 Clock::time_point t_submit, const JobInfo& info) {
  const bool async = submission.options.async();
  const std::string& id = submission.id;
  // An async job's outcome has no HTTP reply left to carry it: one log line per job.
  auto log_async = [&](LogLevel level, const std::string& outcome, const std::string& error) {
    json f = {{"id", id}, {"request_id", submission.request_id}, {"state", outcome},
              {"run_ms", round1(info.run_ms())}, {"total_ms", round1(ms_since(call->start))}};
    if (!error.empty()) f["error"] = error;
    log_.log(level, "job finished", f);
  };
  auto fail = [&](unsigned status, const std::string& state, const std::string& error) {
    if (!async)
      return respond(call, status, {{"id", id}, {"status", state}, {"error", error}});
    log_async(status >= 500 && state != "interrupted" ? LogLevel::kError : LogLevel::kInfo, state,
              error);
    // "interrupted" goes out as prompt.failed too (SPEC-api §3: its webhook says so).
    deliver(failure_deliveries(submission.options, id, rewritten, error, submission.request_id),
            id, submission.request_id);
  };
  if (info.state == JobState::kInterrupted)
    return fail(500, "interrupted", "Prompt execution interrupted");
  if (info.state != JobState::kSucceeded) {
    const StatusCode c = info.status.code();
    const bool client_fault = c == StatusCode::kInvalidArgument || c == StatusCode::kNotFound ||
                              c == StatusCode::kUnsupported;
    return fail(client_fault ? 400 : 500, "failed",
                "Prompt execution failed: " + info.status.message());
  }
  const auto t_post = Clock::now();
  json body = submission.echo;
  body["id"] = id;
  body["prompt"] = rewritten;
  const std::string prompt_text = rewritten.dump(-1, ' ', false, json::error_handler_t::replace);
  std::vector<std::string> warnings;
  auto encoded = encode_outputs(result.saved, submission.options.convert, prompt_text, &warnings);
  if (!encoded.ok()) return fail(500, "failed", encoded.status().to_string());
  if (!warnings.empty())
    log_.warn("convert_output failed, PNG sent instead",
              {{"id", id}, {"request_id", submission.request_id}, {"warnings", warnings}});
  json images = json::array(), filenames = json::array();
  double upload_ms = 0;
  if (submission.options.uploads()) {
    // On the upload pool (see submit_prepared): the PUTs may take long.
    const auto t_upload = Clock::now();
    Status st = upload_outputs(submission.options.upload, uploads_, *encoded, &abort_uploads_);
    upload_ms = ms_since(t_upload);
    if (!st.ok()) return fail(500, "failed", st.message());
    images = upload_urls(submission.options.upload, *encoded);
    log_.info("outputs uploaded", {{"id", id}, {"request_id", submission.request_id},
                                   {"target", submission.options.upload.field()},
                                   {"files", encoded->size()}, {"ms", round1(upload_ms)}});
  }
  for (auto& e : *encoded) {
    if (!submission.options.uploads()) images.push_back(media::base64_encode(e.data));
    filenames.push_back(std::move(e.filename));
  }
  body["images"] = std::move(images);
  body["filenames"] = std::move(filenames);
  // Encoding (and base64) only: the PUTs are upload_time.
  const double post_ms = ms_since(t_post) - upload_ms;
  const Timings& t = result.timings;
  body["stats"] = {
      {"comfy_execution",
       {{"start", epoch_ms(info.started)},
        {"end", epoch_ms(info.finished)},
        {"duration", round1(info.run_ms())},
        {"nodes", node_stats(result)}}},
      {"preprocess_time", round1(preprocess_ms)},
      {"comfy_round_trip_time", round1(std::chrono::duration<double, std::milli>(
                                           info.finished - t_submit).count())},
      {"postprocess_time", round1(post_ms)},
      {"upload_time", round1(upload_ms)},
      {"total_time", round1(ms_since(call->start))},
      // sd35 additions: where the time went.
      {"queue_time", round1(info.queue_ms())},
      {"engine",
       {{"execute_ms", round1(result.execute_ms)},
        {"encode_prompt_ms", round1(t.encode_prompt_s * 1000)},
        {"sample_ms", round1(t.sample_s * 1000)},
        {"vae_decode_ms", round1(t.vae_decode_s * 1000)},
        {"model_calls", t.model_calls}}}};
  if (submission.tmpl) body["input"] = submission.input;
  if (!async) return respond(call, 200, body);
  log_async(LogLevel::kInfo, "succeeded", "");
  deliver(completion_deliveries(submission.options, body, id, submission.request_id), id,
          submission.request_id);
}

Status Api::run_blocking(const std::string& graph_text, const std::string& id) {
  Submission s;
  s.id = id;
  s.graph = json::parse(graph_text, nullptr, false);
  if (s.graph.is_discarded()) return invalid_argument("the graph is not valid JSON");
  if (s.graph.is_object() && s.graph.contains("prompt") && s.graph["prompt"].is_object() &&
      !s.graph["prompt"].contains("class_type"))
    s.graph = json(s.graph["prompt"]);
  if (!s.graph.is_object()) return invalid_argument("the graph must be a JSON object");
  json rewritten;
  workflow::Plan plan;
  if (auto e = prepare(s, &rewritten, &plan)) return invalid_argument(e->body.dump());
  auto out = std::make_shared<JobOutput>();
  std::promise<JobInfo> finished;
  auto future = finished.get_future();
  const auto outcome = queue_.submit(
      id, make_job(std::make_shared<const workflow::Plan>(std::move(plan)), out),
      [&finished](const JobInfo& info) { finished.set_value(info); });
  if (outcome != SubmitOutcome::kAccepted) return unsupported(queue_refusal(outcome, id).body.dump());
  const JobInfo info = future.get();
  if (info.state != JobState::kSucceeded) return info.status;
  size_t images = 0;
  for (const auto& sv : out->saved) images += size_t(sv.images.size(0));
  if (images == 0) return internal_error("the graph produced no image");
  log_.info("warm-up done", {{"id", id}, {"ms", round1(info.run_ms())}, {"images", images}});
  return ok_status();
}

}  // namespace sd35::server
