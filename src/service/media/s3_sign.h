// AWS Signature Version 4 for S3 PUT Object (header-based authentication), written on
// OpenSSL's SHA-256/HMAC so that the server needs no AWS SDK. Only what uploads need: one
// signed PUT per object, path-style URLs (`<endpoint>/<bucket>/<key>`, comfyui-api's
// forcePathStyle), the payload's real SHA-256 in x-amz-content-sha256 (never UNSIGNED-PAYLOAD:
// the store then rejects a body altered on the way).
//
// Reference: "Authenticating Requests: Using the Authorization Header (AWS Signature Version
// 4)" of the S3 API documentation; its published examples are the unit tests.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "sd35/status.h"
#include "service/media/http_client.h"

namespace sd35::media {

// Lower-case hex of SHA-256(data).
std::string sha256_hex(std::string_view data);
// Raw (32-byte) HMAC-SHA256(key, data).
std::string hmac_sha256(std::string_view key, std::string_view data);

// S3's URI encoding: every byte but A–Z a–z 0–9 - . _ ~ becomes %XX (upper-case hex); '/' is
// kept when `keep_slash` (object keys in paths) and encoded otherwise.
std::string s3_uri_encode(std::string_view s, bool keep_slash);

// "YYYYMMDDTHHMMSSZ" (UTC), the x-amz-date form.
std::string amz_date(std::chrono::system_clock::time_point t);

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // optional: sent (and signed) as x-amz-security-token
};

struct SigV4Input {
  std::string method;           // "PUT"
  std::string canonical_uri;    // the path exactly as sent, already URI-encoded
  std::string canonical_query;  // "" for PUT Object
  // Every header to sign, as sent (names in any case). Must include host, x-amz-date and
  // x-amz-content-sha256.
  std::vector<HttpHeader> headers;
  std::string payload_sha256;  // hex; the same value as the x-amz-content-sha256 header
  std::string amz_date;        // "YYYYMMDDTHHMMSSZ"
  std::string region;          // "us-east-1"
  std::string service = "s3";
};

struct SigV4Output {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;x-amz-content-sha256;x-amz-date"
  std::string signature;       // hex
  std::string authorization;   // the Authorization header value
};

SigV4Output sigv4_sign(const SigV4Input& in, const AwsCredentials& credentials);

// Where and how uploads reach S3 (AWS_* environment; contract §7, §12).
struct S3Config {
  std::string region;    // AWS_REGION or AWS_DEFAULT_REGION
  std::string endpoint;  // AWS_ENDPOINT_URL ("" → https://s3.<region>.amazonaws.com)
  AwsCredentials credentials;
};

// The URL and signed headers of one PUT Object of `body` at `<bucket>/<key>` (path style),
// signed for time `now`. Errors: a bad endpoint URL (kInvalidArgument).
Result<HttpPost> s3_put_object(const S3Config& config, std::string_view bucket,
                               std::string_view key, std::string body,
                               std::string_view content_type,
                               std::chrono::system_clock::time_point now);

}  // namespace sd35::media
