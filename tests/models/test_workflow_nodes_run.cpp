// The nodes beyond KSampler/VAEDecode run on tiny-a (128x128, few steps) and are checked
// against what ComfyUI's math says they equal: KSamplerAdvanced over the whole schedule and
// SamplerCustomAdvanced(RandomNoise, CFGGuider, KSamplerSelect, BasicScheduler) are KSampler
// bit for bit; a two-stage KSamplerAdvanced split is one full Euler run up to rounding;
// VAEDecodeTiled with covering tiles is VAEDecode; CLIPTextEncodeSD3 with one text in all three
// is CLIPTextEncode; LoadImage of JPEG / WebP / base64 PNG runs img2img exactly as
// Engine::generate with the decoded pixels.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/engine.h"
#include "service/media/base64.h"
#include "service/media/image_codec.h"
#include "service/workflow/plan.h"

namespace sd35::workflow {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Loaders, prompts, an empty 128x128 latent, a VAEDecode -> SaveImage of node "90" (LATENT).
json base_graph() {
  return json::parse(R"({
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_medium.safetensors"}},
  "11": {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors", "clip_name3": "t5xxl.safetensors"}},
  "13": {"class_type": "ModelSamplingSD3", "inputs": {"shift": 3, "model": ["4", 0]}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["11", 0]}},
  "71": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 0]}},
  "135": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["90", 0], "vae": ["4", 2]}},
  "301": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
})");
}

json ksampler(const std::string& sampler, const std::string& scheduler, int steps, uint64_t seed,
              const json& latent = json::array({"135", 0}), double denoise = 1.0) {
  return {{"class_type", "KSampler"},
          {"inputs",
           {{"seed", seed},
            {"steps", steps},
            {"cfg", 4.5},
            {"sampler_name", sampler},
            {"scheduler", scheduler},
            {"denoise", denoise},
            {"model", {"13", 0}},
            {"positive", {"6", 0}},
            {"negative", {"71", 0}},
            {"latent_image", latent}}}};
}

json ksampler_advanced(const std::string& sampler, const std::string& scheduler, int steps,
                       uint64_t seed, bool add_noise, int start, int end, bool leftover,
                       const json& latent) {
  return {{"class_type", "KSamplerAdvanced"},
          {"inputs",
           {{"add_noise", add_noise ? "enable" : "disable"},
            {"noise_seed", seed},
            {"steps", steps},
            {"cfg", 4.5},
            {"sampler_name", sampler},
            {"scheduler", scheduler},
            {"start_at_step", start},
            {"end_at_step", end},
            {"return_with_leftover_noise", leftover ? "enable" : "disable"},
            {"model", {"13", 0}},
            {"positive", {"6", 0}},
            {"negative", {"71", 0}},
            {"latent_image", latent}}}};
}

class WorkflowNodesRunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(
        fs::temp_directory_path() /
        ("sd35_wfnodes_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_ / "checkpoints");
    fs::create_directories(*dir_ / "text_encoders");
    fs::create_directories(*dir_ / "input");
    const fs::path tiny = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";
    fs::create_symlink(tiny / "model.safetensors", *dir_ / "checkpoints/sd3.5_medium.safetensors");
    for (const char* f : {"clip_g.safetensors", "clip_l.safetensors", "t5xxl.safetensors"})
      fs::create_symlink(tiny / f, *dir_ / "text_encoders" / f);
    // Tiny models keep their CLIP head counts in config.json next to the files.
    fs::create_symlink(tiny / "config.json", *dir_ / "checkpoints/config.json");
    fs::create_symlink(tiny / "config.json", *dir_ / "text_encoders/config.json");
    options_ = new WorkflowOptions;
    options_->models_dir = dir_->string();
    options_->input_dir = (*dir_ / "input").string();
    auto plan = parse_workflow(with(base_graph(), "90", ksampler("euler", "simple", 1, 0)).dump(),
                               *options_);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    EngineOptions eo;  // f32: results independent of the machine's bf16 support
    eo.models = plan->engine_models();
    auto engine = Engine::load(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    engine_ = engine->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    fs::remove_all(*dir_);
    delete dir_;
    delete options_;
  }
  static json with(json g, const std::string& id, const json& node) {
    g[id] = node;
    return g;
  }
  // Runs a graph; returns every output node's images.
  static std::vector<SavedImage> run(const json& g) {
    auto plan = parse_workflow(g.dump(), *options_);
    EXPECT_TRUE(plan.ok()) << plan.status().to_string();
    if (!plan.ok()) return {};
    auto ws = engine_->make_workspace();
    EXPECT_TRUE(ws.ok());
    auto saved = execute_plan(*plan, *engine_, **ws);
    EXPECT_TRUE(saved.ok()) << saved.status().to_string();
    return saved.ok() ? *saved : std::vector<SavedImage>{};
  }
  static Tensor image(const json& g) {
    auto s = run(g);
    EXPECT_FALSE(s.empty());
    return s.empty() ? Tensor() : s.back().images;
  }
  static bool same(const Tensor& a, const Tensor& b) {
    return a.defined() && b.defined() && a.shape() == b.shape() &&
           std::memcmp(a.data(), b.data(), size_t(a.numel())) == 0;
  }
  // Largest |a - b| over uint8 pixels and the number of differing values.
  static std::pair<int, int64_t> diff(const Tensor& a, const Tensor& b) {
    int worst = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      const int d =
          std::abs(int(a.data_as<const uint8_t>()[i]) - int(b.data_as<const uint8_t>()[i]));
      worst = std::max(worst, d);
      n += d != 0;
    }
    return {worst, n};
  }

  static fs::path* dir_;
  static WorkflowOptions* options_;
  static Engine* engine_;
};
fs::path* WorkflowNodesRunTest::dir_ = nullptr;
WorkflowOptions* WorkflowNodesRunTest::options_ = nullptr;
Engine* WorkflowNodesRunTest::engine_ = nullptr;

