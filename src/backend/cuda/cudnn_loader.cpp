#include "backend/cuda/cudnn_loader.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string_view>
#include <type_traits>

namespace sd35::cuda {

CudnnLibrary::~CudnnLibrary() {
  if (handle_) dlclose(handle_);
}

std::string CudnnLibrary::version_string() const {
  // cuDNN 9 encodes major·10000 + minor·100 + patch.
  return std::to_string(version_ / 10000) + "." + std::to_string(version_ / 100 % 100) + "." +
         std::to_string(version_ % 100);
}

Result<std::unique_ptr<CudnnLibrary>> CudnnLibrary::open(const std::string& path) {
#if !SD35_CUDNN_HEADERS
  (void)path;
  return unsupported("built without the cuDNN headers (cudnn.h), so cuDNN is not used");
#else
  if (path.empty()) return invalid_argument("cudnn: empty library path");
  dlerror();  // clear a stale message
  // RTLD_LOCAL: cuDNN's symbols stay out of the global namespace (nothing else should bind
  // to them); RTLD_NOW: an unresolvable dependency fails here rather than at a later call.
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return not_found("cannot load " + path + ": " + (e ? e : "dlopen failed"));
  }
  std::unique_ptr<CudnnLibrary> lib(new CudnnLibrary());
  lib->handle_ = h;
  // The first few missing names (a wrong library misses all 24: keep the log line short).
  std::string missing;
  int n_missing = 0;
  auto resolve = [&](auto& fn, const char* name) {
    void* p = dlsym(h, name);
    if (!p && ++n_missing <= 3) missing += std::string(n_missing > 1 ? ", " : "") + name;
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
  };
  CudnnApi& a = lib->api_;
#define SD35_CUDNN_RESOLVE(name) resolve(a.name, "cudnn" #name)
  SD35_CUDNN_RESOLVE(GetVersion);
  SD35_CUDNN_RESOLVE(GetCudartVersion);
  SD35_CUDNN_RESOLVE(GetErrorString);
  SD35_CUDNN_RESOLVE(Create);
  SD35_CUDNN_RESOLVE(Destroy);
  SD35_CUDNN_RESOLVE(SetStream);
  SD35_CUDNN_RESOLVE(CreateTensorDescriptor);
  SD35_CUDNN_RESOLVE(DestroyTensorDescriptor);
  SD35_CUDNN_RESOLVE(SetTensor4dDescriptorEx);
  SD35_CUDNN_RESOLVE(CreateFilterDescriptor);
  SD35_CUDNN_RESOLVE(DestroyFilterDescriptor);
  SD35_CUDNN_RESOLVE(SetFilter4dDescriptor);
  SD35_CUDNN_RESOLVE(CreateConvolutionDescriptor);
  SD35_CUDNN_RESOLVE(DestroyConvolutionDescriptor);
  SD35_CUDNN_RESOLVE(SetConvolution2dDescriptor);
  SD35_CUDNN_RESOLVE(SetConvolutionMathType);
  SD35_CUDNN_RESOLVE(GetConvolution2dForwardOutputDim);
  SD35_CUDNN_RESOLVE(GetConvolutionForwardAlgorithm_v7);
  SD35_CUDNN_RESOLVE(GetConvolutionForwardWorkspaceSize);
  SD35_CUDNN_RESOLVE(ConvolutionForward);
  SD35_CUDNN_RESOLVE(ConvolutionBiasActivationForward);
  SD35_CUDNN_RESOLVE(CreateActivationDescriptor);
  SD35_CUDNN_RESOLVE(DestroyActivationDescriptor);
  SD35_CUDNN_RESOLVE(SetActivationDescriptor);
#undef SD35_CUDNN_RESOLVE
  if (n_missing > 0) {
    if (n_missing > 3) missing += " and " + std::to_string(n_missing - 3) + " more";
    return unsupported(path + " is not a usable cuDNN: missing symbols " + missing);
  }
  lib->version_ = a.GetVersion();
  lib->cudart_version_ = a.GetCudartVersion();
  // The legacy API's signatures and enums used here are cuDNN 9's (8 differs, 10 may).
  if (lib->version_ / 10000 != 9)
    return unsupported(path + " is cuDNN " + lib->version_string() + ", need 9.x");
  // A cuDNN built for another CUDA major (12 vs our 13) may need a runtime/driver this
  // process does not have; the minor may differ (forward compatibility within a major).
  if (lib->cudart_version_ / 1000 != size_t(CUDART_VERSION / 1000))
    return unsupported(path + " (cuDNN " + lib->version_string() + ") is built for CUDA " +
                       std::to_string(lib->cudart_version_ / 1000) + ".x, this binary for CUDA " +
                       std::to_string(CUDART_VERSION / 1000) + ".x");
  return lib;
#endif
}

namespace {

std::mutex g_mutex;
std::unique_ptr<CudnnLibrary> g_library;  // never reset once loaded
std::string g_reason;                     // why g_library is null, or a backend's failure
bool g_tried = false;

void load_locked() {
  if (g_tried) return;
  g_tried = true;
  const char* env = std::getenv("SD35_CUDNN_LIBRARY");
  const std::string path = env && *env ? env : kCudnnDefaultLibrary;
  auto lib = CudnnLibrary::open(path);
  if (lib.ok()) {
    g_library = std::move(lib).value();
  } else {
    g_reason = lib.status().message();
  }
}

}  // namespace

const CudnnLibrary* shared_cudnn(std::string* reason) {
  std::lock_guard<std::mutex> lock(g_mutex);
  load_locked();
  if (!g_library && reason) *reason = g_reason;
  return g_library.get();
}

bool cudnn_disabled_by_env() {
  const char* v = std::getenv("SD35_CUDNN");
  return v && std::string_view(v) == "0";
}

void note_cudnn_failure(const std::string& reason) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_reason = reason;
}

std::string cudnn_summary() {
  if (cudnn_disabled_by_env()) return "off (SD35_CUDNN=0)";
  std::lock_guard<std::mutex> lock(g_mutex);
  load_locked();
  if (!g_library) return "unavailable: " + g_reason;
  if (!g_reason.empty())
    return g_library->version_string() + " (unusable: " + g_reason + ")";
  return g_library->version_string();
}

}  // namespace sd35::cuda
