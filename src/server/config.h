// sd35-server settings: every flag has an environment variable, and the command line wins
// (SPEC-api.md §1). Names follow comfyui-api's variables where one exists.
#pragma once

#include <string>

#include "server/log.h"

namespace sd35::server {

struct ServerConfig {
  int port = 3000;                   // PORT (0: any free port, logged at start-up)
  std::string host = "::";           // HOST; "::" is dual-stack, 0.0.0.0 used without IPv6
  std::string model_dir = "./models";  // MODEL_DIR, ComfyUI layout
  int max_queue_depth = 0;           // MAX_QUEUE_DEPTH: waiting + running jobs; 0 unlimited
  double max_body_size_mb = 100;     // MAX_BODY_SIZE_MB
  std::string api_key;               // API_KEY: when set, required on every route but probes
  LogLevel log_level = LogLevel::kInfo;  // LOG_LEVEL
  std::string warmup_prompt_file;    // WARMUP_PROMPT_FILE: a graph run before /health is 200
  double drain_timeout_s = 60;       // DRAIN_TIMEOUT_S: how long SIGTERM waits for jobs
  int http_threads = 2;              // HTTP_THREADS: I/O threads (jobs run on their own one)
  std::string backend = "auto";      // BACKEND: auto (cuda when usable, else cpu), cpu, cuda
  std::string compute;               // COMPUTE: f32 / bf16; empty: the backend's fast mode
  int threads = 0;                   // THREADS: CPU threads of the engine; 0: all
  bool cuda_graphs = true;           // CUDA_GRAPHS: replay denoising forwards as CUDA graphs
  // Webhooks and outputs (reference/comfyui-api-contract.md §4, §12).
  std::string webhook_secret;        // WEBHOOK_SECRET: base64 Standard Webhooks key ("whsec_" ok)
  int prompt_webhook_retries = 3;    // PROMPT_WEBHOOK_RETRIES: attempts per webhook (>= 1)
  double webhook_retry_delay_s = 1;  // WEBHOOK_RETRY_DELAY_S: first retry delay, doubling
  bool allow_private_webhooks = false;  // ALLOW_PRIVATE_WEBHOOKS: loopback/private targets ok
  bool prepend_filenames = true;     // PREPEND_FILENAMES: "<id>_<prefix>" (false: "<id>")
  // Input images (LoadImage `image`, comfyui-api contract §6): file names are read from
  // INPUT_DIR only (no absolute paths, no ".."); base64, data: and http(s) URLs need no files.
  std::string input_dir = "./input";  // INPUT_DIR
  bool allow_private_input_urls = false;  // ALLOW_PRIVATE_INPUT_URLS: loopback/private ok
  // Storage uploads (the request's `http_upload` and `s3` blocks; contract §7, §12;
  // server/uploads.h). Secrets come from the environment only, never from flags.
  bool allow_private_uploads = false;  // ALLOW_PRIVATE_UPLOADS: http_upload to loopback/private
  double upload_timeout_s = 300;       // UPLOAD_TIMEOUT_S: one PUT, connection to last byte
  std::string http_auth_header_name;   // HTTP_AUTH_HEADER_NAME: sent on http_upload PUTs
  std::string http_auth_header_value;  // HTTP_AUTH_HEADER_VALUE
  std::string aws_region;              // AWS_REGION, else AWS_DEFAULT_REGION
  std::string aws_endpoint_url;        // AWS_ENDPOINT_URL: S3-compatible store (path style)
  std::string aws_access_key_id;       // AWS_ACCESS_KEY_ID
  std::string aws_secret_access_key;   // AWS_SECRET_ACCESS_KEY
  std::string aws_session_token;       // AWS_SESSION_TOKEN (optional)
  bool demo = false;                 // --demo: the tiny random model of tests/data/tiny-a
  std::string demo_model_dir;        // SD35_DEMO_MODEL: where tiny-a lives (default: source)
  // WORKFLOW_DIR: JSON workflow templates (docs/workflow-templates.md). Unset: the built-ins
  // only (comfyui-api defaults to /workflows; ours is optional).
  std::string workflow_dir;
  bool markdown_schema_descriptions = true;  // MARKDOWN_SCHEMA_DESCRIPTIONS: field tables in /docs
};

// Parses flags and environment. Returns false after printing help or an error; *exit_code is
// then what main should return.
bool parse_config(int argc, char** argv, ServerConfig* config, int* exit_code);

}  // namespace sd35::server