// KSamplerAdvanced(add_noise enable, 0..10000, no leftover) is common_ksampler with the full
// KSampler schedule: identical to KSampler. dpm_2 also checks the penultimate-sigma rule
// (its schedule is computed for steps + 1 with one sigma dropped: a wrong slice differs).
TEST_F(WorkflowNodesRunTest, KSamplerAdvancedFullRangeEqualsKSampler) {
  for (const char* sampler : {"euler", "dpm_2"}) {
    SCOPED_TRACE(sampler);
    const Tensor ks = image(with(base_graph(), "90", ksampler(sampler, "sgm_uniform", 3, 42)));
    const Tensor ka = image(with(base_graph(), "90",
                                 ksampler_advanced(sampler, "sgm_uniform", 3, 42, true, 0, 10000,
                                                   false, json::array({"135", 0}))));
    EXPECT_TRUE(same(ks, ka));
    // end_at_step = steps is the same schedule too (nothing cut).
    const Tensor kb = image(with(base_graph(), "90",
                                 ksampler_advanced(sampler, "sgm_uniform", 3, 42, true, 0, 3, false,
                                                   json::array({"135", 0}))));
    EXPECT_TRUE(same(ks, kb));
  }
  // The comparison can fail: another seed gives another image.
  const Tensor other = image(with(base_graph(), "90",
                                  ksampler_advanced("euler", "sgm_uniform", 3, 43, true, 0, 10000,
                                                    false, json::array({"135", 0}))));
  EXPECT_FALSE(
      same(image(with(base_graph(), "90", ksampler("euler", "sgm_uniform", 3, 42))), other));
}

