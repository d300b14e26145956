// `sd35 generate`: txt2img / img2img with the Engine, PNG output with the settings in a tEXt
// chunk "parameters" (JSON), as ComfyUI keeps its prompt JSON under "prompt".
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "cli/commands.h"
#include "core/cpu_features.h"
#include "io/png.h"
#include "pipeline/engine.h"
#include "service/workflow/plan.h"

namespace sd35::cli {
namespace {

struct GenerateOptions {
  std::vector<std::string> models, model_flags;
  std::string mmdit, vae, clip_l, clip_g, t5xxl;
  std::string prompt, negative;
  int width = 1024, height = 1024, steps = 40, batch = 1, threads = 0;
  double cfg = 4.5, denoise = 1.0, shift = 3.0;
  std::string sampler = "dpmpp_2m", scheduler = "sgm_uniform";
  std::optional<uint64_t> seed;
  std::string image;
  bool no_t5 = false, quiet = false, cuda_graphs = true;
  std::string compute;  // empty: preferred_cpu_compute_dtype()
  std::string backend = "cpu";
  int device = 0;                    // --device: CUDA device index
  std::string text_device = "auto";  // --text-device
  std::string output = "output.png";
  std::string slg_layers;  // empty: no skip-layer guidance
  double slg_scale = 3.0, slg_start = 0.01, slg_end = 0.15;
  std::string workflow;       // ComfyUI API-format graph (JSON file); replaces the options above
  std::string models_dir;     // checkpoints/, text_encoders/ (or clip/), vae/ for --workflow
  bool output_given = false;  // -o given: the --workflow output prefix
};

// "7,8,9" (or "7 8 9") -> {7, 8, 9}; like the ComfyUI node, every run of digits is a layer.
std::vector<int> parse_layers(const std::string& s) {
  std::vector<int> out;
  int v = -1;
  for (char c : s + ",") {
    if (c >= '0' && c <= '9') {
      v = (v < 0 ? 0 : v * 10) + (c - '0');
      if (v > 1000000) v = 1000000;
    } else if (v >= 0) {
      out.push_back(v);
      v = -1;
    }
  }
  return out;
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "sd35 generate: %s\n", msg.c_str());
  return 1;
}

// Backend, device and text placement into the engine options; with cuda, prints the GPU
// (name, driver, memory) first so a log shows what ran. Empty on success, else the error.
std::string apply_backend_options(const GenerateOptions& opt, EngineOptions& eo) {
  eo.backend = opt.backend;
  eo.threads = opt.threads;
  eo.device = opt.device;
  eo.text_device = opt.text_device;
  eo.cuda_graphs = opt.cuda_graphs;
  if (!opt.quiet)
    eo.log = [](const std::string& m) { std::fprintf(stderr, "sd35: %s\n", m.c_str()); };
  if (opt.backend != "cuda") return {};
  // The GPU's fast mode is bf16 unless --compute says otherwise.
  if (opt.compute.empty()) eo.compute = DType::kBF16;
  auto info = cuda_device_info(opt.device);
  if (!info.ok()) return info.status().to_string();
  if (!opt.quiet)
    std::fprintf(stderr,
                 "sd35: CUDA device %d: %s (sm_%d%d, %d SMs), driver %d, runtime %d, "
                 "%.2f GiB free of %.2f GiB, cuDNN %s\n",
                 info->index, info->name.c_str(), info->sm_major, info->sm_minor,
                 info->multiprocessors, info->driver_version, info->runtime_version,
                 double(info->free_bytes) / double(size_t(1) << 30),
                 double(info->total_bytes) / double(size_t(1) << 30), info->cudnn.c_str());
  return {};
}

// "out.png" -> "out_00001.png" (ComfyUI's counter style) for batch entries.
std::string numbered(const std::string& path, int i) {
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "_%05d", i + 1);
  const size_t slash = path.find_last_of('/');
  const size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return path + suffix + ".png";
  return path.substr(0, dot) + suffix + path.substr(dot);
}

