// Device placement without a GPU: the engine and the models run against a simulated device
// (tests/models/sim_device.h) whose backend rejects any host tensor, so every transfer the
// engine forgets shows up as an error. Results must be bit-identical to the plain CPU engine
// (same CPU kernels underneath, same inputs), for txt2img, img2img and both text placements.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../backend/backend_test_util.h"
#include "backend/transfer.h"
#include "core/arena.h"
#include "io/safetensors.h"
#include "models/mmdit/mmdit.h"
#include "models/t5/t5.h"
#include "models/vae/vae.h"
#include "pipeline/engine.h"
#include "tiny_engine.h"
#include "sim_device.h"
#include "weights/weight_index.h"
#include "weights/weight_placer.h"

namespace sd35 {
namespace {

namespace fs = std::filesystem;
using ::sd35::testing::euler_params;
using ::sd35::testing::kTinyA;
using ::sd35::testing::tiny_options;
using ::sd35::testing::fill_uniform;
using ::sd35::testing::SimBackend;
using ::sd35::testing::SimMemory;

// Engine options that run on the simulated device; `memory` holds the weights and scratch.
EngineOptions sim_options(const std::shared_ptr<SimMemory>& memory, const std::string& text) {
  EngineOptions o = tiny_options();
  o.text_device = text;
  o.weight_memory = memory;
  o.backend_factory = [memory]() -> Result<std::unique_ptr<Backend>> {
    return std::unique_ptr<Backend>(new SimBackend(make_cpu_backend(), memory));
  };
  return o;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.device() == Device::kCPU &&
         b.device() == Device::kCPU &&
         std::memcmp(a.data(), b.data(), size_t(a.numel()) * a.element_size()) == 0;
}

class DevicePlacementTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto e = Engine::load(tiny_options());
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    cpu_ = std::move(e).value().release();
    auto ws = cpu_->make_workspace();
    ASSERT_TRUE(ws.ok());
    auto r = cpu_->generate(**ws, euler_params());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    txt2img_ = new GenerateResult(*std::move(r));
    auto g = SafetensorsFile::open((kTinyA / "goldens_pipeline.safetensors").string());
    ASSERT_TRUE(g.ok());
    auto img = (*g)->tensor("img2img.input_u8");
    ASSERT_TRUE(img.ok());
    init_image_ = new Tensor(*img);
    goldens_ = new std::shared_ptr<const SafetensorsFile>(*g);
    auto r2 = cpu_->generate(**ws, img2img_params());
    ASSERT_TRUE(r2.ok()) << r2.status().to_string();
    img2img_ = new GenerateResult(*std::move(r2));
  }
  static void TearDownTestSuite() {
    delete cpu_;
    delete txt2img_;
    delete img2img_;
    delete init_image_;
    delete goldens_;
  }
  static GenerateParams img2img_params() {
    GenerateParams p = euler_params();
    p.sample.denoise = 0.6;
    p.init_image = *init_image_;
    return p;
  }
  static Engine* cpu_;
  static GenerateResult* txt2img_;
  static GenerateResult* img2img_;
  static Tensor* init_image_;
  static std::shared_ptr<const SafetensorsFile>* goldens_;
};
Engine* DevicePlacementTest::cpu_ = nullptr;
GenerateResult* DevicePlacementTest::txt2img_ = nullptr;
GenerateResult* DevicePlacementTest::img2img_ = nullptr;
Tensor* DevicePlacementTest::init_image_ = nullptr;
std::shared_ptr<const SafetensorsFile>* DevicePlacementTest::goldens_ = nullptr;

