// Runs CUDA kernels' device code on the CPU, for the tests that check kernels where no GPU is
// present (tests/cuda/test_cuda_*_emulated.cpp). Include it before the kernel source. A CTA is
// one std::thread per CUDA thread; CTAs run one after another, so `__shared__` variables can
// be plain statics (one CTA's shared memory at a time). A kernel's threads must call
// __syncthreads equally often (as on a GPU), also those that return early. __syncthreads is a barrier over the
// CTA; the warp-level operations (shuffles here, and whatever a test adds with exchange())
// are computed from the values all 32 lanes publish, between two warp barriers, as the PTX
// ISA defines them. Kernels must keep warps converged where they use warp operations, which
// the real ones must too (full-warp masks).
//
// Not modelled: timing, memory ordering beyond barriers, bank conflicts, hardware rounding of
// approximate instructions.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

// Device built-ins the kernels use, for a host compiler.
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::max;  // CUDA's global min/max overloads
using std::min;
inline void __trap() { std::abort(); }

namespace emu {

struct Warp {
  std::barrier<> bar{32};
  uint32_t u32[32][8];  // per-lane exchange slots of warp-level operations
  float f32[32];
};

inline thread_local uint3 thread_idx, block_idx;
inline thread_local int warp_id = 0, lane_id = 0;
inline dim3 block_dim, grid_dim;
inline std::barrier<>* cta_barrier = nullptr;
inline Warp* warps = nullptr;          // the running CTA's warps
inline uint8_t* smem_base = nullptr;   // the running CTA's dynamic shared memory
inline Warp& warp() { return warps[warp_id]; }

// Runs body() as every thread of every CTA of `grid` × `block` (1-D blocks), with
// `dynamic_smem` bytes of 128-byte aligned dynamic shared memory per CTA (stale bytes: 0xA5,
// as a kernel must not read what it did not write). The block's threads are created once and
// walk the CTAs in order, with a CTA-wide barrier before and after each one.
template <typename Body>
void launch(dim3 grid, unsigned block, size_t dynamic_smem, Body&& body) {
  grid_dim = grid;
  block_dim = dim3(block, 1, 1);
  std::vector<uint8_t> smem(dynamic_smem + 128);
  uint8_t* base = smem.data() + (128 - reinterpret_cast<uintptr_t>(smem.data()) % 128) % 128;
  std::vector<Warp> cta_warps((block + 31) / 32);
  std::barrier<> cta(block);
  warps = cta_warps.data(), cta_barrier = &cta, smem_base = base;
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < block; ++t)
    threads.emplace_back([&body, &cta, grid, t, base, dynamic_smem] {
      thread_idx = {t, 0, 0};
      warp_id = int(t / 32), lane_id = int(t % 32);
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            if (t == 0) std::memset(base, 0xA5, dynamic_smem);
            cta.arrive_and_wait();  // the previous CTA is done; shared memory is stale
            block_idx = {x, y, z};
            body();
            cta.arrive_and_wait();
          }
    });
  for (std::thread& th : threads) th.join();
}

}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
inline void __syncthreads() { emu::cta_barrier->arrive_and_wait(); }
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(threads, blocks)

// shfl.sync.bfly over the full warp: every lane publishes, then reads lane ^ mask.
inline float __shfl_xor_sync(unsigned, float v, int mask) {
  emu::Warp& w = emu::warp();
  w.f32[emu::lane_id] = v;
  w.bar.arrive_and_wait();
  const float r = w.f32[emu::lane_id ^ mask];
  w.bar.arrive_and_wait();
  return r;
}
