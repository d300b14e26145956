// The tensor-core flash attention kernel (attention_flash.cuh) run on the CPU: its device code
// compiled as host C++ with SD35_FLASH_EMULATED, one std::thread per CUDA thread of a CTA, a
// std::barrier for __syncthreads, and host versions of its warp-level primitives that follow
// the PTX ISA's definitions: ldmatrix .x4 (and .trans) fragments, mma.sync m16n8k16 operand
// and accumulator layouts, shfl.bfly, cp.async (a plain copy, zero-filled when the source size
// is 0). Every CTA shape (FlashConfig) is checked against an f64 reference with the GPU test's
// tolerances, where no GPU is present.
//
// Why: the 64-key configs were verified on an H100 (test_cuda_attention); the 128-key config
// has not run on a GPU yet. The same emulator passing the hardware-verified configs and the new
// one is evidence that the new one indexes its fragments right (an emulator that got a layout
// wrong would fail the verified configs too). Not covered: timing, bank conflicts, the
// hardware's exact rounding inside mma (summed here in f64, then rounded to f32) and ex2.approx.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/float_convert.h"
#include "cuda_emulation.h"

namespace sd35::cuda::detail::flash {

inline uint32_t smem_u32(const void* p) {
  return uint32_t(static_cast<const uint8_t*>(p) - emu::smem_base);
}
inline uint16_t* flash_smem() { return reinterpret_cast<uint16_t*>(emu::smem_base); }
inline void cp_async16(uint32_t dst, const void* src, bool valid) {
  if (valid)
    std::memcpy(emu::smem_base + dst, src, 16);
  else
    std::memset(emu::smem_base + dst, 0, 16);
}
inline void cp_async_commit() {}
template <int N>
inline void cp_async_wait() {}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8j..8j+7 give the row addresses of
// matrix j; lane l receives, in register j, the pair (row l/4, columns 2(l%4), 2(l%4)+1) of
// matrix j — of its transpose with .trans.
inline void ldsm(uint32_t (&r)[4], uint32_t addr, bool trans) {
  emu::Warp& w = emu::warp();
  const int lane = emu::lane_id;
  w.u32[lane][0] = addr;
  w.bar.arrive_and_wait();
  auto elem = [&](int j, int row, int col) {
    uint16_t v;
    std::memcpy(&v, emu::smem_base + w.u32[j * 8 + row][0] + 2 * col, 2);
    return uint32_t(v);
  };
  const int a = lane / 4, b = 2 * (lane % 4);
  for (int j = 0; j < 4; ++j)
    r[j] = trans ? elem(j, b, a) | elem(j, b + 1, a) << 16 : elem(j, a, b) | elem(j, a, b + 1) << 16;
  w.bar.arrive_and_wait();
}
inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) { ldsm(r, addr, false); }
inline void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) { ldsm(r, addr, true); }

inline float fast_exp2(float x) { return std::exp2(x); }

template <typename T>
float half_to_f32(uint32_t h);
template <>
inline float half_to_f32<__nv_bfloat16>(uint32_t h) {
  return bf16_to_f32(uint16_t(h));
}
template <>
inline float half_to_f32<__half>(uint32_t h) {
  return f16_to_f32(uint16_t(h));
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: with g = lane/4, t = lane%4, A's registers
// hold (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..); B's (k = 2t..2t+1, n = g) and
// (k = 2t+8.., n = g); C/D's (g, 2t..2t+1) and (g+8, 2t..2t+1).
template <typename T>
inline void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  emu::Warp& w = emu::warp();
  const int lane = emu::lane_id;
  for (int i = 0; i < 4; ++i) w.u32[lane][i] = a[i];
  w.u32[lane][4] = b0, w.u32[lane][5] = b1;
  w.bar.arrive_and_wait();
  auto A = [&](int row, int col) {
    const uint32_t v = w.u32[(row % 8) * 4 + (col % 8) / 2][(row >= 8 ? 1 : 0) + (col >= 8 ? 2 : 0)];
    return half_to_f32<T>(col % 2 ? v >> 16 : v & 0xFFFFu);
  };
  auto B = [&](int k, int n) {
    const uint32_t v = w.u32[n * 4 + (k % 8) / 2][4 + (k >= 8 ? 1 : 0)];
    return half_to_f32<T>(k % 2 ? v >> 16 : v & 0xFFFFu);
  };
  const int g = lane / 4, t = lane % 4;
  float d[4];
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    double s = c[e];
    for (int k = 0; k < 16; ++k) s += double(A(row, k)) * double(B(k, col));
    d[e] = float(s);
  }
  w.bar.arrive_and_wait();
  for (int e = 0; e < 4; ++e) c[e] = d[e];
}

