// WeightIndex: component detection, config derivation from shapes, the diffusers key map
// (q/k/v concat, shift/scale swap, VAE up-block reversal, 1x1 reshape), validation.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/safetensors.h"
#include "weights/model_configs.h"
#include "weights/weight_index.h"
#include "weights/weight_specs.h"

namespace sd35 {
namespace {

namespace fs = std::filesystem;
const fs::path kTinyA = fs::path(SD35_TEST_DATA_DIR) / "tiny-a";

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() /
               ("sd35_test_w_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

nlohmann::json tiny_config() {
  std::ifstream in(kTinyA / "config.json");
  return nlohmann::json::parse(in);
}

std::unique_ptr<WeightIndex> open_or_die(const std::vector<WeightInput>& in) {
  auto r = WeightIndex::open(in);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? std::move(r).value() : nullptr;
}

std::unique_ptr<WeightIndex> tiny_index() {
  return open_or_die({{(kTinyA / "model.safetensors").string(), {}},
                      {(kTinyA / "clip_l.safetensors").string(), {}},
                      {(kTinyA / "clip_g.safetensors").string(), {}},
                      {(kTinyA / "t5xxl.safetensors").string(), {}}});
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  return std::memcmp(a.data(), b.data(), size_t(a.numel()) * a.element_size()) == 0;
}

// Copy of a tensor into an owned buffer (rows [r0, r1) of dim 0).
Tensor rows(const Tensor& t, int64_t r0, int64_t r1) {
  Shape s = t.shape();
  s[0] = r1 - r0;
  Tensor out = Tensor::zeros(s, t.dtype()).value();
  size_t row = size_t(t.numel() / t.size(0)) * t.element_size();
  std::memcpy(out.data(), static_cast<const uint8_t*>(t.data()) + size_t(r0) * row,
              size_t(r1 - r0) * row);
  return out;
}

Tensor swap_halves(const Tensor& t) {
  int64_t h = t.size(0) / 2;
  Tensor a = rows(t, h, t.size(0)), b = rows(t, 0, h);
  Tensor out = Tensor::zeros(t.shape(), t.dtype()).value();
  size_t half = size_t(a.numel()) * a.element_size();
  std::memcpy(out.data(), a.data(), half);
  std::memcpy(static_cast<uint8_t*>(out.data()) + half, b.data(), half);
  return out;
}

TEST(WeightIndex, TinyADetectionAndConfigs) {
  auto index = tiny_index();
  ASSERT_TRUE(index);
  for (Component c : kAllComponents) EXPECT_TRUE(index->has(c)) << component_name(c);
  EXPECT_EQ(index->component(Component::kMMDiT)->prefix, "model.diffusion_model.");
  EXPECT_EQ(index->component(Component::kVAE)->prefix, "first_stage_model.");
  const nlohmann::json cfg = tiny_config();

  auto m = derive_mmdit_config(*index);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->depth, cfg["mmdit"]["depth"].get<int>());
  EXPECT_EQ(m->hidden, cfg["derived"]["mmdit_hidden_size"].get<int>());
  EXPECT_EQ(m->heads, cfg["derived"]["mmdit_num_heads"].get<int>());
  EXPECT_EQ(m->head_dim, cfg["derived"]["mmdit_head_dim"].get<int>());
  EXPECT_EQ(m->patch_size, cfg["mmdit"]["patch_size"].get<int>());
  EXPECT_EQ(m->in_channels, cfg["mmdit"]["in_channels"].get<int>());
  EXPECT_EQ(m->out_channels, cfg["mmdit"]["in_channels"].get<int>());
  EXPECT_EQ(m->pos_embed_max_size, cfg["mmdit"]["pos_embed_max_size"].get<int>());
  EXPECT_EQ(m->x_block_self_attn_layers,
            cfg["mmdit"]["x_block_self_attn_layers"].get<std::vector<int>>());
  EXPECT_EQ(std::string(qk_norm_name(m->qk_norm)), cfg["mmdit"]["qk_norm"].get<std::string>());
  EXPECT_EQ(m->adm_in_channels, cfg["derived"]["adm_in_channels"].get<int>());
  EXPECT_EQ(m->context_dim, cfg["derived"]["context_dim"].get<int>());
  EXPECT_EQ(m->mlp_hidden, int(m->hidden * cfg["mmdit"]["mlp_ratio"].get<double>()));

  auto v = derive_vae_config(*index);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_EQ(v->ch, cfg["vae"]["ch"].get<int>());
  EXPECT_EQ(v->ch_mult, cfg["vae"]["ch_mult"].get<std::vector<int>>());
  EXPECT_EQ(v->num_res_blocks, cfg["vae"]["num_res_blocks"].get<int>());
  EXPECT_EQ(v->z_channels, cfg["vae"]["z_channels"].get<int>());
  EXPECT_TRUE(v->has_encoder);
  EXPECT_TRUE(v->has_decoder);

  for (Component role : {Component::kClipL, Component::kClipG}) {
    const auto& j = cfg[std::string(component_name(role))];
    auto k = derive_clip_config(*index, role);
    ASSERT_TRUE(k.ok()) << k.status().to_string();
    EXPECT_EQ(k->width, j["hidden_size"].get<int>());
    EXPECT_EQ(k->layers, j["num_hidden_layers"].get<int>());
    EXPECT_EQ(k->heads, j["num_attention_heads"].get<int>());  // from the sidecar config.json
    EXPECT_EQ(k->intermediate, j["intermediate_size"].get<int>());
    EXPECT_EQ(k->activation, j["hidden_act"].get<std::string>());
    EXPECT_EQ(k->vocab, 49408);
    EXPECT_EQ(k->positions, 77);
    EXPECT_TRUE(k->has_projection);
  }
  auto t = derive_t5_config(*index);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->d_model, cfg["t5xxl"]["d_model"].get<int>());
  EXPECT_EQ(t->heads, cfg["t5xxl"]["num_heads"].get<int>());
  EXPECT_EQ(t->layers, cfg["t5xxl"]["num_layers"].get<int>());
  EXPECT_EQ(t->d_ff, cfg["t5xxl"]["d_ff"].get<int>());
  EXPECT_EQ(t->vocab, cfg["t5xxl"]["vocab_size"].get<int>());
  EXPECT_EQ(t->d_kv * t->heads, t->d_model);
  EXPECT_EQ(t->num_buckets, 32);

