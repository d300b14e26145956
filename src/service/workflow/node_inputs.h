// Internal: typed access to one node's "inputs" object, recording the first error with the
// node id, class_type and input name. Used by the node-family files.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "service/workflow/plan.h"

namespace sd35::workflow {

// Value types flowing along links (ComfyUI's type names).
enum class ValueType {
  kModel,
  kClip,
  kVae,
  kConditioning,
  kLatent,
  kImage,
  kMask,
  kNoise,
  kGuider,
  kSampler,
  kSigmas,  // SamplerCustomAdvanced's inputs
};
const char* value_type_name(ValueType t);

// A link seen while parsing, checked once every node is known.
struct PendingLink {
  std::string node_id, class_type, input;
  Link link;
  ValueType expected;
};

class NodeInputs {
 public:
  NodeInputs(std::string id, std::string class_type, const nlohmann::json& inputs,
             const WorkflowOptions& options, std::vector<PendingLink>& links)
      : id_(std::move(id)),
        class_type_(std::move(class_type)),
        inputs_(inputs),
        options_(options),
        links_(links) {}

  const std::string& id() const { return id_; }
  const std::string& class_type() const { return class_type_; }
  const WorkflowOptions& options() const { return options_; }
  bool has(const std::string& name) const { return inputs_.contains(name); }

  Result<std::string> str(const std::string& name);
  Result<double> number(const std::string& name, double lo, double hi);
  Result<int64_t> integer(const std::string& name, int64_t lo, int64_t hi);
  Result<uint64_t> u64(const std::string& name);
  // A string that must be one of `options` (a ComfyUI combo input).
  Result<std::string> choice(const std::string& name, const std::vector<std::string>& options);
  Result<Link> link(const std::string& name, ValueType type);
  // Marks an input as known without using it (e.g. "device", "upload").
  void ignore(const std::string& name) { used_.insert(name); }
  // A model file `name` under one of `subdirs` of the models dir.
  Result<std::string> model_file(const std::string& input, const std::vector<std::string>& subdirs);
  // Fails on inputs no accessor asked for.
  Status finish();
  // An error about `input` ("" for the node itself).
  Status fail(const std::string& input, const std::string& message);

  const WorkflowError& error() const { return error_; }

 private:
  Result<const nlohmann::json*> get(const std::string& name);
  std::string id_, class_type_;
  const nlohmann::json& inputs_;
  const WorkflowOptions& options_;
  std::vector<PendingLink>& links_;
  std::set<std::string> used_;
  WorkflowError error_;
};

// Node families: each validates a node into its Op. Returns false if class_type is not one
// of the family's.
Result<Op> parse_loader_node(NodeInputs& in, bool& known);
Result<Op> parse_conditioning_node(NodeInputs& in, bool& known);
Result<Op> parse_latent_node(NodeInputs& in, bool& known);
Result<Op> parse_sampling_node(NodeInputs& in, bool& known);
Result<Op> parse_image_node(NodeInputs& in, bool& known);

// Output types of a class (empty for an unknown one).
std::vector<ValueType> output_types(const std::string& class_type);

}  // namespace sd35::workflow