// SamplerCustomAdvanced with RandomNoise(seed), CFGGuider(cfg), KSamplerSelect and
// BasicScheduler(denoise 1) is KSampler: same noise (prepare_noise), same sigmas (no
// penultimate rule for euler), same CFG. Its denoised_output (output 1) is the last step's x0,
// a different latent.
TEST_F(WorkflowNodesRunTest, SamplerCustomAdvancedEqualsKSampler) {
  json g = base_graph();
  g["40"] = {{"class_type", "RandomNoise"}, {"inputs", {{"noise_seed", 42}}}};
  g["41"] = {
      {"class_type", "CFGGuider"},
      {"inputs",
       {{"model", {"13", 0}}, {"positive", {"6", 0}}, {"negative", {"71", 0}}, {"cfg", 4.5}}}};
  g["42"] = {{"class_type", "KSamplerSelect"}, {"inputs", {{"sampler_name", "dpmpp_2m"}}}};
  g["43"] = {
      {"class_type", "BasicScheduler"},
      {"inputs",
       {{"model", {"13", 0}}, {"scheduler", "sgm_uniform"}, {"steps", 3}, {"denoise", 1.0}}}};
  g["90"] = {{"class_type", "SamplerCustomAdvanced"},
             {"inputs",
              {{"noise", {"40", 0}},
               {"guider", {"41", 0}},
               {"sampler", {"42", 0}},
               {"sigmas", {"43", 0}},
               {"latent_image", {"135", 0}}}}};
  const Tensor custom = image(g);
  const Tensor ks = image(with(base_graph(), "90", ksampler("dpmpp_2m", "sgm_uniform", 3, 42)));
  EXPECT_TRUE(same(custom, ks));
  // denoised_output (output 1) is the x0 of the last step's callback. dpmpp_2m's last step
  // goes to sigma 0, where its update is x = (0/σ)·x - expm1(-∞)·D = D: the sample is that x0,
  // so both outputs decode to the same image. Recording another step's x0 would differ.
  json d = g;
  d["8"]["inputs"]["samples"] = {"90", 1};
  EXPECT_TRUE(same(image(d), custom));
  // BasicScheduler denoise 0 gives no sigmas: both outputs are the input (empty) latent.
  d["43"]["inputs"]["denoise"] = 0.0;
  const Tensor none = image(d);
  json empty_decode = base_graph();
  empty_decode["8"]["inputs"]["samples"] = {"135", 0};
  empty_decode.erase("90");
  EXPECT_TRUE(same(none, image(empty_decode)));
  // DisableNoise + BasicGuider run too, and differ from the noised, guided run.
  g["50"] = {{"class_type", "DisableNoise"}, {"inputs", json::object()}};
  g["51"] = {{"class_type", "BasicGuider"},
             {"inputs", {{"model", {"13", 0}}, {"conditioning", {"6", 0}}}}};
  g["90"]["inputs"]["noise"] = {"50", 0};
  g["90"]["inputs"]["guider"] = {"51", 0};
  const Tensor plain = image(g);
  ASSERT_TRUE(plain.defined());
  EXPECT_FALSE(same(plain, custom));
}

// ComfyUI's two-stage split: stage 1 runs sigmas[0..k] and returns x_k / (1 - σ_k) (leftover
// noise); stage 2 (add_noise disable) starts from (1 - σ_k)·that = x_k and runs sigmas[k..n].
// For Euler (one model call per step, no history) that is the full run except the divide /
// multiply by (1 - σ_k) — about one float ulp of relative change, carried through the last
// steps and the VAE. A truncating uint8 conversion can turn that into 1 step at a rounding
// boundary: tolerance |Δ| <= 1 on at most 1% of the values.
TEST_F(WorkflowNodesRunTest, TwoStageSplitEqualsFullEulerRun) {
  const int n = 4, k = 2;
  json g = base_graph();
  g["89"] =
      ksampler_advanced("euler", "sgm_uniform", n, 7, true, 0, k, true, json::array({"135", 0}));
  g["90"] = ksampler_advanced("euler", "sgm_uniform", n, 7, false, k, 10000, false,
                              json::array({"89", 0}));
  const Tensor split = image(g);
  const Tensor full = image(with(base_graph(), "90", ksampler("euler", "sgm_uniform", n, 7)));
  ASSERT_TRUE(split.defined() && full.defined());
  const auto [worst, count] = diff(split, full);
  EXPECT_LE(worst, 1);
  EXPECT_LE(count, full.numel() / 100);
  // Adding noise again in stage 2 is a different image (the test can fail).
  g["90"]["inputs"]["add_noise"] = "enable";
  EXPECT_GT(diff(image(g), full).first, 1);
  // Without leftover noise stage 1 ends at sigma 0 (a finished image), so stage 2 starting
  // there differs from the full run as well.
  g["90"]["inputs"]["add_noise"] = "disable";
  g["89"]["inputs"]["return_with_leftover_noise"] = "disable";
  EXPECT_GT(diff(image(g), full).first, 1);
  // start_at_step beyond the schedule returns the input latent unchanged: the image of
  // stage 1 alone.
  json one = with(base_graph(), "90", g["89"]);
  json skip = g;
  skip["90"]["inputs"]["start_at_step"] = n;
  EXPECT_TRUE(same(image(skip), image(one)));
}

