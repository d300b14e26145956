// Golden stage "noise": <set>/common/noise.safetensors (fixtures README, "common/"): every
// tensor "seed<N>.shape<K>" is ComfyUI prepare_noise(latent of that shape, N), i.e. torch's
// CPU randn with the AVX2 kernel. Compared bit for bit (tolerance 0). The cases come from the
// file, not from a list: other sets may carry other seeds and shapes.
#include <charconv>
#include <chrono>

#include "cli/golden.h"
#include "sampling/sampling.h"

namespace sd35::cli::golden {
namespace {

constexpr Tolerance kExact{0.0, 0.0};

Status run_noise(StageContext& ctx) {
  const std::string path = ctx.set.dir() + "/common/noise.safetensors";
  auto file_or = SafetensorsFile::open(path);
  if (!file_or.ok()) {
    if (file_or.status().code() == StatusCode::kNotFound) {
      ctx.skipped = "no common/noise.safetensors in the set";
      return ok_status();
    }
    return file_or.status();
  }
  const SafetensorsFile& file = **file_or;
  int n = 0;
  for (const TensorInfo& info : file.tensors()) {
    uint64_t seed = 0;
    const std::string& name = info.name;
    const auto dot = name.find('.');
    if (name.rfind("seed", 0) != 0 || dot == std::string::npos ||
        std::from_chars(name.data() + 4, name.data() + dot, seed).ptr != name.data() + dot) {
      ctx.report(failed_case(name, kExact, "name is not seed<N>.<shape>"));
      continue;
    }
    if (info.dtype != DType::kF32) {
      ctx.report(failed_case(name, kExact, "golden is not f32"));
      continue;
    }
    SD35_ASSIGN_OR_RETURN(Tensor ours, Tensor::zeros(info.shape, DType::kF32));
    const auto t0 = std::chrono::steady_clock::now();
    Status st = prepare_noise(seed, ours);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!st.ok()) {
      ctx.report(failed_case(name, kExact, st.to_string()));
      continue;
    }
    CaseResult r = compare(name, ours, file.tensor(info), kExact);
    r.ms = ms;
    ctx.report(std::move(r));
    ++n;
  }
  if (n == 0 && ctx.results.empty()) ctx.skipped = "common/noise.safetensors holds no tensors";
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("noise", "torch CPU randn (prepare_noise), bit-exact", run_noise);

}  // namespace sd35::cli::golden
