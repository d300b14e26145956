// server/outputs.h without sockets: request options (webhook URLs, convert_output, the echo),
// image encoding and file names, and which webhook deliveries a finished or failed job makes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/outputs.h"
#include "service/media/base64.h"

namespace sd35::server {
namespace {

using nlohmann::json;

TEST(RequestOptions, EchoesValidatedFieldsWithDefaults) {
  media::NetPolicy policy;
  RequestOptions o;
  json echo = json::object();
  json body = {{"webhook_v2", "https://example.com/hook"},
               {"webhook", ""},
               {"convert_output", {{"format", "jpg"}}},
               {"unknown", 1}};
  auto e = parse_request_options(body, policy, &o, &echo);
  ASSERT_FALSE(e) << e->message;
  EXPECT_EQ(o.webhook_v2, "https://example.com/hook");
  EXPECT_EQ(o.webhook, "");  // "" means none, as comfyui-api's truthiness test
  EXPECT_TRUE(o.async());
  EXPECT_EQ(echo["webhook"], "");
  EXPECT_EQ(echo["convert_output"]["format"], "jpg");
  EXPECT_EQ(echo["convert_output"]["options"]["quality"], 80);
  EXPECT_FALSE(echo.contains("unknown"));
  EXPECT_EQ(o.convert.extension, "jpg");
}

TEST(RequestOptions, RefusesBadUrlsNamingTheField) {
  media::NetPolicy strict, allow;
  allow.allow_private_addresses = true;
  struct Case {
    json body;
    const char* location;
  } cases[] = {{{{"webhook", 5}}, "webhook"},
               {{{"webhook_v2", "ftp://example.com/"}}, "webhook_v2"},
               {{{"webhook_v2", "http://10.0.0.7/x"}}, "webhook_v2"},
               {{{"webhook", "http://[::1]:80/"}}, "webhook"},
               {{{"webhook_v2", "http://169.254.169.254/latest"}}, "webhook_v2"},
               {{{"convert_output", {{"format", "jpeg"}, {"options", {{"quality", 101}}}}}},
                "convert_output.options.quality"},
               {{{"convert_output", 3}}, "convert_output"}};
  for (const auto& c : cases) {
    RequestOptions o;
    json echo = json::object();
    auto e = parse_request_options(c.body, strict, &o, &echo);
    ASSERT_TRUE(e) << c.body.dump();
    EXPECT_EQ(e->location, c.location) << c.body.dump();
    EXPECT_NE(e->message.find(c.location), std::string::npos) << e->message;
  }
  // Literal private addresses pass with the flag; names are left to delivery time.
  RequestOptions o;
  json echo = json::object();
  EXPECT_FALSE(parse_request_options({{"webhook_v2", "http://127.0.0.1:9/x"}}, allow, &o, &echo));
  EXPECT_FALSE(parse_request_options({{"webhook_v2", "http://localhost:9/x"}}, strict, &o, &echo));
}

TEST(EncodeOutputs, NumbersFilesPerPrefixAndConverts) {
  auto made = Tensor::zeros({2, 8, 6, 3}, DType::kU8);
  ASSERT_TRUE(made.ok());
  for (int i = 0; i < 2 * 8 * 6 * 3; ++i) made->data_as<uint8_t>()[i] = uint8_t(i * 7);
  std::vector<workflow::SavedImage> saved = {{"9", "job_ComfyUI", *made}, {"10", "job_x", *made}};
  std::vector<std::string> warnings;
  auto png = encode_outputs(saved, media::ConvertOutput{}, "{\"graph\":1}", &warnings);
  ASSERT_TRUE(png.ok()) << png.status().to_string();
  ASSERT_EQ(png->size(), 4u);
  EXPECT_EQ((*png)[0].filename, "job_ComfyUI_00001_.png");
  EXPECT_EQ((*png)[1].filename, "job_ComfyUI_00002_.png");
  EXPECT_EQ((*png)[2].filename, "job_x_00001_.png");
  const std::string& bytes = (*png)[0].data;
  EXPECT_EQ((*png)[0].content_type, "image/png");
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_NE(bytes.find("prompt"), std::string::npos);  // ComfyUI's metadata chunk

  auto c = media::parse_convert_output({{"format", "webp"}, {"options", {{"lossless", true}}}});
  ASSERT_TRUE(c.ok());
  auto webp = encode_outputs(saved, *c, "{}", &warnings);
  ASSERT_TRUE(webp.ok());
  EXPECT_EQ((*webp)[3].filename, "job_x_00002_.webp");
  EXPECT_EQ((*webp)[3].data.substr(8, 4), "WEBP");
  EXPECT_EQ((*webp)[3].content_type, "image/webp");
  EXPECT_TRUE(warnings.empty());
}

json response_with_two_images() {
  return {{"id", "j1"},
          {"prompt", {{"1", {{"class_type", "SaveImage"}}}}},
          {"images", {"QUJD", "REVG"}},
          {"filenames", {"j1_ComfyUI_00001_.png", "j1_ComfyUI_00002_.png"}},
          {"stats", {{"total_time", 5}}},
          {"webhook_v2", "https://example.com/v2"}};
}

TEST(WebhookDeliveries, LegacyPerFileAndV2OncePerJob) {
  RequestOptions o;
  o.webhook = "https://example.com/legacy";
  o.webhook_v2 = "https://example.com/v2";
  auto ds = completion_deliveries(o, response_with_two_images(), "j1", "req-7");
  ASSERT_EQ(ds.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_FALSE(ds[i].standard);
    EXPECT_EQ(ds[i].url, o.webhook);
    const json e = json::parse(ds[i].body);
    EXPECT_EQ(e["event"], "output.complete");
    EXPECT_EQ(e["filename"], response_with_two_images()["filenames"][i]);
    EXPECT_EQ(e["image"], response_with_two_images()["images"][i]);
    EXPECT_EQ(e["id"], "j1");
  }
  EXPECT_TRUE(ds[2].standard);
  EXPECT_EQ(ds[2].webhook_id, "j1");
  EXPECT_EQ(ds[2].request_id, "req-7");
  const json v2 = json::parse(ds[2].body);
  EXPECT_EQ(v2["type"], "prompt.complete");
  EXPECT_EQ(v2["filenames"].size(), 2u);
  EXPECT_EQ(v2["webhook_v2"], "https://example.com/v2");
}

TEST(WebhookDeliveries, FailureGoesToV2WhenGivenElseLegacy) {
  RequestOptions both;
  both.webhook = "https://example.com/legacy";
  both.webhook_v2 = "https://example.com/v2";
  auto ds = failure_deliveries(both, "j2", json::object(), "Prompt execution interrupted", "r");
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_TRUE(ds[0].standard);
  EXPECT_EQ(json::parse(ds[0].body)["type"], "prompt.failed");
  EXPECT_EQ(json::parse(ds[0].body)["error"], "Prompt execution interrupted");
  RequestOptions legacy;
  legacy.webhook = "https://example.com/legacy";
  ds = failure_deliveries(legacy, "j2", json::object(), "boom", "r");
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_FALSE(ds[0].standard);
  EXPECT_EQ(json::parse(ds[0].body)["event"], "prompt.failed");
  EXPECT_TRUE(failure_deliveries(RequestOptions{}, "j", json::object(), "x", "r").empty());
}

}  // namespace
}  // namespace sd35::server
