// Backend: the eager op set every model is written against. Tensors are views in PyTorch
// order; outputs are preallocated by the caller (from a per-job Arena) and must not alias
// inputs unless an op says so. Every op validates shapes and dtypes and returns a Status
// (an op never asserts on caller data). Backends: "reference" (plain loops, the test
// oracle), "cpu" (oneDNN + AVX-512/AVX2 kernels), "cuda" (later).
//
// Dtypes: activations are f32, bf16 or f16; weights may also be fp8. Arithmetic is f32 (or
// better) whatever the storage type; results are rounded once on store.
#pragma once

#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/device_memory.h"
#include "core/tensor.h"
#include "sd35/status.h"

namespace sd35 {

enum class Activation {
  kNone,
  kGeluTanh,   // 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))  — MMDiT MLP, T5 gated FFN
  kGeluErf,    // 0.5x(1+erf(x/sqrt2))                      — CLIP-G
  kQuickGelu,  // x*sigmoid(1.702x)                         — CLIP-L
  kSilu,       // x*sigmoid(x)                              — adaLN input, embedders
};
std::string_view activation_name(Activation a);

struct GemmParams {
  Activation activation = Activation::kNone;
  // y = accumulate ? y + act(x·Wᵀ + b) : act(x·Wᵀ + b).
  bool accumulate = false;
};

// y = clamp(x·scale + shift, lo, hi), elementwise with scalar parameters (latent
// scale/shift, pixel range conversions, logvar clamping).
struct AffineParams {
  float scale = 1.0f;
  float shift = 0.0f;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
};

struct Conv2dParams {
  int stride = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;  // zero padding
};

// A recording of queued backend work that replay() runs again (a CUDA graph): the same ops on
// the same tensors (addresses), reading whatever those tensors hold at replay time.
class CapturedWork {
 public:
  virtual ~CapturedWork() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual Device device() const = 0;
  // The memory this backend's tensors live in (host memory for cpu/reference). A workspace's
  // arena allocates from it; its copies are ordered with the backend's queued work.
  virtual DeviceMemory& memory() = 0;
  // Waits until all queued work has finished (asynchronous backends); errors raised by
  // asynchronous work surface here at the latest.
  virtual Status synchronize() { return {}; }

  // Work capture (optional; CUDA graphs). Between begin_capture() and end_capture() ops are
  // recorded instead of run. While capturing, nothing may allocate device memory, transfer to
  // or from the host, or read device data on the host: such an op fails (or makes
  // end_capture() fail), and the caller runs the work eagerly instead. end_capture() must
  // follow every successful begin_capture(), also after a failed op. replay() queues the
  // recorded work; the caller keeps every tensor it touched alive and unmoved.
  virtual bool can_capture() const { return false; }
  virtual Status begin_capture() { return unsupported(std::string(name()) + ": no capture"); }
  virtual Result<std::unique_ptr<CapturedWork>> end_capture() {
    return unsupported(std::string(name()) + ": no capture");
  }
  virtual Status replay(const CapturedWork&) {
    return unsupported(std::string(name()) + ": no capture");
  }

  // y[M, N] = act(x[M, K] · w[N, K]ᵀ + bias[N]) (nn.Linear layout). x may have leading batch
  // dims ([..., K] with dense rows, any row stride); y likewise [..., N]. w is contiguous
  // f32/f16/bf16/fp8 and used in place (converted inside the kernel, never copied whole);
  // x bf16 -> bf16 products with f32 accumulation; x f32 -> f32 math. bias is f32/f16/bf16.
  virtual Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                      const GemmParams& params) = 0;

