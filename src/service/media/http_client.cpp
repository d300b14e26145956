#include "service/media/http_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

namespace sd35::media {
namespace {

void ensure_curl_initialized() {
  // curl_global_init is not safe to race with other curl calls; do it once, before any use.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct AddrinfoDeleter {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

struct UrlParts {
  std::string scheme, host;
};

Result<UrlParts> parse_url(std::string_view url) {
  ensure_curl_initialized();
  std::unique_ptr<CURLU, CurlUrlDeleter> h(curl_url());
  if (!h) return resource_exhausted("out of memory parsing a URL");
  std::string s(url);
  if (s.find_first_of(std::string_view("\0\r\n", 3)) != std::string::npos)
    return invalid_argument("invalid URL: contains control characters");
  CURLUcode rc = curl_url_set(h.get(), CURLUPART_URL, s.c_str(), 0);
  if (rc != CURLUE_OK)
    return invalid_argument(std::string("invalid URL: ") + curl_url_strerror(rc));
  UrlParts parts;
  char* part = nullptr;
  if (curl_url_get(h.get(), CURLUPART_SCHEME, &part, 0) == CURLUE_OK) {
    parts.scheme = part;
    curl_free(part);
  }
  for (char& c : parts.scheme) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (parts.scheme != "http" && parts.scheme != "https")
    return invalid_argument("URL scheme '" + parts.scheme +
                            "' is not allowed (http or https only)");
  part = nullptr;
  if (curl_url_get(h.get(), CURLUPART_HOST, &part, 0) != CURLUE_OK || !part)
    return invalid_argument("invalid URL: no host");
  parts.host = part;
  curl_free(part);
  if (parts.host.size() > 2 && parts.host.front() == '[' && parts.host.back() == ']')
    parts.host = parts.host.substr(1, parts.host.size() - 2);
  if (parts.host.empty()) return invalid_argument("invalid URL: no host");
  return parts;
}

bool public_v4(uint32_t a) {
  if ((a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127)
    return false;                                      // this-net, RFC1918, loopback
  if ((a & 0xFFC00000u) == 0x64400000u) return false;  // 100.64/10 carrier-grade NAT
  if ((a & 0xFFFF0000u) == 0xA9FE0000u) return false;  // 169.254/16 link-local, metadata
  if ((a & 0xFFF00000u) == 0xAC100000u) return false;  // 172.16/12
  if ((a & 0xFFFFFF00u) == 0xC0000000u) return false;  // 192.0.0/24 IETF protocol assignments
  if ((a & 0xFFFF0000u) == 0xC0A80000u) return false;  // 192.168/16
  if ((a & 0xFFFE0000u) == 0xC6120000u) return false;  // 198.18/15 benchmarking
  if (a >= 0xE0000000u) return false;                  // multicast, reserved, broadcast
  return true;
}

uint32_t v4_at(const uint8_t* b) {
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
}

std::string address_string(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  return buf;
}

Status resolve_and_check(const std::string& host, const NetPolicy& policy) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  std::unique_ptr<addrinfo, AddrinfoDeleter> guard(res);
  if (rc != 0 || !res)
    return invalid_argument("cannot resolve host '" + host + "': " + gai_strerror(rc));
  if (policy.allow_private_addresses) return ok_status();
  for (addrinfo* a = res; a; a = a->ai_next)
    if (!is_public_address(a->ai_addr))
      return invalid_argument("host '" + host + "' resolves to " + address_string(a->ai_addr) +
                              ", a loopback/private/link-local address, which is not allowed");
  return ok_status();
}

bool proxy_configured() {
  for (const char* v : {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}) {
    const char* s = std::getenv(v);
    if (s && *s) return true;
  }
  return false;
}

// State shared with curl's callbacks for one transfer.
struct Transfer {
  bool allow_private = false;
  bool check_connect = true;
  std::string refused_address;  // set when the connect-time check refused an address
  std::string body;
  size_t max_body = 0;
  bool body_too_large = false;
  bool discard_excess = false;  // keep the first max_body bytes and drop the rest (POST replies)
  const std::atomic<bool>* abort = nullptr;
};

curl_socket_t open_socket(void* clientp, curlsocktype, curl_sockaddr* addr) {
  auto* t = static_cast<Transfer*>(clientp);
  if (t->check_connect && !t->allow_private && !is_public_address(&addr->addr)) {
    t->refused_address = address_string(&addr->addr);
    return CURL_SOCKET_BAD;
  }
  return socket(addr->family, addr->socktype, addr->protocol);
}

size_t on_body(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  size_t room = t->max_body - std::min(t->max_body, t->body.size());
  if (len > room) {
    if (!t->discard_excess) {
      t->body_too_large = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    t->body.append(data, room);
    return len;
  }
  t->body.append(data, len);
  return len;
}

int on_progress(void* clientp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(clientp);
  return t->abort && t->abort->load() ? 1 : 0;
}

// Options common to GET and POST. Returns the curl handle or an error.
Result<std::unique_ptr<CURL, CurlDeleter>> make_handle(const std::string& url, Transfer& t,
                                                       std::chrono::milliseconds connect_timeout,
                                                       std::chrono::milliseconds timeout,
                                                       char* errbuf) {
  std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
  if (!c) return resource_exhausted("cannot create a curl handle");
  CURL* h = c.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // we are multi-threaded: no SIGALRM timeouts
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, long(connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, long(timeout.count()));
  curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "sd35-server");
  return c;
}

Status transfer_error(CURLcode rc, const Transfer& t, const char* errbuf, const std::string& url) {
  if (!t.refused_address.empty())
    return invalid_argument("connection to " + t.refused_address +
                            " refused: loopback/private/link-local addresses are not allowed");
  if (rc == CURLE_ABORTED_BY_CALLBACK) return cancelled("request aborted (shutting down)");
  std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  if (rc == CURLE_OPERATION_TIMEDOUT) return io_error("request timed out: " + detail);
  return io_error("request failed: " + detail);
}

}  // namespace

bool is_public_address(const sockaddr* sa) {
  if (!sa) return false;
  if (sa->sa_family == AF_INET)
    return public_v4(ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr));
  if (sa->sa_family != AF_INET6) return false;
  const uint8_t* b = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr;
  static const uint8_t kZero[12] = {};
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  static const uint8_t kNat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b, kZero, 12) == 0) return false;  // ::, ::1, IPv4-compatible
  if (std::memcmp(b, kMapped, 12) == 0 || std::memcmp(b, kNat64, 12) == 0)
    return public_v4(v4_at(b + 12));
  if (b[0] == 0x20 && b[1] == 0x02) return public_v4(v4_at(b + 2));  // 6to4
  if ((b[0] & 0xFE) == 0xFC) return false;                           // fc00::/7 unique local
  if (b[0] == 0xFE && (b[1] & 0x80) == 0x80) return false;           // fe80::/10, fec0::/10
  if (b[0] == 0xFF) return false;                                    // multicast
  return true;
}

