#include "service/media/s3_sign.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <memory>

namespace sd35::media {
namespace {

std::string to_hex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// SigV4's header value form: outer whitespace trimmed, inner runs of spaces collapsed to one.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

struct CurlUrlFree {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

std::string url_part(CURLU* u, CURLUPart part) {
  char* s = nullptr;
  if (curl_url_get(u, part, &s, 0) != CURLUE_OK || !s) return {};
  std::string out = s;
  curl_free(s);
  return out;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return to_hex(md, len);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // A non-null key pointer even when empty: some OpenSSL 3.0 builds reject HMAC(NULL, 0).
  static const unsigned char kEmpty = 0;
  const unsigned char* k = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  HMAC(EVP_sha256(), k, int(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), mac, &len);
  return std::string(reinterpret_cast<const char*>(mac), len);
}

std::string s3_uri_encode(std::string_view s, bool keep_slash) {
  static const char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(char(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

SigV4Output sigv4_sign(const SigV4Input& in, const AwsCredentials& credentials) {
  // Canonical headers: lower-case names sorted, values trimmed; repeated names joined by ','.
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& h : in.headers) headers.emplace_back(lower(h.name), canonical_value(h.value));
  std::stable_sort(headers.begin(), headers.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string canonical_headers, signed_headers;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (i > 0 && headers[i].first == headers[i - 1].first) {
      canonical_headers.pop_back();  // the '\n' of the previous line
      canonical_headers += "," + headers[i].second + "\n";
      continue;
    }
    canonical_headers += headers[i].first + ":" + headers[i].second + "\n";
    if (!signed_headers.empty()) signed_headers += ";";
    signed_headers += headers[i].first;
  }
  SigV4Output out;
  out.signed_headers = signed_headers;
  out.canonical_request = in.method + "\n" + in.canonical_uri + "\n" + in.canonical_query + "\n" +
                          canonical_headers + "\n" + signed_headers + "\n" + in.payload_sha256;
  const std::string day = in.amz_date.substr(0, 8);
  const std::string scope = day + "/" + in.region + "/" + in.service + "/aws4_request";
  out.string_to_sign = "AWS4-HMAC-SHA256\n" + in.amz_date + "\n" + scope + "\n" +
                       sha256_hex(out.canonical_request);
  // The signing key is derived per day, region and service from the secret.
  const std::string k_date = hmac_sha256("AWS4" + credentials.secret_access_key, day);
  const std::string k_region = hmac_sha256(k_date, in.region);
  const std::string k_service = hmac_sha256(k_region, in.service);
  const std::string k_signing = hmac_sha256(k_service, "aws4_request");
  const std::string mac = hmac_sha256(k_signing, out.string_to_sign);
  out.signature = to_hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
  out.authorization = "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + "/" + scope +
                      ",SignedHeaders=" + signed_headers + ",Signature=" + out.signature;
  return out;
}

Result<HttpPost> s3_put_object(const S3Config& config, std::string_view bucket,
                               std::string_view key, std::string body,
                               std::string_view content_type,
                               std::chrono::system_clock::time_point now) {
  const std::string endpoint =
      config.endpoint.empty() ? "https://s3." + config.region + ".amazonaws.com" : config.endpoint;
  std::unique_ptr<CURLU, CurlUrlFree> u(curl_url());
  if (!u) return resource_exhausted("out of memory parsing the S3 endpoint");
  if (curl_url_set(u.get(), CURLUPART_URL, endpoint.c_str(), 0) != CURLUE_OK)
    return invalid_argument("the S3 endpoint '" + endpoint + "' is not a URL");
  const std::string scheme = lower(url_part(u.get(), CURLUPART_SCHEME));
  std::string host = url_part(u.get(), CURLUPART_HOST);
  if ((scheme != "http" && scheme != "https") || host.empty())
    return invalid_argument("the S3 endpoint '" + endpoint + "' must be an http(s) URL with a host");
  const std::string port = url_part(u.get(), CURLUPART_PORT);  // only when written in the URL
  if (!port.empty()) host += ":" + port;
  std::string base = url_part(u.get(), CURLUPART_PATH);
  while (!base.empty() && base.back() == '/') base.pop_back();
  // Path style (comfyui-api's forcePathStyle): works for AWS, R2, MinIO and LocalStack alike,
  // and bucket names with dots do not break TLS host names.
  const std::string path =
      base + "/" + s3_uri_encode(bucket, false) + "/" + s3_uri_encode(key, true);

  HttpPost put;
  put.url = scheme + "://" + host + path;
  put.path_as_is = true;  // the key is signed as written: curl must not squash "/../"
  SigV4Input in;
  in.method = "PUT";
  in.canonical_uri = path;
  in.payload_sha256 = sha256_hex(body);
  in.amz_date = amz_date(now);
  in.region = config.region;
  in.headers = {{"Host", host},
                {"Content-Type", std::string(content_type)},
                {"x-amz-content-sha256", in.payload_sha256},
                {"x-amz-date", in.amz_date}};
  if (!config.credentials.session_token.empty())
    in.headers.push_back({"x-amz-security-token", config.credentials.session_token});
  const SigV4Output sig = sigv4_sign(in, config.credentials);
  put.headers = in.headers;
  put.headers.push_back({"Authorization", sig.authorization});
  put.body = std::move(body);
  return put;
}

}  // namespace sd35::media
