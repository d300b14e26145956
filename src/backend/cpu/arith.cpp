// CPU add (broadcast), gated_add and affine. All three are memory-bound streams, so the aim
// is one pass over memory with f32 math in the per-ISA row kernels: f32 runs are used in
// place, bf16/f16 runs are staged through small f32 buffers on the stack (no heap allocation
// per call) and converted with the SIMD bulk conversions of core/convert.h.
//
// add and affine accept any strides: the dims of all operands are collapsed (size-1 dims
// dropped, neighbours that are back to back in every operand merged), so the hot cases
// reduce to long dense runs: same-shape dense tensors become one run (cut into blocks for
// the threads), a pos_embed [1, L, D] added to [B, L, D] becomes B runs of L·D against the
// same b run, a bias [1, D] becomes rows against one b row. A run along which b is
// broadcast (b [C, 1, 1] against [N, C, H, W]) adds one scalar. Anything else gathers and
// scatters through the staging buffers.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/elementwise_kernels.h"
#include "backend/cpu/elementwise_rows.h"
#include "backend/ops_validate.h"
#include "core/float_convert.h"

namespace sd35::cpu {
namespace {

// Elements per staged run: each parallel chunk keeps two or three f32 buffers of this size
// on its stack (8 KiB each), small enough to stay in L1 between conversion, math and store.
constexpr int64_t kRun = 2048;

constexpr float kInf = std::numeric_limits<float>::infinity();

// One dim of an elementwise iteration: extent and element strides in up to three operands
// (a, b, y for add; x, unused, y for affine). A broadcast operand has stride 0.
struct Dim {
  int64_t size;
  int64_t st[3];
};

// Drops size-1 dims and merges neighbours that are back to back in every operand (two
// stride-0 dims merge too), outermost first. Returns the number of dims (>= 1).
int collapse(const Dim* in, int nd, Dim* out) {
  Dim rev[kMaxDims];
  int n = 0;
  for (int d = nd - 1; d >= 0; --d) {
    const Dim& cur = in[d];
    if (cur.size == 1) continue;
    if (n > 0) {
      Dim& inner = rev[n - 1];
      bool merge = true;
      for (int k = 0; k < 3; ++k) merge = merge && cur.st[k] == inner.size * inner.st[k];
      if (merge) {
        inner.size *= cur.size;  // the inner strides stay
        continue;
      }
    }
    rev[n++] = cur;
  }
  if (n == 0) rev[n++] = Dim{1, {1, 1, 1}};
  for (int i = 0; i < n; ++i) out[i] = rev[n - 1 - i];
  return n;
}

// n elements at p (element stride s) as f32: the memory itself when f32 and dense, else
// converted / gathered into buf.
const float* load_run(const char* p, DType t, int64_t s, int64_t n, float* buf) {
  if (s == 1) return rows::load_f32(p, t, n, buf);
  switch (t) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) buf[i] = reinterpret_cast<const float*>(p)[i * s];
      break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i)
        buf[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[i * s]);
      break;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i)
        buf[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(p)[i * s]);
      break;
    default:
      for (int64_t i = 0; i < n; ++i) buf[i] = load_as_f32(p, t, i * s);
      break;
  }
  return buf;
}

// Where a kernel should write a run destined for p (stride s): p itself when f32 and dense,
// else buf, then finish with store_run.
float* out_run(char* p, DType t, int64_t s, float* buf) {
  return s == 1 ? rows::out_f32(p, t, buf) : buf;
}
void store_run(const float* v, char* p, DType t, int64_t s, int64_t n) {
  if (s == 1) return rows::store_f32(v, p, t, n);
  for (int64_t i = 0; i < n; ++i) store_from_f32(p, t, i * s, v[i]);
}

// Calls fn(off, n, buf0, buf1) for every run of at most kRun elements along the innermost
// collapsed dim, in parallel; off[k] is the element offset of the run's first element in
// operand k, and buf0/buf1 are kRun-float staging buffers owned by the calling chunk.
template <typename Fn>
void for_each_run(CpuContext& ctx, const Dim* dims, int nd, Fn&& fn) {
  const Dim inner = dims[nd - 1];
  int64_t outer = 1;
  for (int d = 0; d < nd - 1; ++d) outer *= dims[d].size;
  const int64_t blocks = (inner.size + kRun - 1) / kRun;
  const int64_t run = std::min(inner.size, kRun);
  ctx.pool.parallel_for(outer * blocks, rows::grain_for(run), [&](int64_t u0, int64_t u1) {
    float buf0[kRun], buf1[kRun];
    for (int64_t u = u0; u < u1; ++u) {
      int64_t r = u / blocks, begin = (u % blocks) * kRun;
      int64_t off[3] = {begin * inner.st[0], begin * inner.st[1], begin * inner.st[2]};
      for (int d = nd - 2; d >= 0; --d) {
        int64_t i = r % dims[d].size;
        r /= dims[d].size;
        for (int k = 0; k < 3; ++k) off[k] += i * dims[d].st[k];
      }
      fn(off, std::min(kRun, inner.size - begin), buf0, buf1);
    }
  });
}

}  // namespace

