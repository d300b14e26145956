#include "backend/cpu/gemm_checks.h"

#include <cmath>
#include <string>

namespace sd35::linear_checks {

Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const GemmParams& p) {
  constexpr std::string_view op = "gemm";
  for (const Tensor* t : {&x, &w, &y}) SD35_RETURN_IF_ERROR(check::on_device(*t, Device::kCPU, op));
  SD35_RETURN_IF_ERROR(check::dtype_in(x, {DType::kF32, DType::kBF16, DType::kF16}, op, "x"));
  SD35_RETURN_IF_ERROR(check::dtype_in(y, {DType::kF32, DType::kBF16, DType::kF16}, op, "y"));
  SD35_RETURN_IF_ERROR(check::dtype_in(
      w, {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3FN, DType::kF8E5M2}, op, "w"));
  if (w.ndim() != 2 || !w.is_contiguous())
    return invalid_argument("gemm: w must be a contiguous [N, K] matrix, got " + w.describe());
  if (x.ndim() < 1 || y.ndim() != x.ndim())
    return invalid_argument("gemm: x " + x.describe() + " and y " + y.describe() +
                            " must have the same number of dims (>= 1)");
  SD35_RETURN_IF_ERROR(check::dense_rows(x, op, "x"));
  SD35_RETURN_IF_ERROR(check::dense_rows(y, op, "y"));
  const int64_t K = w.size(1), N = w.size(0);
  if (x.size(-1) != K)
    return invalid_argument("gemm: x " + x.describe() + " has K = " + std::to_string(x.size(-1)) +
                            ", w " + w.describe() + " expects " + std::to_string(K));
  if (y.size(-1) != N)
    return invalid_argument("gemm: y " + y.describe() + " must have N = " + std::to_string(N));
  for (int i = 0; i + 1 < x.ndim(); ++i)
    if (x.shape()[i] != y.shape()[i])
      return invalid_argument("gemm: leading dims of x " + x.describe() + " and y " +
                              y.describe() + " differ");
  if (K == 0) return invalid_argument("gemm: K must be at least 1");
  if (bias) {
    SD35_RETURN_IF_ERROR(check::on_device(*bias, Device::kCPU, op));
    SD35_RETURN_IF_ERROR(
        check::dtype_in(*bias, {DType::kF32, DType::kF16, DType::kBF16}, op, "bias"));
    if (bias->ndim() != 1 || bias->size(0) != N)
      return invalid_argument("gemm: bias " + bias->describe() + " must be [" +
                              std::to_string(N) + "]");
  }
  if (int(p.activation) < 0 || int(p.activation) > int(Activation::kSilu))
    return invalid_argument("gemm: unknown activation");
  return ok_status();
}

Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const Conv2dParams& p) {
  constexpr std::string_view op = "conv2d";
  for (const Tensor* t : {&x, &w, &y}) SD35_RETURN_IF_ERROR(check::on_device(*t, Device::kCPU, op));
  SD35_RETURN_IF_ERROR(check::dtype_in(x, {DType::kF32, DType::kBF16}, op, "x"));
  SD35_RETURN_IF_ERROR(check::dtype_in(y, {DType::kF32, DType::kBF16}, op, "y"));
  SD35_RETURN_IF_ERROR(check::dtype_in(
      w, {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3FN, DType::kF8E5M2}, op, "w"));
  if (x.ndim() != 4 || w.ndim() != 4 || y.ndim() != 4)
    return invalid_argument("conv2d: x, w, y must be 4-D, got " + x.describe() + ", " +
                            w.describe() + ", " + y.describe());
  if (!w.is_contiguous()) return invalid_argument("conv2d: w must be contiguous");
  if (w.size(1) != x.size(1))
    return invalid_argument("conv2d: w " + w.describe() + " expects " +
                            std::to_string(w.size(1)) + " input channels, x " + x.describe());
  if (p.stride < 1) return invalid_argument("conv2d: stride must be >= 1");
  const int64_t kh = w.size(2), kw = w.size(3);
  if (kh < 1 || kw < 1) return invalid_argument("conv2d: empty kernel");
  if (p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0)
    return invalid_argument("conv2d: negative padding");
  // Banding relies on every output row touching at least one input row.
  if (p.pad_top >= kh || p.pad_bottom >= kh || p.pad_left >= kw || p.pad_right >= kw)
    return unsupported("conv2d: padding must be smaller than the kernel");
  const int64_t hp = x.size(2) + p.pad_top + p.pad_bottom, wp = x.size(3) + p.pad_left + p.pad_right;
  if (hp < kh || wp < kw) return invalid_argument("conv2d: input smaller than the kernel");
  const int64_t oh = (hp - kh) / p.stride + 1, ow = (wp - kw) / p.stride + 1;
  if (y.size(0) != x.size(0) || y.size(1) != w.size(0) || y.size(2) != oh || y.size(3) != ow)
    return invalid_argument("conv2d: y " + y.describe() + " must be [" +
                            std::to_string(x.size(0)) + ", " + std::to_string(w.size(0)) + ", " +
                            std::to_string(oh) + ", " + std::to_string(ow) + "]");
  if (bias) {
    SD35_RETURN_IF_ERROR(check::on_device(*bias, Device::kCPU, op));
    SD35_RETURN_IF_ERROR(
        check::dtype_in(*bias, {DType::kF32, DType::kF16, DType::kBF16}, op, "bias"));
    if (bias->ndim() != 1 || bias->size(0) != w.size(0))
      return invalid_argument("conv2d: bias " + bias->describe() + " must be [" +
                              std::to_string(w.size(0)) + "]");
  }
  return ok_status();
}

Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                 int heads, float scale) {
  constexpr std::string_view op = "attention";
  for (const Tensor* t : {&q, &k, &v, &out}) {
    SD35_RETURN_IF_ERROR(check::on_device(*t, Device::kCPU, op));
    SD35_RETURN_IF_ERROR(check::dtype_in(*t, {DType::kF32, DType::kBF16, DType::kF16}, op,
                                         t == &out ? "out" : "q/k/v"));
    if (t->ndim() != 3)
      return invalid_argument("attention: q, k, v, out must be [B, L, H*D], got " + t->describe());
    SD35_RETURN_IF_ERROR(check::dense_rows(*t, op, t == &out ? "out" : "q/k/v"));
  }
  SD35_RETURN_IF_ERROR(check::same_shape(k, v, op));
  SD35_RETURN_IF_ERROR(check::same_shape(q, out, op));
  if (k.size(0) != q.size(0) || k.size(2) != q.size(2))
    return invalid_argument("attention: q " + q.describe() + " and k " + k.describe() +
                            " disagree on batch or features");
  if (heads < 1 || q.size(2) % heads != 0 || q.size(2) == 0)
    return invalid_argument("attention: " + std::to_string(q.size(2)) +
                            " features do not split into " + std::to_string(heads) + " heads");
  if (k.size(1) == 0 && q.size(1) > 0)
    return invalid_argument("attention: no keys (softmax over an empty set)");
  if (!std::isfinite(scale)) return invalid_argument("attention: scale must be finite");
  if (q.size(1) > (int64_t(1) << 31) || k.size(1) > (int64_t(1) << 31) || q.size(2) > (1 << 20))
    return unsupported("attention: sequence or feature count too large");
  return ok_status();
}

}  // namespace sd35::linear_checks
