// The recipe graph, small (128x128, 2 steps), run end to end on tiny-a through
// parse_workflow + execute_plan: the SaveImage image equals Engine::generate() for the same
// parameters (one engine, loaded from the plan's model files).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/png.h"
#include "io/safetensors.h"
#include "pipeline/conditioning.h"
#include "pipeline/engine.h"
#include "service/workflow/plan.h"

namespace sd35::workflow {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The recipe's graph at 128x128, 2 steps, with a plain empty-prompt negative (node 71 wired
// straight into KSampler), so it can be compared with Engine::generate.
json small_recipe() {
  return json::parse(R"({
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_medium.safetensors"}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["11", 0]}},
  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["294", 0], "vae": ["4", 2]}},
  "11": {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors", "clip_name3": "t5xxl_fp8_e4m3fn.safetensors"}},
  "13": {"class_type": "ModelSamplingSD3", "inputs": {"shift": 3, "model": ["4", 0]}},
  "71": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 0]}},
  "135": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
  "294": {"class_type": "KSampler", "inputs": {"seed": 998428620595727, "steps": 2, "cfg": 4.5, "sampler_name": "dpmpp_2m", "scheduler": "sgm_uniform", "denoise": 1, "model": ["13", 0], "positive": ["6", 0], "negative": ["71", 0], "latent_image": ["135", 0]}},
  "301": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
})");
}

class WorkflowRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sd35_wfrun_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "checkpoints");
    fs::create_directories(dir_ / "text_encoders");
    const fs::path tiny = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";
    fs::create_symlink(tiny / "model.safetensors", dir_ / "checkpoints/sd3.5_medium.safetensors");
    fs::create_symlink(tiny / "clip_g.safetensors", dir_ / "text_encoders/clip_g.safetensors");
    fs::create_symlink(tiny / "clip_l.safetensors", dir_ / "text_encoders/clip_l.safetensors");
    fs::create_symlink(tiny / "t5xxl.safetensors",
                       dir_ / "text_encoders/t5xxl_fp8_e4m3fn.safetensors");
    // Tiny models keep their CLIP head counts in config.json next to the files.
    fs::create_symlink(tiny / "config.json", dir_ / "checkpoints/config.json");
    fs::create_symlink(tiny / "config.json", dir_ / "text_encoders/config.json");
    options_.models_dir = dir_.string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  WorkflowOptions options_;
};