TEST_F(DevicePlacementTest, Txt2ImgOnSimulatedDeviceIsBitIdentical) {
  for (const char* text : {"gpu", "cpu"}) {
    SCOPED_TRACE(text);
    auto memory = std::make_shared<SimMemory>();
    auto e = Engine::load(sim_options(memory, text));
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    EXPECT_EQ((*e)->device(), Device::kCUDA);
    EXPECT_EQ((*e)->text_on_device(), std::string(text) == "gpu");
    EXPECT_GT((*e)->device_weight_bytes(), 0u);
    EXPECT_GE(memory->live_bytes(), (*e)->device_weight_bytes());
    auto ws = (*e)->make_workspace();
    ASSERT_TRUE(ws.ok()) << ws.status().to_string();
    auto r = (*e)->generate(**ws, euler_params());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(same_bytes(r->latent, txt2img_->latent));
    EXPECT_TRUE(same_bytes(r->image, txt2img_->image));
    EXPECT_EQ(r->timings.model_calls, txt2img_->timings.model_calls);
    auto* sim = dynamic_cast<SimBackend*>(&(*ws)->backend());
    ASSERT_NE(sim, nullptr);
    EXPECT_EQ(sim->rejected(), 0);
    EXPECT_GT(sim->ops(), 0);
  }
}

TEST_F(DevicePlacementTest, Img2ImgOnSimulatedDeviceIsBitIdentical) {
  auto memory = std::make_shared<SimMemory>();
  auto e = Engine::load(sim_options(memory, "gpu"));
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  auto ws = (*e)->make_workspace();
  ASSERT_TRUE(ws.ok());
  auto r = (*e)->generate(**ws, img2img_params());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(same_bytes(r->latent, img2img_->latent));
  EXPECT_TRUE(same_bytes(r->image, img2img_->image));
  // The encoder stage alone, against the CPU engine's.
  auto cpu_ws = cpu_->make_workspace();
  ASSERT_TRUE(cpu_ws.ok());
  auto a = (*e)->vae_encode(**ws, *init_image_);
  auto b = cpu_->vae_encode(**cpu_ws, *init_image_);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status().to_string();
  EXPECT_TRUE(same_bytes(*a, *b));
}

TEST_F(DevicePlacementTest, ConditioningIsHostMemoryAndMatches) {
  auto memory = std::make_shared<SimMemory>();
  auto e = Engine::load(sim_options(memory, "gpu"));
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  auto ws = (*e)->make_workspace();
  auto cpu_ws = cpu_->make_workspace();
  ASSERT_TRUE(ws.ok() && cpu_ws.ok());
  // A weighted prompt exercises the weighting ops on the device too.
  for (const char* prompt : {"a photo of a cat", "(a cat:1.3) on a mat"}) {
    auto c = (*e)->encode_prompt(**ws, prompt);
    auto h = cpu_->encode_prompt(**cpu_ws, prompt);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(c->context.device(), Device::kCPU);
    EXPECT_TRUE(same_bytes(c->context, h->context));
    EXPECT_TRUE(same_bytes(c->pooled, h->pooled));
  }
}

TEST_F(DevicePlacementTest, AutoTextDeviceFollowsFreeMemory) {
  // Plenty free: text on the device. Room for the weights but not the working margin: CPU.
  auto big = std::make_shared<SimMemory>(size_t(64) << 30);
  auto e = Engine::load(sim_options(big, "auto"));
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_TRUE((*e)->text_on_device());
  auto small = std::make_shared<SimMemory>(size_t(1) << 30);
  std::vector<std::string> notes;
  EngineOptions o = sim_options(small, "auto");
  o.log = [&](const std::string& m) { notes.push_back(m); };
  auto e2 = Engine::load(o);
  ASSERT_TRUE(e2.ok()) << e2.status().to_string();
  EXPECT_FALSE((*e2)->text_on_device());
  ASSERT_FALSE(notes.empty());
  EXPECT_NE(notes.front().find("text encoders on the CPU"), std::string::npos) << notes.front();
  // And it still generates the same image (text on a CPU backend beside the device).
  auto ws = (*e2)->make_workspace();
  ASSERT_TRUE(ws.ok());
  auto r = (*e2)->generate(**ws, euler_params());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(same_bytes(r->image, txt2img_->image));
}

