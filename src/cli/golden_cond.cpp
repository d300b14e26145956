// Golden stage "cond": goldens_cond.safetensors (fixtures README, family (d)), ComfyUI's
// SD3ClipModel.encode_token_weights.
//
// A case is every name prefix <case> with tokens_l, tokens_g and tokens_t5xxl ([chunks, len]
// int32 ids) and one or more variants <variant>.context / <variant>.pooled. The conditioning
// is computed from the golden token ids (so this stage checks the encoders and the assembly,
// independent of the tokenizer); the tokenizer is checked separately against the same ids
// when the manifest's description names the prompt ("... ids for '<prompt>' ..."). Variants
// by name: with_t5 (all encoders), no_t5, no_l / no_clip_l, no_g / no_clip_g, t5_only, none.
// The zero-pad width of a variant without T5 and the pooled width are the set's MMDiT
// context_dim / adm_in_channels when the set has an MMDiT (what a pipeline passes), else the
// golden's own shape.
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/golden.h"
#include "pipeline/conditioning.h"

namespace sd35::cli::golden {
namespace {

constexpr std::string_view kFile = "goldens_cond.safetensors";

// fixtures README, "Recommended tolerances": CLIP / T5 hidden states, pooled, conditioning
// abs 1e-4 + rel 1e-4 (measured floors ~2.5e-7 relative; ComfyUI's own code matches exactly).
constexpr Tolerance kTol{1e-4, 1e-4};
constexpr Tolerance kExact{0.0, 0.0};

bool has(const std::vector<std::string>& fields, std::string_view f) {
  for (const auto& x : fields)
    if (x == f) return true;
  return false;
}

// Encoder selection of a variant name; nullopt when the name is not known.
std::optional<EncodeOptions> variant_options(std::string_view v) {
  EncodeOptions o;
  if (v == "with_t5" || v == "all") return o;
  if (v == "no_t5" || v == "clip_only") {
    o.use_t5 = false;
  } else if (v == "no_l" || v == "no_clip_l") {
    o.use_clip_l = false;
  } else if (v == "no_g" || v == "no_clip_g") {
    o.use_clip_g = false;
  } else if (v == "t5_only") {
    o.use_clip_l = o.use_clip_g = false;
  } else if (v == "none" || v == "zeros") {
    o.use_clip_l = o.use_clip_g = o.use_t5 = false;
  } else {
    return std::nullopt;
  }
  return o;
}

// The prompt quoted in a token golden's description, as Python's repr writes it ('...' or
// "..." with backslash escapes); nullopt when there is none.
std::optional<std::string> prompt_from_desc(const std::string& desc) {
  const size_t at = desc.find("ids for ");
  if (at == std::string::npos) return std::nullopt;
  size_t i = at + 8;
  if (i >= desc.size() || (desc[i] != '\'' && desc[i] != '"')) return std::nullopt;
  const char q = desc[i++];
  std::string out;
  for (; i < desc.size(); ++i) {
    const char c = desc[i];
    if (c == q) return out;
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i >= desc.size()) return std::nullopt;
    switch (desc[i]) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      default: return std::nullopt;  // \x, \u escapes: not worth guessing
    }
  }
  return std::nullopt;
}

// Descriptions of goldens_cond entries (GoldenSet keeps names and shapes only).
std::map<std::string, std::string> descriptions(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::ifstream in(dir + "/manifest.json");
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("files")) return out;
  const auto& files = j["files"];
  if (!files.is_object() || !files.contains(std::string(kFile))) return out;
  for (const auto& [name, e] : files[std::string(kFile)].items())
    if (e.is_object() && e.contains("desc") && e["desc"].is_string())
      out[name] = e["desc"].get<std::string>();
  return out;
}

// A golden [chunks, len] (loaded as f32; ids < 2^24 are exact) as token chunks of weight 1.
Result<TokenChunks> chunks_of(const Tensor& t, const std::string& name) {
  if (t.ndim() != 2) return data_loss(name + ": expected [chunks, len], got " + t.describe());
  TokenChunks c;
  const float* p = t.data_as<const float>();
  for (int64_t r = 0; r < t.size(0); ++r) {
    std::vector<int32_t> ids(size_t(t.size(1)));
    for (int64_t j = 0; j < t.size(1); ++j) ids[size_t(j)] = int32_t(p[r * t.size(1) + j]);
    c.ids.push_back(std::move(ids));
    c.weights.emplace_back(size_t(t.size(1)), 1.0f);
  }
  return c;
}

Result<Tensor> tensor_of(const TokenChunks& c) {
  const int64_t rows = int64_t(c.ids.size()), len = rows ? int64_t(c.ids[0].size()) : 0;
  SD35_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros({rows, len}, DType::kF32));
  for (int64_t r = 0; r < rows; ++r) {
    if (int64_t(c.ids[size_t(r)].size()) != len) return invalid_argument("ragged token chunks");
    for (int64_t j = 0; j < len; ++j)
      t.data_as<float>()[r * len + j] = float(c.ids[size_t(r)][size_t(j)]);
  }
  return t;
}

