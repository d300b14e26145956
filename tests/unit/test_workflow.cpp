// Workflow graphs (src/service/workflow): the SD3.5 recipe graph validates into a Plan with a
// models folder laid out as ComfyUI's (symlinks to tests/data/tiny-a), and every malformed
// graph gives an invalid_argument error naming the node, its class_type and the input.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "service/media/base64.h"
#include "service/media/image_codec.h"
#include "service/workflow/plan.h"

namespace sd35::workflow {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The recipe's graph (shared/data/sd35-medium/workflow-txt2img.json, _meta dropped).
json recipe() {
  return json::parse(R"({
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_medium.safetensors"}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle,", "clip": ["11", 0]}},
  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["294", 0], "vae": ["4", 2]}},
  "11": {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors", "clip_name3": "t5xxl_fp8_e4m3fn.safetensors"}},
  "13": {"class_type": "ModelSamplingSD3", "inputs": {"shift": 3, "model": ["4", 0]}},
  "67": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["71", 0]}},
  "68": {"class_type": "ConditioningSetTimestepRange", "inputs": {"start": 0.1, "end": 1, "conditioning": ["67", 0]}},
  "69": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["68", 0], "conditioning_2": ["70", 0]}},
  "70": {"class_type": "ConditioningSetTimestepRange", "inputs": {"start": 0, "end": 0.1, "conditioning": ["71", 0]}},
  "71": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 0]}},
  "135": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
  "294": {"class_type": "KSampler", "inputs": {"seed": 998428620595727, "steps": 20, "cfg": 4.5, "sampler_name": "dpmpp_2m", "scheduler": "sgm_uniform", "denoise": 1, "model": ["13", 0], "positive": ["6", 0], "negative": ["69", 0], "latent_image": ["135", 0]}},
  "301": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
})");
}

class WorkflowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sd35_wf_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "checkpoints");
    fs::create_directories(dir_ / "text_encoders");
    fs::create_directories(dir_ / "clip");
    fs::create_directories(dir_ / "vae");
    const fs::path tiny = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";
    fs::create_symlink(tiny / "model.safetensors", dir_ / "checkpoints/sd3.5_medium.safetensors");
    fs::create_symlink(tiny / "clip_g.safetensors", dir_ / "text_encoders/clip_g.safetensors");
    fs::create_symlink(tiny / "clip_l.safetensors", dir_ / "clip/clip_l.safetensors");
    fs::create_symlink(tiny / "t5xxl.safetensors",
                       dir_ / "text_encoders/t5xxl_fp8_e4m3fn.safetensors");
    // Parsing only checks that the file exists; the index reads it at load time.
    fs::create_symlink(tiny / "model.safetensors", dir_ / "vae/sd35_vae.safetensors");
    options_.models_dir = dir_.string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Expects an error naming node/class/input, with `what` in the message.
  void expect_error(const json& g, const std::string& node, const std::string& cls,
                    const std::string& input, const std::string& what = "") {
    WorkflowError e;
    auto plan = parse_workflow(g.dump(), options_, &e);
    ASSERT_FALSE(plan.ok()) << g.dump();
    EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(e.node_id, node) << plan.status().message();
    EXPECT_EQ(e.class_type, cls) << plan.status().message();
    EXPECT_EQ(e.input, input) << plan.status().message();
    const std::string& m = plan.status().message();
    if (!node.empty()) {
      EXPECT_NE(m.find("node " + node + (cls.empty() ? "" : " (" + cls + ")")), std::string::npos)
          << m;
    }
    if (!input.empty()) {
      EXPECT_NE(m.find("'" + input + "'"), std::string::npos) << m;
    }
    if (!what.empty()) {
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
  }

  // A small RGB PNG (a gradient) as bytes, and written under the test folder.
  static std::string png_bytes(int w, int h) {
    std::vector<uint8_t> px(size_t(w * h * 3));
    for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 7);
    auto b = media::encode_png(media::ImageView{px.data(), w, h, 0});
    EXPECT_TRUE(b.ok());
    return b.ok() ? *b : std::string();
  }
  fs::path write_png(const std::string& name, int w, int h) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << png_bytes(w, h);
    return p;
  }

  fs::path dir_;
  WorkflowOptions options_;
};

