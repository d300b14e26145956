// Webhook bodies with comfyui-api's exact field names (contract §4), and the deliveries that
// carry them. The server builds the 200-response JSON once and reuses it for prompt.complete.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "service/media/webhook.h"

namespace sd35::media {

// JavaScript's Date.toISOString() form, UTC with milliseconds: "2026-11-26T05:46:46.426Z".
std::string iso8601_utc(std::chrono::system_clock::time_point t);

// ---- webhook_v2 (Standard Webhooks) ----
// {"type":"prompt.complete","timestamp":"<ISO>", …every key of `response`} where `response` is
// the synchronous 200 body (request echo, id, prompt, images, filenames, stats).
nlohmann::json prompt_complete_event(const nlohmann::json& response,
                                     std::chrono::system_clock::time_point now);
// {"type":"prompt.failed","timestamp":"<ISO>","id","prompt","error"}.
nlohmann::json prompt_failed_event(std::string_view id, const nlohmann::json& prompt,
                                   std::string_view error,
                                   std::chrono::system_clock::time_point now);

// ---- legacy `webhook` (deprecated, unsigned) ----
// One per output file: {"event":"output.complete","image":"<base64>","id","filename","prompt",
// "stats"}.
nlohmann::json legacy_output_complete_event(std::string_view id, std::string_view filename,
                                            std::string_view image_base64,
                                            const nlohmann::json& prompt,
                                            const nlohmann::json& stats);
// {"event":"prompt.failed","id","prompt","error"}.
nlohmann::json legacy_prompt_failed_event(std::string_view id, const nlohmann::json& prompt,
                                          std::string_view error);

// Deliveries: v2 carries Standard Webhooks headers with webhook-id = the request id; legacy
// ones are plain POSTs. `event` is read from the body's "type"/"event" for logs.
WebhookDelivery make_v2_delivery(std::string url, std::string_view request_id,
                                 const nlohmann::json& event);
WebhookDelivery make_legacy_delivery(std::string url, std::string_view request_id,
                                     const nlohmann::json& event);

}  // namespace sd35::media
