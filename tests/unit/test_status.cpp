#include <gtest/gtest.h>

#include "sd35/status.h"

namespace sd35 {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("not positive: " + std::to_string(v));
  return v;
}

Result<int> doubled(int v) {
  SD35_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

Status check_both(int a, int b) {
  SD35_RETURN_IF_ERROR(parse_positive(a).status());
  SD35_RETURN_IF_ERROR(parse_positive(b).status());
  return ok_status();
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(ok_status().ok());
  Status s = not_found("tensor x");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.to_string(), "not_found: tensor x");
  EXPECT_EQ(s.with_context("loading a.safetensors: ").message(), "loading a.safetensors: tensor x");
  EXPECT_EQ(ok_status().with_context("ignored").to_string(), "ok");
}

TEST(Status, ResultPropagates) {
  auto good = doubled(4);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 8);
  auto bad = doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "not positive: -1");
  EXPECT_TRUE(check_both(1, 2).ok());
  EXPECT_EQ(check_both(1, 0).message(), "not positive: 0");
}

}  // namespace
}  // namespace sd35
