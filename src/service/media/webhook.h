// Webhook delivery: a WebhookSender owns one delivery thread and a bounded queue, so that
// slow or dead receivers never hold up inference or request threads (comfyui-api's webhook
// failures crashed or stalled it: contract §20, issues #103, #186).
//
// Semantics
// * enqueue() never blocks on the network: it checks the URL's syntax (http/https, a host)
//   and queues. DNS resolution and the address policy (http_client.h) run on the delivery
//   thread, before every attempt.
// * Queue full → the NEW delivery is rejected (kResourceExhausted) and an error is logged.
//   Rejecting rather than dropping the oldest keeps every accepted delivery's promise and
//   tells the caller synchronously, with its request context, what was lost. Capacity counts
//   every unfinished delivery: queued, in flight, and waiting for a retry.
// * Attempts: up to `max_attempts` (PROMPT_WEBHOOK_RETRIES, default 3 as in comfyui-api),
//   a 2xx reply is success. Between attempts the delay grows exponentially
//   (base_delay · 2^(n−1), capped at max_delay). A delivery waiting for its retry does not
//   block the others. Refused URLs (policy) fail at once, without retries.
// * Standard Webhooks (webhook_v2): each attempt carries webhook-id (the same for all attempts,
//   receivers dedupe on it), webhook-timestamp (unix seconds of that attempt, so verifiers'
//   5-minute tolerance holds for late retries) and webhook-signature "v1,<base64 HMAC-SHA256 of
//   id.timestamp.body>". The body bytes are sent exactly as given.
// * flush(timeout) waits until nothing is pending; while flushing, retry delays are skipped so
//   the remaining attempts fit in a shutdown budget. The destructor stops the thread: pending
//   deliveries are dropped with an error log, an in-flight request is aborted.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <thread>

#include "sd35/status.h"
#include "service/media/http_client.h"

namespace sd35::media {

// Standard Webhooks key from WEBHOOK_SECRET: an optional "whsec_" prefix is stripped (the form
// svix/standardwebhooks dashboards hand out), the rest is base64 (base64.h rules). comfyui-api
// does not strip the prefix; with it, its lenient decoder signed with a garbage key that no
// verifier accepts, so stripping only fixes configurations that never worked.
Result<std::string> decode_webhook_secret(std::string_view secret);

// "v1,<base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))>".
std::string sign_standard_webhook(std::string_view key, std::string_view webhook_id,
                                  int64_t timestamp, std::string_view body);

enum class WebhookLogLevel { kDebug, kInfo, kWarn, kError };
// Receives the sender's log lines; the server forwards them to its JSON logger. `fields`
// carries url, webhook_id, event, attempt, status, error as they apply.
using WebhookLogFn =
    std::function<void(WebhookLogLevel, std::string_view msg, const nlohmann::json& fields)>;

struct WebhookOptions {
  int max_attempts = 3;                        // PROMPT_WEBHOOK_RETRIES (≥ 1)
  std::chrono::milliseconds base_delay{1000};  // first retry delay
  std::chrono::milliseconds max_delay{60000};
  size_t queue_capacity = 1024;  // unfinished deliveries
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{15000};
  NetPolicy net;       // allow_private_addresses for tests
  std::string secret;  // WEBHOOK_SECRET as configured ("" = empty key)
  WebhookLogFn log;    // may be empty (no logging)
};

struct WebhookDelivery {
  std::string url;
  std::string body;        // JSON text, sent byte for byte
  bool standard = false;   // Standard Webhooks headers and signature (webhook_v2)
  std::string webhook_id;  // webhook-id header (the request id); required when standard
  std::string event;       // for logs only ("prompt.complete", "output.complete", …)
  std::string request_id;  // for logs only: the X-Request-ID of the HTTP request behind it
};

struct WebhookStats {
  uint64_t delivered = 0;  // got a 2xx
  uint64_t failed = 0;     // attempts exhausted, refused URL, or dropped at shutdown
  uint64_t rejected = 0;   // enqueue refused: queue full or stopped
  uint64_t attempts = 0;   // HTTP attempts made
  size_t pending = 0;      // unfinished now
};

class WebhookSender {
 public:
  // Fails on a bad secret (not base64) or bad options.
  static Result<std::unique_ptr<WebhookSender>> create(WebhookOptions options);
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Queues a delivery. Errors: bad URL syntax/scheme or missing webhook_id (kInvalidArgument),
  // queue full (kResourceExhausted), after stop (kCancelled). Never blocks on I/O.
  Status enqueue(WebhookDelivery delivery);

  // Waits until every accepted delivery finished (delivered or failed). False on timeout.
  bool flush(std::chrono::milliseconds timeout);

  WebhookStats stats() const;

 private:
  struct Item {
    WebhookDelivery d;
    int attempt = 0;  // attempts made so far
    std::chrono::steady_clock::time_point due;
  };

  explicit WebhookSender(WebhookOptions options, std::string key);
  void run();
  bool attempt(Item& item);  // one HTTP attempt; true when finished (delivered or permanent)
  void log(WebhookLogLevel level, std::string_view msg, const nlohmann::json& fields) const;

  const WebhookOptions options_;
  const std::string key_;
  mutable std::mutex mu_;
  std::condition_variable wake_;  // delivery thread: new item, flush, stop
  std::condition_variable idle_;  // flush(): pending dropped to 0
  std::deque<Item> queue_;        // not in flight; ordered by arrival, picked by due time
  size_t in_flight_ = 0;
  int flushing_ = 0;  // flush() callers waiting (retry delays skipped)
  bool stop_ = false;
  std::atomic<bool> abort_{false};  // aborts an in-flight transfer at destruction
  WebhookStats stats_;
  std::thread thread_;
};

}  // namespace sd35::media
