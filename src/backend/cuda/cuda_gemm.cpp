// gemm on CUDA: cuBLASLt with f32 accumulation. In cuBLASLt's column-major terms the
// row-major y[M, N] = x[M, K]·w[N, K]ᵀ is D[N, M] = op_T(W)[N, K] · X[K, M], where W is w
// read as a column-major K×N matrix (lda = K), X is x (ldb = x's row stride) and D is y
// (ldd = y's row stride): no copies for dense-row views. Weights of another dtype than x are
// converted into scratch in panels of rows. Bias and GELU(tanh) go into cuBLASLt's epilogue
// where it accepts them; outputs it cannot produce directly (other activations, a y dtype
// other than x's or f32, a bias it rejects) go through an f32 scratch and our epilogue.
#include <algorithm>
#include <string>

#include "backend/cpu/gemm_checks.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_kernels.h"

namespace sd35::cuda {
namespace {

constexpr int64_t kWeightPanelBytes = int64_t(256) << 20;  // converted weight rows at a time
constexpr int64_t kGemmOutBytes = int64_t(64) << 20;       // f32 results before the epilogue

// Leading dims of a [..., K] tensor pair (x, y) collapsed into uniformly strided row groups.
struct RowGroups {
  int outer_dims = 0;  // dims [0, outer_dims) are iterated one index at a time
  int64_t rows = 1;    // rows per group
  int64_t sx = 0, sy = 0;  // row strides inside a group
};

RowGroups collapse_rows(const Tensor& x, const Tensor& y) {
  RowGroups g;
  const int lead = x.ndim() - 1;
  g.outer_dims = 0;
  if (lead == 0) return g;
  g.rows = x.size(lead - 1);
  g.sx = x.stride(lead - 1);
  g.sy = y.stride(lead - 1);
  g.outer_dims = lead - 1;
  for (int d = lead - 2; d >= 0; --d) {
    if (x.size(d) == 1) {
      g.outer_dims = d;
    } else if (g.rows == 1) {
      g.rows = x.size(d), g.sx = x.stride(d), g.sy = y.stride(d), g.outer_dims = d;
    } else if (x.stride(d) == g.sx * g.rows && y.stride(d) == g.sy * g.rows) {
      g.rows *= x.size(d), g.outer_dims = d;
    } else {
      break;
    }
  }
  return g;
}

}  // namespace

Tensor as_checkable(const Tensor& t) {
  return Tensor::strided_view_of(t.data(), t.dtype(), t.shape(), t.strides(), Device::kCPU);
}

Status on_cuda(std::initializer_list<const Tensor*> ts, std::string_view op) {
  for (const Tensor* t : ts)
    if (t) SD35_RETURN_IF_ERROR(check::on_device(*t, Device::kCUDA, op));
  return ok_status();
}

Result<const float*> bias_as_f32(CudaContext& ctx, const Tensor* bias, const char* op) {
  if (!bias) return static_cast<const float*>(nullptr);
  const int64_t n = bias->size(0);
  if (bias->dtype() == DType::kF32 && (bias->stride(0) == 1 || n == 1) &&
      alignment_of(bias->data()) >= 16)
    return static_cast<const float*>(bias->data());
  SD35_ASSIGN_OR_RETURN(void* p, ctx.scratch->get(ScratchSlot::kBias, size_t(n) * 4, op));
  EwArgs a;
  a.name = op;
  a.op = EwOp::kConvert;
  a.out = p;
  a.out_dtype = DType::kF32;
  a.in[0] = bias->data();
  a.in_dtype[0] = bias->dtype();
  Shape contiguous{1};
  const Shape* strides[2] = {&contiguous, &bias->strides()};
  a.layout = make_layout(bias->shape(), strides, 2);
  SD35_RETURN_IF_ERROR(launch_elementwise(a, ctx.stream));
  return static_cast<const float*>(p);
}

Status gemm_rows(CudaContext& ctx, const GemmRows& r, DType compute, const void* w, int64_t n,
                 int64_t k, const GemmBias& bias, const GemmParams& p) {
  if (r.m == 0 || n == 0) return ok_status();
  LtMatmul mm;
  mm.transpose_a = true;
  mm.m = n, mm.n = r.m, mm.k = k;
  mm.a = w, mm.a_type = compute, mm.lda = k;
  mm.b = r.x, mm.b_type = compute, mm.ldb = r.ldx;
  bool supported = false;
  // cuBLASLt's epilogue applies the activation after the accumulation, and its GELU is the
  // tanh form: other activations, or one with accumulate, take our epilogue below. Fused
  // only for a 16-bit y, whose rounding (2^-9 relative) dwarfs any difference in how
  // cuBLASLt evaluates tanh; an f32 y (the text encoders) keeps our exact epilogue.
  const bool sixteen_bit_y = r.y_dtype == DType::kBF16 || r.y_dtype == DType::kF16;
  const bool fusable_act =
      p.activation == Activation::kNone ||
      (ctx.lt_epilogues && p.activation == Activation::kGeluTanh && !p.accumulate &&
       sixteen_bit_y);
  // The bias in its stored dtype is fused when cuBLASLt takes it: f32 always was; D's own
  // 16-bit dtype (a bf16 bias with bf16 output, the MMDiT's qkv/fc1) with lt_epilogues.
  const bool fusable_bias = !bias.data || bias.dtype == DType::kF32 ||
                            (ctx.lt_epilogues && bias.dtype == r.y_dtype);
  // cuBLASLt has no alignment preference for the bias; give it only aligned ones.
  const bool aligned_bias = !bias.data || alignment_of(bias.data) >= 16;
  if (fusable_act && fusable_bias && aligned_bias &&
      (r.y_dtype == compute || r.y_dtype == DType::kF32)) {
    mm.d = r.y, mm.d_type = r.y_dtype, mm.ldd = r.ldy;
    mm.accumulate = p.accumulate;
    mm.bias = bias.data, mm.bias_type = bias.dtype;
    mm.activation = p.activation;
    SD35_RETURN_IF_ERROR(ctx.lt->run(mm, &supported));
    if (supported) {
      ctx.last_path = "lt";
      return ok_status();
    }
  }
  // f32 results in scratch, then bias + activation (+ y) rounded once by our epilogue.
  const int64_t rows_per = std::max<int64_t>(1, kGemmOutBytes / 4 / n);
  const int64_t chunk = std::min(rows_per, r.m);
  SD35_ASSIGN_OR_RETURN(void* acc,
                        ctx.scratch->get(ScratchSlot::kGemmOut, size_t(chunk * n) * 4, "gemm"));
  for (int64_t r0 = 0; r0 < r.m; r0 += chunk) {
    const int64_t rows = std::min(chunk, r.m - r0);
    mm.n = rows;
    mm.b = static_cast<const char*>(r.x) + r0 * r.ldx * int64_t(dtype_size(compute));
    mm.ldb = rows == 1 ? k : r.ldx;
    mm.d = acc, mm.d_type = DType::kF32, mm.ldd = n;
    mm.accumulate = false;
    mm.bias = nullptr;
    mm.activation = Activation::kNone;
    SD35_RETURN_IF_ERROR(ctx.lt->run(mm, &supported, /*allow_fallback=*/true));
    ctx.last_path = ctx.lt->last_was_fallback() ? "fallback kernel+epilogue" : "lt+epilogue";
    void* y = static_cast<char*>(r.y) + r0 * r.ldy * int64_t(dtype_size(r.y_dtype));
    SD35_RETURN_IF_ERROR(launch_gemm_epilogue(static_cast<const float*>(acc), n, bias.data,
                                              bias.dtype, p.activation, p.accumulate, y,
                                              r.y_dtype, r.ldy, rows, n, ctx.stream));
  }
  return ok_status();
}

Status gemm_op(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
               const Tensor& y, const GemmParams& p) {
  SD35_RETURN_IF_ERROR(on_cuda({&x, &w, &y, bias}, "gemm"));
  {
    Tensor cb = bias ? as_checkable(*bias) : Tensor();
    SD35_RETURN_IF_ERROR(linear_checks::gemm(as_checkable(x), as_checkable(w),
                                             bias ? &cb : nullptr, as_checkable(y), p));
  }
  const int64_t n = w.size(0), k = w.size(1);
  if (x.numel() == 0 || n == 0) return ok_status();
  const DType compute = x.dtype();
  const int64_t csize = int64_t(dtype_size(compute));
  // The bias is used in place when cuBLASLt's epilogue can read it (dense and aligned, f32
  // or — with lt_epilogues — y's own dtype); anything else is converted to f32 once.
  GemmBias gbias;
  if (bias) {
    const bool in_place = (bias->stride(0) == 1 || n == 1) && alignment_of(bias->data()) >= 16 &&
                          (bias->dtype() == DType::kF32 ||
                           (ctx.lt_epilogues && bias->dtype() == y.dtype()));
    if (in_place) {
      gbias = {bias->data(), bias->dtype()};
    } else {
      SD35_ASSIGN_OR_RETURN(const float* b32, bias_as_f32(ctx, bias, "gemm"));
      gbias = {b32, DType::kF32};
    }
  }

  const RowGroups g = collapse_rows(x, y);
  // Rows that overlap or interleave (stride below the row length) run one row at a time.
  const bool per_row = g.rows > 1 && (g.sx < k || g.sy < n);
  int64_t outer = 1;
  for (int d = 0; d < g.outer_dims; ++d) outer *= x.size(d);

  // f32 x of a few rows against 16-bit/fp8 weights (adaLN, embedders): one pass over the
  // weights in place instead of converting all of them to f32 for cuBLASLt. Up to
  // kSmallMMaxRows rows (the text encoders' 77 / 154 tokens) the small-M kernel can do the same
  // with register tiles (opt-in, SD35_CUDA_SMALLM_GEMM=1: slower than convert + cuBLASLt on an
  // H100; dispatch: smallm_gemm_supported).
  if (compute == DType::kF32 && w.dtype() != DType::kF32 && outer == 1 && !per_row) {
    SkinnyGemmArgs sk;
    sk.x = static_cast<const float*>(x.data());
    sk.m = g.rows, sk.ldx = g.rows == 1 ? k : g.sx;
    sk.w = w.data(), sk.w_dtype = w.dtype(), sk.n = n, sk.k = k;
    sk.bias = gbias.data, sk.bias_dtype = gbias.dtype;
    sk.act = p.activation, sk.accumulate = p.accumulate;
    sk.y = y.data(), sk.y_dtype = y.dtype(), sk.ldy = g.rows == 1 ? n : g.sy;
    if (skinny_gemm_supported(sk)) {
      ctx.last_path = "skinny";
      return launch_skinny_gemm(sk, ctx.stream);
    }
    if (ctx.smallm_gemm && smallm_gemm_supported(sk)) {
      ctx.last_path = "small-m";
      return launch_smallm_gemm(sk, ctx.stream);
    }
  }

  const bool convert = w.dtype() != compute;
  const int64_t panel_rows =
      convert ? std::clamp<int64_t>(kWeightPanelBytes / (k * csize), 1, n) : n;
  void* wbuf = nullptr;
  if (convert) {
    SD35_ASSIGN_OR_RETURN(wbuf, ctx.scratch->get(ScratchSlot::kWeight,
                                                 size_t(panel_rows * k * csize), "gemm"));
  }
  for (int64_t n0 = 0; n0 < n; n0 += panel_rows) {
    const int64_t np = std::min(panel_rows, n - n0);
    const void* wp = static_cast<const char*>(w.data()) + n0 * k * int64_t(w.element_size());
    if (convert) {
      SD35_RETURN_IF_ERROR(launch_convert(wp, w.dtype(), wbuf, compute, np * k, ctx.stream));
      wp = wbuf;
    }
    for (int64_t o = 0; o < outer; ++o) {
      int64_t xoff = 0, yoff = 0, rem = o;
      for (int d = g.outer_dims - 1; d >= 0; --d) {
        const int64_t i = rem % x.size(d);
        rem /= x.size(d);
        xoff += i * x.stride(d);
        yoff += i * y.stride(d);
      }
      const int64_t groups = per_row ? g.rows : 1;
      for (int64_t r = 0; r < groups; ++r) {
        GemmRows rows;
        rows.m = per_row ? 1 : g.rows;
        rows.x = static_cast<const char*>(x.data()) + (xoff + r * g.sx) * csize;
        rows.y = static_cast<char*>(y.data()) +
                 (yoff + r * g.sy + n0) * int64_t(y.element_size());
        rows.ldx = rows.m == 1 ? k : g.sx;
        rows.ldy = rows.m == 1 ? n : g.sy;
        rows.y_dtype = y.dtype();
        SD35_RETURN_IF_ERROR(
            gemm_rows(ctx, rows, compute, wp, np, k, gbias.offset(n0), p));
      }
    }
  }
  return ok_status();
}

}  // namespace sd35::cuda
