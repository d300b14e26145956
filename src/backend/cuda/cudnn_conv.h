// conv2d through cuDNN's legacy API (the library loaded at run time, cudnn_loader.h), for the
// configurations where cuDNN computes exactly what the reference does: f32 accumulation of
// the products, the bias added in f32 and y rounded once to its dtype. That includes a
// 16-bit x with an f32 y (x widened to f32 in bands, TF32 math, exact for 16-bit data) and
// convs too large for one plan's workspace (in bands of output rows). Everything else
// (asymmetric padding, an f32 x with a 16-bit y, a 16-bit y with a bias of another dtype,
// 1×1 convs the im2col path runs as one GEMM on x, shapes beyond 32-bit indexing, anything
// cuDNN declines) stays on the im2col path (cuda_conv.cpp), which calls this first.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "backend/backend.h"
#include "sd35/status.h"

namespace sd35::cuda {

struct CudaContext;

// One cuDNN handle bound to a backend's stream, with the plans (descriptors, algorithm,
// workspace size) cached per shape/strides/dtype/alignment like LtGemm's.
class CudnnConv {
 public:
  // Needs the loaded library (shared_cudnn()) and the backend's device current; fails when
  // cudnnCreate does (no sub-libraries, no device).
  static Result<std::unique_ptr<CudnnConv>> create(cudaStream_t stream);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit CudnnConv(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Queues y = conv2d(x, w) + bias through cuDNN when ctx.cudnn is set and the configuration is
// one it computes like the reference; *done = false (and ok) when the caller must take the
// im2col path. The arguments are already validated (linear_checks::conv2d). Errors of cuDNN
// itself at run time become a Status. No allocation or synchronisation once a shape has run.
Status cudnn_conv2d(CudaContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                    const Tensor& y, const Conv2dParams& p, bool* done);

// Convolutions queued through cuDNN so far by this process (the tests check the path ran).
uint64_t cudnn_conv_count();

}  // namespace sd35::cuda
