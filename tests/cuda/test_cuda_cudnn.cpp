// conv2d through cuDNN (cudnn_conv.cpp) against the reference, and against the same backend
// with cuDNN off (SD35_CUDNN=0), plus the configurations that must stay on the im2col path.
// Part of cuda_backend_conformance (skipped without a GPU). Whether cuDNN is present depends
// on the machine: the cases compare results either way, and where cuDNN loaded they also
// check which path ran (cudnn_conv_count()).
//
// Tolerances (s = sqrt(C·KH·KW)·max|x|·max|w|, as test_cuda_backend_linear.cpp's conv cases;
// x in [-1, 1], w in [-0.5, 0.5]):
//  * f32 x and y: atol 1e-5·s, rtol 1e-5 — FMA (no TF32) f32 accumulation in another order
//    than the reference's; a TF32 kernel (10-bit inputs) would miss this by ~100x.
//  * bf16 x: a weight stored in another dtype is rounded to bf16 first (2^-9 relative per
//    product, random signs): atol 2^-8·s; a bf16 y is one more rounding: rtol 2^-7 (two ulps).
//  * a 16-bit x with an f32 y on the widened TF32 path gets the same bound as the im2col path
//    it replaces (its products are exact, so it is no worse than that).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cudnn_conv.h"
#include "backend/cuda/cudnn_loader.h"
#include "cuda_test_util.h"