  for (Component c : kAllComponents) {
    auto specs = weight_specs_for(*index, c);
    ASSERT_TRUE(specs.ok()) << specs.status().to_string();
    Status st = validate_weights(*index, c, *specs);
    EXPECT_TRUE(st.ok()) << st.to_string();
    auto bound = bind_weights(*index, c, *specs);
    ASSERT_TRUE(bound.ok()) << bound.status().to_string();
    // Every tensor of the file is bound to a field (nothing converted, views of the mapping).
    EXPECT_GE(bound->size() + 1, index->component(c)->tensors.size()) << component_name(c);
  }
  auto w = bind_weights(*index, Component::kMMDiT, *weight_specs_for(*index, Component::kMMDiT));
  EXPECT_EQ(w->at("blocks.3.ctx.adaln.w").shape(), (Shape{512, 256}));
  EXPECT_EQ(w->at("blocks.3.ctx.adaln.w").dtype(), DType::kBF16);
  EXPECT_EQ(w->count("blocks.3.ctx.fc1.w"), 0u);  // pre-only last context block
  EXPECT_EQ(w->at("blocks.0.x.attn2.qkv.w").shape(), (Shape{768, 256}));
}

TEST(WeightIndex, FolderScanAndFileReports) {
  auto index = open_or_die({{kTinyA.string(), {}}});
  ASSERT_TRUE(index);
  for (Component c : kAllComponents) EXPECT_TRUE(index->has(c));
  size_t ignored = 0;
  for (const auto& r : index->file_reports()) ignored += r.components.empty();
  EXPECT_GE(ignored, 5u);  // goldens files
}

// An "all-in-one" checkpoint (text_encoders.<role>.transformer. prefixes), and a separate
// file named later replacing the copy inside it.
TEST(WeightIndex, AllInOneCheckpoint) {
  fs::path dir = temp_dir();
  std::vector<std::pair<std::string, Tensor>> ts;
  std::vector<std::shared_ptr<const SafetensorsFile>> keep;
  auto add = [&](const char* file, const std::string& prefix) {
    auto f = SafetensorsFile::open((kTinyA / file).string()).value();
    keep.push_back(f);
    for (const auto& t : f->tensors()) ts.emplace_back(prefix + t.name, f->tensor(t));
  };
  add("model.safetensors", "");
  add("clip_l.safetensors", "text_encoders.clip_l.transformer.");
  add("clip_g.safetensors", "text_encoders.clip_g.transformer.");
  add("t5xxl.safetensors", "text_encoders.t5xxl.transformer.");
  ts.emplace_back("some_other.thing", Tensor::zeros(Shape{2}, DType::kF32).value());
  const fs::path ckpt = dir / "sd3_medium_incl_clips.safetensors";
  ASSERT_TRUE(write_safetensors(ckpt.string(), ts,
                                {{"sd35.clip_l.num_attention_heads", "2"},
                                 {"sd35.clip_g.num_attention_heads", "3"}})
                  .ok());
  auto index = open_or_die({{ckpt.string(), {}}});
  ASSERT_TRUE(index);
  for (Component c : kAllComponents) EXPECT_TRUE(index->has(c)) << component_name(c);
  EXPECT_EQ(index->component(Component::kClipG)->prefix, "text_encoders.clip_g.transformer.");
  EXPECT_EQ(index->file_reports()[0].ignored_tensors, 1u);
  EXPECT_EQ(derive_clip_config(*index, Component::kClipL)->heads, 2);
  EXPECT_EQ(derive_clip_config(*index, Component::kClipG)->heads, 3);
  auto tiny = tiny_index();
  for (Component c : kAllComponents) {
    auto specs = weight_specs_for(*index, c);
    ASSERT_TRUE(specs.ok()) << specs.status().to_string();
    EXPECT_TRUE(validate_weights(*index, c, *specs).ok()) << component_name(c);
    for (const TensorSource& s : tiny->component(c)->tensors) {
      EXPECT_TRUE(same_bytes(WeightIndex::load(s).value(), index->load(c, s.name).value()))
          << s.name;
    }
  }
  // A separate CLIP-L given after the checkpoint replaces the embedded one.
  auto both = open_or_die({{ckpt.string(), {}}, {(kTinyA / "clip_l.safetensors").string(), {}}});
  EXPECT_EQ(both->component(Component::kClipL)->files[0], (kTinyA / "clip_l.safetensors").string());
  bool noted = false;
  for (const auto& n : both->notes()) noted |= n.find("replaces") != std::string::npos;
  EXPECT_TRUE(noted);
  fs::remove_all(dir);
}

TEST(WeightIndex, ClipRolesWithoutNames) {
  fs::path dir = temp_dir();
  fs::copy_file(kTinyA / "clip_l.safetensors", dir / "a.safetensors");
  fs::copy_file(kTinyA / "clip_g.safetensors", dir / "b.safetensors");
  // Pairwise: the wider one is CLIP-G.
  auto index = open_or_die({{(dir / "b.safetensors").string(), {}},
                            {(dir / "a.safetensors").string(), {}}});
  ASSERT_TRUE(index);
  EXPECT_EQ(index->component(Component::kClipL)->files[0], (dir / "a.safetensors").string());
  EXPECT_EQ(index->component(Component::kClipG)->files[0], (dir / "b.safetensors").string());
  // No sidecar config here: width 16 is not a multiple of 64, heads are unknown...
  auto k = derive_clip_config(*index, Component::kClipL);
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("--heads"), std::string::npos);
  // ...unless given.
  ConfigOverrides ov;
  ov.heads[Component::kClipL] = 2;
  EXPECT_EQ(derive_clip_config(*index, Component::kClipL, ov)->heads, 2);
  ov.heads[Component::kClipL] = 3;  // does not divide 16
  EXPECT_FALSE(derive_clip_config(*index, Component::kClipL, ov).ok());