TEST_F(WorkflowTest, RecipeValidates) {
  auto plan = parse_workflow(recipe().dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EXPECT_EQ(plan->nodes.size(), 13u);
  EXPECT_EQ(plan->checkpoint, (dir_ / "checkpoints/sd3.5_medium.safetensors").string());
  ASSERT_EQ(plan->text_encoders.size(), 3u);
  EXPECT_EQ(plan->text_encoders[1], (dir_ / "clip/clip_l.safetensors").string());
  EXPECT_EQ(plan->engine_models().size(), 4u);
  // Topological order: every link points to an earlier node.
  std::map<std::string, size_t> pos;
  for (size_t i = 0; i < plan->nodes.size(); ++i) pos[plan->nodes[i].id] = i;
  EXPECT_LT(pos["71"], pos["67"]);
  EXPECT_LT(pos["69"], pos["294"]);
  EXPECT_EQ(plan->nodes.back().id, "301");
  const auto& ks = std::get<KSamplerOp>(plan->nodes[pos["294"]].op);
  EXPECT_EQ(ks.seed, 998428620595727u);
  EXPECT_EQ(ks.steps, 20);
  EXPECT_EQ(ks.sampler, Sampler::kDpmpp2m);
  EXPECT_EQ(ks.scheduler, Scheduler::kSgmUniform);
  EXPECT_EQ(ks.negative.node, "69");
  const auto& r = std::get<TimestepRangeOp>(plan->nodes[pos["68"]].op);
  EXPECT_DOUBLE_EQ(r.start, 0.1);
  const auto& save = std::get<SaveImageOp>(plan->nodes[pos["301"]].op);
  EXPECT_EQ(save.filename_prefix, "ComfyUI");
  // Wrapped as a /prompt request body.
  EXPECT_TRUE(parse_workflow(json{{"prompt", recipe()}}.dump(), options_).ok());
}

TEST_F(WorkflowTest, UnusedNodesAreDroppedAndSlgParses) {
  json g = recipe();
  g["500"] = {{"class_type", "EmptySD3LatentImage"},
              {"inputs", {{"width", 64}, {"height", 64}, {"batch_size", 1}}}};
  g["14"] = {{"class_type", "SkipLayerGuidanceSD3"},
             {"inputs",
              {{"model", {"13", 0}},
               {"layers", "7, 8, 9"},
               {"scale", 3},
               {"start_percent", 0.01},
               {"end_percent", 0.15}}}};
  g["294"]["inputs"]["model"] = {"14", 0};
  auto plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EXPECT_EQ(plan->nodes.size(), 14u);
  for (const auto& n : plan->nodes) {
    EXPECT_NE(n.id, "500");
    if (n.id == "14") {
      EXPECT_EQ(std::get<SkipLayerGuidanceOp>(n.op).slg.layers, (std::vector<int>{7, 8, 9}));
    }
  }
}

TEST_F(WorkflowTest, GraphLevelErrors) {
  expect_error(json::array(), "", "", "", "object");
  EXPECT_FALSE(parse_workflow("{not json", options_).ok());
  EXPECT_FALSE(parse_workflow("", options_).ok());
  json g = recipe();
  g.erase("301");
  expect_error(g, "", "", "", "no output");
  g = recipe();
  g["6"] = 5;
  expect_error(g, "6", "", "", "object");
  g = recipe();
  g["6"].erase("class_type");
  expect_error(g, "6", "", "", "class_type");
}

TEST_F(WorkflowTest, UnknownClassType) {
  json g = recipe();
  g["6"]["class_type"] = "CLIPTextEncodeFancy";
  expect_error(g, "6", "CLIPTextEncodeFancy", "", "unknown class_type");
}

TEST_F(WorkflowTest, MissingAndExtraInputs) {
  json g = recipe();
  g["294"]["inputs"].erase("steps");
  expect_error(g, "294", "KSampler", "steps", "missing");
  g = recipe();
  g["294"]["inputs"]["eta"] = 1;
  expect_error(g, "294", "KSampler", "eta", "unknown input");
  g = recipe();
  g["6"].erase("inputs");
  expect_error(g, "6", "CLIPTextEncode", "text", "missing");
}

TEST_F(WorkflowTest, WrongTypes) {
  json g = recipe();
  g["294"]["inputs"]["steps"] = "20";
  expect_error(g, "294", "KSampler", "steps", "integer");
  g = recipe();
  g["294"]["inputs"]["steps"] = 2.5;
  expect_error(g, "294", "KSampler", "steps", "integer");
  g = recipe();
  g["6"]["inputs"]["text"] = 7;
  expect_error(g, "6", "CLIPTextEncode", "text", "string");
  g = recipe();
  g["294"]["inputs"]["cfg"] = "high";
  expect_error(g, "294", "KSampler", "cfg", "number");
  g = recipe();
  g["294"]["inputs"]["positive"] = "6";
  expect_error(g, "294", "KSampler", "positive", "link");
  g = recipe();
  g["294"]["inputs"]["seed"] = -1;
  expect_error(g, "294", "KSampler", "seed");
  // A link to an output of the wrong type.
  g = recipe();
  g["294"]["inputs"]["positive"] = {"135", 0};
  expect_error(g, "294", "KSampler", "positive", "CONDITIONING");
  g = recipe();
  g["8"]["inputs"]["vae"] = {"4", 1};
  expect_error(g, "8", "VAEDecode", "vae", "VAE");
}

TEST_F(WorkflowTest, OutOfRangeValues) {
  const struct {
    std::string node, input;
    json value;
  } cases[] = {
      {"294", "steps", 0},          {"294", "steps", 100000}, {"294", "cfg", 1000},
      {"294", "denoise", 1.5},      {"294", "denoise", -0.1}, {"135", "width", 1000},
      {"135", "height", 0},         {"135", "width", 32768},  {"135", "batch_size", 0},
      {"13", "shift", 0},           {"68", "start", 2},       {"294", "sampler_name", "warp_drive"},
      {"294", "scheduler", "nope"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.node + "." + c.input + " = " + c.value.dump());
    json g = recipe();
    g[c.node]["inputs"][c.input] = c.value;
    const std::string cls = g[c.node]["class_type"];
    expect_error(g, c.node, cls, c.input);
  }
}

TEST_F(WorkflowTest, DanglingLinks) {
  json g = recipe();
  g["294"]["inputs"]["latent_image"] = {"999", 0};
  expect_error(g, "294", "KSampler", "latent_image", "does not exist");
  g = recipe();
  g["8"]["inputs"]["vae"] = {"4", 3};
  expect_error(g, "8", "VAEDecode", "vae", "output 3");
  g = recipe();
  g["8"]["inputs"]["vae"] = {"4", -1};
  expect_error(g, "8", "VAEDecode", "vae");
}

TEST_F(WorkflowTest, Cycles) {
  json g = recipe();
  // 67 <- 68 <- 69 <- ... make 71 (CLIPTextEncode) depend on nothing but put 67 in a loop:
  g["67"]["inputs"]["conditioning"] = {"69", 0};
  WorkflowError e;
  auto plan = parse_workflow(g.dump(), options_, &e);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("cycle"), std::string::npos);
  EXPECT_TRUE(e.node_id == "67" || e.node_id == "68" || e.node_id == "69") << e.node_id;
  EXPECT_FALSE(e.input.empty());
  // Self-loop.
  g = recipe();
  g["68"]["inputs"]["conditioning"] = {"68", 0};
  expect_error(g, "68", "ConditioningSetTimestepRange", "conditioning", "cycle");
}

