// sd35::cuda::launch_attention against a host f64 reference computed from the same
// (dtype-rounded) inputs. Standalone: plain cudaMalloc/cudaMemcpy, no backend class.
//
// Every case prints one line: the kernel path, how many values were compared, the largest
// error and the largest error/tolerance ratio (the test fails when that ratio exceeds 1).
// Large problems compare a sample of rows (first/last rows of the sequence, which exercise
// the tail tiles, plus a strided spread) to keep the host reference to a few seconds.
//
// Tolerances (per output element, reference r, computed in f64 from the rounded inputs):
//   f32   |err| <= 1e-4·(1 + |r|): the golden-mode requirement; f32 FMA math with exact exp2f
//         lands around 1e-6.
//   bf16/f16 (u = 2^-8 for bf16, 2^-11 for f16: the relative half-ulp bound of rounding)
//         |err| <= u·|r|                       the single rounding of out on store, plus
//                  + 4·u·sqrt(Σ_j w_j²(v_j - r)²)  rounding of the softmax weights P to the
//                                               input dtype before the P·V tensor-core
//                                               product: each w_j gets a relative error
//                                               δ_j ≤ u, err = Σ_j w_j δ_j (v_j - r); the
//                                               factor 4 covers independent δ_j at > 4σ and
//                                               the single-dominant-weight worst case
//                  + 1e-5                       f32 accumulation / ex2.approx noise.
//         The second term is far tighter than the worst case u·max|v| (which would hide a
//         one-key masking bug on a 65-key sequence); with diffuse softmaxes it is ~u/√L.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/attention.h"
#include "backend/cuda/attention_kernels.cuh"
#include "core/float_convert.h"

namespace sd35::cuda {
namespace {

bool have_device() {
  static const bool ok = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      (void)cudaGetLastError();
      std::printf("no CUDA device: skipping (%s)\n",
                  e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
      return false;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
      std::printf("CUDA device 0: %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor,
                  prop.multiProcessorCount);
    return true;
  }();
  return ok;
}

#define REQUIRE_DEVICE()                                            \
  do {                                                              \
    if (!have_device()) GTEST_SKIP() << "no CUDA device: skipping"; \
  } while (0)

#define CUDA_OK(expr)                                                                  \
  do {                                                                                 \
    const cudaError_t e_ = (expr);                                                     \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_)              \
                               << " (a sticky error here fails every later case too)"; \
  } while (0)

// Deterministic uniform numbers (xorshift64*): fast enough for ~40M values.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  float uniform(float lo, float hi) {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    const uint64_t r = s * 0x2545F4914F6CDD1Dull;
    return lo + (hi - lo) * float(double(r >> 40) / double(1ull << 24));
  }
};

size_t elem_size(DType t) { return t == DType::kF32 ? 4 : 2; }
float round_to(DType t, float x) {
  if (t == DType::kBF16) return bf16_to_f32(f32_to_bf16(x));
  if (t == DType::kF16) return f16_to_f32(f32_to_f16(x));
  return x;
}
void store(DType t, float x, uint8_t* p) {
  if (t == DType::kF32) {
    std::memcpy(p, &x, 4);
  } else {
    const uint16_t h = t == DType::kBF16 ? f32_to_bf16(x) : f32_to_f16(x);
    std::memcpy(p, &h, 2);
  }
}
float load(DType t, const uint8_t* p) {
  if (t == DType::kF32) {
    float x;
    std::memcpy(&x, p, 4);
    return x;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return t == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
}
const char* name_of(DType t) {
  return t == DType::kF32 ? "f32" : t == DType::kBF16 ? "bf16" : "f16";
}

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&p, bytes) != cudaSuccess) p = nullptr;
  }
  ~DeviceBuffer() {
    if (p) (void)cudaFree(p);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  uint8_t* bytes() const { return static_cast<uint8_t*>(p); }
};

