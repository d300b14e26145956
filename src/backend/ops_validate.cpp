#include "backend/ops_validate.h"

#include <cmath>
#include <string>
#include <utility>

namespace sd35::validate {
namespace {

Status has_data(const Tensor& t, std::string_view op, std::string_view what) {
  if (t.data() != nullptr || t.numel() == 0) return ok_status();
  return invalid_argument(std::string(op) + ": " + std::string(what) + " " + t.describe() +
                          " has no data");
}

// Device, data pointer and activation dtype of an x/y operand.
Status activation_operand(Device dev, const Tensor& t, std::string_view op, std::string_view what) {
  SD35_RETURN_IF_ERROR(check::on_device(t, dev, op));
  SD35_RETURN_IF_ERROR(has_data(t, op, what));
  return check::dtype_in(t, {DType::kF32, DType::kBF16, DType::kF16}, op, what);
}

// A per-channel parameter vector (norm weight / bias) of length c.
Status param_vector(Device dev, const Tensor& t, int64_t c, std::string_view op,
                    std::string_view what) {
  SD35_RETURN_IF_ERROR(check::on_device(t, dev, op));
  SD35_RETURN_IF_ERROR(has_data(t, op, what));
  SD35_RETURN_IF_ERROR(check::dtype_in(t, {DType::kF32, DType::kBF16, DType::kF16}, op, what));
  if (t.ndim() != 1 || t.size(0) != c) {
    return invalid_argument(std::string(op) + ": " + std::string(what) + " must be [" +
                            std::to_string(c) + "], got " + t.describe());
  }
  return check::dense_rows(t, op, what);
}

Status eps_ok(float eps, std::string_view op) {
  if (std::isfinite(eps) && eps >= 0.0f) return ok_status();
  return invalid_argument(std::string(op) + ": eps must be finite and >= 0, got " +
                          std::to_string(eps));
}

// x and y of a row op: activation dtypes, same shape, dense rows.
Status row_pair(Device dev, const Tensor& x, const Tensor& y, std::string_view op) {
  SD35_RETURN_IF_ERROR(activation_operand(dev, x, op, "x"));
  SD35_RETURN_IF_ERROR(activation_operand(dev, y, op, "y"));
  SD35_RETURN_IF_ERROR(check::same_shape(x, y, op));
  SD35_RETURN_IF_ERROR(check::dense_rows(x, op, "x"));
  return check::dense_rows(y, op, "y");
}

Status copy_dtypes(const Tensor& x, const Tensor& y, std::string_view op) {
  if (x.dtype() == y.dtype()) return ok_status();
  if (dtype_is_compute_float(x.dtype()) && dtype_is_compute_float(y.dtype())) return ok_status();
  return unsupported(std::string(op) + ": cannot convert " + std::string(dtype_name(x.dtype())) +
                     " to " + std::string(dtype_name(y.dtype())));
}

// Whether the byte ranges [first element, last element] of a and b intersect. Conservative
// for interleaved views (two disjoint column slices of one buffer "overlap"): only used
// where the ops have no reason to pass such views.
bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0) return false;
  auto range = [](const Tensor& t) {  // [lo, hi) in bytes
    int64_t lo = 0, hi = 1;
    for (int d = 0; d < t.ndim(); ++d) {
      int64_t reach = (t.size(d) - 1) * t.stride(d);
      (reach < 0 ? lo : hi) += reach;
    }
    const auto* p = static_cast<const char*>(t.data());
    const int64_t es = int64_t(t.element_size());
    return std::pair{p + lo * es, p + hi * es};
  };
  auto [a0, a1] = range(a);
  auto [b0, b1] = range(b);
  return a0 < b1 && b0 < a1;
}

}  // namespace