TEST_F(WorkflowTest, MissingModelFiles) {
  json g = recipe();
  g["4"]["inputs"]["ckpt_name"] = "sd3.5_large.safetensors";
  expect_error(g, "4", "CheckpointLoaderSimple", "ckpt_name", "not found");
  g = recipe();
  g["11"]["inputs"]["clip_name3"] = "t5xxl_fp16.safetensors";
  expect_error(g, "11", "TripleCLIPLoader", "clip_name3", "not found");
  g = recipe();
  g["4"]["inputs"]["ckpt_name"] = "../checkpoints/sd3.5_medium.safetensors";
  expect_error(g, "4", "CheckpointLoaderSimple", "ckpt_name", "..");
  g = recipe();
  g["4"]["inputs"]["ckpt_name"] = "/etc/passwd";
  expect_error(g, "4", "CheckpointLoaderSimple", "ckpt_name");
}

TEST_F(WorkflowTest, OtherNodes) {
  json g = recipe();
  g["11"] = {{"class_type", "DualCLIPLoader"},
             {"inputs",
              {{"clip_name1", "clip_l.safetensors"},
               {"clip_name2", "clip_g.safetensors"},
               {"type", "sd3"}}}};
  auto plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EXPECT_EQ(plan->text_encoders.size(), 2u);
  g["11"]["inputs"]["type"] = "flux";
  expect_error(g, "11", "DualCLIPLoader", "type", "sd3");
  // img2img: LoadImage -> VAEEncode -> KSampler.
  g = recipe();
  g["20"] = {{"class_type", "LoadImage"}, {"inputs", {{"image", "nope.png"}}}};
  g["21"] = {{"class_type", "VAEEncode"}, {"inputs", {{"pixels", {"20", 0}}, {"vae", {"4", 2}}}}};
  g["294"]["inputs"]["latent_image"] = {"21", 0};
  expect_error(g, "20", "LoadImage", "image", "not found");
  // A file that is not an image: the media library's message, at parse time.
  g["20"]["inputs"]["image"] = (dir_ / "checkpoints/sd3.5_medium.safetensors").string();
  expect_error(g, "20", "LoadImage", "image");
  g["20"]["inputs"]["image"] = write_png("in.png", 16, 8).string();
  plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  g["21"]["inputs"]["pixels"] = {"20", 1};  // MASK into IMAGE
  expect_error(g, "21", "VAEEncode", "pixels", "MASK");
}

