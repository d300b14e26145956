// sd35-server: start-up order and shutdown.
//   1. listen at once (/health answers 500 "not healthy" while the model loads, so startup
//      probes see a live process),
//   2. load the engine once from the model files the warm-up graph (or the recipe graph)
//      names,
//   3. run WARMUP_PROMPT_FILE through the queue; failure exits non-zero with the reason,
//   4. /health 200; serve until SIGTERM/SIGINT,
//   5. drain: /ready 503 and new jobs 503 at once, queued and running jobs get
//      DRAIN_TIMEOUT_S to finish (then are interrupted, so every client gets an answer),
//      responses and uploads finished, webhooks flushed within what is left of
//      DRAIN_TIMEOUT_S, exit 0.
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "backend/cuda/cuda_backend.h"
#include "backend/make_backend.h"
#include "pipeline/engine.h"
#include "server/api.h"
#include "server/config.h"
#include "server/http_server.h"
#include "server/log.h"
#include "server/txt2img.h"
#include "server/util.h"
#include "service/media/webhook.h"
#include "service/workflow/plan.h"

namespace sd35::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// --demo: a ComfyUI-layout folder of symlinks with the recipe's file names pointing at the
// tiny random model, so the unchanged recipe graphs run (as tests/models/test_workflow_run).
Result<fs::path> make_demo_models(const fs::path& tiny) {
  for (const char* f : {"model.safetensors", "clip_g.safetensors", "clip_l.safetensors",
                        "t5xxl.safetensors", "config.json"})
    if (!fs::exists(tiny / f))
      return not_found("--demo needs the tiny model: " + (tiny / f).string() +
                       " is missing (set SD35_DEMO_MODEL to tests/data/tiny-a)");
  std::error_code ec;
  const fs::path dir = fs::temp_directory_path(ec) / ("sd35_demo_models_" + make_uuid());
  fs::create_directories(dir / "checkpoints", ec);
  fs::create_directories(dir / "text_encoders", ec);
  if (ec) return io_error("cannot create " + dir.string() + ": " + ec.message());
  const std::pair<const char*, const char*> links[] = {
      {"model.safetensors", "checkpoints/sd3.5_medium.safetensors"},
      {"clip_g.safetensors", "text_encoders/clip_g.safetensors"},
      {"clip_l.safetensors", "text_encoders/clip_l.safetensors"},
      {"t5xxl.safetensors", "text_encoders/t5xxl_fp8_e4m3fn.safetensors"},
      // Tiny models keep their CLIP head counts in config.json beside the files.
      {"config.json", "checkpoints/config.json"},
      {"config.json", "text_encoders/config.json"}};
  for (const auto& [from, to] : links) {
    fs::create_symlink(fs::absolute(tiny / from), dir / to, ec);
    if (ec) return io_error("cannot link " + (dir / to).string() + ": " + ec.message());
  }
  return dir;
}

// The one webhook sender of the server: its own delivery thread, so receivers never slow the
// engine or the I/O threads. Its log lines go to the server's JSON log.
Result<std::unique_ptr<media::WebhookSender>> make_webhook_sender(const ServerConfig& config,
                                                                 const Logger& log) {
  media::WebhookOptions o;
  o.max_attempts = config.prompt_webhook_retries;
  o.base_delay = std::chrono::milliseconds(int64_t(config.webhook_retry_delay_s * 1000));
  o.max_delay = std::max(o.base_delay, o.max_delay);
  o.net.allow_private_addresses = config.allow_private_webhooks;
  o.secret = config.webhook_secret;
  o.log = [&log](media::WebhookLogLevel level, std::string_view msg, const json& fields) {
    const LogLevel l = level == media::WebhookLogLevel::kDebug  ? LogLevel::kDebug
                       : level == media::WebhookLogLevel::kInfo ? LogLevel::kInfo
                       : level == media::WebhookLogLevel::kWarn ? LogLevel::kWarn
                                                                : LogLevel::kError;
    log.log(l, msg, fields);
  };
  return media::WebhookSender::create(std::move(o));
}

