// Input images of requests (LoadImage's `inputs.image` in comfyui-api graphs, img2img init
// images of the other dialects): base64, a data: URL, or an http(s) URL, decoded to the
// uint8 [H, W, 3] tensor LoadImage produces (image_codec.h: decode_image).
//
// Differences from comfyui-api, on purpose: a data: URL prefix is stripped before decoding (it
// decoded the prefix as base64 too), the image type always comes from the bytes (never from
// the data: URL's media type or a file extension), and every size is limited.
#pragma once

#include <string>
#include <string_view>

#include "core/tensor.h"
#include "sd35/status.h"
#include "service/media/http_client.h"
#include "service/media/image_codec.h"

namespace sd35::media {

enum class InputImageKind {
  kBase64,    // anything else: must be valid base64
  kDataUrl,   // "data:…"
  kHttpUrl,   // "http://…", "https://…"
  kOtherUrl,  // another "scheme://" (s3://, ftp://, file://): not fetched here
  kPath,      // "/…", "./…", "../…": a server-side file, the caller's policy decides
};
// comfyui-api's classification (contract §6), except that a long "/…" that is really base64
// (it starts with '/' for JPEGs: "/9j/…") is kBase64 when it is longer than 4096 characters or
// ends with '=' — the same heuristic comfyui-api uses.
InputImageKind classify_input_image(std::string_view value);

struct InputImageOptions {
  DecodeLimits limits;     // limits.max_bytes also caps downloads and decoded base64
  bool allow_urls = true;  // false: http(s) inputs are refused
  HttpGet http;            // timeouts and redirects for URL inputs (max_bytes is overridden)
  NetPolicy net;           // private/loopback URL targets refused unless allowed
};

// The encoded bytes of an input image (for a server that stores inputs as files). kPath and
// kOtherUrl are kUnsupported here. URL inputs block for the download (bounded by http.timeout).
Result<std::string> input_image_bytes(std::string_view value, const InputImageOptions& options);

// input_image_bytes + decode_image. Errors name the problem (bad base64 offset, refused
// address, HTTP status, corrupt file, size limit) for a 400 that tells the client what to fix.
Result<Tensor> load_input_image(std::string_view value, const InputImageOptions& options);

}  // namespace sd35::media
