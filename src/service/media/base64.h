// Base64 (RFC 4648 §4, standard alphabet) and `data:` URLs (RFC 2397), for the base64 images
// of API requests and responses and for the WEBHOOK_SECRET key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "sd35/status.h"

namespace sd35::media {

// Standard alphabet with '=' padding, no line breaks (what every API response carries).
std::string base64_encode(std::string_view bytes);

// Strict decoder for request data. Accepts the standard alphabet only; ASCII whitespace (space,
// tab, CR, LF) is skipped because `base64` and many clients wrap lines at 76 columns. Padding
// may be absent, but when present it must be exactly what the length needs ("QQ==", "QUI=").
// Rejected, with the offset in the message: any other character (the URL-safe '-' and '_'
// included), '=' anywhere but at the end, data after the padding, a length that cannot be
// base64 (4n+1 symbols), and empty input. Unused low bits of the last symbol are ignored, as
// Node's and the Standard Webhooks libraries' decoders do (WEBHOOK_SECRET "testsecret" of the
// reference test suite relies on that). More than `max_decoded_bytes` → kResourceExhausted,
// checked before allocating.
Result<std::string> base64_decode(std::string_view text,
                                  size_t max_decoded_bytes = std::numeric_limits<size_t>::max());

struct DataUrl {
  std::string mime_type;  // lower-cased, without parameters; "text/plain" when absent
  std::string data;       // decoded bytes
};

// True when `s` starts with "data:" (case-insensitive), i.e. parse_data_url should be used.
bool is_data_url(std::string_view s);

// "data:[<mime>][;param=value]*[;base64],<data>". With ;base64 the payload goes through the
// strict base64_decode; without it, %XX escapes are decoded (RFC 2397). Errors name what is
// wrong (missing comma, bad escape, bad base64 at offset n).
Result<DataUrl> parse_data_url(std::string_view url,
                               size_t max_decoded_bytes = std::numeric_limits<size_t>::max());

}  // namespace sd35::media
