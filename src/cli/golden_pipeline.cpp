// Golden stage "pipeline": goldens_pipeline.safetensors (fixtures README, family (g)),
// ComfyUI's KSampler txt2img / img2img path run end to end through the Engine.
//
// A case is a name prefix with `sigmas` and `samples`. What the file does not store is taken
// from the data, never from tiny-a's README values: the noise and the sigma schedule are the
// golden's own (noise and schedules have their own stages), the sampler is the case name
// when it is a ComfyUI sampler name (a case with `input_u8`, img2img, uses euler as the
// fixtures do), the seed of the ancestral noise is `<case>.seed`, and the CFG scale is solved
// from a case that stores denoised_cond / denoised_uncond / denoised (least squares). The
// conditioning is the file's `cond.*` / `uncond.*`. Checked: per model call x and denoised
// (and the cond/uncond predictions when stored), samples, latent (process_out), for img2img
// the encoded latent_in, and image_u8 (|diff| <= 1 and <= 0.5% of pixels differing).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include "cli/golden.h"
#include "models/vae/vae.h"
#include "pipeline/engine.h"

namespace sd35::cli::golden {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kFile = "goldens_pipeline.safetensors";

// fixtures README "Recommended tolerances": pipeline per-step x / denoised, final latents abs
// 1e-3 (fp32 vs fp64 floor 5.4e-6 after 4 Euler steps); uint8 image |diff| <= 1 everywhere
// and <= 0.5% of pixels differing. bf16 activations drift far more over several steps: a
// loose bound that still catches wiring mistakes (wrong sign, wrong conditioning, wrong σ).
constexpr Tolerance kF32Tol{1e-3, 0.0};
constexpr Tolerance kBF16Tol{5e-2, 5e-2, 2e-2};

bool has(const std::vector<std::string>& fields, std::string_view f) {
  return std::find(fields.begin(), fields.end(), f) != fields.end();
}

// uint8 images: pass when max |diff| <= max_diff and at most `max_frac` of values differ.
CaseResult compare_u8(std::string name, const Tensor& ours, const Tensor& golden, int max_diff,
                      double max_frac) {
  CaseResult r;
  r.name = std::move(name);
  r.tol = Tolerance{double(max_diff), 0.0};
  if (ours.dtype() != DType::kU8 || golden.dtype() != DType::kU8 || !ours.is_contiguous() ||
      !golden.is_contiguous() || ours.numel() != golden.numel()) {
    r.note = "shape/dtype mismatch: ours " + ours.describe() + ", golden " + golden.describe();
    return r;
  }
  const uint8_t* o = ours.data_as<const uint8_t>();
  const uint8_t* gp = golden.data_as<const uint8_t>();
  int64_t differ = 0;
  for (int64_t i = 0; i < ours.numel(); ++i) {
    const double d = std::fabs(double(o[i]) - double(gp[i]));
    r.max_abs = std::max(r.max_abs, d);
    differ += d != 0;
  }
  const double frac = double(differ) / double(std::max<int64_t>(1, ours.numel()));
  r.pass = r.max_abs <= max_diff && frac <= max_frac;
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3f%% of values differ (limit %.1f%%)", 100 * frac,
                100 * max_frac);
  r.note = buf;
  return r;
}

// Least-squares cfg from denoised = u + (c − u)·cfg.
std::optional<double> solve_cfg(const Tensor& c, const Tensor& u, const Tensor& d) {
  const float *cp = c.data_as<const float>(), *up = u.data_as<const float>(),
              *dp = d.data_as<const float>();
  double num = 0, den = 0;
  for (int64_t i = 0; i < c.numel(); ++i) {
    const double a = double(cp[i]) - up[i];
    num += a * (double(dp[i]) - up[i]);
    den += a * a;
  }
  if (den <= 0) return std::nullopt;
  return std::round(num / den * 1e4) / 1e4;  // the stored scale is a short decimal
}

std::vector<WeightInput> set_model_files(const std::string& dir) {
  std::vector<WeightInput> inputs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string file = e.path().filename().string();
    if (e.path().extension() == ".safetensors" && file.rfind("goldens_", 0) != 0 &&
        e.is_regular_file(ec))
      inputs.push_back({e.path().string(), std::nullopt});
  }
  std::sort(inputs.begin(), inputs.end(),
            [](const WeightInput& a, const WeightInput& b) { return a.path < b.path; });
  return inputs;
}

