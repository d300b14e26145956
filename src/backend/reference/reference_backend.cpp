#include "backend/reference/reference_kernels.h"

namespace sd35 {
namespace {

class ReferenceBackend final : public Backend {
 public:
  ReferenceBackend() = default;
  std::string_view name() const override { return "reference"; }
  Device device() const override { return Device::kCPU; }
  DeviceMemory& memory() override { return host_memory(); }

  Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const GemmParams& p) override {
    return ref::gemm(x, w, bias, y, p);
  }
  Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                   int heads, float scale) override {
    return ref::attention(q, k, v, out, heads, scale);
  }
  Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          int heads, float scale, bool causal, const Tensor* bias) override {
    return ref::attention_masked(q, k, v, out, heads, scale, causal, bias);
  }
  Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    return ref::gather_rows(table, ids, out);
  }
  Status layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    return ref::layer_norm(x, w, b, eps, y);
  }
  Status rms_norm(const Tensor& x, const Tensor* w, float eps, const Tensor& y) override {
    return ref::rms_norm(x, w, eps, y);
  }
  Status group_norm(const Tensor& x, int groups, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    return ref::group_norm(x, groups, w, b, eps, y);
  }
  Status modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                  const Tensor& y) override {
    return ref::modulate(x, shift, scale, y);
  }
  Status layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                             const Tensor& y) override {
    return ref::layer_norm_modulate(x, shift, scale, eps, y);
  }
  Status add(const Tensor& a, const Tensor& b, const Tensor& y) override {
    return ref::add(a, b, y);
  }
  Status mul(const Tensor& a, const Tensor& b, const Tensor& y) override {
    return ref::mul(a, b, y);
  }
  Status gated_add(const Tensor& x, const Tensor& gate, const Tensor& h,
                   const Tensor& out) override {
    return ref::gated_add(x, gate, h, out);
  }
  Status affine(const Tensor& x, const AffineParams& p, const Tensor& y) override {
    return ref::affine(x, p, y);
  }
  Status activation(const Tensor& x, Activation act, const Tensor& y) override {
    return ref::activation(x, act, y);
  }
  Status softmax(const Tensor& x, const Tensor& y) override { return ref::softmax(x, y); }
  Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                const Conv2dParams& p) override {
    return ref::conv2d(x, w, bias, y, p);
  }
  Status upsample_nearest2x(const Tensor& x, const Tensor& y) override {
    return ref::upsample_nearest2x(x, y);
  }
  Status concat(std::span<const Tensor> inputs, int axis, const Tensor& y) override {
    return ref::concat(inputs, axis, y);
  }
  Status copy(const Tensor& x, const Tensor& y) override { return ref::copy(x, y); }

};

}  // namespace

std::unique_ptr<Backend> make_reference_backend() { return std::make_unique<ReferenceBackend>(); }

}  // namespace sd35
