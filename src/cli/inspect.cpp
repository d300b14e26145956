// `sd35 inspect`: what a set of weight files holds, the configurations derived from their
// shapes, and every problem, without reading tensor data (headers only, through mmap), so
// it answers in milliseconds on the real multi-GB files.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "weights/model_configs.h"
#include "weights/weight_index.h"
#include "weights/weight_specs.h"

namespace sd35::cli {
namespace {

using nlohmann::ordered_json;

struct InspectOptions {
  std::vector<std::string> paths;
  std::string mmdit, vae, clip_l, clip_g, t5xxl;
  std::vector<std::string> heads;  // ROLE=N
  bool json = false;
};

std::string join_ints(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= 1000000000ull) std::snprintf(buf, sizeof buf, "%.2f GB", double(b) / 1e9);
  else if (b >= 1000000ull) std::snprintf(buf, sizeof buf, "%.1f MB", double(b) / 1e6);
  else std::snprintf(buf, sizeof buf, "%.1f KB", double(b) / 1e3);
  return buf;
}

// Config of one component as JSON plus a one-line summary.
Status describe_config(const WeightIndex& index, Component c, const ConfigOverrides& ov,
                       ordered_json& j, std::string& line) {
  char buf[512];
  switch (c) {
    case Component::kMMDiT: {
      SD35_ASSIGN_OR_RETURN(MMDiTConfig m, derive_mmdit_config(index));
      j = {{"depth", m.depth},
           {"hidden", m.hidden},
           {"heads", m.heads},
           {"head_dim", m.head_dim},
           {"patch_size", m.patch_size},
           {"in_channels", m.in_channels},
           {"out_channels", m.out_channels},
           {"pos_embed_max_size", m.pos_embed_max_size},
           {"adm_in_channels", m.adm_in_channels},
           {"context_dim", m.context_dim},
           {"mlp_hidden", m.mlp_hidden},
           {"x_block_self_attn_layers", m.x_block_self_attn_layers},
           {"qk_norm", std::string(qk_norm_name(m.qk_norm))}};
      std::snprintf(buf, sizeof buf,
                    "depth %d, hidden %d, heads %d x %d, patch %d, channels %d -> %d, "
                    "pos_embed %dx%d, adm_in %d, context_dim %d, mlp %d, qk_norm %s, "
                    "dual-attention layers %s",
                    m.depth, m.hidden, m.heads, m.head_dim, m.patch_size, m.in_channels,
                    m.out_channels, m.pos_embed_max_size, m.pos_embed_max_size, m.adm_in_channels,
                    m.context_dim, m.mlp_hidden, std::string(qk_norm_name(m.qk_norm)).c_str(),
                    join_ints(m.x_block_self_attn_layers).c_str());
      break;
    }
    case Component::kVAE: {
      SD35_ASSIGN_OR_RETURN(VAEConfig v, derive_vae_config(index));
      j = {{"ch", v.ch},
           {"ch_mult", v.ch_mult},
           {"num_res_blocks", v.num_res_blocks},
           {"z_channels", v.z_channels},
           {"image_channels", v.image_channels},
           {"encoder", v.has_encoder},
           {"decoder", v.has_decoder}};
      std::snprintf(buf, sizeof buf, "ch %d, ch_mult %s, res blocks %d, z %d, encoder %s, decoder %s",
                    v.ch, join_ints(v.ch_mult).c_str(), v.num_res_blocks, v.z_channels,
                    v.has_encoder ? "yes" : "no", v.has_decoder ? "yes" : "no");
      break;
    }
    case Component::kClipL:
    case Component::kClipG: {
      SD35_ASSIGN_OR_RETURN(ClipConfig k, derive_clip_config(index, c, ov));
      j = {{"layers", k.layers},
           {"width", k.width},
           {"heads", k.heads},
           {"heads_source", k.heads_source},
           {"intermediate", k.intermediate},
           {"vocab", k.vocab},
           {"positions", k.positions},
           {"activation", k.activation},
           {"projection", k.has_projection ? ordered_json(k.projection_dim) : ordered_json()}};
      std::snprintf(buf, sizeof buf,
                    "layers %d, width %d, heads %d (%s), mlp %d, vocab %d, positions %d, %s, "
                    "projection %s",
                    k.layers, k.width, k.heads, k.heads_source.c_str(), k.intermediate, k.vocab,
                    k.positions, k.activation.c_str(),
                    k.has_projection ? std::to_string(k.projection_dim).c_str() : "none");
      break;
    }
    case Component::kT5XXL: {
      SD35_ASSIGN_OR_RETURN(T5Config t, derive_t5_config(index, ov));
      j = {{"layers", t.layers}, {"d_model", t.d_model}, {"d_ff", t.d_ff},
           {"heads", t.heads},   {"d_kv", t.d_kv},       {"vocab", t.vocab},
           {"num_buckets", t.num_buckets}, {"scaled_fp8", t.scaled_fp8}};
      std::snprintf(buf, sizeof buf,
                    "layers %d, d_model %d, heads %d x %d, d_ff %d, vocab %d, buckets %d%s",
                    t.layers, t.d_model, t.heads, t.d_kv, t.d_ff, t.vocab, t.num_buckets,
                    t.scaled_fp8 ? ", scaled fp8" : "");
      break;
    }
  }
  line = buf;
  return ok_status();
}

int run_inspect(const InspectOptions& opt) {
  std::vector<WeightInput> inputs;
  for (const auto& p : opt.paths) inputs.push_back({p, std::nullopt});
  const std::pair<const std::string*, Component> roles[] = {
      {&opt.mmdit, Component::kMMDiT},   {&opt.vae, Component::kVAE},
      {&opt.clip_l, Component::kClipL},  {&opt.clip_g, Component::kClipG},
      {&opt.t5xxl, Component::kT5XXL}};
  for (const auto& [p, c] : roles)
    if (!p->empty()) inputs.push_back({*p, c});

  ConfigOverrides ov;
  std::vector<std::string> problems;
  for (const auto& h : opt.heads) {
    size_t eq = h.find('=');
    auto role = eq == std::string::npos ? std::nullopt : component_from_name(h.substr(0, eq));
    int n = 0;
    try {
      n = role ? std::stoi(h.substr(eq + 1)) : 0;
    } catch (const std::exception&) {
    }
    if (!role || n <= 0) {
      problems.push_back("--heads '" + h + "': expected ROLE=N, e.g. clip_l=12");
      continue;
    }
    ov.heads[*role] = n;
  }

  ordered_json out;
  auto index_or = inputs.empty() ? Result<std::unique_ptr<WeightIndex>>(
                                       invalid_argument("no weight files or folders given"))
                                 : WeightIndex::open(inputs);
  if (!index_or.ok()) {
    problems.push_back(index_or.status().to_string());
    out["usable"] = false;
    out["problems"] = problems;
    if (opt.json) std::printf("%s\n", out.dump(2).c_str());
    else std::fprintf(stderr, "error: %s\n", index_or.status().to_string().c_str());
    return 1;
  }
  const WeightIndex& index = **index_or;

  std::string text = "files:\n";
  ordered_json files = ordered_json::array();
  for (const FileReport& r : index.file_reports()) {
    std::string comps;
    for (const auto& c : r.components) comps += (comps.empty() ? "" : "; ") + c;
    text += "  " + r.path + " (" + human_bytes(r.size) + ", " + std::to_string(r.tensors) +
            " tensors): " + (comps.empty() ? "no model weights, ignored" : comps) + "\n";
    files.push_back({{"path", r.path},
                     {"bytes", r.size},
                     {"tensors", r.tensors},
                     {"components", r.components},
                     {"ignored_tensors", r.ignored_tensors}});
  }
  out["files"] = files;

  ordered_json comps = ordered_json::object();
  std::vector<std::string> usable, absent;
  for (Component c : kAllComponents) {
    const ComponentSources* cs = index.component(c);
    const std::string name(component_name(c));
    if (!cs) {
      absent.push_back(name);
      continue;
    }
    std::map<std::string, size_t> dtypes;
    uint64_t bytes = 0;
    for (const auto& t : cs->tensors) {
      ++dtypes[std::string(dtype_name(t.dtype))];
      for (const auto& p : t.parts) bytes += p.info->nbytes;
    }
    ordered_json cj;
    cj["layout"] = std::string(layout_name(cs->layout));
    cj["files"] = cs->files;
    if (!cs->prefix.empty()) cj["prefix"] = cs->prefix;
    if (!cs->role_reason.empty()) cj["role"] = cs->role_reason;
    cj["tensors"] = cs->tensors.size();
    cj["bytes"] = bytes;
    cj["dtypes"] = dtypes;

    std::string dt;
    for (const auto& [d, n] : dtypes) dt += (dt.empty() ? "" : ", ") + d + " x" + std::to_string(n);
    text += name + ": " + std::to_string(cs->tensors.size()) + " tensors (" + dt + "), " +
            human_bytes(bytes) + ", " + std::string(layout_name(cs->layout)) + " layout";
    if (!cs->role_reason.empty() && is_clip(c)) text += ", role from " + cs->role_reason;
    text += "\n";

    ordered_json cfg;
    std::string line;
    Status st = describe_config(index, c, ov, cfg, line);
    std::vector<std::string> cprob;
    if (st.ok()) {
      cj["config"] = cfg;
      text += "  " + line + "\n";
      auto specs = weight_specs_for(index, c, ov);
      Status v = specs.ok() ? validate_weights(index, c, *specs) : specs.status();
      if (!v.ok()) cprob.push_back(v.to_string());
    } else {
      cprob.push_back(st.to_string());
    }
    for (const auto& p : cprob) text += "  problem: " + p + "\n";
    cj["problems"] = cprob;
    cj["usable"] = cprob.empty();
    (cprob.empty() ? usable : absent).push_back(name);
    if (!cprob.empty()) problems.insert(problems.end(), cprob.begin(), cprob.end());
    comps[name] = cj;
  }
  out["components"] = comps;
  if (usable.empty() && problems.empty()) problems.push_back("no model weights found");
  out["notes"] = index.notes();
  out["problems"] = problems;
  const bool ok = problems.empty();
  out["usable"] = ok;

  if (opt.json) {
    std::printf("%s\n", out.dump(2).c_str());
    return ok ? 0 : 1;
  }
  for (const auto& n : index.notes()) text += "note: " + n + "\n";
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? std::string("none") : s;
  };
  if (ok) {
    text += "usable: " + join(usable) + "\n";
    if (!absent.empty()) text += "not present: " + join(absent) + "\n";
    std::fputs(text.c_str(), stdout);
    return 0;
  }
  std::fputs(text.c_str(), stdout);
  std::fprintf(stderr, "error: %zu problem%s:\n", problems.size(), problems.size() == 1 ? "" : "s");
  for (const auto& p : problems) std::fprintf(stderr, "  %s\n", p.c_str());
  return 1;
}

}  // namespace

void register_inspect(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Show the model components, derived configs and problems of weight files");
  cmd->add_option("paths", opt->paths,
                  "safetensors files or folders (a checkpoint, a diffusers folder, a directory "
                  "of single files)");
  cmd->add_option("--mmdit", opt->mmdit, "diffusion model file");
  cmd->add_option("--vae", opt->vae, "VAE file");
  cmd->add_option("--clip-l", opt->clip_l, "CLIP-L text encoder file");
  cmd->add_option("--clip-g", opt->clip_g, "CLIP-G text encoder file");
  cmd->add_option("--t5xxl", opt->t5xxl, "T5-XXL text encoder file");
  cmd->add_option("--heads", opt->heads,
                  "attention heads of a CLIP whose width is not a multiple of 64, ROLE=N "
                  "(e.g. clip_l=2)");
  cmd->add_flag("--json", opt->json, "machine-readable output");
  cmd->callback([opt, &exit_code] { exit_code = run_inspect(*opt); });
}

}  // namespace sd35::cli