// --workflow: runs a ComfyUI API-format graph; every SaveImage node writes
// "<prefix>_00001_.png", ... (ComfyUI's naming) with the graph in the tEXt "prompt" chunk.
int run_workflow(const GenerateOptions& opt) {
  std::FILE* f = std::fopen(opt.workflow.c_str(), "rb");
  if (!f) return fail("cannot open " + opt.workflow);
  std::string text;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  std::fclose(f);
  workflow::WorkflowOptions wo;
  wo.models_dir = opt.models_dir;
  auto plan = workflow::parse_workflow(text, wo);
  if (!plan.ok()) return fail(plan.status().message());
  EngineOptions eo = EngineOptions::with_defaults();
  eo.models = plan->engine_models();
  if (eo.models.empty()) return fail("the graph loads no models");
  if (!opt.compute.empty()) {
    auto d = compute_dtype_from_name(opt.compute);
    if (!d.ok()) return fail(d.status().message());
    eo.compute = *d;
  }
  if (auto err = apply_backend_options(opt, eo); !err.empty()) return fail(err);
  auto engine_or = Engine::load(eo);
  if (!engine_or.ok()) return fail(engine_or.status().to_string());
  auto ws_or = (*engine_or)->make_workspace();
  if (!ws_or.ok()) return fail(ws_or.status().to_string());
  Workspace& ws = **ws_or;
  const bool tty = !opt.quiet && isatty(2);
  ws.progress = [&](int step, int total) {
    if (tty) std::fprintf(stderr, "\rstep %d/%d%s", step, total, step == total ? "\n" : "");
  };
  auto saved = workflow::execute_plan(*plan, **engine_or, ws);
  if (!saved.ok()) return fail(saved.status().to_string());
  // The graph as compact JSON (the input may be wrapped in {"prompt": ...}).
  nlohmann::json graph = nlohmann::json::parse(text, nullptr, false);
  if (graph.contains("prompt") && graph["prompt"].is_object() &&
      !graph["prompt"].contains("class_type"))
    graph = graph["prompt"];
  const std::string prompt_text = graph.dump();
  std::map<std::string, int> counters;
  for (const auto& s : *saved) {
    const std::string prefix = opt.output_given ? opt.output : s.filename_prefix;
    for (int64_t b = 0; b < s.images.size(0); ++b) {
      char num[16];
      std::snprintf(num, sizeof num, "_%05d_", ++counters[prefix]);
      const std::string path = prefix + num + ".png";
      Status st = write_png(path, s.images.select(0, b), {{"prompt", prompt_text}});
      if (!st.ok()) return fail(st.to_string());
      std::printf("%s\n", path.c_str());
    }
  }
  return 0;
}