struct Spec {
  DType dtype = DType::kBF16;
  int batch = 1, heads = 1, head_dim = 64, lq = 64, lk = 64;
  bool fused = false;  // q/k/v are slices of one [B, L, 3·H·D] buffer (needs lq == lk)
  int row_pad = 0;     // extra elements per row of separate q/k/v and of out
  bool causal = false, bias = false;
  float q_gain = 1.0f;         // scales q: larger gives peakier softmaxes
  int max_rows = 0;            // compared rows per (batch, head); 0: all
  int max_heads = 0;           // compared heads; 0: all
  bool force_generic = false;  // run detail::launch_generic instead of launch_attention
  int flash_config = -1;       // >= 0: run detail::launch_flash_d64 with this FlashConfig
  uint64_t seed = 1;
};

std::string describe(const Spec& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s B=%d H=%d D=%d lq=%d lk=%d%s%s%s%s%s", name_of(s.dtype),
                s.batch, s.heads, s.head_dim, s.lq, s.lk, s.fused ? " fused-qkv" : "",
                s.row_pad ? " padded-rows" : "", s.causal ? " causal" : "", s.bias ? " bias" : "",
                s.force_generic ? " [forced generic]" : "");
  std::string r = buf;
  if (s.flash_config >= 0)
    r += std::string(" [") + detail::flash_config_name(detail::FlashConfig(s.flash_config)) + "]";
  return r;
}