TEST_F(DevicePlacementTest, ShortDeviceMemoryDecodesInTiles) {
  auto memory = std::make_shared<SimMemory>();
  std::vector<std::string> notes;
  EngineOptions o = sim_options(memory, "gpu");
  o.log = [&](const std::string& m) { notes.push_back(m); };
  auto e = Engine::load(o);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  auto ws = (*e)->make_workspace();
  ASSERT_TRUE(ws.ok());
  // A "GPU" with 1 MB free: an untiled 384x384 decode (estimated ~75 MB of scratch) does not
  // fit beside the free memory and the arena's first 64 MB chunk, so the decode goes tiled.
  // One default tile covers this 48x48 latent, so the result equals the CPU engine's decode.
  memory->set_free_report(size_t(1) << 20);
  Tensor latent = *Tensor::zeros({1, 16, 48, 48}, DType::kF32);
  fill_uniform(latent, 6);
  auto img = (*e)->vae_decode(**ws, latent);
  ASSERT_TRUE(img.ok()) << img.status().to_string();
  auto cpu_ws = cpu_->make_workspace();
  ASSERT_TRUE(cpu_ws.ok());
  auto want = cpu_->vae_decode(**cpu_ws, latent);
  ASSERT_TRUE(want.ok());
  EXPECT_TRUE(same_bytes(*img, *want));
  bool tiled = false;
  for (const auto& n : notes) tiled = tiled || n.find("VAE decode in tiles") != std::string::npos;
  EXPECT_TRUE(tiled);
}

TEST_F(DevicePlacementTest, TooLittleDeviceMemoryFailsBeforeUploading) {
  auto tiny = std::make_shared<SimMemory>(1000);  // 1000 bytes "free"
  auto e = Engine::load(sim_options(tiny, "cpu"));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(e.status().message().find("the GPU has"), std::string::npos) << e.status().to_string();
  EXPECT_EQ(tiny->live_allocations(), 0u);
}

TEST_F(DevicePlacementTest, BadOptionsGiveStatus) {
  EngineOptions o = tiny_options();
  o.text_device = "tpu";
  EXPECT_EQ(Engine::load(o).status().code(), StatusCode::kInvalidArgument);
  o = tiny_options();
  o.backend = "vulkan";
  EXPECT_EQ(Engine::load(o).status().code(), StatusCode::kInvalidArgument);
  // A device factory without weight memory.
  o = tiny_options();
  auto memory = std::make_shared<SimMemory>();
  o.backend_factory = [memory]() -> Result<std::unique_ptr<Backend>> {
    return std::unique_ptr<Backend>(new SimBackend(make_cpu_backend(), memory));
  };
  EXPECT_EQ(Engine::load(o).status().code(), StatusCode::kInvalidArgument);
}

TEST(DevicePlacement, CudaBackendWithoutCudaIsAClearError) {
  EngineOptions o = tiny_options();
  o.backend = "cuda";
  auto e = Engine::load(o);
  if (e.ok()) GTEST_SKIP() << "this build has a usable CUDA device";
  EXPECT_NE(e.status().to_string().find("CUDA"), std::string::npos) << e.status().to_string();
}

TEST(DevicePlacement, ArenaOnDeviceMemoryTagsTensors) {
  SimMemory memory;
  {
    Arena arena(memory);
    auto t = arena.tensor({4, 8}, DType::kF32);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->device(), Device::kCUDA);
    EXPECT_EQ(arena.device(), Device::kCUDA);
    EXPECT_EQ(memory.live_allocations(), 1u);
    Arena host;
    auto h = host.tensor({4}, DType::kF32);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->device(), Device::kCPU);
  }
  EXPECT_EQ(memory.live_allocations(), 0u);  // chunks go back to their memory
}

