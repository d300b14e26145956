// WeightBinder moves the tensors of a validated WeightMap (bind_weights) into a model's typed
// weight struct. Every model binds the same way: take a field (a missing required field is a
// mismatch between the model and its own spec list, so an internal error naming every such
// field at once), and widen small parameter vectors stored as fp8 to f32 once at load,
// because the elementwise ops (norms, bias adds) read activation dtypes only. Matrices stay in
// their stored dtype: the GEMM converts inside its kernel.
#pragma once

#include <string>
#include <vector>

#include "weights/weight_specs.h"

namespace sd35 {

class WeightBinder {
 public:
  WeightBinder(WeightMap& map, std::string model) : map_(map), model_(std::move(model)) {}

  // The field's tensor (moved out of the map); an empty Tensor when absent.
  Tensor take(const std::string& field, bool required = true);
  // Like take, for a small vector read by elementwise ops: fp8 storage becomes an owned f32
  // copy (f32/f16/bf16 stay views).
  Tensor take_vector(const std::string& field, bool required = true);
  // Records an error found while binding (the first one wins).
  void fail(Status status);
  // Ok, the first recorded error, or one internal error listing every missing field.
  Status status() const;

 private:
  WeightMap& map_;
  std::string model_;
  std::vector<std::string> missing_;
  Status status_;
};

}  // namespace sd35
