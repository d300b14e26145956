// The upload blocks of a request (server/uploads.h) without sockets: parsing, refusals, echoes,
// destination URLs, and the start-up settings.
#include <gtest/gtest.h>

#include "server/uploads.h"

namespace sd35::server {
namespace {

using nlohmann::json;

UploadSettings configured() {
  ServerConfig c;
  c.allow_private_uploads = true;
  c.aws_region = "us-east-1";
  c.aws_access_key_id = "AKID";
  c.aws_secret_access_key = "secret";
  std::string notes;
  auto s = make_upload_settings(c, &notes);
  EXPECT_TRUE(s.ok());
  EXPECT_TRUE(notes.empty());
  return s.ok() ? *s : UploadSettings{};
}

std::optional<FieldError> parse(const json& body, const UploadSettings& s, RequestOptions* o,
                                json* echo) {
  return parse_upload_options(body, s, o, echo);
}

TEST(UploadOptions, HttpUploadWithDefaultsAndEcho) {
  RequestOptions o;
  json echo = json::object();
  EXPECT_FALSE(parse({{"http_upload", {{"url_prefix", "http://127.0.0.1:8/up/"}}}}, configured(),
                     &o, &echo));
  EXPECT_EQ(o.upload.kind, UploadTarget::Kind::kHttp);
  EXPECT_FALSE(o.async());
  EXPECT_EQ(echo["http_upload"], json({{"url_prefix", "http://127.0.0.1:8/up/"}, {"async", false}}));
  const std::vector<EncodedImage> files = {{"x", "id_ComfyUI_00001_.png", "image/png"},
                                           {"y", "a b/c?.png", "image/png"}};
  EXPECT_EQ(upload_urls(o.upload, files),
            (std::vector<std::string>{"http://127.0.0.1:8/up/id_ComfyUI_00001_.png",
                                      "http://127.0.0.1:8/up/a%20b%2Fc%3F.png"}));
  RequestOptions a;
  EXPECT_FALSE(parse({{"http_upload", {{"url_prefix", "https://x.example"}, {"async", true}}}},
                     configured(), &a, &echo));
  EXPECT_TRUE(a.async());
  EXPECT_FALSE(a.has_webhook());
}

TEST(UploadOptions, S3UrlsAndConfiguration) {
  RequestOptions o;
  json echo = json::object();
  EXPECT_FALSE(parse({{"s3", {{"bucket", "b"}, {"prefix", "out/"}}}}, configured(), &o, &echo));
  EXPECT_EQ(o.upload.kind, UploadTarget::Kind::kS3);
  EXPECT_EQ(echo["s3"], json({{"bucket", "b"}, {"prefix", "out/"}, {"async", false}}));
  EXPECT_EQ(upload_urls(o.upload, {{"x", "id_1.png", "image/png"}}),
            std::vector<std::string>{"s3://b/out/id_1.png"});
  // Not configured: a 400 naming s3 and the variables.
  RequestOptions n;
  auto e = parse({{"s3", {{"bucket", "b"}, {"prefix", ""}}}}, UploadSettings{}, &n, &echo);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->location, "s3");
  EXPECT_NE(e->message.find("AWS_REGION"), std::string::npos);
}

TEST(UploadOptions, Refusals) {
  const UploadSettings s = configured();
  UploadSettings strict = s;
  strict.http_policy.allow_private_addresses = false;
  auto location = [](const json& body, const UploadSettings& st, RequestOptions o = {}) {
    json echo = json::object();
    auto e = parse_upload_options(body, st, &o, &echo);
    return e ? e->location : std::string("accepted");
  };
  EXPECT_EQ(location({{"hf_upload", json::object()}}, s), "hf_upload");
  EXPECT_EQ(location({{"azure_blob_upload", json::object()}}, s), "azure_blob_upload");
  EXPECT_EQ(location({{"credentials", json::array()}}, s), "credentials");
  EXPECT_EQ(location({{"http_upload", json::object()}}, s), "http_upload.url_prefix");
  EXPECT_EQ(location({{"http_upload", 3}}, s), "http_upload");
  EXPECT_EQ(location({{"http_upload", {{"url_prefix", "file:///etc"}}}}, s), "http_upload.url_prefix");
  EXPECT_EQ(location({{"http_upload", {{"url_prefix", "http://x/?a=1"}}}}, s), "http_upload.url_prefix");
  EXPECT_EQ(location({{"http_upload", {{"url_prefix", "http://10.0.0.1/"}}}}, strict),
            "http_upload.url_prefix");
  EXPECT_EQ(location({{"http_upload", {{"url_prefix", "http://x/"}, {"async", 1}}}}, s),
            "http_upload.async");
  EXPECT_EQ(location({{"s3", {{"bucket", "b"}}}}, s), "s3.prefix");
  EXPECT_EQ(location({{"s3", {{"bucket", ""}, {"prefix", ""}}}}, s), "s3.bucket");
  EXPECT_EQ(location({{"s3", {{"bucket", "b/../c"}, {"prefix", ""}}}}, s), "s3.bucket");
  EXPECT_EQ(location({{"s3", {{"bucket", "b"}, {"prefix", "a\nb"}}}}, s), "s3.prefix");
  EXPECT_EQ(location({{"s3", {{"bucket", "b"}, {"prefix", ""}}},
                      {"http_upload", {{"url_prefix", "http://x/"}}}},
                     s),
            "s3");
  RequestOptions legacy;
  legacy.webhook = "http://x/hook";
  EXPECT_EQ(location({{"http_upload", {{"url_prefix", "http://x/"}}}}, s, legacy), "webhook");
  EXPECT_EQ(location({{"http_upload", nullptr}, {"s3", nullptr}}, s), "accepted");
}

TEST(UploadSettingsTest, StartUpChecks) {
  std::string notes;
  ServerConfig c;
  c.http_auth_header_name = "X-Token";
  c.http_auth_header_value = "abc";
  auto s = make_upload_settings(c, &notes);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->http_headers.size(), 1u);
  EXPECT_FALSE(s->s3_configured);
  c.http_auth_header_name = "bad name";
  EXPECT_FALSE(make_upload_settings(c, &notes).ok());
  c.http_auth_header_name = "";  // a value without a name
  EXPECT_FALSE(make_upload_settings(c, &notes).ok());
  c.http_auth_header_name = "X-Token";
  c.http_auth_header_value = "a\r\nInjected: 1";
  EXPECT_FALSE(make_upload_settings(c, &notes).ok());
  ServerConfig d;
  d.aws_endpoint_url = "ftp://store";
  EXPECT_FALSE(make_upload_settings(d, &notes).ok());
  d.aws_endpoint_url = "http://127.0.0.1:9000";
  d.aws_region = "us-east-1";  // keys missing: disabled, with a note
  notes.clear();
  auto half = make_upload_settings(d, &notes);
  ASSERT_TRUE(half.ok());
  EXPECT_FALSE(half->s3_configured);
  EXPECT_NE(notes.find("AWS_ACCESS_KEY_ID"), std::string::npos);
}

}  // namespace
}  // namespace sd35::server
