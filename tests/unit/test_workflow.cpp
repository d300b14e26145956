// Workflow graphs (src/service/workflow): the SD3.5 recipe graph validates into a Plan with a
// models folder laid out as ComfyUI's (symlinks to tests/data/tiny-a), and every malformed
// graph gives an invalid_argument error naming the node, its class_type and the input.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

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
    const fs::path tiny = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";
    fs::create_symlink(tiny / "model.safetensors", dir_ / "checkpoints/sd3.5_medium.safetensors");
    fs::create_symlink(tiny / "clip_g.safetensors", dir_ / "text_encoders/clip_g.safetensors");
    fs::create_symlink(tiny / "clip_l.safetensors", dir_ / "clip/clip_l.safetensors");
    fs::create_symlink(tiny / "t5xxl.safetensors",
                       dir_ / "text_encoders/t5xxl_fp8_e4m3fn.safetensors");
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
  g["20"]["inputs"]["image"] = (dir_ / "checkpoints/sd3.5_medium.safetensors").string();
  plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  g["21"]["inputs"]["pixels"] = {"20", 1};  // MASK into IMAGE
  expect_error(g, "21", "VAEEncode", "pixels", "MASK");
}

// Every input of every node replaced by garbage: never a crash; either still valid (e.g. a
// different text) or an invalid_argument error naming that node and input.
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
  const json base = recipe();
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

}  // namespace
}  // namespace sd35::workflow
