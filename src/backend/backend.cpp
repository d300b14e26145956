#include "backend/backend.h"

namespace sd35 {

std::string_view activation_name(Activation a) {
  switch (a) {
    case Activation::kNone: return "none";
    case Activation::kGeluTanh: return "gelu_tanh";
    case Activation::kGeluErf: return "gelu_erf";
    case Activation::kQuickGelu: return "quick_gelu";
    case Activation::kSilu: return "silu";
  }
  return "?";
}

namespace check {

Status same_shape(const Tensor& a, const Tensor& b, std::string_view op) {
  if (a.shape() == b.shape()) return ok_status();
  return invalid_argument(std::string(op) + ": shape mismatch " + a.shape().to_string() +
                          " vs " + b.shape().to_string());
}

Status dtype_in(const Tensor& t, std::initializer_list<DType> allowed, std::string_view op,
                std::string_view what) {
  for (DType d : allowed)
    if (t.dtype() == d) return ok_status();
  std::string names;
  for (DType d : allowed) {
    if (!names.empty()) names += ", ";
    names += dtype_name(d);
  }
  return unsupported(std::string(op) + ": " + std::string(what) + " has dtype " +
                     std::string(dtype_name(t.dtype())) + ", expected one of " + names);
}

Status on_device(const Tensor& t, Device d, std::string_view op) {
  if (t.device() == d) return ok_status();
  return invalid_argument(std::string(op) + ": tensor on " + std::string(device_name(t.device())) +
                          ", backend runs on " + std::string(device_name(d)));
}

Status dense_rows(const Tensor& t, std::string_view op, std::string_view what) {
  if (t.ndim() >= 1 && t.rows_dense()) return ok_status();
  return invalid_argument(std::string(op) + ": " + std::string(what) +
                          " needs a dense last dimension, got " + t.describe());
}

}  // namespace check
}  // namespace sd35
