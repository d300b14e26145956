// Sampling as ComfyUI does it for SD3 (SPEC-model.md §5): torch-compatible CPU noise, the
// discrete-flow model sampling with shift, the schedulers and the k-diffusion samplers.
// Pure functions over host f32 tensors and a denoiser callback: samplers know nothing about
// the MMDiT; CFG, skip-layer guidance and timestep ranges live in the denoiser (guidance.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35 {

// ---- noise (§5.6) -------------------------------------------------------------------------
// Which of torch's Box-Muller kernels to replicate for numel >= 16: kAvx2 (normal_fill_16_AVX2,
// Cephes polynomials + FMA: what x86 torch, hence ComfyUI, uses; the default) or kDefault
// (torch's scalar normal_fill_16 with libm, e.g. ARM builds; matches to ~1 ulp, not bit-exact).
enum class RandnKernel { kAvx2, kDefault };

// torch's CPU generator: mt19937 seeded with the low 32 bits of the seed.
class TorchGenerator {
 public:
  explicit TorchGenerator(uint64_t seed);
  // torch.randn(n, dtype=float32) on the CPU: bit-exact with torch's vectorised (AVX2) kernel
  // for numel >= 16 (and its scalar path below 16).
  void randn(float* out, int64_t n);
  void randn(float* out, int64_t n, RandnKernel kernel);

 private:
  uint32_t next_u32();
  float uniform_f32();   // at::uniform_real_distribution<float>(0, 1): 24 bits
  double uniform_f64();  // at::uniform_real_distribution<double>(0, 1): 53 bits of random64()
  double normal_f64();   // at::normal_distribution<double>, with torch's cached second value
  uint32_t mt_[624];
  int index_ = 624;
  double cached_normal_ = 0.0;
  bool has_cached_normal_ = false;
};
// ComfyUI prepare_noise: one randn for the whole (contiguous f32) tensor.
Status prepare_noise(uint64_t seed, const Tensor& out);
Status prepare_noise(uint64_t seed, const Tensor& out, RandnKernel kernel);

// ---- model sampling (§5.1) ------------------------------------------------------------------
class FlowModelSampling {
 public:
  explicit FlowModelSampling(double shift = 3.0, double multiplier = 1000.0);
  double shift() const { return shift_; }
  float sigma_min() const { return sigmas_.front(); }
  float sigma_max() const { return sigmas_.back(); }
  const std::vector<float>& sigmas() const { return sigmas_; }  // the 1000-entry table
  float sigma(float timestep) const;                            // f32, as ComfyUI
  float timestep(float sigma) const;                            // sigma · multiplier
  double percent_to_sigma(double percent) const;                // Python double

 private:
  double shift_, multiplier_;
  std::vector<float> sigmas_;
};

// ---- schedulers (§5.4) ----------------------------------------------------------------------
enum class Scheduler { kSimple, kSgmUniform, kNormal, kKarras, kExponential, kBeta, kDdimUniform,
                       kLinearQuadratic };
Result<Scheduler> scheduler_from_name(std::string_view name);  // ComfyUI's names
std::string_view scheduler_name(Scheduler s);
// calculate_sigmas(model_sampling, name, steps): steps+1 values ending in 0 (beta may give
// fewer). Fails on steps < 1.
Result<std::vector<float>> calculate_sigmas(const FlowModelSampling& ms, Scheduler s, int steps);
// KSampler.set_steps(steps, denoise): the full schedule for denoise > 0.9999, empty for
// denoise <= 0, else the last steps+1 sigmas of the schedule for int(steps/denoise) steps.
Result<std::vector<float>> ksampler_sigmas(const FlowModelSampling& ms, Scheduler s, int steps,
                                           double denoise);
Result<std::vector<float>> ksampler_sigmas(const FlowModelSampling& ms, Scheduler s, int steps,
                                           double denoise, bool discard_penultimate_sigma);

// ---- samplers (§5.5) ------------------------------------------------------------------------
enum class Sampler { kEuler, kEulerAncestral, kHeun, kDpm2, kDpmpp2m, kDpmpp2mSde, kDpmppSde,
                     kLms, kUniPc, kDdim, kUniPcBh2 };
Result<Sampler> sampler_from_name(std::string_view name);  // ComfyUI's names
std::string_view sampler_name(Sampler s);
// ComfyUI KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS (dpm_2, uni_pc, uni_pc_bh2 here): the schedule is
// computed for steps + 1 and its second-to-last sigma dropped, inside the denoise logic.
bool discards_penultimate_sigma(Sampler s);

// D(x, sigma) -> denoised (the CFG'd x0 prediction), f32 tensors shaped like x.
using Denoiser = std::function<Status(const Tensor& x, float sigma, const Tensor& denoised)>;

struct SampleOptions {
  uint64_t seed = 0;  // for the ancestral / SDE noise samplers (ComfyUI: seed + 1 on the CPU)
  // Called after each step (1-based step, total); may be empty.
  std::function<void(int step, int total)> progress;
  // Checked before each model call; true stops sampling with a kCancelled Status.
  std::function<bool()> cancelled;
  // The flow shift of the model sampling: dpmpp_2m_sde / dpmpp_sde replace a first sigma >= 1
  // by percent_to_sigma(1e-4) (ComfyUI offset_first_sigma_for_snr), which depends on it.
  double shift = 3.0;
};

// Runs the sampler over `sigmas` on x (in place, contiguous f32 [B, C, H, W]).
Status sample(Sampler sampler, const Denoiser& denoiser, const Tensor& x,
              const std::vector<float>& sigmas, const SampleOptions& options = {});

}  // namespace sd35
