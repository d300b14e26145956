// Webhook signing, event bodies, URL policy and the delivery thread (src/service/media/
// webhook.h, webhook_events.h, http_client.h), against a tiny HTTP receiver on 127.0.0.1.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "service/media/base64.h"
#include "service/media/http_client.h"
#include "service/media/image_input.h"
#include "service/media/webhook.h"
#include "service/media/webhook_events.h"

namespace sd35::media {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// The receiver is on loopback: a proxy from the environment (CI machines) must not be used.
const bool kProxiesCleared = [] {
  for (const char* v :
       {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
    unsetenv(v);
  return true;
}();

// ---- a minimal HTTP/1.1 receiver: one request per connection --------------------------------

struct Received {
  std::string method, path, body;
  std::map<std::string, std::string> headers;  // lower-case names
};

class Receiver {
 public:
  // statuses[i] answers request i; the last one repeats. `delay` before each answer.
  explicit Receiver(std::vector<int> statuses, std::chrono::milliseconds delay = 0ms,
                    std::string body = "ok")
      : statuses_(std::move(statuses)), delay_(delay), body_(std::move(body)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~Receiver() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Received> requests() {
    std::lock_guard<std::mutex> lk(mu_);
    return got_;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      serve(c);
      close(c);
    }
  }
  void serve(int c) {
    std::string data;
    char buf[4096];
    size_t header_end = std::string::npos, need = 0;
    for (;;) {
      pollfd p{c, POLLIN, 0};
      if (poll(&p, 1, 2000) <= 0) return;
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) return;
      data.append(buf, size_t(n));
      if (header_end == std::string::npos) {
        header_end = data.find("\r\n\r\n");
        if (header_end == std::string::npos) continue;
        need = header_end + 4 + content_length(data.substr(0, header_end));
      }
      if (data.size() >= need) break;
    }
    Received r;
    std::string head = data.substr(0, header_end);
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    r.method = first.substr(0, first.find(' '));
    r.path = first.substr(first.find(' ') + 1, first.rfind(' ') - first.find(' ') - 1);
    size_t pos = line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
      pos = e + 2;
    }
    r.body = data.substr(header_end + 4);
    int status;
    {
      std::lock_guard<std::mutex> lk(mu_);
      status = statuses_[std::min(got_.size(), statuses_.size() - 1)];
      got_.push_back(r);
    }
    if (delay_.count() > 0) {
      auto until = std::chrono::steady_clock::now() + delay_;
      while (!stop_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    }
    std::string reply = "HTTP/1.1 " + std::to_string(status) +
                        " X\r\nContent-Length: " + std::to_string(body_.size()) +
                        "\r\nConnection: close\r\n\r\n" + body_;
    ssize_t ignored = write(c, reply.data(), reply.size());
    (void)ignored;
  }
  static size_t content_length(const std::string& head) {
    std::string lower = head;
    for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    size_t p = lower.find("content-length:");
    return p == std::string::npos ? 0 : std::strtoul(lower.c_str() + p + 15, nullptr, 10);
  }

  std::vector<int> statuses_;
  std::chrono::milliseconds delay_;
  std::string body_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Received> got_;
  std::thread thread_;
};

// HMAC computed by Python's hmac module, independently of our OpenSSL call.
std::string python_signature(const std::string& secret_b64, const std::string& id, int64_t ts,
                             const std::string& body) {
  setenv("SD35_T_KEY", secret_b64.c_str(), 1);
  setenv("SD35_T_MSG", (id + "." + std::to_string(ts) + "." + body).c_str(), 1);
  FILE* p = popen(
      "python3 -c 'import base64,hashlib,hmac,os;"
      "k=base64.b64decode(os.environ[\"SD35_T_KEY\"]);"
      "m=os.environ[\"SD35_T_MSG\"].encode();"
      "print(\"v1,\"+base64.b64encode(hmac.new(k,m,hashlib.sha256).digest()).decode())' "
      "2>/dev/null",
      "r");
  if (!p) return "";
  char buf[256] = "";
  std::string out = fgets(buf, sizeof buf, p) ? buf : "";
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

WebhookOptions test_options() {
  WebhookOptions o;
  o.max_attempts = 3;
  o.base_delay = 20ms;
  o.max_delay = 200ms;
  o.connect_timeout = 2000ms;
  o.request_timeout = 5000ms;
  o.net.allow_private_addresses = true;  // the receiver is on loopback
  o.secret = "testsecret";
  return o;
}

// ---- signing -----------------------------------------------------------------------------------

TEST(WebhookSignature, MatchesTheStandardWebhooksExample) {
  // The example of the Standard Webhooks specification (and svix's documentation).
  auto key = decode_webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(sign_standard_webhook(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                                  "{\"test\": 2432232314}"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(WebhookSignature, MatchesPythonHmacForOtherInputs) {
  if (std::system("python3 -c pass >/dev/null 2>&1") != 0) GTEST_SKIP() << "python3 not found";
  const std::string body = R"({"type":"prompt.complete","id":"r1","images":["iVBOR..."]})";
  for (const std::string secret : {"c2VjcmV0LWtleS0xMjM0NTY=", "testsecret"}) {
    auto key = decode_webhook_secret(secret);
    ASSERT_TRUE(key.ok()) << secret;
    // Python's b64decode insists on padding; "testsecret==" decodes like "testsecret".
    std::string py_secret = secret == "testsecret" ? "testsecret==" : secret;
    std::string expected = python_signature(py_secret, "req-42", 1764130000, body);
    ASSERT_FALSE(expected.empty());
    EXPECT_EQ(sign_standard_webhook(*key, "req-42", 1764130000, body), expected) << secret;
  }
}

TEST(WebhookSignature, SecretForms) {
  EXPECT_EQ(*decode_webhook_secret("whsec_Zm9vYmFy"), "foobar");
  EXPECT_EQ(*decode_webhook_secret("Zm9vYmFy"), "foobar");
  EXPECT_EQ(*decode_webhook_secret(""), "");
  auto bad = decode_webhook_secret("not base64!");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("WEBHOOK_SECRET"), std::string::npos);
  // An empty key still signs (comfyui-api sends signature headers without a secret too).
  EXPECT_EQ(sign_standard_webhook("", "a", 1, "b").substr(0, 3), "v1,");
}

// ---- event bodies
// --------------------------------------------------------------------------------

TEST(WebhookEvents, FieldNamesFollowTheContract) {
  auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(1764131206426));
  EXPECT_EQ(iso8601_utc(now), "2025-11-26T04:26:46.426Z");
  json response = {{"id", "r1"},
                   {"prompt", {{"1", {}}}},
                   {"images", {"AAAA"}},
                   {"filenames", {"r1_ComfyUI_00001_.png"}},
                   {"stats", {{"total_time", 5}}},
                   {"webhook_v2", "http://x"},
                   {"status", "ok"}};
  json complete = prompt_complete_event(response, now);
  EXPECT_EQ(complete["type"], "prompt.complete");
  EXPECT_EQ(complete["timestamp"], "2025-11-26T04:26:46.426Z");
  EXPECT_EQ(complete["images"], json({"AAAA"}));
  EXPECT_EQ(complete["filenames"][0], "r1_ComfyUI_00001_.png");
  EXPECT_EQ(complete["webhook_v2"], "http://x");  // request echo kept
  EXPECT_FALSE(complete.contains("status"));
  json failed = prompt_failed_event("r1", {{"1", {}}}, "interrupted", now);
  EXPECT_EQ(failed, json({{"type", "prompt.failed"},
                          {"timestamp", "2025-11-26T04:26:46.426Z"},
                          {"id", "r1"},
                          {"prompt", {{"1", {}}}},
                          {"error", "interrupted"}}));
  json out = legacy_output_complete_event("r1", "r1_ComfyUI_00001_.png", "AAAA", {}, {});
  EXPECT_EQ(out["event"], "output.complete");
  EXPECT_EQ(out["image"], "AAAA");
  EXPECT_EQ(out["filename"], "r1_ComfyUI_00001_.png");
  for (const char* k : {"id", "prompt", "stats"}) EXPECT_TRUE(out.contains(k)) << k;
  json lf = legacy_prompt_failed_event("r1", {}, "boom");
  EXPECT_EQ(lf["event"], "prompt.failed");
  EXPECT_EQ(lf["error"], "boom");
  WebhookDelivery d = make_v2_delivery("http://x/y", "r1", failed);
  EXPECT_TRUE(d.standard);
  EXPECT_EQ(d.webhook_id, "r1");
  EXPECT_EQ(d.event, "prompt.failed");
  EXPECT_EQ(json::parse(d.body), failed);
  EXPECT_FALSE(make_legacy_delivery("http://x/y", "r1", out).standard);
}

// ---- URL policy
// ----------------------------------------------------------------------------------

TEST(UrlPolicy, RefusesPrivateTargetsUnlessAllowed) {
  NetPolicy strict;
  for (const char* url : {"http://127.0.0.1/x",
                          "http://localhost:8080/",
                          "http://10.1.2.3/",
                          "http://172.16.0.1/",
                          "http://192.168.1.1/",
                          "http://169.254.169.254/",
                          "http://100.64.0.1/",
                          "http://0.0.0.0/",
                          "http://[::1]/",
                          "http://[fe80::1]/",
                          "http://[fd00::1]/",
                          "http://[::ffff:127.0.0.1]/",
                          "http://224.0.0.1/",
                          "http://2130706433/",
                          "http://0x7f000001/",
                          "http://127.1/",
                          "http://[::ffff:a9fe:a9fe]/",
                          "http://[64:ff9b::7f00:1]/",
                          "http://[2002:c0a8:0101::1]/",
                          "http://localhost./"}) {
    Status s = check_url(url, strict);
    EXPECT_FALSE(s.ok()) << url;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << url;
  }
  EXPECT_TRUE(check_url("http://93.184.216.34/hook", strict).ok());
  EXPECT_TRUE(check_url("https://[2606:4700::1111]/", strict).ok());
  NetPolicy allow;
  allow.allow_private_addresses = true;
  EXPECT_TRUE(check_url("http://127.0.0.1:9/x", allow).ok());
  for (const char* url : {"ftp://example.com/", "file:///etc/passwd", "gopher://x/", "not a url",
                          "http://", "//example.com/x"})
    EXPECT_FALSE(check_url(url, allow, false).ok()) << url;
  EXPECT_NE(check_url("ftp://example.com/", allow, false).message().find("http or https"),
            std::string::npos);
}

TEST(UrlPolicy, LiteralCheckRefusesPrivateIpsWithoutDns) {
  NetPolicy strict, allow;
  allow.allow_private_addresses = true;
  for (const char* url : {"http://127.0.0.1/x", "http://10.1.2.3/", "http://[::1]/",
                          "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/"}) {
    EXPECT_EQ(check_url_literal(url, strict).code(), StatusCode::kInvalidArgument) << url;
    EXPECT_TRUE(check_url_literal(url, allow).ok()) << url;
  }
  // Names are not resolved here (that is the delivery's check).
  EXPECT_TRUE(check_url_literal("http://localhost:8080/", strict).ok());
  EXPECT_TRUE(check_url_literal("https://93.184.216.34/hook", strict).ok());
  EXPECT_FALSE(check_url_literal("ftp://example.com/", allow).ok());
}

TEST(HttpClient, GetEnforcesPolicyAndSizeLimit) {
  Receiver rx({200});
  NetPolicy strict, allow;
  allow.allow_private_addresses = true;
  EXPECT_EQ(http_get(rx.url(), {}, strict).status().code(), StatusCode::kInvalidArgument);
  auto ok = http_get(rx.url(), {}, allow);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(*ok, "ok");
  HttpGet small;
  small.max_bytes = 1;
  EXPECT_EQ(http_get(rx.url(), small, allow).status().code(), StatusCode::kResourceExhausted);
}

TEST(ImageInput, DownloadsUrlInputsUnderThePolicy) {
  std::vector<uint8_t> px(6 * 4 * 3, 90);
  std::string png = *encode_png(ImageView{px.data(), 6, 4, 0});
  Receiver rx({200}, 0ms, png);
  InputImageOptions o;
  auto refused = load_input_image(rx.url("/in.png"), o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("not allowed"), std::string::npos)
      << refused.status().message();
  o.net.allow_private_addresses = true;
  auto img = load_input_image(rx.url("/in.png"), o);
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  EXPECT_EQ(img->shape(), Shape({4, 6, 3}));
  o.limits.max_bytes = png.size() - 1;
  EXPECT_EQ(load_input_image(rx.url("/in.png"), o).status().code(), StatusCode::kResourceExhausted);
  o.limits.max_bytes = 1 << 20;
  o.allow_urls = false;
  EXPECT_FALSE(load_input_image(rx.url("/in.png"), o).ok());
  Receiver missing({404});
  o.allow_urls = true;
  EXPECT_EQ(load_input_image(missing.url("/x.png"), o).status().code(), StatusCode::kNotFound);
}

// ---- delivery
// ------------------------------------------------------------------------------------

TEST(WebhookSender, RetriesUntilDeliveredWithSignedHeaders) {
  Receiver rx({500, 500, 200});
  auto sender = WebhookSender::create(test_options());
  ASSERT_TRUE(sender.ok()) << sender.status().to_string();
  json event = prompt_complete_event({{"id", "req-1"}, {"images", {"AAAA"}}},
                                     std::chrono::system_clock::now());
  ASSERT_TRUE((*sender)->enqueue(make_v2_delivery(rx.url(), "req-1", event)).ok());
  ASSERT_TRUE((*sender)->flush(10s));
  auto got = rx.requests();
  ASSERT_EQ(got.size(), 3u);
  WebhookStats st = (*sender)->stats();
  EXPECT_EQ(st.delivered, 1u);
  EXPECT_EQ(st.failed, 0u);
  EXPECT_EQ(st.attempts, 3u);
  auto key = *decode_webhook_secret("testsecret");
  for (const auto& r : got) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.path, "/hook");
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    EXPECT_EQ(r.headers.at("webhook-id"), "req-1");
    int64_t ts = std::stoll(r.headers.at("webhook-timestamp"));
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    EXPECT_LE(std::llabs(now - ts), 5);
    EXPECT_EQ(r.headers.at("webhook-signature"), sign_standard_webhook(key, "req-1", ts, r.body));
    EXPECT_EQ(json::parse(r.body), event);
  }
}

TEST(WebhookSender, GivesUpAfterMaxAttemptsAndLogs) {
  Receiver rx({503});
  std::mutex mu;
  std::vector<std::string> errors;
  WebhookOptions o = test_options();
  o.max_attempts = 2;
  o.log = [&](WebhookLogLevel level, std::string_view msg, const json&) {
    std::lock_guard<std::mutex> lk(mu);
    if (level == WebhookLogLevel::kError) errors.emplace_back(msg);
  };
  auto sender = WebhookSender::create(o);
  ASSERT_TRUE(sender.ok());
  json e = legacy_output_complete_event("r", "f.png", "AAAA", {}, {});
  ASSERT_TRUE((*sender)->enqueue(make_legacy_delivery(rx.url(), "r", e)).ok());
  ASSERT_TRUE((*sender)->flush(10s));
  EXPECT_EQ(rx.requests().size(), 2u);
  EXPECT_FALSE(rx.requests()[0].headers.count("webhook-signature"));  // legacy: unsigned
  EXPECT_EQ((*sender)->stats().failed, 1u);
  std::lock_guard<std::mutex> lk(mu);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("giving up"), std::string::npos);
}

TEST(WebhookSender, RefusesPrivateUrlWithoutTheFlagAndWithoutRetrying) {
  Receiver rx({200});
  WebhookOptions o = test_options();
  o.net.allow_private_addresses = false;
  auto sender = WebhookSender::create(o);
  ASSERT_TRUE(sender.ok());
  ASSERT_TRUE((*sender)->enqueue(make_legacy_delivery(rx.url(), "r", json::object())).ok());
  ASSERT_TRUE((*sender)->flush(5s));
  EXPECT_EQ(rx.requests().size(), 0u);
  EXPECT_EQ((*sender)->stats().failed, 1u);
  EXPECT_EQ((*sender)->stats().attempts, 1u);
  // Bad schemes fail at enqueue time.
  Status s = (*sender)->enqueue(make_legacy_delivery("file:///etc/passwd", "r", json::object()));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST(WebhookSender, RejectsNewDeliveriesWhenTheQueueIsFull) {
  Receiver rx({200}, 300ms);
  WebhookOptions o = test_options();
  o.queue_capacity = 2;
  auto sender = WebhookSender::create(o);
  ASSERT_TRUE(sender.ok());
  auto d = [&] { return make_v2_delivery(rx.url(), "q", json{{"type", "prompt.complete"}}); };
  EXPECT_TRUE((*sender)->enqueue(d()).ok());
  EXPECT_TRUE((*sender)->enqueue(d()).ok());
  Status full = (*sender)->enqueue(d());
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ((*sender)->stats().rejected, 1u);
  ASSERT_TRUE((*sender)->flush(10s));
  EXPECT_EQ(rx.requests().size(), 2u);
  EXPECT_TRUE((*sender)->enqueue(d()).ok());  // room again
  ASSERT_TRUE((*sender)->flush(10s));
}

TEST(WebhookSender, FlushWaitsForPendingAndTimesOut) {
  Receiver rx({200}, 400ms);
  auto sender = WebhookSender::create(test_options());
  ASSERT_TRUE(sender.ok());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE((*sender)
                    ->enqueue(make_v2_delivery(rx.url(), "f" + std::to_string(i), json::object()))
                    .ok());
  EXPECT_FALSE((*sender)->flush(50ms));  // 3 × 400 ms cannot finish in 50 ms
  EXPECT_TRUE((*sender)->flush(10s));
  EXPECT_EQ((*sender)->stats().delivered, 3u);
  EXPECT_EQ(rx.requests().size(), 3u);
}

TEST(WebhookSender, FlushSkipsRetryDelaysAndShutdownDropsTheRest) {
  Receiver rx({500, 200});
  WebhookOptions o = test_options();
  o.base_delay = 60s;  // without flush the retry would wait a minute
  auto sender = WebhookSender::create(o);
  ASSERT_TRUE(sender.ok());
  ASSERT_TRUE((*sender)->enqueue(make_v2_delivery(rx.url(), "s", json::object())).ok());
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE((*sender)->flush(10s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ((*sender)->stats().delivered, 1u);

  // Destroying with a pending retry drops it (logged) and returns promptly.
  Receiver down({500});
  std::atomic<int> dropped{0};
  o.log = [&](WebhookLogLevel, std::string_view msg, const json&) {
    if (msg.find("dropped at shutdown") != std::string_view::npos) ++dropped;
  };
  auto s2 = WebhookSender::create(o);
  ASSERT_TRUE(s2.ok());
  ASSERT_TRUE((*s2)->enqueue(make_v2_delivery(down.url(), "t", json::object())).ok());
  // Wait until the first attempt is over (counted); its retry then waits 60 s.
  for (int i = 0; i < 1000 && (*s2)->stats().attempts < 1; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ((*s2)->stats().attempts, 1u);
  start = std::chrono::steady_clock::now();
  s2->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(dropped.load(), 1);
}

}  // namespace
}  // namespace sd35::media
