// One place that turns a backend name into a Backend, for the engine and the CLI commands:
// "cpu", "reference", or "cuda" (which fails with a clear Unsupported status in a build
// without CUDA, or when the device does not exist).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "backend/backend.h"
#include "sd35/status.h"

namespace sd35 {

struct BackendSpec {
  int threads = 0;  // cpu: worker threads, <= 0: all CPUs
  int device = 0;   // cuda: device index
};

Result<std::unique_ptr<Backend>> make_backend_by_name(std::string_view name,
                                                      const BackendSpec& spec = {});

}  // namespace sd35
