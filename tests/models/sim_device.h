// A simulated GPU for tests on machines without one. SimMemory allocates host memory but
// reports Device::kCUDA; SimBackend forwards every op to a host backend (cpu or reference)
// after checking that EVERY tensor argument is tagged kCUDA, so a forgotten upload or
// download in engine code fails the op instead of silently working on the host. Its copy()
// also accepts contiguous same-dtype host<->device transfers, as a real device backend's does.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/device_memory.h"

namespace sd35::testing {

class SimMemory final : public DeviceMemory {
 public:
  // free_report: what mem_info says is free (a test can make the "GPU" look full).
  explicit SimMemory(size_t free_report = size_t(64) << 30) : free_report_(free_report) {}
  ~SimMemory() override = default;
  Device device() const override { return Device::kCUDA; }
  Result<void*> allocate(size_t bytes) override {
    if (capturing_) return internal_error("sim device: allocation while capturing");
    const size_t size = (bytes == 0 ? 1 : bytes + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(4096, size);
    if (!p) return resource_exhausted("sim device full");
    std::lock_guard<std::mutex> lock(mu_);
    live_[p] = bytes;
    live_bytes_ += bytes;
    return p;
  }
  void deallocate(void* p) noexcept override {
    if (!p) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find(p);
      if (it != live_.end()) {
        live_bytes_ -= it->second;
        live_.erase(it);
      }
    }
    std::free(p);
  }
  Status copy_to_device(void* dst, const void* src, size_t bytes) override {
    if (capturing_) return internal_error("sim device: upload while capturing");
    uploads_ += 1;
    if (bytes) std::memcpy(dst, src, bytes);
    return {};
  }
  Status copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (capturing_) return internal_error("sim device: download while capturing");
    downloads_ += 1;
    if (bytes) std::memcpy(dst, src, bytes);
    return {};
  }
  Status copy_on_device(void* dst, const void* src, size_t bytes) override {
    if (capturing_) return internal_error("sim device: memory copy while capturing");
    if (bytes) std::memmove(dst, src, bytes);
    return {};
  }
  Status mem_info(size_t* free_bytes, size_t* total_bytes) const override {
    if (free_bytes) *free_bytes = free_report_.load();
    if (total_bytes) *total_bytes = free_report_.load() + live_bytes();
    return {};
  }
  // Makes the "GPU" look fuller (or emptier) from now on.
  void set_free_report(size_t bytes) { free_report_ = bytes; }
  size_t live_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_bytes_;
  }
  size_t live_allocations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.size();
  }
  int uploads() const { return uploads_.load(); }
  int downloads() const { return downloads_.load(); }
  // While a SimBackend captures, allocations and transfers fail as CUDA's do during stream
  // capture.
  void set_capturing(bool on) { capturing_ = on; }

 private:
  std::atomic<bool> capturing_{false};
  std::atomic<size_t> free_report_;
  mutable std::mutex mu_;
  std::unordered_map<void*, size_t> live_;
  size_t live_bytes_ = 0;
  std::atomic<int> uploads_{0}, downloads_{0};
};

class SimBackend final : public Backend {
 public:
  SimBackend(std::unique_ptr<Backend> inner, std::shared_ptr<SimMemory> memory)
      : inner_(std::move(inner)), memory_(std::move(memory)) {}
  std::string_view name() const override { return "sim-cuda"; }
  Device device() const override { return Device::kCUDA; }
  DeviceMemory& memory() override { return *memory_; }
  // Ops that reached the inner backend and host-tensor rejections (for assertions).
  int ops() const { return ops_; }
  int rejected() const { return rejected_; }

