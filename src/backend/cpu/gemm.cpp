// cpu::gemm on oneDNN matmul. y[M, N] = act(x[M, K] · w[N, K]ᵀ + bias) (+ y when accumulating).
//
// oneDNN 2.6 quirks this file is shaped around (checked with impl_info_str on Zen 5):
//  - the fast brgemm matmul ("brg:avx512_core[_bf16]") needs dense src and dst; a row stride
//    != K (or != N) falls back to "gemm:jit", and with a sum post-op to "ref:any" (100x slower).
//    So strided rows are staged through dense scratch, never handed to oneDNN.
//  - weights in nn.Linear layout [N, K] are the "ba" layout of the K×N matrix; brgemm takes
//    them in place (it copies blocks into its own layout internally).
//  - no f16 or fp8 matmul on this CPU, and no f32 matmul with bf16 dst: such weights are
//    converted panel by panel (N rows at a time, a few MB), such outputs go through f32 scratch.
#include <algorithm>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dnnl_util.h"
#include "backend/cpu/gemm_checks.h"
#include "core/convert.h"
#include "core/float_convert.h"

namespace sd35::cpu {
namespace {

using dnnl::memory;

// Weight panels and staged row chunks are sized to stay within the L2/L3-friendly range while
// keeping oneDNN calls large enough that per-call overhead (~10 µs) is negligible.
constexpr size_t kPanelBytes = size_t(4) << 20;
constexpr size_t kChunkBytes = size_t(4) << 20;

// One run of rows with uniform strides: rows [0, m) at x + i·ldx, y + i·ldy (elements).
struct RowRun {
  int64_t m;
  const char* x;
  char* y;
  int64_t ldx, ldy;
};

struct MatmulKey {
  int64_t m, k, n;
  memory::data_type xdt, wdt, ydt;
  Activation act;
  bool sum, bias;
  std::string str() const {
    return "mm:" + std::to_string(m) + "," + std::to_string(k) + "," + std::to_string(n) + ":" +
           std::to_string(int(xdt)) + std::to_string(int(wdt)) + std::to_string(int(ydt)) + ":" +
           std::to_string(int(act)) + std::to_string(int(sum)) + std::to_string(int(bias));
  }
};

dnnl::primitive make_matmul(const dnnl::engine& eng, const MatmulKey& k) {
  memory::desc xm({k.m, k.k}, k.xdt, memory::dims{k.k, 1});
  memory::desc wm({k.k, k.n}, k.wdt, memory::dims{1, k.k});  // [N, K] row-major == "ba"
  memory::desc ym({k.m, k.n}, k.ydt, memory::dims{k.n, 1});
  dnnl::post_ops po;
  switch (k.act) {
    case Activation::kNone: break;
    case Activation::kGeluTanh: po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_tanh, 0, 0); break;
    case Activation::kGeluErf: po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0, 0); break;
    // x·sigmoid(αx) is oneDNN's swish with alpha α.
    case Activation::kQuickGelu: po.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.702f, 0); break;
    case Activation::kSilu: po.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.f, 0); break;
  }
  // Post-ops run in order: the activation first, then dst += result (accumulate).
  if (k.sum) po.append_sum(1.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  dnnl::matmul::desc d = k.bias ? dnnl::matmul::desc(xm, wm,
                                                     memory::desc({1, k.n}, memory::data_type::f32,
                                                                  memory::dims{k.n, 1}),
                                                     ym)
                                : dnnl::matmul::desc(xm, wm, ym);
  return dnnl::matmul(dnnl::matmul::primitive_desc(d, attr, eng));
}

void run_matmul(DnnlState& st, const MatmulKey& key, const void* x, const void* w,
                const float* bias, void* y) {
  auto p = st.cached<dnnl::primitive>(
      key.str(), [&] { return std::make_shared<dnnl::primitive>(make_matmul(st.engine(), key)); });
  const dnnl::engine& eng = st.engine();
  memory xm(memory::desc({key.m, key.k}, key.xdt, memory::dims{key.k, 1}), eng,
            const_cast<void*>(x));
  memory wm(memory::desc({key.k, key.n}, key.wdt, memory::dims{1, key.k}), eng,
            const_cast<void*>(w));
  memory ym(memory::desc({key.m, key.n}, key.ydt, memory::dims{key.n, 1}), eng, y);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
  if (key.bias) {
    args.emplace(DNNL_ARG_BIAS, memory(memory::desc({1, key.n}, memory::data_type::f32,
                                                    memory::dims{key.n, 1}),
                                       eng, const_cast<float*>(bias)));
  }
  dnnl::stream s(eng);
  p->execute(s, args);
  s.wait();
}

