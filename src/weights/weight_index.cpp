#include "weights/weight_index.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace sd35 {

namespace fs = std::filesystem;

std::string_view component_name(Component c) {
  switch (c) {
    case Component::kMMDiT: return "mmdit";
    case Component::kVAE: return "vae";
    case Component::kClipL: return "clip_l";
    case Component::kClipG: return "clip_g";
    case Component::kT5XXL: return "t5xxl";
  }
  return "?";
}

std::optional<Component> component_from_name(std::string_view n) {
  std::string s;
  for (char c : n) {
    if (c == '-' || c == '_' || c == ' ') continue;
    s += char(std::tolower(static_cast<unsigned char>(c)));
  }
  if (s == "mmdit" || s == "model" || s == "unet" || s == "diffusionmodel" || s == "transformer")
    return Component::kMMDiT;
  if (s == "vae") return Component::kVAE;
  if (s == "clipl") return Component::kClipL;
  if (s == "clipg") return Component::kClipG;
  if (s == "t5" || s == "t5xxl") return Component::kT5XXL;
  return std::nullopt;
}

bool is_clip(Component c) { return c == Component::kClipL || c == Component::kClipG; }

std::string_view layout_name(Layout l) { return l == Layout::kSai ? "sai" : "diffusers"; }

const TensorSource* ComponentSources::find(std::string_view canonical) const {
  auto it = by_name.find(std::string(canonical));
  return it == by_name.end() ? nullptr : &tensors[it->second];
}

const ComponentSources* WeightIndex::component(Component c) const {
  const auto& o = components_[int(c)];
  return o ? &*o : nullptr;
}

const TensorSource* WeightIndex::find(Component c, std::string_view canonical) const {
  const ComponentSources* cs = component(c);
  return cs ? cs->find(canonical) : nullptr;
}

Result<Tensor> WeightIndex::load(Component c, std::string_view canonical) const {
  const TensorSource* src = find(c, canonical);
  if (!src) {
    return not_found(std::string(component_name(c)) + ": no tensor '" + std::string(canonical) +
                     "'");
  }
  return load(*src);
}

Result<Tensor> WeightIndex::load(const TensorSource& src) {
  if (src.parts.empty()) return internal_error("tensor source without parts: " + src.name);
  if (src.zero_copy()) {
    const TensorPart& p = src.parts[0];
    Tensor t = p.file->tensor(*p.info);
    if (t.shape() == src.shape) return t;
    // kLinearToConv1x1: same bytes, 4-D shape.
    return Tensor::view_of(t.data(), t.dtype(), src.shape, Device::kCPU, t.owner());
  }
  SD35_ASSIGN_OR_RETURN(Tensor out, Tensor::zeros(src.shape, src.dtype));
  uint8_t* dst = out.data_as<uint8_t>();
  if (src.parts.size() > 1) {
    for (const TensorPart& p : src.parts) {
      std::memcpy(dst, p.file->data(*p.info), p.info->nbytes);
      dst += p.info->nbytes;
    }
  } else {
    // Swap along dim 0; dim 0 is even (checked when indexing), so the halves are byte halves.
    const TensorPart& p = src.parts[0];
    const size_t half = p.info->nbytes / 2;
    std::memcpy(dst, p.file->data(*p.info) + half, half);
    std::memcpy(dst + half, p.file->data(*p.info), half);
  }
  return out;
}