int run_generate(const GenerateOptions& opt) {
  if (!opt.workflow.empty()) return run_workflow(opt);
  EngineOptions eo = EngineOptions::with_defaults();
  for (const auto& m : opt.models) eo.models.push_back({m, std::nullopt});
  for (const auto& m : opt.model_flags) eo.models.push_back({m, std::nullopt});
  const std::pair<const std::string*, Component> roles[] = {{&opt.mmdit, Component::kMMDiT},
                                                            {&opt.vae, Component::kVAE},
                                                            {&opt.clip_l, Component::kClipL},
                                                            {&opt.clip_g, Component::kClipG},
                                                            {&opt.t5xxl, Component::kT5XXL}};
  for (const auto& [p, c] : roles)
    if (!p->empty()) eo.models.push_back({*p, c});
  if (eo.models.empty()) return fail("no model files given (a checkpoint or a folder)");
  if (!opt.compute.empty()) {
    auto d = compute_dtype_from_name(opt.compute);
    if (!d.ok()) return fail(d.status().message());
    eo.compute = *d;
  }
  if (auto err = apply_backend_options(opt, eo); !err.empty()) return fail(err);
  eo.load_t5 = !opt.no_t5;

  // Validate everything cheap before loading gigabytes.
  auto sampler = sampler_from_name(opt.sampler);
  if (!sampler.ok()) return fail(sampler.status().message());
  auto scheduler = scheduler_from_name(opt.scheduler);
  if (!scheduler.ok()) return fail(scheduler.status().message());
  if (opt.steps < 1 || opt.steps > 10000) return fail("--steps must be in [1, 10000]");
  if (opt.batch < 1 || opt.batch > 64) return fail("--batch must be in [1, 64]");
  if (!(opt.cfg >= 0 && opt.cfg <= 100)) return fail("--cfg must be in [0, 100]");
  if (!(opt.denoise >= 0 && opt.denoise <= 1)) return fail("--denoise must be in [0, 1]");
  if (opt.denoise != 1.0 && opt.image.empty())
    return fail("--denoise below 1 needs an input --image (img2img)");
  if (opt.image.empty() && (opt.width < 16 || opt.height < 16 || opt.width % 16 ||
                            opt.height % 16 || opt.width > 16384 || opt.height > 16384))
    return fail("--width and --height must be multiples of 16 in [16, 16384], got " +
                std::to_string(opt.width) + "x" + std::to_string(opt.height));

  GenerateParams gp;
  gp.prompt = opt.prompt;
  gp.negative = opt.negative;
  gp.width = opt.width;
  gp.height = opt.height;
  gp.batch = opt.batch;
  gp.use_t5 = !opt.no_t5;
  gp.sample.sampler = *sampler;
  gp.sample.scheduler = *scheduler;
  gp.sample.steps = opt.steps;
  gp.sample.cfg = opt.cfg;
  gp.sample.denoise = opt.denoise;
  gp.sample.shift = opt.shift;
  gp.sample.slg.layers = parse_layers(opt.slg_layers);
  gp.sample.slg.scale = opt.slg_scale;
  gp.sample.slg.start_percent = opt.slg_start;
  gp.sample.slg.end_percent = opt.slg_end;
  if (!opt.slg_layers.empty() && gp.sample.slg.layers.empty())
    return fail("--slg-layers must list layer numbers, e.g. 7,8,9");
  gp.sample.seed =
      opt.seed ? *opt.seed
               : (uint64_t(std::random_device{}()) << 20) ^ uint64_t(std::random_device{}());
  if (!opt.image.empty()) {
    auto img = read_png(opt.image);
    if (!img.ok()) return fail(img.status().message());
    gp.init_image = *img;
  }

  auto engine_or = Engine::load(eo);
  if (!engine_or.ok()) return fail(engine_or.status().to_string());
  const Engine& engine = **engine_or;
  auto ws_or = engine.make_workspace();
  if (!ws_or.ok()) return fail(ws_or.status().to_string());
  Workspace& ws = **ws_or;
  const bool tty = !opt.quiet && isatty(2);
  auto t_prev = std::chrono::steady_clock::now();
  ws.progress = [&](int step, int total) {
    if (!tty) return;
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - t_prev).count();
    t_prev = now;
    std::fprintf(stderr, "\rstep %d/%d (%.2f s/step)%s", step, total, s, step == total ? "\n" : "");
    std::fflush(stderr);
  };
  auto res = engine.generate(ws, gp);
  if (!res.ok()) {
    if (tty) std::fprintf(stderr, "\n");
    return fail(res.status().to_string());
  }

  nlohmann::ordered_json params = {{"prompt", opt.prompt},
                                   {"negative", opt.negative},
                                   {"seed", gp.sample.seed},
                                   {"steps", opt.steps},
                                   {"cfg", opt.cfg},
                                   {"sampler", opt.sampler},
                                   {"scheduler", opt.scheduler},
                                   {"denoise", opt.denoise},
                                   {"shift", opt.shift},
                                   {"width", res->image.size(2)},
                                   {"height", res->image.size(1)},
                                   {"batch", opt.batch},
                                   {"t5", !opt.no_t5},
                                   {"compute", eo.compute == DType::kBF16 ? "bf16" : "f32"},
                                   {"generator", "sd35"}};
  if (!opt.image.empty()) params["image"] = opt.image;
  if (!gp.sample.slg.layers.empty())
    params["slg"] = {{"layers", gp.sample.slg.layers},
                     {"scale", opt.slg_scale},
                     {"start_percent", opt.slg_start},
                     {"end_percent", opt.slg_end}};
  for (int b = 0; b < opt.batch; ++b) {
    const std::string path = opt.batch == 1 ? opt.output : numbered(opt.output, b);
    params["batch_index"] = b;
    Status st = write_png(path, res->image.select(0, b), {{"parameters", params.dump()}});
    if (!st.ok()) return fail(st.to_string());
    std::printf("%s\n", path.c_str());
  }
  const Timings& t = res->timings;
  if (!opt.quiet)
    std::fprintf(stderr,
                 "seed %llu; load %.2f s, text %.2f s, vae encode %.2f s, sampling %.2f s "
                 "(%d model calls), vae decode %.2f s, total %.2f s\n",
                 static_cast<unsigned long long>(gp.sample.seed), engine.load_seconds(),
                 t.encode_prompt_s, t.vae_encode_s, t.sample_s, t.model_calls, t.vae_decode_s,
                 t.total_s);
  return 0;
}

}  // namespace