  // A single unnamed tiny CLIP is ambiguous; an explicit role settles it.
  auto alone = WeightIndex::open({{(dir / "a.safetensors").string(), {}}});
  ASSERT_FALSE(alone.ok());
  EXPECT_NE(alone.status().message().find("--clip-l"), std::string::npos);
  auto given = open_or_die({{(dir / "a.safetensors").string(), Component::kClipG}});
  ASSERT_TRUE(given);
  EXPECT_TRUE(given->has(Component::kClipG));
  // The other role taken: the remaining one gets the other.
  auto other = open_or_die({{(dir / "a.safetensors").string(), {}},
                            {(kTinyA / "clip_g.safetensors").string(), {}}});
  EXPECT_TRUE(other->has(Component::kClipL));
  // A role that contradicts the content is an error.
  EXPECT_FALSE(WeightIndex::open({{(kTinyA / "t5xxl.safetensors").string(), Component::kVAE}}).ok());
  fs::remove_all(dir);
}

// A component given with a role (a VAELoader's file) wins over the same component detected
// in another input, in either order; without a role the later file wins as before.
TEST(WeightIndex, ForcedRoleWinsOverDetected) {
  fs::path dir = temp_dir();
  const std::string ckpt = (kTinyA / "model.safetensors").string();
  auto src = SafetensorsFile::open(ckpt).value();
  std::vector<std::pair<std::string, Tensor>> ts;
  const std::string prefix = "first_stage_model.";
  for (const auto& t : src->tensors())
    if (t.name.rfind(prefix, 0) == 0) ts.emplace_back(t.name.substr(prefix.size()), src->tensor(t));
  const std::string vae = (dir / "vae.safetensors").string();
  ASSERT_TRUE(write_safetensors(vae, ts, {}).ok());

  auto tiny = tiny_index();
  ASSERT_TRUE(tiny);
  for (bool vae_first : {true, false}) {
    SCOPED_TRACE(vae_first ? "VAE file first" : "VAE file last");
    std::vector<WeightInput> in = {{ckpt, {}}, {vae, Component::kVAE}};
    if (vae_first) std::swap(in[0], in[1]);
    auto index = open_or_die(in);
    ASSERT_TRUE(index);
    const ComponentSources* cs = index->component(Component::kVAE);
    ASSERT_NE(cs, nullptr);
    EXPECT_EQ(cs->files, std::vector<std::string>{vae});
    EXPECT_EQ(cs->prefix, "");
    EXPECT_EQ(index->component(Component::kMMDiT)->files, std::vector<std::string>{ckpt});
    bool noted = false;
    for (const auto& n : index->notes()) noted |= n.find("(given) replaces") != std::string::npos;
    EXPECT_TRUE(noted);
    for (const TensorSource& t : tiny->component(Component::kVAE)->tensors)
      EXPECT_TRUE(
          same_bytes(WeightIndex::load(t).value(), index->load(Component::kVAE, t.name).value()))
          << t.name;
  }
  // No role: the later file with overlapping names replaces the earlier one (unchanged).
  auto plain = open_or_die({{vae, {}}, {ckpt, {}}});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->component(Component::kVAE)->files, std::vector<std::string>{ckpt});
  // A prefixed checkpoint given as the VAE contributes its VAE only.
  auto only = open_or_die({{ckpt, Component::kVAE}});
  ASSERT_TRUE(only);
  EXPECT_TRUE(only->has(Component::kVAE));
  EXPECT_FALSE(only->has(Component::kMMDiT));
  EXPECT_EQ(only->component(Component::kVAE)->prefix, prefix);
  // ...and given as a component it lacks, it is refused.
  auto wrong = WeightIndex::open({{ckpt, Component::kClipL}});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("holds no clip_l"), std::string::npos)
      << wrong.status().message();
  fs::remove_all(dir);
}