TEST_F(WorkflowRunTest, SmallRecipeEqualsGenerate) {
  auto plan = parse_workflow(small_recipe().dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EngineOptions eo;  // f32
  eo.models = plan->engine_models();
  auto engine = Engine::load(eo);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto ws = (*engine)->make_workspace();
  ASSERT_TRUE(ws.ok());
  auto saved = execute_plan(*plan, **engine, **ws);
  ASSERT_TRUE(saved.ok()) << saved.status().to_string();
  ASSERT_EQ(saved->size(), 1u);
  const SavedImage& s = (*saved)[0];
  EXPECT_EQ(s.node_id, "301");
  EXPECT_EQ(s.filename_prefix, "ComfyUI");
  ASSERT_EQ(s.images.dtype(), DType::kU8);
  ASSERT_EQ(s.images.shape(), Shape({1, 128, 128, 3}));

  GenerateParams gp;
  gp.prompt = "a photo of a cat";
  gp.negative = "";
  gp.width = gp.height = 128;
  gp.sample.sampler = Sampler::kDpmpp2m;
  gp.sample.scheduler = Scheduler::kSgmUniform;
  gp.sample.steps = 2;
  gp.sample.cfg = 4.5;
  gp.sample.seed = 998428620595727ull;
  gp.sample.shift = 3.0;
  auto ws2 = (*engine)->make_workspace();
  ASSERT_TRUE(ws2.ok());
  auto ref = (*engine)->generate(**ws2, gp);
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  ASSERT_EQ(ref->image.shape(), s.images.shape());
  EXPECT_EQ(std::memcmp(ref->image.data(), s.images.data(), size_t(s.images.numel())), 0);
}

// The recipe's graph file itself (negative = Combine(Range(ZeroOut(enc "")), Range(enc ""))),
// only shrunk to 128x128 and 3 steps: runs end to end, and equals Engine::sample called with
// the same conditioning list directly.
TEST_F(WorkflowRunTest, RecipeGraphFileRunsWithCombinedNegative) {
  std::ifstream f(fs::path(SD35_TEST_DATA_DIR) / "workflows/sd35-medium-txt2img.json");
  ASSERT_TRUE(f.good());
  json g = json::parse(f);
  ASSERT_EQ(g["294"]["inputs"]["negative"], json({"69", 0}));
  g["135"]["inputs"]["width"] = 128;
  g["135"]["inputs"]["height"] = 128;
  g["294"]["inputs"]["steps"] = 3;
  auto plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  EngineOptions eo;
  eo.models = plan->engine_models();
  auto engine = Engine::load(eo);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto ws = (*engine)->make_workspace();
  ASSERT_TRUE(ws.ok());
  auto saved = execute_plan(*plan, **engine, **ws);
  ASSERT_TRUE(saved.ok()) << saved.status().to_string();
  ASSERT_EQ(saved->size(), 1u);
  const Tensor& image = (*saved)[0].images;
  ASSERT_EQ(image.shape(), Shape({1, 128, 128, 3}));

  const json& ks = g["294"]["inputs"];
  auto pos = (*engine)->encode_prompt(**ws, g["6"]["inputs"]["text"].get<std::string>());
  auto empty = (*engine)->encode_prompt(**ws, g["71"]["inputs"]["text"].get<std::string>());
  ASSERT_TRUE(pos.ok() && empty.ok());
  auto zero = conditioning_zero_out(*empty);
  ASSERT_TRUE(zero.ok());
  const ConditioningEntry positive[] = {{&*pos}};
  // Combine keeps conditioning_1's entries first: node 68 (zeroed, 0.1..1), then node 70.
  const ConditioningEntry negative[] = {{&*zero, 0.1, 1.0}, {&*empty, 0.0, 0.1}};
  SampleParams sp;
  sp.sampler = Sampler::kDpmpp2m;
  sp.scheduler = Scheduler::kSgmUniform;
  sp.steps = 3;
  sp.cfg = ks["cfg"].get<double>();
  sp.seed = ks["seed"].get<uint64_t>();
  sp.shift = g["13"]["inputs"]["shift"].get<double>();
  auto latent = (*engine)->empty_latent(128, 128, 1);
  ASSERT_TRUE(latent.ok());
  auto x = (*engine)->sample(**ws, positive, negative, *latent, sp);
  ASSERT_TRUE(x.ok()) << x.status().to_string();
  auto direct = (*engine)->vae_decode(**ws, *x);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(std::memcmp(direct->data(), image.data(), size_t(image.numel())), 0);

  // The ranged negative really differs from a plain empty-prompt negative.
  auto plain = (*engine)->sample(**ws, *pos, *empty, *latent, sp);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(std::memcmp(plain->data(), x->data(), size_t(x->numel()) * sizeof(float)), 0);
}

// Writes the tiny checkpoint's VAE as a VAE-only file (bare SAI keys, as the SD3.5 repo's
// VAE files), with decoder.conv_out.weight multiplied by `scale` (bf16, exact for 0.5).
void write_vae_file(const fs::path& path, float scale) {
  auto src =
      SafetensorsFile::open((fs::path(SD35_TEST_DATA_DIR) / "tiny-a/model.safetensors").string());
  ASSERT_TRUE(src.ok()) << src.status().to_string();
  const std::string prefix = "first_stage_model.";
  std::vector<std::pair<std::string, Tensor>> ts;
  for (const auto& t : (*src)->tensors()) {
    if (t.name.rfind(prefix, 0) != 0) continue;
    Tensor v = (*src)->tensor(t);
    if (scale != 1.0f && t.name == prefix + "decoder.conv_out.weight") {
      ASSERT_EQ(v.dtype(), DType::kBF16);
      Tensor owned = Tensor::zeros(v.shape(), v.dtype()).value();
      std::memcpy(owned.data(), v.data(), size_t(v.numel()) * v.element_size());
      auto* bits = owned.data_as<uint16_t>();
      for (int64_t i = 0; i < v.numel(); ++i) {
        uint32_t u = uint32_t(bits[i]) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        f *= scale;
        std::memcpy(&u, &f, 4);
        bits[i] = uint16_t(u >> 16);
      }
      v = std::move(owned);
    }
    ts.emplace_back(t.name.substr(prefix.size()), std::move(v));
  }
  ASSERT_TRUE(write_safetensors(path.string(), ts).ok());
}

// The recipe's images from one graph: parse, load the engine from the plan, execute.
Result<Tensor> run_graph(const json& g, const WorkflowOptions& options) {
  SD35_ASSIGN_OR_RETURN(Plan plan, parse_workflow(g.dump(), options));
  EngineOptions eo;
  eo.models = plan.engine_models();
  SD35_ASSIGN_OR_RETURN(auto engine, Engine::load(eo));
  SD35_ASSIGN_OR_RETURN(auto ws, engine->make_workspace());
  SD35_ASSIGN_OR_RETURN(auto saved, execute_plan(plan, *engine, *ws));
  if (saved.size() != 1) return internal_error("expected one saved image");
  return std::move(saved[0].images);
}

// VAELoader: the same VAE as a separate file gives the checkpoint's image bit for bit; a
// different VAE file (conv_out halved) gives another image, so the engine really decodes
// with the loader's file and not the checkpoint's VAE. The CLI runs the graph too.
TEST_F(WorkflowRunTest, VAELoaderFileReplacesCheckpointVae) {
  fs::create_directories(dir_ / "vae");
  write_vae_file(dir_ / "vae/sd35_vae.safetensors", 1.0f);
  write_vae_file(dir_ / "vae/halved.safetensors", 0.5f);
  auto ref = run_graph(small_recipe(), options_);
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();

  json g = small_recipe();
  g["39"] = {{"class_type", "VAELoader"}, {"inputs", {{"vae_name", "sd35_vae.safetensors"}}}};
  g["8"]["inputs"]["vae"] = {"39", 0};
  auto same = run_graph(g, options_);
  ASSERT_TRUE(same.ok()) << same.status().to_string();
  ASSERT_EQ(same->shape(), ref->shape());
  EXPECT_EQ(std::memcmp(same->data(), ref->data(), size_t(ref->numel())), 0);

  g["39"]["inputs"]["vae_name"] = "halved.safetensors";
  auto other = run_graph(g, options_);
  ASSERT_TRUE(other.ok()) << other.status().to_string();
  ASSERT_EQ(other->shape(), ref->shape());
  EXPECT_NE(std::memcmp(other->data(), ref->data(), size_t(ref->numel())), 0);

  // `sd35 generate --workflow` loads Plan::engine_models() too: the halved VAE's image.
  std::ofstream(dir_ / "vae_graph.json") << g.dump();
  const std::string cmd = std::string(SD35_EXE) + " generate --workflow '" +
                          (dir_ / "vae_graph.json").string() + "' --models-dir '" + dir_.string() +
                          "' --compute f32 -q -o '" + (dir_ / "vaeimg").string() + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << output;
  auto img = read_png((dir_ / "vaeimg_00001_.png").string());
  ASSERT_TRUE(img.ok()) << img.status().to_string() << output;
  ASSERT_EQ(img->numel(), other->numel());
  EXPECT_EQ(std::memcmp(img->data(), other->data(), size_t(other->numel())), 0);
}

// `sd35 generate --workflow`: writes <prefix>_00001_.png with the graph in tEXt "prompt",
// pixel-identical to execute_plan's image.
TEST_F(WorkflowRunTest, CliWritesComfyNamedPngWithPrompt) {
  const json g = small_recipe();
  const fs::path graph = dir_ / "graph.json";
  std::ofstream(graph) << g.dump(2);
  const std::string cmd = std::string(SD35_EXE) + " generate --workflow '" + graph.string() +
                          "' --models-dir '" + dir_.string() + "' --compute f32 -q -o '" +
                          (dir_ / "out").string() + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << output;
  const fs::path png = dir_ / "out_00001_.png";
  EXPECT_NE(output.find(png.string()), std::string::npos) << output;
  auto img = read_png(png.string());
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  auto text = read_png_text(png.string());
  ASSERT_TRUE(text.ok());
  bool found = false;
  for (const auto& t : *text)
    if (t.key == "prompt") {
      found = true;
      EXPECT_EQ(json::parse(t.value), g);
    }
  EXPECT_TRUE(found);

  auto plan = parse_workflow(g.dump(), options_);
  ASSERT_TRUE(plan.ok());
  EngineOptions eo;
  eo.models = plan->engine_models();
  auto engine = Engine::load(eo);
  ASSERT_TRUE(engine.ok());
  auto ws = (*engine)->make_workspace();
  ASSERT_TRUE(ws.ok());
  auto saved = execute_plan(*plan, **engine, **ws);
  ASSERT_TRUE(saved.ok());
  const Tensor& ref = (*saved)[0].images;
  ASSERT_EQ(img->numel(), ref.numel());
  EXPECT_EQ(std::memcmp(img->data(), ref.data(), size_t(ref.numel())), 0);

  // A malformed graph: exit code 1 and the node/input named, before loading anything.
  json bad = g;
  bad["294"]["inputs"]["steps"] = 0;
  std::ofstream(dir_ / "bad.json") << bad.dump();
  const std::string cmd2 = std::string(SD35_EXE) + " generate --workflow '" +
                           (dir_ / "bad.json").string() + "' --models-dir '" + dir_.string() +
                           "' 2>&1";
  p = popen(cmd2.c_str(), "r");
  ASSERT_NE(p, nullptr);
  output.clear();
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
  const int rc = pclose(p);
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << rc;
  EXPECT_NE(output.find("node 294 (KSampler), input 'steps'"), std::string::npos) << output;
}

}  // namespace
}  // namespace sd35::workflow