// The graph of the new nodes (besides the recipe's loaders and conditioning): txt2img through
// SamplerCustomAdvanced, a KSamplerAdvanced refiner on its output, CLIPTextEncodeSD3,
// VAEDecodeTiled, ImageScale, SaveImage and PreviewImage.
json new_nodes() {
  json g = recipe();
  g["7"] = {{"class_type", "CLIPTextEncodeSD3"},
            {"inputs",
             {{"clip", {"11", 0}},
              {"clip_l", "a"},
              {"clip_g", "b"},
              {"t5xxl", ""},
              {"empty_padding", "none"}}}};
  g["40"] = {{"class_type", "RandomNoise"}, {"inputs", {{"noise_seed", 5}}}};
  g["41"] = {
      {"class_type", "CFGGuider"},
      {"inputs",
       {{"model", {"13", 0}}, {"positive", {"7", 0}}, {"negative", {"69", 0}}, {"cfg", 4.5}}}};
  g["42"] = {{"class_type", "KSamplerSelect"}, {"inputs", {{"sampler_name", "euler"}}}};
  g["43"] = {
      {"class_type", "BasicScheduler"},
      {"inputs",
       {{"model", {"13", 0}}, {"scheduler", "sgm_uniform"}, {"steps", 4}, {"denoise", 1.0}}}};
  g["44"] = {{"class_type", "SamplerCustomAdvanced"},
             {"inputs",
              {{"noise", {"40", 0}},
               {"guider", {"41", 0}},
               {"sampler", {"42", 0}},
               {"sigmas", {"43", 0}},
               {"latent_image", {"135", 0}}}}};
  g["45"] = {{"class_type", "KSamplerAdvanced"},
             {"inputs",
              {{"model", {"13", 0}},
               {"add_noise", "disable"},
               {"noise_seed", 1},
               {"steps", 8},
               {"cfg", 4.5},
               {"sampler_name", "euler"},
               {"scheduler", "simple"},
               {"positive", {"6", 0}},
               {"negative", {"71", 0}},
               {"latent_image", {"44", 1}},
               {"start_at_step", 4},
               {"end_at_step", 10000},
               {"return_with_leftover_noise", "disable"}}}};
  g["46"] = {{"class_type", "VAEDecodeTiled"},
             {"inputs",
              {{"samples", {"45", 0}},
               {"vae", {"4", 2}},
               {"tile_size", 512},
               {"overlap", 64},
               {"temporal_size", 64},
               {"temporal_overlap", 8}}}};
  g["47"] = {{"class_type", "ImageScale"},
             {"inputs",
              {{"image", {"46", 0}},
               {"upscale_method", "lanczos"},
               {"width", 0},
               {"height", 512},
               {"crop", "disabled"}}}};
  g["48"] = {{"class_type", "PreviewImage"}, {"inputs", {{"images", {"47", 0}}}}};
  g["49"] = {{"class_type", "BasicGuider"},
             {"inputs", {{"model", {"13", 0}}, {"conditioning", {"6", 0}}}}};
  g["50"] = {{"class_type", "DisableNoise"}, {"inputs", json::object()}};
  g["51"] = {{"class_type", "SamplerCustomAdvanced"},
             {"inputs",
              {{"noise", {"50", 0}},
               {"guider", {"49", 0}},
               {"sampler", {"42", 0}},
               {"sigmas", {"43", 0}},
               {"latent_image", {"44", 0}}}}};
  g["52"] = {{"class_type", "VAEDecode"}, {"inputs", {{"samples", {"51", 0}}, {"vae", {"4", 2}}}}};
  g["301"]["inputs"]["images"] = {"52", 0};
  return g;
}

// Every input of every node (the recipe's and the new nodes') replaced by garbage: never a
// crash; either still valid (e.g. a different text) or an invalid_argument error naming that
// node and input.
TEST_F(WorkflowTest, GarbageInputsGiveNamedErrors) {
  const json garbage[] = {nullptr,
                          json::array(),
                          json::object(),
                          "x",
                          -1,
                          1e308,
                          18446744073709551615ull,
                          json::array({"4"}),
                          json::array({"4", 0, 1}),
                          json::array({1.5, 0}),
                          json::array({"4", "0"}),
                          json::array({4, 0})};
  for (const json& base : {recipe(), new_nodes()}) {
    for (auto node = base.begin(); node != base.end(); ++node) {
      for (auto input = node.value()["inputs"].begin(); input != node.value()["inputs"].end();
           ++input) {
        for (const json& v : garbage) {
          json g = base;
          g[node.key()]["inputs"][input.key()] = v;
          WorkflowError e;
          auto plan = parse_workflow(g.dump(), options_, &e);
          if (plan.ok()) continue;
          SCOPED_TRACE(node.key() + "." + input.key() + " = " + v.dump() + ": " +
                       plan.status().message());
          EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
          EXPECT_EQ(e.node_id, node.key());
          EXPECT_EQ(e.input, input.key());
        }
      }
    }
  }
}

