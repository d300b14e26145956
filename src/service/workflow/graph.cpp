// Graph parsing and validation: JSON -> per-node typed ops (node-family files), then links
// (existence, output index, type), cycles, and the nodes the output nodes need.
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "service/workflow/node_inputs.h"
#include "service/workflow/plan.h"

namespace sd35::workflow {

namespace fs = std::filesystem;
using nlohmann::json;

std::string WorkflowError::to_string() const {
  std::string s;
  if (!node_id.empty()) s = "node " + node_id + (class_type.empty() ? "" : " (" + class_type + ")");
  if (!input.empty()) s += (s.empty() ? "" : ", ") + std::string("input '") + input + "'";
  return s.empty() ? message : s + ": " + message;
}

std::vector<WeightInput> Plan::engine_models() const {
  std::vector<WeightInput> out;
  if (!checkpoint.empty()) out.push_back({checkpoint, std::nullopt});
  for (const auto& p : text_encoders) out.push_back({p, std::nullopt});
  // Forced role: the index then takes the VAE from this file even though the checkpoint
  // holds one too (WeightIndex: a given role wins over a detected one).
  if (!vae.empty()) out.push_back({vae, Component::kVAE});
  return out;
}

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::kModel: return "MODEL";
    case ValueType::kClip: return "CLIP";
    case ValueType::kVae: return "VAE";
    case ValueType::kConditioning: return "CONDITIONING";
    case ValueType::kLatent: return "LATENT";
    case ValueType::kImage: return "IMAGE";
    case ValueType::kMask: return "MASK";
    case ValueType::kNoise: return "NOISE";
    case ValueType::kGuider: return "GUIDER";
    case ValueType::kSampler: return "SAMPLER";
    case ValueType::kSigmas: return "SIGMAS";
  }
  return "?";
}

std::vector<ValueType> output_types(const std::string& c) {
  using V = ValueType;
  static const std::map<std::string, std::vector<V>> table = {
      {"CheckpointLoaderSimple", {V::kModel, V::kClip, V::kVae}},
      {"TripleCLIPLoader", {V::kClip}},
      {"DualCLIPLoader", {V::kClip}},
      {"CLIPLoader", {V::kClip}},
      {"VAELoader", {V::kVae}},
      {"ModelSamplingSD3", {V::kModel}},
      {"SkipLayerGuidanceSD3", {V::kModel}},
      {"CLIPTextEncode", {V::kConditioning}},
      {"CLIPTextEncodeSD3", {V::kConditioning}},
      {"ConditioningZeroOut", {V::kConditioning}},
      {"ConditioningSetTimestepRange", {V::kConditioning}},
      {"ConditioningCombine", {V::kConditioning}},
      {"EmptySD3LatentImage", {V::kLatent}},
      {"KSampler", {V::kLatent}},
      {"KSamplerAdvanced", {V::kLatent}},
      {"SamplerCustomAdvanced", {V::kLatent, V::kLatent}},  // output, denoised_output
      {"RandomNoise", {V::kNoise}},
      {"DisableNoise", {V::kNoise}},
      {"CFGGuider", {V::kGuider}},
      {"BasicGuider", {V::kGuider}},
      {"KSamplerSelect", {V::kSampler}},
      {"BasicScheduler", {V::kSigmas}},
      {"VAEDecode", {V::kImage}},
      {"VAEDecodeTiled", {V::kImage}},
      {"VAEEncode", {V::kLatent}},
      {"ImageScale", {V::kImage}},
      {"LoadImage", {V::kImage, V::kMask}},
  };
  auto it = table.find(c);
  return it == table.end() ? std::vector<V>{} : it->second;
}

Status NodeInputs::fail(const std::string& input, const std::string& message) {
  error_ = WorkflowError{id_, class_type_, input, message};
  return invalid_argument(error_.to_string());
}

Result<const json*> NodeInputs::get(const std::string& name) {
  used_.insert(name);
  auto it = inputs_.find(name);
  if (it == inputs_.end()) return fail(name, "required input is missing");
  return &*it;
}

Result<std::string> NodeInputs::str(const std::string& name) {
  SD35_ASSIGN_OR_RETURN(const json* v, get(name));
  if (!v->is_string()) return fail(name, "expected a string, got " + std::string(v->type_name()));
  return v->get<std::string>();
}

Result<double> NodeInputs::number(const std::string& name, double lo, double hi) {
  SD35_ASSIGN_OR_RETURN(const json* v, get(name));
  if (!v->is_number()) return fail(name, "expected a number, got " + std::string(v->type_name()));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    return fail(name, "value " + v->dump() + " is outside [" + json(lo).dump() + ", " +
                          json(hi).dump() + "]");
  return d;
}

