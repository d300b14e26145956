// Runs on every machine: without CUDA support or without a GPU, the CUDA entry points must
// fail with a clear Status (never crash, never print); with a GPU, they must work.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"

namespace sd35 {
namespace {

TEST(CudaAvailability, DeviceCountIsSaneAndSilent) {
  const int n = cuda_device_count();
  EXPECT_GE(n, 0);
  if (!cuda_compiled()) {
    EXPECT_EQ(n, 0);
  }
}

TEST(CudaAvailability, MakeBackendFailsCleanlyWithoutDevice) {
  auto backend = make_cuda_backend(0);
  if (cuda_device_count() > 0) {
    ASSERT_TRUE(backend.ok()) << backend.status().to_string();
    EXPECT_EQ((*backend)->device(), Device::kCUDA);
    EXPECT_EQ((*backend)->name(), "cuda");
    return;
  }
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), StatusCode::kUnsupported);
  EXPECT_FALSE(backend.status().message().empty());
  if (!cuda_compiled()) {
    EXPECT_NE(backend.status().message().find("no CUDA support"), std::string::npos)
        << backend.status().message();
  }
}

TEST(CudaAvailability, OtherEntryPointsFailCleanlyWithoutDevice) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_FALSE(cuda_device_info(0).ok());
  EXPECT_FALSE(cuda_weight_memory(0).ok());
  EXPECT_FALSE(make_cuda_backend(-1).ok());
  EXPECT_FALSE(make_cuda_backend(7).ok());
}

TEST(CudaAvailability, BadDeviceIndexIsAnError) {
  const int n = cuda_device_count();
  auto backend = make_cuda_backend(n + 3);
  EXPECT_FALSE(backend.ok());
  auto info = cuda_device_info(-1);
  EXPECT_FALSE(info.ok());
}

}  // namespace
}  // namespace sd35