namespace sd35::cudatest {
namespace {

Tol conv_tol(DType xt, DType yt, double s) {
  if (xt == DType::kF32 && yt == DType::kF32) return {1e-5 * s, 1e-5};
  const double a = 1.0 / 256;
  const double r = yt == DType::kBF16 ? 1.0 / 128 : 1e-5;
  return {s * std::max(a, r / 4), r};
}

// The backend under test created its cuDNN handle (the library loaded, cudnnCreate worked).
bool cudnn_active() {
  const std::string s = cuda::cudnn_summary();
  return s.rfind("off", 0) != 0 && s.rfind("unavailable", 0) != 0 &&
         s.find("unusable") == std::string::npos;
}

// kAny: either is right (a shape cuDNN may or may not take; the result is checked anyway).
enum class Path { kCudnn, kIm2col, kAny };

struct Case {
  Shape x;  // the conv's x; with channel_slice it is channels [2, 2 + C) of a wider buffer
  int64_t out, kh, kw;
  Conv2dParams p;
  DType xt, wt, yt;
  int bias = -1;  // -1 none, else a DType
  Path expect;    // where cuDNN is active
  bool channel_slice = false;
  bool nan_y = false;  // y starts as NaN (cuDNN must not blend the old y in)
  bool dense_x = false;  // x without the row padding every other case has
};

std::string describe(const Case& c) {
  return "conv2d x" + c.x.to_string() + " w[" + std::to_string(c.out) + ", " +
         std::to_string(c.kh) + "x" + std::to_string(c.kw) + "] stride " +
         std::to_string(c.p.stride) + " pad " + std::to_string(c.p.pad_top) + "," +
         std::to_string(c.p.pad_left) + "," + std::to_string(c.p.pad_bottom) + "," +
         std::to_string(c.p.pad_right) + " x:" + dt(c.xt) + " w:" + dt(c.wt) + " y:" + dt(c.yt) +
         " bias:" + (c.bias < 0 ? std::string("none") : dt(DType(c.bias))) +
         (c.channel_slice ? " channel-slice" : "") + (c.nan_y ? " nan-y" : "") +
         (c.dense_x ? " dense-x" : "");
}

Shape out_shape(const Case& c) {
  const int64_t hp = c.x[2] + c.p.pad_top + c.p.pad_bottom;
  const int64_t wp = c.x[3] + c.p.pad_left + c.p.pad_right;
  return {c.x[0], c.out, (hp - c.kh) / c.p.stride + 1, (wp - c.kw) / c.p.stride + 1};
}

// Buffers of one case: x (row padding 1, optionally a channel slice), w, y (row padding 2),
// bias; filled and uploaded.
struct Buffers {
  std::unique_ptr<Mirror> x, w, y, b;
  Shape xs, xst;
  int64_t x_off = 0;
  Tensor xv(bool d) { return side(*x, d, xs, xst, x_off); }
  Tensor bv(bool d) { return b ? side(*b, d) : Tensor(); }
};

Buffers make_buffers(const Case& c, uint32_t seed) {
  Buffers b;
  b.xs = c.x;
  if (c.channel_slice) {
    Shape wide = c.x;
    wide[1] += 4;
    b.x = Mirror::make(wide, c.xt, 1);
    b.xst = b.x->host().strides();
    b.x_off = 2 * b.xst[1];
  } else {
    b.x = Mirror::make(c.x, c.xt, c.dense_x ? 0 : 1);
    b.xst = b.x->host().strides();
  }
  b.w = Mirror::make({c.out, c.x[1], c.kh, c.kw}, c.wt);
  b.y = Mirror::make(out_shape(c), c.yt, 2);
  b.x->fill_random(seed, 1.0f);
  b.w->fill_random(seed + 1, 0.5f);
  b.x->upload();
  b.w->upload();
  if (c.bias >= 0) {
    b.b = Mirror::make({c.out}, DType(c.bias));
    b.b->fill_random(seed + 2);
    b.b->upload();
  }
  if (c.nan_y) {
    // All-ones bytes: a NaN in f32, bf16 and f16 alike. The reference overwrites the host
    // view; the device starts from NaN everywhere.
    std::memset(b.y->image().data() + kGuardBytes, 0xFF,
                b.y->image().size() - 2 * size_t(kGuardBytes));
    b.y->upload();
  }
  return b;
}

void run_case(const Case& c, uint32_t seed) {
  Buffers b = make_buffers(c, seed);
  const double s = std::sqrt(double(c.x[1] * c.kh * c.kw)) * 0.5;
  const uint64_t before = cuda::cudnn_conv_count();
  run_and_compare(describe(c), {{b.y.get(), conv_tol(c.xt, c.yt, s)}}, [&](Backend& bk, bool d) {
    Tensor bias = b.bv(d);
    return bk.conv2d(b.xv(d), side(*b.w, d), b.b ? &bias : nullptr, side(*b.y, d), c.p);
  });
  const bool ran_cudnn = cuda::cudnn_conv_count() > before;
  std::printf("  %s: %s\n", describe(c).c_str(), ran_cudnn ? "cuDNN" : "im2col");
  // Configurations cuDNN cannot compute like the reference must never reach it.
  if (c.expect == Path::kIm2col) {
    EXPECT_FALSE(ran_cudnn) << describe(c);
  }
  if (c.expect == Path::kCudnn && cudnn_active()) {
    EXPECT_TRUE(ran_cudnn) << "cuDNN loaded but declined: " << describe(c);
  }
}

TEST(CudaCudnnConv, AgainstReference) {
  std::printf("cuDNN: %s\n", cuda::cudnn_summary().c_str());
  const Conv2dParams same{1, 1, 1, 1, 1}, none{}, down{2, 0, 0, 1, 1};
  const Conv2dParams patch{2, 0, 0, 0, 0};
  const DType f32 = DType::kF32, bf16 = DType::kBF16, f16 = DType::kF16;
  const Case cases[] = {
      // The VAE's 3×3 (bf16 in and out, bf16 bias: the fused bias path) and without bias.
      {{1, 64, 48, 40}, 64, 3, 3, same, bf16, bf16, bf16, int(bf16), Path::kCudnn},
      {{2, 32, 17, 19}, 48, 3, 3, same, bf16, bf16, bf16, -1, Path::kCudnn},
      // f32 (FMA math only), bias of another dtype converted to f32.
      {{1, 32, 40, 24}, 48, 3, 3, same, f32, f32, f32, int(f32), Path::kCudnn},
      {{1, 8, 17, 19}, 12, 3, 3, same, f32, f16, f32, int(bf16), Path::kCudnn},
      // 1×1 (the VAE's shortcut): over dense planes the im2col path's direct GEMM on x runs
      // it (faster), with padded rows cuDNN; a bf16 x with f16 weights (converted to bf16).
      {{2, 32, 9, 7}, 24, 1, 1, none, bf16, bf16, bf16, int(bf16), Path::kCudnn},
      {{2, 32, 9, 7}, 24, 1, 1, none, bf16, bf16, bf16, int(bf16), Path::kIm2col, false, false,
       true},
      {{1, 16, 12, 10}, 20, 3, 3, same, bf16, f16, bf16, -1, Path::kCudnn},
      // The MMDiT patch embedding: f32 x, bf16 w [1536, 16, 2, 2], stride 2, bf16 bias
      // (smaller latent than 128², the reference is slow).
      {{2, 16, 32, 32}, 1536, 2, 2, patch, f32, bf16, f32, int(bf16), Path::kCudnn},
      // A channel slice of a wider x (non-packed channel stride) and a NaN-filled y.
      {{1, 24, 20, 18}, 16, 3, 3, same, bf16, bf16, bf16, int(bf16), Path::kCudnn, true, true},
      {{1, 24, 20, 18}, 16, 3, 3, same, f32, f32, f32, int(f32), Path::kCudnn, true, true},
      // A 16-bit x with an f32 y (the VAE trunk in bf16 mode): x widened to f32 in bands,
      // TF32 math. One band here; the wide cases below have several (64 MiB bands of f32 x:
      // 1 MiB rows, so 64 input rows a band), with stride 1 and with stride 2 so that the
      // halo rows of every band, and the zero rows at the image's top and bottom, count.
      {{1, 32, 20, 16}, 24, 3, 3, same, bf16, bf16, f32, int(bf16), Path::kCudnn},
      {{1, 24, 20, 18}, 16, 3, 3, same, bf16, bf16, f32, int(f32), Path::kCudnn, true, true},
      {{2, 16, 12, 10}, 8, 3, 3, same, bf16, DType::kF8E4M3FN, f32, -1, Path::kCudnn},
      {{1, 16, 9, 7}, 24, 1, 1, none, bf16, bf16, f32, int(bf16), Path::kCudnn},
      {{1, 16, 9, 7}, 24, 1, 1, none, bf16, bf16, f32, int(bf16), Path::kIm2col, false, false,
       true},
      {{1, 2, 140, 131072}, 4, 3, 3, same, bf16, bf16, f32, int(bf16), Path::kAny},
      {{1, 2, 139, 131072}, 4, 3, 3, Conv2dParams{2, 1, 1, 1, 1}, bf16, bf16, f32, -1,
       Path::kAny},
      // Must stay on im2col: asymmetric padding (the VAE encoder's downsampling), a bf16 x
      // with an f32 weight (not a TF32 value: TF32 would round it), a bf16 y with an f32 bias
      // (rounding it to bf16 first would differ), an f32 x with a bf16 y.
      {{1, 16, 16, 14}, 8, 3, 3, down, bf16, bf16, bf16, int(bf16), Path::kIm2col},
      {{1, 16, 16, 14}, 8, 3, 3, down, f32, f32, f32, int(f32), Path::kIm2col},
      {{1, 16, 16, 14}, 8, 3, 3, down, bf16, bf16, f32, int(f32), Path::kIm2col},
      {{1, 32, 20, 16}, 24, 3, 3, same, bf16, f32, f32, int(bf16), Path::kIm2col},
      {{1, 32, 20, 16}, 24, 3, 3, same, bf16, bf16, bf16, int(f32), Path::kIm2col},
      {{1, 32, 20, 16}, 24, 3, 3, same, f32, f32, bf16, -1, Path::kIm2col},
  };
  uint32_t seed = 7000;
  const uint64_t start = cuda::cudnn_conv_count();
  for (const Case& c : cases) run_case(c, seed += 10);
  if (cudnn_active()) {
    // With cuDNN present, at least the bf16 3×3 cases (the point of the cuDNN path) ran on it.
    EXPECT_GE(cuda::cudnn_conv_count() - start, 2u) << "cuDNN loaded but never used";
  } else {
    EXPECT_EQ(cuda::cudnn_conv_count(), start) << "cuDNN unavailable but counted as used";
  }
}

// A second CUDA backend created with SD35_CUDNN=0: every conv on im2col + cuBLASLt.
Result<std::unique_ptr<Backend>> backend_without_cudnn() {
  const char* old = std::getenv("SD35_CUDNN");
  const std::string saved = old ? old : "";
  setenv("SD35_CUDNN", "0", 1);
  auto off = make_cuda_backend(0);
  if (old) {
    setenv("SD35_CUDNN", saved.c_str(), 1);
  } else {
    unsetenv("SD35_CUDNN");
  }
  return off;
}

// Runs c on the backend under test and on one with cuDNN off; both results are within the
// reference tolerance of the exact sum (AgainstReference), so within twice that of each
// other. Where cuDNN is active it must have run.
void compare_with_cudnn_off(Backend& off, const Case& c, uint32_t seed) {
  SCOPED_TRACE(describe(c));
  Buffers b = make_buffers(c, seed);
  auto y2 = Mirror::make(out_shape(c), c.yt, 2);
  const Tensor bias = b.bv(true);
  const Tensor* bp = b.b ? &bias : nullptr;
  const uint64_t n0 = cuda::cudnn_conv_count();
  ASSERT_TRUE(off.conv2d(b.xv(true), b.w->dev(), bp, y2->dev(), c.p).ok());
  ASSERT_TRUE(off.synchronize().ok());
  EXPECT_EQ(cuda::cudnn_conv_count(), n0) << "SD35_CUDNN=0 backend used cuDNN";
  ASSERT_TRUE(cuda().conv2d(b.xv(true), b.w->dev(), bp, b.y->dev(), c.p).ok());
  ASSERT_TRUE(cuda().synchronize().ok());
  if (cudnn_active()) {
    EXPECT_GT(cuda::cudnn_conv_count(), n0) << "cuDNN path not taken";
  }
  b.y->download();
  y2->download();
  Tol tol = conv_tol(c.xt, c.yt, std::sqrt(double(c.x[1] * c.kh * c.kw)) * 0.5);
  tol.atol *= 2, tol.rtol *= 2;
  EXPECT_TRUE(all_close(b.y->host(), y2->host(), tol)) << "cuDNN vs im2col";
}

TEST(CudaCudnnConv, SameResultWithCudnnOff) {
  auto off = backend_without_cudnn();
  ASSERT_TRUE(off.ok()) << off.status().to_string();
  const Conv2dParams same{1, 1, 1, 1, 1};
  const std::pair<DType, DType> dtypes[] = {
      {DType::kBF16, DType::kBF16}, {DType::kF32, DType::kF32}, {DType::kBF16, DType::kF32}};
  for (auto [t, yt] : dtypes) {
    const Case c{{1, 64, 33, 29}, 32, 3, 3, same, t, DType::kBF16, yt, int(DType::kBF16),
                 Path::kCudnn};
    compare_with_cudnn_off(**off, c, 7500);
  }
}

TEST(CudaCudnnConv, VaeSizesInBands) {
  // The VAE decoder's 1024² stage: cuDNN's fused-bias algorithm wants 0.5-1 GiB of workspace
  // for the whole tensor, so the same-dtype conv runs in bands of output rows, and the
  // bf16 -> f32 trunk conv in widened f32 bands; the reference is too slow at this size, so
  // each is compared with the im2col path of a backend with cuDNN off.
  auto off = backend_without_cudnn();
  ASSERT_TRUE(off.ok()) << off.status().to_string();
  const Conv2dParams same{1, 1, 1, 1, 1};
  const DType bf16 = DType::kBF16;
  const Case cases[] = {
      {{1, 128, 1024, 1024}, 128, 3, 3, same, bf16, bf16, bf16, int(bf16), Path::kCudnn},
      {{1, 128, 1024, 1024}, 128, 3, 3, same, bf16, bf16, DType::kF32, int(bf16), Path::kCudnn},
      {{1, 256, 512, 512}, 256, 3, 3, same, bf16, bf16, bf16, int(bf16), Path::kCudnn},
  };
  uint32_t seed = 7600;
  for (const Case& c : cases) compare_with_cudnn_off(**off, c, seed += 10);
}

TEST(CudaCudnnConv, CapturedIntoAGraphAndReplayed) {
  // The MMDiT's patch embedding (f32 x, bf16 w converted in scratch, stride 2) runs inside the
  // captured denoising forward: after one direct run (plans, scratch, workspace warm) the
  // conv must be capturable (no allocation, no synchronisation) and its replay must read the
  // input at replay time and give exactly what a direct run gives (the same kernels).
  if (!cuda().can_capture()) GTEST_SKIP() << "capture is off (SD35_CUDA_PROFILE)";
  const Conv2dParams patch{2, 0, 0, 0, 0}, same{1, 1, 1, 1, 1};
  const Case cases[] = {
      {{2, 16, 32, 32}, 1536, 2, 2, patch, DType::kF32, DType::kBF16, DType::kF32,
       int(DType::kBF16), Path::kCudnn},
      {{1, 32, 24, 20}, 32, 3, 3, same, DType::kBF16, DType::kBF16, DType::kBF16,
       int(DType::kBF16), Path::kCudnn},
  };
  uint32_t seed = 7700;
  for (const Case& c : cases) {
    SCOPED_TRACE(describe(c));
    Buffers b = make_buffers(c, seed += 10);
    const Tensor bias = b.bv(true);
    auto op = [&] { return cuda().conv2d(b.xv(true), b.w->dev(), &bias, b.y->dev(), c.p); };
    ASSERT_TRUE(op().ok());
    ASSERT_TRUE(cuda().synchronize().ok());
    ASSERT_TRUE(cuda().begin_capture().ok());
    const Status captured = op();
    auto work = cuda().end_capture();
    ASSERT_TRUE(captured.ok()) << captured.to_string();
    ASSERT_TRUE(work.ok()) << work.status().to_string();
    b.x->fill_random(seed + 5, 1.0f);  // new input: the replay must see it
    b.x->upload();
    ASSERT_TRUE(cuda().replay(**work).ok());
    ASSERT_TRUE(cuda().synchronize().ok());
    b.y->download();
    const std::vector<uint8_t> replayed = b.y->snapshot();
    ASSERT_TRUE(op().ok());
    ASSERT_TRUE(cuda().synchronize().ok());
    b.y->download();
    EXPECT_TRUE(replayed == b.y->image()) << "the replay differs from a direct run";
  }
}

// Not a conformance check: the VAE decoder's largest convs (late stage, 1024²) with cuDNN on
// and off, so a GPU run shows the gain (the last profile: 14.5 ms, ~21 TFLOP/s, on im2col).
// Inputs are the sentinel bytes (small finite values), never read back.
TEST(CudaCudnnConv, PrintTimings) {
  auto off = backend_without_cudnn();
  ASSERT_TRUE(off.ok()) << off.status().to_string();
  auto time_ms = [](Backend& bk, const std::function<Status(Backend&)>& op, int iters) {
    if (!op(bk).ok() || !bk.synchronize().ok()) return -1.0;  // warm-up: plans, scratch
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i)
      if (!op(bk).ok()) return -1.0;
    if (!bk.synchronize().ok()) return -1.0;
    auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::milli>(t1 - t0).count() / iters;
  };
  const int64_t C = 128, H = 1024, W = 1024;
  const Shape xs{1, C, H, W}, ws{C, C, 3, 3}, bs{C};
  const Conv2dParams same{1, 1, 1, 1, 1};
  auto x = std::make_unique<Mirror>(xs.numel(), DType::kBF16);
  auto w = std::make_unique<Mirror>(ws.numel(), DType::kBF16);
  auto b = std::make_unique<Mirror>(C, DType::kBF16);
  auto y = std::make_unique<Mirror>(xs.numel(), DType::kF32);  // room for an f32 y
  for (DType yt : {DType::kBF16, DType::kF32}) {
    auto op = [&](Backend& bk) {
      const Tensor bias = b->dev(bs, contiguous_strides(bs));
      return bk.conv2d(x->dev(xs, contiguous_strides(xs)), w->dev(ws, contiguous_strides(ws)),
                       &bias, Tensor::strided_view_of(y->dev(xs, contiguous_strides(xs)).data(),
                                                      yt, xs, contiguous_strides(xs),
                                                      Device::kCUDA),
                       same);
    };
    const uint64_t n0 = cuda::cudnn_conv_count();
    const double on = time_ms(cuda(), op, 3);
    const bool used = cuda::cudnn_conv_count() > n0;
    const double im2col = time_ms(**off, op, 3);
    const double flop = 2.0 * C * C * 9 * H * W;
    std::printf("perf: conv2d bf16 3x3 %lld->%lld at %lldx%lld, y %s, bf16 bias: %s %.3f ms "
                "(%.1f TFLOP/s), im2col %.3f ms (%.1f TFLOP/s)\n",
                (long long)C, (long long)C, (long long)H, (long long)W, dt(yt).c_str(),
                used ? "cuDNN" : "default path", on, on > 0 ? flop / (on * 1e9) : 0.0, im2col,
                im2col > 0 ? flop / (im2col * 1e9) : 0.0);
    EXPECT_GT(on, 0.0);
    EXPECT_GT(im2col, 0.0);
  }
}

}  // namespace
}  // namespace sd35::cudatest
