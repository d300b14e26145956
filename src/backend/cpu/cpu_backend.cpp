#include "backend/cpu/cpu_kernels.h"
#include "backend/ops_validate.h"

namespace sd35 {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : ctx_(threads) {}
  std::string_view name() const override { return "cpu"; }
  Device device() const override { return Device::kCPU; }
  DeviceMemory& memory() override { return host_memory(); }

  Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const GemmParams& p) override {
    return cpu::gemm(ctx_, x, w, bias, y, p);
  }
  Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                   int heads, float scale) override {
    return cpu::attention(ctx_, q, k, v, out, heads, scale);
  }
  Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          int heads, float scale, bool causal, const Tensor* bias) override {
    return cpu::attention_masked(ctx_, q, k, v, out, heads, scale, causal, bias);
  }
  Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    return cpu::gather_rows(ctx_, table, ids, out);
  }
  Status layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    return cpu::layer_norm(ctx_, x, w, b, eps, y);
  }
  Status rms_norm(const Tensor& x, const Tensor* w, float eps, const Tensor& y) override {
    return cpu::rms_norm(ctx_, x, w, eps, y);
  }
  Status group_norm(const Tensor& x, int groups, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    return cpu::group_norm(ctx_, x, groups, w, b, eps, y);
  }
  Status group_norm_silu(const Tensor& x, int groups, const Tensor* w, const Tensor* b, float eps,
                         const Tensor& y) override {
    SD35_RETURN_IF_ERROR(validate::activation(Device::kCPU, y, Activation::kSilu, y));
    return cpu::group_norm(ctx_, x, groups, w, b, eps, y, /*silu=*/true);
  }
  Status modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                  const Tensor& y) override {
    return cpu::modulate(ctx_, x, shift, scale, y);
  }
  Status layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                             const Tensor& y) override {
    return cpu::layer_norm_modulate(ctx_, x, shift, scale, eps, y);
  }
  Status add(const Tensor& a, const Tensor& b, const Tensor& y) override {
    return cpu::add(ctx_, a, b, y);
  }
  Status mul(const Tensor& a, const Tensor& b, const Tensor& y) override {
    return cpu::mul(ctx_, a, b, y);
  }
  Status gated_add(const Tensor& x, const Tensor& gate, const Tensor& h,
                   const Tensor& out) override {
    return cpu::gated_add(ctx_, x, gate, h, out);
  }
  Status affine(const Tensor& x, const AffineParams& p, const Tensor& y) override {
    return cpu::affine(ctx_, x, p, y);
  }
  Status activation(const Tensor& x, Activation act, const Tensor& y) override {
    return cpu::activation(ctx_, x, act, y);
  }
  Status softmax(const Tensor& x, const Tensor& y) override { return cpu::softmax(ctx_, x, y); }
  Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                const Conv2dParams& p) override {
    return cpu::conv2d(ctx_, x, w, bias, y, p);
  }
  Status upsample_nearest2x(const Tensor& x, const Tensor& y) override {
    return cpu::upsample_nearest2x(ctx_, x, y);
  }
  Status concat(std::span<const Tensor> inputs, int axis, const Tensor& y) override {
    return cpu::concat(ctx_, inputs, axis, y);
  }
  Status copy(const Tensor& x, const Tensor& y) override { return cpu::copy(ctx_, x, y); }

 private:
  cpu::CpuContext ctx_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace sd35
