// cuDNN conv2d (see cudnn_conv.h for when it applies). Numerics, per configuration:
//  * x, w, y f32 (FLOAT_CONFIG): CUDNN_FMA_MATH, so no TF32 tensor-core kernel may round the
//    inputs to 10 mantissa bits (the f32 mode is checked against f32 goldens at ~1e-4);
//    heuristic results for tensor-op math are skipped.
//  * x, w, y bf16 or f16 (PSEUDO_BFLOAT16 / PSEUDO_HALF_CONFIG: compute type FLOAT): tensor
//    cores with f32 accumulation, the f32 result rounded once to y's dtype on store.
//  * Only GEMM-like algorithms (implicit, precomputed-implicit, explicit GEMM, direct): the
//    FFT and Winograd ones transform the operands and round differently from a sum of
//    products, which the tolerances of the f32 mode do not allow.
//  * Bias: cudnnConvolutionBiasActivationForward with the identity activation (which cuDNN
//    only runs with IMPLICIT_PRECOMP_GEMM) adds the bias to the f32 result before the one
//    rounding. Its bias has y's dtype: an f32 y takes any bias converted to f32 (exact);
//    a 16-bit y only a bias stored in that same dtype (rounding an f32 bias to bf16 first
//    would change the result), otherwise the im2col path runs.
//  * w of another dtype is converted to x's dtype in scratch first, as on the im2col path.
//  * A conv whose whole-tensor plan is declined (the fused-bias algorithm's workspace grows
//    with the image: 0.5-1 GiB at the VAE's 1024² stage) runs in bands of output rows: the
//    rows each band reads are copied into scratch, the halo rows outside the image
//    zero-filled, so cuDNN pads only the width. Same arithmetic per output element.
//  * 1×1 stride-1 unpadded convs stay on the im2col path's direct GEMM (faster).
//  * x bf16/f16 with an f32 y (the VAE trunk's convs in bf16 mode), w 16-bit or fp8: no
//    legacy configuration mixes dtypes, so x is widened to f32 in such bands and run as
//    FLOAT_CONFIG with TF32 tensor-op math allowed. That is exact here: every bf16/f16/fp8
//    value is a TF32 value, and the product of two TF32 values fits an f32 exactly, so the
//    result is the f32 sum of the exact products, like the bf16 tensor-core GEMM of the
//    im2col path (in another order). An f32 x or w never gets TF32.
// SD35_CUDNN_DEBUG=1 prints each new plan's decision (the heuristic's rows and why each was
// taken or skipped) to stderr: the way to see why a shape stays on im2col.
// The algorithm comes from cudnnGetConvolutionForwardAlgorithm_v7 (a heuristic, not a timed
// search), so the same shapes pick the same kernels in every run.
#include "backend/cuda/cudnn_conv.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cudnn_loader.h"