Status check_url(std::string_view url, const NetPolicy& policy, bool resolve) {
  SD35_ASSIGN_OR_RETURN(UrlParts parts, parse_url(url));
  if (!resolve) return ok_status();
  return resolve_and_check(parts.host, policy);
}

Status check_url_literal(std::string_view url, const NetPolicy& policy) {
  SD35_ASSIGN_OR_RETURN(UrlParts parts, parse_url(url));
  if (policy.allow_private_addresses) return ok_status();
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  const sockaddr* sa = nullptr;
  if (inet_pton(AF_INET, parts.host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    sa = reinterpret_cast<const sockaddr*>(&v4);
  } else if (inet_pton(AF_INET6, parts.host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    sa = reinterpret_cast<const sockaddr*>(&v6);
  }
  if (sa && !is_public_address(sa))
    return invalid_argument("host " + parts.host +
                            " is a loopback/private/link-local address, which is not allowed");
  return ok_status();
}

namespace {

Result<HttpResponse> send_with_body(const char* method, const HttpPost& req,
                                    const NetPolicy& policy) {
  SD35_ASSIGN_OR_RETURN(UrlParts parts, parse_url(req.url));
  SD35_RETURN_IF_ERROR(resolve_and_check(parts.host, policy));
  Transfer t;
  t.allow_private = policy.allow_private_addresses;
  t.check_connect = !proxy_configured();
  t.max_body = req.max_response_bytes;
  t.discard_excess = true;
  t.abort = req.abort;
  char errbuf[CURL_ERROR_SIZE] = "";
  SD35_ASSIGN_OR_RETURN(auto handle,
                        make_handle(req.url, t, req.connect_timeout, req.timeout, errbuf));
  CURL* h = handle.get();
  curl_slist* list = nullptr;
  for (const auto& hd : req.headers) {
    curl_slist* next = curl_slist_append(list, (hd.name + ": " + hd.value).c_str());
    if (!next) {
      curl_slist_free_all(list);
      return resource_exhausted("out of memory building request headers");
    }
    list = next;
  }
  // libcurl adds "Expect: 100-continue" for bodies above 1 MiB; receivers often mishandle it.
  list = curl_slist_append(list, "Expect:");
  std::unique_ptr<curl_slist, SlistDeleter> headers(list);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  // POSTFIELDS sends the body for any method; CUSTOMREQUEST only renames the verb.
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  if (std::strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(req.body.size()));
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  if (req.path_as_is) curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) return transfer_error(rc, t, errbuf, req.url);
  HttpResponse resp;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  resp.body = std::move(t.body);
  return resp;
}

}  // namespace

Result<HttpResponse> http_post(const HttpPost& req, const NetPolicy& policy) {
  return send_with_body("POST", req, policy);
}

Result<HttpResponse> http_put(const HttpPost& req, const NetPolicy& policy) {
  return send_with_body("PUT", req, policy);
}

Result<std::string> http_get(std::string_view url, const HttpGet& o, const NetPolicy& policy) {
  SD35_ASSIGN_OR_RETURN(UrlParts parts, parse_url(url));
  SD35_RETURN_IF_ERROR(resolve_and_check(parts.host, policy));
  Transfer t;
  t.allow_private = policy.allow_private_addresses;
  t.check_connect = !proxy_configured();
  t.max_body = o.max_bytes;
  char errbuf[CURL_ERROR_SIZE] = "";
  std::string u(url);
  SD35_ASSIGN_OR_RETURN(auto handle, make_handle(u, t, o.connect_timeout, o.timeout, errbuf));
  CURL* h = handle.get();
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, o.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, long(o.max_redirects));
  // A declared Content-Length above the limit fails before the body is read.
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(o.max_bytes));
  CURLcode rc = curl_easy_perform(h);
  if (t.body_too_large || rc == CURLE_FILESIZE_EXCEEDED)
    return resource_exhausted("download of " + u + " is larger than the limit of " +
                              std::to_string(o.max_bytes) + " bytes");
  if (rc != CURLE_OK) return transfer_error(rc, t, errbuf, u);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status == 404 || status == 410)
    return not_found("download of " + u + ": HTTP " + std::to_string(status));
  if (status < 200 || status >= 300)
    return io_error("download of " + u + ": HTTP " + std::to_string(status));
  return std::move(t.body);
}

}  // namespace sd35::media
