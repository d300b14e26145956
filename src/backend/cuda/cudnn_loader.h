// cuDNN, loaded at run time. The binaries never link it: cuDNN is ~500 MB, CI machines and
// GPU bundles may lack it, and the im2col + cuBLASLt conv2d works without it. When the
// library, one of the functions used or a compatible version is missing, conv2d keeps the
// im2col path and the reason is reported (start-up log, `sd35 generate`), never an error.
//
// Only the legacy convolution API is resolved (descriptors, heuristic, forward, fused
// bias forward). cudnn.h is used for its types only; a toolkit without the cuDNN headers
// builds a loader that always reports "built without the cuDNN headers".
#pragma once

#include <memory>
#include <string>

#include "sd35/status.h"

#if __has_include(<cudnn.h>)
#include <cudnn.h>
#define SD35_CUDNN_HEADERS 1
#else
#define SD35_CUDNN_HEADERS 0
#endif

namespace sd35::cuda {

#if SD35_CUDNN_HEADERS
// The functions used, with the headers' signatures (decltype keeps them in step).
struct CudnnApi {
  decltype(&::cudnnGetVersion) GetVersion = nullptr;
  decltype(&::cudnnGetCudartVersion) GetCudartVersion = nullptr;
  decltype(&::cudnnGetErrorString) GetErrorString = nullptr;
  decltype(&::cudnnCreate) Create = nullptr;
  decltype(&::cudnnDestroy) Destroy = nullptr;
  decltype(&::cudnnSetStream) SetStream = nullptr;
  decltype(&::cudnnCreateTensorDescriptor) CreateTensorDescriptor = nullptr;
  decltype(&::cudnnDestroyTensorDescriptor) DestroyTensorDescriptor = nullptr;
  decltype(&::cudnnSetTensor4dDescriptorEx) SetTensor4dDescriptorEx = nullptr;
  decltype(&::cudnnCreateFilterDescriptor) CreateFilterDescriptor = nullptr;
  decltype(&::cudnnDestroyFilterDescriptor) DestroyFilterDescriptor = nullptr;
  decltype(&::cudnnSetFilter4dDescriptor) SetFilter4dDescriptor = nullptr;
  decltype(&::cudnnCreateConvolutionDescriptor) CreateConvolutionDescriptor = nullptr;
  decltype(&::cudnnDestroyConvolutionDescriptor) DestroyConvolutionDescriptor = nullptr;
  decltype(&::cudnnSetConvolution2dDescriptor) SetConvolution2dDescriptor = nullptr;
  decltype(&::cudnnSetConvolutionMathType) SetConvolutionMathType = nullptr;
  decltype(&::cudnnGetConvolution2dForwardOutputDim) GetConvolution2dForwardOutputDim = nullptr;
  decltype(&::cudnnGetConvolutionForwardAlgorithm_v7) GetConvolutionForwardAlgorithm_v7 = nullptr;
  decltype(&::cudnnGetConvolutionForwardWorkspaceSize) GetConvolutionForwardWorkspaceSize =
      nullptr;
  decltype(&::cudnnConvolutionForward) ConvolutionForward = nullptr;
  decltype(&::cudnnConvolutionBiasActivationForward) ConvolutionBiasActivationForward = nullptr;
  decltype(&::cudnnCreateActivationDescriptor) CreateActivationDescriptor = nullptr;
  decltype(&::cudnnDestroyActivationDescriptor) DestroyActivationDescriptor = nullptr;
  decltype(&::cudnnSetActivationDescriptor) SetActivationDescriptor = nullptr;
};
#endif

class CudnnLibrary {
 public:
  // dlopen()s `path` (a file name is searched like dlopen does: LD_LIBRARY_PATH, the cache,
  // the system directories), resolves every function used and checks the versions:
  // cudnnGetVersion() must be 9.x and cuDNN's CUDA runtime major must be ours
  // (CUDART_VERSION). NotFound / Unsupported with the reason otherwise; never crashes.
  // Needs no GPU (the two version queries do not touch the device).
  static Result<std::unique_ptr<CudnnLibrary>> open(const std::string& path);
  ~CudnnLibrary();
  CudnnLibrary(const CudnnLibrary&) = delete;
  CudnnLibrary& operator=(const CudnnLibrary&) = delete;

  size_t version() const { return version_; }                 // cudnnGetVersion(): 91900
  size_t cudart_version() const { return cudart_version_; }   // 13010
  std::string version_string() const;                         // "9.19.0"
#if SD35_CUDNN_HEADERS
  const CudnnApi& api() const { return api_; }
#endif

 private:
  CudnnLibrary() = default;
  void* handle_ = nullptr;
  size_t version_ = 0, cudart_version_ = 0;
#if SD35_CUDNN_HEADERS
  CudnnApi api_;
#endif
};

// The library name tried when SD35_CUDNN_LIBRARY is unset.
inline constexpr const char* kCudnnDefaultLibrary = "libcudnn.so.9";

// The process-wide cuDNN: SD35_CUDNN_LIBRARY (a path) or libcudnn.so.9, opened on the first
// call and never closed (handles of live backends point into it). Null when unavailable,
// with *reason ("libcudnn.so.9: cannot open shared object file ...") when reason is given.
const CudnnLibrary* shared_cudnn(std::string* reason = nullptr);
// SD35_CUDNN=0 (read at each call; backends read it at creation).
bool cudnn_disabled_by_env();
// For logs and `sd35 generate`: "9.19.0", "off (SD35_CUDNN=0)" or "unavailable: <reason>".
// A backend whose cudnnCreate failed records that reason here too (see note_cudnn_failure).
std::string cudnn_summary();
// Records why a backend could not use the loaded library (cudnnCreate failed, e.g. a
// sub-library such as libcudnn_cnn.so.9 missing) for cudnn_summary().
void note_cudnn_failure(const std::string& reason);

}  // namespace sd35::cuda
