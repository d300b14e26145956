// Free functions behind CpuBackend, one family per file (gemm.cpp, attention.cpp, conv.cpp,
// norm.cpp, elementwise.cpp, layout.cpp). Arguments are already validated by CpuBackend's
// shared checks only where noted; each function checks what is specific to it.
#pragma once

#include <span>

#include "backend/backend.h"
#include "core/thread_pool.h"

namespace sd35::cpu {

// Context shared by the CPU kernels: the pool, and lazily created oneDNN state.
struct CpuContext {
  explicit CpuContext(int threads) : pool(threads) {}
  ThreadPool pool;
  std::shared_ptr<void> dnnl_state;  // owned by gemm.cpp/conv.cpp (engine, stream, caches)
};

Status gemm(CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
            const Tensor& y, const GemmParams& params);
Status attention(CpuContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& out, int heads, float scale);
Status attention_masked(CpuContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, int heads, float scale, bool causal, const Tensor* bias);
Status gather_rows(CpuContext& ctx, const Tensor& table, const Tensor& ids, const Tensor& out);
Status conv2d(CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
              const Tensor& y, const Conv2dParams& params);

Status layer_norm(CpuContext& ctx, const Tensor& x, const Tensor* weight, const Tensor* bias,
                  float eps, const Tensor& y);
Status rms_norm(CpuContext& ctx, const Tensor& x, const Tensor* weight, float eps,
                const Tensor& y);
// silu: Backend::group_norm_silu — SiLU applied to each chunk of y right after it is stored
// (rounded to y's dtype), as the activation op would, while the chunk is still in cache.
Status group_norm(CpuContext& ctx, const Tensor& x, int groups, const Tensor* weight,
                  const Tensor* bias, float eps, const Tensor& y, bool silu = false);
Status modulate(CpuContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y);
Status layer_norm_modulate(CpuContext& ctx, const Tensor& x, const Tensor& shift,
                           const Tensor& scale, float eps, const Tensor& y);
Status add(CpuContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y);
Status mul(CpuContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y);
Status gated_add(CpuContext& ctx, const Tensor& x, const Tensor& gate, const Tensor& h, const Tensor& out);
Status affine(CpuContext& ctx, const Tensor& x, const AffineParams& params, const Tensor& y);
Status activation(CpuContext& ctx, const Tensor& x, Activation act, const Tensor& y);
Status softmax(CpuContext& ctx, const Tensor& x, const Tensor& y);
Status upsample_nearest2x(CpuContext& ctx, const Tensor& x, const Tensor& y);
Status concat(CpuContext& ctx, std::span<const Tensor> inputs, int axis, const Tensor& y);
Status copy(CpuContext& ctx, const Tensor& x, const Tensor& y);

}  // namespace sd35::cpu