namespace {

struct FileJob {
  std::string path;
  std::optional<Component> role;
  std::string role_reason;
  bool diffusers_folder = false;
};

// A component found in a file: the keys under `prefix`.
struct Segment {
  size_t file = 0;  // index into files
  std::string prefix;
  std::optional<Component> component;  // unset: a CLIP whose role is not yet known
  Layout layout = Layout::kSai;
  std::string role_reason;
  // The caller named this file's component (WeightInput::role): it wins over the same
  // component detected in other files, whatever the order (a VAELoader's file over the
  // checkpoint's VAE).
  bool forced = false;
  std::optional<Component> name_hint;  // from the file name
  std::vector<const TensorInfo*> tensors;
  int clip_width = 0, clip_layers = 0;
};

struct PrefixRule {
  const char* prefix;
  Component component;
};
// Single-file checkpoint prefixes (SPEC-model §2.2; ComfyUI supported_models.SD3).
constexpr PrefixRule kPrefixes[] = {
    {"model.diffusion_model.", Component::kMMDiT},
    {"first_stage_model.", Component::kVAE},
    {"text_encoders.clip_l.transformer.", Component::kClipL},
    {"text_encoders.clip_g.transformer.", Component::kClipG},
    {"text_encoders.t5xxl.transformer.", Component::kT5XXL},
};

struct DiffusersFolder {
  const char* dir;
  Component component;
};
// text_encoders/ (ComfyUI-style copies in newer HF repos) is deliberately not scanned: it
// duplicates text_encoder*/.
constexpr DiffusersFolder kDiffusersFolders[] = {
    {"transformer", Component::kMMDiT},  {"vae", Component::kVAE},
    {"text_encoder", Component::kClipL}, {"text_encoder_2", Component::kClipG},
    {"text_encoder_3", Component::kT5XXL},
};

bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = char(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

std::vector<std::string> list_safetensors(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// diffusers variants: model.safetensors, model.fp16.safetensors, model.fp16-00001-of-00002...
// Keep one variant (the plain one when present) so that a folder is not loaded twice.
std::vector<std::string> pick_variant(const std::vector<std::string>& files,
                                      std::vector<std::string>& skipped) {
  std::map<std::string, std::vector<std::string>> by_variant;
  for (const auto& f : files) {
    std::string stem = fs::path(f).stem().string();  // without .safetensors
    size_t of = stem.find("-of-");
    if (of != std::string::npos) {
      size_t dash = stem.rfind('-', of - 1);
      if (dash != std::string::npos) stem = stem.substr(0, dash);
    }
    size_t dot = stem.find('.');
    by_variant[dot == std::string::npos ? "" : stem.substr(dot + 1)].push_back(f);
  }
  if (by_variant.empty()) return {};
  auto chosen = by_variant.begin();  // "" sorts first
  for (auto it = by_variant.begin(); it != by_variant.end(); ++it) {
    if (it != chosen) skipped.insert(skipped.end(), it->second.begin(), it->second.end());
  }
  return chosen->second;
}

bool has_prefix_key(const SafetensorsFile& f, std::string_view p) {
  for (const auto& t : f.tensors())
    if (starts_with(t.name, p)) return true;
  return false;
}

int count_indices(const std::vector<const TensorInfo*>& ts, std::string_view prefix) {
  std::set<int> seen;
  for (const TensorInfo* t : ts) {
    if (!starts_with(t->name, prefix)) continue;
    size_t pos = prefix.size();
    int v = 0;
    size_t start = pos;
    while (pos < t->name.size() && std::isdigit(static_cast<unsigned char>(t->name[pos])) &&
           pos - start < 6) {
      v = v * 10 + (t->name[pos++] - '0');
    }
    if (pos > start && pos < t->name.size() && t->name[pos] == '.') seen.insert(v);
  }
  return int(seen.size());
}

// Marker keys of a bare (unprefixed) file.
struct BareKind {
  std::optional<Component> component;  // unset + is_clip: CLIP with unknown role
  bool clip = false;
  Layout layout = Layout::kSai;
  std::string error;
};

BareKind detect_bare(const SafetensorsFile& f) {
  BareKind k;
  auto has = [&](std::string_view n) { return f.contains(n); };
  auto hasp = [&](std::string_view p) { return has_prefix_key(f, p); };
  if (hasp("joint_blocks.")) {
    k.component = Component::kMMDiT;
  } else if (hasp("transformer_blocks.") && has("pos_embed.proj.weight")) {
    k.component = Component::kMMDiT;
    k.layout = Layout::kDiffusers;
  } else if (hasp("decoder.up_blocks.") || hasp("encoder.down_blocks.")) {
    k.component = Component::kVAE;
    k.layout = Layout::kDiffusers;
  } else if (has("decoder.conv_in.weight") || has("encoder.conv_in.weight")) {
    k.component = Component::kVAE;
  } else if (hasp("text_model.")) {
    k.clip = true;
  } else if (hasp("encoder.block.")) {
    k.component = Component::kT5XXL;
  } else if (hasp("transformer.resblocks.")) {
    k.error = "OpenCLIP naming (transformer.resblocks.*) is not supported; convert it to the "
              "Hugging Face CLIPTextModel naming";
  }
  return k;
}

std::optional<Component> clip_role_from_file_name(const std::string& path) {
  std::string n = lower(fs::path(path).filename().string());
  for (const char* s : {"clip_g", "clip-g", "clipg", "bigg"})
    if (n.find(s) != std::string::npos) return Component::kClipG;
  for (const char* s : {"clip_l", "clip-l", "clipl"})
    if (n.find(s) != std::string::npos) return Component::kClipL;
  return std::nullopt;
}

std::string json_scalar(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return std::to_string(v.get<int64_t>());
  return v.dump();
}

// Heads / activation from a config.json next to the file: the HF form (diffusers
// text_encoder/config.json: top-level num_attention_heads with model_type clip_text_model)
// or keyed by role (model-set directories: {"clip_l": {"num_attention_heads": 2}}).
void read_sidecar_hints(const std::string& file_path, Component c,
                        std::map<std::string, std::string>& hints, std::string& source,
                        std::vector<std::string>& notes) {
  if (!is_clip(c) && c != Component::kT5XXL) return;
  fs::path cfg = fs::path(file_path).parent_path() / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(cfg, ec)) return;
  auto size = fs::file_size(cfg, ec);
  if (ec || size > (4u << 20)) return;
  std::ifstream in(cfg, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    notes.push_back(cfg.string() + ": not a JSON object, ignored");
    return;
  }
  const nlohmann::json* section = nullptr;
  auto role = j.find(std::string(component_name(c)));
  if (role != j.end() && role->is_object()) {
    section = &*role;
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    std::string mt = lower(j["model_type"].get<std::string>());
    bool match = is_clip(c) ? mt.find("clip") != std::string::npos
                            : mt.find("t5") != std::string::npos;
    if (match) section = &j;
  }
  if (!section) return;
  bool used = false;
  for (const char* key : {"num_attention_heads", "num_heads", "hidden_act", "hidden_size",
                          "d_model"}) {
    auto it = section->find(key);
    if (it != section->end() && !hints.count(key)) {
      hints[key] = json_scalar(*it);
      used = true;
    }
  }
  if (used && source.empty()) source = cfg.string();
}

void read_metadata_hints(const SafetensorsFile& f, Component c,
                         std::map<std::string, std::string>& hints, std::string& source) {
  const std::string role = "sd35." + std::string(component_name(c)) + ".";
  // Role-specific entries first so they win over the general ones.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& [k, v] : f.metadata()) {
      std::string key;
      if (pass == 0 && starts_with(k, role)) key = k.substr(role.size());
      else if (pass == 1 && starts_with(k, "sd35.")) key = k.substr(5);
      if (key.empty() || key.find('.') != std::string::npos || hints.count(key)) continue;
      hints[key] = v;
      source = f.path() + " __metadata__";
    }
  }
}

}  // namespace

