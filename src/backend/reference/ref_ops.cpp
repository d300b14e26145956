// Reference normalisation and elementwise ops: plain loops, every element read and written
// through load_as_f32 / store_from_f32 at its strided offset, arithmetic in double. These are
// the oracle the fast kernels are tested against, so they follow the formulas in backend.h
// literally (two-pass mean/variance) and favour clarity over speed.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/ops_validate.h"
#include "backend/reference/reference_kernels.h"

namespace sd35::ref {
namespace {

// Element offset of row r (all indices but the last) of a tensor viewed as [rows, size(-1)].
int64_t row_offset(const Tensor& t, int64_t r) {
  int64_t off = 0;
  for (int d = t.ndim() - 2; d >= 0; --d) {
    off += (r % t.size(d)) * t.stride(d);
    r /= t.size(d);
  }
  return off;
}

double load(const Tensor& t, int64_t off) { return load_as_f32(t.data(), t.dtype(), off); }
void store(const Tensor& t, int64_t off, double v) {
  store_from_f32(t.data(), t.dtype(), off, float(v));
}
// Element i of a 1-D parameter vector, or `fallback` when the parameter is absent.
double param(const Tensor* p, int64_t i, double fallback) {
  return p ? load(*p, i * p->stride(0)) : fallback;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

double apply_activation(Activation act, double v) {
  switch (act) {
    case Activation::kNone: return v;
    case Activation::kGeluTanh: {
      const double k = std::sqrt(2.0 / M_PI);
      return 0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v)));
    }
    // erfc(-z) = 1 + erf(z), without the cancellation of 1 + erf for negative z.
    case Activation::kGeluErf: return 0.5 * v * std::erfc(-v / std::sqrt(2.0));
    case Activation::kQuickGelu: return v * sigmoid(1.702 * v);
    case Activation::kSilu: return v * sigmoid(v);
  }
  return v;
}

}  // namespace

Status layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                  const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::layer_norm(Device::kCPU, x, weight, bias, eps, y));
  if (x.numel() == 0) return ok_status();
  const int64_t c = x.size(-1), rows = x.rows();
  const int64_t xs = x.stride(-1), ys = y.stride(-1);
  std::vector<double> v(static_cast<size_t>(c));  // the row, read once: y may alias x
  for (int64_t r = 0; r < rows; ++r) {
    int64_t xo = row_offset(x, r), yo = row_offset(y, r);
    double mean = 0.0;
    for (int64_t i = 0; i < c; ++i) mean += v[size_t(i)] = load(x, xo + i * xs);
    mean /= double(c);
    double var = 0.0;
    for (int64_t i = 0; i < c; ++i) var += (v[size_t(i)] - mean) * (v[size_t(i)] - mean);
    var /= double(c);  // biased, as torch.nn.LayerNorm
    double rstd = 1.0 / std::sqrt(var + double(eps));
    for (int64_t i = 0; i < c; ++i) {
      double out = (v[size_t(i)] - mean) * rstd * param(weight, i, 1.0) + param(bias, i, 0.0);
      store(y, yo + i * ys, out);
    }
  }
  return ok_status();
}

Status rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::rms_norm(Device::kCPU, x, weight, eps, y));
  if (x.numel() == 0) return ok_status();
  const int64_t c = x.size(-1), rows = x.rows();
  const int64_t xs = x.stride(-1), ys = y.stride(-1);
  std::vector<double> v(static_cast<size_t>(c));
  for (int64_t r = 0; r < rows; ++r) {
    int64_t xo = row_offset(x, r), yo = row_offset(y, r);
    double ms = 0.0;
    for (int64_t i = 0; i < c; ++i) {
      v[size_t(i)] = load(x, xo + i * xs);
      ms += v[size_t(i)] * v[size_t(i)];
    }
    double rrms = 1.0 / std::sqrt(ms / double(c) + double(eps));
    for (int64_t i = 0; i < c; ++i)
      store(y, yo + i * ys, v[size_t(i)] * rrms * param(weight, i, 1.0));
  }
  return ok_status();
}

