// WeightBinder moves the tensors of a validated WeightMap (bind_weights) into a model's typed
// weight struct. Every model binds the same way: take a field (a missing required field is a
// mismatch between the model and its own spec list, so an internal error naming every such
// field at once), and widen small parameter vectors stored as fp8 to f32 once at load,
// because the elementwise ops (norms, bias adds) read activation dtypes only. Matrices stay in
// their stored dtype: the GEMM converts inside its kernel. With a WeightPlacer every tensor
// taken is moved to the placer's device (after the fp8 widening of vectors).
#pragma once

#include <string>
#include <vector>

#include "weights/weight_placer.h"
#include "weights/weight_specs.h"

namespace sd35 {

class WeightBinder {
 public:
  // placer: nullptr keeps host views of the mapped files; else weights go to its device.
  WeightBinder(WeightMap& map, std::string model, WeightPlacer* placer = nullptr)
      : map_(map), model_(std::move(model)), placer_(placer) {}

  // The field's tensor (moved out of the map, placed); an empty Tensor when absent.
  Tensor take(const std::string& field, bool required = true);
  // Like take, never placed: for values the model reads on the host at load (scalars).
  Tensor take_host(const std::string& field, bool required = true);
  // Like take, for a small vector read by elementwise ops: fp8 storage becomes an owned f32
  // copy (f32/f16/bf16 stay views).
  Tensor take_vector(const std::string& field, bool required = true);
  // Records an error found while binding (the first one wins).
  void fail(Status status);
  // Ok, the first recorded error, or one internal error listing every missing field.
  Status status() const;

 private:
  WeightMap& map_;
  Tensor placed(Tensor t);

  std::string model_;
  WeightPlacer* placer_ = nullptr;
  std::vector<std::string> missing_;
  Status status_;
};

}  // namespace sd35