TEST(WeightIndex, HeadsFromMetadata) {
  fs::path dir = temp_dir();
  auto src = SafetensorsFile::open((kTinyA / "clip_l.safetensors").string()).value();
  std::vector<std::pair<std::string, Tensor>> ts;
  for (const auto& t : src->tensors()) ts.emplace_back(t.name, src->tensor(t));
  ASSERT_TRUE(write_safetensors((dir / "te.safetensors").string(), ts,
                                {{"sd35.num_attention_heads", "4"}})
                  .ok());
  auto index = open_or_die({{(dir / "te.safetensors").string(), Component::kClipL}});
  auto k = derive_clip_config(*index, Component::kClipL);
  ASSERT_TRUE(k.ok()) << k.status().to_string();
  EXPECT_EQ(k->heads, 4);
  fs::remove_all(dir);
}

// Builds a diffusers folder from tiny-a by translating every canonical tensor back with
// unmap_key and undoing each transform, then checks that reading the folder gives
// byte-identical canonical tensors.
TEST(WeightIndex, DiffusersFolderMatchesSai) {
  auto sai = tiny_index();
  ASSERT_TRUE(sai);
  fs::path dir = temp_dir();
  const int depth = derive_mmdit_config(*sai)->depth;
  const int levels = int(derive_vae_config(*sai)->ch_mult.size());

  auto export_component = [&](Component c, const fs::path& file, MapContext ctx) {
    std::vector<std::pair<std::string, Tensor>> out;
    const auto& rules = key_rules(c, Layout::kDiffusers);
    for (const TensorSource& src : sai->component(c)->tensors) {
      Tensor t = WeightIndex::load(src).value();
      auto keys = unmap_key(rules, src.name, ctx);
      if (!keys) {
        out.emplace_back(src.name, t);
        continue;
      }
      if (keys->names.size() == 3) {
        int64_t n = t.size(0) / 3;
        for (int k = 0; k < 3; ++k) out.emplace_back(keys->names[size_t(k)], rows(t, k * n, (k + 1) * n));
      } else if (keys->transform == Transform::kSwapHalves) {
        out.emplace_back(keys->names[0], swap_halves(t));
      } else if (keys->transform == Transform::kLinearToConv1x1 && t.ndim() == 4) {
        out.emplace_back(keys->names[0], t.reshape(Shape{t.size(0), t.size(1)}));
      } else {
        out.emplace_back(keys->names[0], t);
      }
    }
    fs::create_directories(file.parent_path());
    ASSERT_TRUE(write_safetensors(file.string(), out).ok());
  };
  MapContext ctx;
  ctx.num_blocks = depth;
  ctx.num_up_blocks = levels;
  export_component(Component::kMMDiT, dir / "transformer/diffusion_pytorch_model.safetensors", ctx);
  export_component(Component::kVAE, dir / "vae/diffusion_pytorch_model.safetensors", ctx);
  // A fp16 variant next to the plain file must not be loaded twice.
  fs::copy_file(dir / "vae/diffusion_pytorch_model.safetensors",
                dir / "vae/diffusion_pytorch_model.fp16.safetensors");
  fs::create_directories(dir / "text_encoder");
  fs::create_directories(dir / "text_encoder_2");
  fs::copy_file(kTinyA / "clip_l.safetensors", dir / "text_encoder/model.safetensors");
  fs::copy_file(kTinyA / "clip_g.safetensors", dir / "text_encoder_2/model.safetensors");
  std::ofstream(dir / "text_encoder/config.json")
      << R"({"model_type":"clip_text_model","num_attention_heads":2,"hidden_size":16,"hidden_act":"quick_gelu"})";
  std::ofstream(dir / "text_encoder_2/config.json")
      << R"({"model_type":"clip_text_model","num_attention_heads":3,"hidden_size":24,"hidden_act":"gelu"})";
  // T5 as two shards.
  {
    auto t5 = SafetensorsFile::open((kTinyA / "t5xxl.safetensors").string()).value();
    std::vector<std::pair<std::string, Tensor>> a, b;
    for (const auto& t : t5->tensors()) (a.size() < 10 ? a : b).emplace_back(t.name, t5->tensor(t));
    fs::create_directories(dir / "text_encoder_3");
    ASSERT_TRUE(write_safetensors((dir / "text_encoder_3/model-00001-of-00002.safetensors").string(), a).ok());
    ASSERT_TRUE(write_safetensors((dir / "text_encoder_3/model-00002-of-00002.safetensors").string(), b).ok());
  }
  std::ofstream(dir / "model_index.json") << "{}";

  // Independent spot checks of the names the exporter produced (SPEC-model §2.3, §2.5).
  auto tr = SafetensorsFile::open((dir / "transformer/diffusion_pytorch_model.safetensors").string()).value();
  auto va = SafetensorsFile::open((dir / "vae/diffusion_pytorch_model.safetensors").string()).value();
  for (const char* n : {"pos_embed.pos_embed", "pos_embed.proj.weight",
                        "time_text_embed.timestep_embedder.linear_1.weight",
                        "time_text_embed.text_embedder.linear_2.bias", "context_embedder.weight",
                        "transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.add_k_proj.bias",
                        "transformer_blocks.1.attn2.to_v.weight", "transformer_blocks.0.attn.to_add_out.weight",
                        "transformer_blocks.2.attn.norm_added_q.weight", "transformer_blocks.0.ff_context.net.2.weight",
                        "transformer_blocks.3.norm1_context.linear.weight", "norm_out.linear.weight",
                        "proj_out.bias"}) {
    EXPECT_TRUE(tr->contains(n)) << n;
  }
  for (const char* n : {"decoder.up_blocks.0.resnets.0.conv1.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight",
                        "encoder.down_blocks.2.resnets.0.conv_shortcut.weight", "decoder.conv_norm_out.weight",
                        "encoder.mid_block.attentions.0.to_q.weight", "decoder.mid_block.resnets.1.norm2.bias"}) {
    EXPECT_TRUE(va->contains(n)) << n;
  }
  EXPECT_EQ(va->find("encoder.mid_block.attentions.0.to_q.weight")->shape.ndim(), 2);
  // diffusers up_blocks.0 is the deepest level: 2*ch in, 2*ch out for tiny-a's (1,1,2,2).
  EXPECT_EQ(va->find("decoder.up_blocks.0.resnets.0.conv1.weight")->shape,
            sai->find(Component::kVAE, "decoder.up.3.block.0.conv1.weight")->shape);
  // norm_out stores [scale; shift]: its first half is the SAI second half (shift, scale).
  {
    Tensor d = tr->tensor("norm_out.linear.weight").value();
    Tensor s = sai->load(Component::kMMDiT, "final_layer.adaLN_modulation.1.weight").value();
    EXPECT_TRUE(same_bytes(rows(d, 0, d.size(0) / 2), rows(s, s.size(0) / 2, s.size(0))));
    // Only the LAST block's norm1_context is swapped.
    Tensor d0 = tr->tensor("transformer_blocks.0.norm1_context.linear.weight").value();
    EXPECT_TRUE(same_bytes(d0, sai->load(Component::kMMDiT,
                                         "joint_blocks.0.context_block.adaLN_modulation.1.weight")
                                   .value()));
    Tensor k = tr->tensor("transformer_blocks.1.attn.to_k.weight").value();
    Tensor qkv = sai->load(Component::kMMDiT, "joint_blocks.1.x_block.attn.qkv.weight").value();
    EXPECT_TRUE(same_bytes(k, rows(qkv, k.size(0), 2 * k.size(0))));
  }

  auto diff = open_or_die({{dir.string(), {}}});
  ASSERT_TRUE(diff);
  for (Component c : kAllComponents) {
    ASSERT_TRUE(diff->has(c)) << component_name(c);
    const ComponentSources* a = sai->component(c);
    const ComponentSources* b = diff->component(c);
    EXPECT_TRUE(b->problems.empty()) << b->problems.front();
    EXPECT_EQ(a->tensors.size(), b->tensors.size()) << component_name(c);
    for (const TensorSource& s : a->tensors) {
      const TensorSource* d = b->find(s.name);
      ASSERT_NE(d, nullptr) << s.name;
      EXPECT_TRUE(same_bytes(WeightIndex::load(s).value(), WeightIndex::load(*d).value())) << s.name;
    }
    auto specs = weight_specs_for(*diff, c);
    ASSERT_TRUE(specs.ok()) << specs.status().to_string();
    EXPECT_TRUE(validate_weights(*diff, c, *specs).ok());
  }
  EXPECT_EQ(diff->component(Component::kMMDiT)->layout, Layout::kDiffusers);
  EXPECT_EQ(diff->component(Component::kT5XXL)->files.size(), 2u);
  EXPECT_EQ(diff->component(Component::kVAE)->files.size(), 1u);
  EXPECT_EQ(derive_clip_config(*diff, Component::kClipG)->heads, 3);
  // Concatenated / swapped tensors are assembled; the rest are views of the mapping.
  EXPECT_FALSE(diff->find(Component::kMMDiT, "joint_blocks.0.x_block.attn.qkv.weight")->zero_copy());
  EXPECT_TRUE(diff->find(Component::kMMDiT, "joint_blocks.0.x_block.mlp.fc1.weight")->zero_copy());

  // An incomplete q/k/v is reported, not guessed.
  {
    std::vector<std::pair<std::string, Tensor>> ts;
    for (const auto& t : tr->tensors())
      if (t.name != "transformer_blocks.2.attn.to_k.weight") ts.emplace_back(t.name, tr->tensor(t));
    fs::path bad = dir / "bad_transformer.safetensors";
    ASSERT_TRUE(write_safetensors(bad.string(), ts).ok());
    auto idx = open_or_die({{bad.string(), {}}});
    Status st = validate_weights(*idx, Component::kMMDiT, *weight_specs_for(*idx, Component::kMMDiT));
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("joint_blocks.2.x_block.attn.qkv.weight"), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(WeightIndex, OneErrorNamesEveryProblem) {
  fs::path dir = temp_dir();
  auto src = SafetensorsFile::open((kTinyA / "model.safetensors").string()).value();
  std::vector<std::pair<std::string, Tensor>> ts;
  const std::string p = "model.diffusion_model.";
  for (const auto& t : src->tensors()) {
    if (t.name.rfind(p, 0) != 0) continue;
    std::string n = t.name.substr(p.size());
    if (n == "joint_blocks.1.x_block.mlp.fc2.bias") continue;  // missing
    if (n == "joint_blocks.2.context_block.mlp.fc1.weight") {  // mis-shaped
      ts.emplace_back(n, Tensor::zeros(Shape{1000, 256}, DType::kBF16).value());
      continue;
    }
    ts.emplace_back(n, src->tensor(t));
  }
  ts.emplace_back("extra_head.weight", Tensor::zeros(Shape{4}, DType::kBF16).value());  // unexpected
  ASSERT_TRUE(write_safetensors((dir / "mmdit.safetensors").string(), ts).ok());
  auto index = open_or_die({{(dir / "mmdit.safetensors").string(), {}}});
  ASSERT_TRUE(index->has(Component::kMMDiT));
  EXPECT_EQ(index->component(Component::kMMDiT)->prefix, "");  // bare file
  auto specs = weight_specs_for(*index, Component::kMMDiT);
  ASSERT_TRUE(specs.ok());
  Status st = validate_weights(*index, Component::kMMDiT, *specs);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  const std::string& m = st.message();
  EXPECT_NE(m.find("3 problems"), std::string::npos) << m;
  EXPECT_NE(m.find("missing: joint_blocks.1.x_block.mlp.fc2.bias"), std::string::npos) << m;
  EXPECT_NE(m.find("unexpected: extra_head.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("mis-shaped: joint_blocks.2.context_block.mlp.fc1.weight is [1000, 256], "
                   "expected [1024, 256]"),
            std::string::npos)
      << m;
  EXPECT_FALSE(bind_weights(*index, Component::kMMDiT, *specs).ok());
  fs::remove_all(dir);
}

// Writes a header-only safetensors file with the given tensors and extends it (sparsely) to
// the full data size: real-size checkpoints without real data.
void write_sparse(const fs::path& path, const std::vector<std::pair<std::string, Shape>>& ts,
                  DType dtype) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  uint64_t off = 0;
  for (const auto& [n, s] : ts) {
    uint64_t bytes = uint64_t(s.numel()) * dtype_size(dtype);
    nlohmann::ordered_json e;
    e["dtype"] = std::string(dtype_to_safetensors(dtype));
    e["shape"] = std::vector<int64_t>(s.begin(), s.end());
    e["data_offsets"] = {off, off + bytes};
    h[n] = e;
    off += bytes;
  }
  std::string text = h.dump();
  while (text.size() % 8) text += ' ';
  std::string head(8, '\0');
  for (int i = 0; i < 8; ++i) head[size_t(i)] = char((uint64_t(text.size()) >> (8 * i)) & 0xFF);
  {
    std::ofstream out(path, std::ios::binary);
    out << head << text;
  }
  fs::resize_file(path, 8 + text.size() + off);
}

std::vector<std::pair<std::string, Shape>> names_of(const WeightSpecs& specs, const std::string& prefix) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& s : specs)
    if (!s.field.empty() && (s.required || s.canonical == "text_projection.weight"))
      out.emplace_back(prefix + s.canonical, s.shape);
  return out;
}