Status group_norm(const Tensor& x, int groups, const Tensor* weight, const Tensor* bias, float eps,
                  const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::group_norm(Device::kCPU, x, groups, weight, bias, eps, y));
  if (x.numel() == 0) return ok_status();
  // Contiguous (validated): element (n, ch, s) is at (n·C + ch)·S + s.
  const int64_t n_batch = x.size(0), c = x.size(1), s = x.numel() / (n_batch * c);
  const int64_t cg = c / groups, group_elems = cg * s;
  std::vector<double> v(static_cast<size_t>(group_elems));
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t base = (n * c + g * cg) * s;  // the group's channels are adjacent
      double mean = 0.0;
      for (int64_t i = 0; i < group_elems; ++i) mean += v[size_t(i)] = load(x, base + i);
      mean /= double(group_elems);
      double var = 0.0;
      for (int64_t i = 0; i < group_elems; ++i)
        var += (v[size_t(i)] - mean) * (v[size_t(i)] - mean);
      var /= double(group_elems);
      double rstd = 1.0 / std::sqrt(var + double(eps));
      for (int64_t i = 0; i < group_elems; ++i) {
        int64_t ch = g * cg + i / s;
        store(y, base + i,
              (v[size_t(i)] - mean) * rstd * param(weight, ch, 1.0) + param(bias, ch, 0.0));
      }
    }
  }
  return ok_status();
}

Status modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::modulate(Device::kCPU, x, shift, scale, y));
  const int64_t batch = x.size(0), len = x.size(1), d = x.size(2);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t l = 0; l < len; ++l) {
      for (int64_t i = 0; i < d; ++i) {
        double sh = load(shift, b * shift.stride(0) + i * shift.stride(1));
        double sc = load(scale, b * scale.stride(0) + i * scale.stride(1));
        double v = load(x, b * x.stride(0) + l * x.stride(1) + i * x.stride(2));
        store(y, b * y.stride(0) + l * y.stride(1) + i * y.stride(2), v * (1.0 + sc) + sh);
      }
    }
  }
  return ok_status();
}

Status layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                           const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::layer_norm_modulate(Device::kCPU, x, shift, scale, eps, y));
  if (x.numel() == 0) return ok_status();
  const int64_t len = x.size(1), d = x.size(2), rows = x.rows();
  std::vector<double> v(static_cast<size_t>(d));  // the row, read once: y may be x
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / len, xo = row_offset(x, r), yo = row_offset(y, r);
    double mean = 0.0;
    for (int64_t i = 0; i < d; ++i) mean += v[size_t(i)] = load(x, xo + i);
    mean /= double(d);
    double var = 0.0;
    for (int64_t i = 0; i < d; ++i) var += (v[size_t(i)] - mean) * (v[size_t(i)] - mean);
    var /= double(d);  // biased, as torch.nn.LayerNorm
    const double rstd = 1.0 / std::sqrt(var + double(eps));
    for (int64_t i = 0; i < d; ++i) {
      const double sh = load(shift, b * shift.stride(0) + i);
      const double sc = load(scale, b * scale.stride(0) + i);
      store(y, yo + i, (v[size_t(i)] - mean) * rstd * (1.0 + sc) + sh);
    }
  }
  return ok_status();
}

Status activation(const Tensor& x, Activation act, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::activation(Device::kCPU, x, act, y));
  if (x.numel() == 0) return ok_status();
  const int64_t c = x.size(-1), rows = x.rows();
  for (int64_t r = 0; r < rows; ++r) {
    int64_t xo = row_offset(x, r), yo = row_offset(y, r);
    for (int64_t i = 0; i < c; ++i)
      store(y, yo + i * y.stride(-1), apply_activation(act, load(x, xo + i * x.stride(-1))));
  }
  return ok_status();
}

Status softmax(const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::softmax(Device::kCPU, x, y));
  if (x.numel() == 0) return ok_status();
  const int64_t c = x.size(-1), rows = x.rows();
  std::vector<double> e(static_cast<size_t>(c));
  for (int64_t r = 0; r < rows; ++r) {
    int64_t xo = row_offset(x, r), yo = row_offset(y, r);
    double m = -INFINITY;
    for (int64_t i = 0; i < c; ++i) m = std::max(m, load(x, xo + i * x.stride(-1)));
    double sum = 0.0;
    for (int64_t i = 0; i < c; ++i)
      sum += e[size_t(i)] = std::exp(load(x, xo + i * x.stride(-1)) - m);
    for (int64_t i = 0; i < c; ++i) store(y, yo + i * y.stride(-1), e[size_t(i)] / sum);
  }
  return ok_status();
}

}  // namespace sd35::ref
