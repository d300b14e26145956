#include "service/media/webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "service/media/base64.h"

namespace sd35::media {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

Result<std::string> decode_webhook_secret(std::string_view secret) {
  if (secret.substr(0, 6) == "whsec_") secret.remove_prefix(6);
  if (secret.empty()) return std::string();
  auto key = base64_decode(secret);
  if (!key.ok()) return key.status().with_context("WEBHOOK_SECRET is not valid base64: ");
  return key;
}

std::string sign_standard_webhook(std::string_view key, std::string_view webhook_id,
                                  int64_t timestamp, std::string_view body) {
  std::string content;
  content.reserve(webhook_id.size() + body.size() + 24);
  content.append(webhook_id).append(".").append(std::to_string(timestamp)).append(".");
  content.append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // A non-null pointer even for an empty key: some OpenSSL 3.0 builds reject HMAC(NULL, 0).
  static const unsigned char kEmpty[1] = {0};
  const void* k = key.empty() ? static_cast<const void*>(kEmpty) : key.data();
  HMAC(EVP_sha256(), k, int(key.size()), reinterpret_cast<const unsigned char*>(content.data()),
       content.size(), mac, &len);
  return "v1," + base64_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

Result<std::unique_ptr<WebhookSender>> WebhookSender::create(WebhookOptions options) {
  if (options.max_attempts < 1)
    return invalid_argument("webhook attempts (PROMPT_WEBHOOK_RETRIES) must be at least 1, got " +
                            std::to_string(options.max_attempts));
  if (options.queue_capacity < 1) return invalid_argument("webhook queue capacity must be >= 1");
  if (options.base_delay.count() < 0 || options.max_delay.count() < 0)
    return invalid_argument("webhook retry delays must not be negative");
  SD35_ASSIGN_OR_RETURN(std::string key, decode_webhook_secret(options.secret));
  return std::unique_ptr<WebhookSender>(new WebhookSender(std::move(options), std::move(key)));
}

WebhookSender::WebhookSender(WebhookOptions options, std::string key)
    : options_(std::move(options)), key_(std::move(key)) {
  if (key_.empty())
    log(WebhookLogLevel::kWarn,
        "WEBHOOK_SECRET is not set: webhook_v2 deliveries are signed with an empty key", nullptr);
  thread_ = std::thread([this] { run(); });
}

WebhookSender::~WebhookSender() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  abort_ = true;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WebhookSender::log(WebhookLogLevel level, std::string_view msg, const json& fields) const {
  if (options_.log) options_.log(level, msg, fields);
}

Status WebhookSender::enqueue(WebhookDelivery d) {
  // Syntax only: DNS may block, and it runs again before each attempt anyway.
  SD35_RETURN_IF_ERROR(check_url(d.url, options_.net, /*resolve=*/false).with_context("webhook: "));
  if (d.standard && d.webhook_id.empty())
    return invalid_argument("webhook: a Standard Webhooks delivery needs a webhook-id");
  std::unique_lock<std::mutex> lk(mu_);
  if (stop_) {
    ++stats_.rejected;
    return cancelled("webhook sender is stopped");
  }
  if (queue_.size() + in_flight_ >= options_.queue_capacity) {
    ++stats_.rejected;
    lk.unlock();  // the log callback runs without our lock (it may call stats())
    json fields = {{"url", d.url},
                   {"webhook_id", d.webhook_id},
                   {"event", d.event},
                   {"capacity", options_.queue_capacity}};
    if (!d.request_id.empty()) fields["request_id"] = d.request_id;
    log(WebhookLogLevel::kError, "webhook queue full, delivery rejected", fields);
    return resource_exhausted("webhook queue is full (" + std::to_string(options_.queue_capacity) +
                              " pending deliveries)");
  }
  queue_.push_back(Item{std::move(d), 0, Clock::now()});
  wake_.notify_all();
  return ok_status();
}

bool WebhookSender::flush(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  ++flushing_;
  wake_.notify_all();  // a delivery waiting for its retry delay goes now
  bool done = idle_.wait_for(lk, timeout, [&] { return queue_.empty() && in_flight_ == 0; });
  --flushing_;
  return done;
}

WebhookStats WebhookSender::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  WebhookStats s = stats_;
  s.pending = queue_.size() + in_flight_;
  return s;
}

void WebhookSender::run() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      wake_.wait(lk);
      continue;
    }
    auto next = std::min_element(queue_.begin(), queue_.end(),
                                 [](const Item& a, const Item& b) { return a.due < b.due; });
    if (flushing_ == 0 && next->due > Clock::now()) {
      wake_.wait_until(lk, next->due);
      continue;  // re-evaluate: stop, flush or a new item may have come
    }
    Item item = std::move(*next);
    queue_.erase(next);
    ++in_flight_;
    lk.unlock();
    bool finished = attempt(item);
    lk.lock();
    --in_flight_;
    if (!finished) {
      // Exponential backoff: base · 2^(attempt−1), capped (the shift is bounded first).
      int shift = std::min(item.attempt - 1, 20);
      auto delay = std::min(options_.base_delay * (int64_t(1) << shift), options_.max_delay);
      item.due = Clock::now() + delay;
      queue_.push_back(std::move(item));
    }
    if (queue_.empty() && in_flight_ == 0) idle_.notify_all();
  }
  // Stopped: whatever is left will not be delivered; say so for each (outside the lock).
  std::deque<Item> dropped;
  dropped.swap(queue_);
  stats_.failed += dropped.size();
  idle_.notify_all();
  lk.unlock();
  for (const Item& item : dropped) {
    json fields = {{"url", item.d.url},
                   {"webhook_id", item.d.webhook_id},
                   {"event", item.d.event},
                   {"attempts", item.attempt}};
    if (!item.d.request_id.empty()) fields["request_id"] = item.d.request_id;
    log(WebhookLogLevel::kError, "webhook dropped at shutdown", fields);
  }
}

