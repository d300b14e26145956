#include "server/config.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#ifndef SD35_DEMO_MODEL_DIR
#define SD35_DEMO_MODEL_DIR ""
#endif

namespace sd35::server {

bool parse_config(int argc, char** argv, ServerConfig* c, int* exit_code) {
  CLI::App app{"sd35-server: Stable Diffusion 3.5 Medium over HTTP (the comfyui-api contract)"};
  std::string log_level = "info";
  c->demo_model_dir = SD35_DEMO_MODEL_DIR;
  app.add_option("--port", c->port, "port (0: any free one)")
      ->envname("PORT")
      ->check(CLI::Range(0, 65535));
  app.add_option("--host", c->host, "bind address; '::' listens on IPv6 and IPv4")
      ->envname("HOST");
  app.add_option("--model-dir", c->model_dir, "models folder (checkpoints/, text_encoders/, vae/)")
      ->envname("MODEL_DIR");
  app.add_option("--max-queue-depth", c->max_queue_depth,
                 "jobs waiting + running before 429 (0: unlimited)")
      ->envname("MAX_QUEUE_DEPTH")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-body-size-mb", c->max_body_size_mb, "request body limit (MB)")
      ->envname("MAX_BODY_SIZE_MB")
      ->check(CLI::PositiveNumber);
  app.add_option("--api-key", c->api_key,
                 "require this key (Authorization: Bearer, X-API-Key or Salad-Api-Key)")
      ->envname("API_KEY");
  app.add_option("--log-level", log_level, "debug, info, warn, error")->envname("LOG_LEVEL");
  app.add_option("--warmup-prompt-file", c->warmup_prompt_file,
                 "a graph (API format) run before /health reports healthy")
      ->envname("WARMUP_PROMPT_FILE");
  app.add_option("--drain-timeout-s", c->drain_timeout_s,
                 "on SIGTERM, seconds queued and running jobs may take to finish")
      ->envname("DRAIN_TIMEOUT_S")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--http-threads", c->http_threads, "HTTP I/O threads")
      ->envname("HTTP_THREADS")
      ->check(CLI::Range(1, 64));
  app.add_option("--backend", c->backend, "auto, cpu or cuda")
      ->envname("BACKEND")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "reference"}));
  app.add_option("--compute", c->compute, "f32 or bf16 (default: the backend's fast mode)")
      ->envname("COMPUTE");
  app.add_option("--threads", c->threads, "engine CPU threads (0: all)")->envname("THREADS");
  app.add_option("--cuda-graphs", c->cuda_graphs,
                 "with the cuda backend, replay the denoising steps' MMDiT forwards as "
                 "captured CUDA graphs (default true: same images, fewer kernel launches; "
                 "false runs them eagerly)")
      ->envname("CUDA_GRAPHS");
  app.add_option("--webhook-secret", c->webhook_secret,
                 "base64 key that signs webhook_v2 deliveries (Standard Webhooks; a whsec_ "
                 "prefix is accepted); unset: an empty key")
      ->envname("WEBHOOK_SECRET");
  app.add_option("--prompt-webhook-retries", c->prompt_webhook_retries,
                 "attempts per webhook delivery (a 2xx answer ends them)")
      ->envname("PROMPT_WEBHOOK_RETRIES")
      ->check(CLI::Range(1, 100));
  app.add_option("--webhook-retry-delay-s", c->webhook_retry_delay_s,
                 "seconds before the first webhook retry; doubles for each further one")
      ->envname("WEBHOOK_RETRY_DELAY_S")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--allow-private-webhooks", c->allow_private_webhooks,
                 "true: webhooks may target loopback, private and link-local addresses "
                 "(in-cluster receivers, tests); false refuses them (SSRF protection)")
      ->envname("ALLOW_PRIVATE_WEBHOOKS");
  app.add_option("--allow-private-uploads", c->allow_private_uploads,
                 "true: http_upload may PUT to loopback, private and link-local addresses "
                 "(in-cluster stores, tests); false refuses them (SSRF protection)")
      ->envname("ALLOW_PRIVATE_UPLOADS");
  app.add_option("--upload-timeout-s", c->upload_timeout_s,
                 "seconds one output upload (http_upload or s3 PUT) may take")
      ->envname("UPLOAD_TIMEOUT_S")
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--input-dir", c->input_dir,
                 "folder of input images that graphs may name in LoadImage (only names inside it)")
      ->envname("INPUT_DIR");
  app.add_option("--allow-private-input-urls", c->allow_private_input_urls,
                 "true: LoadImage http(s) URLs may point at loopback, private and link-local "
                 "addresses; false refuses them (SSRF protection)")
      ->envname("ALLOW_PRIVATE_INPUT_URLS");
  app.add_option("--prepend-filenames", c->prepend_filenames,
                 "true: output files are named <id>_<filename_prefix>_00001_.png; false: "
                 "<id>_00001_.png")
      ->envname("PREPEND_FILENAMES");
  app.add_option("--workflow-dir", c->workflow_dir,
                 "folder of JSON workflow templates, served as POST /workflow/<path> (default: "
                 "built-ins only)")
      ->envname("WORKFLOW_DIR");
  app.add_option("--markdown-schema-descriptions", c->markdown_schema_descriptions,
                 "put a markdown field table in each workflow's /docs description (true/false)")
      ->envname("MARKDOWN_SCHEMA_DESCRIPTIONS");
  app.add_flag("--demo", c->demo,
               "serve the tiny random test model (tests/data/tiny-a): images are noise");
  app.add_option("--demo-model", c->demo_model_dir, "the tiny-a folder for --demo")
      ->envname("SD35_DEMO_MODEL");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return false;
  }
  // Credentials only from the environment (flags show up in `ps`), under comfyui-api's names.
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  c->http_auth_header_name = env("HTTP_AUTH_HEADER_NAME");
  c->http_auth_header_value = env("HTTP_AUTH_HEADER_VALUE");
  c->aws_region = env("AWS_REGION");
  if (c->aws_region.empty()) c->aws_region = env("AWS_DEFAULT_REGION");
  c->aws_endpoint_url = env("AWS_ENDPOINT_URL");
  c->aws_access_key_id = env("AWS_ACCESS_KEY_ID");
  c->aws_secret_access_key = env("AWS_SECRET_ACCESS_KEY");
  c->aws_session_token = env("AWS_SESSION_TOKEN");
  if (!parse_log_level(log_level, &c->log_level)) {
    std::fprintf(stderr, "LOG_LEVEL must be debug, info, warn or error, got '%s'\n",
                 log_level.c_str());
    *exit_code = 2;
    return false;
  }
  return true;
}

}  // namespace sd35::server
