// CPU layout ops: copy/cast between arbitrary strides, concat (copies into slices of y) and
// nearest-neighbour ×2 upsampling. Memory-bound: the aim is sequential access and the
// SIMD-dispatched bulk conversions of core/convert.h wherever a dense run exists.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/elementwise_rows.h"
#include "backend/ops_validate.h"
#include "core/float_convert.h"

namespace sd35::cpu {
namespace {

struct Dim {
  int64_t size, xs, ys;  // extent and strides (elements) in x and y
};

// Drops size-1 dims and merges neighbours that are laid out back to back in both tensors,
// outermost first. A contiguous-to-contiguous copy becomes one dim; a transpose keeps two.
int collapse_dims(const Tensor& x, const Tensor& y, Dim* out) {
  Dim rev[kMaxDims];
  int n = 0;
  for (int d = x.ndim() - 1; d >= 0; --d) {
    Dim cur{x.size(d), x.stride(d), y.stride(d)};
    if (cur.size == 1) continue;
    if (n > 0 && cur.xs == rev[n - 1].size * rev[n - 1].xs &&
        cur.ys == rev[n - 1].size * rev[n - 1].ys) {
      rev[n - 1].size *= cur.size;  // inner strides stay
      continue;
    }
    rev[n++] = cur;
  }
  if (n == 0) rev[n++] = Dim{1, 1, 1};
  for (int i = 0; i < n; ++i) out[i] = rev[n - 1 - i];
  return n;
}

template <typename T>
void strided_same(const char* xp, int64_t xs, char* yp, int64_t ys, int64_t n) {
  auto* s = reinterpret_cast<const T*>(xp);
  auto* d = reinterpret_cast<T*>(yp);
  for (int64_t i = 0; i < n; ++i) std::memcpy(d + i * ys, s + i * xs, sizeof(T));
}

// n elements from xp (stride xs) to yp (stride ys), converting when the dtypes differ.
void strided_run(const char* xp, DType xt, int64_t xs, char* yp, DType yt, int64_t ys, int64_t n,
                 float* buf) {
  if (xt == yt) {
    switch (dtype_size(xt)) {
      case 1: return strided_same<uint8_t>(xp, xs, yp, ys, n);
      case 2: return strided_same<uint16_t>(xp, xs, yp, ys, n);
      case 4: return strided_same<uint32_t>(xp, xs, yp, ys, n);
      default: return strided_same<uint64_t>(xp, xs, yp, ys, n);
    }
  }
  // Gather to f32, then one bulk conversion when y is dense, else a scatter.
  if (xs == 1) {
    convert_to_f32(xp, xt, buf, n);
  } else if (xt == DType::kF32) {
    for (int64_t i = 0; i < n; ++i) buf[i] = reinterpret_cast<const float*>(xp)[i * xs];
  } else if (xt == DType::kBF16) {
    for (int64_t i = 0; i < n; ++i)
      buf[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(xp)[i * xs]);
  } else if (xt == DType::kF16) {
    for (int64_t i = 0; i < n; ++i)
      buf[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(xp)[i * xs]);
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = load_as_f32(xp, xt, i * xs);
  }
  if (ys == 1) {
    convert_from_f32(buf, yp, yt, n);
  } else {
    for (int64_t i = 0; i < n; ++i) store_from_f32(yp, yt, i * ys, buf[i]);
  }
}

}  // namespace

Status copy(CpuContext& ctx, const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::copy(Device::kCPU, x, y));
  if (x.numel() == 0) return ok_status();
  Dim dims[kMaxDims];
  const int nd = collapse_dims(x, y, dims);
  const Dim inner = dims[nd - 1];
  const int64_t outer = x.numel() / inner.size;
  const int64_t xes = int64_t(x.element_size()), yes = int64_t(y.element_size());
  const bool dense = inner.xs == 1 && inner.ys == 1;
  // Dense runs are cut into blocks so that one huge contiguous copy is still parallel.
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = dense ? (inner.size + kBlock - 1) / kBlock : 1;
  const int64_t run = dense ? std::min(inner.size, kBlock) : inner.size;
  ctx.pool.parallel_for(outer * blocks, rows::grain_for(run), [&](int64_t u0, int64_t u1) {
    std::vector<float> buf(dense ? 0 : size_t(run));
    for (int64_t u = u0; u < u1; ++u) {
      int64_t r = u / blocks, begin = (u % blocks) * run;
      int64_t xo = 0, yo = 0;
      for (int d = nd - 2; d >= 0; --d) {
        int64_t i = r % dims[d].size;
        r /= dims[d].size;
        xo += i * dims[d].xs;
        yo += i * dims[d].ys;
      }
      const char* xp = static_cast<const char*>(x.data()) + xo * xes;
      char* yp = static_cast<char*>(y.data()) + yo * yes;
      if (dense) {
        int64_t n = std::min(run, inner.size - begin);
        convert(xp + begin * xes, x.dtype(), yp + begin * yes, y.dtype(), n);
      } else {
        strided_run(xp, x.dtype(), inner.xs, yp, y.dtype(), inner.ys, inner.size, buf.data());
      }
    }
  });
  return ok_status();
}

Status concat(CpuContext& ctx, std::span<const Tensor> inputs, int axis, const Tensor& y) {
  int a = 0;
  SD35_RETURN_IF_ERROR(validate::concat(Device::kCPU, inputs, axis, y, &a));
  int64_t offset = 0;
  for (const Tensor& t : inputs) {
    SD35_RETURN_IF_ERROR(copy(ctx, t, y.slice(a, offset, offset + t.size(a))));
    offset += t.size(a);
  }
  return ok_status();
}

Status upsample_nearest2x(CpuContext& ctx, const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::upsample_nearest2x(Device::kCPU, x, y));
  if (x.numel() == 0) return ok_status();
  const int64_t w = x.size(3);
  const size_t es = y.element_size();
  // One input row (n, c, h) produces output rows 2h and 2h + 1, which are identical.
  ctx.pool.parallel_for(x.rows(), rows::grain_for(4 * w), [&](int64_t r0, int64_t r1) {
    std::vector<char> tmp(x.dtype() == y.dtype() ? 0 : size_t(w) * es);
    for (int64_t r = r0; r < r1; ++r) {
      const char* src = rows::row_ptr(x, r);
      if (x.dtype() != y.dtype()) {
        convert(src, x.dtype(), tmp.data(), y.dtype(), w);
        src = tmp.data();
      }
      int64_t nc = r / x.size(2), h = r % x.size(2);
      char* row0 = rows::row_ptr(y, nc * y.size(2) + 2 * h);
      char* row1 = rows::row_ptr(y, nc * y.size(2) + 2 * h + 1);
      if (es == 4) {
        auto* s = reinterpret_cast<const uint32_t*>(src);
        auto* d = reinterpret_cast<uint32_t*>(row0);
        for (int64_t i = 0; i < w; ++i) d[2 * i] = d[2 * i + 1] = s[i];
      } else {
        auto* s = reinterpret_cast<const uint16_t*>(src);
        auto* d = reinterpret_cast<uint16_t*>(row0);
        for (int64_t i = 0; i < w; ++i) d[2 * i] = d[2 * i + 1] = s[i];
      }
      std::memcpy(row1, row0, size_t(2 * w) * es);
    }
  });
  return ok_status();
}

}  // namespace sd35::cpu
