// `sd35 golden <set-dir>`: the stage registry, the set directory reader, the comparison rule
// and the command itself. Stages live in golden_<stage>.cpp.
//
// Exit codes: 0 every case passed; 1 at least one case failed; 2 the set could not be
// checked (bad arguments, not a set directory, missing or malformed file, model that does not
// load). A perturbed golden therefore gives 1, a broken set 2, and nothing gives a crash.
#include "cli/golden.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "backend/cuda/cuda_backend.h"
#include "backend/make_backend.h"
#include "backend/transfer.h"
#include "cli/commands.h"

namespace sd35::cli::golden {
namespace fs = std::filesystem;
// ordered_json: cases and their fields are reported in manifest order.
using json = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Registry

namespace {
std::vector<StageInfo>& registry() {
  static std::vector<StageInfo> stages;  // function-local: safe from any static initializer
  return stages;
}
}  // namespace

bool register_stage(const StageInfo& info) {
  registry().push_back(info);
  return true;
}

const StageInfo* find_stage(std::string_view name) {
  for (const StageInfo& s : registry())
    if (s.name == name) return &s;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Comparison

std::string Tolerance::describe() const {
  std::string s;
  char buf[48];
  auto term = [&](double v, const char* fmt) {
    if (v <= 0) return;
    std::snprintf(buf, sizeof buf, fmt, v);
    s += (s.empty() ? "" : " + ") + std::string(buf);
  };
  term(abs, "abs %.0e");
  term(rel, "rel %.0e");
  term(of_max, "%.0e*max|g|");
  return s.empty() ? "exact" : s;
}

Result<Tensor> to_f32(const Tensor& t) {
  if (t.device() != Device::kCPU) return unsupported("golden: tensor not on the CPU");
  if (!dtype_is_float(t.dtype()) && t.dtype() != DType::kI32 && t.dtype() != DType::kI64) {
    return unsupported("golden: cannot compare a " + std::string(dtype_name(t.dtype())) +
                       " tensor");
  }
  SD35_ASSIGN_OR_RETURN(Tensor out, Tensor::zeros(t.shape(), DType::kF32));
  const int64_t n = t.numel();
  if (n == 0) return out;
  float* dst = out.data_as<float>();
  if (t.is_contiguous()) {
    for (int64_t i = 0; i < n; ++i) dst[i] = load_as_f32(t.data(), t.dtype(), i);
    return out;
  }
  // Strided (a debug intermediate may be a view of a larger buffer): walk the rows.
  const int nd = t.ndim();
  const int64_t inner = t.size(-1), inner_stride = t.stride(-1);
  int64_t index[kMaxDims] = {};
  for (int64_t row = 0, o = 0; row < n / inner; ++row) {
    const void* base = t.element_ptr(index);
    for (int64_t j = 0; j < inner; ++j) dst[o++] = load_as_f32(base, t.dtype(), j * inner_stride);
    for (int d = nd - 2; d >= 0; --d) {  // next row index, last-but-one dim fastest
      if (++index[d] < t.size(d)) break;
      index[d] = 0;
    }
  }
  return out;
}

namespace {
std::vector<int64_t> squeezed(const Shape& s) {
  std::vector<int64_t> v;
  for (int64_t d : s)
    if (d != 1) v.push_back(d);
  return v;
}
}  // namespace

CaseResult failed_case(std::string name, Tolerance tol, std::string note) {
  CaseResult r;
  r.name = std::move(name);
  r.tol = tol;
  r.pass = false;
  r.max_abs = r.max_rel = std::numeric_limits<double>::quiet_NaN();
  r.note = std::move(note);
  return r;
}

CaseResult compare(std::string name, const Tensor& ours, const Tensor& golden, Tolerance tol,
                   bool squeeze) {
  const bool same =
      squeeze ? squeezed(ours.shape()) == squeezed(golden.shape()) : ours.shape() == golden.shape();
  if (!same) {
    return failed_case(
        std::move(name), tol,
        "shape " + ours.shape().to_string() + ", golden " + golden.shape().to_string());
  }
  auto ours_f32 = to_f32(ours);
  if (!ours_f32.ok()) return failed_case(std::move(name), tol, ours_f32.status().to_string());
  const float* a = ours_f32->data_as<const float>();
  const float* g = golden.data_as<const float>();
  const int64_t n = golden.numel();
  double gmax = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (std::isfinite(g[i])) gmax = std::max(gmax, std::fabs(double(g[i])));
  const double floor = std::max(1e-3 * gmax, 1e-30);
  const double abs_tol = tol.abs + tol.of_max * gmax;
  CaseResult r;
  r.name = std::move(name);
  r.tol = tol;
  r.pass = true;
  for (int64_t i = 0; i < n; ++i) {
    const double gi = g[i], ai = a[i];
    if (!std::isfinite(gi)) {  // the goldens have none (asserted by the generator); be exact
      if (!(std::isnan(gi) ? std::isnan(ai) : ai == gi)) r.pass = false;
      continue;
    }
    const double d = std::fabs(ai - gi);  // NaN when ours is NaN
    if (!(d <= abs_tol + tol.rel * std::fabs(gi))) r.pass = false;
    if (std::isnan(d) || std::isinf(d)) {
      r.max_abs = r.max_rel = std::numeric_limits<double>::infinity();
      continue;
    }
    r.max_abs = std::max(r.max_abs, d);
    r.max_rel = std::max(r.max_rel, d / std::max(std::fabs(gi), floor));
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Set directory

namespace {

Result<json> read_json(const fs::path& p, std::string_view what) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) {
    return not_found(p.string() + ": missing (" + std::string(what) + ")");
  }
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) return io_error(p.string() + ": read failed");
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return data_loss(p.string() + ": not valid JSON");
  if (!j.is_object()) return data_loss(p.string() + ": expected a JSON object");
  return j;
}

// A golden file name from the manifest must name a file inside the set directory.
bool plain_file_name(const std::string& s) {
  return !s.empty() && s.find('/') == std::string::npos && s.find('\\') == std::string::npos &&
         s != "." && s != "..";
}

}  // namespace

Result<std::unique_ptr<GoldenSet>> GoldenSet::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return not_found(dir + ": not a directory (expected a fixture set directory)");
  }
  auto set = std::make_unique<GoldenSet>();
  set->dir_ = dir;
  const fs::path root(dir);
  SD35_ASSIGN_OR_RETURN(set->config_, read_json(root / "config.json", "the set's config"));
  SD35_ASSIGN_OR_RETURN(json manifest,
                        read_json(root / "manifest.json", "the list of golden tensors"));
  const std::string mpath = (root / "manifest.json").string();
  auto files = manifest.find("files");
  if (files == manifest.end() || !files->is_object()) {
    return data_loss(mpath + ": no \"files\" object");
  }
  for (const auto& [file, tensors] : files->items()) {
    if (!plain_file_name(file)) return data_loss(mpath + ": bad file name '" + file + "'");
    if (!tensors.is_object()) return data_loss(mpath + ": files." + file + " is not an object");
    std::vector<ManifestEntry> entries;
    for (const auto& [name, desc] : tensors.items()) {
      const std::string where = mpath + ": " + file + " / " + name;
      if (!desc.is_object()) return data_loss(where + ": not an object");
      auto shape = desc.find("shape");
      if (shape == desc.end() || !shape->is_array() || shape->size() > size_t(kMaxDims)) {
        return data_loss(where + ": missing or bad \"shape\"");
      }
      std::vector<int64_t> dims;
      for (const auto& d : *shape) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0) {
          return data_loss(where + ": shape entries must be non-negative integers");
        }
        dims.push_back(d.get<int64_t>());
      }
      auto s = Shape::from(dims.data(), int(dims.size()));
      if (!s.ok()) return data_loss(where + ": " + s.status().message());
      entries.push_back({name, *s});
    }
    set->manifest_.emplace(file, std::move(entries));
  }
  return set;
}

