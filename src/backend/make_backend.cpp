#include "backend/make_backend.h"

#include "backend/cuda/cuda_backend.h"

namespace sd35 {

Result<std::unique_ptr<Backend>> make_backend_by_name(std::string_view name,
                                                      const BackendSpec& spec) {
  std::unique_ptr<Backend> b;
  if (name == "cpu") {
    b = make_cpu_backend(spec.threads);
  } else if (name == "reference") {
    b = make_reference_backend();
  } else if (name == "cuda") {
    if (spec.device < 0) return invalid_argument("the CUDA device index must be >= 0");
    return make_cuda_backend(spec.device);
  } else {
    return invalid_argument("backend must be cpu, reference or cuda, not '" + std::string(name) +
                            "'");
  }
  if (!b) return unsupported("backend '" + std::string(name) + "' is not available");
  return b;
}

}  // namespace sd35
