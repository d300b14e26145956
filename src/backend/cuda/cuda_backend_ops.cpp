// The CUDA backend's non-GEMM ops: validation (the shared checks, so messages match the CPU
// backends), then a kernel launch on the backend's stream. Views are described to the
// kernels by StridedLayout (any strides, broadcasting as stride 0).
#include <climits>
#include <string>
#include <vector>

#include "backend/cpu/gemm_checks.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_norm_modulate.h"
#include "backend/ops_validate.h"

namespace sd35::cuda {
namespace {

// Strides of b expanded to a's rank for broadcasting (stride 0 on repeated dims).
Shape broadcast_strides(const Tensor& a, const Tensor& b) {
  Shape s = a.shape();
  const int lead = a.ndim() - b.ndim();
  for (int d = 0; d < a.ndim(); ++d) {
    const int bd = d - lead;
    s[d] = (bd < 0 || b.size(bd) == 1) ? 0 : b.stride(bd);
  }
  return s;
}

// [B, D] parameter rows broadcast over L of a [B, L, D] tensor.
Shape row_param_strides(const Tensor& p) { return Shape{p.stride(0), 0, p.stride(1)}; }

Status elementwise(CudaContext& ctx, EwArgs a, const Shape& shape,
                   std::initializer_list<const Shape*> strides) {
  const Shape* s[4] = {};
  int n = 0;
  for (const Shape* p : strides) s[n++] = p;
  a.layout = make_layout(shape, s, n);
  return launch_elementwise(a, ctx.stream);
}

Status host_device_copy(CudaContext& ctx, const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(check::same_shape(x, y, "copy"));
  if (x.dtype() != y.dtype() || !x.is_contiguous() || !y.is_contiguous()) {
    return unsupported("copy: a host<->device copy needs both tensors contiguous with the same "
                       "dtype, got " + x.describe() + " on " + std::string(device_name(x.device())) +
                       " -> " + y.describe() + " on " + std::string(device_name(y.device())));
  }
  if (x.numel() == 0) return ok_status();
  if (!x.data() || !y.data()) return invalid_argument("copy: tensor has no data");
  const size_t bytes = size_t(x.numel()) * x.element_size();
  const bool upload = y.device() == Device::kCUDA;
  SD35_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(y.data(), x.data(), bytes,
                      upload ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, ctx.stream),
      "copy", upload ? "host-to-device copy" : "device-to-host copy");
  // Synchronous for the host: the caller may free or read its buffer right after.
  SD35_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx.stream), "copy", "synchronising the stream");
  return ok_status();
}

}  // namespace

Status copy_strided(CudaContext& ctx, const void* x, DType xt, const Shape& xs, void* y, DType yt,
                    const Shape& ys, const Shape& shape) {
  const Shape* s[2] = {&ys, &xs};
  return copy_with_layout(ctx, x, xt, y, yt, make_layout(shape, s, 2));
}

Status copy_with_layout(CudaContext& ctx, const void* x, DType xt, void* y, DType yt,
                        const StridedLayout& l) {
  if (xt == yt) return launch_copy_raw(y, x, int(dtype_size(xt)), l, ctx.stream);
  EwArgs a;
  a.name = "copy";
  a.op = EwOp::kConvert;
  a.out = y, a.out_dtype = yt;
  a.in[0] = x, a.in_dtype[0] = xt;
  a.layout = l;
  return launch_elementwise(a, ctx.stream);
}

