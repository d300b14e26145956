// Golden stage "schedule": <set>/common/schedules.safetensors (fixtures README, "common/"):
//   model_sampling.sigmas                  the 1000-entry discrete-flow table (shift from
//                                          schedules.json, default 3);
//   <scheduler>.steps<N>                   calculate_sigmas(model_sampling, scheduler, N);
//   denoise.<scheduler>.steps<N>.d<D>      KSampler.set_steps(N, D);
//   stability.steps<N>                     sd3_infer get_sigmas, identical to "normal".
// Tolerance abs 1e-6 (fixtures README); the engine is expected to be exact.
#include <fstream>

#include "cli/golden.h"
#include "sampling/sampling.h"

namespace sd35::cli::golden {
namespace {

constexpr Tolerance kTol{1e-6, 0.0};

Tensor as_tensor(const std::vector<float>& v) {
  Tensor t = Tensor::zeros({int64_t(v.size())}, DType::kF32).value();
  std::copy(v.begin(), v.end(), t.data_as<float>());
  return t;
}

Status run_schedule(StageContext& ctx) {
  const std::string dir = ctx.set.dir() + "/common/";
  auto file_or = SafetensorsFile::open(dir + "schedules.safetensors");
  if (!file_or.ok()) {
    if (file_or.status().code() == StatusCode::kNotFound) {
      ctx.skipped = "no common/schedules.safetensors in the set";
      return ok_status();
    }
    return file_or.status();
  }
  const SafetensorsFile& file = **file_or;
  double shift = 3.0;
  {
    std::ifstream in(dir + "schedules.json");
    if (in) {
      auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("shift") && j["shift"].is_number()) {
        shift = j["shift"].get<double>();
      }
    }
  }
  FlowModelSampling ms(shift);
  ctx.info("shift " + std::to_string(shift));
  for (const TensorInfo& info : file.tensors()) {
    const std::string& name = info.name;
    if (info.dtype != DType::kF32 || info.shape.ndim() != 1) {
      ctx.report(failed_case(name, kTol, "golden is not a 1-D f32 tensor"));
      continue;
    }
    const Tensor golden = file.tensor(info);
    if (name == "model_sampling.sigmas") {
      ctx.report(compare(name, as_tensor(ms.sigmas()), golden, kTol));
      continue;
    }
    // Parse "[denoise.]<scheduler>.steps<N>[.d<D>]".
    std::string rest = name;
    double denoise = 1.0;
    bool has_denoise = false;
    if (rest.rfind("denoise.", 0) == 0) {
      rest = rest.substr(8);
      const size_t d = rest.rfind(".d");
      if (d == std::string::npos) {
        ctx.report(failed_case(name, kTol, "no .d<denoise> suffix"));
        continue;
      }
      denoise = std::strtod(rest.c_str() + d + 2, nullptr);
      has_denoise = true;
      rest.resize(d);
    }
    const size_t s = rest.find(".steps");
    if (s == std::string::npos) {
      ctx.report(failed_case(name, kTol, "unrecognised schedule case name"));
      continue;
    }
    std::string sched = rest.substr(0, s);
    const int steps = std::atoi(rest.c_str() + s + 6);
    if (sched == "stability") sched = "normal";
    auto kind = scheduler_from_name(sched);
    if (!kind.ok()) {
      ctx.report(failed_case(name, kTol, kind.status().to_string()));
      continue;
    }
    auto sig = has_denoise ? ksampler_sigmas(ms, *kind, steps, denoise)
                           : calculate_sigmas(ms, *kind, steps);
    if (!sig.ok()) {
      ctx.report(failed_case(name, kTol, sig.status().to_string()));
      continue;
    }
    ctx.report(compare(name, as_tensor(*sig), golden, kTol));
  }
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("schedule", "model sampling table, schedulers, denoise (KSampler.set_steps)",
                  run_schedule);

}  // namespace sd35::cli::golden