TEST_F(WorkflowTest, NewNodesValidate) {
  auto plan = parse_workflow(new_nodes().dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  std::map<std::string, const PlanNode*> by_id;
  for (const auto& n : plan->nodes) by_id[n.id] = &n;
  for (const char* id :
       {"7", "40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50", "51", "52", "301"})
    EXPECT_TRUE(by_id.count(id)) << id;
  const auto& sd3 = std::get<TextEncodeSD3Op>(by_id["7"]->op);
  EXPECT_EQ(sd3.clip_l, "a");
  EXPECT_TRUE(sd3.no_padding);
  const auto& ka = std::get<KSamplerAdvancedOp>(by_id["45"]->op);
  EXPECT_FALSE(ka.add_noise);
  EXPECT_FALSE(ka.return_with_leftover_noise);
  EXPECT_EQ(ka.start_at_step, 4);
  EXPECT_EQ(ka.latent_image.output, 1);  // denoised_output
  EXPECT_TRUE(std::get<NoiseOp>(by_id["50"]->op).disabled);
  EXPECT_FALSE(std::get<GuiderOp>(by_id["49"]->op).negative.has_value());
  EXPECT_DOUBLE_EQ(std::get<GuiderOp>(by_id["49"]->op).cfg, 1.0);
  const auto& tiled = std::get<VAEDecodeTiledOp>(by_id["46"]->op);
  EXPECT_EQ(tiled.tile_size, 512);
  EXPECT_EQ(std::get<ImageScaleOp>(by_id["47"]->op).method, UpscaleMethod::kLanczos);
  const auto& preview = std::get<SaveImageOp>(by_id["48"]->op);
  EXPECT_TRUE(preview.preview);
  // ComfyUI's temp naming: "ComfyUI_temp_" + 5 lowercase letters.
  ASSERT_EQ(preview.filename_prefix.size(), 18u);
  EXPECT_EQ(preview.filename_prefix.substr(0, 13), "ComfyUI_temp_");
  for (char ch : preview.filename_prefix.substr(13)) EXPECT_TRUE(ch >= 'a' && ch <= 'z');
  EXPECT_FALSE(std::get<SaveImageOp>(by_id["301"]->op).preview);

  // VAEDecodeTiled's overlap and temporal inputs are optional (older ComfyUI graphs).
  json g = new_nodes();
  g["46"]["inputs"].erase("overlap");
  g["46"]["inputs"].erase("temporal_size");
  g["46"]["inputs"].erase("temporal_overlap");
  EXPECT_TRUE(parse_workflow(g.dump(), options_).ok());
  // A graph whose only output is a PreviewImage is valid (ComfyUI runs it).
  g = new_nodes();
  g.erase("301");
  EXPECT_TRUE(parse_workflow(g.dump(), options_).ok());
}

TEST_F(WorkflowTest, NewNodesBadInputs) {
  struct Case {
    const char* node;
    const char* cls;
    const char* input;
    json value;
    const char* what;
  };
  const Case cases[] = {
      {"7", "CLIPTextEncodeSD3", "empty_padding", "empty_pad", "none, empty_prompt"},
      {"7", "CLIPTextEncodeSD3", "clip_g", 3, "string"},
      {"40", "RandomNoise", "noise_seed", -1, ">= 0"},
      {"41", "CFGGuider", "cfg", 101, "outside"},
      {"42", "KSamplerSelect", "sampler_name", "euler_magic", "euler_magic"},
      {"43", "BasicScheduler", "scheduler", "cosine", "cosine"},
      {"43", "BasicScheduler", "steps", 0, "outside"},
      {"43", "BasicScheduler", "denoise", 1.5, "outside"},
      {"45", "KSamplerAdvanced", "add_noise", "yes", "enable, disable"},
      {"45", "KSamplerAdvanced", "start_at_step", -1, "outside"},
      {"45", "KSamplerAdvanced", "end_at_step", 10001, "outside"},
      {"45", "KSamplerAdvanced", "return_with_leftover_noise", true, "string"},
      {"45", "KSamplerAdvanced", "sampler_name", "ddpm", "ddpm"},
      {"46", "VAEDecodeTiled", "tile_size", 32, "outside"},
      {"46", "VAEDecodeTiled", "overlap", -32, "outside"},
      {"46", "VAEDecodeTiled", "temporal_size", 4, "outside"},
      {"47", "ImageScale", "upscale_method", "bislerp", "lanczos"},
      {"47", "ImageScale", "width", -1, "outside"},
      {"47", "ImageScale", "height", 16385, "outside"},
      {"47", "ImageScale", "crop", "top", "disabled, center"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.node) + "." + c.input);
    json g = new_nodes();
    g[c.node]["inputs"][c.input] = c.value;
    expect_error(g, c.node, c.cls, c.input, c.what);
  }
  // Missing inputs, unknown inputs.
  json g = new_nodes();
  g["44"]["inputs"].erase("sigmas");
  expect_error(g, "44", "SamplerCustomAdvanced", "sigmas", "missing");
  g = new_nodes();
  g["50"]["inputs"]["noise_seed"] = 1;
  expect_error(g, "50", "DisableNoise", "noise_seed", "unknown input");
  g = new_nodes();
  g["48"]["inputs"]["filename_prefix"] = "x";
  expect_error(g, "48", "PreviewImage", "filename_prefix", "unknown input");
}

