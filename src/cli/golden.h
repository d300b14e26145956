// `sd35 golden`: checks the engine against a fixture set directory (shared/fixtures/README.md,
// "Set directories": model files, config.json, manifest.json, goldens_*.safetensors).
//
// The framework is a registry of stages. Each stage lives in its own golden_<stage>.cpp,
// registers itself with SD35_GOLDEN_STAGE, discovers its cases from manifest.json (never
// from tiny-a's dimensions or case names: other sets differ in everything), runs them and
// reports one CaseResult per checked tensor. Stages named in kGoldenStageOrder that no file
// registers are reported as "skipped (not implemented yet)", so adding a stage is one new
// file (plus its line in cmake/weights.cmake).
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "sd35/status.h"
#include "weights/weight_index.h"
#include "weights/weight_placer.h"

namespace sd35::cli::golden {

// Every stage name the command knows, in the order stages run.
inline constexpr std::string_view kGoldenStageOrder[] = {
    "tokenizer", "text", "cond", "mmdit", "vae", "noise", "schedule", "pipeline"};

// A case passes when every element satisfies
//   |ours - golden| <= abs + rel·|golden| + of_max·max|golden|
// (numpy's allclose rule, plus a term relative to the tensor's largest magnitude for the bf16
// mode, whose rounding error scales with the values accumulated, not with each element) and
// nothing is NaN/Inf where the golden is finite.
struct Tolerance {
  double abs = 0.0;
  double rel = 0.0;
  double of_max = 0.0;
  std::string describe() const;  // "abs 2e-04 + rel 1e-04"
};

struct CaseResult {
  std::string name;  // the golden tensor's name, e.g. "case0.out"
  double max_abs = 0.0;
  // max |d|/|g| over elements, with |g| floored at 1e-3·max|g| so that near-zero golden
  // elements do not dominate (they are covered by the absolute term of the tolerance).
  double max_rel = 0.0;
  Tolerance tol;
  bool pass = false;
  std::string note;  // why a case failed without numbers (op error, shape mismatch)
  double ms = 0.0;   // time of the computation that produced the tensor (0: shared)
};

// Compares `ours` (any dtype/strides, CPU) against `golden` (f32 contiguous). Shapes must
// match exactly, or after dropping size-1 dims when `squeeze` is set (debug intermediates
// may be observed as [L, D] for a [1, L, D] golden).
CaseResult compare(std::string name, const Tensor& ours, const Tensor& golden, Tolerance tol,
                   bool squeeze = false);
// A failed case without numbers.
CaseResult failed_case(std::string name, Tolerance tol, std::string note);

// An owned, contiguous f32 copy of a CPU tensor of any float dtype and strides.
Result<Tensor> to_f32(const Tensor& t);

struct ManifestEntry {
  std::string name;
  Shape shape;
};

// One set directory: config.json and manifest.json parsed and checked, golden files opened on
// demand, the weights indexed on demand.
class GoldenSet {
 public:
  static Result<std::unique_ptr<GoldenSet>> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::ordered_json& config() const { return config_; }

  // Entries of one golden file as listed by the manifest (manifest order); nullptr when the
  // manifest does not list the file (the set has no goldens of that family).
  const std::vector<ManifestEntry>* entries(std::string_view file) const;
  // The tensor `name` of golden file `file` as an owned f32 copy, after checking that the
  // file holds it with the manifest's shape. Errors name the set, the file and the tensor.
  Result<Tensor> load(std::string_view file, std::string_view name);
  // The model files of the set (every .safetensors in the directory; golden files hold no
  // model keys and are ignored by the index), opened once.
  Result<const WeightIndex*> weights();

 private:
  std::string dir_;
  nlohmann::ordered_json config_;
  std::map<std::string, std::vector<ManifestEntry>, std::less<>> manifest_;
  std::map<std::string, std::shared_ptr<const SafetensorsFile>, std::less<>> files_;
  std::unique_ptr<WeightIndex> index_;
  Status index_status_;
  bool index_tried_ = false;
};

// Groups manifest entries "<case>.<field...>" by case, in first-appearance order: the case
// names of one golden family, e.g. {"case0", {"x", "t", ..., "dbg.block0.x_out"}}.
std::vector<std::pair<std::string, std::vector<std::string>>> group_cases(
    const std::vector<ManifestEntry>& entries);

// What a stage runs on. With a device backend (--backend cuda) the arena allocates device
// memory, models load their weights through `placer`, inputs go up with to_device() and
// results come back with to_host() before compare(); on the host all three are no-ops.
struct StageContext {
  GoldenSet& set;
  Backend& backend;
  Arena& arena;  // on backend.memory()
  DType compute = DType::kF32;
  std::string_view stage;
  WeightPlacer* placer = nullptr;  // nullptr: host weights
  std::string backend_name;        // for stages that build an Engine
  int device = 0;
  // Cases reported so far by this stage (the driver prints them as they come).
  std::vector<CaseResult> results;
  // Set by a stage that found nothing to check in this set (e.g. no goldens_vae in the
  // manifest): printed as "skipped (<reason>)".
  std::string skipped;

  // A host tensor's copy on the backend's device (arena memory, kept until the stage ends);
  // the tensor itself on a host backend.
  Result<Tensor> to_device(const Tensor& host);
  // A zero-filled host tensor (host backend) or an uninitialised arena tensor (device).
  Result<Tensor> output(const Shape& shape, DType dtype);
  // An owned f32 host copy of a host or device tensor of any strides (compare() input).
  Result<Tensor> to_host(const Tensor& t);

  void report(CaseResult r);
  // One line of information (model config, load time) printed between the case lines.
  void info(const std::string& line) const;
};

// A stage returns a non-ok Status when the set cannot be checked at all (missing file,
// malformed golden, model that does not load); failures of single cases are reported as
// failed CaseResults and the stage goes on.
using StageFn = Status (*)(StageContext& ctx);

struct StageInfo {
  std::string_view name;  // one of kGoldenStageOrder
  std::string_view summary;
  StageFn run = nullptr;
};

// Called from a static initializer in each stage's file (the CLI sources are linked into the
// executable directly, so these initializers always run).
bool register_stage(const StageInfo& info);
const StageInfo* find_stage(std::string_view name);

}  // namespace sd35::cli::golden

#define SD35_GOLDEN_STAGE_CONCAT2(a, b) a##b
#define SD35_GOLDEN_STAGE_CONCAT(a, b) SD35_GOLDEN_STAGE_CONCAT2(a, b)
#define SD35_GOLDEN_STAGE(name, summary, fn)                                                 \
  [[maybe_unused]] static const bool SD35_GOLDEN_STAGE_CONCAT(golden_stage_reg_, __LINE__) = \
      ::sd35::cli::golden::register_stage({name, summary, fn})
