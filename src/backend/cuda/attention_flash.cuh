// Tensor-core flash attention for head_dim 64, bf16/f16 inputs (the MMDiT hot path).
//
// One CTA owns BM query rows of one (batch, head); each warp owns 16 or 32 of them (one or
// two m-tiles of 16) and keeps its Q fragments, the running row max/sum and its f32 output
// block in registers for the whole key loop. K/V tiles of 64 keys (or 128: see the
// kernel's kBN) are staged in shared memory with cp.async, double buffered: tile t+1 is in
// flight while tile t is consumed.
// Per tile and m-tile:
//   S = Q·Kᵀ    16×64, 32 mma.sync m16n8k16 (f32 accumulation)
//   online softmax in the log2 domain (scale·log2e folded into one FFMA before ex2.approx)
//   P -> bf16/f16 in registers: the S accumulator layout of two adjacent n-tiles is exactly
//        the A-operand layout of one k-step, so P never touches shared memory
//   O += P·V    16×64, 32 mma.sync (V read with ldmatrix.trans)
// Shared tiles are [rows][64] with the 16-byte chunks XOR-swizzled by (row & 7), so the 8
// row addresses of every ldmatrix phase hit 8 distinct bank groups (no conflicts).
//
// Measured on an H100 80GB HBM3 (bf16, B=2, H=24, L=4250): 128-row CTAs of 4 warps × 32
// rows ~245 TFLOP/s (f16 ~255; L=4096, B=1: ~260), against ~215 for 8 warps × 16 rows: each
// K/V fragment read from shared memory feeds two m-tiles, and each warp has two independent
// mma/softmax streams. Tried and dropped: a third K/V stage with one barrier per tile (~6%
// slower), skipping the O rescale when no row max moved (no gain), 64-row CTAs of 2 warps ×
// 32 rows (~10% slower). attention.cu picks the CTA shape. 128-key tiles with Q re-read from
// shared memory per k-step (255 registers, no spills on sm_90; the CTA shape a well-known
// flash implementation uses for head dim 64): H100, B=2 H=24 L=4250, 0.860 ms (258 TFLOP/s)
// against 0.913 ms for 64-key tiles; the default on sm_90 (SD35_CUDA_FLASH_KEYS=64|128).
//
// Numerics: exp2(x·scale·log2e - m) equals exp(x·scale - m') up to f32 rounding of the
// product (relative ~1e-7, far below the bf16 rounding of P). The row sum l accumulates the
// *rounded* P values so the weights that multiply V are normalised exactly; O is divided by
// l once at the end and rounded once to the output dtype.
//
// Device code only (the launchers are in attention_flash.cu), in a header so that the
// emulation test can compile the same kernel as host C++.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

namespace sd35::cuda::detail::flash {

constexpr int kD = 64;  // head dim of this kernel

template <typename T>
struct FlashParams {
  const T* q;
  const T* k;
  const T* v;
  T* out;
  int64_t q_sb, q_sl, k_sb, k_sl, v_sb, v_sl, o_sb, o_sl;
  int lq, lk;
  float scale_log2;  // scale · log2(e)
};

// Element offset of (row, 16-byte chunk) in a swizzled [rows][64] tile.
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * kD + ((chunk ^ (row & 7)) << 3);
}