namespace {

// y = a + b or a · b with b broadcast (the shared body of add and mul).
Status binary(CpuContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y, bool is_mul) {
  SD35_RETURN_IF_ERROR(validate::add(Device::kCPU, a, b, y, is_mul ? "mul" : "add"));
  if (a.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int nd = a.ndim(), lead = a.ndim() - b.ndim();
  Dim dims[kMaxDims], c[kMaxDims];
  for (int d = 0; d < nd; ++d) {
    // b's dim d - lead; a missing or size-1 dim of b repeats: stride 0.
    int64_t bs = d >= lead && b.size(d - lead) != 1 ? b.stride(d - lead) : 0;
    dims[d] = Dim{a.size(d), {a.stride(d), bs, y.stride(d)}};
  }
  const int cn = collapse(dims, nd, c);
  const Dim inner = c[cn - 1];
  const auto* ab = static_cast<const char*>(a.data());
  const auto* bb = static_cast<const char*>(b.data());
  auto* yb = static_cast<char*>(y.data());
  const int64_t aes = int64_t(a.element_size()), bes = int64_t(b.element_size()),
                yes = int64_t(y.element_size());
  for_each_run(ctx, c, cn, [&](const int64_t* off, int64_t n, float* buf0, float* buf1) {
    char* yp = yb + off[2] * yes;
    const float* av = load_run(ab + off[0] * aes, a.dtype(), inner.st[0], n, buf0);
    // av and out may both be buf0 (or both y's memory when y aliases a): the kernels run
    // element by element, so that is safe.
    float* out = out_run(yp, y.dtype(), inner.st[2], buf0);
    const char* bp = bb + off[1] * bes;
    if (inner.st[1] == 0) {
      // fma(a, 1, s) is exactly a + s rounded once, fma(a, s, 0) exactly a · s: the same
      // results as the add and mul kernels.
      const float sv = load_as_f32(bp, b.dtype(), 0);
      k.affine(av, n, is_mul ? sv : 1.0f, is_mul ? 0.0f : sv, -kInf, kInf, out);
    } else {
      (is_mul ? k.mul : k.add)(av, load_run(bp, b.dtype(), inner.st[1], n, buf1), n, out);
    }
    store_run(out, yp, y.dtype(), inner.st[2], n);
  });
  return ok_status();
}

}  // namespace

Status add(CpuContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y) {
  return binary(ctx, a, b, y, false);
}

Status mul(CpuContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y) {
  return binary(ctx, a, b, y, true);
}

Status gated_add(CpuContext& ctx, const Tensor& x, const Tensor& gate, const Tensor& h,
                 const Tensor& out) {
  SD35_RETURN_IF_ERROR(validate::gated_add(Device::kCPU, x, gate, h, out));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int64_t len = x.size(1), d = x.size(2);
  const int64_t xes = int64_t(x.element_size()), hes = int64_t(h.element_size()),
                oes = int64_t(out.element_size()), ges = int64_t(gate.element_size());
  ctx.pool.parallel_for(x.rows(), rows::grain_for(d), [&](int64_t r0, int64_t r1) {
    float gbuf[kRun], xbuf[kRun], hbuf[kRun];
    // Columns in blocks of kRun (one block for D <= 2048, the MMDiT's 1536 included); the
    // gate block is converted once per batch row the chunk touches.
    for (int64_t c0 = 0; c0 < d; c0 += kRun) {
      const int64_t n = std::min(kRun, d - c0);
      int64_t cached_b = -1;
      const float* g = nullptr;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / len;
        if (b != cached_b) {
          g = rows::load_f32(rows::row_ptr(gate, b) + c0 * ges, gate.dtype(), n, gbuf);
          cached_b = b;
        }
        char* op = rows::row_ptr(out, r) + c0 * oes;
        const float* xv = rows::load_f32(rows::row_ptr(x, r) + c0 * xes, x.dtype(), n, xbuf);
        const float* hv = rows::load_f32(rows::row_ptr(h, r) + c0 * hes, h.dtype(), n, hbuf);
        float* o = rows::out_f32(op, out.dtype(), xbuf);
        k.gated_add(xv, g, hv, n, o);
        rows::store_f32(o, op, out.dtype(), n);
      }
    }
  });
  return ok_status();
}

Status affine(CpuContext& ctx, const Tensor& x, const AffineParams& params, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::affine(Device::kCPU, x, params, y));
  if (x.numel() == 0) return ok_status();
  const RowKernels& k = row_kernels();
  const int nd = x.ndim();
  Dim dims[kMaxDims], c[kMaxDims];
  for (int d = 0; d < nd; ++d) dims[d] = Dim{x.size(d), {x.stride(d), 0, y.stride(d)}};
  const int cn = collapse(dims, nd, c);
  const Dim inner = c[cn - 1];
  const auto* xb = static_cast<const char*>(x.data());
  auto* yb = static_cast<char*>(y.data());
  const int64_t xes = int64_t(x.element_size()), yes = int64_t(y.element_size());
  for_each_run(ctx, c, cn, [&](const int64_t* off, int64_t n, float* buf0, float*) {
    char* yp = yb + off[2] * yes;
    const float* xv = load_run(xb + off[0] * xes, x.dtype(), inner.st[0], n, buf0);
    float* out = out_run(yp, y.dtype(), inner.st[2], buf0);
    k.affine(xv, n, params.scale, params.shift, params.lo, params.hi, out);
    store_run(out, yp, y.dtype(), inner.st[2], n);
  });
  return ok_status();
}

}  // namespace sd35::cpu