const std::vector<ManifestEntry>* GoldenSet::entries(std::string_view file) const {
  auto it = manifest_.find(file);
  return it == manifest_.end() ? nullptr : &it->second;
}

Result<Tensor> GoldenSet::load(std::string_view file, std::string_view name) {
  const std::string where = dir_ + "/" + std::string(file);
  const auto* list = entries(file);
  if (!list) return not_found(where + ": not listed in manifest.json");
  const ManifestEntry* entry = nullptr;
  for (const auto& e : *list)
    if (e.name == name) entry = &e;
  if (!entry) return not_found(where + ": " + std::string(name) + " not listed in manifest.json");
  auto it = files_.find(file);
  if (it == files_.end()) {
    std::error_code ec;
    if (!fs::is_regular_file(where, ec)) {
      return not_found(where + ": listed in manifest.json but missing");
    }
    auto opened = SafetensorsFile::open(where);
    if (!opened.ok()) return opened.status();
    it = files_.emplace(std::string(file), *opened).first;
  }
  auto t = it->second->tensor(name);
  if (!t.ok()) return t.status().with_context(where + ": ");
  if (t->shape() != entry->shape) {
    return data_loss(where + ": " + std::string(name) + " has shape " + t->shape().to_string() +
                     ", manifest.json says " + entry->shape.to_string());
  }
  auto f = to_f32(*t);
  if (!f.ok()) return f.status().with_context(where + ": " + std::string(name) + ": ");
  return f;
}