Status run_cond(StageContext& ctx) {
  const auto* entries = ctx.set.entries(kFile);
  if (!entries) {
    ctx.skipped = "manifest.json lists no " + std::string(kFile);
    return ok_status();
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> cases;
  for (auto& c : group_cases(*entries)) {
    bool complete = true;
    for (const char* f : {"tokens_l", "tokens_g", "tokens_t5xxl"})
      complete = complete && has(c.second, f);
    if (complete) cases.push_back(std::move(c));
  }
  if (cases.empty()) {
    ctx.skipped = "no case with tokens_l, tokens_g, tokens_t5xxl in " + std::string(kFile);
    return ok_status();
  }

  SD35_ASSIGN_OR_RETURN(const WeightIndex* index, ctx.set.weights());
  const auto t0 = std::chrono::steady_clock::now();
  TextEncodersOptions teo;
  teo.placer = ctx.placer;  // a device backend: the encoders' weights on its GPU
  auto te_or = TextEncoders::load(*index, teo);
  if (!te_or.ok()) return te_or.status().with_context("loading the text encoders: ");
  const TextEncoders& te = **te_or;
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::optional<MMDiTConfig> mmdit;
  if (index->has(Component::kMMDiT)) {
    auto c = derive_mmdit_config(*index);
    if (c.ok()) mmdit = *c;
  }
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "text encoders: CLIP-L %s, CLIP-G %s, T5 %s; pad widths from %s; loaded in %.0f ms",
                te.clip_l() ? "yes" : "no", te.clip_g() ? "yes" : "no", te.t5() ? "yes" : "no",
                mmdit ? "the MMDiT config" : "the goldens", load_ms);
  ctx.info(buf);
  const auto descs = descriptions(ctx.set.dir());

  for (const auto& [name, fields] : cases) {
    auto load = [&](std::string_view field) {
      return ctx.set.load(kFile, name + "." + std::string(field));
    };
    SD3Tokens tokens;
    std::pair<const char*, TokenChunks*> token_fields[] = {{"tokens_l", &tokens.clip_l},
                                                           {"tokens_g", &tokens.clip_g},
                                                           {"tokens_t5xxl", &tokens.t5xxl}};
    for (auto& [f, dst] : token_fields) {
      SD35_ASSIGN_OR_RETURN(Tensor t, load(f));
      SD35_ASSIGN_OR_RETURN(*dst, chunks_of(t, name + "." + f));
    }

    // The tokenizer against the golden ids, when the prompt is known.
    auto desc = descs.find(name + ".tokens_l");
    std::optional<std::string> prompt =
        desc != descs.end() ? prompt_from_desc(desc->second) : std::nullopt;
    if (prompt) {
      const SD3Tokens ours = te.tokenizer().tokenize(*prompt);
      for (auto& [f, dst] : token_fields) {
        const TokenChunks& mine = f == std::string_view("tokens_l")   ? ours.clip_l
                                  : f == std::string_view("tokens_g") ? ours.clip_g
                                                                      : ours.t5xxl;
        SD35_ASSIGN_OR_RETURN(Tensor golden, load(f));
        auto t = tensor_of(mine);
        if (!t.ok()) {
          ctx.report(failed_case(name + "." + f, kExact, t.status().to_string()));
          continue;
        }
        ctx.report(compare(name + "." + f, *t, golden, kExact));
      }
    } else {
      ctx.info(name + ": prompt not named in the manifest; token ids not checked");
    }

    // Variants: <variant>.context + <variant>.pooled.
    std::vector<std::string> variants;
    for (const auto& f : fields) {
      const size_t dot = f.rfind('.');
      if (dot == std::string::npos || f.substr(dot + 1) != "context") continue;
      const std::string v = f.substr(0, dot);
      if (has(fields, v + ".pooled")) variants.push_back(v);
    }
    for (const auto& v : variants) {
      SD35_ASSIGN_OR_RETURN(Tensor g_ctx, load(v + ".context"));
      SD35_ASSIGN_OR_RETURN(Tensor g_pooled, load(v + ".pooled"));
      auto opt = variant_options(v);
      if (!opt) {
        ctx.info(name + "." + v + ": unknown variant, not checked");
        continue;
      }
      if (!opt->use_t5 || !te.t5()) {
        opt->context_dim = mmdit ? mmdit->context_dim : int(g_ctx.size(-1));
      }
      opt->pooled_dim = mmdit ? mmdit->adm_in_channels : int(g_pooled.size(-1));
      EncodeStats stats;
      opt->stats = &stats;
      auto c = encode_tokens(ctx.backend, ctx.arena, te, tokens, *opt);
      if (!c.ok()) {
        ctx.report(failed_case(name + "." + v + ".context", kTol, c.status().to_string()));
        continue;
      }
      CaseResult rc = compare(name + "." + v + ".context", c->context, g_ctx, kTol);
      rc.ms = stats.total_s * 1e3;
      ctx.report(std::move(rc));
      ctx.report(compare(name + "." + v + ".pooled", c->pooled, g_pooled, kTol));
    }
  }
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("cond", "SD3 conditioning (CLIP-L/G + T5 assembly), token ids", run_cond);

}  // namespace sd35::cli::golden
