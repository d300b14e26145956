// Base64 and data: URLs (src/service/media/base64.h).
#include <gtest/gtest.h>

#include <random>

#include "service/media/base64.h"

namespace sd35::media {
namespace {

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {{"", ""},
                                                          {"f", "Zg=="},
                                                          {"fo", "Zm8="},
                                                          {"foo", "Zm9v"},
                                                          {"foob", "Zm9vYg=="},
                                                          {"fooba", "Zm9vYmE="},
                                                          {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : kVectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    if (*plain == '\0') continue;  // empty input is an error for the decoder
    auto d = base64_decode(encoded);
    ASSERT_TRUE(d.ok()) << encoded << ": " << d.status().to_string();
    EXPECT_EQ(*d, plain);
  }
}

TEST(Base64, RoundTripsAllByteValuesAndLengths) {
  std::mt19937 rng(7);
  for (size_t n = 1; n < 300; ++n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    auto d = base64_decode(base64_encode(s));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, s);
  }
}

TEST(Base64, AcceptsMissingPaddingAndLineBreaks) {
  EXPECT_EQ(*base64_decode("Zg"), "f");
  EXPECT_EQ(*base64_decode("Zm8"), "fo");
  EXPECT_EQ(*base64_decode("Zm9v\r\nYmFy\n"), "foobar");
  EXPECT_EQ(*base64_decode(" Zm9v YmE= "), "fooba");
}

TEST(Base64, IgnoresUnusedTrailingBitsLikeNode) {
  // comfyui-api's test secret: 10 symbols → 7 bytes, the last symbol's low bits unused.
  auto d = base64_decode("testsecret");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->size(), 7u);
  EXPECT_EQ(d->substr(0, 6), *base64_decode("testsecr"));
  // "et" and "eg" differ only in the 4 unused bits: same byte.
  EXPECT_EQ(*d, *base64_decode("testsecreg=="));
}

TEST(Base64, RejectsBadInputWithClearMessages) {
  struct Case {
    const char* text;
    const char* needle;
  };
  const Case kCases[] = {
      {"", "no data"},
      {"   ", "no data"},
      {"Zm9v!", "'!' at offset 4"},
      {"Zm9v-_", "URL-safe"},
      {"Z", "not a valid length"},
      {"Zm9vY", "not a valid length"},
      {"Zg=", "wrong '=' padding"},
      {"Zm9v=", "wrong '=' padding"},
      {"Zg===", "too much"},
      {"Zg==Zg==", "data after"},
      {"Z=g=", "data after"},
      {"data:image/png;base64,AAAA", "data: URL prefix"},
      {"Zm9v\x01", "0x01"},
  };
  for (const auto& c : kCases) {
    auto d = base64_decode(c.text);
    ASSERT_FALSE(d.ok()) << c.text;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(d.status().message().find(c.needle), std::string::npos)
        << c.text << " → " << d.status().message();
  }
}

TEST(Base64, EnforcesTheDecodedSizeLimitBeforeAllocating) {
  auto d = base64_decode("Zm9vYmFy", 5);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(base64_decode("Zm9vYmFy", 6).ok());
}

TEST(DataUrl, ParsesBase64AndPercentEncodedPayloads) {
  ASSERT_TRUE(is_data_url("DATA:image/png;base64,AA=="));
  EXPECT_FALSE(is_data_url("https://x/y.png"));
  auto a = parse_data_url("data:image/PNG;base64,Zm9vYmFy");
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->mime_type, "image/png");
  EXPECT_EQ(a->data, "foobar");
  auto b = parse_data_url("data:image/jpeg;name=x.jpg;base64,Zm9v");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->data, "foo");
  auto c = parse_data_url("data:,a%20b%2Cc");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->mime_type, "text/plain");
  EXPECT_EQ(c->data, "a b,c");
}

TEST(DataUrl, RejectsMalformedUrls) {
  EXPECT_EQ(parse_data_url("data:image/png;base64").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_data_url("data:image/png;base64,Zm9v!").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_NE(parse_data_url("data:image/png;base64,Zm9v!").status().message().find("data: URL"),
            std::string::npos);
  EXPECT_FALSE(parse_data_url("data:,%4").ok());
  EXPECT_FALSE(parse_data_url("data:,%zz").ok());
  EXPECT_FALSE(parse_data_url("data:png;base64,AA==").ok());  // no '/' in the media type
  EXPECT_FALSE(parse_data_url("data:image/png;base64;x=y,AA==").ok());
  EXPECT_FALSE(parse_data_url("http://x").ok());
  EXPECT_EQ(parse_data_url("data:image/png;base64,Zm9vYmFy", 3).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(parse_data_url("data:,abcdef", 3).status().code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace sd35::media