// The real SD3.5 Medium shapes (SPEC-model §1.1, §2.2-2.5) as sparse files: the same code
// path detects them and derives the published configuration.
TEST(WeightIndex, RealSizeSparseCheckpoint) {
  fs::path dir = temp_dir();
  MMDiTConfig m;
  m.depth = 24; m.hidden = 1536; m.heads = 24; m.patch_size = 2; m.in_channels = 16;
  m.out_channels = 16; m.pos_embed_max_size = 384; m.adm_in_channels = 2048;
  m.context_dim = 4096; m.mlp_hidden = 6144; m.freq_dim = 256; m.qk_norm = QKNorm::kRMS;
  for (int i = 0; i <= 12; ++i) m.x_block_self_attn_layers.push_back(i);
  VAEConfig v;
  v.ch = 128; v.ch_mult = {1, 2, 4, 4}; v.num_res_blocks = 2; v.z_channels = 16;
  v.image_channels = 3; v.has_encoder = v.has_decoder = true;
  auto ckpt = names_of(mmdit_weight_specs(m), "model.diffusion_model.");
  EXPECT_EQ(ckpt.size(), 665u);  // SPEC-model §1.3
  auto vae = names_of(vae_weight_specs(v), "first_stage_model.");
  ckpt.insert(ckpt.end(), vae.begin(), vae.end());
  write_sparse(dir / "sd3.5_medium.safetensors", ckpt, DType::kBF16);
  EXPECT_GT(fs::file_size(dir / "sd3.5_medium.safetensors"), 5'000'000'000u);

  ClipConfig l;
  l.layers = 12; l.width = 768; l.intermediate = 3072; l.vocab = 49408; l.positions = 77;
  ClipConfig g = l;
  g.layers = 32; g.width = 1280; g.intermediate = 5120; g.has_projection = true; g.projection_dim = 1280;
  write_sparse(dir / "te1.safetensors", names_of(clip_weight_specs(l, Component::kClipL), ""), DType::kF16);
  write_sparse(dir / "te2.safetensors", names_of(clip_weight_specs(g, Component::kClipG), ""), DType::kF16);
  T5Config t;
  t.layers = 24; t.d_model = 4096; t.d_ff = 10240; t.heads = 64; t.d_kv = 64; t.vocab = 32128; t.num_buckets = 32;
  auto t5 = names_of(t5_weight_specs(t), "");
  t5.emplace_back("shared.weight", Shape{32128, 4096});
  write_sparse(dir / "te3.safetensors", t5, DType::kF8E4M3FN);

  auto index = open_or_die({{dir.string(), {}}});
  ASSERT_TRUE(index);
  auto dm = derive_mmdit_config(*index);
  ASSERT_TRUE(dm.ok()) << dm.status().to_string();
  EXPECT_EQ(dm->depth, 24);
  EXPECT_EQ(dm->hidden, 1536);
  EXPECT_EQ(dm->pos_embed_max_size, 384);
  EXPECT_EQ(dm->x_block_self_attn_layers.size(), 13u);
  EXPECT_EQ(dm->adm_in_channels, 2048);
  EXPECT_EQ(dm->context_dim, 4096);
  auto dv = derive_vae_config(*index);
  EXPECT_EQ(dv->ch_mult, (std::vector<int>{1, 2, 4, 4}));
  EXPECT_EQ(dv->num_res_blocks, 2);
  // Roles from the real dimensions, heads = width / 64.
  auto cl = derive_clip_config(*index, Component::kClipL);
  auto cg = derive_clip_config(*index, Component::kClipG);
  ASSERT_TRUE(cl.ok() && cg.ok());
  EXPECT_EQ(cl->heads, 12);
  EXPECT_EQ(cg->heads, 20);
  EXPECT_EQ(cl->width, 768);
  EXPECT_EQ(derive_t5_config(*index)->heads, 64);
  for (Component c : kAllComponents) {
    auto specs = weight_specs_for(*index, c);
    ASSERT_TRUE(specs.ok()) << specs.status().to_string();
    Status st = validate_weights(*index, c, *specs);
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
  fs::remove_all(dir);
}

TEST(KeyMaps, MatchingEdgeCases) {
  const auto& vae = key_rules(Component::kVAE, Layout::kDiffusers);
  MapContext ctx;
  ctx.num_up_blocks = 4;
  EXPECT_EQ(map_key(vae, "decoder.up_blocks.0.resnets.2.norm1.weight", ctx).canonical,
            "decoder.up.3.block.2.norm1.weight");
  EXPECT_EQ(map_key(vae, "decoder.up_blocks.3.upsamplers.0.conv.bias", ctx).canonical,
            "decoder.up.0.upsample.conv.bias");
  EXPECT_EQ(map_key(vae, "encoder.mid_block.attentions.0.query.weight", ctx).canonical,
            "encoder.mid.attn_1.q.weight");
  EXPECT_EQ(map_key(vae, "encoder.mid_block.attentions.0.query.weight", ctx).transform,
            Transform::kLinearToConv1x1);
  // Unknown names pass through unchanged (and are reported as unexpected later).
  EXPECT_EQ(map_key(vae, "quant_conv.weight", ctx).canonical, "quant_conv.weight");
  EXPECT_EQ(map_key(vae, "decoder.up_blocks.x.resnets.0.a", ctx).canonical,
            "decoder.up_blocks.x.resnets.0.a");
  const auto& mm = key_rules(Component::kMMDiT, Layout::kDiffusers);
  ctx.num_blocks = 24;
  MappedKey k = map_key(mm, "transformer_blocks.23.norm1_context.linear.bias", ctx);
  EXPECT_EQ(k.canonical, "joint_blocks.23.context_block.adaLN_modulation.1.bias");
  EXPECT_EQ(k.transform, Transform::kSwapHalves);
  EXPECT_EQ(map_key(mm, "transformer_blocks.22.norm1_context.linear.bias", ctx).transform,
            Transform::kNone);
  MappedKey v = map_key(mm, "transformer_blocks.5.attn2.to_v.bias", ctx);
  EXPECT_EQ(v.canonical, "joint_blocks.5.x_block.attn2.qkv.bias");
  EXPECT_EQ(v.part, 2);
  EXPECT_EQ(v.nparts, 3);
}

}  // namespace
}  // namespace sd35