  // Scaled dot-product attention with an online softmax (the Lq×Lk score matrix is never
  // materialised). q [B, Lq, H·D], k and v [B, Lk, H·D], out [B, Lq, H·D]; each may be a
  // strided view (e.g. a slice of a fused qkv buffer) with dense last dim. Head h uses
  // features [h·D, (h+1)·D). No mask. out = softmax(q·kᵀ·scale)·v.
  virtual Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                           int heads, float scale) = 0;

  // Attention for the text encoders (short sequences): like attention(), plus a causal mask
  // (CLIP: key j > query i is excluded) and/or an additive f32 bias [H, Lq, Lk] or
  // [1, H, Lq, Lk] (T5's relative position bias) added to the scaled scores. Scores may be
  // materialised per query row; sequences are a few hundred tokens.
  virtual Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, int heads, float scale, bool causal,
                                  const Tensor* bias) = 0;
  // out[i, :] = table[ids[i], :] for ids [N] (int32, contiguous), table [V, D] (any compute
  // float dtype, dense rows), out [N, D]; an id outside [0, V) is an error.
  virtual Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out) = 0;

  // Over the last dim C: y = (x - mean)/sqrt(var + eps) * weight + bias; weight/bias optional.
  virtual Status layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                            const Tensor& y) = 0;
  // Over the last dim: y = x / sqrt(mean(x²) + eps) * weight (weight optional).
  virtual Status rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) = 0;
  // x [N, C, *spatial]: per (n, group) over C/groups channels and all positions; per-channel
  // affine weight/bias [C] optional.
  virtual Status group_norm(const Tensor& x, int groups, const Tensor* weight,
                            const Tensor* bias, float eps, const Tensor& y) = 0;
  // The VAE's norm + activation: exactly group_norm(x, ..., y) followed by activation(y,
  // kSilu, y) — the normalised value is rounded to y's dtype before the SiLU, as in the two
  // ops — so a backend may do it in one pass over y without changing a bit. The default is
  // the two ops.
  virtual Status group_norm_silu(const Tensor& x, int groups, const Tensor* weight,
                                 const Tensor* bias, float eps, const Tensor& y) {
    SD35_RETURN_IF_ERROR(group_norm(x, groups, weight, bias, eps, y));
    return activation(y, Activation::kSilu, y);
  }
  // x [B, L, D], shift/scale [B, D] (strided views allowed, e.g. chunks of an adaLN output):
  // y = x·(1 + scale) + shift, broadcast over L. y may alias x.
  virtual Status modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                          const Tensor& y) = 0;
  // The MMDiT's adaLN pre-norm in one pass: y = LayerNorm(x)·(1 + scale) + shift, i.e.
  // layer_norm without affine (biased variance, eps as there) then modulate, computed in f32
  // (or better) and rounded once on store, without the f32 intermediate of the two-op path.
  // x [B, L, D] f32 with dense rows (any row/batch strides: the residual streams are f32);
  // shift, scale [B, D] f32 with dense rows (strided chunks of an adaLN output are fine);
  // y [B, L, D] f32, bf16 or f16 with dense rows. y may alias x only as the very same view
  // (f32, same strides): every kernel reads a whole row before writing it. Any other overlap
  // of y with x, shift or scale (judged by the address ranges the views span) is an error.
  virtual Status layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                     float eps, const Tensor& y) = 0;
  // y = a + b with b broadcast against a: b's dims align with a's trailing dims, and a size-1
  // or missing dim of b repeats (e.g. a pos_embed [1, L, D] added to x [B, L, D], a bias
  // [C, 1, 1] to [N, C, H, W]). Any strides; y has a's shape and may alias a.
  virtual Status add(const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  // y = a · b, with add's broadcasting rules (T5's gated FFN product).
  virtual Status mul(const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  // out[b, l, :] = x[b, l, :] + gate[b, :] · h[b, l, :] — the gated residual of the MMDiT's
  // joint blocks. x, h, out [B, L, D] with dense rows; gate [B, D] (a strided chunk of an
  // adaLN output is fine). out may alias x.
  virtual Status gated_add(const Tensor& x, const Tensor& gate, const Tensor& h,
                           const Tensor& out) = 0;
  // y = clamp(x·scale + shift, lo, hi); y may alias x.
  virtual Status affine(const Tensor& x, const AffineParams& params, const Tensor& y) = 0;
  // Elementwise activation; y may alias x.
  virtual Status activation(const Tensor& x, Activation act, const Tensor& y) = 0;
  // Softmax over the last dim; y may alias x.
  virtual Status softmax(const Tensor& x, const Tensor& y) = 0;
  // x [N, C, H, W], w [O, C, KH, KW] (any weight dtype), bias [O] optional, y [N, O, OH, OW].
  virtual Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                        const Conv2dParams& params) = 0;
  // Nearest-neighbour ×2: x [N, C, H, W] -> y [N, C, 2H, 2W].
  virtual Status upsample_nearest2x(const Tensor& x, const Tensor& y) = 0;
  // Concatenates along `axis`; all other dims equal; y's dtype may differ (converted).
  virtual Status concat(std::span<const Tensor> inputs, int axis, const Tensor& y) = 0;
  // Elementwise copy between same-shape tensors of any strides; converts dtype when they
  // differ (cast). A device backend also accepts one side in host memory when both are
  // contiguous with the same dtype (an upload or download, synchronous for the host).
  virtual Status copy(const Tensor& x, const Tensor& y) = 0;
  Status cast(const Tensor& x, const Tensor& y) { return copy(x, y); }
};

// "reference": plain loops, f64 accumulation. The oracle for tests; slow.
std::unique_ptr<Backend> make_reference_backend();
// "cpu": oneDNN GEMM/conv and AVX-512/AVX2 kernels chosen by CPU feature detection.
// threads <= 0: the machine's CPUs.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

// Shared argument checks, so every backend rejects the same inputs with the same message.
namespace check {
Status same_shape(const Tensor& a, const Tensor& b, std::string_view op);
Status dtype_in(const Tensor& t, std::initializer_list<DType> allowed, std::string_view op,
                std::string_view what);
Status on_device(const Tensor& t, Device d, std::string_view op);
Status dense_rows(const Tensor& t, std::string_view op, std::string_view what);
}  // namespace check

}  // namespace sd35
