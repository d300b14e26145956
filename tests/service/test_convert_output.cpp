// convert_output parsing and validation (src/service/media/convert_output.h).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "service/media/convert_output.h"

namespace sd35::media {
namespace {

using nlohmann::json;

ConvertOutput parse_ok(const json& j) {
  auto r = parse_convert_output(j);
  EXPECT_TRUE(r.ok()) << j.dump() << ": " << r.status().to_string();
  return r.ok() ? *r : ConvertOutput{};
}

std::string parse_error(const json& j) {
  auto r = parse_convert_output(j);
  EXPECT_FALSE(r.ok()) << j.dump();
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  return r.ok() ? "" : r.status().message();
}

TEST(ConvertOutput, AbsentMeansPng) {
  ConvertOutput c = parse_ok(nullptr);
  EXPECT_FALSE(c.converts());
  EXPECT_EQ(output_filename("abc_ComfyUI_00001_.png", c), "abc_ComfyUI_00001_.png");
}

TEST(ConvertOutput, JpegDefaultsMatchComfyuiApi) {
  ConvertOutput c = parse_ok({{"format", "jpeg"}});
  EXPECT_EQ(c.format, ImageFormat::kJpeg);
  EXPECT_EQ(c.jpeg.quality, 80);
  EXPECT_FALSE(c.jpeg.progressive);
  EXPECT_EQ(c.jpeg.chroma_subsampling, ChromaSubsampling::k420);
  EXPECT_TRUE(c.jpeg.optimize_coding);
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(output_filename("id_ComfyUI_00001_.png", c), "id_ComfyUI_00001_.jpeg");
  EXPECT_EQ(output_filename("dir.x/name", parse_ok({{"format", "jpg"}})), "dir.x/name.jpg");
}

TEST(ConvertOutput, JpegOptionsAreParsed) {
  ConvertOutput c = parse_ok({{"format", "jpg"},
                              {"options",
                               {{"quality", 95.0},
                                {"progressive", true},
                                {"chromaSubsampling", "4:4:4"},
                                {"optimiseCoding", false}}}});
  EXPECT_EQ(c.extension, "jpg");
  EXPECT_EQ(c.jpeg.quality, 95);
  EXPECT_TRUE(c.jpeg.progressive);
  EXPECT_EQ(c.jpeg.chroma_subsampling, ChromaSubsampling::k444);
  EXPECT_FALSE(c.jpeg.optimize_coding);
  json echo = convert_output_to_json(c);
  EXPECT_EQ(echo["options"]["chromaSubsampling"], "4:4:4");
  EXPECT_EQ(echo["options"]["quality"], 95);
}

TEST(ConvertOutput, MozjpegOnlyOptionsAreAcceptedAndReported) {
  ConvertOutput c = parse_ok({{"format", "jpeg"},
                              {"options",
                               {{"mozjpeg", true},
                                {"trellisQuantisation", true},
                                {"quantizationTable", 3},
                                {"overshootDeringing", false},
                                {"lossless", true},
                                {"bogus", 1}}}});
  EXPECT_TRUE(c.jpeg.progressive);   // sharp turns progressive on with mozjpeg
  ASSERT_EQ(c.warnings.size(), 5u);  // mozjpeg, trellis, table, lossless (webp), bogus
  std::string all;
  for (const auto& w : c.warnings) all += w + "\n";
  EXPECT_NE(all.find("convert_output.options.bogus: unknown option"), std::string::npos) << all;
  EXPECT_NE(all.find("convert_output.options.lossless: a WebP option"), std::string::npos) << all;
}

TEST(ConvertOutput, WebpOptionsAreAllHonoured) {
  ConvertOutput c = parse_ok({{"format", "webp"},
                              {"options",
                               {{"quality", 70},
                                {"alphaQuality", 50},
                                {"lossless", false},
                                {"nearLossless", true},
                                {"smartSubsample", true},
                                {"smartDeblock", true},
                                {"preset", "drawing"},
                                {"effort", 6}}}});
  EXPECT_EQ(c.format, ImageFormat::kWebp);
  EXPECT_EQ(c.webp.quality, 70);
  EXPECT_EQ(c.webp.alpha_quality, 50);
  EXPECT_TRUE(c.webp.near_lossless);
  EXPECT_TRUE(c.webp.smart_subsample);
  EXPECT_TRUE(c.webp.smart_deblock);
  EXPECT_EQ(c.webp.preset, WebpPreset::kDrawing);
  EXPECT_EQ(c.webp.effort, 6);
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(parse_ok({{"format", "webp"}, {"options", {{"reductionEffort", 2}}}}).webp.effort, 2);
  EXPECT_EQ(parse_ok({{"format", "webp"}, {"options", {{"loop", 0}}}}).warnings.size(), 1u);
}

TEST(ConvertOutput, ValidationErrorsNameTheField) {
  EXPECT_NE(parse_error("jpeg").find("convert_output: must be an object"), std::string::npos);
  EXPECT_NE(parse_error(json::object()).find("convert_output.format: required"), std::string::npos);
  EXPECT_NE(parse_error({{"format", "gif"}}).find("convert_output.format"), std::string::npos);
  EXPECT_NE(parse_error({{"format", 1}}).find("convert_output.format"), std::string::npos);
  EXPECT_NE(parse_error({{"format", "jpeg"}, {"options", 5}}).find("convert_output.options:"),
            std::string::npos);
  const std::pair<json, const char*> kBad[] = {
      {{{"format", "jpeg"}, {"options", {{"quality", 0}}}}, "options.quality: must be 1..100"},
      {{{"format", "jpeg"}, {"options", {{"quality", 101}}}}, "options.quality"},
      {{{"format", "jpeg"}, {"options", {{"quality", 80.5}}}},
       "options.quality: must be an integer"},
      {{{"format", "jpeg"}, {"options", {{"quality", "80"}}}},
       "options.quality: must be an integer"},
      {{{"format", "jpeg"}, {"options", {{"progressive", "yes"}}}},
       "options.progressive: must be true or false"},
      {{{"format", "jpeg"}, {"options", {{"chromaSubsampling", "4:1:1"}}}},
       "options.chromaSubsampling"},
      {{{"format", "jpeg"}, {"options", {{"quantisationTable", 9}}}}, "options.quantisationTable"},
      {{{"format", "webp"}, {"options", {{"effort", 7}}}}, "options.effort: must be 0..6"},
      {{{"format", "webp"}, {"options", {{"alphaQuality", -1}}}}, "options.alphaQuality"},
      {{{"format", "webp"}, {"options", {{"preset", "cartoon"}}}}, "options.preset"},
      {{{"format", "webp"}, {"options", {{"lossless", 1}}}}, "options.lossless"},
      {{{"format", "webp"}, {"options", {{"quality", nullptr}}}}, "options.quality"},
  };
  for (const auto& [j, needle] : kBad)
    EXPECT_NE(parse_error(j).find(needle), std::string::npos)
        << j.dump() << " → " << parse_error(j);
}

TEST(ConvertOutput, EncodeImageUsesTheFormat) {
  std::vector<uint8_t> px(8 * 8 * 3, 100);
  ImageView v{px.data(), 8, 8, 0};
  for (const char* f : {"png", "jpeg", "jpg", "webp"}) {
    auto c = parse_ok({{"format", f}});
    auto bytes = encode_image(v, c);
    ASSERT_TRUE(bytes.ok()) << f;
    EXPECT_EQ(*sniff_image_format(*bytes), c.format) << f;
  }
}

}  // namespace
}  // namespace sd35::media