Status attention_op(CudaContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& out, int heads, float scale, bool masked, bool causal,
                    const Tensor* bias) {
  const char* op = masked ? "attention_masked" : "attention";
  SD35_RETURN_IF_ERROR(on_cuda({&q, &k, &v, &out, bias}, op));
  if (masked) {
    Tensor cb = bias ? as_checkable(*bias) : Tensor();
    SD35_RETURN_IF_ERROR(linear_checks::attention_masked(as_checkable(q), as_checkable(k),
                                                         as_checkable(v), as_checkable(out),
                                                         heads, scale, causal,
                                                         bias ? &cb : nullptr));
  } else {
    SD35_RETURN_IF_ERROR(linear_checks::attention(as_checkable(q), as_checkable(k),
                                                  as_checkable(v), as_checkable(out), heads,
                                                  scale));
  }
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype() || out.dtype() != q.dtype()) {
    return unsupported(std::string(op) + ": the CUDA kernels need q, k, v and out of one dtype, got " +
                       q.describe() + ", " + k.describe() + ", " + v.describe() + ", " +
                       out.describe());
  }
  if (q.size(0) > INT_MAX || q.size(1) > INT_MAX || k.size(1) > INT_MAX)
    return unsupported(std::string(op) + ": batch or sequence too large");
  if (q.numel() == 0) return ok_status();
  AttentionArgs a;
  a.q = q.data(), a.k = k.data(), a.v = v.data(), a.out = out.data();
  a.dtype = q.dtype();
  a.batch = int(q.size(0)), a.heads = heads, a.head_dim = int(q.size(2) / heads);
  a.lq = int(q.size(1)), a.lk = int(k.size(1));
  a.q_sb = q.stride(0), a.q_sl = q.stride(1), a.k_sb = k.stride(0), a.k_sl = k.stride(1);
  a.v_sb = v.stride(0), a.v_sl = v.stride(1), a.o_sb = out.stride(0), a.o_sl = out.stride(1);
  a.scale = scale;
  a.causal = masked && causal;
  if (masked && bias) {
    Tensor b = bias->ndim() == 4 ? bias->select(0, 0) : *bias;
    if (b.is_contiguous()) {
      a.bias = static_cast<const float*>(b.data());
    } else {
      // The kernels take a contiguous [H, Lq, Lk] bias; pack a strided one into scratch.
      SD35_ASSIGN_OR_RETURN(void* p, ctx.scratch->get(ScratchSlot::kMisc,
                                                      size_t(b.numel()) * 4, op));
      Shape cs = contiguous_strides(b.shape());
      SD35_RETURN_IF_ERROR(copy_strided(ctx, b.data(), DType::kF32, b.strides(), p, DType::kF32,
                                        cs, b.shape()));
      a.bias = static_cast<const float*>(p);
    }
  }
  SD35_ASSIGN_OR_RETURN(const bool by_gemm, attention_by_gemm(ctx, a));
  if (by_gemm) {
    ctx.last_path = "blocked gemms";
    return ok_status();
  }
  return launch_attention(a, ctx.stream, &ctx.last_path);
}

Status gather_rows_op(CudaContext& ctx, const Tensor& table, const Tensor& ids, const Tensor& out) {
  SD35_RETURN_IF_ERROR(on_cuda({&table, &ids, &out}, "gather_rows"));
  // The shared check reads the ids (range check) only after every shape/dtype check passed;
  // give it a host copy when they can be read as int32 [N].
  Tensor ids_checked = as_checkable(ids);
  std::vector<int32_t> host_ids;
  if (ids.dtype() == DType::kI32 && ids.ndim() == 1 && ids.is_contiguous() && ids.numel() > 0) {
    host_ids.resize(size_t(ids.numel()));
    SD35_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_ids.data(), ids.data(), host_ids.size() * 4,
                                              cudaMemcpyDeviceToHost, ctx.stream),
                              "gather_rows", "reading the ids");
    SD35_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx.stream), "gather_rows",
                              "reading the ids");
    ids_checked = Tensor::view_of(host_ids.data(), DType::kI32, ids.shape());
  }
  SD35_RETURN_IF_ERROR(linear_checks::gather_rows(as_checkable(table), ids_checked,
                                                  as_checkable(out)));
  return launch_gather_rows(table.data(), table.dtype(), table.stride(0),
                            static_cast<const int32_t*>(ids.data()), out.data(), out.dtype(),
                            out.stride(0), ids.size(0), table.size(1), ctx.stream);
}

