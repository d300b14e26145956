// CPU attention_masked and gather_rows, for the text encoders: sequences are at most a few
// hundred tokens, so scores are materialised one query row at a time (Lk floats) and the work
// is split over (batch, head) pairs. Math in f32.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/gemm_checks.h"
#include "core/convert.h"

namespace sd35::cpu {
namespace {

// Row r, features [c0, c0 + n) of a [B, L, F] view (dense last dim) of batch b, as f32.
void load_f32(const Tensor& t, int64_t b, int64_t r, int64_t c0, int64_t n, float* dst) {
  const char* p = static_cast<const char*>(t.data()) +
                  (b * t.stride(0) + r * t.stride(1) + c0) * int64_t(t.element_size());
  convert_to_f32(p, t.dtype(), dst, n);
}

}  // namespace

Status attention_masked(CpuContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, int heads, float scale, bool causal,
                        const Tensor* bias) {
  SD35_RETURN_IF_ERROR(linear_checks::attention_masked(q, k, v, out, heads, scale, causal, bias));
  Tensor b;
  if (bias) b = bias->ndim() == 4 ? bias->select(0, 0) : *bias;
  const int64_t batch = q.size(0), lq = q.size(1), lk = k.size(1), d = q.size(2) / heads;
  if (batch == 0 || lq == 0 || d == 0) return ok_status();
  ctx.pool.parallel_for(batch * heads, 1, [&](int64_t t0, int64_t t1) {
    // K and V of one head as f32 [Lk, D]; one query row; its scores; its output.
    const auto n_kv = static_cast<size_t>(lk * d);
    const auto n_d = static_cast<size_t>(d);
    std::vector<float> kf(n_kv), vf(n_kv), qf(n_d), s(static_cast<size_t>(lk)), o(n_d);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / heads, h = t % heads;
      for (int64_t j = 0; j < lk; ++j) {
        load_f32(k, n, j, h * d, d, kf.data() + j * d);
        load_f32(v, n, j, h * d, d, vf.data() + j * d);
      }
      for (int64_t i = 0; i < lq; ++i) {
        load_f32(q, n, i, h * d, d, qf.data());
        const int64_t visible = causal ? std::min(lk, i + 1) : lk;
        const float* brow =
            bias ? b.data_as<const float>() + h * b.stride(0) + i * b.stride(1) : nullptr;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          const float* kr = kf.data() + j * d;
          float dot = 0.0f;
          for (int64_t f = 0; f < d; ++f) dot += qf[size_t(f)] * kr[f];
          float sc = dot * scale + (brow ? brow[j] : 0.0f);
          s[size_t(j)] = sc;
          mx = std::max(mx, sc);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; ++j) {
          s[size_t(j)] = std::exp(s[size_t(j)] - mx);
          sum += s[size_t(j)];
        }
        std::fill(o.begin(), o.end(), 0.0f);
        for (int64_t j = 0; j < visible; ++j) {
          const float w = s[size_t(j)];
          const float* vr = vf.data() + j * d;
          for (int64_t f = 0; f < d; ++f) o[size_t(f)] += w * vr[f];
        }
        const float inv = 1.0f / sum;
        for (float& x : o) x *= inv;
        char* dst = static_cast<char*>(out.data()) +
                    (n * out.stride(0) + i * out.stride(1) + h * d) * int64_t(out.element_size());
        convert_from_f32(o.data(), dst, out.dtype(), d);
      }
    }
  });
  return ok_status();
}

Status gather_rows(CpuContext& ctx, const Tensor& table, const Tensor& ids, const Tensor& out) {
  SD35_RETURN_IF_ERROR(linear_checks::gather_rows(table, ids, out));
  const int32_t* id = ids.data_as<const int32_t>();
  const int64_t width = table.size(1);
  ctx.pool.parallel_for(ids.size(0), 8, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const char* src = static_cast<const char*>(table.data()) +
                        int64_t(id[i]) * table.stride(0) * int64_t(table.element_size());
      char* dst = static_cast<char*>(out.data()) + i * out.stride(0) * int64_t(out.element_size());
      convert(src, table.dtype(), dst, out.dtype(), width);
    }
  });
  return ok_status();
}

}  // namespace sd35::cpu