const char* path_of(const Spec& s, const AttentionArgs& a) {
  if (s.force_generic) return "generic (forced)";
  if (s.flash_config >= 0) return "flash (forced config)";
  int major = 0;
  (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  return major >= 8 && detail::flash_d64_supported(a) ? "flash tensor-core" : "generic";
}

std::vector<int> sample(int n, int max) {
  std::vector<int> r;
  if (max <= 0 || n <= max) {
    for (int i = 0; i < n; ++i) r.push_back(i);
    return r;
  }
  const int edge = std::min(max / 4, 70);  // both ends: first tile and the tail tile
  for (int i = 0; i < edge; ++i) r.push_back(i), r.push_back(n - 1 - i);
  const int rest = max - 2 * edge;
  for (int k = 0; k < rest; ++k) r.push_back(edge + int((int64_t(k) * (n - 2 * edge)) / rest));
  std::sort(r.begin(), r.end());
  r.erase(std::unique(r.begin(), r.end()), r.end());
  return r;
}

// Runs one case and compares; failures report the first few mismatches.
void run_case(const Spec& s) {
  SCOPED_TRACE(describe(s));
  const int B = s.batch, H = s.heads, D = s.head_dim, HD = H * D;
  const size_t es = elem_size(s.dtype);
  ASSERT_TRUE(!s.fused || s.lq == s.lk);

  // Host copies (already rounded to the dtype) in the device layout.
  const int64_t qkv_row = s.fused ? 3 * int64_t(HD) : HD + s.row_pad;
  const int64_t q_sl = qkv_row, k_sl = qkv_row, v_sl = qkv_row;
  const int64_t q_sb = q_sl * s.lq, k_sb = k_sl * s.lk, v_sb = v_sl * s.lk;
  const int64_t o_sl = HD + s.row_pad, o_sb = o_sl * s.lq;
  const size_t n_q = size_t(q_sb) * B, n_kv = size_t(k_sb) * B;
  std::vector<float> hq, hk, hv;
  Rng rng(s.seed);
  auto fill = [&](std::vector<float>& v, size_t n, float gain) {
    v.resize(n);
    for (size_t i = 0; i < n; ++i) v[i] = round_to(s.dtype, gain * rng.uniform(-1.7f, 1.7f));
  };
  if (s.fused) {
    fill(hq, n_q, 1.0f);  // one buffer; q's slice gets the gain below
    if (s.q_gain != 1.0f)
      for (size_t r = 0; r < n_q / size_t(qkv_row); ++r)
        for (int f = 0; f < HD; ++f)
          hq[r * qkv_row + f] = round_to(s.dtype, hq[r * qkv_row + f] * s.q_gain);
  } else {
    fill(hq, n_q, s.q_gain);
    fill(hk, n_kv, 1.0f);
    fill(hv, n_kv, 1.0f);
  }
  const float* q_h = hq.data();
  const float* k_h = s.fused ? hq.data() + HD : hk.data();
  const float* v_h = s.fused ? hq.data() + 2 * HD : hv.data();
  std::vector<float> hbias;
  if (s.bias) {
    hbias.resize(size_t(H) * s.lq * s.lk);
    for (float& x : hbias) x = rng.uniform(-3.0f, 3.0f);
  }

  auto upload = [&](const std::vector<float>& v, DeviceBuffer& d) {
    std::vector<uint8_t> bytes(v.size() * es);
    for (size_t i = 0; i < v.size(); ++i) store(s.dtype, v[i], bytes.data() + i * es);
    return cudaMemcpy(d.p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice);
  };
  DeviceBuffer dq(n_q * es), dk(s.fused ? 16 : n_kv * es), dv(s.fused ? 16 : n_kv * es);
  ASSERT_TRUE(dq.p && dk.p && dv.p) << "cudaMalloc failed";
  CUDA_OK(upload(hq, dq));
  if (!s.fused) {
    CUDA_OK(upload(hk, dk));
    CUDA_OK(upload(hv, dv));
  }
  DeviceBuffer dbias(s.bias ? hbias.size() * 4 : 16);
  ASSERT_TRUE(dbias.p);
  if (s.bias) CUDA_OK(cudaMemcpy(dbias.p, hbias.data(), hbias.size() * 4, cudaMemcpyHostToDevice));

  // Output with 256 guard bytes on each side; row padding is also checked untouched.
  constexpr size_t kGuard = 256;
  constexpr uint8_t kSentinel = 0xA5;
  const size_t out_bytes = size_t(o_sb) * B * es;
  DeviceBuffer dout(out_bytes + 2 * kGuard);
  ASSERT_TRUE(dout.p);
  CUDA_OK(cudaMemset(dout.p, kSentinel, out_bytes + 2 * kGuard));

  AttentionArgs a{};
  a.q = dq.p;
  a.k = s.fused ? static_cast<const void*>(dq.bytes() + HD * es) : dk.p;
  a.v = s.fused ? static_cast<const void*>(dq.bytes() + 2 * HD * es) : dv.p;
  a.out = dout.bytes() + kGuard;
  a.dtype = s.dtype;
  a.batch = B, a.heads = H, a.head_dim = D, a.lq = s.lq, a.lk = s.lk;
  a.q_sb = q_sb, a.q_sl = q_sl, a.k_sb = k_sb, a.k_sl = k_sl, a.v_sb = v_sb, a.v_sl = v_sl;
  a.o_sb = o_sb, a.o_sl = o_sl;
  a.scale = 1.0f / std::sqrt(float(D));
  a.causal = s.causal;
  a.bias = s.bias ? static_cast<const float*>(dbias.p) : nullptr;

  const char* path = path_of(s, a);
  if (s.force_generic) {
    const char* kernel = "?";
    const cudaError_t e = detail::launch_generic(a, nullptr, &kernel);
    ASSERT_EQ(e, cudaSuccess) << kernel << ": " << cudaGetErrorString(e);
  } else if (s.flash_config >= 0) {
    ASSERT_TRUE(detail::flash_d64_supported(a));
    const char* kernel = "?";
    const cudaError_t e =
        detail::launch_flash_d64(a, detail::FlashConfig(s.flash_config), nullptr, &kernel);
    ASSERT_EQ(e, cudaSuccess) << kernel << ": " << cudaGetErrorString(e);
  } else {
    const Status st = launch_attention(a, nullptr);
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint8_t> got(out_bytes + 2 * kGuard);
  CUDA_OK(cudaMemcpy(got.data(), dout.p, got.size(), cudaMemcpyDeviceToHost));

  // Sentinel: guard bands and row padding untouched.
  int64_t bad_guard = 0, first_bad = -1;
  auto check_byte = [&](size_t i) {
    if (got[i] != kSentinel && bad_guard++ == 0) first_bad = int64_t(i) - int64_t(kGuard);
  };
  for (size_t i = 0; i < kGuard; ++i) check_byte(i), check_byte(kGuard + out_bytes + i);
  if (s.row_pad)
    for (int64_t r = 0; r < int64_t(B) * s.lq; ++r)
      for (size_t i = size_t(HD) * es; i < size_t(o_sl) * es; ++i)
        check_byte(kGuard + size_t(r) * o_sl * es + i);
  EXPECT_EQ(bad_guard, 0) << bad_guard << " bytes outside the output view were written; first "
                          << "at byte offset " << first_bad << " from out";

  // Compare sampled rows against the f64 reference.
  const double u = s.dtype == DType::kBF16 ? 1.0 / 256 : s.dtype == DType::kF16 ? 1.0 / 2048 : 0;
  const std::vector<int> rows = sample(s.lq, s.max_rows);
  std::vector<int> heads = sample(H, s.max_heads);
  std::vector<double> sc(s.lk), ref(D), var(D);
  double max_err = 0, worst_ratio = 0, max_ref = 0;
  int64_t compared = 0, failures = 0;
  std::string worst;
  for (int b = 0; b < B; ++b) {
    for (int h : heads) {
      for (int i : rows) {
        const float* qr = q_h + b * q_sb + i * q_sl + h * D;
        double mx = -INFINITY;
        const int jend = s.causal ? std::min(s.lk, i + 1) : s.lk;
        for (int j = 0; j < jend; ++j) {
          const float* kr = k_h + b * k_sb + j * k_sl + h * D;
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += double(qr[d]) * kr[d];
          sc[j] = dot * double(a.scale) + (s.bias ? hbias[(size_t(h) * s.lq + i) * s.lk + j] : 0.0);
          mx = std::max(mx, sc[j]);
        }
        double l = 0;
        for (int j = 0; j < jend; ++j) l += (sc[j] = std::exp(sc[j] - mx));
        std::fill(ref.begin(), ref.end(), 0.0);
        std::fill(var.begin(), var.end(), 0.0);
        for (int j = 0; j < jend; ++j) {
          const float* vr = v_h + b * v_sb + j * v_sl + h * D;
          const double w = sc[j] / l;
          for (int d = 0; d < D; ++d) ref[d] += w * vr[d];
        }
        if (u > 0) {
          for (int j = 0; j < jend; ++j) {
            const float* vr = v_h + b * v_sb + j * v_sl + h * D;
            const double w = sc[j] / l;
            for (int d = 0; d < D; ++d) var[d] += w * w * (vr[d] - ref[d]) * (vr[d] - ref[d]);
          }
        }
        for (int d = 0; d < D; ++d) {
          const float o =
              load(s.dtype, got.data() + kGuard + (b * o_sb + i * o_sl + h * D + d) * es);
          const double r = ref[d];
          const double tol = u > 0 ? u * std::fabs(r) + 4 * u * std::sqrt(var[d]) + 1e-5
                                   : 1e-4 * (1 + std::fabs(r));
          const double err = std::fabs(double(o) - r);
          const double ratio = std::isfinite(o) ? err / tol : INFINITY;
          ++compared;
          max_ref = std::max(max_ref, std::fabs(r));
          if (std::isfinite(err)) max_err = std::max(max_err, err);
          if (ratio > worst_ratio || !std::isfinite(ratio)) {
            worst_ratio = ratio;
            char buf[200];
            std::snprintf(buf, sizeof buf, "b=%d h=%d row=%d d=%d: got %.7g, ref %.7g, tol %.3g", b,
                          h, i, d, o, r, tol);
            worst = buf;
          }
          if (!(ratio <= 1.0) && failures++ < 5)
            ADD_FAILURE() << "mismatch at b=" << b << " h=" << h << " row=" << i << " d=" << d
                          << ": got " << o << ", ref " << r << ", |err| " << err << " > tol "
                          << tol;
        }
      }
    }
  }
  std::printf("  [%s] %s: %lld values, max|ref| %.3g, max|err| %.3g, worst err/tol %.3f (%s)%s\n",
              path, describe(s).c_str(), (long long)compared, max_ref, max_err, worst_ratio,
              worst.c_str(), failures ? "  <-- FAILED" : "");
  EXPECT_EQ(failures, 0) << failures << " of " << compared << " values out of tolerance";
}

Spec mmdit(DType t, int B, int L) {
  Spec s;
  s.dtype = t, s.batch = B, s.heads = 24, s.head_dim = 64, s.lq = s.lk = L, s.fused = true;
  return s;
}

// --- argument checks: no device needed -------------------------------------------------

TEST(CudaAttention, RejectsBadArguments) {
  AttentionArgs a{};
  int dummy = 0;
  a.q = a.k = a.v = &dummy;
  a.out = &dummy;
  a.dtype = DType::kBF16;
  a.batch = 1, a.heads = 1, a.head_dim = 64, a.lq = 4, a.lk = 4;
  a.q_sb = a.k_sb = a.v_sb = a.o_sb = 256;
  a.q_sl = a.k_sl = a.v_sl = a.o_sl = 64;
  a.scale = 0.125f;
  auto code = [&](AttentionArgs x) { return launch_attention(x, nullptr).code(); };
  AttentionArgs x = a;
  x.head_dim = 513;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.head_dim = 0;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.dtype = DType::kF64;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.lk = 0;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.heads = 0;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.q = nullptr;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.scale = NAN;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.k_sl = -64;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  x = a, x.heads = 70000;
  EXPECT_EQ(code(x), StatusCode::kInvalidArgument);
  // Empty work is a no-op (returns before touching the device or the pointers).
  x = a, x.batch = 0;
  EXPECT_TRUE(launch_attention(x, nullptr).ok());
  x = a, x.lq = 0, x.lk = 0;
  EXPECT_TRUE(launch_attention(x, nullptr).ok());
}

// --- the tensor-core path (bf16/f16, D = 64, no mask) -----------------------------------

TEST(CudaAttention, MmditShort) {  // 512² image: text 154 tokens alone, then joint
  REQUIRE_DEVICE();
  run_case(mmdit(DType::kBF16, 2, 154));
  Spec s = mmdit(DType::kBF16, 2, 1178);
  s.max_rows = 200, s.max_heads = 6;
  run_case(s);
}

TEST(CudaAttention, Mmdit1024Joint) {  // the hot path: 4096 + 154 tokens, sampled
  REQUIRE_DEVICE();
  Spec s = mmdit(DType::kBF16, 2, 4250);
  s.max_rows = 96, s.max_heads = 3;
  run_case(s);
  s = mmdit(DType::kBF16, 1, 4096);  // dual-attention: image tokens only
  s.max_rows = 96, s.max_heads = 2, s.seed = 2;
  run_case(s);
}

TEST(CudaAttention, F16) {
  REQUIRE_DEVICE();
  Spec s = mmdit(DType::kF16, 2, 1178);
  s.max_rows = 200, s.max_heads = 4;
  run_case(s);
}

TEST(CudaAttention, Tails) {  // lq/lk not multiples of the 64/128-row tiles, lq != lk
  REQUIRE_DEVICE();
  for (DType t : {DType::kBF16, DType::kF16}) {
    const std::vector<std::pair<int, int>> shapes = {{1, 1},   {1, 77},   {77, 77},  {65, 65},
                                                     {130, 1}, {63, 200}, {200, 65}, {129, 4250}};
    for (auto [lq, lk] : shapes) {
      Spec s;
      s.dtype = t, s.batch = 2, s.heads = 3, s.lq = lq, s.lk = lk, s.row_pad = 8;
      s.seed = uint64_t(lq * 1000 + lk);
      run_case(s);
    }
  }
}

TEST(CudaAttention, PeakySoftmax) {  // scores of std ~8: stresses the running max rescaling
  REQUIRE_DEVICE();
  Spec s = mmdit(DType::kBF16, 1, 1000);
  s.heads = 4, s.q_gain = 8.0f;
  run_case(s);
}

TEST(CudaAttention, MisalignedViewUsesGenericPath) {  // row stride not a multiple of 8
  REQUIRE_DEVICE();
  Spec s;
  s.dtype = DType::kBF16, s.batch = 1, s.heads = 2, s.lq = 100, s.lk = 100, s.row_pad = 3;
  run_case(s);
}

constexpr int kFlashConfigs = 4;  // the FlashConfig enumerators

// The dispatcher picks one CTA shape per problem; each must be right.
TEST(CudaAttention, EveryFlashConfigMmdit) {
  REQUIRE_DEVICE();
  for (int c = 0; c < kFlashConfigs; ++c) {
    Spec s = mmdit(DType::kBF16, 2, 1178);
    s.max_rows = 150, s.max_heads = 3, s.flash_config = c;
    run_case(s);
    s.dtype = DType::kF16, s.seed = 7;
    run_case(s);
  }
}

TEST(CudaAttention, EveryFlashConfigTails) {
  REQUIRE_DEVICE();
  for (int c = 0; c < kFlashConfigs; ++c) {
    const std::vector<std::pair<int, int>> shapes = {{1, 77}, {65, 65}, {200, 65}, {129, 4250}};
    for (auto [lq, lk] : shapes) {
      Spec t;
      t.batch = 2, t.heads = 3, t.lq = lq, t.lk = lk, t.row_pad = 8, t.flash_config = c;
      t.seed = uint64_t(lq * 1000 + lk + c);
      run_case(t);
    }
  }
}

TEST(CudaAttention, GenericMatchesOnFlashShapes) {  // cross-check when the flash path fails
  REQUIRE_DEVICE();
  Spec s = mmdit(DType::kBF16, 2, 1178);
  s.max_rows = 100, s.max_heads = 3, s.force_generic = true;
  run_case(s);
}

// --- the generic path -------------------------------------------------------------------

TEST(CudaAttention, F32Golden) {
  REQUIRE_DEVICE();
  run_case(mmdit(DType::kF32, 2, 154));
  Spec s = mmdit(DType::kF32, 1, 1178);
  s.max_rows = 100, s.max_heads = 4;
  run_case(s);
  for (int lk : {1, 65}) {
    Spec t;
    t.dtype = DType::kF32, t.heads = 2, t.lq = 70, t.lk = lk, t.row_pad = 5;
    run_case(t);
  }
}

TEST(CudaAttention, VaeSingleHeadD512) {
  REQUIRE_DEVICE();
  for (DType t : {DType::kF32, DType::kBF16}) {
    for (int L : {1024, 4096}) {
      Spec s;
      s.dtype = t, s.heads = 1, s.head_dim = 512, s.lq = s.lk = L;
      s.max_rows = L > 1024 ? 96 : 160;
      run_case(s);
    }
  }
}

TEST(CudaAttention, OtherHeadDims) {  // each generic instantiation
  REQUIRE_DEVICE();
  for (int D : {8, 40, 96, 200, 300}) {
    Spec s;
    s.dtype = DType::kF32, s.heads = 2, s.head_dim = D, s.lq = 50, s.lk = 70;
    run_case(s);
  }
}

TEST(CudaAttention, CausalClip) {
  REQUIRE_DEVICE();
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    Spec s;
    s.dtype = t, s.batch = 2, s.heads = 12, s.lq = s.lk = 77, s.fused = true, s.causal = true;
    run_case(s);
  }
  Spec g;  // CLIP-G head count; lq > 32·... spans several CTAs and key tiles
  g.dtype = DType::kF32, g.heads = 20, g.lq = g.lk = 77, g.causal = true;
  run_case(g);
}

TEST(CudaAttention, BiasT5) {
  REQUIRE_DEVICE();
  for (int L : {77, 120}) {
    Spec s;
    s.dtype = DType::kF32, s.heads = 64, s.lq = s.lk = L, s.fused = true, s.bias = true;
    s.max_heads = 16;
    run_case(s);
  }
  Spec c;  // bias and causal together, bf16
  c.dtype = DType::kBF16, c.heads = 4, c.lq = c.lk = 120, c.bias = true, c.causal = true;
  run_case(c);
}

// --- timing (printed, not asserted) ----------------------------------------------------

// config < 0: through launch_attention's dispatch; else that FlashConfig directly.
double time_ms(const AttentionArgs& a, int iters, int config) {
  cudaEvent_t e0, e1;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) return -1;
  auto launch = [&] {
    const char* kernel;
    if (config < 0)
      (void)launch_attention(a, nullptr);
    else
      (void)detail::launch_flash_d64(a, detail::FlashConfig(config), nullptr, &kernel);
  };
  for (int i = 0; i < 3; ++i) launch();  // warm-up
  (void)cudaEventRecord(e0);
  for (int i = 0; i < iters; ++i) launch();
  (void)cudaEventRecord(e1);
  (void)cudaEventSynchronize(e1);
  float ms = 0;
  (void)cudaEventElapsedTime(&ms, e0, e1);
  (void)cudaEventDestroy(e0);
  (void)cudaEventDestroy(e1);
  return ms / iters;
}