Status row_op(CudaContext& ctx, RowKind kind, const Tensor& x, const Tensor* weight,
              const Tensor* bias, float eps, const Tensor& y) {
  RowOp op = RowOp::kLayerNorm;
  switch (kind) {
    case RowKind::kLayerNorm:
      SD35_RETURN_IF_ERROR(validate::layer_norm(Device::kCUDA, x, weight, bias, eps, y));
      op = RowOp::kLayerNorm;
      break;
    case RowKind::kRmsNorm:
      SD35_RETURN_IF_ERROR(validate::rms_norm(Device::kCUDA, x, weight, eps, y));
      op = RowOp::kRmsNorm;
      break;
    case RowKind::kSoftmax:
      SD35_RETURN_IF_ERROR(validate::softmax(Device::kCUDA, x, y));
      op = RowOp::kSoftmax;
      break;
  }
  if (x.numel() == 0) return ok_status();
  return launch_row_op(row_args(op, x, weight, bias, eps, y), ctx.stream);
}

RowArgs row_args(RowOp op, const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                 const Tensor& y) {
  RowArgs a;
  a.op = op;
  a.x = x.data(), a.y = y.data(), a.x_dtype = x.dtype(), a.y_dtype = y.dtype();
  if (weight) a.weight = weight->data(), a.weight_dtype = weight->dtype();
  if (bias) a.bias = bias->data(), a.bias_dtype = bias->dtype();
  a.rows = x.rows(), a.cols = x.size(-1), a.eps = eps;
  Shape lead, xs, ys;
  for (int d = 0; d + 1 < x.ndim(); ++d) {
    lead.push_back(x.size(d));
    xs.push_back(x.stride(d));
    ys.push_back(y.stride(d));
  }
  const Shape* s[2] = {&ys, &xs};
  a.row_layout = make_layout(lead, s, 2);
  return a;
}

Status group_norm_op(CudaContext& ctx, const Tensor& x, int groups, const Tensor* weight,
                     const Tensor* bias, float eps, const Tensor& y, bool silu) {
  SD35_RETURN_IF_ERROR(validate::group_norm(Device::kCUDA, x, groups, weight, bias, eps, y));
  if (x.numel() == 0) return ok_status();
  const GroupNormArgs a = group_norm_args(x, groups, weight, bias, eps, y, silu);
  SD35_ASSIGN_OR_RETURN(void* p, ctx.scratch->get(ScratchSlot::kStats,
                                                  size_t(group_norm_scratch_floats(a)) * 4,
                                                  "group_norm"));
  return launch_group_norm(a, static_cast<float*>(p), ctx.stream);
}

GroupNormArgs group_norm_args(const Tensor& x, int groups, const Tensor* weight,
                              const Tensor* bias, float eps, const Tensor& y, bool silu) {
  GroupNormArgs a;
  a.x = x.data(), a.y = y.data(), a.x_dtype = x.dtype(), a.y_dtype = y.dtype();
  if (weight) a.weight = weight->data(), a.weight_dtype = weight->dtype();
  if (bias) a.bias = bias->data(), a.bias_dtype = bias->dtype();
  a.batch = x.size(0), a.channels = x.size(1), a.spatial = x.numel() / (a.batch * a.channels);
  a.groups = groups, a.eps = eps, a.silu = silu;
  return a;
}

// [B, L, D] with dense rows at one stride (row r = b·L + l at r·stride(1)): what the row
// broadcast kernel addresses. Parameters [B, D] need dense rows.
bool uniform_rows(const Tensor& t) {
  return t.ndim() == 3 && t.stride(2) == 1 && t.stride(0) == t.size(1) * t.stride(1);
}
bool dense_param(const Tensor& p) { return p.ndim() == 2 && p.stride(1) == 1; }

