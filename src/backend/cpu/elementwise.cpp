// CPU modulate, activation and softmax, and the choice of row-kernel table. Rows are staged
// through f32 buffers when the storage type is bf16/f16; f32 rows are used in place.
#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/elementwise_kernels.h"
#include "backend/cpu/elementwise_rows.h"
#include "backend/ops_validate.h"
#include "core/cpu_features.h"

namespace sd35::cpu {

const RowKernels& row_kernels() {
  switch (active_cpu_isa()) {
    case CpuIsa::kAvx512: return kRowKernelsAvx512;
    case CpuIsa::kAvx2: return kRowKernelsAvx2;
    case CpuIsa::kScalar: break;
  }
  return kRowKernelsScalar;
}

Status modulate(CpuContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::modulate(Device::kCPU, x, shift, scale, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int64_t len = x.size(1), d = x.size(2);
  ctx.pool.parallel_for(x.rows(), rows::grain_for(d), [&](int64_t r0, int64_t r1) {
    // shift and 1 + scale of the current batch row, refreshed when the chunk crosses into
    // the next batch.
    std::vector<float> buf(static_cast<size_t>(d)), sh(static_cast<size_t>(d)),
        sc1p(static_cast<size_t>(d));
    int64_t cached_b = -1;
    for (int64_t r = r0; r < r1; ++r) {
      int64_t b = r / len;
      if (b != cached_b) {
        convert_to_f32(rows::row_ptr(shift, b), shift.dtype(), sh.data(), d);
        convert_to_f32(rows::row_ptr(scale, b), scale.dtype(), sc1p.data(), d);
        for (float& v : sc1p) v += 1.0f;
        cached_b = b;
      }
      void* yrow = rows::row_ptr(y, r);
      const float* xin = rows::load_f32(rows::row_ptr(x, r), x.dtype(), d, buf.data());
      float* out = rows::out_f32(yrow, y.dtype(), buf.data());
      k.modulate(xin, d, sc1p.data(), sh.data(), out);
      rows::store_f32(out, yrow, y.dtype(), d);
    }
  });
  return ok_status();
}

Status activation(CpuContext& ctx, const Tensor& x, Activation act, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::activation(Device::kCPU, x, act, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int code = int(act);
  if (act == Activation::kNone && x.data() == y.data() && x.dtype() == y.dtype() &&
      x.strides() == y.strides()) {
    return ok_status();  // identity in place
  }
  // Contiguous operands are one long row cut into blocks; otherwise walk the rows.
  const bool flat = x.is_contiguous() && y.is_contiguous();
  constexpr int64_t kBlock = 4096;
  const int64_t row_len = flat ? kBlock : x.size(-1);
  const int64_t units = flat ? (x.numel() + kBlock - 1) / kBlock : x.rows();
  const size_t xes = x.element_size(), yes = y.element_size();
  ctx.pool.parallel_for(units, rows::grain_for(row_len), [&](int64_t u0, int64_t u1) {
    std::vector<float> buf(static_cast<size_t>(row_len));
    for (int64_t u = u0; u < u1; ++u) {
      const void* xrow;
      void* yrow;
      int64_t n = row_len;
      if (flat) {
        n = std::min(kBlock, x.numel() - u * kBlock);
        xrow = static_cast<const char*>(x.data()) + u * kBlock * int64_t(xes);
        yrow = static_cast<char*>(y.data()) + u * kBlock * int64_t(yes);
      } else {
        xrow = rows::row_ptr(x, u);
        yrow = rows::row_ptr(y, u);
      }
      const float* xin = rows::load_f32(xrow, x.dtype(), n, buf.data());
      float* out = rows::out_f32(yrow, y.dtype(), buf.data());
      k.activation(xin, n, code, out);
      rows::store_f32(out, yrow, y.dtype(), n);
    }
  });
  return ok_status();
}

Status softmax(CpuContext& ctx, const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::softmax(Device::kCPU, x, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int64_t c = x.size(-1);
  ctx.pool.parallel_for(x.rows(), rows::grain_for(c), [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(static_cast<size_t>(c));
    for (int64_t r = r0; r < r1; ++r) {
      void* yrow = rows::row_ptr(y, r);
      const float* xin = rows::load_f32(rows::row_ptr(x, r), x.dtype(), c, buf.data());
      float* out = rows::out_f32(yrow, y.dtype(), buf.data());
      float m = k.max(xin, c);
      float sum = k.exp_sub_sum(xin, c, m, out);
      k.scale(out, c, 1.0f / sum);
      rows::store_f32(out, yrow, y.dtype(), c);
    }
  });
  return ok_status();
}

}  // namespace sd35::cpu