TEST(CudaAttention, Timing) {
  REQUIRE_DEVICE();
  struct T {
    DType t;
    int B, H, D, L, iters;
  };
  for (const T& c : {T{DType::kBF16, 2, 24, 64, 4250, 20}, T{DType::kBF16, 1, 24, 64, 4096, 20},
                     T{DType::kBF16, 2, 24, 64, 1178, 20}, T{DType::kBF16, 2, 24, 64, 154, 20},
                     T{DType::kF16, 2, 24, 64, 4250, 20}, T{DType::kF32, 2, 24, 64, 4250, 2},
                     T{DType::kBF16, 1, 1, 512, 16384, 2}, T{DType::kF32, 1, 1, 512, 16384, 2}}) {
    const size_t es = elem_size(c.t);
    const int64_t row = int64_t(c.H) * c.D;
    const int64_t qkv_row = c.D == 64 ? 3 * row : row;  // MMDiT: fused qkv views
    DeviceBuffer qkv(size_t(c.B) * c.L * qkv_row * es * (c.D == 64 ? 1 : 3));
    DeviceBuffer out(size_t(c.B) * c.L * row * es);
    ASSERT_TRUE(qkv.p && out.p);
    CUDA_OK(cudaMemset(qkv.p, 0x3C, size_t(c.B) * c.L * qkv_row * es * (c.D == 64 ? 1 : 3)));
    AttentionArgs a{};
    const size_t plane = size_t(c.B) * c.L * row * es;  // separate q, k, v for the VAE shape
    a.q = qkv.p;
    a.k = c.D == 64 ? qkv.bytes() + row * es : qkv.bytes() + plane;
    a.v = c.D == 64 ? qkv.bytes() + 2 * row * es : qkv.bytes() + 2 * plane;
    a.out = out.p;
    a.dtype = c.t;
    a.batch = c.B, a.heads = c.H, a.head_dim = c.D, a.lq = a.lk = c.L;
    a.q_sl = a.k_sl = a.v_sl = qkv_row;
    a.q_sb = a.k_sb = a.v_sb = qkv_row * c.L;
    a.o_sl = row, a.o_sb = row * c.L;
    a.scale = 1.0f / std::sqrt(float(c.D));
    const Status st = launch_attention(a, nullptr);
    ASSERT_TRUE(st.ok()) << st.to_string();
    CUDA_OK(cudaDeviceSynchronize());
    const double ms = time_ms(a, c.iters, -1);
    CUDA_OK(cudaDeviceSynchronize());
    const double flops = 4.0 * c.B * c.H * double(c.L) * c.L * c.D;
    std::printf("  timing %-4s B=%d H=%d D=%d L=%d [%s]: %.3f ms, %.1f TFLOP/s (%.0f GFLOP/s)\n",
                name_of(c.t), c.B, c.H, c.D, c.L,
                detail::flash_d64_supported(a) ? "flash, dispatched" : "generic", ms,
                flops / ms * 1e-9, flops / ms * 1e-6);
    if (!detail::flash_d64_supported(a)) continue;
    for (int fc = 0; fc < kFlashConfigs; ++fc) {
      const double ms_c = time_ms(a, c.iters, fc);
      CUDA_OK(cudaDeviceSynchronize());
      std::printf("      config %-24s: %.3f ms, %.1f TFLOP/s\n",
                  detail::flash_config_name(detail::FlashConfig(fc)), ms_c, flops / ms_c * 1e-9);
    }
  }
}

}  // namespace
}  // namespace sd35::cuda