// Links are type-checked with the new value types (NOISE, GUIDER, SAMPLER, SIGMAS) and
// SamplerCustomAdvanced's two LATENT outputs.
TEST_F(WorkflowTest, NewNodesBadLinks) {
  struct Case {
    const char* node;
    const char* cls;
    const char* input;
    json link;
    const char* what;
  };
  const Case cases[] = {
      {"44", "SamplerCustomAdvanced", "noise", json::array({"42", 0}), "expected NOISE"},
      {"44", "SamplerCustomAdvanced", "guider", json::array({"40", 0}), "expected GUIDER"},
      {"44", "SamplerCustomAdvanced", "sampler", json::array({"43", 0}), "expected SAMPLER"},
      {"44", "SamplerCustomAdvanced", "sigmas", json::array({"42", 0}), "is SAMPLER"},
      {"44", "SamplerCustomAdvanced", "latent_image", json::array({"43", 0}), "is SIGMAS"},
      {"45", "KSamplerAdvanced", "latent_image", json::array({"44", 2}), "2 output(s)"},
      {"41", "CFGGuider", "positive", json::array({"40", 0}), "is NOISE"},
      {"49", "BasicGuider", "conditioning", json::array({"13", 0}), "is MODEL"},
      {"43", "BasicScheduler", "model", json::array({"41", 0}), "is GUIDER"},
      {"47", "ImageScale", "image", json::array({"45", 0}), "is LATENT"},
      {"48", "PreviewImage", "images", json::array({"99", 0}), "does not exist"},
      {"7", "CLIPTextEncodeSD3", "clip", json::array({"4", 0}), "is MODEL"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.node) + "." + c.input);
    json g = new_nodes();
    g[c.node]["inputs"][c.input] = c.link;
    expect_error(g, c.node, c.cls, c.input, c.what);
  }
  // A cycle through the two samplers (types right): 44 <- 45 <- 44.
  json g = new_nodes();
  g["44"]["inputs"]["latent_image"] = {"45", 0};
  expect_error(g, "45", "KSamplerAdvanced", "latent_image", "cycle");
}