TEST(DevicePlacement, SimBackendRejectsHostTensors) {
  auto memory = std::make_shared<SimMemory>();
  SimBackend be(make_cpu_backend(), memory);
  Arena arena(*memory);
  auto host = Tensor::zeros({2, 3}, DType::kF32);
  auto dev = arena.tensor({2, 3}, DType::kF32);
  ASSERT_TRUE(host.ok() && dev.ok());
  EXPECT_FALSE(be.affine(*host, {}, *dev).ok());
  EXPECT_TRUE(be.copy(*host, *dev).ok());  // upload
  EXPECT_TRUE(be.copy(*dev, *host).ok());  // download
  EXPECT_FALSE(be.copy(host->transpose(0, 1), dev->transpose(0, 1)).ok());  // strided host side
}

// Forward passes with placed weights on the simulated device against host weights on the CPU.
class PlacedModelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto idx = WeightIndex::open({{(kTinyA / "model.safetensors").string(), std::nullopt}});
    ASSERT_TRUE(idx.ok()) << idx.status().to_string();
    index_ = std::move(idx).value();
    memory_ = std::make_shared<SimMemory>();
    sim_ = std::make_unique<SimBackend>(make_cpu_backend(), memory_);
    cpu_ = make_cpu_backend();
  }
  // A host tensor's copy on the simulated device.
  Tensor up(Arena& arena, const Tensor& t) {
    auto d = to_backend(*sim_, arena, t);
    EXPECT_TRUE(d.ok()) << d.status().to_string();
    return d.ok() ? *d : Tensor();
  }
  Tensor down(const Tensor& d) {
    auto h = Tensor::zeros(d.shape(), d.dtype());
    EXPECT_TRUE(h.ok());
    EXPECT_TRUE(download_bytes(*sim_, d, h->data()).ok());
    return *h;
  }
  std::unique_ptr<WeightIndex> index_;
  std::shared_ptr<SimMemory> memory_;
  std::unique_ptr<SimBackend> sim_;
  std::unique_ptr<Backend> cpu_;
};

TEST_F(PlacedModelsTest, MMDiTForwardMatches) {
  WeightPlacer placer(memory_);
  auto dev_model = MMDiT::load(*index_, &placer);
  ASSERT_TRUE(dev_model.ok()) << dev_model.status().to_string();
  EXPECT_GT(placer.bytes(), 0u);
  auto host_model = MMDiT::load(*index_);
  ASSERT_TRUE(host_model.ok());
  const MMDiTConfig& c = (*host_model)->config();
  // An odd latent size exercises the circular padding and the crop on the device.
  auto x = Tensor::zeros({2, c.in_channels, 5, 7}, DType::kF32);
  auto ctx = Tensor::zeros({2, 6, c.context_dim}, DType::kF32);
  auto y = Tensor::zeros({2, c.adm_in_channels}, DType::kF32);
  auto t = Tensor::zeros({2}, DType::kF32);
  auto out = Tensor::zeros({2, c.out_channels, 5, 7}, DType::kF32);
  ASSERT_TRUE(x.ok() && ctx.ok() && y.ok() && t.ok() && out.ok());
  fill_uniform(*x, 1);
  fill_uniform(*ctx, 2);
  fill_uniform(*y, 3);
  t->data_as<float>()[0] = 900.0f;
  t->data_as<float>()[1] = 35.5f;
  Arena host_arena;
  ASSERT_TRUE((*host_model)->forward(*cpu_, host_arena, {*x, *t, *ctx, *y}, *out).ok());

  Arena arena(*memory_);
  const Tensor dx = up(arena, *x), dctx = up(arena, *ctx), dy = up(arena, *y), dt = up(arena, *t);
  auto dout = arena.tensor(out->shape(), DType::kF32);
  ASSERT_TRUE(dout.ok());
  // Timesteps on the host (what the engine passes) and on the device.
  for (const Tensor& ts : {*t, dt}) {
    Status st = (*dev_model)->forward(*sim_, arena, {dx, ts, dctx, dy}, *dout);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(same_bytes(down(*dout), *out));
  }
  EXPECT_EQ(sim_->rejected(), 0);
  // Host inputs on the device backend are an error, not a silent host computation.
  EXPECT_FALSE((*dev_model)->forward(*sim_, arena, {*x, *t, dctx, dy}, *dout).ok());
  // Placed weights on a host backend are rejected by the backend's device checks.
  EXPECT_FALSE((*dev_model)->forward(*cpu_, host_arena, {*x, *t, *ctx, *y}, *out).ok());
}

