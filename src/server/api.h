// The comfyui-api routes (reference/comfyui-api-contract.md §2–§11) on top of the job queue
// and one Engine: /health, /ready, /models, /prompt, /workflow/... (the built-in and
// WORKFLOW_DIR templates, server/workflow_registry.h), /interrupt, and the API documentation
// /docs (Swagger UI), /docs/json, /docs/yaml. Every response carries X-Request-ID and is logged
// as one JSON line; all but the /docs page and its files are JSON.
//
// Split over two files: api.cpp (routing, auth, probes, docs, request parsing) and
// api_jobs.cpp (graph → validated plan → queued job → response with base64 PNGs, warm-up),
// with the storage uploads in uploads.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pipeline/conditioning.h"
#include "pipeline/engine.h"
#include "server/config.h"
#include "server/http_server.h"
#include "server/log.h"
#include "server/outputs.h"
#include "server/txt2img.h"
#include "server/uploads.h"
#include "server/workflow_registry.h"
#include "service/job_queue.h"
#include "service/workflow/plan.h"

namespace boost::asio {
class io_context;
class thread_pool;
}

namespace sd35::server {

struct JobOutput;  // api_jobs.cpp

// An error answer: HTTP status, JSON body, extra headers (Retry-After).
struct ApiError {
  ApiError(unsigned s, nlohmann::json b,
           std::vector<std::pair<std::string, std::string>> h = {})
      : status(s), body(std::move(b)), headers(std::move(h)) {}
  unsigned status = 400;
  nlohmann::json body;
  std::vector<std::pair<std::string, std::string>> headers;
};

class Api {
 public:
  // `io` runs response building (PNG encoding) off the job worker.
  Api(const ServerConfig& config, const Logger& log, boost::asio::io_context& io);
  ~Api();  // joins the preprocessing threads first

  // Loads the workflow templates (built-ins, WORKFLOW_DIR) and generates the OpenAPI
  // document; bad template files are logged and skipped. Call once, before serving. Fails
  // only when WORKFLOW_DIR is set but unusable.
  Status load_workflows();
  // The port actually bound (PORT=0 picks one): the document's default server URL. Call
  // before the I/O threads start.
  void set_listen_port(uint16_t port);

  // The engine and the model files it was loaded from (a graph naming others is refused).
  void set_engine(std::unique_ptr<Engine> engine, const workflow::Plan& loaded_from);
  // The webhook sender (owned by main, outlives the Api). Without one, webhook requests get 503.
  void set_webhooks(media::WebhookSender* sender) { webhooks_ = sender; }
  // Storage uploads (server/uploads.h). Without this call s3 blocks get a 400 and http_upload
  // targets must be public.
  void set_uploads(UploadSettings settings) { uploads_ = std::move(settings); }
  // Warm-up done: /health 200, /ready 200 (unless full or draining).
  void set_warm() { warm_ = true; }
  // SIGTERM: /ready 503 and new jobs 503 at once.
  void begin_drain() { draining_ = true; }
  service::JobQueue& queue() { return queue_; }
  // Accepted requests whose response has not been handed to the transport yet, and finished
  // jobs whose uploads (sync or async) are still running: the SIGTERM drain waits for both.
  int pending_replies() const { return pending_.load(); }

  void handle(Request&& request, Reply reply);
  Response transport_error(const Request& headers, http::status status, const std::string& why);

  // Runs a graph (API format, or {"prompt": graph}) through the queue and waits: the warm-up.
  // Returns the reason on failure.
  Status run_blocking(const std::string& graph_text, const std::string& id);

  static std::string version();

 private:
  // One request in flight: ids, timing, the reply (answered once).
  struct Call {
    Reply reply;
    std::string method, path, request_id, job_id;
    unsigned version = 11;
    service::Clock::time_point start;
    std::atomic<bool> answered{false};
  };
  void route(const std::shared_ptr<Call>& call, Request& request);
  void respond(const std::shared_ptr<Call>& call, unsigned status, const nlohmann::json& body,
               const std::vector<std::pair<std::string, std::string>>& headers = {});
  void respond(const std::shared_ptr<Call>& call, const ApiError& error) {
    respond(call, error.status, error.body, error.headers);
  }
  // A non-JSON answer (the /docs page and its files, the YAML document).
  void respond_raw(const std::shared_ptr<Call>& call, unsigned status, std::string_view body,
                   const std::vector<std::pair<std::string, std::string>>& headers);
  // GET /docs, /docs/, /docs/json, /docs/yaml, /docs/static/<file>; false if not a docs path.
  bool handle_docs(const std::shared_ptr<Call>& call, const Request& request);
  void build_openapi_document(int port);
  bool authorized(const Request& request) const;