Status modulate_op(CudaContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale,
                   const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::modulate(Device::kCUDA, x, shift, scale, y));
  if (uniform_rows(x) && uniform_rows(y) && dense_param(shift) && dense_param(scale)) {
    RowBroadcastArgs r;
    r.op = EwOp::kModulate;
    r.out = y.data(), r.out_dtype = y.dtype(), r.out_rs = y.stride(1);
    r.x = x.data(), r.x_dtype = x.dtype(), r.x_rs = x.stride(1);
    r.p1 = shift.data(), r.p1_dtype = shift.dtype(), r.p1_bs = shift.stride(0);
    r.p2 = scale.data(), r.p2_dtype = scale.dtype(), r.p2_bs = scale.stride(0);
    r.batch = x.size(0), r.rows_per_batch = x.size(1), r.cols = x.size(2);
    return launch_row_broadcast(r, ctx.stream);
  }
  EwArgs a;
  a.name = "modulate";
  a.op = EwOp::kModulate;
  a.out = y.data(), a.out_dtype = y.dtype();
  a.in[0] = x.data(), a.in_dtype[0] = x.dtype();
  a.in[1] = shift.data(), a.in_dtype[1] = shift.dtype();
  a.in[2] = scale.data(), a.in_dtype[2] = scale.dtype();
  const Shape ss = row_param_strides(shift), sc = row_param_strides(scale);
  return elementwise(ctx, a, x.shape(), {&y.strides(), &x.strides(), &ss, &sc});
}

Status layer_norm_modulate_op(CudaContext& ctx, const Tensor& x, const Tensor& shift,
                              const Tensor& scale, float eps, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::layer_norm_modulate(Device::kCUDA, x, shift, scale, eps, y));
  if (x.numel() == 0) return ok_status();
  return launch_layer_norm_modulate(layer_norm_modulate_args(x, shift, scale, eps, y),
                                    ctx.stream);
}

LayerNormModulateArgs layer_norm_modulate_args(const Tensor& x, const Tensor& shift,
                                               const Tensor& scale, float eps, const Tensor& y) {
  // Validated: [B, L, D] with dense rows, [B, D] parameters with dense rows; the kernel
  // addresses row (b, l) through the batch and row strides, so any such layout works.
  LayerNormModulateArgs a;
  a.x = static_cast<const float*>(x.data()), a.x_bs = x.stride(0), a.x_rs = x.stride(1);
  a.y = y.data(), a.y_dtype = y.dtype(), a.y_bs = y.stride(0), a.y_rs = y.stride(1);
  a.shift = static_cast<const float*>(shift.data()), a.shift_bs = shift.stride(0);
  a.scale = static_cast<const float*>(scale.data()), a.scale_bs = scale.stride(0);
  a.batch = x.size(0), a.len = x.size(1), a.cols = x.size(2), a.eps = eps;
  return a;
}

Status binary_op(CudaContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y, bool is_mul) {
  SD35_RETURN_IF_ERROR(validate::add(Device::kCUDA, a, b, y, is_mul ? "mul" : "add"));
  EwArgs e;
  e.name = is_mul ? "mul" : "add";
  e.op = is_mul ? EwOp::kMul : EwOp::kAdd;
  e.out = y.data(), e.out_dtype = y.dtype();
  e.in[0] = a.data(), e.in_dtype[0] = a.dtype();
  e.in[1] = b.data(), e.in_dtype[1] = b.dtype();
  const Shape bs = broadcast_strides(a, b);
  return elementwise(ctx, e, a.shape(), {&y.strides(), &a.strides(), &bs});
}

Status gated_add_op(CudaContext& ctx, const Tensor& x, const Tensor& gate, const Tensor& h,
                    const Tensor& out) {
  SD35_RETURN_IF_ERROR(validate::gated_add(Device::kCUDA, x, gate, h, out));
  if (uniform_rows(x) && uniform_rows(out) && uniform_rows(h) && dense_param(gate)) {
    RowBroadcastArgs r;
    r.op = EwOp::kGatedAdd;
    r.out = out.data(), r.out_dtype = out.dtype(), r.out_rs = out.stride(1);
    r.x = x.data(), r.x_dtype = x.dtype(), r.x_rs = x.stride(1);
    r.p1 = gate.data(), r.p1_dtype = gate.dtype(), r.p1_bs = gate.stride(0);
    r.h = h.data(), r.h_dtype = h.dtype(), r.h_rs = h.stride(1);
    r.batch = x.size(0), r.rows_per_batch = x.size(1), r.cols = x.size(2);
    return launch_row_broadcast(r, ctx.stream);
  }
  EwArgs a;
  a.name = "gated_add";
  a.op = EwOp::kGatedAdd;
  a.out = out.data(), a.out_dtype = out.dtype();
  a.in[0] = x.data(), a.in_dtype[0] = x.dtype();
  a.in[1] = gate.data(), a.in_dtype[1] = gate.dtype();
  a.in[2] = h.data(), a.in_dtype[2] = h.dtype();
  const Shape gs = row_param_strides(gate);
  return elementwise(ctx, a, x.shape(), {&out.strides(), &x.strides(), &gs, &h.strides()});
}