// Splits x/y's leading dims into runs of uniformly strided rows (usually exactly one).
std::vector<RowRun> row_runs(const Tensor& x, const Tensor& y) {
  int lead = x.ndim() - 1;
  struct Dim {
    int64_t size, xs, ys;
  };
  std::vector<Dim> dims;
  for (int i = 0; i < lead; ++i)
    if (x.shape()[i] != 1) dims.push_back({x.shape()[i], x.strides()[i], y.strides()[i]});
  const int64_t K = x.size(-1), N = y.size(-1);
  const int64_t xes = int64_t(x.element_size()), yes = int64_t(y.element_size());
  // Innermost dim gives the run; outer dims merge into it while the strides line up.
  int64_t m = 1, ldx = K, ldy = N;
  int outer = int(dims.size());
  if (!dims.empty()) {
    m = dims.back().size;
    ldx = dims.back().xs;
    ldy = dims.back().ys;
    outer = int(dims.size()) - 1;
    while (outer > 0 && dims[size_t(outer - 1)].xs == ldx * m &&
           dims[size_t(outer - 1)].ys == ldy * m) {
      m *= dims[size_t(outer - 1)].size;
      --outer;
    }
  }
  if (m == 1) ldx = K, ldy = N;
  std::vector<RowRun> runs;
  std::vector<int64_t> idx(size_t(outer), 0);
  for (;;) {
    int64_t xo = 0, yo = 0;
    for (int i = 0; i < outer; ++i) xo += idx[size_t(i)] * dims[size_t(i)].xs, yo += idx[size_t(i)] * dims[size_t(i)].ys;
    runs.push_back({m, static_cast<const char*>(x.data()) + xo * xes,
                    static_cast<char*>(y.data()) + yo * yes, ldx, ldy});
    int d = outer - 1;
    for (; d >= 0; --d) {
      if (++idx[size_t(d)] < dims[size_t(d)].size) break;
      idx[size_t(d)] = 0;
    }
    if (d < 0) break;
  }
  return runs;
}

struct Plan {
  DType cdt;     // compute dtype of x and w inside oneDNN (f32 or bf16)
  bool w_direct; // w used in place
  bool y_native; // oneDNN can write y's dtype for this compute dtype
  int64_t K, N;
  const float* bias;  // f32 copy, or nullptr
};

