#include "server/txt2img.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "server/util.h"

namespace sd35::server {

using nlohmann::json;

const json& recipe_graph() {
  // The SaladCloud recipe's graph (data/sd35-medium/workflow-txt2img.json), compiled in so the
  // binary needs no data files; _meta titles dropped.
  static const json graph = json::parse(R"({
  "4": {"inputs": {"ckpt_name": "sd3.5_medium.safetensors"}, "class_type": "CheckpointLoaderSimple"},
  "6": {"inputs": {"text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle,", "clip": ["11", 0]}, "class_type": "CLIPTextEncode"},
  "8": {"inputs": {"samples": ["294", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
  "11": {"inputs": {"clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors", "clip_name3": "t5xxl_fp8_e4m3fn.safetensors"}, "class_type": "TripleCLIPLoader"},
  "13": {"inputs": {"shift": 3, "model": ["4", 0]}, "class_type": "ModelSamplingSD3"},
  "67": {"inputs": {"conditioning": ["71", 0]}, "class_type": "ConditioningZeroOut"},
  "68": {"inputs": {"start": 0.1, "end": 1, "conditioning": ["67", 0]}, "class_type": "ConditioningSetTimestepRange"},
  "69": {"inputs": {"conditioning_1": ["68", 0], "conditioning_2": ["70", 0]}, "class_type": "ConditioningCombine"},
  "70": {"inputs": {"start": 0, "end": 0.1, "conditioning": ["71", 0]}, "class_type": "ConditioningSetTimestepRange"},
  "71": {"inputs": {"text": "", "clip": ["11", 0]}, "class_type": "CLIPTextEncode"},
  "135": {"inputs": {"width": 1024, "height": 1024, "batch_size": 1}, "class_type": "EmptySD3LatentImage"},
  "294": {"inputs": {"seed": 998428620595727, "steps": 20, "cfg": 4.5, "sampler_name": "dpmpp_2m", "scheduler": "sgm_uniform", "denoise": 1, "model": ["13", 0], "positive": ["6", 0], "negative": ["69", 0], "latent_image": ["135", 0]}, "class_type": "KSampler"},
  "301": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage"}
})");
  return graph;
}

WorkflowTemplate sd35_txt2img_template(const std::vector<std::string>& checkpoints) {
  using T = TemplateField::Type;
  WorkflowTemplate t;
  t.route = "/workflow/sd3.5-medium/txt2img";
  t.summary = "txt2img";
  t.graph = recipe_graph();
  // ComfyUI's KSampler.SAMPLERS / SCHEDULERS as the 1.8.2 document lists them. A name the
  // engine does not implement passes here and is refused by the graph validation (a clear
  // 400 naming the field), never replaced by another sampler.
  const std::vector<std::string> samplers = {
      "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
      "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
      "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
      "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
      "ipndm", "ipndm_v", "deis", "ddim", "uni_pc", "uni_pc_bh2"};
  const std::vector<std::string> schedulers = {"normal", "karras", "exponential", "sgm_uniform",
                                               "simple", "ddim_uniform", "beta",
                                               "linear_quadratic"};
  std::vector<std::string> ckpts = checkpoints;
  if (std::find(ckpts.begin(), ckpts.end(), "sd3.5_medium.safetensors") == ckpts.end())
    ckpts.insert(ckpts.begin(), "sd3.5_medium.safetensors");
  t.fields = {
      {"prompt", T::kString, true, {}, {}, {}, nullptr, "6", "text",
       "The positive prompt for image generation"},
      {"width", T::kInteger, false, 256, 2048, {}, 1024, "135", "width",
       "Width of the generated image"},
      {"height", T::kInteger, false, 256, 2048, {}, 1024, "135", "height",
       "Height of the generated image"},
      {"seed", T::kInteger, false, {}, {}, {}, nullptr, "294", "seed",
       "Seed for random number generation"},
      {"steps", T::kInteger, false, 1, 100, {}, 20, "294", "steps", "Number of sampling steps"},
      {"cfg_scale", T::kNumber, false, 0, 20, {}, 4.5, "294", "cfg",
       "Classifier-free guidance scale"},
      {"sampler_name", T::kString, false, {}, {}, samplers, "dpmpp_2m", "294", "sampler_name",
       "Name of the sampler to use"},
      {"scheduler", T::kString, false, {}, {}, schedulers, "sgm_uniform", "294", "scheduler",
       "Type of scheduler to use"},
      {"denoise", T::kNumber, false, 0, 1, {}, 1, "294", "denoise", "Denoising strength"},
      {"checkpoint", T::kString, false, {}, {}, ckpts, "sd3.5_medium.safetensors", "4",
       "ckpt_name", "Checkpoint file (models/checkpoints)"},
  };
  return t;
}

namespace {

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Checks one value against its field; the message names the field.
bool check_value(const TemplateField& f, const json& v, TemplateError* error) {
  auto fail = [&](const std::string& m) {
    *error = {f.name, "input." + f.name + " " + m};
    return false;
  };
  switch (f.type) {
    case TemplateField::Type::kString:
      if (!v.is_string()) return fail("must be a string");
      if (!f.choices.empty() &&
          std::find(f.choices.begin(), f.choices.end(), v.get<std::string>()) == f.choices.end()) {
        std::string list;
        for (const auto& c : f.choices) list += (list.empty() ? "" : ", ") + c;
        return fail("must be one of: " + list);
      }
      return true;
    case TemplateField::Type::kInteger:
      // 20.0 is an integer to JavaScript (and to zod's .int()), so it is one here too.
      if (!v.is_number() ||
          (v.is_number_float() && std::floor(v.get<double>()) != v.get<double>()))
        return fail("must be an integer");
      break;
    case TemplateField::Type::kNumber:
      if (!v.is_number()) return fail("must be a number");
      break;
  }
  const double d = v.get<double>();
  if (!std::isfinite(d)) return fail("must be finite");
  // Integers written as floats must fit the graph's 64-bit integers.
  if (f.type == TemplateField::Type::kInteger && v.is_number_float() && std::fabs(d) > 9e18)
    return fail("is out of range, got " + v.dump());
  if (f.minimum && f.maximum && (d < *f.minimum || d > *f.maximum))
    return fail("must be between " + number_text(*f.minimum) + " and " +
                number_text(*f.maximum) + ", got " + v.dump());
  if (f.minimum && d < *f.minimum)
    return fail("must be at least " + number_text(*f.minimum) + ", got " + v.dump());
  if (f.maximum && d > *f.maximum)
    return fail("must be at most " + number_text(*f.maximum) + ", got " + v.dump());
  return true;
}

}  // namespace

std::optional<json> fill_template(const WorkflowTemplate& t, const json& input, json* resolved,
                                  TemplateError* error) {
  if (!input.is_object()) {
    *error = {"", "input must be an object"};
    return std::nullopt;
  }
  for (auto it = input.begin(); it != input.end(); ++it) {
    const bool known = std::any_of(t.fields.begin(), t.fields.end(),
                                   [&](const TemplateField& f) { return f.name == it.key(); });
    if (!known) {
      std::string names;
      for (const auto& f : t.fields) names += (names.empty() ? "" : ", ") + f.name;
      *error = {it.key(), "input." + it.key() + " is not a field of this workflow (fields: " +
                              names + ")"};
      return std::nullopt;
    }
  }
  json graph = t.graph;
  json out = json::object();
  for (const auto& f : t.fields) {
    json value;
    if (input.contains(f.name)) {
      value = input[f.name];
      if (!check_value(f, value, error)) return std::nullopt;
      // Integral floats go into the graph as integers (KSampler steps, sizes).
      if (f.type == TemplateField::Type::kInteger && value.is_number_float())
        value = int64_t(value.get<double>());
    } else if (f.required) {
      *error = {f.name, "input." + f.name + " is required"};
      return std::nullopt;
    } else if (f.name == "seed") {
      value = random_seed();
    } else {
      value = f.default_value;
    }
    // Negative seeds cannot reach KSampler (0 .. 2^64-1).
    if (f.name == "seed" && value.is_number_integer() && !value.is_number_unsigned() &&
        value.get<int64_t>() < 0) {
      *error = {f.name, "input.seed must be at least 0, got " + value.dump()};
      return std::nullopt;
    }
    out[f.name] = value;
    graph[f.node]["inputs"][f.input] = value;
  }
  *resolved = std::move(out);
  return graph;
}

std::string field_for(const WorkflowTemplate& t, const std::string& node,
                      const std::string& input) {
  for (const auto& f : t.fields)
    if (f.node == node && f.input == input) return f.name;
  return "";
}

}  // namespace sd35::server
