// Outbound HTTP for the server (webhook POSTs, input-image downloads, output upload PUTs) through
// libcurl, with the address policy that keeps request-supplied URLs away from the machine's own
// network.
//
// URL policy: only http and https. Unless `allow_private_addresses` is set, the host must
// resolve only to public addresses: loopback, RFC 1918 private, CGNAT (100.64/10), link-local
// (169.254/16 — the cloud metadata services live there), unique-local and link-local IPv6,
// multicast, unspecified/reserved ranges, and IPv6 forms embedding such an IPv4 address
// (v4-mapped, NAT64, 6to4) are refused. The check runs twice: once on the resolved host before
// the request (every address must pass, for a clear error), and again on the address curl
// actually connects to (CURLOPT_OPENSOCKETFUNCTION). The second check is what defeats DNS
// rebinding (a name that resolves to a public address for the check and to 127.0.0.1 for the
// connection) and redirects to private hosts. Caveat: when a proxy is configured through the
// environment (http_proxy, https_proxy, all_proxy), curl connects to the proxy, so only the
// first check applies and the proxy is trusted to enforce the rest.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sd35/status.h"

struct sockaddr;

namespace sd35::media {

struct NetPolicy {
  bool allow_private_addresses = false;  // tests and trusted in-cluster receivers
};

// True for a public unicast address (what the policy allows by default). AF_INET/AF_INET6 only.
bool is_public_address(const sockaddr* address);

// Scheme and host syntax; with `resolve`, also resolves the host (blocking DNS) and applies
// the address policy to every address. Errors: kInvalidArgument naming the problem.
Status check_url(std::string_view url, const NetPolicy& policy, bool resolve = true);

// Scheme and host syntax, and — without DNS, so it never blocks — the address policy when the
// host is a literal IP address ("http://127.0.0.1/", "http://[::1]/"). Names pass; they are
// checked when resolved. Lets a request handler refuse a URL that can never be delivered to
// with a synchronous 400 instead of a failure the client would only see in the logs.
Status check_url_literal(std::string_view url, const NetPolicy& policy);

struct HttpHeader {
  std::string name, value;
};

struct HttpResponse {
  long status = 0;
  std::string body;  // at most `max_response_bytes` of it
};

struct HttpPost {
  std::string url;
  std::string body;
  std::vector<HttpHeader> headers;  // Content-Type is the caller's to set
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{15000};  // whole request
  size_t max_response_bytes = 4096;          // kept for logs; the rest is read and discarded
  const std::atomic<bool>* abort = nullptr;  // set → the transfer stops (shutdown)
  // Send the path byte for byte: no "/./" or "/../" squashing (a signed S3 key must arrive as
  // it was signed).
  bool path_as_is = false;
};

// One POST, no redirects followed (a webhook receiver that redirects is misconfigured, and a
// POST would turn into a GET). Any HTTP status is a successful transfer (the caller judges
// 2xx); refused URLs → kInvalidArgument; network errors and timeouts → kIo.
Result<HttpResponse> http_post(const HttpPost& request, const NetPolicy& policy);
// The same request with the PUT method (storage uploads: http_upload, S3).
Result<HttpResponse> http_put(const HttpPost& request, const NetPolicy& policy);

struct HttpGet {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{30000};
  size_t max_bytes = size_t(32) << 20;  // larger bodies → kResourceExhausted, stopped early
  int max_redirects = 5;                // each hop is checked against the policy
};

// Downloads a URL (input images given as http(s) URLs). Non-2xx → kNotFound/kIo with the
// status in the message.
Result<std::string> http_get(std::string_view url, const HttpGet& options, const NetPolicy& policy);

}  // namespace sd35::media