bool WebhookSender::attempt(Item& item) {
  const WebhookDelivery& d = item.d;
  ++item.attempt;
  HttpPost req;
  req.url = d.url;
  req.body = d.body;
  req.connect_timeout = options_.connect_timeout;
  req.timeout = options_.request_timeout;
  req.abort = &abort_;
  req.headers.push_back({"Content-Type", "application/json"});
  if (d.standard) {
    int64_t ts = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    req.headers.push_back({"webhook-id", d.webhook_id});
    req.headers.push_back({"webhook-timestamp", std::to_string(ts)});
    req.headers.push_back(
        {"webhook-signature", sign_standard_webhook(key_, d.webhook_id, ts, d.body)});
  }
  auto start = Clock::now();
  auto result = http_post(req, options_.net);
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  json fields = {{"url", d.url},
                 {"webhook_id", d.webhook_id},
                 {"event", d.event},
                 {"attempt", item.attempt},
                 {"max_attempts", options_.max_attempts},
                 {"duration_ms", ms}};
  if (!d.request_id.empty()) fields["request_id"] = d.request_id;
  std::string error;
  bool permanent = false;
  if (result.ok()) {
    fields["status"] = result->status;
    if (result->status >= 200 && result->status < 300) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        ++stats_.attempts;
        ++stats_.delivered;
      }
      log(WebhookLogLevel::kDebug, "webhook delivered", fields);
      return true;
    }
    error = "HTTP " + std::to_string(result->status);
  } else {
    error = result.status().message();
    // A refused or malformed URL will not get better; an abort means we are shutting down.
    permanent = result.status().code() == StatusCode::kInvalidArgument ||
                result.status().code() == StatusCode::kCancelled;
  }
  fields["error"] = error;
  bool last = permanent || item.attempt >= options_.max_attempts;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.attempts;
    if (last) ++stats_.failed;
  }
  if (last)
    log(WebhookLogLevel::kError, permanent ? "webhook refused" : "webhook failed, giving up",
        fields);
  else
    log(WebhookLogLevel::kWarn, "webhook attempt failed, will retry", fields);
  return last;
}

}  // namespace sd35::media