Result<int64_t> NodeInputs::integer(const std::string& name, int64_t lo, int64_t hi) {
  SD35_ASSIGN_OR_RETURN(const json* v, get(name));
  int64_t i = 0;
  if (v->is_number_integer() && !(v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX)) {
    i = v->get<int64_t>();
  } else if (v->is_number_unsigned()) {
    return fail(name, "value " + v->dump() + " is too large");
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             v->get<double>() == std::floor(v->get<double>()) &&
             std::fabs(v->get<double>()) < 9e15) {
    i = int64_t(v->get<double>());
  } else {
    return fail(name, "expected an integer, got " + v->dump());
  }
  if (i < lo || i > hi)
    return fail(name, "value " + std::to_string(i) + " is outside [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
  return i;
}

Result<uint64_t> NodeInputs::u64(const std::string& name) {
  SD35_ASSIGN_OR_RETURN(const json* v, get(name));
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer()) return fail(name, "value " + v->dump() + " must be >= 0");
  if (v->is_number_float() && std::isfinite(v->get<double>()) && v->get<double>() >= 0 &&
      v->get<double>() == std::floor(v->get<double>()) && v->get<double>() < 1.8e19)
    return uint64_t(v->get<double>());
  return fail(name, "expected a non-negative integer, got " + v->dump());
}

Result<std::string> NodeInputs::choice(const std::string& name,
                                       const std::vector<std::string>& options) {
  SD35_ASSIGN_OR_RETURN(std::string v, str(name));
  std::string list;
  for (const auto& o : options) {
    if (o == v) return v;
    list += (list.empty() ? "" : ", ") + o;
  }
  return fail(name, "'" + v + "' is not one of " + list);
}

Result<Link> NodeInputs::link(const std::string& name, ValueType type) {
  SD35_ASSIGN_OR_RETURN(const json* v, get(name));
  if (!v->is_array() || v->size() != 2 || !((*v)[0].is_string() || (*v)[0].is_number_integer()) ||
      !(*v)[1].is_number_integer())
    return fail(name, std::string("expected a link [node_id, output_index] to a ") +
                          value_type_name(type) + ", got " + v->dump());
  Link l;
  l.node = (*v)[0].is_string() ? (*v)[0].get<std::string>() : (*v)[0].dump();
  const int64_t o = (*v)[1].get<int64_t>();
  if (o < 0 || o > 1000) return fail(name, "bad output index " + std::to_string(o));
  l.output = int(o);
  links_.push_back(PendingLink{id_, class_type_, name, l, type});
  return l;
}

Result<std::string> NodeInputs::model_file(const std::string& input,
                                           const std::vector<std::string>& subdirs) {
  SD35_ASSIGN_OR_RETURN(std::string name, str(input));
  if (name.empty()) return fail(input, "empty file name");
  const fs::path rel(name);
  if (rel.is_absolute())
    return fail(input, "'" + name + "' must be a name inside the models folder");
  for (const auto& part : rel)
    if (part == "..") return fail(input, "'" + name + "' must not contain '..'");
  std::string tried;
  for (const auto& sub : subdirs) {
    const fs::path p = fs::path(options_.models_dir) / sub / rel;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
    tried += (tried.empty() ? "" : ", ") + sub + "/";
  }
  return fail(input, "model file '" + name + "' not found in " + tried + " of the models folder");
}

Status NodeInputs::finish() {
  for (auto it = inputs_.begin(); it != inputs_.end(); ++it)
    if (!used_.count(it.key())) return fail(it.key(), "unknown input for " + class_type_);
  return ok_status();
}

namespace {

Status graph_fail(WorkflowError* out, WorkflowError e) {
  if (out) *out = e;
  return invalid_argument(e.to_string());
}

}  // namespace