// VAEDecodeTiled with tiles covering the 16x16 latent (tile_size 512 -> passes of 32x128,
// 128x32, 64x64 latent pixels) decodes it whole three times and averages: (d + d + d) / 3
// differs from d by at most an ulp, which can move a truncated uint8 by 1 at a boundary.
// Small tiles (64 px = 8 latent, overlap 16 px) really tile: same shape, a different image.
TEST_F(WorkflowNodesRunTest, VAEDecodeTiledCoveringTilesEqualsVAEDecode) {
  json g = with(base_graph(), "90", ksampler("euler", "sgm_uniform", 2, 3));
  const Tensor plain = image(g);
  g["8"] = {{"class_type", "VAEDecodeTiled"},
            {"inputs",
             {{"samples", {"90", 0}},
              {"vae", {"4", 2}},
              {"tile_size", 512},
              {"overlap", 64},
              {"temporal_size", 64},
              {"temporal_overlap", 8}}}};
  const Tensor tiled = image(g);
  ASSERT_TRUE(plain.defined() && tiled.defined());
  const auto [worst, count] = diff(plain, tiled);
  EXPECT_LE(worst, 1);
  EXPECT_LE(count, plain.numel() / 100);
  g["8"]["inputs"]["tile_size"] = 64;
  const Tensor small = image(g);
  ASSERT_TRUE(small.defined());
  EXPECT_EQ(small.shape(), plain.shape());
  EXPECT_GT(diff(small, plain).second, 0);
  EXPECT_TRUE(same(small, image(g)));  // deterministic
}

// CLIPTextEncodeSD3 with the same non-empty text in all three tokenizes exactly as
// CLIPTextEncode does (ComfyUI's node tokenizes each text with the same SD3 tokenizer): same
// conditioning, same image. With empty_padding "none", empty CLIP texts drop the CLIP block
// (pooled zeros, context = T5 only): a different image; "empty_prompt" keeps CLIPTextEncode("").
TEST_F(WorkflowNodesRunTest, CLIPTextEncodeSD3SameTextEqualsCLIPTextEncode) {
  const json ks = ksampler("euler", "sgm_uniform", 2, 11);
  const Tensor ref = image(with(base_graph(), "90", ks));
  json g = with(base_graph(), "90", ks);
  g["6"] = {{"class_type", "CLIPTextEncodeSD3"},
            {"inputs",
             {{"clip", {"11", 0}},
              {"clip_l", "a photo of a cat"},
              {"clip_g", "a photo of a cat"},
              {"t5xxl", "a photo of a cat"},
              {"empty_padding", "none"}}}};
  EXPECT_TRUE(same(image(g), ref));
  g["6"]["inputs"]["empty_padding"] = "empty_prompt";
  EXPECT_TRUE(same(image(g), ref));
  // Empty texts: "empty_prompt" is CLIPTextEncode("") (the negative, node 71)...
  json e = with(base_graph(), "90", ks);
  e["90"]["inputs"]["positive"] = {"71", 0};
  const Tensor empty_ref = image(e);
  e["72"] = {{"class_type", "CLIPTextEncodeSD3"},
             {"inputs",
              {{"clip", {"11", 0}},
               {"clip_l", ""},
               {"clip_g", ""},
               {"t5xxl", ""},
               {"empty_padding", "empty_prompt"}}}};
  e["90"]["inputs"]["positive"] = {"72", 0};
  EXPECT_TRUE(same(image(e), empty_ref));
  // ...and "none" is the T5 encoding of "</s>" alone, pooled zeros: as Engine::encode_tokens
  // with no CLIP chunks and no T5 chunk gives it.
  e["72"]["inputs"]["empty_padding"] = "none";
  const Tensor none = image(e);
  EXPECT_FALSE(same(none, empty_ref));
  auto ws = engine_->make_workspace();
  ASSERT_TRUE(ws.ok());
  auto c_none = engine_->encode_tokens(**ws, SD3Tokens{});
  ASSERT_TRUE(c_none.ok()) << c_none.status().to_string();
  EXPECT_EQ(c_none->context.size(1), 1);  // one T5 token, no CLIP block
  for (int64_t i = 0; i < c_none->pooled.numel(); ++i)
    ASSERT_EQ(c_none->pooled.data_as<const float>()[i], 0.0f);
  auto c_neg = engine_->encode_prompt(**ws, "");
  auto latent = engine_->empty_latent(128, 128, 1);
  ASSERT_TRUE(c_neg.ok() && latent.ok());
  SampleParams sp;
  sp.sampler = Sampler::kEuler;
  sp.scheduler = Scheduler::kSgmUniform;
  sp.steps = 2;
  sp.cfg = 4.5;
  sp.seed = 11;
  auto x = engine_->sample(**ws, *c_none, *c_neg, *latent, sp);
  ASSERT_TRUE(x.ok()) << x.status().to_string();
  auto direct = engine_->vae_decode(**ws, *x);
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(same(none, *direct));
  // Different texts per encoder are used: clip_l alone changed gives another image.
  g["6"]["inputs"]["empty_padding"] = "none";
  g["6"]["inputs"]["clip_l"] = "a photo of a dog";
  EXPECT_FALSE(same(image(g), ref));
}