#ifndef SD35_FLASH_EMULATED
// The primitives below are the only device-specific code: tests/cuda/test_cuda_flash_emulated.cpp
// defines SD35_FLASH_EMULATED and provides host versions of each (a warp = 32 std::threads).
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// The CTA's dynamic shared memory (launch_typed sizes it).
__device__ __forceinline__ uint16_t* flash_smem() {
  extern __shared__ __align__(128) uint16_t flash_dynamic_smem[];
  return flash_dynamic_smem;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// 16-byte async copy; src_bytes == 0 zero-fills the destination (tails), and the source is
// then not read (a valid address is still passed).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const size_t g = __cvta_generic_to_global(src);
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(g), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ float fast_exp2(float x) {  // ex2.approx: 2^-inf = +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// c += a·b for one m16n8k16 tile, f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4],
                                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif  // __CUDA_ARCH__ >= 800

// Rounds (x, y) to a packed pair of T (x in the low half) and returns the rounded values too.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float x, float y, float& rx, float& ry);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float x, float y, float& rx, float& ry) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  const float2 f = __bfloat1622float2(h);
  rx = f.x, ry = f.y;
  return *reinterpret_cast<const uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float x, float y, float& rx, float& ry) {
  const __half2 h = __floats2half2_rn(x, y);
  const float2 f = __half22float2(h);
  rx = f.x, ry = f.y;
  return *reinterpret_cast<const uint32_t*>(&h);
}
#endif  // !SD35_FLASH_EMULATED

// kWarps warps per CTA, each owning kMT m-tiles of 16 query rows: BM = 16·kWarps·kMT rows.
// kMT = 2 reuses every K/V fragment loaded from shared memory for two m-tiles (half the
// ldmatrix traffic per mma) and gives each warp two independent mma/softmax streams.
// kBN keys per K/V tile (64 or 128): 128 halves the per-tile costs (the row max shuffles,
// the O rescale, one barrier) per key, at 128 score registers per thread with kMT = 2;
// Q's fragments then come from shared memory on every tile (kQInRegs = false) to stay
// under 255 registers without spilling.
template <typename T, int kWarps, int kMT, int kBN, bool kQInRegs>
__global__ void __launch_bounds__(kWarps * 32, (kMT == 1 ? 16 : 8) / kWarps)
    flash_d64_kernel(const FlashParams<T> p) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(SD35_FLASH_EMULATED)
  constexpr int kThreads = kWarps * 32;
  constexpr int kBM = kWarps * 16 * kMT;
  constexpr int kNT = kBN / 8;   // n-tiles of 8 keys in S
  constexpr int kKS = kBN / 16;  // k-steps of 16 keys in P·V
  // Q tile, then two (K, V) stages: (128 + 4·64)·64·2 B = 48 KiB at 128 rows and 64 keys,
  // 80 KiB at 128 keys (dynamic: launch_typed raises the limit).
  uint16_t* const smem = flash_smem();
  const uint32_t s_q = smem_u32(smem);
  const uint32_t s_kv = s_q + kBM * kD * 2;  // stage s: K at s_kv + s·2·tile, V after it
  constexpr uint32_t kTileBytes = kBN * kD * 2;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int m0 = blockIdx.x * kBM;
  const int h = blockIdx.y, b = blockIdx.z;
  const T* qb = p.q + b * p.q_sb + int64_t(h) * kD;
  const T* kb = p.k + b * p.k_sb + int64_t(h) * kD;
  const T* vb = p.v + b * p.v_sb + int64_t(h) * kD;

  // Rows past lq / lk are zero-filled: zero Q rows give finite scores that are never
  // stored; zero K rows are masked to -inf below; zero V rows keep 0·V finite.
  for (int i = tid; i < kBM * 8; i += kThreads) {
    const int r = i >> 3, c = i & 7, row = m0 + r;
    const bool ok = row < p.lq;
    cp_async16(s_q + swz(r, c) * 2, ok ? qb + row * p.q_sl + c * 8 : qb, ok);
  }
  auto load_kv = [&](int tile, int stage) {
    const uint32_t sk = s_kv + stage * 2 * kTileBytes, sv = sk + kTileBytes;
    for (int i = tid; i < kBN * 8; i += kThreads) {
      const int r = i >> 3, c = i & 7, key = tile * kBN + r;
      const bool ok = key < p.lk;
      cp_async16(sk + swz(r, c) * 2, ok ? kb + key * p.k_sl + c * 8 : kb, ok);
      cp_async16(sv + swz(r, c) * 2, ok ? vb + key * p.v_sl + c * 8 : vb, ok);
    }
  };

  const int ntiles = (p.lk + kBN - 1) / kBN;
  load_kv(0, 0);
  cp_async_commit();  // group 0: Q and tile 0

  // Per m-tile mt: O rows (g, g+8) × 64 dims, n-tile j holding dims j·8 + 2t, +1; the
  // running max (log2 domain) and this thread's share of the running sum (its columns) of
  // rows g and g+8; the Q A-fragments of the 4 k-steps of d.
  float o[kMT][8][4];
  float m_run[kMT][2], l_run[kMT][2];
  uint32_t qf[kMT][4][4];  // !kQInRegs: each k-step's reloaded from shared memory per tile
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int j = 0; j < 8; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.0f;
  }

  const int g = lane >> 2, t4 = lane & 3;
  const int mi = lane >> 3;  // which 8×8 matrix this lane addresses in an ldmatrix.x4
  const int r8 = lane & 7;
  const int warp_row0 = warp * 16 * kMT;

  for (int tile = 0; tile < ntiles; ++tile) {
    const int stage = tile & 1;
    if (tile + 1 < ntiles) {
      // Stage (tile+1)&1 was last read in iteration tile-1, which ended with a barrier.
      load_kv(tile + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    auto load_q = [&](int mt, int ks) {
      ldsm_x4(qf[mt][ks], s_q + swz(warp_row0 + mt * 16 + r8 + (mi & 1) * 8, ks * 2 + (mi >> 1)) * 2);
    };
    if (kQInRegs && tile == 0) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int ks = 0; ks < 4; ++ks) load_q(mt, ks);
    }

    const uint32_t sk = s_kv + stage * 2 * kTileBytes, sv = sk + kTileBytes;
    float s[kMT][kNT][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int j = 0; j < kNT; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      if constexpr (!kQInRegs) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) load_q(mt, ks);  // only this k-step's Q is live
      }