Result<const WeightIndex*> GoldenSet::weights() {
  if (!index_tried_) {
    index_tried_ = true;
    // Every .safetensors of the set except the goldens: the goldens hold no model keys, and
    // a damaged golden file must be reported as a golden problem by the stage that reads it,
    // not as a model that does not load.
    std::vector<WeightInput> inputs;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      const std::string file = e.path().filename().string();
      if (e.path().extension() == ".safetensors" && file.rfind("goldens_", 0) != 0 &&
          e.is_regular_file(ec)) {
        inputs.push_back({e.path().string(), std::nullopt});
      }
    }
    std::sort(inputs.begin(), inputs.end(),
              [](const WeightInput& a, const WeightInput& b) { return a.path < b.path; });
    if (inputs.empty()) {
      index_status_ = not_found(dir_ + ": no model files (.safetensors other than goldens_*)");
    } else {
      auto idx = WeightIndex::open(inputs);
      if (idx.ok())
        index_ = std::move(*idx);
      else
        index_status_ = idx.status().with_context("model files of " + dir_ + ": ");
    }
  }
  if (!index_) return index_status_;
  return static_cast<const WeightIndex*>(index_.get());
}

std::vector<std::pair<std::string, std::vector<std::string>>> group_cases(
    const std::vector<ManifestEntry>& entries) {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& e : entries) {
    const size_t dot = e.name.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == e.name.size()) continue;
    std::string c = e.name.substr(0, dot), field = e.name.substr(dot + 1);
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == c; });
    if (it == out.end())
      out.push_back({c, {field}});
    else
      it->second.push_back(field);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reporting

void StageContext::report(CaseResult r) {
  char nums[96];
  if (!r.note.empty())
    std::snprintf(nums, sizeof nums, "%-12s %-12s", "-", "-");
  else
    std::snprintf(nums, sizeof nums, "max_abs %-8.2e max_rel %-8.2e", r.max_abs, r.max_rel);
  char stage_col[32];
  std::snprintf(stage_col, sizeof stage_col, "%-9s ", std::string(stage).c_str());
  std::string line = stage_col;
  char head[384];
  std::snprintf(head, sizeof head, "%-34s %s  tol %-24s %s", r.name.c_str(), nums,
                r.tol.describe().c_str(), r.pass ? "PASS" : "FAIL");
  line += head;
  if (r.ms > 0) {
    char t[32];
    std::snprintf(t, sizeof t, "  (%.0f ms)", r.ms);
    line += t;
  }
  if (!r.note.empty()) line += "  " + r.note;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  results.push_back(std::move(r));
}

Result<Tensor> StageContext::to_device(const Tensor& host) {
  if (backend.device() == Device::kCPU) return host;
  return to_backend(backend, arena, host);
}

Result<Tensor> StageContext::output(const Shape& shape, DType dtype) {
  if (backend.device() == Device::kCPU) return Tensor::zeros(shape, dtype);
  return arena.tensor(shape, dtype);
}

Result<Tensor> StageContext::to_host(const Tensor& t) {
  if (t.device() == Device::kCPU) return to_f32(t);
  // Device: a contiguous device copy when strided (a view of a larger buffer), downloaded,
  // then widened on the host.
  Tensor src = t;
  ArenaScope scope(arena);
  if (!t.is_contiguous()) {
    SD35_ASSIGN_OR_RETURN(src, arena.tensor(t.shape(), t.dtype()));
    SD35_RETURN_IF_ERROR(backend.copy(t, src));
  }
  SD35_ASSIGN_OR_RETURN(Tensor raw, Tensor::zeros(t.shape(), t.dtype()));
  SD35_RETURN_IF_ERROR(download_bytes(backend, src, raw.data()));
  return to_f32(raw);
}