bool is_activation_dtype(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

Status layer_norm(Device dev, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                  const Tensor& y) {
  constexpr std::string_view op = "layer_norm";
  SD35_RETURN_IF_ERROR(row_pair(dev, x, y, op));
  SD35_RETURN_IF_ERROR(eps_ok(eps, op));
  if (weight) SD35_RETURN_IF_ERROR(param_vector(dev, *weight, x.size(-1), op, "weight"));
  if (bias) SD35_RETURN_IF_ERROR(param_vector(dev, *bias, x.size(-1), op, "bias"));
  return ok_status();
}

Status rms_norm(Device dev, const Tensor& x, const Tensor* weight, float eps, const Tensor& y) {
  constexpr std::string_view op = "rms_norm";
  SD35_RETURN_IF_ERROR(row_pair(dev, x, y, op));
  SD35_RETURN_IF_ERROR(eps_ok(eps, op));
  if (weight) SD35_RETURN_IF_ERROR(param_vector(dev, *weight, x.size(-1), op, "weight"));
  return ok_status();
}

Status group_norm(Device dev, const Tensor& x, int groups, const Tensor* weight, const Tensor* bias,
                  float eps, const Tensor& y) {
  constexpr std::string_view op = "group_norm";
  SD35_RETURN_IF_ERROR(activation_operand(dev, x, op, "x"));
  SD35_RETURN_IF_ERROR(activation_operand(dev, y, op, "y"));
  SD35_RETURN_IF_ERROR(check::same_shape(x, y, op));
  SD35_RETURN_IF_ERROR(eps_ok(eps, op));
  if (x.ndim() < 2) {
    return invalid_argument("group_norm: x must be [N, C, *spatial], got " + x.describe());
  }
  if (!x.is_contiguous() || !y.is_contiguous()) {
    return invalid_argument("group_norm: x and y must be contiguous");
  }
  int64_t c = x.size(1);
  if (groups <= 0 || c % groups != 0) {
    return invalid_argument("group_norm: " + std::to_string(groups) + " groups do not divide " +
                            std::to_string(c) + " channels");
  }
  if (weight) SD35_RETURN_IF_ERROR(param_vector(dev, *weight, c, op, "weight"));
  if (bias) SD35_RETURN_IF_ERROR(param_vector(dev, *bias, c, op, "bias"));
  return ok_status();
}

Status modulate(Device dev, const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y) {
  constexpr std::string_view op = "modulate";
  SD35_RETURN_IF_ERROR(row_pair(dev, x, y, op));
  if (x.ndim() != 3) return invalid_argument("modulate: x must be [B, L, D], got " + x.describe());
  for (const Tensor* t : {&shift, &scale}) {
    std::string_view what = t == &shift ? "shift" : "scale";
    SD35_RETURN_IF_ERROR(activation_operand(dev, *t, op, what));
    if (t->ndim() != 2 || t->size(0) != x.size(0) || t->size(1) != x.size(2)) {
      return invalid_argument("modulate: " + std::string(what) + " must be [" +
                              std::to_string(x.size(0)) + ", " + std::to_string(x.size(2)) +
                              "], got " + t->describe());
    }
    SD35_RETURN_IF_ERROR(check::dense_rows(*t, op, what));
  }
  return ok_status();
}

Status layer_norm_modulate(Device dev, const Tensor& x, const Tensor& shift, const Tensor& scale,
                           float eps, const Tensor& y) {
  constexpr std::string_view op = "layer_norm_modulate";
  SD35_RETURN_IF_ERROR(activation_operand(dev, x, op, "x"));
  SD35_RETURN_IF_ERROR(check::dtype_in(x, {DType::kF32}, op, "x"));
  SD35_RETURN_IF_ERROR(activation_operand(dev, y, op, "y"));
  if (x.ndim() != 3) {
    return invalid_argument("layer_norm_modulate: x must be [B, L, D], got " + x.describe());
  }
  SD35_RETURN_IF_ERROR(check::same_shape(x, y, op));
  SD35_RETURN_IF_ERROR(check::dense_rows(x, op, "x"));
  SD35_RETURN_IF_ERROR(check::dense_rows(y, op, "y"));
  SD35_RETURN_IF_ERROR(eps_ok(eps, op));
  for (const Tensor* t : {&shift, &scale}) {
    std::string_view what = t == &shift ? "shift" : "scale";
    SD35_RETURN_IF_ERROR(check::on_device(*t, dev, op));
    SD35_RETURN_IF_ERROR(has_data(*t, op, what));
    SD35_RETURN_IF_ERROR(check::dtype_in(*t, {DType::kF32}, op, what));
    if (t->ndim() != 2 || t->size(0) != x.size(0) || t->size(1) != x.size(2)) {
      return invalid_argument("layer_norm_modulate: " + std::string(what) + " must be [" +
                              std::to_string(x.size(0)) + ", " + std::to_string(x.size(2)) +
                              "], got " + t->describe());
    }
    SD35_RETURN_IF_ERROR(check::dense_rows(*t, op, what));
    if (overlaps(y, *t)) {
      return invalid_argument("layer_norm_modulate: y overlaps " + std::string(what));
    }
  }
  const bool same_view =
      y.data() == x.data() && y.dtype() == x.dtype() && y.strides() == x.strides();
  if (!same_view && overlaps(y, x)) {
    return invalid_argument(
        "layer_norm_modulate: y overlaps x; in place, y must be the very same f32 view as x");
  }
  return ok_status();
}

Status add(Device dev, const Tensor& a, const Tensor& b, const Tensor& y, std::string_view op) {
  SD35_RETURN_IF_ERROR(activation_operand(dev, a, op, "a"));
  SD35_RETURN_IF_ERROR(activation_operand(dev, b, op, "b"));
  SD35_RETURN_IF_ERROR(activation_operand(dev, y, op, "y"));
  SD35_RETURN_IF_ERROR(check::same_shape(a, y, op));
  // numpy/torch broadcasting, restricted to b expanding into a (y has a's shape).
  bool ok = b.ndim() <= a.ndim();
  for (int d = 0; ok && d < b.ndim(); ++d) {
    int64_t bs = b.size(d), as = a.size(a.ndim() - b.ndim() + d);
    ok = bs == as || bs == 1;
  }
  if (!ok) {
    return invalid_argument(std::string(op) + ": b " + b.describe() + " does not broadcast to a " +
                            a.describe());
  }
  return ok_status();
}

Status gated_add(Device dev, const Tensor& x, const Tensor& gate, const Tensor& h,
                 const Tensor& out) {
  constexpr std::string_view op = "gated_add";
  SD35_RETURN_IF_ERROR(row_pair(dev, x, out, op));
  SD35_RETURN_IF_ERROR(activation_operand(dev, h, op, "h"));
  SD35_RETURN_IF_ERROR(check::same_shape(x, h, op));
  SD35_RETURN_IF_ERROR(check::dense_rows(h, op, "h"));
  if (x.ndim() != 3) {
    return invalid_argument("gated_add: x must be [B, L, D], got " + x.describe());
  }
  SD35_RETURN_IF_ERROR(activation_operand(dev, gate, op, "gate"));
  if (gate.ndim() != 2 || gate.size(0) != x.size(0) || gate.size(1) != x.size(2)) {
    return invalid_argument("gated_add: gate must be [" + std::to_string(x.size(0)) + ", " +
                            std::to_string(x.size(2)) + "], got " + gate.describe());
  }
  return check::dense_rows(gate, op, "gate");
}

Status affine(Device dev, const Tensor& x, const AffineParams& params, const Tensor& y) {
  constexpr std::string_view op = "affine";
  SD35_RETURN_IF_ERROR(activation_operand(dev, x, op, "x"));
  SD35_RETURN_IF_ERROR(activation_operand(dev, y, op, "y"));
  SD35_RETURN_IF_ERROR(check::same_shape(x, y, op));
  if (!std::isfinite(params.scale) || !std::isfinite(params.shift)) {
    return invalid_argument("affine: scale and shift must be finite, got " +
                            std::to_string(params.scale) + ", " + std::to_string(params.shift));
  }
  // !(lo <= hi) also rejects a NaN bound.
  if (!(params.lo <= params.hi)) {
    return invalid_argument("affine: need lo <= hi (and neither NaN), got [" +
                            std::to_string(params.lo) + ", " + std::to_string(params.hi) + "]");
  }
  return ok_status();
}

Status activation(Device dev, const Tensor& x, Activation act, const Tensor& y) {
  constexpr std::string_view op = "activation";
  switch (act) {
    case Activation::kNone:
    case Activation::kGeluTanh:
    case Activation::kGeluErf:
    case Activation::kQuickGelu:
    case Activation::kSilu: break;
    default: return invalid_argument("activation: unknown activation " + std::to_string(int(act)));
  }
  return row_pair(dev, x, y, op);
}

Status softmax(Device dev, const Tensor& x, const Tensor& y) {
  return row_pair(dev, x, y, "softmax");
}

Status upsample_nearest2x(Device dev, const Tensor& x, const Tensor& y) {
  constexpr std::string_view op = "upsample_nearest2x";
  SD35_RETURN_IF_ERROR(activation_operand(dev, x, op, "x"));
  SD35_RETURN_IF_ERROR(activation_operand(dev, y, op, "y"));
  if (x.ndim() != 4 || y.ndim() != 4 || y.size(0) != x.size(0) || y.size(1) != x.size(1) ||
      y.size(2) != 2 * x.size(2) || y.size(3) != 2 * x.size(3)) {
    return invalid_argument("upsample_nearest2x: x [N, C, H, W] needs y [N, C, 2H, 2W], got " +
                            x.describe() + " -> " + y.describe());
  }
  SD35_RETURN_IF_ERROR(check::dense_rows(x, op, "x"));
  return check::dense_rows(y, op, "y");
}

Status concat(Device dev, std::span<const Tensor> inputs, int axis, const Tensor& y,
              int* axis_out) {
  constexpr std::string_view op = "concat";
  SD35_RETURN_IF_ERROR(check::on_device(y, dev, op));
  SD35_RETURN_IF_ERROR(has_data(y, op, "y"));
  if (inputs.empty()) return invalid_argument("concat: no inputs");
  int nd = y.ndim();
  int a = axis < 0 ? axis + nd : axis;
  if (nd == 0 || a < 0 || a >= nd) {
    return invalid_argument("concat: axis " + std::to_string(axis) + " out of range for " +
                            y.describe());
  }
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    std::string what = "input " + std::to_string(i);
    SD35_RETURN_IF_ERROR(check::on_device(t, dev, op));
    SD35_RETURN_IF_ERROR(has_data(t, op, what));
    SD35_RETURN_IF_ERROR(copy_dtypes(t, y, op));
    bool shape_ok = t.ndim() == nd;
    for (int d = 0; shape_ok && d < nd; ++d) shape_ok = d == a || t.size(d) == y.size(d);
    if (!shape_ok) {
      return invalid_argument("concat: " + what + " " + t.describe() + " does not match output " +
                              y.describe() + " outside axis " + std::to_string(a));
    }
    total += t.size(a);
  }
  if (total != y.size(a)) {
    return invalid_argument("concat: inputs sum to " + std::to_string(total) + " along axis " +
                            std::to_string(a) + ", output has " + std::to_string(y.size(a)));
  }
  *axis_out = a;
  return ok_status();
}

Status copy(Device dev, const Tensor& x, const Tensor& y) {
  constexpr std::string_view op = "copy";
  SD35_RETURN_IF_ERROR(check::on_device(x, dev, op));
  SD35_RETURN_IF_ERROR(check::on_device(y, dev, op));
  SD35_RETURN_IF_ERROR(has_data(x, op, "x"));
  SD35_RETURN_IF_ERROR(has_data(y, op, "y"));
  SD35_RETURN_IF_ERROR(check::same_shape(x, y, op));
  return copy_dtypes(x, y, op);
}

}  // namespace sd35::validate
