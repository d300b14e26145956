// What happens to a job's images after the engine: the request options that shape the result
// (`convert_output`, `webhook`, `webhook_v2`; reference/comfyui-api-contract.md §2.1, §3–§5),
// the encoding of each image (PNG with the graph in a "prompt" text chunk, or JPEG/WebP), and
// the webhook deliveries of a finished or failed job.
//
// Kept apart from the routes (api.cpp, api_jobs.cpp) so that the HTTP handlers only decide
// *when* to call these; the request-independent logic is testable without sockets.
//
// Decisions (and where they differ from comfyui-api 1.18):
// * Both `webhook` and `webhook_v2` may be given, as in comfyui-api: on success the legacy URL
//   gets one `output.complete` per file AND webhook_v2 gets `prompt.complete`; on failure only
//   webhook_v2 gets `prompt.failed` (comfyui-api's `if (webhook_v2) … else if (webhook)`).
// * An empty string for either URL means "none" (JavaScript's falsy "", as comfyui-api).
// * URLs are checked at request time (400 naming the field): http/https with a host, and a
//   literal IP host must pass the address policy. Host names are resolved only at delivery
//   (DNS may block), so a name that resolves to a private address is accepted with 202 and
//   its delivery fails with an error log line carrying the request id.
// * Webhook bodies of /workflow/... requests also carry `input` (with the seed used): the 200
//   body has it, and a webhook receiver needs the seed just as much. comfyui-api drops it.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sd35/status.h"
#include "service/media/convert_output.h"
#include "service/media/http_client.h"
#include "service/media/webhook.h"
#include "service/workflow/plan.h"

namespace sd35::server {

// Where a request's output files go instead of base64 in the response (server/uploads.h).
struct UploadTarget {
  enum class Kind { kNone, kHttp, kS3 };
  Kind kind = Kind::kNone;
  std::string url_prefix;      // kHttp: files go to <url_prefix>/<filename>
  std::string bucket, prefix;  // kS3: s3://<bucket>/<prefix><filename>
  bool async = false;          // 202 at once, upload after the job
  const char* field() const { return kind == Kind::kS3 ? "s3" : "http_upload"; }
};

struct RequestOptions {
  std::string webhook;     // legacy, unsigned, one POST per file ("" = none)
  std::string webhook_v2;  // Standard Webhooks, one POST per job ("" = none)
  media::ConvertOutput convert;
  UploadTarget upload;
  bool has_webhook() const { return !webhook.empty() || !webhook_v2.empty(); }
  bool uploads() const { return upload.kind != UploadTarget::Kind::kNone; }
  // 202 at once, results to the webhook(s) and/or the store (contract §3).
  bool async() const { return has_webhook() || (uploads() && upload.async); }
};

struct FieldError {
  std::string message;
  std::string location;  // the body field ("webhook_v2", "convert_output.options.quality")
};

// Reads `webhook`, `webhook_v2` and `convert_output` of a request body into *out and adds the
// validated fields to *echo (convert_output with every default filled in; comfyui-api echoes
// its zod-validated body). Unknown keys are not looked at.
std::optional<FieldError> parse_request_options(const nlohmann::json& body,
                                                const media::NetPolicy& policy,
                                                RequestOptions* out, nlohmann::json* echo);

struct EncodedImage {
  std::string data;          // the file's bytes (base64 in responses, the body of uploads)
  std::string filename;      // "<prefix>_00001_.png" / ".jpeg" / ".jpg" / ".webp"
  std::string content_type;  // image/png, image/jpeg, image/webp
};

// Encodes every image of a job in SaveImage order, numbering files per prefix as ComfyUI's
// SaveImage does. PNGs carry `prompt_text` in a "prompt" tEXt chunk (ComfyUI's metadata). A
// conversion that fails falls back to that PNG and its .png name, with a sentence in
// *warnings (comfyui-api does the same; with validated options it should not happen).
Result<std::vector<EncodedImage>> encode_outputs(const std::vector<workflow::SavedImage>& saved,
                                                 const media::ConvertOutput& convert,
                                                 const std::string& prompt_text,
                                                 std::vector<std::string>* warnings);

// Deliveries for a job that finished: `response` is the synchronous 200 body (echo, id,
// prompt, images, filenames, stats[, input]).
std::vector<media::WebhookDelivery> completion_deliveries(const RequestOptions& options,
                                                          const nlohmann::json& response,
                                                          const std::string& id,
                                                          const std::string& request_id);

// Deliveries for a job that failed or was interrupted (`error` is the client-facing message).
std::vector<media::WebhookDelivery> failure_deliveries(const RequestOptions& options,
                                                       const std::string& id,
                                                       const nlohmann::json& prompt,
                                                       const std::string& error,
                                                       const std::string& request_id);

}  // namespace sd35::server
