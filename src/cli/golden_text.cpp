// Golden stage "text": goldens_text.safetensors (fixtures README, family (c)).
//
// Cases are discovered by name: every "<prefix>.input_ids" where <prefix> is "clip_l" or
// "clip_g" (a CLIP tower) or starts with "t5xxl." (one T5 sequence, e.g. "t5xxl.len77").
// Every other field of the prefix is compared with what the encoder reports through its
// observe callback under that name (embeddings, layer{i}_out, block{i}_out, position_bias,
// last_hidden_state, penultimate, pooled, pooled_projected), plus the outputs SD3 uses:
// sd3_hidden (= ClipOutputs::hidden), sd3_pooled (= ClipOutputs::pooled). A field the model
// does not report fails. Nothing here knows the set's dimensions or sequence lengths.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/golden.h"
#include "models/clip/clip.h"
#include "models/t5/t5.h"

namespace sd35::cli::golden {
namespace {

constexpr std::string_view kFile = "goldens_text.safetensors";

// fixtures README "Recommended tolerances": CLIP / T5 hidden states and pooled outputs
// abs 1e-4 + rel 1e-4 (measured floors: fp32 vs fp64 2.5e-7 relative; ComfyUI's own code
// reproduces them exactly). The text encoders always run in f32 (DESIGN.md), so the bf16
// compute flag of the command does not apply here.
constexpr Tolerance kTol{1e-4, 1e-4};

using Observed = std::map<std::string, Tensor, std::less<>>;

// Golden ids come back as f32 copies (exact below 2^24); the encoders take int32.
Result<Tensor> ids_of(const Tensor& f) {
  SD35_ASSIGN_OR_RETURN(Tensor ids, Tensor::zeros(f.shape(), DType::kI32));
  const float* s = f.data_as<const float>();
  int32_t* d = ids.data_as<int32_t>();
  for (int64_t i = 0; i < f.numel(); ++i) d[i] = int32_t(s[i]);
  return ids;
}

// Compares every field of `fields` but input_ids against `observed`; `ms` goes on the first.
void report_fields(StageContext& ctx, const std::string& prefix,
                   const std::vector<std::string>& fields, const Observed& observed,
                   const Status& observe_status, double ms) {
  bool first = true;
  for (const auto& f : fields) {
    if (f == "input_ids") continue;
    const std::string name = prefix + "." + f;
    auto golden = ctx.set.load(kFile, name);
    if (!golden.ok()) {
      ctx.report(failed_case(name, kTol, golden.status().to_string()));
      continue;
    }
    auto it = observed.find(f);
    if (it == observed.end()) {
      ctx.report(failed_case(
          name, kTol,
          observe_status.ok() ? "not reported by the encoder" : observe_status.to_string()));
      continue;
    }
    CaseResult r = compare(name, it->second, *golden, kTol);
    if (first) r.ms = ms;
    first = false;
    ctx.report(std::move(r));
  }
}

// An observe callback that keeps f32 copies of the named tensors (valid only during the call).
std::function<void(std::string_view, const Tensor&)> collector(StageContext& ctx,
                                                             Observed& observed, Status& status) {
  return [&ctx, &observed, &status](std::string_view n, const Tensor& v) {
    auto copy = ctx.to_host(v);
    if (copy.ok())
      observed[std::string(n)] = std::move(*copy);
    else if (status.ok())
      status = copy.status();
  };
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

Status run_clip(StageContext& ctx, const WeightIndex& index, Component role,
                const std::string& prefix, const std::vector<std::string>& fields) {
  if (!index.has(role)) {
    return not_found(ctx.set.dir() + ": no " + std::string(component_name(role)) +
                     " weights among the set's model files");
  }
  auto model_or = ClipTextModel::load(index, role, {}, ctx.placer);
  if (!model_or.ok()) {
    return model_or.status().with_context("loading " + std::string(component_name(role)) + ": ");
  }
  const ClipTextModel& model = **model_or;
  const ClipConfig& c = model.config();
  ctx.info(std::string(component_name(role)) + ": " + std::to_string(c.layers) + " layers, width " +
           std::to_string(c.width) + ", " + std::to_string(c.heads) + " heads (" + c.heads_source +
           "), " + c.activation + ", pooled " + std::to_string(model.pooled_width()) +
           (role == Component::kClipG ? " (projected)" : " (not projected)"));
  SD35_ASSIGN_OR_RETURN(Tensor ids_f, ctx.set.load(kFile, prefix + ".input_ids"));
  SD35_ASSIGN_OR_RETURN(Tensor ids, ids_of(ids_f));
  if (ids.ndim() != 2) return data_loss(prefix + ".input_ids is not [B, L]");
  ClipOutputs out;
  SD35_ASSIGN_OR_RETURN(out.hidden,
                        ctx.output(Shape{ids.size(0), ids.size(1), c.width}, DType::kF32));
  SD35_ASSIGN_OR_RETURN(out.pooled,
                        ctx.output(Shape{ids.size(0), model.pooled_width()}, DType::kF32));
  Observed observed;
  Status observe_status;
  const auto t0 = std::chrono::steady_clock::now();
  Status st;
  {
    ArenaScope scope(ctx.arena);
    st = model.encode(ctx.backend, ctx.arena, ids, out, collector(ctx, observed, observe_status));
  }
  const double ms = ms_since(t0);
  if (!st.ok()) {
    for (const auto& f : fields)
      if (f != "input_ids")
        ctx.report(failed_case(prefix + "." + f, kTol, "encode: " + st.to_string()));
    return ok_status();
  }
  SD35_ASSIGN_OR_RETURN(observed["sd3_hidden"], ctx.to_host(out.hidden));
  SD35_ASSIGN_OR_RETURN(observed["sd3_pooled"], ctx.to_host(out.pooled));
  report_fields(ctx, prefix, fields, observed, observe_status, ms);
  return ok_status();
}

Status run_t5(StageContext& ctx, const T5Encoder& model, const std::string& prefix,
              const std::vector<std::string>& fields) {
  SD35_ASSIGN_OR_RETURN(Tensor ids_f, ctx.set.load(kFile, prefix + ".input_ids"));
  SD35_ASSIGN_OR_RETURN(Tensor ids, ids_of(ids_f));
  if (ids.ndim() != 2) return data_loss(prefix + ".input_ids is not [B, L]");
  SD35_ASSIGN_OR_RETURN(
      Tensor out,
      ctx.output(Shape{ids.size(0), ids.size(1), model.config().d_model}, DType::kF32));
  Observed observed;
  Status observe_status;
  const auto t0 = std::chrono::steady_clock::now();
  Status st;
  {
    ArenaScope scope(ctx.arena);
    st = model.encode(ctx.backend, ctx.arena, ids, out, collector(ctx, observed, observe_status));
  }
  const double ms = ms_since(t0);
  if (!st.ok()) {
    for (const auto& f : fields)
      if (f != "input_ids")
        ctx.report(failed_case(prefix + "." + f, kTol, "encode: " + st.to_string()));
    return ok_status();
  }
  // The encoder's output, not only what it observed.
  SD35_ASSIGN_OR_RETURN(observed["last_hidden_state"], ctx.to_host(out));
  report_fields(ctx, prefix, fields, observed, observe_status, ms);
  return ok_status();
}

Status run_text(StageContext& ctx) {
  const auto* entries = ctx.set.entries(kFile);
  if (!entries) {
    ctx.skipped = "manifest.json lists no " + std::string(kFile);
    return ok_status();
  }
  // prefix -> fields, in manifest order; a prefix counts only with input_ids.
  std::vector<std::pair<std::string, std::vector<std::string>>> cases;
  auto case_of = [](const std::string& name) -> std::pair<std::string, std::string> {
    // clip_l.<field>, clip_g.<field>, t5xxl.<seq>.<field>
    const size_t d1 = name.find('.');
    if (d1 == std::string::npos) return {};
    const std::string enc = name.substr(0, d1);
    if (enc == "clip_l" || enc == "clip_g") return {enc, name.substr(d1 + 1)};
    if (enc != "t5xxl") return {};
    const size_t d2 = name.find('.', d1 + 1);
    if (d2 == std::string::npos) return {};
    return {name.substr(0, d2), name.substr(d2 + 1)};
  };
  for (const auto& e : *entries) {
    auto [prefix, field] = case_of(e.name);
    if (prefix.empty() || field.empty()) continue;
    auto it =
        std::find_if(cases.begin(), cases.end(), [&](const auto& p) { return p.first == prefix; });
    if (it == cases.end()) it = cases.insert(cases.end(), {prefix, {}});
    it->second.push_back(field);
  }
  std::erase_if(cases, [](const auto& c) {
    return std::find(c.second.begin(), c.second.end(), "input_ids") == c.second.end();
  });
  if (cases.empty()) {
    ctx.skipped = "no clip_l/clip_g/t5xxl.* case with input_ids in " + std::string(kFile);
    return ok_status();
  }
  SD35_ASSIGN_OR_RETURN(const WeightIndex* index, ctx.set.weights());

  std::unique_ptr<T5Encoder> t5;
  for (const auto& [prefix, fields] : cases) {
    if (prefix == "clip_l" || prefix == "clip_g") {
      const Component role = prefix == "clip_l" ? Component::kClipL : Component::kClipG;
      SD35_RETURN_IF_ERROR(run_clip(ctx, *index, role, prefix, fields));
      continue;
    }
    if (!t5) {
      if (!index->has(Component::kT5XXL)) {
        return not_found(ctx.set.dir() + ": no T5 weights among the set's model files");
      }
      const auto t0 = std::chrono::steady_clock::now();
      auto loaded = T5Encoder::load(*index, {}, ctx.placer);
      if (!loaded.ok()) return loaded.status().with_context("loading the T5: ");
      t5 = std::move(*loaded);
      const T5Config& c = t5->config();
      char buf[64];
      std::snprintf(buf, sizeof buf, ", loaded in %.0f ms", ms_since(t0));
      ctx.info("t5xxl: " + std::to_string(c.layers) + " blocks, d_model " +
               std::to_string(c.d_model) + ", " + std::to_string(c.heads) + " heads x " +
               std::to_string(c.d_kv) + ", d_ff " + std::to_string(c.d_ff) +
               (c.scaled_fp8 ? ", scaled fp8" : "") +
               (t5->fp8_embedding_fix() ? ", fp8 (nan_to_num on embeddings)" : "") + buf);
    }
    SD35_RETURN_IF_ERROR(run_t5(ctx, *t5, prefix, fields));
  }
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("text", "CLIP-L, CLIP-G and T5 hidden states and pooled outputs", run_text);

}  // namespace sd35::cli::golden