Status run_pipeline(StageContext& ctx) {
  const auto* entries = ctx.set.entries(kFile);
  if (!entries) {
    ctx.skipped = "manifest.json lists no " + std::string(kFile);
    return ok_status();
  }
  auto cases = group_cases(*entries);
  std::map<std::string, std::vector<std::string>> by_name(cases.begin(), cases.end());
  auto cond_of = [&](const std::string& side) -> Result<Conditioning> {
    auto it = by_name.find(side);
    if (it == by_name.end() || !has(it->second, "context") || !has(it->second, "pooled"))
      return not_found(std::string(kFile) + " has no " + side + ".context / " + side + ".pooled");
    Conditioning c;
    SD35_ASSIGN_OR_RETURN(c.context, ctx.set.load(kFile, side + ".context"));
    SD35_ASSIGN_OR_RETURN(c.pooled, ctx.set.load(kFile, side + ".pooled"));
    return c;
  };
  std::vector<std::pair<std::string, std::vector<std::string>>> runs;
  for (auto& c : cases)
    if (has(c.second, "sigmas") && has(c.second, "samples")) runs.push_back(c);
  if (runs.empty()) {
    ctx.skipped = "no case with sigmas and samples in " + std::string(kFile);
    return ok_status();
  }
  SD35_ASSIGN_OR_RETURN(Conditioning pos, cond_of("cond"));
  SD35_ASSIGN_OR_RETURN(Conditioning neg, cond_of("uncond"));

  // The CFG scale from the first case that stores the separate predictions of step 0.
  std::optional<double> cfg;
  for (const auto& [name, f] : runs) {
    if (!has(f, "step0.denoised_cond") || !has(f, "step0.denoised_uncond") ||
        !has(f, "step0.denoised"))
      continue;
    SD35_ASSIGN_OR_RETURN(Tensor c, ctx.set.load(kFile, name + ".step0.denoised_cond"));
    SD35_ASSIGN_OR_RETURN(Tensor u, ctx.set.load(kFile, name + ".step0.denoised_uncond"));
    SD35_ASSIGN_OR_RETURN(Tensor d, ctx.set.load(kFile, name + ".step0.denoised"));
    cfg = solve_cfg(c, u, d);
    if (cfg) break;
  }
  if (!cfg) {
    ctx.skipped = "no case stores denoised_cond/denoised_uncond, so the CFG scale is unknown";
    return ok_status();
  }

  const auto t0 = std::chrono::steady_clock::now();
  EngineOptions eo;
  eo.models = set_model_files(ctx.set.dir());
  eo.backend = ctx.backend_name;
  eo.device = ctx.device;
  eo.compute = ctx.compute;
  auto engine_or = Engine::load(eo);
  if (!engine_or.ok()) return engine_or.status().with_context("loading the engine: ");
  const Engine& engine = **engine_or;
  SD35_ASSIGN_OR_RETURN(auto ws, engine.make_workspace());
  char buf[160];
  std::snprintf(
      buf, sizeof buf, "engine loaded in %.0f ms; cfg %.4g (solved from the goldens)",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
      *cfg);
  ctx.info(buf);
  const Tolerance tol = ctx.compute == DType::kF32 ? kF32Tol : kBF16Tol;
  // GoldenSet::load converts to f32 and refuses uint8: the images are read from the file.
  SD35_ASSIGN_OR_RETURN(auto raw_file,
                        SafetensorsFile::open(ctx.set.dir() + "/" + std::string(kFile)));
  auto load_u8 = [&](const std::string& name) -> Result<Tensor> {
    SD35_ASSIGN_OR_RETURN(Tensor t, raw_file->tensor(name));
    if (t.dtype() != DType::kU8)
      return data_loss(std::string(kFile) + ": " + name + " is not uint8: " + t.describe());
    return t;
  };

  for (const auto& [name, fields] : runs) {
    auto load = [&](const std::string& field) { return ctx.set.load(kFile, name + "." + field); };
    const bool img2img = has(fields, "input_u8");
    auto sampler = sampler_from_name(name);
    if (!sampler.ok() && img2img) sampler = Sampler::kEuler;
    if (!sampler.ok()) {
      ctx.info(name + ": not a sampler name and not img2img; not checked");
      continue;
    }
    SampleParams sp;
    sp.sampler = *sampler;
    sp.cfg = *cfg;
    SD35_ASSIGN_OR_RETURN(Tensor sig, load("sigmas"));
    sp.sigmas =
        std::vector<float>(sig.data_as<const float>(), sig.data_as<const float>() + sig.numel());
    SD35_ASSIGN_OR_RETURN(sp.noise, load("noise"));
    if (has(fields, "seed")) {
      SD35_ASSIGN_OR_RETURN(Tensor s, load("seed"));
      sp.seed = uint64_t(int64_t(s.data_as<const float>()[0]));
    }

    // The initial latent: zeros (txt2img) or our VAE encode of the input (img2img).
    Tensor latent;
    if (img2img) {
      SD35_ASSIGN_OR_RETURN(Tensor in_u8, load_u8(name + ".input_u8"));
      auto l = engine.vae_encode(*ws, in_u8);
      if (!l.ok()) {
        ctx.report(failed_case(name + ".latent_in", tol, l.status().to_string()));
        continue;
      }
      latent = *l;
      if (has(fields, "latent_in")) {
        SD35_ASSIGN_OR_RETURN(Tensor g, load("latent_in"));
        ctx.report(compare(name + ".latent_in", latent, g, tol));
      }
    } else {
      SD35_ASSIGN_OR_RETURN(latent, Tensor::zeros(sp.noise.shape(), DType::kF32));
    }

    // Per model call: x and the predictions (copied, the observer's tensors are transient).
    std::vector<std::map<std::string, Tensor>> steps;
    sp.observe = [&](const DenoiseStep& s) {
      std::map<std::string, Tensor> m;
      auto keep = [&](const char* k, const Tensor* t) {
        if (!t) return;
        auto c = to_f32(*t);
        if (c.ok()) m[k] = *c;
      };
      keep("x", s.x);
      keep("denoised", s.denoised);
      keep("denoised_cond", s.denoised_cond);
      keep("denoised_uncond", s.denoised_uncond);
      steps.push_back(std::move(m));
    };
    const auto s0 = std::chrono::steady_clock::now();
    auto samples = engine.sample(*ws, pos, neg, latent, sp);
    const double sample_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
    if (!samples.ok()) {
      ctx.report(failed_case(name + ".samples", tol, samples.status().to_string()));
      continue;
    }
    for (size_t i = 0;; ++i) {
      const std::string prefix = "step" + std::to_string(i) + ".";
      if (!has(fields, prefix + "x")) break;
      for (const char* f : {"x", "denoised_cond", "denoised_uncond", "denoised"}) {
        if (!has(fields, prefix + f)) continue;
        SD35_ASSIGN_OR_RETURN(Tensor g, load(prefix + f));
        if (i >= steps.size() || !steps[i].count(f)) {
          ctx.report(failed_case(name + "." + prefix + f, tol, "the model was not called"));
          continue;
        }
        ctx.report(compare(name + "." + prefix + f, steps[i][f], g, tol));
      }
    }
    SD35_ASSIGN_OR_RETURN(Tensor g_samples, load("samples"));
    CaseResult rs = compare(name + ".samples", *samples, g_samples, tol);
    rs.ms = sample_ms;
    ctx.report(std::move(rs));
    if (has(fields, "latent")) {
      SD35_ASSIGN_OR_RETURN(Tensor g, load("latent"));
      // samples is host memory; a device backend's ops take device tensors.
      SD35_ASSIGN_OR_RETURN(Tensor dsamples, ctx.to_device(*samples));
      SD35_ASSIGN_OR_RETURN(Tensor dlatent, ctx.output(samples->shape(), DType::kF32));
      SD35_RETURN_IF_ERROR(sd3_latent_to_vae(ctx.backend, dsamples, dlatent));
      SD35_ASSIGN_OR_RETURN(Tensor vae_latent, ctx.to_host(dlatent));
      ctx.report(compare(name + ".latent", vae_latent, g, tol));
    }
    if (has(fields, "image_u8")) {
      SD35_ASSIGN_OR_RETURN(Tensor g, load_u8(name + ".image_u8"));
      const auto d0 = std::chrono::steady_clock::now();
      auto image = engine.vae_decode(*ws, *samples);
      if (!image.ok()) {
        ctx.report(failed_case(name + ".image_u8", tol, image.status().to_string()));
        continue;
      }
      const bool f32 = ctx.compute == DType::kF32;
      // bf16: the tiny model's image drifts by many levels; only gross errors are caught here
      // (the samples check above is the meaningful one).
      CaseResult r = compare_u8(name + ".image_u8", *image, g, f32 ? 1 : 64, f32 ? 0.005 : 1.0);
      r.ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - d0).count();
      ctx.report(std::move(r));
    }
  }
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("pipeline", "txt2img / img2img end to end through the Engine", run_pipeline);

}  // namespace sd35::cli::golden
