// CudaBackend: one non-blocking stream, one cuBLASLt handle (with its workspace and plan
// cache) and a scratch pool per instance. Ops are queued on the stream; the caller sees
// asynchronous errors at synchronize() (or at the next op's launch check).
#include "backend/cuda/cuda_backend.h"

#include <cstdlib>
#include <string>
#include <string_view>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_memory.h"
#include "backend/cuda/cuda_profiler.h"
#include "backend/cuda/cudnn_loader.h"

namespace sd35 {
namespace {

using cuda::CudaContext;

// An instantiated CUDA graph of captured backend work.
class CudaGraphWork final : public CapturedWork {
 public:
  CudaGraphWork(int device, cudaGraphExec_t exec) : device_(device), exec_(exec) {}
  ~CudaGraphWork() override {
    cudaSetDevice(device_);
    cudaGraphExecDestroy(exec_);  // launches still in flight complete first (CUDA defers it)
  }
  CudaGraphWork(const CudaGraphWork&) = delete;
  CudaGraphWork& operator=(const CudaGraphWork&) = delete;
  int device() const { return device_; }
  cudaGraphExec_t exec() const { return exec_; }

 private:
  int device_;
  cudaGraphExec_t exec_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(CudaContext ctx)
      : ctx_(std::move(ctx)),
        memory_(ctx_.device, ctx_.stream),
        profiler_(cuda::OpProfiler::from_env(ctx_.stream)) {}
  ~CudaBackend() override {
    cudaSetDevice(ctx_.device);
    profiler_.reset();                   // prints its summary while the stream still exists
    cudaStreamSynchronize(ctx_.stream);  // queued kernels may use the scratch freed below
    ctx_.cudnn.reset();
    ctx_.lt.reset();
    ctx_.scratch.reset();
    cudaStreamDestroy(ctx_.stream);
  }

  std::string_view name() const override { return "cuda"; }
  Device device() const override { return Device::kCUDA; }
  DeviceMemory& memory() override { return memory_; }
  Status synchronize() override {
    SD35_RETURN_IF_ERROR(select());
    SD35_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream), "synchronize",
                              "cudaStreamSynchronize (an earlier asynchronous op failed)");
    return ok_status();
  }

