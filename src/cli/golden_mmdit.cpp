// Golden stage "mmdit": goldens_mmdit.safetensors (fixtures README, family (a)).
//
// A case is every name prefix <case> with the fields x, t, context, y and out
// (MMDiTX.forward(x, t, y, context) -> out). Optional fields of a case:
//   dbg.<name>          intermediates, compared with what MMDiTOptions::observe reports under
//                       <name> (x_embedded, t_emb, block{i}.x_out, ...);
//   sigma + denoised    denoised = x - out·sigma (ComfyUI CONST.calculate_denoised), computed
//                       from our out.
// Nothing here knows the set's dimensions, batch sizes or case names.
#include <chrono>
#include <map>
#include <set>

#include "cli/golden.h"
#include "models/mmdit/mmdit.h"

namespace sd35::cli::golden {
namespace {

constexpr std::string_view kFile = "goldens_mmdit.safetensors";

// fixtures README, "Recommended tolerances": MMDiT forward, denoised, debug intermediates
// abs 2e-4 + rel 1e-4 (measured floors: fp32 vs fp64 max rel 8e-7, ComfyUI's own code
// <= 1.5e-6; the margin covers a different summation order in GEMMs and attention).
constexpr Tolerance kF32Tol{2e-4, 1e-4};
// bf16 activations (the fast mode) are not what the goldens were computed with: bf16 rounds
// every stored activation to 2^-9 relative, and ~depth residual blocks accumulate that, in
// proportion to the magnitudes involved. These bounds (tiny-a: max error ~1e-3 of max|golden|)
// are a sanity check that the bf16 path computes the same function, not a precision claim.
constexpr Tolerance kBF16Tol{0.0, 5e-2, 2e-2};

bool has(const std::vector<std::string>& fields, std::string_view f) {
  for (const auto& x : fields)
    if (x == f) return true;
  return false;
}

std::string describe(const MMDiTConfig& c) {
  std::string dual;
  for (int i : c.x_block_self_attn_layers) dual += (dual.empty() ? "" : ",") + std::to_string(i);
  return "MMDiT depth " + std::to_string(c.depth) + ", hidden " + std::to_string(c.hidden) +
         ", patch " + std::to_string(c.patch_size) + ", pos_embed " +
         std::to_string(c.pos_embed_max_size) + ", adm " + std::to_string(c.adm_in_channels) +
         ", context " + std::to_string(c.context_dim) + ", dual [" + dual + "], qk " +
         std::string(qk_norm_name(c.qk_norm));
}

// denoised[b] = x[b] - out[b]·sigma[b] in f32 (as ComfyUI computes it); sigma may be one value
// for the whole batch.
Result<Tensor> denoised_of(const Tensor& x, const Tensor& out, const Tensor& sigma) {
  const int64_t batch = x.ndim() > 0 ? x.size(0) : 1;
  const int64_t per = batch > 0 ? x.numel() / batch : 0;
  if (sigma.numel() != batch && sigma.numel() != 1) {
    return data_loss("sigma has " + std::to_string(sigma.numel()) + " values for batch " +
                     std::to_string(batch));
  }
  SD35_ASSIGN_OR_RETURN(Tensor d, to_f32(out));
  const float* xs = x.data_as<const float>();
  const float* s = sigma.data_as<const float>();
  float* o = d.data_as<float>();
  for (int64_t b = 0; b < batch; ++b) {
    const float sb = s[sigma.numel() == 1 ? 0 : b];
    for (int64_t i = b * per; i < (b + 1) * per; ++i) o[i] = xs[i] - o[i] * sb;
  }
  return d;
}

Status run_mmdit(StageContext& ctx) {
  const auto* entries = ctx.set.entries(kFile);
  if (!entries) {
    ctx.skipped = "manifest.json lists no " + std::string(kFile);
    return ok_status();
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> cases;
  for (auto& c : group_cases(*entries)) {
    bool complete = true;
    for (const char* f : {"x", "t", "context", "y", "out"}) complete = complete && has(c.second, f);
    if (complete) cases.push_back(std::move(c));
  }
  if (cases.empty()) {
    ctx.skipped = "no case with x, t, context, y, out in " + std::string(kFile);
    return ok_status();
  }

  SD35_ASSIGN_OR_RETURN(const WeightIndex* index, ctx.set.weights());
  if (!index->has(Component::kMMDiT)) {
    return not_found(ctx.set.dir() +
                     ": no MMDiT weights (model.diffusion_model.* keys, e.g. model.safetensors) "
                     "among the set's model files");
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto model_or = MMDiT::load(*index, ctx.placer);
  if (!model_or.ok()) return model_or.status().with_context("loading the MMDiT: ");
  const MMDiT& model = **model_or;
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char buf[64];
  std::snprintf(buf, sizeof buf, ", loaded in %.0f ms", load_ms);
  ctx.info(describe(model.config()) + buf);

  const Tolerance tol = ctx.compute == DType::kF32 ? kF32Tol : kBF16Tol;
  for (const auto& [name, fields] : cases) {
    auto load = [&](std::string_view field) {
      return ctx.set.load(kFile, name + "." + std::string(field));
    };
    MMDiTInputs in;
    SD35_ASSIGN_OR_RETURN(in.x, load("x"));
    SD35_ASSIGN_OR_RETURN(in.timesteps, load("t"));
    SD35_ASSIGN_OR_RETURN(in.context, load("context"));
    SD35_ASSIGN_OR_RETURN(in.y, load("y"));
    SD35_ASSIGN_OR_RETURN(Tensor golden_out, load("out"));

    // The debug intermediates this case has goldens for, by the name observe() uses.
    std::map<std::string, Tensor, std::less<>> observed;
    std::vector<std::string> dbg;
    for (const auto& f : fields)
      if (f.rfind("dbg.", 0) == 0 && f.size() > 4) dbg.push_back(f.substr(4));
    MMDiTOptions options;
    options.compute = ctx.compute;
    Status observe_status;
    const std::set<std::string, std::less<>> wanted(dbg.begin(), dbg.end());
    if (!dbg.empty()) {
      options.observe = [&](std::string_view n, const Tensor& v) {
        if (!wanted.count(n)) return;
        // The tensor is only valid during the call, and may be a strided or bf16 view:
        // an f32 copy keeps it.
        auto copy = ctx.to_host(v);
        if (copy.ok())
          observed[std::string(n)] = std::move(*copy);
        else if (observe_status.ok())
          observe_status = copy.status();
      };
    }

    // Device backends: inputs up (timesteps stay host values, as the engine passes them).
    MMDiTInputs din = in;
    SD35_ASSIGN_OR_RETURN(din.x, ctx.to_device(in.x));
    SD35_ASSIGN_OR_RETURN(din.context, ctx.to_device(in.context));
    SD35_ASSIGN_OR_RETURN(din.y, ctx.to_device(in.y));
    SD35_ASSIGN_OR_RETURN(Tensor dout, ctx.output(golden_out.shape(), DType::kF32));
    const auto f0 = std::chrono::steady_clock::now();
    Status st;
    {
      ArenaScope scope(ctx.arena);
      st = model.forward(ctx.backend, ctx.arena, din, dout, options);
      if (st.ok()) st = ctx.backend.synchronize();
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - f0).count();
    const std::string out_name = name + ".out";
    if (!st.ok()) {
      ctx.report(failed_case(out_name, tol, "forward: " + st.to_string()));
      continue;
    }
    SD35_ASSIGN_OR_RETURN(Tensor out, ctx.to_host(dout));
    CaseResult r = compare(out_name, out, golden_out, tol);
    r.ms = ms;
    ctx.report(std::move(r));

    for (const auto& d : dbg) {
      const std::string dname = name + ".dbg." + d;
      SD35_ASSIGN_OR_RETURN(Tensor golden, load("dbg." + d));
      auto it = observed.find(d);
      if (it == observed.end()) {
        ctx.report(failed_case(dname, tol,
                               observe_status.ok() ? "not reported by MMDiTOptions::observe"
                                                   : observe_status.to_string()));
        continue;
      }
      // The model may report [L, D] for a [1, L, D] golden: compare without size-1 dims.
      ctx.report(compare(dname, it->second, golden, tol, /*squeeze=*/true));
    }

    if (has(fields, "sigma") && has(fields, "denoised")) {
      SD35_ASSIGN_OR_RETURN(Tensor sigma, load("sigma"));
      SD35_ASSIGN_OR_RETURN(Tensor golden, load("denoised"));
      auto d = denoised_of(in.x, out, sigma);
      if (!d.ok()) return d.status().with_context(ctx.set.dir() + ": " + name + ": ");
      ctx.report(compare(name + ".denoised", *d, golden, tol));
    }
  }
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("mmdit", "MMDiT forward, debug intermediates, denoised", run_mmdit);

}  // namespace sd35::cli::golden
