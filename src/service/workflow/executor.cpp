// Executes a Plan on an Engine: each node's outputs are computed in plan order and kept by
// node id until the SaveImage nodes have their images.
#include <cmath>
#include <map>
#include <memory>

#include "io/png.h"
#include "pipeline/engine.h"
#include "service/workflow/plan.h"

namespace sd35::workflow {

namespace {

struct ModelValue {
  double shift = 3.0;
  SkipLayerGuidance slg;
};
struct ClipValue {};
struct VaeValue {};
struct CondEntry {
  std::shared_ptr<const Conditioning> cond;
  double start = 0.0, end = 1.0;
};
using CondValue = std::vector<CondEntry>;
using Value = std::variant<std::monostate, ModelValue, ClipValue, VaeValue, CondValue, Tensor>;

Status node_fail(const PlanNode& n, const std::string& input, const Status& st) {
  WorkflowError e{n.id, n.class_type, input, st.message()};
  return Status(st.code(), e.to_string());
}

class Executor {
 public:
  Executor(const Engine& engine, Workspace& ws) : engine_(engine), ws_(ws) {}

  template <typename T>
  const T& in(const Link& l) const {
    return std::get<T>(values_.at(l.node).at(l.output));
  }

  Status run(const PlanNode& n, std::vector<SavedImage>& saved) {
    std::vector<Value> out;
    Status st = std::visit([&](const auto& op) { return eval(n, op, out, saved); }, n.op);
    if (!st.ok()) return st;
    values_[n.id] = std::move(out);
    return ok_status();
  }

 private:
  Status eval(const PlanNode&, const CheckpointLoaderOp&, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    out = {ModelValue{}, ClipValue{}, VaeValue{}};
    return ok_status();
  }
  Status eval(const PlanNode&, const ClipLoaderOp&, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    out = {ClipValue{}};
    return ok_status();
  }
  Status eval(const PlanNode&, const ModelSamplingSD3Op& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    ModelValue m = in<ModelValue>(op.model);
    m.shift = op.shift;
    out = {m};
    return ok_status();
  }
  Status eval(const PlanNode&, const SkipLayerGuidanceOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    ModelValue m = in<ModelValue>(op.model);
    m.slg = op.slg;
    out = {m};
    return ok_status();
  }
  Status eval(const PlanNode& n, const TextEncodeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto c = engine_.encode_prompt(ws_, op.text, /*use_t5=*/true);
    if (!c.ok()) return node_fail(n, "text", c.status());
    out = {CondValue{CondEntry{std::make_shared<const Conditioning>(std::move(*c))}}};
    return ok_status();
  }
  Status eval(const PlanNode& n, const ZeroOutOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    CondValue v = in<CondValue>(op.conditioning);
    for (auto& e : v) {
      auto z = conditioning_zero_out(*e.cond);
      if (!z.ok()) return node_fail(n, "conditioning", z.status());
      e.cond = std::make_shared<const Conditioning>(std::move(*z));
    }
    out = {std::move(v)};
    return ok_status();
  }
  Status eval(const PlanNode&, const TimestepRangeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    CondValue v = in<CondValue>(op.conditioning);
    for (auto& e : v) e.start = op.start, e.end = op.end;
    out = {std::move(v)};
    return ok_status();
  }
  Status eval(const PlanNode&, const CombineOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    CondValue v = in<CondValue>(op.conditioning_1);
    const CondValue& b = in<CondValue>(op.conditioning_2);
    v.insert(v.end(), b.begin(), b.end());
    out = {std::move(v)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const EmptyLatentOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto t = engine_.empty_latent(op.width, op.height, op.batch);
    if (!t.ok()) return node_fail(n, "width", t.status());
    out = {std::move(*t)};
    return ok_status();
  }
  // A conditioning value as the Engine's entry list (pointers into the value, which outlives
  // the sample call).
  static std::vector<ConditioningEntry> entries(const CondValue& v) {
    std::vector<ConditioningEntry> out;
    for (const auto& e : v) out.push_back(ConditioningEntry{e.cond.get(), e.start, e.end});
    return out;
  }
  Status eval(const PlanNode& n, const KSamplerOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    const ModelValue& m = in<ModelValue>(op.model);
    const std::vector<ConditioningEntry> pos = entries(in<CondValue>(op.positive));
    const std::vector<ConditioningEntry> neg = entries(in<CondValue>(op.negative));
    if (pos.empty()) return node_fail(n, "positive", invalid_argument("conditioning is empty"));
    SampleParams p;
    p.sampler = op.sampler;
    p.scheduler = op.scheduler;
    p.steps = op.steps;
    p.cfg = op.cfg;
    p.denoise = op.denoise;
    p.seed = op.seed;
    p.shift = m.shift;
    p.slg = m.slg;
    auto x = engine_.sample(ws_, pos, neg, in<Tensor>(op.latent_image), p);
    if (!x.ok()) return node_fail(n, "", x.status());
    out = {std::move(*x)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const VAEDecodeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto img = engine_.vae_decode(ws_, in<Tensor>(op.samples));
    if (!img.ok()) return node_fail(n, "samples", img.status());
    out = {std::move(*img)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const VAEEncodeOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto lat = engine_.vae_encode(ws_, in<Tensor>(op.pixels));
    if (!lat.ok()) return node_fail(n, "pixels", lat.status());
    out = {std::move(*lat)};
    return ok_status();
  }
  Status eval(const PlanNode& n, const LoadImageOp& op, std::vector<Value>& out,
              std::vector<SavedImage>&) {
    auto img = read_png(op.path);
    if (!img.ok()) return node_fail(n, "image", img.status());
    Tensor t = std::move(*img);
    if (t.ndim() == 3) t = t.reshape({1, t.size(0), t.size(1), t.size(2)});
    // MASK (output 1) is not produced: no supported node consumes it.
    out = {std::move(t), std::monostate{}};
    return ok_status();
  }
  Status eval(const PlanNode& n, const SaveImageOp& op, std::vector<Value>&,
              std::vector<SavedImage>& saved) {
    saved.push_back(SavedImage{n.id, op.filename_prefix, in<Tensor>(op.images)});
    return ok_status();
  }

  const Engine& engine_;
  Workspace& ws_;
  std::map<std::string, std::vector<Value>> values_;
};

}  // namespace

Result<std::vector<SavedImage>> execute_plan(const Plan& plan, const Engine& engine,
                                             Workspace& ws) {
  Executor ex(engine, ws);
  std::vector<SavedImage> saved;
  for (const PlanNode& n : plan.nodes) {
    if (ws.cancel.load()) return cancelled("job cancelled");
    SD35_RETURN_IF_ERROR(ex.run(n, saved));
  }
  return saved;
}

}  // namespace sd35::workflow
