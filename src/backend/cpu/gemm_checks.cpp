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
      return invalid_argument("gemm: leading dims of x " + x.describe() + " and y " + y.describe() +
                              " differ");
  if (K == 0) return invalid_argument("gemm: K must be at least 1");
  if (bias) {
    SD35_RETURN_IF_ERROR(check::on_device(*bias, Device::kCPU, op));
    SD35_RETURN_IF_ERROR(
        check::dtype_in(*bias, {DType::kF32, DType::kF16, DType::kBF16}, op, "bias"));
    if (bias->ndim() != 1 || bias->size(0) != N)
      return invalid_argument("gemm: bias " + bias->describe() + " must be [" + std::to_string(N) +
                              "]");
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
    return invalid_argument("conv2d: w " + w.describe() + " expects " + std::to_string(w.size(1)) +
                            " input channels, x " + x.describe());
  if (p.stride < 1) return invalid_argument("conv2d: stride must be >= 1");
  const int64_t kh = w.size(2), kw = w.size(3);
  if (kh < 1 || kw < 1) return invalid_argument("conv2d: empty kernel");
  if (p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0)
    return invalid_argument("conv2d: negative padding");
  // Banding relies on every output row touching at least one input row.
  if (p.pad_top >= kh || p.pad_bottom >= kh || p.pad_left >= kw || p.pad_right >= kw)
    return unsupported("conv2d: padding must be smaller than the kernel");
  const int64_t hp = x.size(2) + p.pad_top + p.pad_bottom,
                wp = x.size(3) + p.pad_left + p.pad_right;
  if (hp < kh || wp < kw) return invalid_argument("conv2d: input smaller than the kernel");
  const int64_t oh = (hp - kh) / p.stride + 1, ow = (wp - kw) / p.stride + 1;
  if (y.size(0) != x.size(0) || y.size(1) != w.size(0) || y.size(2) != oh || y.size(3) != ow)
    return invalid_argument("conv2d: y " + y.describe() + " must be [" + std::to_string(x.size(0)) +
                            ", " + std::to_string(w.size(0)) + ", " + std::to_string(oh) + ", " +
                            std::to_string(ow) + "]");
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

Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, int heads,
                 float scale) {
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

Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        int heads, float scale, bool causal, const Tensor* bias) {
  SD35_RETURN_IF_ERROR(attention(q, k, v, out, heads, scale));
  (void)causal;  // any Lq, Lk: key j is visible to query i when j <= i
  if (!bias) return ok_status();
  constexpr std::string_view op = "attention_masked";
  SD35_RETURN_IF_ERROR(check::on_device(*bias, Device::kCPU, op));
  SD35_RETURN_IF_ERROR(check::dtype_in(*bias, {DType::kF32}, op, "bias"));
  Tensor b = *bias;
  if (b.ndim() == 4 && b.size(0) == 1) b = b.select(0, 0);
  if (b.ndim() != 3 || b.size(0) != heads || b.size(1) != q.size(1) || b.size(2) != k.size(1)) {
    return invalid_argument("attention_masked: bias must be [H, Lq, Lk] = [" +
                            std::to_string(heads) + ", " + std::to_string(q.size(1)) + ", " +
                            std::to_string(k.size(1)) + "], got " + bias->describe());
  }
  return check::dense_rows(b, op, "bias");
}

Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out) {
  constexpr std::string_view op = "gather_rows";
  for (const Tensor* t : {&table, &ids, &out})
    SD35_RETURN_IF_ERROR(check::on_device(*t, Device::kCPU, op));
  SD35_RETURN_IF_ERROR(check::dtype_in(
      table, {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3FN, DType::kF8E5M2}, op,
      "table"));
  SD35_RETURN_IF_ERROR(check::dtype_in(ids, {DType::kI32}, op, "ids"));
  SD35_RETURN_IF_ERROR(check::dtype_in(out, {DType::kF32, DType::kBF16, DType::kF16}, op, "out"));
  if (table.ndim() != 2 || ids.ndim() != 1 || out.ndim() != 2)
    return invalid_argument("gather_rows: expected table [V, D], ids [N], out [N, D]; got " +
                            table.describe() + ", " + ids.describe() + ", " + out.describe());
  if (!ids.is_contiguous()) return invalid_argument("gather_rows: ids must be contiguous");
  if (out.size(0) != ids.size(0) || out.size(1) != table.size(1))
    return invalid_argument("gather_rows: out " + out.describe() + " does not match ids " +
                            ids.describe() + " and table " + table.describe());
  SD35_RETURN_IF_ERROR(check::dense_rows(table, op, "table"));
  SD35_RETURN_IF_ERROR(check::dense_rows(out, op, "out"));
  const int32_t* id = ids.data_as<const int32_t>();
  for (int64_t i = 0; i < ids.size(0); ++i) {
    if (id[i] < 0 || id[i] >= table.size(0))
      return invalid_argument("gather_rows: id " + std::to_string(id[i]) + " at position " +
                              std::to_string(i) + " is outside the table's " +
                              std::to_string(table.size(0)) + " rows");
  }
  return ok_status();
}

}  // namespace sd35::linear_checks