Result<Plan> parse_workflow(std::string_view json_text, const WorkflowOptions& options,
                            WorkflowError* error) {
  json graph = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (graph.is_discarded()) return graph_fail(error, {"", "", "", "the graph is not valid JSON"});
  // The /prompt request wraps the graph in {"prompt": {...}}; accept either.
  if (graph.is_object() && graph.contains("prompt") && graph["prompt"].is_object() &&
      !graph["prompt"].contains("class_type"))
    graph = graph["prompt"];
  if (!graph.is_object() || graph.empty())
    return graph_fail(error, {"", "", "", "the graph must be a non-empty JSON object"});

  std::map<std::string, PlanNode> nodes;
  std::vector<PendingLink> links;
  for (auto it = graph.begin(); it != graph.end(); ++it) {
    const std::string id = it.key();
    const json& node = it.value();
    if (!node.is_object())
      return graph_fail(error, {id, "", "", "a node must be an object with class_type and inputs"});
    if (!node.contains("class_type") || !node["class_type"].is_string())
      return graph_fail(error, {id, "", "", "class_type is missing or not a string"});
    const std::string cls = node["class_type"].get<std::string>();
    static const json kEmpty = json::object();
    const json* inputs = &kEmpty;
    if (node.contains("inputs")) {
      if (!node["inputs"].is_object())
        return graph_fail(error, {id, cls, "", "inputs must be an object"});
      inputs = &node["inputs"];
    }
    if (output_types(cls).empty() && cls != "SaveImage" && cls != "PreviewImage")
      return graph_fail(error, {id, cls, "", "unknown class_type '" + cls + "'"});
    NodeInputs in(id, cls, *inputs, options, links);
    Result<Op> op = invalid_argument("");
    bool known = false;
    for (auto* family : {parse_loader_node, parse_conditioning_node, parse_latent_node,
                         parse_sampling_node, parse_image_node}) {
      op = family(in, known);
      if (known) break;
    }
    if (!known) return graph_fail(error, {id, cls, "", "unknown class_type '" + cls + "'"});
    if (!op.ok()) return graph_fail(error, in.error());
    if (Status st = in.finish(); !st.ok()) return graph_fail(error, in.error());
    nodes.emplace(id, PlanNode{id, cls, std::move(*op)});
  }

  // Links: target exists, output index in range, type matches.
  std::map<std::string, std::vector<std::string>> deps;
  for (const auto& l : links) {
    auto t = nodes.find(l.link.node);
    if (t == nodes.end())
      return graph_fail(error, {l.node_id, l.class_type, l.input,
                                "links to node '" + l.link.node + "', which does not exist"});
    const auto outs = output_types(t->second.class_type);
    if (l.link.output >= int(outs.size()))
      return graph_fail(error, {l.node_id, l.class_type, l.input,
                                "links to output " + std::to_string(l.link.output) + " of node " +
                                    l.link.node + " (" + t->second.class_type + "), which has " +
                                    std::to_string(outs.size()) + " output(s)"});
    if (outs[l.link.output] != l.expected)
      return graph_fail(
          error, {l.node_id, l.class_type, l.input,
                  std::string("expected ") + value_type_name(l.expected) + ", but output " +
                      std::to_string(l.link.output) + " of node " + l.link.node + " (" +
                      t->second.class_type + ") is " + value_type_name(outs[l.link.output])});
    deps[l.node_id].push_back(l.link.node);
  }

  // Cycles (whole graph), then the topological order of what the outputs need.
  std::map<std::string, int> state;  // 0 new, 1 on stack, 2 done
  std::vector<std::string> order;
  Status cycle;
  std::function<bool(const std::string&)> visit = [&](const std::string& id) -> bool {
    state[id] = 1;
    for (const auto& l : links) {
      if (l.node_id != id) continue;
      const std::string& d = l.link.node;
      if (state[d] == 1) {
        cycle = graph_fail(
            error, {l.node_id, l.class_type, l.input, "the link to node " + d + " closes a cycle"});
        return false;
      }
      if (state[d] == 0 && !visit(d)) return false;
    }
    state[id] = 2;
    order.push_back(id);
    return true;
  };
  for (const auto& [id, n] : nodes)
    if (state[id] == 0 && !visit(id)) return cycle;

  // Needed: ancestors of the output nodes (SaveImage, PreviewImage).
  std::set<std::string> needed;
  std::function<void(const std::string&)> mark = [&](const std::string& id) {
    if (!needed.insert(id).second) return;
    for (const auto& d : deps[id]) mark(d);
  };
  for (const auto& [id, n] : nodes)
    if (std::holds_alternative<SaveImageOp>(n.op)) mark(id);
  if (needed.empty())
    return graph_fail(error,
                      {"", "", "", "the graph has no output node (SaveImage or PreviewImage)"});

  Plan plan;
  for (const auto& id : order) {
    if (!needed.count(id)) continue;
    PlanNode& n = nodes.at(id);
    if (auto* c = std::get_if<CheckpointLoaderOp>(&n.op)) {
      if (!plan.checkpoint.empty() && plan.checkpoint != c->path)
        return graph_fail(
            error, {n.id, n.class_type, "ckpt_name", "only one checkpoint per graph is supported"});
      plan.checkpoint = c->path;
    }
    if (auto* c = std::get_if<ClipLoaderOp>(&n.op)) {
      if (!plan.text_encoders.empty() && plan.text_encoders != c->paths)
        return graph_fail(error, {n.id, n.class_type, "clip_name1",
                                  "only one set of text encoders per graph is supported"});
      plan.text_encoders = c->paths;
    }
    if (auto* c = std::get_if<VAELoaderOp>(&n.op)) {
      if (!plan.vae.empty() && plan.vae != c->path)
        return graph_fail(
            error, {n.id, n.class_type, "vae_name", "only one VAE file per graph is supported"});
      plan.vae = c->path;
    }
    plan.nodes.push_back(std::move(n));
  }
  // The engine holds one VAE: with a VAELoader, a VAE node fed by the checkpoint's VAE would
  // silently decode with the loader's file.
  if (!plan.vae.empty()) {
    for (const auto& l : links) {
      if (l.expected != ValueType::kVae || !needed.count(l.node_id)) continue;
      const PlanNode* from = nullptr;
      for (const auto& pn : plan.nodes)
        if (pn.id == l.link.node) from = &pn;
      if (from && std::holds_alternative<CheckpointLoaderOp>(from->op))
        return graph_fail(error,
                          {l.node_id, l.class_type, l.input,
                           "uses the VAE of checkpoint node " + l.link.node +
                               " while the graph also loads a VAE file with VAELoader; the "
                               "engine holds one VAE, so every VAE input must use the same one"});
    }
  }
  return plan;
}

}  // namespace sd35::workflow
