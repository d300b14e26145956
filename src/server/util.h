// Small helpers of the HTTP server: request/job ids, constant-time comparison (base64 is
// src/service/media/base64.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sd35::server {

// A random version-4 UUID ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"), as crypto.randomUUID().
std::string make_uuid();

// A random seed as the recipe's txt2img template draws one: floor(random() * 1e15).
uint64_t random_seed();

// Compares secrets in time that depends only on their lengths, not on where they differ
// (API keys must not leak through response timing).
bool constant_time_equals(std::string_view a, std::string_view b);

// A client's X-Request-ID is reused only when it is short printable ASCII: it goes into log
// lines and response headers verbatim.
bool is_acceptable_request_id(std::string_view id);

}  // namespace sd35::server