// The slow-but-general path: weight panels converted to cdt, row chunks staged to dense cdt
// scratch, results through f32 scratch when y cannot be written directly.
Status tiled(CpuContext& ctx, DnnlState& st, const Plan& pl, const Tensor& x, const Tensor& w,
             const Tensor& y, const RowRun& run, const GemmParams& p) {
  const int64_t K = pl.K, N = pl.N, M = run.m;
  const size_t ces = dtype_size(pl.cdt), wes = w.element_size(), xes = x.element_size(),
               yes = y.element_size();
  const memory::data_type cdt = dnnl_dt(pl.cdt);
  int64_t pn = N;
  if (!pl.w_direct) {
    int64_t panels = std::max<int64_t>(1, int64_t((size_t(N) * size_t(K) * ces + kPanelBytes - 1) / kPanelBytes));
    pn = (N + panels - 1) / panels;
    if (pn < N) pn = std::min(N, (pn + 15) / 16 * 16);
  }
  const bool x_direct = x.dtype() == pl.cdt && run.ldx == K;
  const bool y_direct = pl.y_native && run.ldy == N && pn == N;
  int64_t mc = M;
  if (!x_direct || !y_direct) {
    size_t per_row = (x_direct ? 0 : size_t(K) * ces) + (y_direct ? 0 : size_t(pn) * 4);
    mc = std::clamp<int64_t>(int64_t(kChunkBytes / per_row), 16, M);
  }
  char* wbuf = nullptr;
  char* xbuf = nullptr;
  float* ybuf = nullptr;
  if (!pl.w_direct) wbuf = static_cast<char*>(thread_scratch(ScratchSlot::kGemmW, size_t(pn) * size_t(K) * ces));
  if (!x_direct) xbuf = static_cast<char*>(thread_scratch(ScratchSlot::kGemmX, size_t(mc) * size_t(K) * ces));
  if (!y_direct) ybuf = static_cast<float*>(thread_scratch(ScratchSlot::kGemmY, size_t(mc) * size_t(pn) * 4));
  if ((!pl.w_direct && !wbuf) || (!x_direct && !xbuf) || (!y_direct && !ybuf))
    return resource_exhausted("gemm: cannot allocate scratch");

  for (int64_t n0 = 0; n0 < N; n0 += pn) {
    const int64_t nn = std::min(pn, N - n0);
    const char* wp = static_cast<const char*>(w.data()) + size_t(n0) * size_t(K) * wes;
    if (!pl.w_direct) {
      ctx.pool.parallel_for(nn, 16, [&](int64_t r0, int64_t r1) {
        convert(wp + size_t(r0) * size_t(K) * wes, w.dtype(), wbuf + size_t(r0) * size_t(K) * ces,
                pl.cdt, (r1 - r0) * K);
      });
      wp = wbuf;
    }
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
      const int64_t mm = std::min(mc, M - m0);
      const char* xp = run.x + size_t(m0) * size_t(run.ldx) * xes;
      if (!x_direct) {
        ctx.pool.parallel_for(mm, 16, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r)
            convert(xp + size_t(r) * size_t(run.ldx) * xes, x.dtype(), xbuf + size_t(r) * size_t(K) * ces,
                    pl.cdt, K);
        });
        xp = xbuf;
      }
      MatmulKey key{mm, K, nn, cdt, cdt, y_direct ? dnnl_dt(y.dtype()) : memory::data_type::f32,
                    p.activation, y_direct && p.accumulate, pl.bias != nullptr};
      char* yp = run.y + size_t(m0) * size_t(run.ldy) * yes;
      run_matmul(st, key, xp, wp, pl.bias ? pl.bias + n0 : nullptr, y_direct ? yp : static_cast<void*>(ybuf));
      if (!y_direct) {
        // Store the f32 tile into y's columns [n0, n0 + nn), adding y's old value if asked.
        ctx.pool.parallel_for(mm, 16, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            float* src = ybuf + size_t(r) * size_t(nn);
            char* dst = yp + (size_t(r) * size_t(run.ldy) + size_t(n0)) * yes;
            if (p.accumulate) {
              for (int64_t j = 0; j < nn; ++j) src[j] += load_as_f32(dst, y.dtype(), j);
            }
            convert_from_f32(src, dst, y.dtype(), nn);
          }
        });
      }
    }
  }
  return ok_status();
}

}  // namespace

Status gemm(CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
            const Tensor& y, const GemmParams& params) {
  SD35_RETURN_IF_ERROR(linear_checks::gemm(x, w, bias, y, params));
  const int64_t K = w.size(1), N = w.size(0);
  if (x.numel() == 0 || N == 0) return ok_status();
  return dnnl_guard("gemm", [&]() -> Status {
    DnnlState& st = dnnl_state(ctx);
    Plan pl;
    // bf16 activations: bf16×bf16 products, f32 accumulation (the documented contract);
    // f32 and f16 activations: f32 math.
    pl.cdt = x.dtype() == DType::kBF16 ? DType::kBF16 : DType::kF32;
    pl.w_direct = w.dtype() == pl.cdt;
    pl.y_native = y.dtype() == DType::kF32 || (y.dtype() == DType::kBF16 && pl.cdt == DType::kBF16);
    pl.K = K;
    pl.N = N;
    pl.bias = nullptr;
    if (bias) {
      float* b = static_cast<float*>(thread_scratch(ScratchSlot::kBias, size_t(N) * 4));
      if (!b) return resource_exhausted("gemm: cannot allocate scratch");
      const char* src = static_cast<const char*>(bias->data());
      for (int64_t i = 0; i < N; ++i)
        b[i] = load_as_f32(src + i * bias->stride(0) * int64_t(bias->element_size()), bias->dtype(), 0);
      pl.bias = b;
    }
    for (const RowRun& run : row_runs(x, y)) {
      const bool dense = run.ldx == K && run.ldy == N;
      if (dense && pl.w_direct && pl.y_native && x.dtype() == pl.cdt) {
        MatmulKey key{run.m, K, N, dnnl_dt(pl.cdt), dnnl_dt(pl.cdt), dnnl_dt(y.dtype()),
                      params.activation, params.accumulate, pl.bias != nullptr};
        run_matmul(st, key, run.x, w.data(), pl.bias, run.y);
      } else {
        SD35_RETURN_IF_ERROR(tiled(ctx, st, pl, x, w, y, run, params));
      }
    }
    return ok_status();
  });
}

}  // namespace sd35::cpu
