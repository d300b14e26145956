#include "server/uploads.h"

#include <cctype>

namespace sd35::server {

using nlohmann::json;

namespace {

// RFC 9110 token characters: what a header name may contain.
bool is_token(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(char(c)) != std::string_view::npos))
      return false;
  return true;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

std::string strip_slashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// The start of a store's error answer for the client's message (S3 sends XML with a <Code>),
// on one line.
std::string snippet(const std::string& body) {
  std::string out = body.substr(0, 300);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return out;
}

std::optional<FieldError> parse_async(const json& block, const std::string& field, bool* out) {
  auto it = block.find("async");
  if (it == block.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return FieldError{field + ".async must be a boolean", field + ".async"};
  *out = it->get<bool>();
  return std::nullopt;
}

std::optional<FieldError> parse_http_upload(const json& block, const UploadSettings& settings,
                                            UploadTarget* out) {
  if (!block.is_object())
    return FieldError{"http_upload must be an object {url_prefix, async}", "http_upload"};
  auto it = block.find("url_prefix");
  if (it == block.end() || !it->is_string())
    return FieldError{"http_upload.url_prefix (an http or https URL) is required",
                      "http_upload.url_prefix"};
  const std::string prefix = it->get<std::string>();
  const std::string loc = "http_upload.url_prefix";
  if (prefix.size() > 8192) return FieldError{loc + " is longer than 8192 characters", loc};
  // "<prefix>/<filename>" would land in a query or fragment.
  if (prefix.find_first_of("?#") != std::string::npos)
    return FieldError{loc + " must not contain a query (?) or fragment (#)", loc};
  if (Status st = media::check_url_literal(prefix, settings.http_policy); !st.ok()) {
    std::string message = loc + ": " + st.message();
    if (st.message().find("loopback/private") != std::string::npos)
      message += " (the server allows them with ALLOW_PRIVATE_UPLOADS=true)";
    return FieldError{message, loc};
  }
  out->kind = UploadTarget::Kind::kHttp;
  out->url_prefix = prefix;
  return parse_async(block, "http_upload", &out->async);
}

std::optional<FieldError> parse_s3(const json& block, const UploadSettings& settings,
                                   UploadTarget* out) {
  if (!settings.s3_configured)
    return FieldError{"S3 is not configured on this server: set AWS_REGION (or AWS_DEFAULT_REGION), "
                      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for an "
                      "S3-compatible store) to use s3",
                      "s3"};
  if (!block.is_object()) return FieldError{"s3 must be an object {bucket, prefix, async}", "s3"};
  auto b = block.find("bucket");
  if (b == block.end() || !b->is_string() || b->get<std::string>().empty())
    return FieldError{"s3.bucket (a bucket name) is required", "s3.bucket"};
  const std::string bucket = b->get<std::string>();
  bool bucket_ok = bucket.size() <= 255;
  for (unsigned char c : bucket)
    bucket_ok = bucket_ok && (std::isalnum(c) || c == '.' || c == '-' || c == '_');
  if (!bucket_ok)
    return FieldError{"s3.bucket must be at most 255 letters, digits, '.', '-' or '_'", "s3.bucket"};
  // Required by comfyui-api's schema too ("" puts files at the bucket's root).
  auto p = block.find("prefix");
  if (p == block.end() || !p->is_string())
    return FieldError{"s3.prefix (a string, \"\" for the bucket's root) is required", "s3.prefix"};
  const std::string prefix = p->get<std::string>();
  if (prefix.size() > 900 || has_control(prefix))
    return FieldError{"s3.prefix must be at most 900 bytes without control characters",
                      "s3.prefix"};
  out->kind = UploadTarget::Kind::kS3;
  out->bucket = bucket;
  out->prefix = prefix;
  return parse_async(block, "s3", &out->async);
}

}  // namespace

Result<UploadSettings> make_upload_settings(const ServerConfig& c, std::string* notes) {
  UploadSettings s;
  s.http_policy.allow_private_addresses = c.allow_private_uploads;
  s.timeout = std::chrono::milliseconds(int64_t(c.upload_timeout_s * 1000));
  if (!c.http_auth_header_name.empty() || !c.http_auth_header_value.empty()) {
    if (!is_token(c.http_auth_header_name))
      return invalid_argument("HTTP_AUTH_HEADER_NAME must be an HTTP header name (set together "
                              "with HTTP_AUTH_HEADER_VALUE)");
    if (has_control(c.http_auth_header_value))
      return invalid_argument("HTTP_AUTH_HEADER_VALUE must not contain control characters");
    s.http_headers.push_back({c.http_auth_header_name, c.http_auth_header_value});
  }
  s.s3.region = c.aws_region;
  s.s3.endpoint = c.aws_endpoint_url;
  s.s3.credentials = {c.aws_access_key_id, c.aws_secret_access_key, c.aws_session_token};
  if (!c.aws_endpoint_url.empty()) {
    // A PUT built now tells whether the endpoint is usable, before the first request.
    auto probe = media::s3_put_object(s.s3, "bucket", "key", "", "image/png",
                                      std::chrono::system_clock::now());
    if (!probe.ok()) return probe.status().with_context("AWS_ENDPOINT_URL: ");
  }
  std::vector<std::string> missing;
  if (c.aws_region.empty()) missing.push_back("AWS_REGION");
  if (c.aws_access_key_id.empty()) missing.push_back("AWS_ACCESS_KEY_ID");
  if (c.aws_secret_access_key.empty()) missing.push_back("AWS_SECRET_ACCESS_KEY");
  s.s3_configured = missing.empty();
  if (!missing.empty() && missing.size() < 3) {
    std::string m;
    for (const auto& n : missing) m += (m.empty() ? "" : ", ") + n;
    *notes = "s3 uploads disabled: " + m + " not set";
  }
  return s;
}

std::optional<FieldError> parse_upload_options(const json& body, const UploadSettings& settings,
                                               RequestOptions* out, json* echo) {
  for (const char* key : {"hf_upload", "azure_blob_upload", "credentials"})
    if (body.contains(key))
      return FieldError{std::string(key) +
                            " is not supported by this server (not implemented); use s3, "
                            "http_upload, webhook_v2 or the base64 images of the response",
                        key};
  const bool has_http = body.contains("http_upload") && !body["http_upload"].is_null();
  const bool has_s3 = body.contains("s3") && !body["s3"].is_null();
  if (has_http && has_s3)
    return FieldError{"give one upload target: s3 or http_upload, not both", "s3"};
  if (!has_http && !has_s3) return std::nullopt;
  UploadTarget t;
  if (auto e = has_http ? parse_http_upload(body["http_upload"], settings, &t)
                        : parse_s3(body["s3"], settings, &t))
    return e;
  if (!out->webhook.empty())
    return FieldError{std::string("the legacy webhook sends base64 files and cannot be combined "
                                  "with ") + t.field() + "; use webhook_v2",
                      "webhook"};
  if (t.kind == UploadTarget::Kind::kHttp)
    (*echo)["http_upload"] = {{"url_prefix", t.url_prefix}, {"async", t.async}};
  else
    (*echo)["s3"] = {{"bucket", t.bucket}, {"prefix", t.prefix}, {"async", t.async}};
  out->upload = std::move(t);
  return std::nullopt;
}

std::vector<std::string> upload_urls(const UploadTarget& target,
                                     const std::vector<EncodedImage>& files) {
  std::vector<std::string> urls;
  for (const auto& f : files) {
    if (target.kind == UploadTarget::Kind::kS3)
      urls.push_back("s3://" + target.bucket + "/" + target.prefix + f.filename);
    else
      urls.push_back(strip_slashes(target.url_prefix) + "/" + media::s3_uri_encode(f.filename, false));
  }
  return urls;
}

Status upload_outputs(const UploadTarget& target, const UploadSettings& settings,
                      const std::vector<EncodedImage>& files, const std::atomic<bool>* abort) {
  const std::vector<std::string> urls = upload_urls(target, files);
  const bool s3 = target.kind == UploadTarget::Kind::kS3;
  // The S3 endpoint is the operator's; only request-supplied http_upload targets are policed.
  media::NetPolicy s3_policy;
  s3_policy.allow_private_addresses = true;
  for (size_t i = 0; i < files.size(); ++i) {
    const EncodedImage& f = files[i];
    media::HttpPost put;
    if (s3) {
      auto signed_put = media::s3_put_object(settings.s3, target.bucket, target.prefix + f.filename,
                                             f.data, f.content_type,
                                             std::chrono::system_clock::now());
      if (!signed_put.ok()) return signed_put.status().with_context("s3: ");
      put = std::move(*signed_put);
    } else {
      put.url = urls[i];
      put.body = f.data;
      put.headers = settings.http_headers;
      put.headers.push_back({"Content-Type", f.content_type});
    }
    put.timeout = settings.timeout;
    put.connect_timeout = std::chrono::milliseconds(10000);
    put.max_response_bytes = 1024;
    put.abort = abort;
    const std::string what = std::string(target.field()) + ": upload of " + f.filename + " to " +
                             urls[i] + (s3 ? " (" + put.url + ")" : "");
    auto r = media::http_put(put, s3 ? s3_policy : settings.http_policy);
    if (!r.ok()) return r.status().with_context(what + " failed: ");
    if (r->status < 200 || r->status >= 300)
      return io_error(what + " failed: HTTP " + std::to_string(r->status) +
                      (r->body.empty() ? "" : ": " + snippet(r->body)));
  }
  return ok_status();
}

}  // namespace sd35::server