  // Capture = CUDA stream capture in thread-local mode: this thread's unsafe calls (a
  // cudaMalloc of a growing scratch buffer, a synchronous host copy) invalidate the capture
  // and end_capture() reports it; other threads' work on other streams is unaffected. The
  // per-op profiler times ops with events and synchronises, so capture is off while it runs.
  bool can_capture() const override { return profiler_ == nullptr; }
  Status begin_capture() override {
    SD35_RETURN_IF_ERROR(select());
    if (profiler_) return unsupported("cuda: no capture while SD35_CUDA_PROFILE times ops");
    SD35_CUDA_RETURN_IF_ERROR(
        cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeThreadLocal), "begin_capture",
        "cudaStreamBeginCapture");
    return ok_status();
  }
  Result<std::unique_ptr<CapturedWork>> end_capture() override {
    SD35_RETURN_IF_ERROR(select());
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(ctx_.stream, &graph);
    if (e != cudaSuccess || graph == nullptr) {
      cudaGetLastError();  // an invalidated capture is not a sticky error: clear it
      if (graph) cudaGraphDestroy(graph);
      return cuda::cuda_status(e == cudaSuccess ? cudaErrorStreamCaptureInvalidated : e,
                               "end_capture", "cudaStreamEndCapture (an op was not capturable)");
    }
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return cuda::cuda_status(e, "end_capture", "cudaGraphInstantiate");
    }
    return std::unique_ptr<CapturedWork>(new CudaGraphWork(ctx_.device, exec));
  }
  Status replay(const CapturedWork& work) override {
    const auto* g = dynamic_cast<const CudaGraphWork*>(&work);
    if (!g || g->device() != ctx_.device)
      return invalid_argument("cuda replay: the work was captured by another backend");
    SD35_RETURN_IF_ERROR(select());
    SD35_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(g->exec(), ctx_.stream), "replay",
                              "cudaGraphLaunch");
    return ok_status();
  }

  Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const GemmParams& p) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] {
      return "gemm x " + x.describe() + " w " + w.describe() + " y " + d(y) +
             (p.activation != Activation::kNone ? " " + std::string(activation_name(p.activation))
                                                : "") +
             (p.accumulate ? " +=" : "");
    });
    ctx_.last_path = "";
    Status st = cuda::gemm_op(ctx_, x, w, bias, y, p);
    ps.note(ctx_.last_path);
    return st;
  }
  Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, int heads,
                   float scale) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] {
      return "attention q " + q.describe() + " k " + k.describe() + " H=" + std::to_string(heads);
    });
    ctx_.last_path = "";
    Status st = cuda::attention_op(ctx_, q, k, v, out, heads, scale, false, false, nullptr);
    ps.note(ctx_.last_path);
    return st;
  }
  Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          int heads, float scale, bool causal, const Tensor* bias) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "attention_masked q " + q.describe(); });
    ctx_.last_path = "";
    Status st = cuda::attention_op(ctx_, q, k, v, out, heads, scale, true, causal, bias);
    ps.note(ctx_.last_path);
    return st;
  }
  Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "gather_rows"; });
    return cuda::gather_rows_op(ctx_, table, ids, out);
  }
  Status layer_norm(const Tensor& x, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(),
                          [&] { return "layer_norm " + x.describe() + "->" + d(y); });
    return cuda::row_op(ctx_, cuda::RowKind::kLayerNorm, x, w, b, eps, y);
  }
  Status rms_norm(const Tensor& x, const Tensor* w, float eps, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "rms_norm " + x.describe(); });
    return cuda::row_op(ctx_, cuda::RowKind::kRmsNorm, x, w, nullptr, eps, y);
  }
  Status group_norm(const Tensor& x, int groups, const Tensor* w, const Tensor* b, float eps,
                    const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "group_norm " + x.describe(); });
    return cuda::group_norm_op(ctx_, x, groups, w, b, eps, y, /*silu=*/false);
  }
  Status group_norm_silu(const Tensor& x, int groups, const Tensor* w, const Tensor* b, float eps,
                         const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "group_norm+silu " + x.describe(); });
    return cuda::group_norm_op(ctx_, x, groups, w, b, eps, y, /*silu=*/true);
  }
  Status modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                  const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(),
                          [&] { return "modulate " + x.describe() + "->" + d(y); });
    return cuda::modulate_op(ctx_, x, shift, scale, y);
  }
  Status layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                             const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(),
                          [&] { return "layer_norm_modulate " + x.describe() + "->" + d(y); });
    return cuda::layer_norm_modulate_op(ctx_, x, shift, scale, eps, y);
  }
  Status add(const Tensor& a, const Tensor& b, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(),
                          [&] { return "add " + a.describe() + "+" + b.describe() + "->" + d(y); });
    return cuda::binary_op(ctx_, a, b, y, false);
  }
  Status mul(const Tensor& a, const Tensor& b, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "mul " + d(a); });
    return cuda::binary_op(ctx_, a, b, y, true);
  }
  Status gated_add(const Tensor& x, const Tensor& gate, const Tensor& h,
                   const Tensor& out) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(),
                          [&] { return "gated_add " + x.describe() + "," + d(h) + "->" + d(out); });
    return cuda::gated_add_op(ctx_, x, gate, h, out);
  }
  Status affine(const Tensor& x, const AffineParams& p, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "affine " + d(x); });
    return cuda::affine_op(ctx_, x, p, y);
  }
  Status activation(const Tensor& x, Activation act, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] {
      return "activation " + std::string(activation_name(act)) + " " + x.describe();
    });
    return cuda::activation_op(ctx_, x, act, y);
  }
  Status softmax(const Tensor& x, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "softmax " + d(x); });
    return cuda::row_op(ctx_, cuda::RowKind::kSoftmax, x, nullptr, nullptr, 0.0f, y);
  }
  Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                const Conv2dParams& p) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(),
                          [&] { return "conv2d x " + x.describe() + " w " + w.describe(); });
    ctx_.last_path = "";
    Status st = cuda::conv2d_op(ctx_, x, w, bias, y, p);
    ps.note(ctx_.last_path);
    return st;
  }
  Status upsample_nearest2x(const Tensor& x, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "upsample " + d(x); });
    return cuda::upsample_op(ctx_, x, y);
  }
  Status concat(std::span<const Tensor> inputs, int axis, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] { return "concat"; });
    return cuda::concat_op(ctx_, inputs, axis, y);
  }
  Status copy(const Tensor& x, const Tensor& y) override {
    SD35_RETURN_IF_ERROR(select());
    cuda::ProfileScope ps(profiler_.get(), [&] {
      return "copy " + std::string(device_name(x.device())) + "->" +
             std::string(device_name(y.device())) + " " + x.describe() + "->" + d(y);
    });
    return cuda::copy_op(ctx_, x, y);
  }

 private:
  // The current device is per host thread; a backend may be driven from any thread.
  Status select() {
    SD35_CUDA_RETURN_IF_ERROR(cudaSetDevice(ctx_.device), "cuda backend", "cudaSetDevice");
    return ok_status();
  }

  static std::string d(const Tensor& t) { return std::string(dtype_name(t.dtype())); }

  CudaContext ctx_;
  cuda::CudaMemory memory_;
  std::unique_ptr<cuda::OpProfiler> profiler_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_cuda_backend(int device) {
  const int n = cuda_device_count();
  if (n == 0) return unsupported("make_cuda_backend: no CUDA device is available");
  if (device < 0 || device >= n) {
    return invalid_argument("make_cuda_backend: CUDA device " + std::to_string(device) +
                            " does not exist (" + std::to_string(n) + " device(s))");
  }
  const char* op = "make_cuda_backend";
  SD35_CUDA_RETURN_IF_ERROR(cudaSetDevice(device), op, "cudaSetDevice");
  CudaContext ctx;
  ctx.device = device;
  SD35_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking), op,
                            "cudaStreamCreateWithFlags");
  auto lt = cuda::LtGemm::create(ctx.stream);
  if (!lt.ok()) {
    cudaStreamDestroy(ctx.stream);
    return lt.status();
  }
  ctx.lt = std::move(lt).value();
  // SD35_CUDA_LT_EPILOGUE=0 turns the fused cuBLASLt epilogues (bias in its stored dtype,
  // GELU) off, for A/B timing against our own epilogue pass.
  const char* epi = std::getenv("SD35_CUDA_LT_EPILOGUE");
  ctx.lt_epilogues = !(epi && std::string_view(epi) == "0");
  // cuDNN for conv2d when the library loads (SD35_CUDNN_LIBRARY or libcudnn.so.9) and
  // SD35_CUDNN is not 0. Without it conv2d stays on im2col + cuBLASLt: not an error, the
  // reason is in cuda_device_info().cudnn.
  if (!cuda::cudnn_disabled_by_env() && cuda::shared_cudnn() != nullptr) {
    auto conv = cuda::CudnnConv::create(ctx.stream);
    if (conv.ok()) {
      ctx.cudnn = std::move(conv).value();
    } else {
      cuda::note_cudnn_failure(conv.status().message());
    }
  }
  // SD35_CUDA_SMALLM_GEMM=1 sends f32 x of 9..256 rows against 16-bit/fp8 weights (the text
  // encoders) to the small-M kernel instead of convert + cuBLASLt. Off by default: on an H100
  // (gpu_check 2026-11-26, medians of 3) the text encode took 0.143 s with it, 0.127 s without.
  const char* smallm = std::getenv("SD35_CUDA_SMALLM_GEMM");
  ctx.smallm_gemm = smallm && std::string_view(smallm) == "1";
  ctx.scratch = std::make_unique<cuda::ScratchPool>(device, ctx.stream);
  return std::unique_ptr<Backend>(new CudaBackend(std::move(ctx)));
}

}  // namespace sd35
