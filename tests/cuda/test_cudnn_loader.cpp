// The run-time cuDNN loader (cudnn_loader.h) without a GPU: a missing file, a library that is
// not cuDNN, and — where this machine has it — the real libcudnn.so.9 (cudnnGetVersion and
// cudnnGetCudartVersion do not touch the device). Built with the CUDA backend only (the
// loader is part of it); runs in CI without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "backend/cuda/cudnn_loader.h"

namespace sd35::cuda {
namespace {

constexpr const char* kToolkitCudnn = "/usr/local/cuda/lib64/libcudnn.so.9";

TEST(CudnnLoader, MissingFileIsAReasonNotACrash) {
  auto lib = CudnnLibrary::open("/nonexistent/libcudnn.so.9");
  ASSERT_FALSE(lib.ok());
#if SD35_CUDNN_HEADERS
  EXPECT_EQ(lib.status().code(), StatusCode::kNotFound) << lib.status().to_string();
  EXPECT_NE(lib.status().message().find("/nonexistent/libcudnn.so.9"), std::string::npos)
      << lib.status().to_string();
#else
  EXPECT_NE(lib.status().message().find("headers"), std::string::npos);
#endif
  EXPECT_FALSE(CudnnLibrary::open("").ok());
}

TEST(CudnnLoader, OtherLibraryReportsMissingSymbols) {
#if !SD35_CUDNN_HEADERS
  GTEST_SKIP() << "built without the cuDNN headers";
#else
  // libm is on every glibc system and exports none of cuDNN's functions.
  auto lib = CudnnLibrary::open("libm.so.6");
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), StatusCode::kUnsupported) << lib.status().to_string();
  EXPECT_NE(lib.status().message().find("missing symbols"), std::string::npos)
      << lib.status().to_string();
  EXPECT_NE(lib.status().message().find("cudnnGetVersion"), std::string::npos)
      << lib.status().to_string();
  EXPECT_NE(lib.status().message().find(" more"), std::string::npos)
      << lib.status().to_string();
#endif
}

TEST(CudnnLoader, ToolkitLibraryLoadsAndReportsVersion9) {
#if !SD35_CUDNN_HEADERS
  GTEST_SKIP() << "built without the cuDNN headers";
#else
  if (!std::filesystem::exists(kToolkitCudnn)) GTEST_SKIP() << kToolkitCudnn << " is absent";
  auto lib = CudnnLibrary::open(kToolkitCudnn);
  ASSERT_TRUE(lib.ok()) << lib.status().to_string();
  EXPECT_EQ((*lib)->version() / 10000, 9u);
  // The headers we compiled against are the toolkit's: same major.minor as the library.
  EXPECT_EQ((*lib)->version() / 100, size_t(CUDNN_VERSION) / 100);
  EXPECT_EQ((*lib)->version_string().rfind("9.", 0), 0u) << (*lib)->version_string();
  EXPECT_EQ((*lib)->cudart_version() / 1000, size_t(CUDART_VERSION / 1000));
  EXPECT_NE((*lib)->api().ConvolutionForward, nullptr);
  // Loading twice is fine (dlopen reference counts); each object closes its own handle.
  auto again = CudnnLibrary::open(kToolkitCudnn);
  EXPECT_TRUE(again.ok());
#endif
}

// One process per test (gtest_discover_tests), so the process-wide load below is the first.
TEST(CudnnLoader, SharedLoadHonoursTheEnvironment) {
  ASSERT_EQ(setenv("SD35_CUDNN_LIBRARY", "/nonexistent/libcudnn.so.9", 1), 0);
  unsetenv("SD35_CUDNN");
  std::string why;
  EXPECT_EQ(shared_cudnn(&why), nullptr);
  EXPECT_FALSE(why.empty());
  const std::string summary = cudnn_summary();
  EXPECT_EQ(summary.rfind("unavailable: ", 0), 0u) << summary;
#if SD35_CUDNN_HEADERS
  EXPECT_NE(summary.find("/nonexistent/libcudnn.so.9"), std::string::npos) << summary;
#endif
  // SD35_CUDNN=0 wins over everything, read at each call.
  ASSERT_EQ(setenv("SD35_CUDNN", "0", 1), 0);
  EXPECT_TRUE(cudnn_disabled_by_env());
  EXPECT_EQ(cudnn_summary(), "off (SD35_CUDNN=0)");
  unsetenv("SD35_CUDNN");
  EXPECT_FALSE(cudnn_disabled_by_env());
  unsetenv("SD35_CUDNN_LIBRARY");
}

}  // namespace
}  // namespace sd35::cuda