namespace sd35::cuda {
namespace {

std::atomic<uint64_t> g_convs{0};

}  // namespace

uint64_t cudnn_conv_count() { return g_convs.load(std::memory_order_relaxed); }

#if !SD35_CUDNN_HEADERS

struct CudnnConv::Impl {};
CudnnConv::CudnnConv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudnnConv::~CudnnConv() = default;
Result<std::unique_ptr<CudnnConv>> CudnnConv::create(cudaStream_t) {
  return unsupported("built without the cuDNN headers");
}
Status cudnn_conv2d(CudaContext&, const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                    const Conv2dParams&, bool* done) {
  *done = false;
  return ok_status();
}

#else

namespace {

constexpr size_t kMaxWorkspaceBytes = size_t(256) << 20;
// Bound of one band of x in scratch (run_banded): 64 MiB keeps every VAE band large enough to
// fill the GPU (a [1, 256, 1024, 1024] x widened to f32 goes in 64-row bands of 77 GFLOP).
constexpr int64_t kBandBytes = int64_t(64) << 20;

bool debug_on() {
  static const bool on = [] {
    const char* v = std::getenv("SD35_CUDNN_DEBUG");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}
constexpr int kMaxPlans = 256;  // every conv shape of a pipeline fits; beyond that start afresh

Status cudnn_error(const CudnnApi& api, cudnnStatus_t s, const char* what) {
  std::string msg = std::string("conv2d: cuDNN ") + what + " failed: " + api.GetErrorString(s);
  if (s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
      s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    return resource_exhausted(std::move(msg));
  return internal_error(std::move(msg));
}

// Statuses that say "this configuration is not one cuDNN runs", not "something broke": the
// im2col path then takes it. (cuDNN 9 reports them with sub-codes, e.g.
// CUDNN_STATUS_NOT_SUPPORTED_SHAPE = 3002, so compare the thousands.)
bool declined(cudnnStatus_t s) {
  const int base = int(s) / 1000 * 1000;
  return base == int(CUDNN_STATUS_NOT_SUPPORTED) || base == int(CUDNN_STATUS_BAD_PARAM);
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::kBF16: return CUDNN_DATA_BFLOAT16;
    case DType::kF16: return CUDNN_DATA_HALF;
    default: return CUDNN_DATA_FLOAT;
  }
}

bool gemm_like(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

// A 4-D view as cuDNN's int dims and strides; false beyond 32-bit indexing (the legacy
// descriptors take int, and their kernels index with 32 bits). A size-1 dim gets the packed
// stride of the dims inside it: its stride is never used, and cuDNN checks strides for overlap.
bool int_dims(const Tensor& t, std::array<int, 4>& dims, std::array<int, 4>& strides) {
  int64_t span = 1;
  for (int d = 3; d >= 0; --d) {
    const int64_t n = t.size(d);
    int64_t s = t.stride(d);
    if (n == 1) s = d == 3 ? 1 : int64_t(strides[size_t(d + 1)]) * dims[size_t(d + 1)];
    if (n > INT_MAX || s < 1 || s > INT_MAX) return false;
    span += (n - 1) * s;
    dims[size_t(d)] = int(n);
    strides[size_t(d)] = int(s);
  }
  return span <= INT_MAX;
}

}  // namespace

struct CudnnConv::Impl {
  const CudnnApi* api = nullptr;
  cudnnHandle_t handle = nullptr;
  cudnnActivationDescriptor_t identity = nullptr;

  struct Plan {
    cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
    cudnnFilterDescriptor_t w = nullptr;
    cudnnConvolutionDescriptor_t conv = nullptr;
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    size_t workspace = 0;
    bool supported = false;
  };
  // x dims+strides, y strides, w dims, dtype, bias, pads, stride, alignments of x/w/y/bias
  // (a kernel cuDNN declines for one alignment may run for another).
  using Key = std::array<int64_t, 24>;
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& [k, p] : plans) destroy(p);
    if (identity) api->DestroyActivationDescriptor(identity);
    if (handle) api->Destroy(handle);
  }
  void destroy(Plan& p) const {
    if (p.x) api->DestroyTensorDescriptor(p.x);
    if (p.y) api->DestroyTensorDescriptor(p.y);
    if (p.bias) api->DestroyTensorDescriptor(p.bias);
    if (p.w) api->DestroyFilterDescriptor(p.w);
    if (p.conv) api->DestroyConvolutionDescriptor(p.conv);
    p = Plan{};
  }

