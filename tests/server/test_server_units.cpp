// Server pieces without sockets: base64, ids, the API-key comparison, and the built-in
// txt2img template (fields, ranges, defaults, the graph it fills).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "io/png.h"
#include "server/txt2img.h"
#include "server/util.h"

namespace sd35::server {
namespace {

using nlohmann::json;

TEST(ServerUtil, UuidsAreVersion4AndDistinct) {
  const std::regex re("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string u = make_uuid();
    EXPECT_TRUE(std::regex_match(u, re)) << u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(ServerUtil, ConstantTimeEquals) {
  EXPECT_TRUE(constant_time_equals("secret", "secret"));
  EXPECT_FALSE(constant_time_equals("secret", "secreT"));
  EXPECT_FALSE(constant_time_equals("secret", "secret2"));
  EXPECT_FALSE(constant_time_equals("", "x"));
  EXPECT_TRUE(constant_time_equals("", ""));
}

TEST(ServerUtil, RequestIdsMustBeShortPrintableAscii) {
  EXPECT_TRUE(is_acceptable_request_id("abc-123_X"));
  EXPECT_FALSE(is_acceptable_request_id(""));
  EXPECT_FALSE(is_acceptable_request_id("has space"));
  EXPECT_FALSE(is_acceptable_request_id("line\nbreak"));
  EXPECT_FALSE(is_acceptable_request_id(std::string(201, 'a')));
}

TEST(ServerUtil, RandomSeedsAreBelow1e15) {
  for (int i = 0; i < 1000; ++i) EXPECT_LT(random_seed(), 1000000000000000ull);
}

TEST(ServerUtil, EncodePngEqualsTheFileWriter) {
  // 3x2 RGB gradient, [1, H, W, 3] as SaveImage gets it.
  auto made = Tensor::zeros({1, 2, 3, 3}, DType::kU8);
  ASSERT_TRUE(made.ok());
  Tensor img = *made;
  for (int i = 0; i < 18; ++i) img.data_as<uint8_t>()[i] = uint8_t(i * 13);
  auto mem = encode_png(img, {{"prompt", "{}"}});
  ASSERT_TRUE(mem.ok()) << mem.status().to_string();
  EXPECT_EQ(mem->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const auto path = std::filesystem::temp_directory_path() / ("sd35_png_" + make_uuid() + ".png");
  ASSERT_TRUE(write_png(path.string(), img, {{"prompt", "{}"}}).ok());
  std::ifstream f(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::filesystem::remove(path);
  EXPECT_EQ(*mem, file);
  auto f32 = Tensor::zeros({2, 3, 3}, DType::kF32);
  ASSERT_TRUE(f32.ok());
  EXPECT_FALSE(encode_png(*f32).ok());
}

TEST(Txt2ImgTemplate, RecipeGraphIsTheRecipeFile) {
  std::ifstream f(std::filesystem::path(SD35_TEST_DATA_DIR) / "workflows/sd35-medium-txt2img.json");
  ASSERT_TRUE(f.good());
  json file = json::parse(f);
  for (auto& [id, node] : file.items()) node.erase("_meta");
  EXPECT_EQ(recipe_graph(), file);
}

TEST(Txt2ImgTemplate, DefaultsAreTheRecipes) {
  const WorkflowTemplate t = sd35_txt2img_template({});
  json resolved;
  TemplateError err;
  auto graph = fill_template(t, {{"prompt", "a cat"}}, &resolved, &err);
  ASSERT_TRUE(graph.has_value()) << err.message;
  EXPECT_EQ(resolved["prompt"], "a cat");
  EXPECT_EQ(resolved["width"], 1024);
  EXPECT_EQ(resolved["height"], 1024);
  EXPECT_EQ(resolved["steps"], 20);
  EXPECT_EQ(resolved["cfg_scale"], 4.5);
  EXPECT_EQ(resolved["sampler_name"], "dpmpp_2m");
  EXPECT_EQ(resolved["scheduler"], "sgm_uniform");
  EXPECT_EQ(resolved["denoise"], 1);
  EXPECT_EQ(resolved["checkpoint"], "sd3.5_medium.safetensors");
  ASSERT_TRUE(resolved["seed"].is_number_unsigned());
  EXPECT_LT(resolved["seed"].get<uint64_t>(), 1000000000000000ull);
  const json& g = *graph;
  EXPECT_EQ(g["6"]["inputs"]["text"], "a cat");
  EXPECT_EQ(g["294"]["inputs"]["seed"], resolved["seed"]);
  EXPECT_EQ(g["294"]["inputs"]["cfg"], 4.5);
  EXPECT_EQ(g["135"]["inputs"]["width"], 1024);
  EXPECT_EQ(g["4"]["inputs"]["ckpt_name"], "sd3.5_medium.safetensors");
  // Everything the template does not own stays as in the recipe.
  EXPECT_EQ(g["71"], recipe_graph()["71"]);
  EXPECT_EQ(g["13"], recipe_graph()["13"]);
}

TEST(Txt2ImgTemplate, ValuesGoIntoTheirNodes) {
  const WorkflowTemplate t = sd35_txt2img_template({"sd3.5_medium.safetensors", "other.safetensors"});
  json resolved;
  TemplateError err;
  auto graph = fill_template(t,
                             {{"prompt", "p"}, {"width", 512}, {"height", 768.0}, {"seed", 7},
                              {"steps", 30}, {"cfg_scale", 3}, {"sampler_name", "euler"},
                              {"scheduler", "karras"}, {"denoise", 0.5},
                              {"checkpoint", "other.safetensors"}},
                             &resolved, &err);
  ASSERT_TRUE(graph.has_value()) << err.message;
  const json& g = *graph;
  EXPECT_EQ(g["135"]["inputs"]["width"], 512);
  EXPECT_EQ(g["135"]["inputs"]["height"], 768);
  EXPECT_TRUE(g["135"]["inputs"]["height"].is_number_integer());
  EXPECT_EQ(g["294"]["inputs"]["seed"], 7);
  EXPECT_EQ(g["294"]["inputs"]["steps"], 30);
  EXPECT_EQ(g["294"]["inputs"]["cfg"], 3);
  EXPECT_EQ(g["294"]["inputs"]["sampler_name"], "euler");
  EXPECT_EQ(g["294"]["inputs"]["scheduler"], "karras");
  EXPECT_EQ(g["294"]["inputs"]["denoise"], 0.5);
  EXPECT_EQ(g["4"]["inputs"]["ckpt_name"], "other.safetensors");
  EXPECT_EQ(resolved["seed"], 7);
}

TEST(Txt2ImgTemplate, BadInputNamesTheField) {
  const WorkflowTemplate t = sd35_txt2img_template({});
  struct Case {
    json input;
    std::string field;
  };
  const Case cases[] = {
      {json::object(), "prompt"},
      {{{"prompt", 3}}, "prompt"},
      {{{"prompt", "x"}, {"steps", 0}}, "steps"},
      {{{"prompt", "x"}, {"steps", 101}}, "steps"},
      {{{"prompt", "x"}, {"steps", 2.5}}, "steps"},
      {{{"prompt", "x"}, {"width", 128}}, "width"},
      {{{"prompt", "x"}, {"height", 4096}}, "height"},
      {{{"prompt", "x"}, {"cfg_scale", 20.5}}, "cfg_scale"},
      {{{"prompt", "x"}, {"cfg_scale", "4"}}, "cfg_scale"},
      {{{"prompt", "x"}, {"denoise", -0.1}}, "denoise"},
      {{{"prompt", "x"}, {"sampler_name", "nope"}}, "sampler_name"},
      {{{"prompt", "x"}, {"scheduler", "nope"}}, "scheduler"},
      {{{"prompt", "x"}, {"checkpoint", "x.safetensors"}}, "checkpoint"},
      {{{"prompt", "x"}, {"seed", -1}}, "seed"},
      {{{"prompt", "x"}, {"seed", 1e30}}, "seed"},
      {{{"prompt", "x"}, {"negative_prompt", "no"}}, "negative_prompt"},
  };
  for (const auto& c : cases) {
    json resolved;
    TemplateError err;
    EXPECT_FALSE(fill_template(t, c.input, &resolved, &err).has_value()) << c.input.dump();
    EXPECT_EQ(err.field, c.field) << c.input.dump();
    EXPECT_NE(err.message.find("input." + c.field), std::string::npos) << err.message;
  }
  json resolved;
  TemplateError err;
  EXPECT_FALSE(fill_template(t, json::array(), &resolved, &err).has_value());
}

TEST(Txt2ImgTemplate, GraphInputsMapBackToFields) {
  const WorkflowTemplate t = sd35_txt2img_template({});
  EXPECT_EQ(field_for(t, "294", "steps"), "steps");
  EXPECT_EQ(field_for(t, "294", "cfg"), "cfg_scale");
  EXPECT_EQ(field_for(t, "135", "width"), "width");
  EXPECT_EQ(field_for(t, "4", "ckpt_name"), "checkpoint");
  EXPECT_EQ(field_for(t, "13", "shift"), "");
}

}  // namespace
}  // namespace sd35::server