TEST_F(PlacedModelsTest, VAEDecodeEncodeAndTiledMatch) {
  WeightPlacer placer(memory_);
  auto dev_vae = VAE::load(*index_, &placer);
  ASSERT_TRUE(dev_vae.ok()) << dev_vae.status().to_string();
  auto host_vae = VAE::load(*index_);
  ASSERT_TRUE(host_vae.ok());
  const int64_t z = (*host_vae)->config().z_channels, f = (*host_vae)->scale_factor();
  auto lat = Tensor::zeros({1, z, 6, 10}, DType::kF32);
  auto img = Tensor::zeros({1, 3, 6 * f, 10 * f}, DType::kF32);
  ASSERT_TRUE(lat.ok() && img.ok());
  fill_uniform(*lat, 4);
  Arena host_arena, arena(*memory_);
  ASSERT_TRUE((*host_vae)->decode(*cpu_, host_arena, *lat, *img).ok());
  const Tensor dlat = up(arena, *lat);
  auto dimg = arena.tensor(img->shape(), DType::kF32);
  ASSERT_TRUE(dimg.ok());
  Status st = (*dev_vae)->decode(*sim_, arena, dlat, *dimg);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(same_bytes(down(*dimg), *img));

  // Tiled: the blend weights are staged on the host and uploaded.
  VAETileOptions tiles;
  tiles.tile_latent = 4;
  tiles.overlap_latent = 2;
  ASSERT_TRUE((*host_vae)->decode_tiled(*cpu_, host_arena, *lat, *img, tiles).ok());
  st = (*dev_vae)->decode_tiled(*sim_, arena, dlat, *dimg, tiles);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_TRUE(same_bytes(down(*dimg), *img));

  if ((*host_vae)->has_encoder()) {
    auto mean = Tensor::zeros(lat->shape(), DType::kF32);
    auto logvar = Tensor::zeros(lat->shape(), DType::kF32);
    ASSERT_TRUE(mean.ok() && logvar.ok());
    fill_uniform(*img, 5);
    ASSERT_TRUE((*host_vae)->encode(*cpu_, host_arena, *img, *mean, &*logvar).ok());
    const Tensor dpx = up(arena, *img);
    auto dmean = arena.tensor(lat->shape(), DType::kF32);
    auto dlogvar = arena.tensor(lat->shape(), DType::kF32);
    ASSERT_TRUE(dmean.ok() && dlogvar.ok());
    st = (*dev_vae)->encode(*sim_, arena, dpx, *dmean, &*dlogvar);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(same_bytes(down(*dmean), *mean));
    EXPECT_TRUE(same_bytes(down(*dlogvar), *logvar));
  }
  EXPECT_EQ(sim_->rejected(), 0);
}

TEST_F(PlacedModelsTest, PlacedWeightsAreFreedWithTheModel) {
  {
    WeightPlacer placer(memory_);
    auto m = MMDiT::load(*index_, &placer);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(memory_->live_bytes(), placer.bytes());
    EXPECT_EQ(memory_->live_allocations(), placer.tensors());
  }
  EXPECT_EQ(memory_->live_allocations(), 0u);
}

