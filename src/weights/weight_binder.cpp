#include "weights/weight_binder.h"

namespace sd35 {

Tensor WeightBinder::placed(Tensor t) {
  if (!placer_ || !t.defined()) return t;
  auto p = placer_->place(t);
  if (!p.ok()) {
    fail(p.status().with_context(model_ + ": placing weights: "));
    return Tensor();
  }
  return *std::move(p);
}

Tensor WeightBinder::take(const std::string& field, bool required) {
  return placed(take_host(field, required));
}

Tensor WeightBinder::take_host(const std::string& field, bool required) {
  auto it = map_.find(field);
  if (it == map_.end()) {
    if (required) missing_.push_back(field);
    return Tensor();
  }
  Tensor t = std::move(it->second);
  map_.erase(it);
  return t;
}

Tensor WeightBinder::take_vector(const std::string& field, bool required) {
  Tensor t = take_host(field, required);
  if (!t.defined() || t.dtype() == DType::kF32 || t.dtype() == DType::kF16 ||
      t.dtype() == DType::kBF16)
    return placed(std::move(t));
  auto out = Tensor::zeros(t.shape(), DType::kF32);
  if (!out.ok()) {
    fail(out.status());
    return Tensor();
  }
  float* dst = out->data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) dst[i] = load_as_f32(t.data(), t.dtype(), i);
  return placed(*std::move(out));
}

void WeightBinder::fail(Status status) {
  if (status_.ok()) status_ = std::move(status);
}

Status WeightBinder::status() const {
  if (!status_.ok()) return status_;
  if (missing_.empty()) return ok_status();
  std::string names;
  for (const auto& m : missing_) names += (names.empty() ? "" : ", ") + m;
  return internal_error(model_ + ": bound weights lack fields: " + names);
}

}  // namespace sd35
