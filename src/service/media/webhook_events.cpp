#include "service/media/webhook_events.h"

#include <cstdio>
#include <ctime>

namespace sd35::media {

using nlohmann::json;

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  int64_t secs = ms / 1000, frac = ms % 1000;
  if (frac < 0) {  // before 1970: floor, so the fraction stays positive
    frac += 1000;
    --secs;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(frac));
  return buf;
}

json prompt_complete_event(const json& response, std::chrono::system_clock::time_point now) {
  json e = response.is_object() ? response : json::object();
  e.erase("status");  // the 202 reply's "status":"ok" is not part of the event
  e["type"] = "prompt.complete";
  e["timestamp"] = iso8601_utc(now);
  return e;
}

json prompt_failed_event(std::string_view id, const json& prompt, std::string_view error,
                         std::chrono::system_clock::time_point now) {
  return json{{"type", "prompt.failed"},
              {"timestamp", iso8601_utc(now)},
              {"id", id},
              {"prompt", prompt},
              {"error", error}};
}

json legacy_output_complete_event(std::string_view id, std::string_view filename,
                                  std::string_view image_base64, const json& prompt,
                                  const json& stats) {
  return json{{"event", "output.complete"}, {"image", image_base64}, {"id", id},
              {"filename", filename},       {"prompt", prompt},      {"stats", stats}};
}

json legacy_prompt_failed_event(std::string_view id, const json& prompt, std::string_view error) {
  return json{{"event", "prompt.failed"}, {"id", id}, {"prompt", prompt}, {"error", error}};
}

namespace {
std::string event_name(const json& e, const char* key) {
  auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

WebhookDelivery make_v2_delivery(std::string url, std::string_view request_id, const json& event) {
  WebhookDelivery d;
  d.url = std::move(url);
  // Invalid UTF-8 in echoed strings must not throw from dump(): replace it.
  d.body = event.dump(-1, ' ', false, json::error_handler_t::replace);
  d.standard = true;
  d.webhook_id = std::string(request_id);
  d.event = event_name(event, "type");
  return d;
}

WebhookDelivery make_legacy_delivery(std::string url, std::string_view request_id,
                                     const json& event) {
  WebhookDelivery d;
  d.url = std::move(url);
  d.body = event.dump(-1, ' ', false, json::error_handler_t::replace);
  d.standard = false;
  d.webhook_id = std::string(request_id);  // for logs; no header is sent
  d.event = event_name(event, "event");
  return d;
}

}  // namespace sd35::media
