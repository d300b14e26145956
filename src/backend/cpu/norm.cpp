// CPU layer / RMS / group norm: rows (or group chunks) staged to f32, statistics with the
// per-ISA row kernels, parallel over rows. Variances are two-pass (mean, then Σ(x - mean)²),
// never E[x²] - E[x]², which cancels catastrophically when |mean| >> std.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/elementwise_kernels.h"
#include "backend/cpu/elementwise_rows.h"
#include "backend/ops_validate.h"

namespace sd35::cpu {

Status layer_norm(CpuContext& ctx, const Tensor& x, const Tensor* weight, const Tensor* bias,
                  float eps, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::layer_norm(Device::kCPU, x, weight, bias, eps, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int64_t c = x.size(-1);
  const std::vector<float> w = rows::param_f32(weight), b = rows::param_f32(bias);
  const float* wp = weight ? w.data() : nullptr;
  const float* bp = bias ? b.data() : nullptr;
  ctx.pool.parallel_for(x.rows(), rows::grain_for(c), [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(static_cast<size_t>(c));
    for (int64_t r = r0; r < r1; ++r) {
      void* yrow = rows::row_ptr(y, r);
      const float* xin = rows::load_f32(rows::row_ptr(x, r), x.dtype(), c, buf.data());
      float mean = k.sum(xin, c) / float(c);
      float var = k.sum_sq_dev(xin, c, mean) / float(c);
      float rstd = 1.0f / std::sqrt(var + eps);
      float* out = rows::out_f32(yrow, y.dtype(), buf.data());
      k.normalize(xin, c, mean, rstd, wp, bp, out);
      rows::store_f32(out, yrow, y.dtype(), c);
    }
  });
  return ok_status();
}

// The statistics and the arithmetic are layer_norm's (no affine) followed by modulate's, so
// the result equals that two-op path bit for bit; only the f32 intermediate tensor and the
// second pass over memory are gone. x is f32 (validated), so its rows are used in place.
Status layer_norm_modulate(CpuContext& ctx, const Tensor& x, const Tensor& shift,
                           const Tensor& scale, float eps, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::layer_norm_modulate(Device::kCPU, x, shift, scale, eps, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int64_t len = x.size(1), d = x.size(2);
  ctx.pool.parallel_for(x.rows(), rows::grain_for(d), [&](int64_t r0, int64_t r1) {
    // shift and 1 + scale of the current batch row, refreshed when the chunk crosses into
    // the next batch (as in modulate).
    std::vector<float> buf(static_cast<size_t>(d)), sc1p(static_cast<size_t>(d));
    const float* sh = nullptr;
    int64_t cached_b = -1;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / len;
      if (b != cached_b) {
        sh = reinterpret_cast<const float*>(rows::row_ptr(shift, b));
        const auto* sc = reinterpret_cast<const float*>(rows::row_ptr(scale, b));
        for (int64_t i = 0; i < d; ++i) sc1p[size_t(i)] = sc[i] + 1.0f;
        cached_b = b;
      }
      void* yrow = rows::row_ptr(y, r);
      const auto* xin = reinterpret_cast<const float*>(rows::row_ptr(x, r));
      const float mean = k.sum(xin, d) / float(d);
      const float var = k.sum_sq_dev(xin, d, mean) / float(d);
      const float rstd = 1.0f / std::sqrt(var + eps);
      // y == x (the only overlap validation allows) is f32, so out is the row itself and
      // the kernel reads each element before writing it.
      float* out = rows::out_f32(yrow, y.dtype(), buf.data());
      k.normalize_modulate(xin, d, mean, rstd, sc1p.data(), sh, out);
      rows::store_f32(out, yrow, y.dtype(), d);
    }
  });
  return ok_status();
}

Status rms_norm(CpuContext& ctx, const Tensor& x, const Tensor* weight, float eps,
                const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::rms_norm(Device::kCPU, x, weight, eps, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int64_t c = x.size(-1);
  const std::vector<float> w = rows::param_f32(weight);
  const float* wp = weight ? w.data() : nullptr;
  ctx.pool.parallel_for(x.rows(), rows::grain_for(c), [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(static_cast<size_t>(c));
    for (int64_t r = r0; r < r1; ++r) {
      void* yrow = rows::row_ptr(y, r);
      const float* xin = rows::load_f32(rows::row_ptr(x, r), x.dtype(), c, buf.data());
      float rrms = 1.0f / std::sqrt(k.sum_sq(xin, c) / float(c) + eps);
      float* out = rows::out_f32(yrow, y.dtype(), buf.data());
      k.normalize(xin, c, 0.0f, rrms, wp, nullptr, out);
      rows::store_f32(out, yrow, y.dtype(), c);
    }
  });
  return ok_status();
}

namespace {

// Mean and Σ(x - mean)² of one chunk, merged across chunks with Chan et al.'s pairwise
// update: each chunk's two-pass statistics are exact to f32 rounding, and the merge in
// double keeps a group of millions of elements (a VAE group at 1024²) accurate.
struct ChunkStats {
  double count = 0, mean = 0, m2 = 0;
  void merge(const ChunkStats& o) {
    double n = count + o.count;
    if (n == 0) return;
    double delta = o.mean - mean;
    mean += delta * o.count / n;
    m2 += o.m2 + delta * delta * count * o.count / n;
    count = n;
  }
};

constexpr int64_t kGroupChunk = 4096;  // f32 staging chunk: 16 KiB, stays in L1/L2

}  // namespace

Status group_norm(CpuContext& ctx, const Tensor& x, int groups, const Tensor* weight,
                  const Tensor* bias, float eps, const Tensor& y, bool silu) {
  SD35_RETURN_IF_ERROR(validate::group_norm(Device::kCPU, x, groups, weight, bias, eps, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  // Contiguous (validated): the channels of a group are adjacent, so a group is one run of
  // cg·S elements and channel (n, ch) is the run of S elements at (n·C + ch)·S.
  const int64_t n_batch = x.size(0), c = x.size(1), s = x.numel() / (n_batch * c);
  const int64_t cg = c / groups, group_elems = cg * s, n_groups = n_batch * groups;
  const int64_t chunks = (group_elems + kGroupChunk - 1) / kGroupChunk;
  const size_t xes = x.element_size(), yes = y.element_size();
  const auto* xbase = static_cast<const char*>(x.data());
  auto* ybase = static_cast<char*>(y.data());

  std::vector<ChunkStats> stats(static_cast<size_t>(n_groups * chunks));
  ctx.pool.parallel_for(n_groups * chunks, 1, [&](int64_t u0, int64_t u1) {
    std::vector<float> buf(static_cast<size_t>(kGroupChunk));
    for (int64_t u = u0; u < u1; ++u) {
      int64_t g = u / chunks, begin = (u % chunks) * kGroupChunk;
      int64_t n = std::min(kGroupChunk, group_elems - begin);
      const float* v = rows::load_f32(xbase + (g * group_elems + begin) * int64_t(xes), x.dtype(),
                                      n, buf.data());
      float mean = k.sum(v, n) / float(n);
      stats[size_t(u)] = {double(n), double(mean), double(k.sum_sq_dev(v, n, mean))};
    }
  });
  std::vector<float> group_mean(static_cast<size_t>(n_groups)),
      group_rstd(static_cast<size_t>(n_groups));
  for (int64_t g = 0; g < n_groups; ++g) {
    ChunkStats total;
    for (int64_t j = 0; j < chunks; ++j) total.merge(stats[size_t(g * chunks + j)]);
    group_mean[size_t(g)] = float(total.mean);
    group_rstd[size_t(g)] = float(1.0 / std::sqrt(total.m2 / total.count + double(eps)));
  }

  const std::vector<float> w = rows::param_f32(weight), b = rows::param_f32(bias);
  // Normalise channel by channel, S elements in chunks: y = (x - mean)·(rstd·w) + b.
  const int64_t s_chunks = (s + kGroupChunk - 1) / kGroupChunk;
  ctx.pool.parallel_for(n_batch * c * s_chunks, 1, [&](int64_t u0, int64_t u1) {
    std::vector<float> buf(static_cast<size_t>(kGroupChunk));
    for (int64_t u = u0; u < u1; ++u) {
      int64_t row = u / s_chunks, begin = (u % s_chunks) * kGroupChunk;
      int64_t n = std::min(kGroupChunk, s - begin);
      int64_t ch = row % c, g = (row / c) * groups + ch / cg;
      float a = group_rstd[size_t(g)] * (weight ? w[size_t(ch)] : 1.0f);
      float shift = bias ? b[size_t(ch)] : 0.0f;
      int64_t off = row * s + begin;
      const float* v = rows::load_f32(xbase + off * int64_t(xes), x.dtype(), n, buf.data());
      float* out = rows::out_f32(ybase + off * int64_t(yes), y.dtype(), buf.data());
      k.center_scale_shift(v, n, group_mean[size_t(g)], a, shift, out);
      rows::store_f32(out, ybase + off * int64_t(yes), y.dtype(), n);
      if (silu) {
        // Exactly what activation(y, kSilu, y) computes on these elements: the stored
        // (rounded) values, the same elementwise kernel (masked tails, so no dependence on
        // where a chunk starts).
        const float* r = rows::load_f32(ybase + off * int64_t(yes), y.dtype(), n, buf.data());
        float* act = rows::out_f32(ybase + off * int64_t(yes), y.dtype(), buf.data());
        k.activation(r, n, int(Activation::kSilu), act);
        rows::store_f32(act, ybase + off * int64_t(yes), y.dtype(), n);
      }
    }
  });
  return ok_status();
}

}  // namespace sd35::cpu