  void handle_prompt(const std::shared_ptr<Call>& call, const nlohmann::json& body);
  void handle_workflow(const std::shared_ptr<Call>& call, const nlohmann::json& body,
                       const WorkflowTemplate& tmpl);
  void handle_interrupt(const std::shared_ptr<Call>& call, const nlohmann::json& body);
  nlohmann::json models_listing() const;

  // api_jobs.cpp. `input` (template requests) is echoed as the resolved input.
  struct Submission {
    nlohmann::json graph;  // the client's graph
    std::string id;
    nlohmann::json echo;   // request fields echoed in the response
    const WorkflowTemplate* tmpl = nullptr;
    nlohmann::json input;  // resolved template input (with the seed used)
    RequestOptions options;  // convert_output, webhook, webhook_v2
    std::string request_id;  // X-Request-ID, for the logs of webhook deliveries
  };
  // Reads the output options (convert_output, webhook, webhook_v2) into s->options and s->echo;
  // logs the convert_output options that are accepted but not applied.
  std::optional<ApiError> parse_options(const std::shared_ptr<Call>& call,
                                        const nlohmann::json& body, Submission* s) const;
  // Hands deliveries to the webhook sender; a refusal (queue full) is logged with the ids.
  void deliver(std::vector<media::WebhookDelivery> deliveries, const std::string& id,
               const std::string& request_id) const;
  // Cheap checks on the I/O thread, then validation (graph parsing, input-image downloads and
  // decoding) on the preprocessing pool, then the queue.
  void submit(const std::shared_ptr<Call>& call, Submission submission);
  void submit_prepared(const std::shared_ptr<Call>& call, Submission submission);
  // Validation shared by HTTP requests and the warm-up: the rewritten graph and its plan.
  std::optional<ApiError> prepare(const Submission& s, nlohmann::json* rewritten,
                                  workflow::Plan* plan) const;
  std::optional<ApiError> check_models(const workflow::Plan& plan) const;
  std::optional<ApiError> check_vae(const workflow::Plan& plan) const;  // part of check_models
  // The response of a finished job: on an I/O thread, or for upload requests on the upload
  // pool (the PUTs block).
  void finish(const std::shared_ptr<Call>& call, const JobOutput& out,
              const Submission& submission, const nlohmann::json& rewritten,
              double preprocess_ms, service::Clock::time_point t_submit,
              const service::JobInfo& info);
  service::JobFunction make_job(std::shared_ptr<const workflow::Plan> plan,
                                std::shared_ptr<JobOutput> out) const;
  ApiError queue_refusal(service::SubmitOutcome outcome, const std::string& id) const;

  const ServerConfig& config_;
  media::WebhookSender* webhooks_ = nullptr;
  media::NetPolicy webhook_policy_;
  const Logger& log_;
  boost::asio::io_context& io_;
  service::JobQueue queue_;
  WorkflowRegistry workflows_;  // read-only once serving
  std::string openapi_json_, openapi_yaml_;
  workflow::WorkflowOptions workflow_options_;
  std::shared_ptr<const Engine> engine_;  // written once before engine_ready_ is set
  std::atomic<bool> engine_ready_{false};
  std::string loaded_checkpoint_;              // canonical path
  std::multiset<std::string> loaded_encoders_;  // canonical paths
  std::string loaded_vae_;  // canonical path of the VAELoader file; "" = the checkpoint's VAE
  std::unique_ptr<PromptCache> prompt_cache_;
  std::atomic<bool> warm_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> pending_{0};
  // Request validation off the I/O threads: an input image URL may take up to its download
  // timeout, and a large base64 image a while to decode; probes and other clients must not
  // wait behind them. Joined first in ~Api.
  std::unique_ptr<boost::asio::thread_pool> preprocess_;
  // Finished jobs with an upload target: encoding and the PUTs, off the engine's worker (it
  // starts the next job at once) and off the I/O threads (a slow store must not stall probes).
  UploadSettings uploads_;
  std::atomic<bool> abort_uploads_{false};  // set at destruction: in-flight PUTs stop
  std::unique_ptr<boost::asio::thread_pool> upload_pool_;
};

}  // namespace sd35::server
