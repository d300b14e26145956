// Reference gemm, attention and conv2d: the test oracle. Every element is read through
// load_as_f32 at its strided address and all arithmetic is f64; results are rounded once on
// store. Speed only matters so far as the tests stay fast, hence the f64 copies of weights
// and of K/V per head instead of re-reading through the dtype switch in the inner loops.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/gemm_checks.h"
#include "backend/reference/reference_kernels.h"

namespace sd35::ref {
namespace {

double element(const Tensor& t, const int64_t* idx) {
  return load_as_f32(t.element_ptr(idx), t.dtype(), 0);
}
void store(const Tensor& t, const int64_t* idx, double v) {
  store_from_f32(t.element_ptr(idx), t.dtype(), 0, float(v));
}

double activate(Activation a, double x) {
  switch (a) {
    case Activation::kNone: return x;
    case Activation::kGeluTanh: {
      const double c = std::sqrt(2.0 / M_PI);
      return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
    }
    case Activation::kGeluErf: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::kQuickGelu: return x / (1.0 + std::exp(-1.702 * x));
    case Activation::kSilu: return x / (1.0 + std::exp(-x));
  }
  return x;
}

// Advances a row-major multi-index over the first `n` dims of `shape`; false when done.
bool next_index(std::vector<int64_t>& idx, const Shape& shape, int n) {
  for (int d = n - 1; d >= 0; --d) {
    if (++idx[size_t(d)] < shape[d]) return true;
    idx[size_t(d)] = 0;
  }
  return false;
}

}  // namespace

Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const GemmParams& params) {
  SD35_RETURN_IF_ERROR(linear_checks::gemm(x, w, bias, y, params));
  const int64_t K = w.size(1), N = w.size(0);
  if (x.numel() == 0 || N == 0) return ok_status();
  std::vector<double> wd(static_cast<size_t>(N * K)), bd(size_t(N), 0.0);
  for (int64_t i = 0; i < N * K; ++i) wd[size_t(i)] = load_as_f32(w.data(), w.dtype(), i);
  if (bias) {
    for (int64_t n = 0; n < N; ++n) bd[size_t(n)] = element(*bias, &n);
  }
  const int lead = x.ndim() - 1;
  std::vector<int64_t> idx(size_t(x.ndim()), 0);
  std::vector<double> xr(static_cast<size_t>(K));
  do {
    for (int64_t k = 0; k < K; ++k) {
      idx[size_t(lead)] = k;
      xr[size_t(k)] = element(x, idx.data());
    }
    for (int64_t n = 0; n < N; ++n) {
      double acc = bd[size_t(n)];
      const double* wr = wd.data() + n * K;
      for (int64_t k = 0; k < K; ++k) acc += xr[size_t(k)] * wr[k];
      acc = activate(params.activation, acc);
      idx[size_t(lead)] = n;
      // Accumulate adds the stored (already rounded) y, then rounds once.
      if (params.accumulate) acc += element(y, idx.data());
      store(y, idx.data(), acc);
    }
    idx[size_t(lead)] = 0;
  } while (lead > 0 && next_index(idx, x.shape(), lead));
  return ok_status();
}

Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                 int heads, float scale) {
  SD35_RETURN_IF_ERROR(linear_checks::attention(q, k, v, out, heads, scale));
  const int64_t B = q.size(0), Lq = q.size(1), Lk = k.size(1), D = q.size(2) / heads;
  std::vector<double> kd(static_cast<size_t>(Lk * D)), vd(static_cast<size_t>(Lk * D)), s(static_cast<size_t>(Lk)), o(static_cast<size_t>(D));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t j = 0; j < Lk; ++j) {
        for (int64_t d = 0; d < D; ++d) {
          int64_t idx[3] = {b, j, h * D + d};
          kd[size_t(j * D + d)] = element(k, idx);
          vd[size_t(j * D + d)] = element(v, idx);
        }
      }
      for (int64_t i = 0; i < Lq; ++i) {
        std::vector<double> qr(static_cast<size_t>(D));
        for (int64_t d = 0; d < D; ++d) {
          int64_t idx[3] = {b, i, h * D + d};
          qr[size_t(d)] = element(q, idx);
        }
        // One row of scores at a time (Lk values), never the Lq×Lk matrix.
        double mx = -INFINITY;
        for (int64_t j = 0; j < Lk; ++j) {
          double acc = 0.0;
          for (int64_t d = 0; d < D; ++d) acc += qr[size_t(d)] * kd[size_t(j * D + d)];
          s[size_t(j)] = acc * double(scale);
          mx = std::max(mx, s[size_t(j)]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < Lk; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < Lk; ++j)
          for (int64_t d = 0; d < D; ++d) o[size_t(d)] += s[size_t(j)] * vd[size_t(j * D + d)];
        for (int64_t d = 0; d < D; ++d) {
          int64_t idx[3] = {b, i, h * D + d};
          store(out, idx, o[size_t(d)] / sum);
        }
      }
    }
  }
  return ok_status();
}

Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const Conv2dParams& params) {
  SD35_RETURN_IF_ERROR(linear_checks::conv2d(x, w, bias, y, params));
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), KH = w.size(2), KW = w.size(3);
  const int64_t OH = y.size(2), OW = y.size(3), s = params.stride;
  std::vector<double> wd(static_cast<size_t>(w.numel()));
  for (int64_t i = 0; i < w.numel(); ++i) wd[size_t(i)] = load_as_f32(w.data(), w.dtype(), i);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t oc = 0; oc < O; ++oc) {
      double b = 0.0;
      if (bias) b = element(*bias, &oc);
      for (int64_t oy = 0; oy < OH; ++oy) {
        for (int64_t ox = 0; ox < OW; ++ox) {
          double acc = b;
          for (int64_t c = 0; c < C; ++c) {
            for (int64_t ky = 0; ky < KH; ++ky) {
              int64_t iy = oy * s - params.pad_top + ky;
              if (iy < 0 || iy >= H) continue;  // zero padding
              for (int64_t kx = 0; kx < KW; ++kx) {
                int64_t ix = ox * s - params.pad_left + kx;
                if (ix < 0 || ix >= W) continue;
                int64_t xi[4] = {n, c, iy, ix};
                acc += element(x, xi) * wd[size_t(((oc * C + c) * KH + ky) * KW + kx)];
              }
            }
          }
          int64_t yi[4] = {n, oc, oy, ox};
          store(y, yi, acc);
        }
      }
    }
  }
  return ok_status();
}

}  // namespace sd35::ref