  // Fills `plan`; plan.supported = false when cuDNN has no exact algorithm for it (or
  // planning failed in any way). Descriptors created are destroyed with the plan.
  // tf32: an f32 x whose values are all TF32 values (widened 16-bit data), so tensor-op math
  // is exact (see the file comment); otherwise f32 runs under FMA math only.
  Status make_plan(const Tensor& x, const Tensor& y, int64_t oc, int64_t kh, int64_t kw,
                   const Conv2dParams& p, bool with_bias, bool tf32, Plan& plan) const;
};

CudnnConv::CudnnConv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudnnConv::~CudnnConv() = default;

Result<std::unique_ptr<CudnnConv>> CudnnConv::create(cudaStream_t stream) {
  std::string why;
  const CudnnLibrary* lib = shared_cudnn(&why);
  if (!lib) return unsupported("cuDNN unavailable: " + why);
  auto impl = std::make_unique<Impl>();
  impl->api = &lib->api();
  const CudnnApi& api = *impl->api;
  // cudnnCreate loads the sub-libraries (libcudnn_cnn.so.9, ...) and touches the device: the
  // first point where a partial installation or a missing GPU shows.
  cudnnStatus_t s = api.Create(&impl->handle);
  if (s != CUDNN_STATUS_SUCCESS) {
    impl->handle = nullptr;
    cudaGetLastError();  // cuDNN may leave a runtime error behind; it is not ours
    return unsupported(std::string("cudnnCreate failed: ") + api.GetErrorString(s));
  }
  s = api.SetStream(impl->handle, stream);
  if (s == CUDNN_STATUS_SUCCESS) s = api.CreateActivationDescriptor(&impl->identity);
  if (s == CUDNN_STATUS_SUCCESS)
    s = api.SetActivationDescriptor(impl->identity, CUDNN_ACTIVATION_IDENTITY, CUDNN_PROPAGATE_NAN,
                                    0.0);
  if (s != CUDNN_STATUS_SUCCESS)
    return unsupported(std::string("cuDNN set-up failed: ") + api.GetErrorString(s));
  return std::unique_ptr<CudnnConv>(new CudnnConv(std::move(impl)));
}

Status CudnnConv::Impl::make_plan(const Tensor& x, const Tensor& y, int64_t oc, int64_t kh,
                                  int64_t kw, const Conv2dParams& p, bool with_bias, bool tf32,
                                  Plan& plan) const {
  const CudnnApi& a = *api;
  plan.supported = false;
  const bool f32 = x.dtype() == DType::kF32;
  const bool fma_only = f32 && !tf32;
  const bool debug = debug_on();
  if (debug)
    std::fprintf(stderr, "cudnn plan: x %s y %s w [%lld, %lld, %lld, %lld] pad %d,%d stride %d%s%s\n",
                 x.describe().c_str(), y.describe().c_str(), (long long)oc, (long long)x.size(1),
                 (long long)kh, (long long)kw, int(p.pad_top), int(p.pad_left), int(p.stride),
                 with_bias ? " bias" : "", tf32 ? " tf32" : "");
  std::array<int, 4> xd{}, xs{}, yd{}, ys{};
  if (!int_dims(x, xd, xs) || !int_dims(y, yd, ys)) {
    if (debug) std::fprintf(stderr, "cudnn plan:   declined: beyond 32-bit dims/strides\n");
    return ok_status();
  }
  const cudnnDataType_t dt = cudnn_type(x.dtype());
  // Any failure while planning (a layout cuDNN rejects, no algorithm, even a heuristic error)
  // means "not for cuDNN": the shape is remembered as unsupported and runs on im2col, which
  // computes the same thing. Only failures of the convolution itself become errors.
  auto ok = [](cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; };
  if (!ok(a.CreateTensorDescriptor(&plan.x)) || !ok(a.CreateTensorDescriptor(&plan.y)) ||
      !ok(a.CreateFilterDescriptor(&plan.w)) || !ok(a.CreateConvolutionDescriptor(&plan.conv)))
    return ok_status();
  if (!ok(a.SetTensor4dDescriptorEx(plan.x, dt, xd[0], xd[1], xd[2], xd[3], xs[0], xs[1], xs[2],
                                    xs[3])) ||
      !ok(a.SetTensor4dDescriptorEx(plan.y, dt, yd[0], yd[1], yd[2], yd[3], ys[0], ys[1], ys[2],
                                    ys[3])) ||
      !ok(a.SetFilter4dDescriptor(plan.w, dt, CUDNN_TENSOR_NCHW, int(oc), xd[1], int(kh),
                                  int(kw))) ||
      // CROSS_CORRELATION: PyTorch's conv2d (CUDNN_CONVOLUTION would flip the kernel).
      // Compute type FLOAT for every dtype: FLOAT_CONFIG or the PSEUDO_* configs.
      !ok(a.SetConvolution2dDescriptor(plan.conv, p.pad_top, p.pad_left, p.stride, p.stride, 1, 1,
                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) ||
      !ok(a.SetConvolutionMathType(plan.conv, fma_only ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH))) {
    if (debug) std::fprintf(stderr, "cudnn plan:   declined: descriptors rejected\n");
    return ok_status();
  }
  if (with_bias) {
    if (!ok(a.CreateTensorDescriptor(&plan.bias)) ||
        !ok(a.SetTensor4dDescriptorEx(plan.bias, dt, 1, int(oc), 1, 1, int(oc), 1, 1, 1)))
      return ok_status();
  }
  // cuDNN's idea of the output shape must be ours (it is, for symmetric padding).
  int on = 0, oc2 = 0, oh = 0, ow = 0;
  if (!ok(a.GetConvolution2dForwardOutputDim(plan.conv, plan.x, plan.w, &on, &oc2, &oh, &ow)) ||
      on != yd[0] || oc2 != yd[1] || oh != yd[2] || ow != yd[3]) {
    if (debug) std::fprintf(stderr, "cudnn plan:   declined: output shape differs\n");
    return ok_status();
  }

  std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT * 4> perf{};
  int found = 0;
  cudnnStatus_t s = a.GetConvolutionForwardAlgorithm_v7(handle, plan.x, plan.w, plan.conv, plan.y,
                                                        int(perf.size()), &found, perf.data());
  if (!ok(s)) {
    if (debug) std::fprintf(stderr, "cudnn plan:   declined: heuristic failed (%s)\n",
                            a.GetErrorString(s));
    return ok_status();
  }
  for (int i = 0; i < found; ++i) {
    const cudnnConvolutionFwdAlgoPerf_t& r = perf[size_t(i)];
    const char* skip = nullptr;
    size_t ws = 0;
    if (r.status != CUDNN_STATUS_SUCCESS) {
      skip = "status";
    } else if (r.memory > kMaxWorkspaceBytes) {
      skip = "workspace over 256 MiB";
    } else if (r.determinism != CUDNN_DETERMINISTIC) {
      skip = "not deterministic";
    } else if (!gemm_like(r.algo)) {
      skip = "not GEMM-like (FFT/Winograd)";
    } else if (with_bias && r.algo != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM) {
      // The identity-activation fused bias runs with IMPLICIT_PRECOMP_GEMM only.
      skip = "fused bias needs IMPLICIT_PRECOMP_GEMM";
    } else if (r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) {
      // Down-converting f32 data to 16 bits: never.
      skip = "ALLOW_CONVERSION math";
    } else if (fma_only && r.mathType == CUDNN_TENSOR_OP_MATH) {
      // f32: never a tensor-op (TF32) row; the descriptor stays at FMA_MATH, under which the
      // algorithm runs (DEFAULT_MATH would allow TF32). 16-bit and widened 16-bit data:
      // tensor cores or not, exact products accumulated in f32.
      skip = "TF32 on f32 data";
    } else if (!fma_only && !ok(a.SetConvolutionMathType(plan.conv, r.mathType))) {
      skip = "math type rejected";
    } else {
      // The workspace of the algorithm under the math type now set (the heuristic's figure
      // is an estimate for its own math type).
      s = a.GetConvolutionForwardWorkspaceSize(handle, plan.x, plan.w, plan.conv, plan.y, r.algo,
                                               &ws);
      if (!ok(s) || ws > kMaxWorkspaceBytes) skip = "workspace query";
    }
    if (debug)
      std::fprintf(stderr, "cudnn plan:   algo %d math %d status %d memory %zu det %d: %s\n",
                   int(r.algo), int(r.mathType), int(r.status), r.memory, int(r.determinism),
                   skip ? skip : "TAKEN");
    if (skip) continue;
    plan.algo = r.algo;
    plan.workspace = ws;
    plan.supported = true;
    return ok_status();
  }
  if (debug) std::fprintf(stderr, "cudnn plan:   declined: no usable algorithm of %d\n", found);
  return ok_status();
}

namespace {

// The plan of this configuration (made on first use; plan->supported = false when cuDNN has
// no exact algorithm for it). x and y share a dtype; tf32 says x's f32 values are all TF32
// values (widened 16-bit data).
Result<CudnnConv::Impl::Plan*> plan_for(CudaContext& ctx, const Tensor& x, const Tensor& w,
                                        const Tensor* bias, const Tensor& y,
                                        const Conv2dParams& p, bool tf32) {
  CudnnConv::Impl& im = ctx.cudnn->impl();
  const DType compute = x.dtype();
  const int64_t oc = w.size(0), kh = w.size(2), kw = w.size(3);
  // The converted weight lives in 256-byte aligned scratch.
  const int w_align = w.dtype() == compute ? alignment_of(w.data()) : 256;
  const CudnnConv::Impl::Key key{
      x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0), x.stride(1), x.stride(2),
      x.stride(3), y.stride(0), y.stride(1), y.stride(2), y.stride(3), oc, kh, kw,
      int64_t(compute) * 2 + (tf32 ? 1 : 0), bias ? 1 : 0, p.pad_top, p.pad_left, p.stride,
      alignment_of(x.data()), w_align, alignment_of(y.data()),
      bias ? int64_t(alignment_of(bias->data())) : 0};
  auto it = im.plans.find(key);
  if (it == im.plans.end()) {
    if (im.plans.size() >= size_t(kMaxPlans)) {
      // Descriptors are host objects; queued work does not reference them.
      for (auto& [k, pl] : im.plans) im.destroy(pl);
      im.plans.clear();
    }
    CudnnConv::Impl::Plan plan;
    Status st = im.make_plan(x, y, oc, kh, kw, p, bias != nullptr, tf32, plan);
    if (!st.ok()) {
      im.destroy(plan);
      return st;
    }
    it = im.plans.emplace(key, plan).first;
  }
  return &it->second;
}

// Queues y = conv2d(x, w) + bias with a supported plan; *done = false when cuDNN declines it
// at run time (nothing queued; the plan is then marked unsupported).
Status run_plan(CudaContext& ctx, CudnnConv::Impl::Plan& plan, const Tensor& x, const Tensor& w,
                const Tensor* bias, const Tensor& y, bool* done) {
  *done = false;
  CudnnConv::Impl& im = ctx.cudnn->impl();
  const CudnnApi& a = *im.api;
  const DType compute = x.dtype();
  const void* wp = w.data();
  if (w.dtype() != compute) {
    SD35_ASSIGN_OR_RETURN(void* wbuf,
                          ctx.scratch->get(ScratchSlot::kWeight,
                                           size_t(w.numel()) * dtype_size(compute), "conv2d"));
    SD35_RETURN_IF_ERROR(launch_convert(w.data(), w.dtype(), wbuf, compute, w.numel(), ctx.stream));
    wp = wbuf;
  }
  const void* bp = nullptr;
  if (bias) {
    if (compute == DType::kF32) {
      SD35_ASSIGN_OR_RETURN(const float* b32, bias_as_f32(ctx, bias, "conv2d"));
      bp = b32;
    } else {
      bp = bias->data();  // y's dtype, stride 1 (checked by cudnn_conv2d)
    }
  }
  void* ws = nullptr;
  if (plan.workspace > 0) {
    SD35_ASSIGN_OR_RETURN(ws, ctx.scratch->get(ScratchSlot::kConvWorkspace, plan.workspace,
                                               "conv2d"));
  }
  // Scaling factors are float for the FLOAT compute type (PSEUDO configs included).
  const float one = 1.0f, zero = 0.0f;
  cudnnStatus_t s;
  if (bias) {
    // cuDNN needs a z tensor: z = y with alpha2 = 0. This relies on cuDNN not reading z when
    // alpha2 is 0 (as with beta = 0 elsewhere), since y may hold anything, NaN included; the
    // conformance cases with a NaN-filled y (CudaCudnnConv.AgainstReference) check it.
    s = a.ConvolutionBiasActivationForward(im.handle, &one, plan.x, x.data(), plan.w, wp,
                                           plan.conv, plan.algo, ws, plan.workspace, &zero,
                                           plan.y, y.data(), plan.bias, bp, im.identity, plan.y,
                                           y.data());
  } else {
    s = a.ConvolutionForward(im.handle, &one, plan.x, x.data(), plan.w, wp, plan.conv, plan.algo,
                             ws, plan.workspace, &zero, plan.y, y.data());
  }
  if (s != CUDNN_STATUS_SUCCESS) {
    if (declined(s)) {
      if (debug_on())
        std::fprintf(stderr, "cudnn run: declined (%s): %s -> not cuDNN from now on\n",
                     a.GetErrorString(s), x.describe().c_str());
      plan.supported = false;
      return ok_status();
    }
    return cudnn_error(a, s, bias ? "cudnnConvolutionBiasActivationForward"
                                  : "cudnnConvolutionForward");
  }
  g_convs.fetch_add(1, std::memory_order_relaxed);
  *done = true;
  return launch_status("conv2d");
}

Status run_whole(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                 const Tensor& y, const Conv2dParams& p, bool* done) {
  *done = false;
  SD35_ASSIGN_OR_RETURN(CudnnConv::Impl::Plan * plan, plan_for(ctx, x, w, bias, y, p, false));
  if (!plan->supported) return ok_status();
  return run_plan(ctx, *plan, x, w, bias, y, done);
}

bool tf32_exact(DType t) {
  return t == DType::kBF16 || t == DType::kF16 || t == DType::kF8E4M3FN || t == DType::kF8E5M2;
}

// Per sample and per band of output rows: the input rows the band reads (halo included) are
// copied into scratch as `band_dtype` (f32 to widen a 16-bit x for TF32; x's own dtype when a
// whole-tensor plan wants more workspace than allowed), rows outside the image written as
// zeros, and the band runs with no height padding. Each band's plan is looked up before
// anything is copied: *done = false (nothing queued) when cuDNN declines the first band; a
// later band declining leaves *done = false too, and the im2col path then writes all of y.
Status run_banded(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                  const Tensor& y, const Conv2dParams& p, DType band_dtype, bool tf32,
                  bool* done) {
  *done = false;
  const int64_t batch = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t oc = w.size(0), kh = w.size(2);
  const int64_t oh = y.size(2), ow = y.size(3), st = p.stride;
  const int64_t es = int64_t(dtype_size(band_dtype));
  const int64_t row_bytes = c * wd * es;  // one input row of every channel
  const int64_t fit_rows = std::max<int64_t>(kh, kBandBytes / row_bytes);
  const int64_t band = std::clamp<int64_t>((fit_rows - kh) / st + 1, 1, oh);
  const int64_t band_in = (band - 1) * st + kh;
  SD35_ASSIGN_OR_RETURN(void* buf, ctx.scratch->get(ScratchSlot::kConvInput,
                                                    size_t(band_in * row_bytes), "conv2d"));
  char* const bandp = static_cast<char*>(buf);
  const int64_t xs = int64_t(x.element_size()), ys = int64_t(y.element_size());
  Conv2dParams bp = p;
  bp.pad_top = bp.pad_bottom = 0;  // the halo rows are in the band
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oh0 = 0; oh0 < oh; oh0 += band) {
      const int64_t rows = std::min(band, oh - oh0), rows_in = (rows - 1) * st + kh;
      const Tensor xb = Tensor::strided_view_of(bandp, band_dtype, Shape{1, c, rows_in, wd},
                                                Shape{c * rows_in * wd, rows_in * wd, wd, 1},
                                                Device::kCUDA);
      char* yp = static_cast<char*>(y.data()) + (n * y.stride(0) + oh0 * y.stride(2)) * ys;
      const Tensor yb = Tensor::strided_view_of(
          yp, y.dtype(), Shape{1, oc, rows, ow},
          Shape{y.stride(0), y.stride(1), y.stride(2), y.stride(3)}, Device::kCUDA);
      SD35_ASSIGN_OR_RETURN(CudnnConv::Impl::Plan * plan,
                            plan_for(ctx, xb, w, bias, yb, bp, tf32));
      if (!plan->supported) return ok_status();

      const int64_t iy0 = oh0 * st - p.pad_top;  // input row of band row 0
      const int64_t lo = std::clamp<int64_t>(-iy0, 0, rows_in);
      const int64_t hi = std::clamp<int64_t>(h - iy0, lo, rows_in);
      const size_t pitch = size_t(rows_in * wd * es);  // bytes per channel plane of the band
      auto zero_rows = [&](int64_t r0, int64_t r1) -> Status {
        if (r1 <= r0) return ok_status();
        SD35_CUDA_RETURN_IF_ERROR(
            cudaMemset2DAsync(bandp + r0 * wd * es, pitch, 0, size_t((r1 - r0) * wd * es),
                              size_t(c), ctx.stream),
            "conv2d", "zeroing the halo rows");
        return ok_status();
      };
      SD35_RETURN_IF_ERROR(zero_rows(0, lo));
      SD35_RETURN_IF_ERROR(zero_rows(hi, rows_in));
      if (hi > lo) {
        const char* src = static_cast<const char*>(x.data()) +
                          (n * x.stride(0) + (iy0 + lo) * x.stride(2)) * xs;
        SD35_RETURN_IF_ERROR(copy_strided(ctx, src, x.dtype(),
                                          Shape{x.stride(1), x.stride(2), x.stride(3)},
                                          bandp + lo * wd * es, band_dtype,
                                          Shape{rows_in * wd, wd, 1}, Shape{c, hi - lo, wd}));
      }
      bool band_done = false;
      SD35_RETURN_IF_ERROR(run_plan(ctx, *plan, xb, w, bias, yb, &band_done));
      if (!band_done) return ok_status();
    }
  }
  *done = true;
  return ok_status();
}

}  // namespace