class WeightIndexBuilder {
 public:
  static Result<std::unique_ptr<WeightIndex>> build(const std::vector<WeightInput>& inputs);

 private:
  static Status expand(const WeightInput& in, std::vector<FileJob>& jobs,
                       std::vector<std::string>& notes);
  static Status resolve_clip_roles(std::vector<Segment>& segs);
  static void fill_sources(WeightIndex& index, ComponentSources& cs,
                           const std::vector<const Segment*>& segs);
};

Status WeightIndexBuilder::expand(const WeightInput& in, std::vector<FileJob>& jobs,
                                  std::vector<std::string>& notes) {
  std::error_code ec;
  fs::path p(in.path);
  if (!fs::exists(p, ec)) return not_found(in.path + ": no such file or directory");
  if (!fs::is_directory(p, ec)) {
    jobs.push_back({in.path, in.role, in.role ? "given" : "", false});
    return ok_status();
  }
  bool diffusers = fs::exists(p / "model_index.json", ec);
  for (const auto& d : kDiffusersFolders) diffusers |= fs::is_directory(p / d.dir, ec);
  if (diffusers) {
    size_t before = jobs.size();
    for (const auto& d : kDiffusersFolders) {
      if (!fs::is_directory(p / d.dir, ec)) continue;
      std::vector<std::string> skipped;
      for (const auto& f : pick_variant(list_safetensors(p / d.dir), skipped)) {
        jobs.push_back({f, d.component, std::string("diffusers folder ") + d.dir + "/", true});
      }
      for (const auto& s : skipped) notes.push_back(s + ": other variant, not loaded");
    }
    if (jobs.size() == before) return not_found(in.path + ": diffusers folder without weights");
    return ok_status();
  }
  auto files = list_safetensors(p);
  if (files.empty()) return not_found(in.path + ": no .safetensors files in the folder");
  for (const auto& f : files) jobs.push_back({f, in.role, in.role ? "given" : "", false});
  return ok_status();
}