// LoadImage -> VAEEncode -> KSampler(denoise 0.6) from a JPEG file, a WebP file and a base64
// PNG: each equals Engine::generate's img2img on the pixels media::decode_image gives for the
// same bytes (the decode itself is tested in test_service_media).
TEST_F(WorkflowNodesRunTest, LoadImageFormatsRunImg2Img) {
  const Tensor src = image(with(base_graph(), "90", ksampler("euler", "sgm_uniform", 2, 5)));
  ASSERT_TRUE(src.defined());
  auto view = media::image_view_of(src);
  ASSERT_TRUE(view.ok());
  auto jpeg = media::encode_jpeg(*view, media::JpegOptions{});
  auto webp = media::encode_webp(*view, media::WebpOptions{});
  auto png = media::encode_png(*view);
  ASSERT_TRUE(jpeg.ok() && webp.ok() && png.ok());
  std::ofstream(*dir_ / "input/in.jpg", std::ios::binary) << *jpeg;
  std::ofstream(*dir_ / "input/in.webp", std::ios::binary) << *webp;
  struct Case {
    std::string value;
    const std::string* bytes;
  };
  const Case cases[] = {
      {"in.jpg", &*jpeg}, {"in.webp", &*webp}, {media::base64_encode(*png), &*png}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.value.substr(0, 16));
    json g = base_graph();
    g["20"] = {{"class_type", "LoadImage"}, {"inputs", {{"image", c.value}, {"upload", "image"}}}};
    g["21"] = {{"class_type", "VAEEncode"}, {"inputs", {{"pixels", {"20", 0}}, {"vae", {"4", 2}}}}};
    g["90"] = ksampler("euler", "sgm_uniform", 3, 9, json::array({"21", 0}), 0.6);
    const Tensor out = image(g);
    auto pixels = media::decode_image(*c.bytes);
    ASSERT_TRUE(pixels.ok());
    GenerateParams gp;
    gp.prompt = "a photo of a cat";
    gp.negative = "";
    gp.init_image = *pixels;
    gp.sample.sampler = Sampler::kEuler;
    gp.sample.scheduler = Scheduler::kSgmUniform;
    gp.sample.steps = 3;
    gp.sample.cfg = 4.5;
    gp.sample.seed = 9;
    gp.sample.denoise = 0.6;
    auto ws = engine_->make_workspace();
    ASSERT_TRUE(ws.ok());
    auto ref = engine_->generate(**ws, gp);
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    EXPECT_TRUE(same(out, ref->image));
  }
}

// ImageScale and PreviewImage in a graph: the preview's images come back flagged, named as
// ComfyUI names temp files; SaveImage's are not flagged. ImageScale gives the asked size.
TEST_F(WorkflowNodesRunTest, ImageScaleAndPreviewImage) {
  json g = with(base_graph(), "90", ksampler("euler", "sgm_uniform", 2, 5));
  g["60"] = {{"class_type", "ImageScale"},
             {"inputs",
              {{"image", {"8", 0}},
               {"upscale_method", "bilinear"},
               {"width", 0},
               {"height", 64},
               {"crop", "disabled"}}}};
  g["61"] = {{"class_type", "PreviewImage"}, {"inputs", {{"images", {"60", 0}}}}};
  const auto saved = run(g);
  ASSERT_EQ(saved.size(), 2u);
  const SavedImage* preview = nullptr;
  const SavedImage* save = nullptr;
  for (const auto& s : saved) (s.preview ? preview : save) = &s;
  ASSERT_TRUE(preview && save);
  EXPECT_EQ(preview->node_id, "61");
  EXPECT_EQ(preview->filename_prefix.rfind("ComfyUI_temp_", 0), 0u);
  EXPECT_EQ(preview->images.shape(), Shape({1, 64, 64, 3}));
  EXPECT_EQ(save->images.shape(), Shape({1, 128, 128, 3}));
}

}  // namespace
}  // namespace sd35::workflow