// LoadImage: inline base64 PNG, data: URL, plain file name in the input folder; corrupt
// base64 and refused URLs name the node and input; absolute paths refused when not allowed.
TEST_F(WorkflowTest, LoadImageInlineAndPolicies) {
  auto img2img = [](const std::string& image) {
    json g = recipe();
    g["20"] = {{"class_type", "LoadImage"}, {"inputs", {{"image", image}, {"upload", "image"}}}};
    g["21"] = {{"class_type", "VAEEncode"}, {"inputs", {{"pixels", {"20", 0}}, {"vae", {"4", 2}}}}};
    g["294"]["inputs"]["latent_image"] = {"21", 0};
    return g;
  };
  auto pixels_of = [&](const json& g) -> Tensor {
    auto plan = parse_workflow(g.dump(), options_);
    EXPECT_TRUE(plan.ok()) << plan.status().to_string();
    if (!plan.ok()) return Tensor();
    for (const auto& n : plan->nodes)
      if (auto* l = std::get_if<LoadImageOp>(&n.op)) return *l->pixels;
    ADD_FAILURE() << "no LoadImage in the plan";
    return Tensor();
  };
  const std::string png = png_bytes(24, 16);
  // base64 (what comfyui-api clients send), decoded at parse time.
  Tensor a = pixels_of(img2img(media::base64_encode(png)));
  ASSERT_TRUE(a.defined());
  EXPECT_EQ(a.shape(), Shape({1, 16, 24, 3}));
  EXPECT_EQ(a.data_as<const uint8_t>()[3], 21);  // pixel 1, red = 3·7
  // data: URL: the same pixels.
  Tensor b = pixels_of(img2img("data:image/png;base64," + media::base64_encode(png)));
  ASSERT_TRUE(b.defined());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), size_t(a.numel())), 0);
  // A plain file name in the input folder (ComfyUI's own convention), also when restricted.
  options_.input_dir = dir_.string();
  write_png("upload.png", 24, 16);
  Tensor c = pixels_of(img2img("upload.png"));
  ASSERT_TRUE(c.defined());
  EXPECT_EQ(std::memcmp(a.data(), c.data(), size_t(a.numel())), 0);
  options_.allow_absolute_image_paths = false;
  EXPECT_TRUE(pixels_of(img2img("upload.png")).defined());

  // Corrupt base64 / corrupt image: the media library's message, node 20, input 'image'.
  expect_error(img2img("!!!not-base64!!!"), "20", "LoadImage", "image", "base64");
  expect_error(img2img(media::base64_encode(png.substr(0, png.size() / 2))), "20", "LoadImage",
               "image");
  expect_error(img2img(media::base64_encode("GIF89a-not-supported")), "20", "LoadImage", "image",
               "GIF");
  // URLs: refused when not allowed, before any network access.
  options_.input_images.allow_urls = false;
  expect_error(img2img("http://example.com/x.png"), "20", "LoadImage", "image", "not allowed");
  expect_error(img2img("https://example.com/x.png"), "20", "LoadImage", "image", "not allowed");
  // A loopback URL is refused by the default network policy even when URLs are allowed.
  options_.input_images.allow_urls = true;
  expect_error(img2img("http://127.0.0.1:1/x.png"), "20", "LoadImage", "image");
  // Other schemes are not fetched.
  expect_error(img2img("s3://bucket/x.png"), "20", "LoadImage", "image");
  // Absolute paths and ".." refused when restricted (the server's setting)...
  const std::string abs = write_png("abs.png", 8, 8).string();
  expect_error(img2img(abs), "20", "LoadImage", "image", "absolute");
  expect_error(img2img("../x.png"), "20", "LoadImage", "image", "..");
  expect_error(img2img("missing.png"), "20", "LoadImage", "image", "not found");
  // ...and read when allowed (the CLI's default).
  options_.allow_absolute_image_paths = true;
  EXPECT_TRUE(pixels_of(img2img(abs)).defined());
}

}  // namespace
}  // namespace sd35::workflow