Status WeightIndexBuilder::resolve_clip_roles(std::vector<Segment>& segs) {
  std::vector<Segment*> open;
  std::set<Component> taken;
  for (Segment& s : segs) {
    if (s.component) {
      if (is_clip(*s.component)) taken.insert(*s.component);
      continue;
    }
    if (s.name_hint) {
      s.component = s.name_hint;
      s.role_reason = "file name";
      taken.insert(*s.component);
    } else if (s.clip_layers == 32 || s.clip_width == 1280) {
      s.component = Component::kClipG;
      s.role_reason = "CLIP-G dimensions";
      taken.insert(*s.component);
    } else if (s.clip_layers == 12 && s.clip_width == 768) {
      s.component = Component::kClipL;
      s.role_reason = "CLIP-L dimensions";
      taken.insert(*s.component);
    } else {
      open.push_back(&s);
    }
  }
  if (open.empty()) return ok_status();
  auto describe = [](const Segment* s) {
    return "width " + std::to_string(s->clip_width) + ", " + std::to_string(s->clip_layers) +
           " layers";
  };
  if (open.size() == 2) {
    Segment* a = open[0];
    Segment* b = open[1];
    bool a_bigger = a->clip_width != b->clip_width ? a->clip_width > b->clip_width
                                                   : a->clip_layers > b->clip_layers;
    bool tie = a->clip_width == b->clip_width && a->clip_layers == b->clip_layers;
    if (!tie) {
      (a_bigger ? a : b)->component = Component::kClipG;
      (a_bigger ? b : a)->component = Component::kClipL;
      a->role_reason = b->role_reason = "the larger of two CLIPs is CLIP-G";
      return ok_status();
    }
  } else if (open.size() == 1 && taken.size() == 1) {
    open[0]->component =
        *taken.begin() == Component::kClipL ? Component::kClipG : Component::kClipL;
    open[0]->role_reason = "the other CLIP role is taken";
    return ok_status();
  }
  std::string msg = "cannot tell CLIP-L from CLIP-G for ";
  for (size_t i = 0; i < open.size(); ++i) {
    if (i) msg += ", ";
    msg += "a text encoder (" + describe(open[i]) + ")";
  }
  return invalid_argument(msg + ": give the role explicitly (--clip-l / --clip-g, or a file "
                                "name containing clip_l / clip_g)");
}

void WeightIndexBuilder::fill_sources(WeightIndex& index, ComponentSources& cs,
                                      const std::vector<const Segment*>& segs) {
  std::vector<std::string> stripped;
  for (const Segment* s : segs)
    for (const TensorInfo* t : s->tensors) stripped.push_back(t->name.substr(s->prefix.size()));
  const MapContext ctx = scan_map_context(stripped);
  const auto& rules = key_rules(cs.component, cs.layout);

  struct Pending {
    std::vector<TensorPart> parts;
    std::vector<std::string> source_names;
    Transform transform = Transform::kNone;
    int nparts = 1;
  };
  std::vector<std::string> order;
  std::unordered_map<std::string, Pending> pending;
  size_t k = 0;
  for (const Segment* s : segs) {
    const SafetensorsFile* file = index.files_[s->file].get();
    for (const TensorInfo* t : s->tensors) {
      MappedKey m = map_key(rules, stripped[k++], ctx);
      auto [it, fresh] = pending.try_emplace(m.canonical);
      Pending& p = it->second;
      if (fresh) {
        order.push_back(m.canonical);
        p.parts.resize(size_t(m.nparts));
        p.source_names.resize(size_t(m.nparts));
        p.nparts = m.nparts;
        p.transform = m.transform;
      }
      if (p.nparts != m.nparts || p.parts[size_t(m.part)].info) {
        cs.problems.push_back("'" + m.canonical + "' is stored more than once (" + t->name + ")");
        continue;
      }
      p.parts[size_t(m.part)] = {file, t};
      p.source_names[size_t(m.part)] = t->name;
    }
  }
  for (const std::string& name : order) {
    Pending& p = pending[name];
    TensorSource src;
    src.name = name;
    src.transform = p.transform;
    bool complete = true;
    for (size_t i = 0; i < p.parts.size(); ++i) {
      if (!p.parts[i].info) {
        complete = false;
        cs.problems.push_back("'" + name + "' lacks part " + std::to_string(i) + " of " +
                              std::to_string(p.parts.size()) + " (q/k/v)");
      }
    }
    if (!complete) continue;
    const TensorInfo& first = *p.parts[0].info;
    src.dtype = first.dtype;
    src.shape = first.shape;
    bool ok = true;
    for (size_t i = 1; i < p.parts.size(); ++i) {
      const TensorInfo& o = *p.parts[i].info;
      bool same_tail = o.shape.ndim() == first.shape.ndim() && first.shape.ndim() >= 1;
      for (int d = 1; same_tail && d < first.shape.ndim(); ++d)
        same_tail = o.shape[d] == first.shape[d];
      if (o.dtype != first.dtype || !same_tail) {
        cs.problems.push_back("'" + name + "': parts " + p.source_names[0] + " " +
                              std::string(dtype_name(first.dtype)) + first.shape.to_string() +
                              " and " + p.source_names[i] + " " +
                              std::string(dtype_name(o.dtype)) + o.shape.to_string() +
                              " cannot be concatenated");
        ok = false;
        break;
      }
      src.shape[0] += o.shape[0];
    }
    if (!ok) continue;
    if (src.transform == Transform::kSwapHalves &&
        (src.shape.ndim() == 0 || src.shape[0] % 2 != 0)) {
      cs.problems.push_back("'" + name + "' " + src.shape.to_string() +
                            ": cannot swap halves of an odd dimension 0");
      continue;
    }
    if (src.transform == Transform::kLinearToConv1x1 && src.shape.ndim() == 2) {
      src.shape = Shape{src.shape[0], src.shape[1], 1, 1};
    }
    src.parts = std::move(p.parts);
    cs.by_name.emplace(name, cs.tensors.size());
    cs.tensors.push_back(std::move(src));
  }
}

