// Reference attention_masked and gather_rows: plain loops in double, the test oracle.
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/gemm_checks.h"
#include "backend/reference/reference_kernels.h"

namespace sd35::ref {
namespace {

double at(const Tensor& t, int64_t i0, int64_t i1, int64_t i2) {
  int64_t idx[] = {i0, i1, i2};
  return load_as_f32(t.element_ptr(idx), t.dtype(), 0);
}

}  // namespace

Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        int heads, float scale, bool causal, const Tensor* bias) {
  SD35_RETURN_IF_ERROR(linear_checks::attention_masked(q, k, v, out, heads, scale, causal, bias));
  Tensor b;
  if (bias) b = bias->ndim() == 4 ? bias->select(0, 0) : *bias;
  const int64_t batch = q.size(0), lq = q.size(1), lk = k.size(1), d = q.size(2) / heads;
  std::vector<double> s(static_cast<size_t>(lk));
  for (int64_t n = 0; n < batch; ++n) {
    for (int h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < lq; ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < lk; ++j) {
          if (causal && j > i) {
            s[size_t(j)] = -std::numeric_limits<double>::infinity();
            continue;
          }
          double dot = 0;
          for (int64_t f = 0; f < d; ++f) dot += at(q, n, i, h * d + f) * at(k, n, j, h * d + f);
          s[size_t(j)] = dot * scale + (bias ? at(b, h, i, j) : 0.0);
          mx = std::max(mx, s[size_t(j)]);
        }
        double sum = 0;
        for (int64_t j = 0; j < lk; ++j) {
          s[size_t(j)] =
              std::isinf(s[size_t(j)]) && s[size_t(j)] < 0 ? 0.0 : std::exp(s[size_t(j)] - mx);
          sum += s[size_t(j)];
        }
        for (int64_t f = 0; f < d; ++f) {
          double acc = 0;
          for (int64_t j = 0; j < lk; ++j) acc += s[size_t(j)] * at(v, n, j, h * d + f);
          int64_t idx[] = {n, i, h * d + f};
          store_from_f32(out.element_ptr(idx), out.dtype(), 0, float(acc / sum));
        }
      }
    }
  }
  return ok_status();
}

Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out) {
  SD35_RETURN_IF_ERROR(linear_checks::gather_rows(table, ids, out));
  const int32_t* id = ids.data_as<const int32_t>();
  for (int64_t i = 0; i < ids.size(0); ++i) {
    for (int64_t c = 0; c < table.size(1); ++c) {
      int64_t src[] = {id[i], c};
      int64_t dst[] = {i, c};
      store_from_f32(out.element_ptr(dst), out.dtype(), 0,
                     load_as_f32(table.element_ptr(src), table.dtype(), 0));
    }
  }
  return ok_status();
}

}  // namespace sd35::ref