namespace sd35::workflow {
namespace {

// The recipe with its VAE from a VAELoader (node 39) instead of the checkpoint's output 2.
json vae_loader_recipe() {
  json g = recipe();
  g["39"] = {{"class_type", "VAELoader"}, {"inputs", {{"vae_name", "sd35_vae.safetensors"}}}};
  g["8"]["inputs"]["vae"] = {"39", 0};
  return g;
}

TEST_F(WorkflowTest, VAELoaderValidates) {
  auto plan = parse_workflow(vae_loader_recipe().dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EXPECT_EQ(plan->nodes.size(), 14u);
  EXPECT_EQ(plan->vae, (dir_ / "vae/sd35_vae.safetensors").string());
  EXPECT_EQ(plan->checkpoint, (dir_ / "checkpoints/sd3.5_medium.safetensors").string());
  // The checkpoint, three encoders and the VAE file with its role forced, so the engine's
  // index takes the VAE from it rather than from the checkpoint.
  const auto models = plan->engine_models();
  ASSERT_EQ(models.size(), 5u);
  EXPECT_EQ(models.back().path, plan->vae);
  EXPECT_EQ(models.back().role, Component::kVAE);
  EXPECT_FALSE(models.front().role.has_value());
  bool found = false;
  for (const auto& n : plan->nodes)
    if (const auto* v = std::get_if<VAELoaderOp>(&n.op))
      found = n.id == "39" && v->path == plan->vae;
  EXPECT_TRUE(found);
  // A VAELoader no output needs is dropped, and with it the VAE file.
  json g = recipe();
  g["39"] = vae_loader_recipe()["39"];
  plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EXPECT_TRUE(plan->vae.empty());
  EXPECT_EQ(plan->engine_models().size(), 4u);
  // Two VAELoaders naming the same file are one VAE.
  g = vae_loader_recipe();
  g["38"] = g["39"];
  g["9"] = {{"class_type", "VAEEncode"}, {"inputs", {{"pixels", {"8", 0}}, {"vae", {"38", 0}}}}};
  g["10"] = {{"class_type", "VAEDecode"}, {"inputs", {{"samples", {"9", 0}}, {"vae", {"39", 0}}}}};
  g["301"]["inputs"]["images"] = {"10", 0};
  plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EXPECT_EQ(plan->vae, (dir_ / "vae/sd35_vae.safetensors").string());
}

TEST_F(WorkflowTest, VAELoaderErrors) {
  struct Case {
    json value;
    const char* what;
  };
  const Case cases[] = {
      {"sd35_vae_missing.safetensors", "not found in vae/"},
      {"../checkpoints/sd3.5_medium.safetensors", ".."},
      {"sub/../../vae/sd35_vae.safetensors", ".."},
      {"/etc/passwd", "inside the models folder"},
      {"", "empty"},
      {"taesd3", "not supported"},
      {"pixel_space", "not supported"},
      {3, "string"},
      {json::array({"4", 2}), "string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.value.dump());
    json g = vae_loader_recipe();
    g["39"]["inputs"]["vae_name"] = c.value;
    expect_error(g, "39", "VAELoader", "vae_name", c.what);
  }
  json g = vae_loader_recipe();
  g["39"]["inputs"].erase("vae_name");
  expect_error(g, "39", "VAELoader", "vae_name", "missing");
  g = vae_loader_recipe();
  g["39"]["inputs"]["device"] = "cpu";
  expect_error(g, "39", "VAELoader", "device", "unknown input");
  // Links: the VAELoader has one output, a VAE.
  g = vae_loader_recipe();
  g["8"]["inputs"]["vae"] = {"39", 1};
  expect_error(g, "8", "VAEDecode", "vae", "1 output(s)");
  g = vae_loader_recipe();
  g["6"]["inputs"]["clip"] = {"39", 0};
  expect_error(g, "6", "CLIPTextEncode", "clip",
               "expected CLIP, but output 0 of node 39 (VAELoader) is VAE");
  g = vae_loader_recipe();
  g["13"]["inputs"]["model"] = {"39", 0};
  expect_error(g, "13", "ModelSamplingSD3", "model", "is VAE");
  g = vae_loader_recipe();
  g["8"]["inputs"]["vae"] = {"11", 0};
  expect_error(g, "8", "VAEDecode", "vae", "is CLIP");
  // One engine, one VAE: two different VAE files, or the loader's VAE next to the
  // checkpoint's, are refused naming the node that asks for the second one.
  fs::create_symlink(fs::path(SD35_TEST_DATA_DIR) / "tiny-a/model.safetensors",
                     dir_ / "vae/other.safetensors");
  g = vae_loader_recipe();
  g["38"] = {{"class_type", "VAELoader"}, {"inputs", {{"vae_name", "other.safetensors"}}}};
  g["9"] = {{"class_type", "VAEDecodeTiled"},
            {"inputs", {{"samples", {"294", 0}}, {"vae", {"38", 0}}, {"tile_size", 512}}}};
  g["302"] = {{"class_type", "SaveImage"},
              {"inputs", {{"images", {"9", 0}}, {"filename_prefix", "b"}}}};
  WorkflowError e;
  auto plan = parse_workflow(g.dump(), options_, &e);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(e.class_type, "VAELoader");
  EXPECT_EQ(e.input, "vae_name");
  EXPECT_NE(plan.status().message().find("one VAE file per graph"), std::string::npos);
  g["9"]["inputs"]["vae"] = {"4", 2};
  expect_error(g, "9", "VAEDecodeTiled", "vae", "engine holds one VAE");
}

// Garbage in each VAELoader-graph input gives an error naming that node and input.
TEST_F(WorkflowTest, VAELoaderGarbageInputs) {
  const json base = vae_loader_recipe();
  for (const json& v : {json(nullptr), json::object(), json("x"), json(-1), json::array({"39", 5}),
                        json::array({"39"}), json::array({39, 0})}) {
    for (const char* node : {"39", "8"}) {
      for (auto input = base[node]["inputs"].begin(); input != base[node]["inputs"].end();
           ++input) {
        json g = base;
        g[node]["inputs"][input.key()] = v;
        WorkflowError e;
        auto plan = parse_workflow(g.dump(), options_, &e);
        if (plan.ok()) continue;
        SCOPED_TRACE(std::string(node) + "." + input.key() + " = " + v.dump());
        EXPECT_EQ(e.node_id, node);
        EXPECT_EQ(e.input, input.key());
      }
    }
  }
}

}  // namespace
}  // namespace sd35::workflow
