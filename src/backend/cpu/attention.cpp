// cpu::attention: flash-style attention with an online softmax, on our ThreadPool.
//
// Heads are processed in groups whose packed K/V fit a fixed budget: first the group's heads
// are packed (in parallel, one head per task), then (head, query block) tasks run the ISA
// kernel. Grouping bounds the scratch (a 16384-token VAE attention head alone is 64 MB in
// f32) while keeping thousands of tasks per group at MMDiT sizes.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/gemm_checks.h"
#include "core/convert.h"
#include "core/cpu_features.h"

namespace sd35::cpu {
namespace {

using attn::Mode;

constexpr size_t kPackBudget = size_t(32) << 20;
constexpr int64_t kMaxPackedD = 4096;  // the ISA packers stage one row on the stack

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

struct Geometry {
  int64_t lkp, dp;
  size_t elem;  // packed element size
  size_t k_bytes, v_bytes, head_bytes, rows_scratch;
};

Geometry geometry(Mode mode, int64_t lk, int64_t d) {
  Geometry g;
  switch (mode) {
    case Mode::kAvx512Bf16: g.lkp = round_up(lk, 32), g.dp = round_up(d, 16), g.elem = 2; break;
    case Mode::kAvx512F32: g.lkp = round_up(lk, 32), g.dp = round_up(d, 16), g.elem = 4; break;
    case Mode::kAvx2F32: g.lkp = round_up(lk, 16), g.dp = round_up(d, 8), g.elem = 4; break;
    case Mode::kScalar: g.lkp = lk, g.dp = d, g.elem = 4; break;
  }
  auto align = [](size_t b) { return (b + 63) / 64 * 64; };
  g.k_bytes = align(size_t(g.lkp) * size_t(g.dp) * g.elem);
  g.v_bytes = g.k_bytes;
  g.head_bytes = g.k_bytes + g.v_bytes;
  if (mode == Mode::kScalar) {
    g.rows_scratch = align(size_t(lk) * 4) + align(size_t(d) * 8);
  } else {
    // Q and O blocks, m/l/alpha (kQBlock floats each), S and P tiles (kMaxTileRows × kKBlock floats each).
    g.rows_scratch = 2 * size_t(attn::kQBlock) * size_t(g.dp) * 4 + 3 * size_t(attn::kQBlock) * 4 +
                     2 * size_t(attn::kMaxTileRows) * size_t(attn::kKBlock) * 4 + 64;
  }
  return g;
}

// Grow-only 64-byte aligned buffer owned by the calling thread.
struct ThreadBuffer {
  std::unique_ptr<void, void (*)(void*)> data{nullptr, std::free};
  size_t size = 0;
  void* get(size_t bytes) {
    if (size >= bytes && data) return data.get();
    data.reset();
    size = 0;
    size_t rounded = std::max<size_t>(4096, (bytes + 4095) / 4096 * 4096);
    void* p = std::aligned_alloc(64, rounded);
    if (!p) return nullptr;
    data.reset(p);
    size = rounded;
    return p;
  }
};
thread_local ThreadBuffer t_pack;  // the calling thread's packed K/V
thread_local ThreadBuffer t_rows;  // each worker's query-block scratch

void pack_scalar(const attn::PackArgs& a) {
  float* kp = static_cast<float*>(a.kpack);
  float* vp = static_cast<float*>(a.vpack);
  const size_t kes = dtype_size(a.kdt), ves = dtype_size(a.vdt);
  for (int64_t j = 0; j < a.lk; ++j) {
    convert_to_f32(static_cast<const char*>(a.k) + j * a.k_ld * int64_t(kes), a.kdt, kp + j * a.d, a.d);
    convert_to_f32(static_cast<const char*>(a.v) + j * a.v_ld * int64_t(ves), a.vdt, vp + j * a.d, a.d);
  }
}

// Plain f32 fallback: one query row at a time, a row of Lk scores, exact two-pass softmax.
void rows_scalar(const attn::RowsArgs& a) {
  float* s = static_cast<float*>(a.scratch);
  float* acc = reinterpret_cast<float*>(static_cast<char*>(a.scratch) + (size_t(a.lk) * 4 + 63) / 64 * 64);
  float* q = acc + a.d;
  const float* kp = static_cast<const float*>(a.kpack);
  const float* vp = static_cast<const float*>(a.vpack);
  const size_t qes = dtype_size(a.qdt), oes = dtype_size(a.odt);
  for (int64_t r = 0; r < a.rows; ++r) {
    convert_to_f32(static_cast<const char*>(a.q) + r * a.q_ld * int64_t(qes), a.qdt, q, a.d);
    float mx = -INFINITY;
    for (int64_t j = 0; j < a.lk; ++j) {
      float dot = 0.0f;
      for (int64_t f = 0; f < a.d; ++f) dot += q[f] * kp[j * a.d + f];
      s[j] = dot * a.scale_log2e;
      mx = std::max(mx, s[j]);
    }
    float sum = 0.0f;
    for (int64_t f = 0; f < a.d; ++f) acc[f] = 0.0f;
    for (int64_t j = 0; j < a.lk; ++j) {
      float p = std::exp2(s[j] - mx);
      sum += p;
      for (int64_t f = 0; f < a.d; ++f) acc[f] += p * vp[j * a.d + f];
    }
    for (int64_t f = 0; f < a.d; ++f) acc[f] /= sum;
    convert_from_f32(acc, static_cast<char*>(a.out) + r * a.out_ld * int64_t(oes), a.odt, a.d);
  }
}

}  // namespace

Status attention(CpuContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& out, int heads, float scale) {
  SD35_RETURN_IF_ERROR(linear_checks::attention(q, k, v, out, heads, scale));
  const int64_t B = q.size(0), Lq = q.size(1), Lk = k.size(1), D = q.size(2) / heads;
  if (B == 0 || Lq == 0) return ok_status();

  Mode mode = Mode::kScalar;
  const CpuIsa isa = active_cpu_isa();
  const bool all_bf16 =
      q.dtype() == DType::kBF16 && k.dtype() == DType::kBF16 && v.dtype() == DType::kBF16;
  if (isa == CpuIsa::kAvx512)
    mode = all_bf16 && active_avx512_bf16() ? Mode::kAvx512Bf16 : Mode::kAvx512F32;
  else if (isa == CpuIsa::kAvx2)
    mode = Mode::kAvx2F32;
  if (round_up(D, 16) > kMaxPackedD) mode = Mode::kScalar;

  const Geometry g = geometry(mode, Lk, D);
  const int64_t BH = B * heads;
  const int64_t group = std::clamp<int64_t>(int64_t(kPackBudget / g.head_bytes), 1, BH);
  char* pack = static_cast<char*>(t_pack.get(size_t(group) * g.head_bytes));
  if (!pack) return resource_exhausted("attention: cannot allocate packing scratch");
  const int64_t nqb = (Lq + attn::kQBlock - 1) / attn::kQBlock;
  const float scale_log2e = float(double(scale) * 1.4426950408889634);
  auto elem_ptr = [](const Tensor& t, int64_t b, int64_t row, int64_t col) {
    return static_cast<char*>(t.data()) +
           (b * t.stride(0) + row * t.stride(1) + col) * int64_t(t.element_size());
  };

  std::atomic<bool> alloc_failed{false};
  for (int64_t h0 = 0; h0 < BH; h0 += group) {
    const int64_t ng = std::min(group, BH - h0);
    ctx.pool.parallel_for(ng, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t bh = h0 + i, b = bh / heads, h = bh % heads;
        attn::PackArgs pa{elem_ptr(k, b, 0, h * D), elem_ptr(v, b, 0, h * D), k.dtype(), v.dtype(),
                          k.stride(1), v.stride(1), Lk, D, g.lkp, g.dp,
                          pack + size_t(i) * g.head_bytes, pack + size_t(i) * g.head_bytes + g.k_bytes};
        switch (mode) {
          case Mode::kAvx512Bf16: attn::pack_kv_avx512(pa, true); break;
          case Mode::kAvx512F32: attn::pack_kv_avx512(pa, false); break;
          case Mode::kAvx2F32: attn::pack_kv_avx2(pa); break;
          case Mode::kScalar: pack_scalar(pa); break;
        }
      }
    });
    ctx.pool.parallel_for(ng * nqb, 1, [&](int64_t t0, int64_t t1) {
      void* scratch = t_rows.get(g.rows_scratch);
      if (!scratch) {
        alloc_failed = true;
        return;
      }
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = t / nqb, qb = t % nqb, bh = h0 + i, b = bh / heads, h = bh % heads;
        const int64_t r0 = qb * attn::kQBlock;
        attn::RowsArgs ra{elem_ptr(q, b, r0, h * D), q.dtype(), q.stride(1),
                          std::min<int64_t>(attn::kQBlock, Lq - r0), elem_ptr(out, b, r0, h * D),
                          out.dtype(), out.stride(1), pack + size_t(i) * g.head_bytes,
                          pack + size_t(i) * g.head_bytes + g.k_bytes, Lk, D, g.lkp, g.dp,
                          scale_log2e, scratch};
        switch (mode) {
          case Mode::kAvx512Bf16: attn::rows_avx512(ra, true); break;
          case Mode::kAvx512F32: attn::rows_avx512(ra, false); break;
          case Mode::kAvx2F32: attn::rows_avx2(ra); break;
          case Mode::kScalar: rows_scalar(ra); break;
        }
      }
    });
    if (alloc_failed) return resource_exhausted("attention: cannot allocate scratch");
  }
  return ok_status();
}

}  // namespace sd35::cpu
