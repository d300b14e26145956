#include "server/outputs.h"

#include <chrono>
#include <cstdio>
#include <map>

#include "io/png.h"
#include "service/media/base64.h"
#include "service/media/webhook_events.h"

namespace sd35::server {

using nlohmann::json;

namespace {

// A webhook URL field. null and "" mean "no webhook" (comfyui-api tests the value's
// truthiness); anything else must be a deliverable http(s) URL.
std::optional<FieldError> parse_url_field(const json& body, const std::string& key,
                                          const media::NetPolicy& policy, std::string* out,
                                          json* echo) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string())
    return FieldError{key + " must be a URL string (http or https), got " +
                          std::string(it->type_name()),
                      key};
  const std::string url = it->get<std::string>();
  if (url.size() > 8192)
    return FieldError{key + " is longer than 8192 characters", key};
  (*echo)[key] = url;
  if (url.empty()) return std::nullopt;
  Status st = media::check_url_literal(url, policy);
  if (!st.ok()) {
    std::string message = key + ": " + st.message();
    // The operator can allow in-cluster receivers; say how (only the private-address case).
    if (st.message().find("loopback/private") != std::string::npos)
      message += " (the server allows them with ALLOW_PRIVATE_WEBHOOKS=true)";
    return FieldError{message, key};
  }
  *out = url;
  return std::nullopt;
}

}  // namespace

std::optional<FieldError> parse_request_options(const json& body, const media::NetPolicy& policy,
                                                RequestOptions* out, json* echo) {
  if (auto e = parse_url_field(body, "webhook", policy, &out->webhook, echo)) return e;
  if (auto e = parse_url_field(body, "webhook_v2", policy, &out->webhook_v2, echo)) return e;
  auto it = body.find("convert_output");
  if (it != body.end() && !it->is_null()) {
    auto c = media::parse_convert_output(*it);
    if (!c.ok()) {
      // The parser's messages start with the field path: "convert_output.options.quality: …".
      const std::string& m = c.status().message();
      const size_t colon = m.find(": ");
      return FieldError{m, colon == std::string::npos ? "convert_output" : m.substr(0, colon)};
    }
    out->convert = std::move(*c);
    (*echo)["convert_output"] = media::convert_output_to_json(out->convert);
  }
  return std::nullopt;
}

Result<std::vector<EncodedImage>> encode_outputs(const std::vector<workflow::SavedImage>& saved,
                                                 const media::ConvertOutput& convert,
                                                 const std::string& prompt_text,
                                                 std::vector<std::string>* warnings) {
  std::vector<EncodedImage> out;
  std::map<std::string, int> counters;  // SaveImage numbers files per prefix
  for (const auto& s : saved) {
    // PreviewImage results live in ComfyUI's temp folder, which comfyui-api never reads.
    if (s.preview) continue;
    for (int64_t b = 0; b < s.images.size(0); ++b) {
      const Tensor image = s.images.select(0, b);
      char num[16];
      std::snprintf(num, sizeof num, "_%05d_", ++counters[s.filename_prefix]);
      const std::string png_name = s.filename_prefix + num + ".png";
      if (convert.converts()) {
        auto view = media::image_view_of(image);
        Status why = view.status();
        if (view.ok()) {
          auto encoded = media::encode_image(*view, convert);
          if (encoded.ok()) {
            out.push_back({std::move(*encoded), media::output_filename(png_name, convert),
                           std::string(media::mime_type(convert.format))});
            continue;
          }
          why = encoded.status();
        }
        warnings->push_back("convert_output: " + png_name + " could not be converted to " +
                            convert.extension + " (" + why.message() + "); sent as PNG");
      }
      auto png = encode_png(image, {{"prompt", prompt_text}});
      if (!png.ok()) return png.status();
      out.push_back({std::move(*png), png_name, "image/png"});
    }
  }
  return out;
}

std::vector<media::WebhookDelivery> completion_deliveries(const RequestOptions& options,
                                                          const json& response,
                                                          const std::string& id,
                                                          const std::string& request_id) {
  std::vector<media::WebhookDelivery> out;
  if (!options.webhook.empty()) {
    const json& images = response.at("images");
    const json& filenames = response.at("filenames");
    for (size_t i = 0; i < images.size() && i < filenames.size(); ++i) {
      auto d = media::make_legacy_delivery(
          options.webhook, id,
          media::legacy_output_complete_event(id, filenames[i].get<std::string>(),
                                              images[i].get<std::string>(), response.at("prompt"),
                                              response.at("stats")));
      d.request_id = request_id;
      out.push_back(std::move(d));
    }
  }
  if (!options.webhook_v2.empty()) {
    auto d = media::make_v2_delivery(
        options.webhook_v2, id,
        media::prompt_complete_event(response, std::chrono::system_clock::now()));
    d.request_id = request_id;
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<media::WebhookDelivery> failure_deliveries(const RequestOptions& options,
                                                       const std::string& id, const json& prompt,
                                                       const std::string& error,
                                                       const std::string& request_id) {
  std::vector<media::WebhookDelivery> out;
  if (!options.webhook_v2.empty()) {
    out.push_back(media::make_v2_delivery(
        options.webhook_v2, id,
        media::prompt_failed_event(id, prompt, error, std::chrono::system_clock::now())));
  } else if (!options.webhook.empty()) {
    out.push_back(media::make_legacy_delivery(
        options.webhook, id, media::legacy_prompt_failed_event(id, prompt, error)));
  }
  for (auto& d : out) d.request_id = request_id;
  return out;
}

}  // namespace sd35::server
