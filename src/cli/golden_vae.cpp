// Golden stage "vae": goldens_vae.safetensors (fixtures README, family (b)).
//
// Cases are recognised by their fields, not their names:
//   <case>.latent + <case>.image            decode: VAE-space latent [B, z, h, w] -> raw decoder
//                                           output [B, 3, 8h, 8w] (not clamped);
//   <case>.pixels + <case>.mean / .logvar   encode: ComfyUI IMAGE pixels NHWC in [0, 1] ->
//                                           NCHW 2p - 1 -> encoder -> mean, logvar (clamped to
//                                           [-30, 20]). `.moments` (the raw 2z channels) is not
//                                           compared: mean and logvar are the same numbers, and
//                                           logvar's clamp is part of what the engine returns.
#include <chrono>
#include <tuple>

#include "cli/golden.h"
#include "models/vae/vae.h"

namespace sd35::cli::golden {
namespace {

constexpr std::string_view kFile = "goldens_vae.safetensors";

// fixtures README, "Recommended tolerances": VAE decode / encode abs 5e-4 (fp32 vs fp64 floor
// 2.4e-6 relative, ComfyUI's own code <= 6e-6; outputs are O(1), so an absolute bound).
constexpr Tolerance kF32Tol{5e-4, 0.0};
// bf16 activations: a sanity bound (see golden_mmdit.cpp; tiny-a: ~1% of max|golden|), not a
// precision claim.
constexpr Tolerance kBF16Tol{0.0, 0.0, 3e-2};

bool has(const std::vector<std::string>& fields, std::string_view f) {
  for (const auto& x : fields)
    if (x == f) return true;
  return false;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// NHWC [0, 1] -> NCHW [-1, 1], the encoder's input (ComfyUI VAE.encode: 2·pixels - 1).
Result<Tensor> pixels_to_nchw(const Tensor& nhwc) {
  if (nhwc.ndim() != 4) {
    return data_loss("pixels must be [B, H, W, C], got " + nhwc.shape().to_string());
  }
  const int64_t B = nhwc.size(0), H = nhwc.size(1), W = nhwc.size(2), C = nhwc.size(3);
  SD35_ASSIGN_OR_RETURN(Tensor out, Tensor::zeros({B, C, H, W}, DType::kF32));
  const float* s = nhwc.data_as<const float>();
  float* d = out.data_as<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < C; ++c)
          d[((b * C + c) * H + y) * W + x] = 2.0f * s[((b * H + y) * W + x) * C + c] - 1.0f;
  return out;
}

Status run_vae(StageContext& ctx) {
  const auto* entries = ctx.set.entries(kFile);
  if (!entries) {
    ctx.skipped = "manifest.json lists no " + std::string(kFile);
    return ok_status();
  }
  auto cases = group_cases(*entries);
  auto is_decode = [](const auto& f) { return has(f, "latent") && has(f, "image"); };
  auto is_encode = [](const auto& f) {
    return has(f, "pixels") && (has(f, "mean") || has(f, "logvar"));
  };
  bool any = false;
  for (const auto& c : cases) any = any || is_decode(c.second) || is_encode(c.second);
  if (!any) {
    ctx.skipped =
        "no decode (latent, image) or encode (pixels, mean) case in " + std::string(kFile);
    return ok_status();
  }

  SD35_ASSIGN_OR_RETURN(const WeightIndex* index, ctx.set.weights());
  if (!index->has(Component::kVAE)) {
    return not_found(ctx.set.dir() +
                     ": no VAE weights (first_stage_model.* keys, e.g. model.safetensors) among "
                     "the set's model files");
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto model_or = VAE::load(*index, ctx.placer);
  if (!model_or.ok()) return model_or.status().with_context("loading the VAE: ");
  const VAE& vae = **model_or;
  {
    const VAEConfig& c = vae.config();
    std::string mult;
    for (int m : c.ch_mult) mult += (mult.empty() ? "" : ",") + std::to_string(m);
    char buf[64];
    std::snprintf(buf, sizeof buf, ", loaded in %.0f ms", ms_since(t0));
    ctx.info("VAE ch " + std::to_string(c.ch) + ", ch_mult [" + mult + "], res blocks " +
             std::to_string(c.num_res_blocks) + ", z " + std::to_string(c.z_channels) + buf);
  }

  const Tolerance tol = ctx.compute == DType::kF32 ? kF32Tol : kBF16Tol;
  VAEOptions options;
  options.compute = ctx.compute;
  for (const auto& [name, fields] : cases) {
    auto load = [&](std::string_view field) {
      return ctx.set.load(kFile, name + "." + std::string(field));
    };
    if (is_decode(fields)) {
      SD35_ASSIGN_OR_RETURN(Tensor latent, load("latent"));
      SD35_ASSIGN_OR_RETURN(Tensor golden, load("image"));
      SD35_ASSIGN_OR_RETURN(Tensor dlatent, ctx.to_device(latent));
      SD35_ASSIGN_OR_RETURN(Tensor dimage, ctx.output(golden.shape(), DType::kF32));
      const auto f0 = std::chrono::steady_clock::now();
      Status st;
      {
        ArenaScope scope(ctx.arena);
        st = vae.decode(ctx.backend, ctx.arena, dlatent, dimage, options);
        if (st.ok()) st = ctx.backend.synchronize();
      }
      Tensor image;
      if (st.ok()) {
        auto h = ctx.to_host(dimage);
        if (h.ok()) image = *h; else st = h.status();
      }
      const double ms = ms_since(f0);
      if (!st.ok()) {
        ctx.report(failed_case(name + ".image", tol, "decode: " + st.to_string()));
      } else {
        CaseResult r = compare(name + ".image", image, golden, tol);
        r.ms = ms;
        ctx.report(std::move(r));
      }
    }
    if (is_encode(fields)) {
      SD35_ASSIGN_OR_RETURN(Tensor pixels_nhwc, load("pixels"));
      auto pixels = pixels_to_nchw(pixels_nhwc);
      if (!pixels.ok()) return pixels.status().with_context(ctx.set.dir() + ": " + name + ": ");
      Tensor golden_mean, golden_logvar;
      if (has(fields, "mean")) {
        SD35_ASSIGN_OR_RETURN(golden_mean, load("mean"));
      }
      if (has(fields, "logvar")) {
        SD35_ASSIGN_OR_RETURN(golden_logvar, load("logvar"));
      }
      const Shape shape = golden_mean.defined() ? golden_mean.shape() : golden_logvar.shape();
      SD35_ASSIGN_OR_RETURN(Tensor dpixels, ctx.to_device(*pixels));
      SD35_ASSIGN_OR_RETURN(Tensor dmean, ctx.output(shape, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor dlogvar, ctx.output(shape, DType::kF32));
      const auto f0 = std::chrono::steady_clock::now();
      Status st;
      {
        ArenaScope scope(ctx.arena);
        st = vae.encode(ctx.backend, ctx.arena, dpixels, dmean,
                        golden_logvar.defined() ? &dlogvar : nullptr, options);
        if (st.ok()) st = ctx.backend.synchronize();
      }
      Tensor mean, logvar;
      for (auto [dev, host] : {std::pair{&dmean, &mean}, std::pair{&dlogvar, &logvar}}) {
        if (!st.ok()) break;
        auto h = ctx.to_host(*dev);
        if (h.ok()) *host = *h; else st = h.status();
      }
      const double ms = ms_since(f0);
      for (auto [field, ours, golden] : {std::tuple{"mean", &mean, &golden_mean},
                                         std::tuple{"logvar", &logvar, &golden_logvar}}) {
        if (!golden->defined()) continue;
        const std::string n = name + "." + field;
        if (!st.ok()) {
          ctx.report(failed_case(n, tol, "encode: " + st.to_string()));
          continue;
        }
        CaseResult r = compare(n, *ours, *golden, tol);
        r.ms = std::string_view(field) == "mean" || !golden_mean.defined() ? ms : 0.0;
        ctx.report(std::move(r));
      }
    }
  }
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("vae", "VAE decode and encode", run_vae);

}  // namespace sd35::cli::golden