Status affine_op(CudaContext& ctx, const Tensor& x, const AffineParams& p, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::affine(Device::kCUDA, x, p, y));
  EwArgs a;
  a.name = "affine";
  a.op = EwOp::kAffine;
  a.scale = p.scale, a.shift = p.shift, a.lo = p.lo, a.hi = p.hi;
  a.out = y.data(), a.out_dtype = y.dtype();
  a.in[0] = x.data(), a.in_dtype[0] = x.dtype();
  return elementwise(ctx, a, x.shape(), {&y.strides(), &x.strides()});
}

Status activation_op(CudaContext& ctx, const Tensor& x, Activation act, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::activation(Device::kCUDA, x, act, y));
  EwArgs a;
  a.name = "activation";
  a.op = EwOp::kActivate;
  a.act = act;
  a.out = y.data(), a.out_dtype = y.dtype();
  a.in[0] = x.data(), a.in_dtype[0] = x.dtype();
  return elementwise(ctx, a, x.shape(), {&y.strides(), &x.strides()});
}

Status upsample_op(CudaContext& ctx, const Tensor& x, const Tensor& y) {
  SD35_RETURN_IF_ERROR(validate::upsample_nearest2x(Device::kCUDA, x, y));
  return copy_with_layout(ctx, x.data(), x.dtype(), y.data(), y.dtype(), upsample_layout(x, y));
}

StridedLayout upsample_layout(const Tensor& x, const Tensor& y) {
  // y [N, C, 2H, 2W] as [N, C, H, 2, W, 2]; x repeats along the two size-2 dims (stride 0).
  const Shape shape{x.size(0), x.size(1), x.size(2), 2, x.size(3), 2};
  const Shape ys{y.stride(0), y.stride(1), 2 * y.stride(2), y.stride(2), 2 * y.stride(3),
                 y.stride(3)};
  const Shape xs{x.stride(0), x.stride(1), x.stride(2), 0, x.stride(3), 0};
  const Shape* s[2] = {&ys, &xs};
  return make_layout(shape, s, 2);
}

Status concat_op(CudaContext& ctx, std::span<const Tensor> inputs, int axis, const Tensor& y) {
  int a = 0;
  SD35_RETURN_IF_ERROR(validate::concat(Device::kCUDA, inputs, axis, y, &a));
  int64_t offset = 0;
  for (const Tensor& t : inputs) {
    if (t.size(a) > 0) {
      const Tensor dst = y.slice(a, offset, offset + t.size(a));
      SD35_RETURN_IF_ERROR(copy_strided(ctx, t.data(), t.dtype(), t.strides(), dst.data(),
                                        dst.dtype(), dst.strides(), t.shape()));
    }
    offset += t.size(a);
  }
  return ok_status();
}

Status copy_op(CudaContext& ctx, const Tensor& x, const Tensor& y) {
  if ((x.device() == Device::kCPU) != (y.device() == Device::kCPU))
    return host_device_copy(ctx, x, y);
  SD35_RETURN_IF_ERROR(validate::copy(Device::kCUDA, x, y));
  if (x.numel() == 0) return ok_status();
  return copy_strided(ctx, x.data(), x.dtype(), x.strides(), y.data(), y.dtype(), y.strides(),
                      x.shape());
}

}  // namespace sd35::cuda
