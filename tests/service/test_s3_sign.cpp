// The S3 SigV4 signer (src/service/media/s3_sign.h) against the examples published in the S3
// API documentation ("Authenticating Requests: Using the Authorization Header", example
// credentials AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, 2013-05-24,
// bucket examplebucket, us-east-1), and the PUT requests built for uploads.
#include <gtest/gtest.h>

#include <chrono>

#include "service/media/s3_sign.h"

namespace sd35::media {
namespace {

const AwsCredentials kExample{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string header(const HttpPost& r, const std::string& name) {
  for (const auto& h : r.headers)
    if (h.name == name) return h.value;
  return "<missing>";
}

TEST(S3Sign, Sha256OfEmptyAndDocBody) {
  EXPECT_EQ(sha256_hex(""), kEmptySha);
  EXPECT_EQ(sha256_hex("Welcome to Amazon S3."),
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
}

// The documentation's "GET Object" example (a Range header, empty payload).
TEST(S3Sign, AwsDocGetObjectExample) {
  SigV4Input in;
  in.method = "GET";
  in.canonical_uri = "/test.txt";
  in.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                {"Range", "bytes=0-9"},
                {"x-amz-content-sha256", kEmptySha},
                {"x-amz-date", "20130524T000000Z"}};
  in.payload_sha256 = kEmptySha;
  in.amz_date = "20130524T000000Z";
  in.region = "us-east-1";
  const SigV4Output out = sigv4_sign(in, kExample);
  EXPECT_EQ(out.signed_headers, "host;range;x-amz-content-sha256;x-amz-date");
  EXPECT_EQ(out.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:" + std::string(kEmptySha) +
                "\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n" +
                kEmptySha);
  EXPECT_EQ(out.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(out.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

// The "PUT Object" example: a key with '$' (encoded), a body hash, headers given out of order.
TEST(S3Sign, AwsDocPutObjectExample) {
  const std::string body_sha = sha256_hex("Welcome to Amazon S3.");
  SigV4Input in;
  in.method = "PUT";
  in.canonical_uri = "/" + s3_uri_encode("test$file.text", true);
  in.headers = {{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                {"x-amz-date", "20130524T000000Z"},
                {"Host", "  examplebucket.s3.amazonaws.com "},  // values are trimmed
                {"x-amz-content-sha256", body_sha}};
  in.payload_sha256 = body_sha;
  in.amz_date = "20130524T000000Z";
  in.region = "us-east-1";
  const SigV4Output out = sigv4_sign(in, kExample);
  EXPECT_EQ(out.canonical_request,
            "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"
            "host:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:" + body_sha +
                "\nx-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n" + body_sha);
  EXPECT_EQ(out.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  // A different secret gives a different signature (the test above can fail).
  AwsCredentials wrong = kExample;
  wrong.secret_access_key[0] = 'X';
  EXPECT_NE(sigv4_sign(in, wrong).signature, out.signature);
}

TEST(S3Sign, UriEncoding) {
  EXPECT_EQ(s3_uri_encode("a b+c/d~e_f.g-h", true), "a%20b%2Bc/d~e_f.g-h");
  EXPECT_EQ(s3_uri_encode("a/b", false), "a%2Fb");
  EXPECT_EQ(s3_uri_encode("\xc3\xa9=&?#%", false), "%C3%A9%3D%26%3F%23%25");
}

TEST(S3Sign, AmzDate) {
  // 2013-05-24T00:00:00Z
  const auto t = std::chrono::system_clock::time_point(std::chrono::seconds(1369353600));
  EXPECT_EQ(amz_date(t), "20130524T000000Z");
}

TEST(S3Sign, PutObjectOnACustomEndpoint) {
  S3Config c;
  c.region = "us-east-1";
  c.endpoint = "http://127.0.0.1:9000/";
  c.credentials = {"AKID", "secret", "token-1"};
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1369353600));
  auto put = s3_put_object(c, "bucket", "out/a b$.png", "PNGDATA", "image/png", now);
  ASSERT_TRUE(put.ok()) << put.status().to_string();
  EXPECT_EQ(put->url, "http://127.0.0.1:9000/bucket/out/a%20b%24.png");
  EXPECT_TRUE(put->path_as_is);
  EXPECT_EQ(put->body, "PNGDATA");
  EXPECT_EQ(header(*put, "Host"), "127.0.0.1:9000");
  EXPECT_EQ(header(*put, "Content-Type"), "image/png");
  EXPECT_EQ(header(*put, "x-amz-content-sha256"), sha256_hex("PNGDATA"));
  EXPECT_EQ(header(*put, "x-amz-date"), "20130524T000000Z");
  EXPECT_EQ(header(*put, "x-amz-security-token"), "token-1");
  // The Authorization header is the signature of exactly the headers sent.
  SigV4Input in;
  in.method = "PUT";
  in.canonical_uri = "/bucket/out/a%20b%24.png";
  for (const auto& h : put->headers)
    if (h.name != "Authorization") in.headers.push_back(h);
  in.payload_sha256 = sha256_hex("PNGDATA");
  in.amz_date = "20130524T000000Z";
  in.region = "us-east-1";
  const SigV4Output expect = sigv4_sign(in, c.credentials);
  EXPECT_EQ(header(*put, "Authorization"), expect.authorization);
  EXPECT_NE(expect.signed_headers.find("x-amz-security-token"), std::string::npos);
}

TEST(S3Sign, PutObjectOnAwsAndBadEndpoints) {
  S3Config c;
  c.region = "eu-west-1";
  c.credentials = {"AKID", "secret", ""};
  auto put = s3_put_object(c, "b", "k.png", "", "image/png", std::chrono::system_clock::now());
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->url, "https://s3.eu-west-1.amazonaws.com/b/k.png");
  EXPECT_EQ(header(*put, "Host"), "s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(header(*put, "x-amz-security-token"), "<missing>");
  c.endpoint = "ftp://example.com";
  EXPECT_FALSE(s3_put_object(c, "b", "k", "", "image/png", std::chrono::system_clock::now()).ok());
  c.endpoint = "not a url";
  EXPECT_FALSE(s3_put_object(c, "b", "k", "", "image/png", std::chrono::system_clock::now()).ok());
}

}  // namespace
}  // namespace sd35::media
