#include "service/media/image_input.h"

#include <cctype>

#include "service/media/base64.h"

namespace sd35::media {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// "scheme://" with an RFC 3986 scheme (letter, then letters, digits, '+', '-', '.').
bool has_url_scheme(std::string_view s) {
  size_t sep = s.find("://");
  if (sep == std::string_view::npos || sep == 0 || sep > 32) return false;
  if (!std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (size_t i = 1; i < sep; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

}  // namespace

InputImageKind classify_input_image(std::string_view v) {
  if (is_data_url(v)) return InputImageKind::kDataUrl;
  if (starts_with_ci(v, "http://") || starts_with_ci(v, "https://"))
    return InputImageKind::kHttpUrl;
  if (has_url_scheme(v)) return InputImageKind::kOtherUrl;
  if (v.substr(0, 2) == "./" || v.substr(0, 3) == "../") return InputImageKind::kPath;
  if (!v.empty() && v[0] == '/' && v.size() < 4096 && v.back() != '=') return InputImageKind::kPath;
  return InputImageKind::kBase64;
}

Result<std::string> input_image_bytes(std::string_view value, const InputImageOptions& o) {
  switch (classify_input_image(value)) {
    case InputImageKind::kDataUrl: {
      SD35_ASSIGN_OR_RETURN(DataUrl d, parse_data_url(value, o.limits.max_bytes));
      return std::move(d.data);
    }
    case InputImageKind::kHttpUrl: {
      if (!o.allow_urls) return invalid_argument("image URLs are not allowed on this server");
      HttpGet get = o.http;
      get.max_bytes = o.limits.max_bytes;
      auto bytes = http_get(value, get, o.net);
      if (!bytes.ok()) return bytes.status().with_context("fetching the input image: ");
      return bytes;
    }
    case InputImageKind::kOtherUrl:
      return unsupported("input image URL scheme '" +
                         std::string(value.substr(0, value.find("://"))) +
                         "' is not supported (use base64, a data: URL, or http/https)");
    case InputImageKind::kPath:
      return unsupported("input image '" + std::string(value.substr(0, 200)) +
                         "' looks like a server file path, which is not accepted here");
    case InputImageKind::kBase64: break;
  }
  auto bytes = base64_decode(value, o.limits.max_bytes);
  if (!bytes.ok())
    return bytes.status().with_context("input image is neither a URL nor valid base64: ");
  return bytes;
}

Result<Tensor> load_input_image(std::string_view value, const InputImageOptions& o) {
  SD35_ASSIGN_OR_RETURN(std::string bytes, input_image_bytes(value, o));
  auto img = decode_image(bytes, o.limits);
  if (!img.ok()) return img.status().with_context("input image: ");
  return img;
}

}  // namespace sd35::media