// fp8 T5 on the device: matrices uploaded as stored (fp8), scale_weight scalars read on the
// host at load, and ComfyUI's nan_to_num applied to device embeddings (download, fix, upload).
// Plain fp8 (one NaN embedding element) and scaled fp8 files, each bit-identical to host.
TEST_F(PlacedModelsTest, Fp8T5OnDeviceMatchesHost) {
  auto src = SafetensorsFile::open((kTinyA / "t5xxl.safetensors").string());
  ASSERT_TRUE(src.ok());
  const fs::path dir = fs::temp_directory_path() /
                       ("sd35_device_t5_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto convert = [](const Tensor& t, DType to, float scale) {
    Tensor out = *Tensor::zeros(t.shape(), to);
    for (int64_t i = 0; i < t.numel(); ++i)
      store_from_f32(out.data(), to, i, load_as_f32(t.data(), t.dtype(), i) / scale);
    return out;
  };
  for (bool scaled : {false, true}) {
    SCOPED_TRACE(scaled ? "scaled fp8" : "plain fp8");
    std::vector<std::pair<std::string, Tensor>> q;
    for (const auto& info : (*src)->tensors()) {
      const Tensor t = (*src)->tensor(info);
      const std::string& n = info.name;
      const bool emb = n == "shared.weight" || n == "encoder.embed_tokens.weight";
      const bool linear = n.find("relative_attention_bias") == std::string::npos &&
                          (n.find(".SelfAttention.") != std::string::npos ||
                           n.find(".DenseReluDense.") != std::string::npos);
      if (scaled && linear) {
        // max|w| maps to e4m3fn's largest finite 448 (no NaN from overflow).
        float mx = 0;
        for (int64_t i = 0; i < t.numel(); ++i)
          mx = std::max(mx, std::fabs(load_as_f32(t.data(), t.dtype(), i)));
        const float s = mx > 0 ? mx / 448.0f : 1.0f;
        q.push_back({n, convert(t, DType::kF8E4M3FN, s)});
        Tensor sw = *Tensor::zeros(Shape{}, DType::kF32);
        sw.data_as<float>()[0] = s;
        q.push_back({n.substr(0, n.size() - 7) + ".scale_weight", sw});
      } else if (scaled && !emb) {
        q.push_back({n, t});
      } else {
        Tensor t8 = convert(t, DType::kF8E4M3FN, 1.0f);
        if (emb) t8.data_as<uint8_t>()[1] = 0x7F;  // NaN in token 0's row
        q.push_back({n, t8});
      }
    }
    if (scaled) q.push_back({"scaled_fp8", *Tensor::zeros(Shape{0}, DType::kF8E4M3FN)});
    const fs::path path = dir / (scaled ? "scaled.safetensors" : "plain.safetensors");
    ASSERT_TRUE(write_safetensors(path.string(), q).ok());
    auto index = WeightIndex::open({{path.string(), Component::kT5XXL}});
    ASSERT_TRUE(index.ok()) << index.status().to_string();
    WeightPlacer placer(memory_);
    auto dev = T5Encoder::load(**index, {}, &placer);
    auto host = T5Encoder::load(**index);
    ASSERT_TRUE(dev.ok() && host.ok()) << dev.status().to_string();
    EXPECT_TRUE((*dev)->fp8_embedding_fix());
    const int64_t L = 7, D = (*host)->config().d_model;
    Tensor ids = *Tensor::zeros({2, L}, DType::kI32);
    for (int64_t i = 0; i < ids.numel(); ++i) ids.data_as<int32_t>()[i] = int32_t(i % 5);
    Tensor out = *Tensor::zeros({2, L, D}, DType::kF32);
    Arena host_arena, arena(*memory_);
    ASSERT_TRUE((*host)->encode(*cpu_, host_arena, ids, out).ok());
    bool finite = true;  // the NaN embedding element was mapped to 0
    for (int64_t i = 0; i < out.numel(); ++i)
      finite = finite && std::isfinite(out.data_as<float>()[i]);
    EXPECT_TRUE(finite);
    auto dout = arena.tensor(out.shape(), DType::kF32);
    ASSERT_TRUE(dout.ok());
    // Host ids (uploaded inside) and device ids (downloaded for the checks) alike.
    for (const Tensor& i : {ids, up(arena, ids)}) {
      Status st = (*dev)->encode(*sim_, arena, i, *dout);
      ASSERT_TRUE(st.ok()) << st.to_string();
      EXPECT_TRUE(same_bytes(down(*dout), out));
    }
  }
  EXPECT_EQ(sim_->rejected(), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sd35