  // Capture, as a CUDA graph would: between begin_capture() and end_capture() ops are
  // recorded (with their tensor views, i.e. addresses) instead of run; replay() runs the
  // recording on whatever those addresses hold then. Allocations and host transfers fail
  // while capturing, and the capture is then refused, like cudaStreamEndCapture's.
  bool can_capture() const override { return capture_enabled_; }
  void enable_capture(bool on) { capture_enabled_ = on; }
  void refuse_captures(bool on) { refuse_captures_ = on; }  // end_capture() always fails
  int replays() const { return replays_; }
  Status begin_capture() override {
    if (!capture_enabled_) return unsupported("sim-cuda: capture disabled");
    if (recording_) return internal_error("sim-cuda: already capturing");
    recording_ = std::make_unique<Recording>();
    invalidated_ = false;
    memory_->set_capturing(true);
    return {};
  }
  Result<std::unique_ptr<CapturedWork>> end_capture() override {
    if (!recording_) return internal_error("sim-cuda: not capturing");
    memory_->set_capturing(false);
    std::unique_ptr<Recording> r = std::move(recording_);
    if (invalidated_) return internal_error("sim-cuda: capture invalidated by an unsafe call");
    if (refuse_captures_) return internal_error("sim-cuda: capture refused (test)");
    return std::unique_ptr<CapturedWork>(std::move(r));
  }
  Status replay(const CapturedWork& work) override {
    const auto* r = dynamic_cast<const Recording*>(&work);
    if (!r) return invalid_argument("sim-cuda: replay of foreign work");
    ++replays_;
    for (const auto& op : r->ops) SD35_RETURN_IF_ERROR(op());
    return {};
  }

  Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const GemmParams& p) override {
    SD35_RETURN_IF_ERROR(need("gemm", {&x, &w, bias, &y}));
    const Tensor b = bias ? host(*bias) : Tensor();
    return run([=, this] { return inner_->gemm(host(x), host(w), b.defined() ? &b : nullptr, host(y), p); });
  }
  Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, int heads,
                   float scale) override {
    SD35_RETURN_IF_ERROR(need("attention", {&q, &k, &v, &out}));
    return run([=, this] { return inner_->attention(host(q), host(k), host(v), host(out), heads, scale); });
  }
  Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          int heads, float scale, bool causal, const Tensor* bias) override {
    SD35_RETURN_IF_ERROR(need("attention_masked", {&q, &k, &v, &out, bias}));
    const Tensor b = bias ? host(*bias) : Tensor();
    return run([=, this] { return inner_->attention_masked(host(q), host(k), host(v), host(out), heads, scale, causal,
                                    b.defined() ? &b : nullptr); });
  }
  Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    SD35_RETURN_IF_ERROR(need("gather_rows", {&table, &ids, &out}));
    return run([=, this] { return inner_->gather_rows(host(table), host(ids), host(out)); });
  }
  Status layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("layer_norm", {&x, w, b, &y}));
    const Tensor hw = w ? host(*w) : Tensor(), hb = b ? host(*b) : Tensor();
    return run([=, this] { return inner_->layer_norm(host(x), hw.defined() ? &hw : nullptr, hb.defined() ? &hb : nullptr, eps, host(y)); });
  }
  Status rms_norm(const Tensor& x, const Tensor* w, float eps, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("rms_norm", {&x, w, &y}));
    const Tensor hw = w ? host(*w) : Tensor();
    return run([=, this] { return inner_->rms_norm(host(x), hw.defined() ? &hw : nullptr, eps, host(y)); });
  }
  Status group_norm(const Tensor& x, int groups, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("group_norm", {&x, w, b, &y}));
    const Tensor hw = w ? host(*w) : Tensor(), hb = b ? host(*b) : Tensor();
    return run([=, this] { return inner_->group_norm(host(x), groups, hw.defined() ? &hw : nullptr, hb.defined() ? &hb : nullptr, eps, host(y)); });
  }
  Status modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                  const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("modulate", {&x, &shift, &scale, &y}));
    return run([=, this] { return inner_->modulate(host(x), host(shift), host(scale), host(y)); });
  }
  Status layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                             const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("layer_norm_modulate", {&x, &shift, &scale, &y}));
    return run([=, this] {
      return inner_->layer_norm_modulate(host(x), host(shift), host(scale), eps, host(y));
    });
  }
  Status add(const Tensor& a, const Tensor& b, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("add", {&a, &b, &y}));
    return run([=, this] { return inner_->add(host(a), host(b), host(y)); });
  }
  Status mul(const Tensor& a, const Tensor& b, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("mul", {&a, &b, &y}));
    return run([=, this] { return inner_->mul(host(a), host(b), host(y)); });
  }
  Status gated_add(const Tensor& x, const Tensor& gate, const Tensor& h,
                   const Tensor& out) override {
    SD35_RETURN_IF_ERROR(need("gated_add", {&x, &gate, &h, &out}));
    return run([=, this] { return inner_->gated_add(host(x), host(gate), host(h), host(out)); });
  }
  Status affine(const Tensor& x, const AffineParams& p, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("affine", {&x, &y}));
    return run([=, this] { return inner_->affine(host(x), p, host(y)); });
  }
  Status activation(const Tensor& x, Activation act, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("activation", {&x, &y}));
    return run([=, this] { return inner_->activation(host(x), act, host(y)); });
  }
  Status softmax(const Tensor& x, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("softmax", {&x, &y}));
    return run([=, this] { return inner_->softmax(host(x), host(y)); });
  }
  Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                const Conv2dParams& p) override {
    SD35_RETURN_IF_ERROR(need("conv2d", {&x, &w, bias, &y}));
    const Tensor b = bias ? host(*bias) : Tensor();
    return run([=, this] { return inner_->conv2d(host(x), host(w), b.defined() ? &b : nullptr, host(y), p); });
  }
  Status upsample_nearest2x(const Tensor& x, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(need("upsample_nearest2x", {&x, &y}));
    return run([=, this] { return inner_->upsample_nearest2x(host(x), host(y)); });
  }
  Status concat(std::span<const Tensor> inputs, int axis, const Tensor& y) override {
    std::vector<Tensor> hs;
    for (const Tensor& t : inputs) {
      SD35_RETURN_IF_ERROR(need("concat", {&t}));
      hs.push_back(host(t));
    }
    SD35_RETURN_IF_ERROR(need("concat", {&y}));
    return run([=, this] { return inner_->concat(hs, axis, host(y)); });
  }
  Status copy(const Tensor& x, const Tensor& y) override {
    const bool xd = x.device() == Device::kCUDA, yd = y.device() == Device::kCUDA;
    if (xd && yd) {
      ++ops_;
      return run([=, this] { return inner_->copy(host(x), host(y)); });
    }
    if (xd == yd) {
      ++rejected_;
      return invalid_argument("sim-cuda copy: both tensors are host memory");
    }
    // An upload or download: contiguous, same dtype and shape (the documented contract).
    if (!x.is_contiguous() || !y.is_contiguous() || x.dtype() != y.dtype() ||
        x.shape() != y.shape()) {
      ++rejected_;
      return invalid_argument("sim-cuda copy: a host<->device copy needs contiguous tensors of "
                              "one dtype and shape, got " + x.describe() + " -> " + y.describe());
    }
    if (recording_) {
      invalidated_ = true;
      return internal_error("sim-cuda copy: host transfer while capturing");
    }
    std::memcpy(y.data(), x.data(), size_t(x.numel()) * x.element_size());
    return {};
  }

 private:
  struct Recording final : CapturedWork {
    std::vector<std::function<Status()>> ops;
  };
  template <typename Fn>
  Status run(Fn&& fn) {
    if (recording_) {
      recording_->ops.emplace_back(std::forward<Fn>(fn));
      return {};
    }
    return fn();
  }

  Status need(const char* op, std::initializer_list<const Tensor*> ts) {
    for (const Tensor* t : ts) {
      if (t && t->device() != Device::kCUDA) {
        ++rejected_;
        return invalid_argument(std::string("sim-cuda ") + op + ": a tensor argument is host " +
                                "memory (" + t->describe() + "): a transfer is missing");
      }
    }
    ++ops_;
    return {};
  }
  static Tensor host(const Tensor& t) {
    return Tensor::strided_view_of(t.data(), t.dtype(), t.shape(), t.strides(), Device::kCPU,
                                   t.owner());
  }

  std::unique_ptr<Backend> inner_;
  std::shared_ptr<SimMemory> memory_;
  int ops_ = 0, rejected_ = 0, replays_ = 0;
  bool capture_enabled_ = true, refuse_captures_ = false, invalidated_ = false;
  std::unique_ptr<Recording> recording_;
};

}  // namespace sd35::testing
