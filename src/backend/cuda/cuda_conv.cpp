// conv2d on CUDA: cuDNN where it applies (cudnn_conv.cpp); otherwise (and without cuDNN) per
// sample and per band of output rows, im2col into scratch (bounded to ~256 MiB) and one
// cuBLASLt GEMM into an f32 scratch (~128 MiB), then an epilogue adds the bias and stores y
// rounded once. A 1×1, stride-1, unpadded conv reads x directly as the column matrix.
// Column-major view of one band: D[P, O] = Col[P, CK] · Wt[CK, O]
// where Col is the row-major [CK, P] column buffer (lda = P) and Wt is the row-major weight
// [O, CK] read as column-major CK×O (ldb = CK): neither needs a transpose.
#include <algorithm>
#include <string>

#include "backend/cpu/gemm_checks.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_kernels.h"

namespace sd35::cuda {
namespace {

constexpr int64_t kIm2colBytes = int64_t(256) << 20;
constexpr int64_t kConvOutBytes = int64_t(128) << 20;

}  // namespace

bool conv_reads_x_as_columns(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  return w.size(2) == 1 && w.size(3) == 1 && p.stride == 1 && p.pad_top == 0 &&
         p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0 && x.stride(3) == 1 &&
         x.stride(2) == x.size(3) && x.stride(1) >= x.size(2) * x.size(3);
}

Status conv2d_op(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                 const Tensor& y, const Conv2dParams& p) {
  SD35_RETURN_IF_ERROR(on_cuda({&x, &w, &y, bias}, "conv2d"));
  {
    Tensor cb = bias ? as_checkable(*bias) : Tensor();
    SD35_RETURN_IF_ERROR(linear_checks::conv2d(as_checkable(x), as_checkable(w),
                                               bias ? &cb : nullptr, as_checkable(y), p));
  }
  const int64_t batch = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t oc = w.size(0), kh = w.size(2), kw = w.size(3);
  const int64_t oh = y.size(2), ow = y.size(3);
  if (y.numel() == 0) return ok_status();
  // cuDNN first, where it computes exactly this (cudnn_conv.h); the rest runs below.
  bool done = false;
  SD35_RETURN_IF_ERROR(cudnn_conv2d(ctx, x, w, bias, y, p, &done));
  if (done) return ok_status();  // ctx.last_path says which cuDNN path
  ctx.last_path = "im2col";
  const DType compute = x.dtype();
  const int64_t csize = int64_t(dtype_size(compute));
  const int64_t ck = c * kh * kw;

  const void* wp = w.data();
  if (w.dtype() != compute) {
    SD35_ASSIGN_OR_RETURN(void* wbuf, ctx.scratch->get(ScratchSlot::kWeight,
                                                       size_t(w.numel() * csize), "conv2d"));
    SD35_RETURN_IF_ERROR(launch_convert(w.data(), w.dtype(), wbuf, compute, w.numel(), ctx.stream));
    wp = wbuf;
  }
  SD35_ASSIGN_OR_RETURN(const float* bias32, bias_as_f32(ctx, bias, "conv2d"));

  const bool direct = conv_reads_x_as_columns(x, w, p);
  int64_t band = oh;
  if (!direct) band = std::min(band, std::max<int64_t>(1, kIm2colBytes / (ck * ow * csize)));
  band = std::min(band, std::max<int64_t>(1, kConvOutBytes / (oc * ow * 4)));

  void* col = nullptr;
  if (!direct) {
    SD35_ASSIGN_OR_RETURN(col, ctx.scratch->get(ScratchSlot::kIm2col,
                                                size_t(ck * band * ow * csize), "conv2d"));
  }
  SD35_ASSIGN_OR_RETURN(void* acc, ctx.scratch->get(ScratchSlot::kGemmOut,
                                                    size_t(oc * band * ow * 4), "conv2d"));
  for (int64_t n = 0; n < batch; ++n) {
    const char* xs = static_cast<const char*>(x.data()) + n * x.stride(0) * csize;
    char* ys = static_cast<char*>(y.data()) + n * y.stride(0) * int64_t(y.element_size());
    for (int64_t oh0 = 0; oh0 < oh; oh0 += band) {
      const int64_t rows = std::min(band, oh - oh0), pc = rows * ow;
      LtMatmul mm;
      mm.m = pc, mm.n = oc, mm.k = ck;
      if (direct) {
        mm.a = xs + oh0 * wd * csize;
        mm.lda = ck == 1 ? pc : x.stride(1);
      } else {
        Im2colArgs a;
        a.x = xs, a.x_dtype = compute;
        a.xs_c = x.stride(1), a.xs_h = x.stride(2), a.xs_w = x.stride(3);
        a.channels = c, a.height = h, a.width = wd;
        a.kh = kh, a.kw = kw, a.stride = p.stride, a.pad_top = p.pad_top, a.pad_left = p.pad_left;
        a.oh0 = oh0, a.band_rows = rows, a.ow = ow;
        a.col = col, a.col_dtype = compute;
        SD35_RETURN_IF_ERROR(launch_im2col(a, ctx.stream));
        mm.a = col;
        mm.lda = pc;
      }
      mm.a_type = compute;
      mm.b = wp, mm.b_type = compute, mm.ldb = ck;
      mm.d = acc, mm.d_type = DType::kF32, mm.ldd = pc;
      bool supported = false;
      SD35_RETURN_IF_ERROR(ctx.lt->run(mm, &supported, /*allow_fallback=*/true));
      SD35_RETURN_IF_ERROR(launch_conv_epilogue(static_cast<const float*>(acc), bias32, ys,
                                                y.dtype(), y.stride(1), y.stride(2), y.stride(3),
                                                oc, oh0, rows, ow, ctx.stream));
    }
  }
  return ok_status();
}

}  // namespace sd35::cuda