#pragma unroll
      for (int np = 0; np < kNT / 2; ++np) {
        uint32_t kf[4];  // B fragments of key n-tiles 2np and 2np+1 for this k-step
        ldsm_x4(kf, sk + swz(np * 16 + r8 + (mi >> 1) * 8, ks * 2 + (mi & 1)) * 2);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma16816<T>(s[mt][2 * np], qf[mt][ks], kf[0], kf[1]);
          mma16816<T>(s[mt][2 * np + 1], qf[mt][ks], kf[2], kf[3]);
        }
      }
    }

    // Keys past lk (only in the last tile) get -inf on the raw score; scale_log2 > 0 (the
    // dispatcher's condition) keeps them -inf through the max and the exp2 FFMA below.
    if ((tile + 1) * kBN > p.lk) {
#pragma unroll
      for (int j = 0; j < kNT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (tile * kBN + j * 8 + 2 * t4 + (e & 1) >= p.lk)
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) s[mt][j][e] = -INFINITY;
    }

    uint32_t pf[kMT][kKS][4];  // P as A fragments for the k-steps (16 keys each) of P·V
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {  // r = 0: row g (elements 0, 1); r = 1: row g+8 (2, 3)
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kNT; ++j) mx = fmaxf(mx, fmaxf(s[mt][j][2 * r], s[mt][j][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // Max of the raw scores, then scaled: the same as the max of the scaled scores for a
        // positive scale, one multiply per row instead of one per score.
        const float m_new = fmaxf(m_run[mt][r], mx * p.scale_log2);
        // A row with every score -inf so far (impossible here: each tile has a valid key)
        // would give (-inf) - (-inf); subtracting 0 instead keeps every p at 0.
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = fast_exp2(m_run[mt][r] - m_use);
        m_run[mt][r] = m_new;
        l_run[mt][r] *= alpha;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          o[mt][j][2 * r] *= alpha;
          o[mt][j][2 * r + 1] *= alpha;
        }
#pragma unroll
        for (int j = 0; j < kNT; ++j) {
          s[mt][j][2 * r] = fast_exp2(fmaf(s[mt][j][2 * r], p.scale_log2, -m_use));
          s[mt][j][2 * r + 1] = fast_exp2(fmaf(s[mt][j][2 * r + 1], p.scale_log2, -m_use));
        }
      }
#pragma unroll
      for (int kk = 0; kk < kKS; ++kk) {
        float a, c;
        pf[mt][kk][0] = pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1], a, c);
        l_run[mt][0] += a + c;
        pf[mt][kk][1] = pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3], a, c);
        l_run[mt][1] += a + c;
        pf[mt][kk][2] = pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1], a, c);
        l_run[mt][0] += a + c;
        pf[mt][kk][3] = pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3], a, c);
        l_run[mt][1] += a + c;
      }
    }

#pragma unroll
    for (int kk = 0; kk < kKS; ++kk) {
#pragma unroll
      for (int dp = 0; dp < 4; ++dp) {
        uint32_t vf[4];  // B fragments of dim n-tiles 2dp and 2dp+1 for keys kk·16..+15
        ldsm_x4_trans(vf, sv + swz(kk * 16 + r8 + (mi & 1) * 8, dp * 2 + (mi >> 1)) * 2);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma16816<T>(o[mt][2 * dp], pf[mt][kk], vf[0], vf[1]);
          mma16816<T>(o[mt][2 * dp + 1], pf[mt][kk], vf[2], vf[3]);
        }
      }
    }
    __syncthreads();  // everyone is done with this stage before it is refilled
  }

  T* ob = p.out + b * p.o_sb + int64_t(h) * kD;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = l_run[mt][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const int row = m0 + warp_row0 + mt * 16 + g + r * 8;
      if (row < p.lq) {
        T* orow = ob + row * p.o_sl;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float a, c;
          const uint32_t packed = pack2<T>(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv, a, c);
          *reinterpret_cast<uint32_t*>(orow + j * 8 + 2 * t4) = packed;
        }
      }
    }
  }
#else
  // Built for an architecture without mma.sync bf16 / ldmatrix / cp.async: the dispatcher
  // never selects this kernel there (it checks the device's compute capability).
  __trap();
#endif
}

}  // namespace sd35::cuda::detail::flash
