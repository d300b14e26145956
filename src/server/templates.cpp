#include "server/templates.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "server/util.h"

namespace sd35::server {

using nlohmann::json;
using Type = TemplateField::Type;

const std::vector<std::string>& comfy_samplers() {
  static const std::vector<std::string> v = {
      "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
      "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
      "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
      "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
      "ipndm", "ipndm_v", "deis", "ddim", "uni_pc", "uni_pc_bh2"};
  return v;
}

const std::vector<std::string>& comfy_schedulers() {
  static const std::vector<std::string> v = {"normal", "karras", "exponential", "sgm_uniform",
                                             "simple", "ddim_uniform", "beta", "linear_quadratic"};
  return v;
}

std::string type_name(Type type) {
  switch (type) {
    case Type::kString: return "string";
    case Type::kInteger: return "integer";
    case Type::kNumber: return "number";
    case Type::kBoolean: return "boolean";
  }
  return "string";
}

namespace {

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string join(const std::vector<json>& values) {
  std::string out;
  for (const auto& v : values)
    out += (out.empty() ? "" : ", ") + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

// Checks one value against its field; the message names the field. Shared by requests and
// by the template loader (defaults must pass their own field).
bool check_value(const TemplateField& f, const json& v, TemplateError* error) {
  auto fail = [&](const std::string& m) {
    *error = {f.name, "input." + f.name + " " + m};
    return false;
  };
  switch (f.type) {
    case Type::kString:
      if (!v.is_string()) return fail("must be a string");
      break;
    case Type::kBoolean:
      if (!v.is_boolean()) return fail("must be a boolean");
      break;
    case Type::kInteger:
      // 20.0 is an integer to JavaScript (and to zod's .int()), so it is one here too.
      if (!v.is_number() ||
          (v.is_number_float() && std::floor(v.get<double>()) != v.get<double>()))
        return fail("must be an integer");
      break;
    case Type::kNumber:
      if (!v.is_number()) return fail("must be a number");
      break;
  }
  if (!f.choices.empty() && std::find(f.choices.begin(), f.choices.end(), v) == f.choices.end())
    return fail("must be one of: " + join(f.choices));
  if (!v.is_number()) return true;
  const double d = v.get<double>();
  if (!std::isfinite(d)) return fail("must be finite");
  // Integers written as floats must fit the graph's 64-bit integers.
  if (f.type == Type::kInteger && v.is_number_float() && std::fabs(d) > 9e18)
    return fail("is out of range, got " + v.dump());
  if (f.minimum && f.maximum && (d < *f.minimum || d > *f.maximum))
    return fail("must be between " + number_text(*f.minimum) + " and " +
                number_text(*f.maximum) + ", got " + v.dump());
  if (f.minimum && d < *f.minimum)
    return fail("must be at least " + number_text(*f.minimum) + ", got " + v.dump());
  if (f.maximum && d > *f.maximum)
    return fail("must be at most " + number_text(*f.maximum) + ", got " + v.dump());
  // Negative seeds cannot reach KSampler (0 .. 2^64-1).
  if (f.random && d < 0) return fail("must be at least 0, got " + v.dump());
  return true;
}

bool is_identifier(const std::string& s) {
  if (s.empty() || s.size() > 64 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// Keys starting with "_" are comments (as ComfyUI's "_meta"); any other unknown key is a
// typo that would otherwise be silently ignored.
bool known_key(const std::string& key, std::initializer_list<const char*> allowed) {
  if (!key.empty() && key[0] == '_') return true;
  return std::any_of(allowed.begin(), allowed.end(), [&](const char* k) { return key == k; });
}

// One field of the "fields" array. `where` prefixes every message ("fields[3] (steps)").
std::optional<TemplateField> parse_field(const json& j, size_t index, const json& graph,
                                         const TemplateContext& ctx, std::string* error) {
  std::string where = "fields[" + std::to_string(index) + "]";
  auto fail = [&](const std::string& m) {
    *error = where + ": " + m;
    return std::nullopt;
  };
  if (!j.is_object()) return fail("must be an object");
  TemplateField f;
  if (!j.contains("name") || !j["name"].is_string()) return fail("name (a string) is required");
  f.name = j["name"].get<std::string>();
  where += " (" + f.name + ")";
  if (!is_identifier(f.name))
    return fail("name must be letters, digits and '_' (not starting with a digit), at most 64");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known_key(it.key(), {"name", "type", "required", "minimum", "maximum", "enum",
                              "enum_from", "default", "random", "example", "targets",
                              "description"}))
      return fail("unknown key '" + it.key() + "'");

  const std::string type = j.value("type", std::string());
  if (type == "string") f.type = Type::kString;
  else if (type == "integer") f.type = Type::kInteger;
  else if (type == "number") f.type = Type::kNumber;
  else if (type == "boolean") f.type = Type::kBoolean;
  else return fail("type must be string, integer, number or boolean, got " + j.value("type", json()).dump());

  if (j.contains("required")) {
    if (!j["required"].is_boolean()) return fail("required must be true or false");
    f.required = j["required"].get<bool>();
  }
  if (j.contains("description")) {
    if (!j["description"].is_string()) return fail("description must be a string");
    f.description = j["description"].get<std::string>();
  }
  const bool numeric = f.type == Type::kInteger || f.type == Type::kNumber;
  for (const char* key : {"minimum", "maximum"}) {
    if (!j.contains(key)) continue;
    if (!numeric) return fail(std::string(key) + " is only for integer and number fields");
    if (!j[key].is_number() || !std::isfinite(j[key].get<double>()))
      return fail(std::string(key) + " must be a number");
    (std::string(key) == "minimum" ? f.minimum : f.maximum) = j[key].get<double>();
  }
  if (f.minimum && f.maximum && *f.minimum > *f.maximum)
    return fail("minimum " + number_text(*f.minimum) + " is above maximum " +
                number_text(*f.maximum));

  if (j.contains("enum") && j.contains("enum_from")) return fail("enum and enum_from exclude each other");
  if (j.contains("enum")) {
    if (!j["enum"].is_array() || j["enum"].empty()) return fail("enum must be a non-empty array");
    f.choices.assign(j["enum"].begin(), j["enum"].end());
  } else if (j.contains("enum_from")) {
    if (f.type != Type::kString) return fail("enum_from is only for string fields");
    const std::string from = j["enum_from"].is_string() ? j["enum_from"].get<std::string>() : "";
    std::vector<std::string> names;
    if (from == "samplers") names = comfy_samplers();
    else if (from == "schedulers") names = comfy_schedulers();
    else if (from.rfind("models/", 0) == 0 && from.size() > 7) {
      auto m = ctx.models.find(from.substr(7));
      if (m != ctx.models.end()) names = m->second;
      // The default is always a choice (the recipe's checkpoint before its file is listed).
      if (j.contains("default") && j["default"].is_string() &&
          std::find(names.begin(), names.end(), j["default"].get<std::string>()) == names.end())
        names.insert(names.begin(), j["default"].get<std::string>());
      if (names.empty()) return fail("enum_from '" + from + "' is empty and there is no default");
    } else {
      return fail("enum_from must be \"samplers\", \"schedulers\" or \"models/<folder>\", got " +
                  j["enum_from"].dump());
    }
    f.choices.assign(names.begin(), names.end());
  }

  if (j.contains("random")) {
    if (!j["random"].is_boolean()) return fail("random must be true or false");
    f.random = j["random"].get<bool>();
    if (f.random && f.type != Type::kInteger) return fail("random is only for integer fields (seeds)");
  }
  if (j.contains("default") && !j["default"].is_null()) {
    if (f.required) return fail("a required field has no default");
    if (f.random) return fail("a random field has no default (absent means random)");
    f.default_value = j["default"];
    TemplateError e;
    if (!check_value(f, f.default_value, &e))
      return fail("default " + f.default_value.dump() + ": " + e.message.substr(e.message.find(' ') + 1));
  } else if (!f.required && !f.random) {
    return fail("an optional field needs a default (or \"random\": true for a seed)");
  }
  for (const auto& c : f.choices) {
    TemplateField plain = f;
    plain.choices.clear();
    TemplateError e;
    if (!check_value(plain, c, &e))
      return fail("enum value " + c.dump() + ": " + e.message.substr(e.message.find(' ') + 1));
  }
  if (j.contains("example")) f.example = j["example"];

  if (!j.contains("targets") || !j["targets"].is_array() || j["targets"].empty())
    return fail("targets must be a non-empty array of [node id, input name]");
  for (const auto& t : j["targets"]) {
    if (!t.is_array() || t.size() != 2 || !t[0].is_string() || !t[1].is_string())
      return fail("each target must be [\"<node id>\", \"<input name>\"], got " + t.dump());
    const std::string node = t[0].get<std::string>(), input = t[1].get<std::string>();
    if (!graph.contains(node))
      return fail("target node \"" + node + "\" is not in the graph");
    const json& inputs = graph[node]["inputs"];
    if (!inputs.contains(input))
      return fail("target input \"" + input + "\" is not an input of node " + node + " (" +
                  graph[node]["class_type"].get<std::string>() + ")");
    // A link ([node, output]) replaced by a value would cut the graph.
    if (inputs[input].is_array())
      return fail("target " + node + "." + input + " is a link to another node, not a value");
    f.targets.emplace_back(node, input);
  }
  return f;
}

}  // namespace

std::optional<WorkflowTemplate> parse_template(std::string_view text, const TemplateContext& ctx,
                                               std::string* error) {
  auto fail = [&](const std::string& m) {
    *error = m;
    return std::nullopt;
  };
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    // Parse again with exceptions for the position of the error.
    try {
      const json again = json::parse(text);
    } catch (const json::parse_error& e) {
      return fail(std::string("not valid JSON: ") + e.what());
    }
    return fail("not valid JSON");
  }
  if (!j.is_object()) return fail("a template must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known_key(it.key(), {"summary", "description", "fields", "graph"}))
      return fail("unknown key '" + it.key() + "' (summary, description, fields, graph)");
  WorkflowTemplate t;
  for (const char* key : {"summary", "description"})
    if (j.contains(key)) {
      if (!j[key].is_string()) return fail(std::string(key) + " must be a string");
      (std::string(key) == "summary" ? t.summary : t.description) = j[key].get<std::string>();
    }

  if (!j.contains("graph") || !j["graph"].is_object() || j["graph"].empty())
    return fail("graph (a non-empty ComfyUI API-format object) is required");
  bool has_output = false;
  for (auto it = j["graph"].begin(); it != j["graph"].end(); ++it) {
    const json& n = it.value();
    if (!n.is_object() || !n.contains("class_type") || !n["class_type"].is_string() ||
        !n.contains("inputs") || !n["inputs"].is_object())
      return fail("graph node \"" + it.key() + "\" must be {\"class_type\": string, \"inputs\": object}");
    if (n["inputs"].contains("filename_prefix") && n["inputs"]["filename_prefix"].is_string())
      has_output = true;
  }
  if (!has_output)
    return fail("graph has no output node (a node with a \"filename_prefix\" input, such as SaveImage)");
  t.graph = j["graph"];

  if (!j.contains("fields") || !j["fields"].is_array())
    return fail("fields (an array) is required");
  std::set<std::string> names;
  std::map<std::pair<std::string, std::string>, std::string> owner;
  for (size_t i = 0; i < j["fields"].size(); ++i) {
    auto f = parse_field(j["fields"][i], i, t.graph, ctx, error);
    if (!f) return std::nullopt;
    if (!names.insert(f->name).second)
      return fail("fields[" + std::to_string(i) + "] (" + f->name + "): the name is used twice");
    for (const auto& target : f->targets) {
      auto [it, fresh] = owner.emplace(target, f->name);
      if (!fresh)
        return fail("fields[" + std::to_string(i) + "] (" + f->name + "): target " +
                    target.first + "." + target.second + " is already set by field " + it->second);
    }
    t.fields.push_back(std::move(*f));
  }
  return t;
}

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
      if (f.type == Type::kInteger && value.is_number_float()) value = int64_t(value.get<double>());
    } else if (f.required) {
      *error = {f.name, "input." + f.name + " is required"};
      return std::nullopt;
    } else if (f.random) {
      value = random_seed();
    } else {
      value = f.default_value;
    }
    out[f.name] = value;
    for (const auto& [node, in] : f.targets) graph[node]["inputs"][in] = value;
  }
  *resolved = std::move(out);
  return graph;
}

std::string field_for(const WorkflowTemplate& t, const std::string& node,
                      const std::string& input) {
  for (const auto& f : t.fields)
    for (const auto& target : f.targets)
      if (target.first == node && target.second == input) return f.name;
  return "";
}

}  // namespace sd35::server