std::string read_file(const std::string& path, bool* ok) {
  std::ifstream f(path, std::ios::binary);
  *ok = f.good();
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The engine's backend: "auto" takes CUDA when this build has it and a device answers.
std::string choose_backend(const std::string& wanted) {
  if (wanted != "auto") return wanted;
  return make_backend_by_name("cuda").ok() ? "cuda" : "cpu";
}

int run(int argc, char** argv) {
  ServerConfig config;
  int exit_code = 0;
  if (!parse_config(argc, argv, &config, &exit_code)) return exit_code;
  Logger log;
  log.set_level(config.log_level);

  fs::path demo_dir;
  struct DemoCleanup {
    fs::path* dir;
    ~DemoCleanup() {
      std::error_code ec;
      if (!dir->empty()) fs::remove_all(*dir, ec);
    }
  } demo_cleanup{&demo_dir};
  if (config.demo) {
    auto dir = make_demo_models(config.demo_model_dir);
    if (!dir.ok()) {
      log.error("start-up failed", {{"reason", dir.status().to_string()}});
      return 1;
    }
    demo_dir = *dir;
    config.model_dir = demo_dir.string();
    log.warn("demo model: random weights, images are noise",
             {{"model_dir", config.model_dir}, {"tiny_model", config.demo_model_dir}});
  }

  // Before anything listens: a bad WEBHOOK_SECRET is a configuration error, not a surprise at
  // the first signed delivery. Declared before the server and the Api, so it outlives both.
  auto webhooks_or = make_webhook_sender(config, log);
  if (!webhooks_or.ok()) {
    log.error("start-up failed", {{"reason", webhooks_or.status().to_string()}});
    return 2;
  }
  std::unique_ptr<media::WebhookSender> webhooks = std::move(*webhooks_or);
  // Upload settings are checked before listening too (a bad AWS_ENDPOINT_URL or auth header).
  std::string upload_notes;
  auto uploads_or = make_upload_settings(config, &upload_notes);
  if (!uploads_or.ok()) {
    log.error("start-up failed", {{"reason", uploads_or.status().to_string()}});
    return 2;
  }
  if (!upload_notes.empty()) log.warn(upload_notes);
  if (uploads_or->s3_configured)
    log.info("s3 uploads enabled",
             {{"region", config.aws_region},
              {"endpoint", config.aws_endpoint_url.empty() ? "https://s3." + config.aws_region +
                                                                 ".amazonaws.com"
                                                           : config.aws_endpoint_url},
              {"session_token", !config.aws_session_token.empty()}});

  HttpServerOptions http_options;
  http_options.host = config.host;
  http_options.port = uint16_t(config.port);
  http_options.max_body_bytes = uint64_t(config.max_body_size_mb * double(1 << 20));
  http_options.threads = config.http_threads;
  std::unique_ptr<Api> api;
  HttpServer server(
      http_options, [&api](Request&& r, Reply reply) { api->handle(std::move(r), std::move(reply)); },
      [&api](const Request& h, http::status s, const std::string& why) {
        return api->transport_error(h, s, why);
      });
  api = std::make_unique<Api>(config, log, server.io());
  api->set_webhooks(webhooks.get());
  api->set_uploads(std::move(*uploads_or));
  // The Api (its queue's worker may still post completions) goes before the io_context.
  struct ApiReset {
    std::unique_ptr<Api>& api;
    ~ApiReset() { api.reset(); }
  } api_reset{api};
  if (Status st = api->load_workflows(); !st.ok()) {
    log.error("start-up failed", {{"reason", st.to_string()}});
    return 1;
  }

  // Signals: the first one starts the drain; they are handled on an I/O thread.
  std::promise<int> stop_signal;
  std::atomic<bool> stopping{false};
  boost::asio::signal_set signals(server.io(), SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec || stopping.exchange(true)) return;
    api->begin_drain();
    stop_signal.set_value(sig);
  });
  std::future<int> stop_future = stop_signal.get_future();
  auto stop_requested = [&] {
    return stop_future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  };

  std::string note;
  if (Status st = server.listen(&note); !st.ok()) {
    log.error("start-up failed", {{"reason", st.to_string()}});
    return 1;
  }
  if (!note.empty()) log.warn(note);
  api->set_listen_port(server.port());  // before the I/O threads read the document
  server.start();
  log.info("listening", {{"address", server.bound_address()},
                         {"port", server.port()},
                         {"version", Api::version()},
                         {"model_dir", config.model_dir}});

  // The model files come from the warm-up graph when there is one, else from the recipe's.
  std::string graph_text = recipe_graph().dump();
  if (!config.warmup_prompt_file.empty()) {
    bool ok = false;
    graph_text = read_file(config.warmup_prompt_file, &ok);
    if (!ok) {
      log.error("start-up failed",
                {{"reason", "cannot read WARMUP_PROMPT_FILE " + config.warmup_prompt_file}});
      server.stop();
      return 1;
    }
  }
  workflow::WorkflowOptions wo;
  wo.models_dir = config.model_dir;
  workflow::WorkflowError werr;
  auto plan = workflow::parse_workflow(graph_text, wo, &werr);
  if (!plan.ok()) {
    log.error("start-up failed",
              {{"reason", (config.warmup_prompt_file.empty() ? std::string("recipe graph: ")
                                                             : "WARMUP_PROMPT_FILE: ") +
                              werr.to_string()}});
    server.stop();
    return 1;
  }
  EngineOptions eo = EngineOptions::with_defaults();
  eo.models = plan->engine_models();
  eo.backend = choose_backend(config.backend);
  eo.threads = config.threads;
  eo.cuda_graphs = config.cuda_graphs;
  if (eo.backend == "cuda") {
    eo.compute = DType::kBF16;  // the GPU's fast mode, as the CLI
    // Operators see which card, driver and memory a replica got before the weights load (a
    // card too small for the model is refused by Engine::load with the numbers).
    auto info = cuda_device_info(eo.device);
    if (info.ok()) {
      log.info("gpu", {{"device", info->index},
                       {"name", info->name},
                       {"sm", std::to_string(info->sm_major) + "." + std::to_string(info->sm_minor)},
                       {"driver_version", info->driver_version},
                       {"runtime_version", info->runtime_version},
                       {"cudnn", info->cudnn},
                       {"total_gib", double(info->total_bytes) / double(1ull << 30)},
                       {"free_gib", double(info->free_bytes) / double(1ull << 30)}});
    }
  }
  if (!config.compute.empty()) {
    auto d = compute_dtype_from_name(config.compute);
    if (!d.ok()) {
      log.error("start-up failed", {{"reason", d.status().to_string()}});
      server.stop();
      return 1;
    }
    eo.compute = *d;
  }
  eo.log = [&log](const std::string& m) { log.info("engine", {{"note", m}}); };
  log.info("loading model", {{"backend", eo.backend},
                             {"files", eo.models.size()},
                             {"cuda_graphs", eo.cuda_graphs && eo.backend == "cuda"}});
  auto engine = Engine::load(eo);
  if (!engine.ok()) {
    log.error("start-up failed", {{"reason", engine.status().to_string()}});
    server.stop();
    return 1;
  }
  log.info("model loaded", {{"seconds", (*engine)->load_seconds()}, {"backend", eo.backend}});
  api->set_engine(std::move(*engine), *plan);

  if (!config.warmup_prompt_file.empty() && !stop_requested()) {
    Status st = api->run_blocking(graph_text, "warmup-" + make_uuid());
    if (!st.ok()) {
      log.error("start-up failed", {{"reason", "warm-up: " + st.to_string()}});
      server.stop();
      return 1;
    }
  }
  if (!stop_requested()) {
    api->set_warm();
    log.info("healthy", {{"port", server.port()}});
  }

  const int sig = stop_future.get();
  const auto drain_start = std::chrono::steady_clock::now();
  log.info("draining", {{"signal", sig},
                        {"jobs", api->queue().depth()},
                        {"timeout_s", config.drain_timeout_s}});
  const bool drained = api->queue().drain(
      std::chrono::milliseconds(int64_t(config.drain_timeout_s * 1000)));
  // Responses of finished jobs are built on the I/O threads, and their uploads (sync or async)
  // run on the upload pool; let them finish within what is left of DRAIN_TIMEOUT_S (at least
  // 5 s for the responses, as before uploads existed).
  const auto reply_deadline =
      std::max(drain_start + std::chrono::milliseconds(int64_t(config.drain_timeout_s * 1000)),
               std::chrono::steady_clock::now() + std::chrono::seconds(5));
  while (api->pending_replies() > 0 && std::chrono::steady_clock::now() < reply_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (api->pending_replies() > 0)
    log.error("drain timed out with responses or uploads unfinished",
              {{"pending", api->pending_replies()}});
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the last writes
  // Webhooks of the jobs that finished (queued by the response builders above) get what is
  // left of the drain budget; the sender skips retry delays while flushing.
  const auto budget = std::chrono::milliseconds(int64_t(config.drain_timeout_s * 1000));
  const auto used = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - drain_start);
  const auto left = std::max(std::chrono::milliseconds(0), budget - used);
  const media::WebhookStats before = webhooks->stats();
  const bool flushed = before.pending == 0 || webhooks->flush(left);
  if (before.pending > 0) {
    const media::WebhookStats after = webhooks->stats();
    log.log(flushed ? LogLevel::kInfo : LogLevel::kError, "webhooks flushed",
            {{"flushed", flushed},
             {"pending_before", before.pending},
             {"pending_after", after.pending},
             {"delivered", after.delivered},
             {"failed", after.failed},
             {"budget_ms", left.count()}});
  }
  server.stop();
  log.info("stopped", {{"drained", drained},
                       {"seconds", std::chrono::duration<double>(
                                       std::chrono::steady_clock::now() - drain_start)
                                       .count()}});
  return 0;
}

}  // namespace
}  // namespace sd35::server

int main(int argc, char** argv) { return sd35::server::run(argc, argv); }