void register_generate(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Text-to-image / image-to-image to PNG files");
  cmd->add_option("models", opt->models,
                  "checkpoint / text-encoder safetensors files or a model folder");
  cmd->add_option("--model", opt->model_flags, "same as the positional model paths");
  cmd->add_option("--mmdit", opt->mmdit, "diffusion model file");
  cmd->add_option("--vae", opt->vae, "VAE file");
  cmd->add_option("--clip-l", opt->clip_l, "CLIP-L text encoder file");
  cmd->add_option("--clip-g", opt->clip_g, "CLIP-G text encoder file");
  cmd->add_option("--t5xxl", opt->t5xxl, "T5-XXL text encoder file");
  cmd->add_option("-p,--prompt", opt->prompt, "positive prompt (ComfyUI weight syntax)");
  cmd->add_option("-n,--negative", opt->negative, "negative prompt (default empty)");
  cmd->add_option("-W,--width", opt->width, "image width, multiple of 16 (default 1024)");
  cmd->add_option("-H,--height", opt->height, "image height, multiple of 16 (default 1024)");
  cmd->add_option("--steps", opt->steps, "sampling steps (default 40)");
  cmd->add_option("--cfg", opt->cfg, "classifier-free guidance scale (default 4.5)");
  cmd->add_option("--sampler", opt->sampler, "ComfyUI sampler name (default dpmpp_2m)");
  cmd->add_option("--scheduler", opt->scheduler, "ComfyUI scheduler name (default sgm_uniform)");
  cmd->add_option("--shift", opt->shift, "ModelSamplingSD3 shift (default 3)");
  cmd->add_option("--seed", opt->seed, "noise seed (default random, printed)");
  cmd->add_option("--batch", opt->batch, "images per run (default 1)");
  cmd->add_option("--image", opt->image, "input PNG for image-to-image");
  cmd->add_option("--denoise", opt->denoise, "img2img strength in [0, 1] (default 1)");
  cmd->add_option("--slg-layers", opt->slg_layers,
                  "skip-layer guidance on these joint blocks (SD3.5 Medium: 7,8,9); off if empty");
  cmd->add_option("--slg-scale", opt->slg_scale, "skip-layer guidance scale (default 3)");
  cmd->add_option("--slg-start", opt->slg_start, "SLG start percent (default 0.01)");
  cmd->add_option("--slg-end", opt->slg_end, "SLG end percent (default 0.15)");
  cmd->add_flag("--no-t5", opt->no_t5, "do not load or use T5-XXL (CLIP only)");
  cmd->add_option("--compute", opt->compute, "f32 or bf16 (default: bf16 where the CPU has it)");
  cmd->add_option("--backend", opt->backend, "cpu (default), reference or cuda");
  cmd->add_option("--device", opt->device, "CUDA device index (default 0)");
  cmd->add_option("--text-device", opt->text_device,
                  "with cuda: where CLIP/T5 run: auto (default: gpu if memory allows), cpu, gpu");
  cmd->add_option("--threads", opt->threads, "CPU threads (default: all)");
  cmd->add_flag("--cuda-graphs,!--no-cuda-graphs", opt->cuda_graphs,
                "with cuda: replay the denoising steps as captured CUDA graphs (default; the "
                "same image as eager, fewer launches); --no-cuda-graphs runs them eagerly");
  CLI::Option* output = cmd->add_option(
      "-o,--output", opt->output,
      "output PNG (default output.png; batches get _00001 suffixes); with --workflow the "
      "file prefix (default: SaveImage's filename_prefix)");
  cmd->add_option("--workflow", opt->workflow,
                  "run a ComfyUI API-format graph (JSON) instead of the options above");
  cmd->add_option("--models-dir", opt->models_dir,
                  "with --workflow: folder with checkpoints/, text_encoders/ (or clip/), vae/");
  cmd->add_flag("-q,--quiet", opt->quiet, "no progress or timing lines");
  cmd->callback([opt, output, &exit_code] {
    opt->output_given = output->count() > 0;
    exit_code = run_generate(*opt);
  });
}

}  // namespace sd35::cli
