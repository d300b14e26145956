// Storage uploads of a job's output files: the request blocks `http_upload` and `s3` of
// POST /prompt and POST /workflow/... (reference/comfyui-api-contract.md §2.1, §3, §7, §12).
//
// Behaviour:
// * http_upload {url_prefix, async=false}: each file is PUT to
//   `<url_prefix without trailing '/'>/<filename>` with its Content-Type (image/png,
//   image/jpeg, image/webp) and, when set, the header HTTP_AUTH_HEADER_NAME:
//   HTTP_AUTH_HEADER_VALUE. images[i] = that URL. The filename is percent-encoded as one path
//   segment (a caller's id with '/', '?' or spaces cannot escape the prefix; plain ids and
//   prefixes are unchanged, so URLs match comfyui-api's). Targets must pass the address policy
//   (http_client.h) unless ALLOW_PRIVATE_UPLOADS; a literal private IP is a 400 at once.
// * s3 {bucket, prefix, async=false}: a SigV4-signed PUT (media/s3_sign.h) to
//   `<AWS_ENDPOINT_URL or https://s3.<region>.amazonaws.com>/<bucket>/<prefix><filename>`;
//   images[i] = `s3://<bucket>/<prefix><filename>`. The endpoint is the operator's
//   configuration, not request input, so the private-address policy does not apply to it
//   (MinIO or LocalStack in the cluster). Without a region and keys the block is a 400.
// * Any failed PUT (network error or non-2xx) fails the request: sync → 500 naming the file,
//   the target and the store's answer; async → error log and webhook_v2 prompt.failed.
//   comfyui-api swallows S3 errors and returns URLs of objects that do not exist; we do not.
// * Refused with a 400 naming the field: hf_upload, azure_blob_upload, credentials (not
//   implemented), s3 together with http_upload (one target per request), and the legacy
//   `webhook` together with an upload (comfyui-api then silently skips the upload).
#pragma once

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sd35/status.h"
#include "server/config.h"
#include "server/outputs.h"
#include "service/media/http_client.h"
#include "service/media/s3_sign.h"

namespace sd35::server {

// The server-wide upload configuration, resolved once at start-up.
struct UploadSettings {
  media::NetPolicy http_policy;                 // ALLOW_PRIVATE_UPLOADS
  std::vector<media::HttpHeader> http_headers;  // HTTP_AUTH_HEADER_NAME/VALUE (0 or 1)
  bool s3_configured = false;
  media::S3Config s3;
  std::chrono::milliseconds timeout{300000};  // one PUT
};

// From the configuration. Errors (start-up fails): a header name that is not an HTTP token
// or a value with control characters, half of the header pair, an AWS_ENDPOINT_URL that is not
// an http(s) URL. S3 stays unconfigured (s3 blocks get a 400) without AWS_REGION /
// AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY; *notes says what is missing
// when some but not all are set.
Result<UploadSettings> make_upload_settings(const ServerConfig& config, std::string* notes);

// Reads `http_upload` and `s3` into out->upload and adds them to *echo with their defaults;
// refuses `hf_upload`, `azure_blob_upload` and `credentials`. Call after
// parse_request_options (it checks the legacy webhook against uploads).
std::optional<FieldError> parse_upload_options(const nlohmann::json& body,
                                               const UploadSettings& settings,
                                               RequestOptions* out, nlohmann::json* echo);

// The destination URLs images[i] will carry, before anything is sent.
std::vector<std::string> upload_urls(const UploadTarget& target,
                                     const std::vector<EncodedImage>& files);

// PUTs every file in order, blocking (call on a thread that may wait). Stops at the first
// failure: kIo/kInvalidArgument with a message for the client; kCancelled when `abort` is set.
Status upload_outputs(const UploadTarget& target, const UploadSettings& settings,
                      const std::vector<EncodedImage>& files, const std::atomic<bool>* abort);

}  // namespace sd35::server