template <typename T>
uint32_t pack2(float x, float y, float& rx, float& ry);
template <>
inline uint32_t pack2<__nv_bfloat16>(float x, float y, float& rx, float& ry) {
  const uint16_t a = f32_to_bf16(x), b = f32_to_bf16(y);
  rx = bf16_to_f32(a), ry = bf16_to_f32(b);
  return uint32_t(a) | uint32_t(b) << 16;
}
template <>
inline uint32_t pack2<__half>(float x, float y, float& rx, float& ry) {
  const uint16_t a = f32_to_f16(x), b = f32_to_f16(y);
  rx = f16_to_f32(a), ry = f16_to_f32(b);
  return uint32_t(a) | uint32_t(b) << 16;
}

}  // namespace sd35::cuda::detail::flash

#define SD35_FLASH_EMULATED 1
#include "backend/cuda/attention_flash.cuh"
#include "backend/cuda/attention_kernels.cuh"

namespace sd35::cuda::detail {
namespace {

template <typename T, int kWarps, int kMT, int kBN, bool kQInRegs>
void run_ctas(const flash::FlashParams<T>& p, int heads, int batch) {
  constexpr int kBM = kWarps * 16 * kMT;  // launch_typed's grid and dynamic shared memory
  const dim3 grid(unsigned((p.lq + kBM - 1) / kBM), unsigned(heads), unsigned(batch));
  emu::launch(grid, kWarps * 32, size_t(kBM + 4 * kBN) * flash::kD * 2,
              [&p] { flash::flash_d64_kernel<T, kWarps, kMT, kBN, kQInRegs>(p); });
}

// Each FlashConfig's kernel, instantiated as attention_flash.cu's launch_config does.
template <typename T>
void emulate(FlashConfig c, const flash::FlashParams<T>& p, int heads, int batch) {
  switch (c) {
    case FlashConfig::k128Rows8Warps: return run_ctas<T, 8, 1, 64, true>(p, heads, batch);
    case FlashConfig::k64Rows4Warps: return run_ctas<T, 4, 1, 64, true>(p, heads, batch);
    case FlashConfig::k128Rows4Warps: return run_ctas<T, 4, 2, 64, true>(p, heads, batch);
    case FlashConfig::k128Rows4Warps128Keys:
      return run_ctas<T, 4, 2, 128, false>(p, heads, batch);
  }
}

struct Case {
  int batch, heads, lq, lk;
  bool fused;  // q/k/v slices of one [B, L, 3·H·64] buffer (lq == lk), else separate + padding
};

// Runs one case through config c and compares every output with the f64 reference under the
// GPU test's tolerance: u·|ref| + 4u·sd + 1e-5 with u the output's unit roundoff (bf16 2^-8,
// f16 2^-11) and sd the spread of V under the softmax weights (the P rounding's effect).
template <typename T>
void check(FlashConfig c, const Case& cs, uint32_t seed) {
  const bool bf16 = std::is_same_v<T, __nv_bfloat16>;
  SCOPED_TRACE(std::string(flash_config_name(c)) + (bf16 ? " bf16" : " f16") + " B=" +
               std::to_string(cs.batch) + " H=" + std::to_string(cs.heads) + " lq=" +
               std::to_string(cs.lq) + " lk=" + std::to_string(cs.lk));
  constexpr int D = 64;
  const int HD = cs.heads * D;
  const int64_t row = cs.fused ? 3 * HD : HD + 8;  // 8 elements of padding per separate row
  const int64_t q_rows = int64_t(cs.batch) * cs.lq, k_rows = int64_t(cs.batch) * cs.lk;
  auto enc = [&](float x) { return bf16 ? f32_to_bf16(x) : f32_to_f16(x); };
  auto dec = [&](uint16_t h) { return bf16 ? bf16_to_f32(h) : f16_to_f32(h); };
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  auto uniform = [&] {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return -1.7f + 3.4f * float(double((s * 0x2545F4914F6CDD1Dull) >> 40) / double(1u << 24));
  };
  std::vector<uint16_t> qbuf(size_t(q_rows * row)), kbuf, vbuf;
  for (auto& v : qbuf) v = enc(uniform());
  if (!cs.fused) {
    kbuf.resize(size_t(k_rows * row));
    vbuf.resize(size_t(k_rows * row));
    for (auto& v : kbuf) v = enc(uniform());
    for (auto& v : vbuf) v = enc(uniform());
  }
  const uint16_t* q = qbuf.data();
  const uint16_t* k = cs.fused ? qbuf.data() + HD : kbuf.data();
  const uint16_t* v = cs.fused ? qbuf.data() + 2 * HD : vbuf.data();
  const int64_t o_row = HD + 4;
  std::vector<uint16_t> out(size_t(q_rows * o_row), 0x7E00);  // padding must stay untouched

  flash::FlashParams<T> p;
  p.q = reinterpret_cast<const T*>(q), p.k = reinterpret_cast<const T*>(k);
  p.v = reinterpret_cast<const T*>(v), p.out = reinterpret_cast<T*>(out.data());
  p.q_sl = p.k_sl = p.v_sl = row;
  p.q_sb = row * cs.lq, p.k_sb = p.v_sb = row * cs.lk;
  p.o_sl = o_row, p.o_sb = o_row * cs.lq;
  p.lq = cs.lq, p.lk = cs.lk;
  const float scale = 0.125f;
  p.scale_log2 = scale * 1.4426950408889634f;
  emulate<T>(c, p, cs.heads, cs.batch);

  const double u = bf16 ? 1.0 / 256 : 1.0 / 2048;
  int failures = 0;
  std::vector<double> sc(size_t(cs.lk)), ref(D), var(D);
  for (int b = 0; b < cs.batch; ++b)
    for (int h = 0; h < cs.heads; ++h)
      for (int i = 0; i < cs.lq; ++i) {
        const uint16_t* qr = q + (int64_t(b) * cs.lq + i) * row + h * D;
        double mx = -INFINITY;
        for (int j = 0; j < cs.lk; ++j) {
          const uint16_t* kr = k + (int64_t(b) * cs.lk + j) * row + h * D;
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += double(dec(qr[d])) * dec(kr[d]);
          sc[size_t(j)] = dot * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double l = 0;
        for (double& x : sc) l += (x = std::exp(x - mx));
        std::fill(ref.begin(), ref.end(), 0.0);
        std::fill(var.begin(), var.end(), 0.0);
        for (int j = 0; j < cs.lk; ++j)
          for (int d = 0; d < D; ++d)
            ref[size_t(d)] +=
                sc[size_t(j)] / l * dec(v[(int64_t(b) * cs.lk + j) * row + h * D + d]);
        for (int j = 0; j < cs.lk; ++j)
          for (int d = 0; d < D; ++d) {
            const double w = sc[size_t(j)] / l;
            const double dv = dec(v[(int64_t(b) * cs.lk + j) * row + h * D + d]) - ref[size_t(d)];
            var[size_t(d)] += w * w * dv * dv;
          }
        const uint16_t* orow = out.data() + (int64_t(b) * cs.lq + i) * o_row;
        for (int d = 0; d < D; ++d) {
          const double got = dec(orow[h * D + d]), r = ref[size_t(d)];
          const double tol = u * std::fabs(r) + 4 * u * std::sqrt(var[size_t(d)]) + 1e-5;
          if (!(std::fabs(got - r) <= tol) && failures++ < 5)
            ADD_FAILURE() << "b=" << b << " h=" << h << " row=" << i << " d=" << d << ": got "
                          << got << ", ref " << r << ", tol " << tol;
        }
        for (int64_t e = HD; e < o_row; ++e)
          if (orow[e] != 0x7E00 && failures++ < 5) ADD_FAILURE() << "row padding written";
      }
  EXPECT_EQ(failures, 0);
}

constexpr FlashConfig kConfigs[] = {FlashConfig::k128Rows8Warps, FlashConfig::k64Rows4Warps,
                                    FlashConfig::k128Rows4Warps,
                                    FlashConfig::k128Rows4Warps128Keys};

// Query and key counts that end part-way through the 64/128-row CTAs and the 64/128-key tiles
// (and one key tile only), separate padded q/k/v and the MMDiT's fused qkv rows, two batches.
TEST(CudaFlashEmulated, EveryConfigMatchesTheReferenceBf16) {
  uint32_t seed = 1;
  for (FlashConfig c : kConfigs) {
    check<__nv_bfloat16>(c, {1, 2, 129, 200, false}, seed++);
    check<__nv_bfloat16>(c, {2, 1, 70, 70, true}, seed++);
  }
}

TEST(CudaFlashEmulated, EveryConfigMatchesTheReferenceF16) {
  uint32_t seed = 100;
  for (FlashConfig c : kConfigs) {
    check<__half>(c, {1, 1, 33, 77, false}, seed++);
    check<__half>(c, {1, 2, 130, 130, true}, seed++);
  }
}

}  // namespace
}  // namespace sd35::cuda::detail