Status cudnn_conv2d(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                    const Tensor& y, const Conv2dParams& p, bool* done) {
  *done = false;
  if (!ctx.cudnn) return ok_status();
  if (conv_reads_x_as_columns(x, w, p)) return ok_status();  // one GEMM on x: faster
  // Configurations cuDNN cannot compute like the reference (see the file comment).
  if (p.pad_top != p.pad_bottom || p.pad_left != p.pad_right) return ok_status();
  if (x.dtype() != y.dtype()) {
    if (y.dtype() != DType::kF32 || (x.dtype() != DType::kBF16 && x.dtype() != DType::kF16) ||
        !tf32_exact(w.dtype()))
      return ok_status();
    SD35_RETURN_IF_ERROR(run_banded(ctx, x, w, bias, y, p, DType::kF32, /*tf32=*/true, done));
    if (*done) ctx.last_path = "cudnn tf32, x widened";
    return ok_status();
  }
  const bool f32 = x.dtype() == DType::kF32;
  if (bias && !f32 &&
      (bias->dtype() != y.dtype() || (bias->stride(0) != 1 && bias->size(0) != 1)))
    return ok_status();
  SD35_RETURN_IF_ERROR(run_whole(ctx, x, w, bias, y, p, done));
  if (*done) {
    ctx.last_path = "cudnn";
    return ok_status();
  }
  // Declined whole (at the VAE's 1024² stage the fused-bias algorithm wants 0.5-1 GiB of
  // workspace): in bands of output rows, each with a proportionally smaller workspace.
  SD35_RETURN_IF_ERROR(run_banded(ctx, x, w, bias, y, p, x.dtype(), /*tf32=*/false, done));
  if (*done) ctx.last_path = "cudnn, in bands";
  return ok_status();
}

#endif  // SD35_CUDNN_HEADERS

}  // namespace sd35::cuda