Result<std::unique_ptr<WeightIndex>> WeightIndexBuilder::build(
    const std::vector<WeightInput>& inputs) {
  auto index = std::make_unique<WeightIndex>();
  if (inputs.empty()) return invalid_argument("no weight files given");
  std::vector<FileJob> jobs;
  for (const auto& in : inputs) SD35_RETURN_IF_ERROR(expand(in, jobs, index->notes_));

  std::vector<Segment> segs;
  for (const FileJob& job : jobs) {
    SD35_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(job.path));
    const size_t fi = index->files_.size();
    index->files_.push_back(file);
    FileReport report{job.path, file->file_size(), file->size(), {}, 0};

    std::vector<Segment> found;
    for (const auto& pr : kPrefixes) {
      if (!has_prefix_key(*file, pr.prefix)) continue;
      Segment s;
      s.file = fi;
      s.prefix = pr.prefix;
      s.component = pr.component;
      s.role_reason = "checkpoint prefix";
      found.push_back(std::move(s));
    }
    const bool forced = job.role && !job.diffusers_folder;
    if (!found.empty() && forced) {
      // A prefixed file given for one role (a full checkpoint named as the VAE) contributes
      // that component only; its other keys count as ignored.
      std::vector<Segment> kept;
      for (Segment& s : found)
        if (s.component == job.role) kept.push_back(std::move(s));
      if (kept.empty())
        return invalid_argument(job.path + ": given as " + std::string(component_name(*job.role)) +
                                " but it holds no " + std::string(component_name(*job.role)) +
                                " weights");
      found = std::move(kept);
      for (Segment& s : found) {
        s.forced = true;
        s.role_reason = job.role_reason;
      }
    }
    if (found.empty()) {
      BareKind k = detect_bare(*file);
      if (!k.error.empty()) return unsupported(job.path + ": " + k.error);
      if (job.role && !k.component && !k.clip) {
        return invalid_argument(job.path + ": given as " + std::string(component_name(*job.role)) +
                                " but it holds no recognisable model weights");
      }
      if (k.component || k.clip) {
        Segment s;
        s.file = fi;
        s.component = k.component;
        s.layout = k.layout;
        if (job.role) {
          bool fits = k.clip ? is_clip(*job.role) : *job.role == *k.component;
          if (!fits) {
            return invalid_argument(
                job.path + ": given as " + std::string(component_name(*job.role)) +
                " but it holds " +
                (k.clip ? std::string("a CLIP text encoder")
                        : "the " + std::string(component_name(*k.component))));
          }
          s.component = job.role;
          s.role_reason = job.role_reason;
          s.forced = forced;
        } else if (k.clip) {
          s.name_hint = clip_role_from_file_name(job.path);
        }
        found.push_back(std::move(s));
      }
    }
    // Assign every key to the segment whose prefix it carries ("" takes all).
    for (const TensorInfo& t : file->tensors()) {
      bool used = false;
      for (Segment& s : found) {
        if (starts_with(t.name, s.prefix)) {
          s.tensors.push_back(&t);
          used = true;
          break;
        }
      }
      if (!used) ++report.ignored_tensors;
    }
    for (Segment& s : found) {
      if (s.component && !is_clip(*s.component)) continue;
      // CLIP structure for role resolution.
      const TensorInfo* emb =
          file->find(s.prefix + "text_model.embeddings.token_embedding.weight");
      s.clip_width = emb && emb->shape.ndim() == 2 ? int(std::min<int64_t>(emb->shape[1], 1 << 30))
                                                   : 0;
      s.clip_layers = count_indices(s.tensors, s.prefix + "text_model.encoder.layers.");
    }
    // Files without model weights (goldens, noise next to a test model) show up in the file
    // reports with no components; only partly used files deserve a note.
    if (!found.empty() && report.ignored_tensors > 0) {
      index->notes_.push_back(job.path + ": " + std::to_string(report.ignored_tensors) +
                              " tensors outside the model components, ignored");
    }
    for (Segment& s : found) segs.push_back(std::move(s));
    index->reports_.push_back(std::move(report));
  }

  SD35_RETURN_IF_ERROR(resolve_clip_roles(segs));

  // Group per component. A component the caller gave explicitly (a forced role) wins over
  // the same component detected in other files, in any order: otherwise a partial VAE file
  // (disjoint names) would silently merge with the checkpoint's. Among the remaining ones,
  // shards (disjoint names) merge; a component given again with overlapping names replaces
  // the earlier one (a separate file overrides the copy inside a checkpoint when it is
  // named later).
  for (Component c : kAllComponents) {
    std::vector<const Segment*> chosen;
    std::set<std::string> names;
    const Segment* forced_seg = nullptr;
    for (const Segment& s : segs)
      if (s.component == c && s.forced && !forced_seg) forced_seg = &s;
    for (const Segment& s : segs) {
      if (s.component != c) continue;
      if (forced_seg && !s.forced) {
        index->notes_.push_back(std::string(component_name(c)) + " from " +
                                index->files_[forced_seg->file]->path() +
                                " (given) replaces the one in " + index->files_[s.file]->path());
        continue;
      }
      bool overlap = false;
      for (const TensorInfo* t : s.tensors) {
        if (names.count(t->name.substr(s.prefix.size()))) {
          overlap = true;
          break;
        }
      }
      if (overlap || (!chosen.empty() && chosen.back()->layout != s.layout)) {
        index->notes_.push_back(std::string(component_name(c)) + " from " +
                                index->files_[s.file]->path() + " replaces the one in " +
                                index->files_[chosen.back()->file]->path());
        chosen.clear();
        names.clear();
      }
      chosen.push_back(&s);
      for (const TensorInfo* t : s.tensors) names.insert(t->name.substr(s.prefix.size()));
    }
    if (chosen.empty()) continue;
    ComponentSources cs;
    cs.component = c;
    cs.layout = chosen[0]->layout;
    cs.prefix = chosen[0]->prefix;
    cs.role_reason = chosen[0]->role_reason;
    for (const Segment* s : chosen) cs.files.push_back(index->files_[s->file]->path());
    fill_sources(*index, cs, chosen);
    const SafetensorsFile& f0 = *index->files_[chosen[0]->file];
    read_metadata_hints(f0, c, cs.hints, cs.hints_source);
    read_sidecar_hints(f0.path(), c, cs.hints, cs.hints_source, index->notes_);
    index->components_[int(c)] = std::move(cs);
  }
  // File reports name the components each file contributes to.
  for (const Segment& s : segs) {
    if (!s.component) continue;
    std::string d(component_name(*s.component));
    if (s.layout == Layout::kDiffusers) d += " [diffusers]";
    if (!s.prefix.empty()) d += " (" + s.prefix + ")";
    if (!s.role_reason.empty() && is_clip(*s.component)) d += " role: " + s.role_reason;
    index->reports_[s.file].components.push_back(d);
  }
  return index;
}

Result<std::unique_ptr<WeightIndex>> WeightIndex::open(const std::vector<WeightInput>& inputs) {
  return WeightIndexBuilder::build(inputs);
}

}  // namespace sd35