void StageContext::info(const std::string& line) const {
  std::printf("%-9s # %s\n", std::string(stage).c_str(), line.c_str());
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------
// The command

namespace {

struct GoldenOptions {
  std::string set_dir;
  std::vector<std::string> stages;
  std::string backend = "cpu";
  std::string compute = "f32";
  int threads = 0;
  int device = 0;
};

bool known_stage(std::string_view s) {
  return std::find(std::begin(kGoldenStageOrder), std::end(kGoldenStageOrder), s) !=
         std::end(kGoldenStageOrder);
}

int run_golden(const GoldenOptions& opt) {
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "sd35 golden: error: %s\n", msg.c_str());
    return 2;
  };
  for (const auto& s : opt.stages)
    if (!known_stage(s)) {
      std::string names;
      for (auto n : kGoldenStageOrder) names += (names.empty() ? "" : ", ") + std::string(n);
      return fail("unknown stage '" + s + "' (stages: " + names + ")");
    }
  DType compute;
  if (opt.compute == "f32")
    compute = DType::kF32;
  else if (opt.compute == "bf16")
    compute = DType::kBF16;
  else
    return fail("--compute must be f32 or bf16, not '" + opt.compute + "'");
  auto backend_or = make_backend_by_name(opt.backend, BackendSpec{opt.threads, opt.device});
  if (!backend_or.ok()) return fail(backend_or.status().to_string());
  std::unique_ptr<Backend> backend = std::move(backend_or).value();
  // A device backend: the stages' models upload their weights to the same GPU.
  std::unique_ptr<WeightPlacer> placer;
  if (backend->device() != Device::kCPU) {
    auto info = cuda_device_info(opt.device);
    if (info.ok())
      std::printf("CUDA device %d: %s, driver %d, %.2f GiB free of %.2f GiB, cuDNN %s\n",
                  info->index, info->name.c_str(), info->driver_version,
                  double(info->free_bytes) / double(size_t(1) << 30),
                  double(info->total_bytes) / double(size_t(1) << 30), info->cudnn.c_str());
    auto memory = cuda_weight_memory(opt.device);
    if (!memory.ok()) return fail(memory.status().to_string());
    placer = std::make_unique<WeightPlacer>(std::move(memory).value());
  }

  auto set_or = GoldenSet::open(opt.set_dir);
  if (!set_or.ok()) return fail(set_or.status().to_string());
  GoldenSet& set = **set_or;
  Arena arena(backend->memory());

  std::printf("golden set %s: backend %s, compute %s\n", opt.set_dir.c_str(), opt.backend.c_str(),
              opt.compute.c_str());
  int passed = 0, failed = 0, errors = 0;
  std::vector<std::string> ran, skipped;
  for (std::string_view name : kGoldenStageOrder) {
    const bool asked = opt.stages.empty() ||
                       std::find(opt.stages.begin(), opt.stages.end(), name) != opt.stages.end();
    if (!asked) continue;
    const StageInfo* stage = find_stage(name);
    if (!stage) {
      std::printf("%-9s skipped (not implemented yet)\n", std::string(name).c_str());
      skipped.push_back(std::string(name));
      // Asking for a stage explicitly and getting nothing checked is not a pass.
      if (!opt.stages.empty()) ++errors;
      continue;
    }
    StageContext ctx{set, *backend, arena, compute, name, placer.get(), opt.backend, opt.device,
                     {}, {}};
    Status st;
    try {
      st = stage->run(ctx);
    } catch (const std::exception& e) {  // bad_alloc, a JSON type error: report, do not crash
      st = internal_error(std::string("exception: ") + e.what());
    }
    arena.reset();
    for (const auto& r : ctx.results) (r.pass ? passed : failed)++;
    if (!st.ok()) {
      std::printf("%-9s ERROR %s\n", std::string(name).c_str(), st.to_string().c_str());
      ++errors;
    } else if (ctx.results.empty()) {
      std::printf("%-9s skipped (%s)\n", std::string(name).c_str(),
                  ctx.skipped.empty() ? "no cases in this set" : ctx.skipped.c_str());
      skipped.push_back(std::string(name));
      continue;
    }
    ran.push_back(std::string(name));
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? std::string("none") : s;
  };
  std::printf("summary: %d passed, %d failed, %d error%s; stages run: %s; skipped: %s\n", passed,
              failed, errors, errors == 1 ? "" : "s", join(ran).c_str(), join(skipped).c_str());
  std::fflush(stdout);
  if (errors > 0) return 2;
  return failed > 0 ? 1 : 0;
}

}  // namespace
}  // namespace sd35::cli::golden

namespace sd35::cli {

void register_golden(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<golden::GoldenOptions>();
  CLI::App* cmd = app.add_subcommand(
      "golden", "Check the engine against a fixture set directory (model files + goldens)");
  cmd->add_option("set-dir", opt->set_dir,
                  "fixture set directory (config.json, manifest.json, ...)")
      ->required();
  cmd->add_option("--stage", opt->stages,
                  "stages to run, comma-separated: tokenizer, text, cond, mmdit, vae, noise, "
                  "schedule, pipeline (default: every implemented stage)")
      ->delimiter(',');
  cmd->add_option("--backend", opt->backend, "cpu (default), reference or cuda");
  cmd->add_option("--device", opt->device, "CUDA device index (default 0)");
  cmd->add_option("--compute", opt->compute,
                  "activation precision: f32 (default; the goldens' tolerances) or bf16 (looser "
                  "sanity tolerances)");
  cmd->add_option("--threads", opt->threads, "CPU threads (default: all)");
  cmd->callback([opt, &exit_code] { exit_code = golden::run_golden(*opt); });
}

}  // namespace sd35::cli
