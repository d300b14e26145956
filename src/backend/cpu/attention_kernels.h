// Interface between cpu::attention (baseline code: checks, packing buffers, threading) and its
// per-ISA kernels (attention_avx512.cpp, attention_avx2.cpp). Plain structs and C-like
// functions only: this header is included by files compiled with AVX-512/AVX2 flags, so it
// must not define inline functions that baseline code could also use.
//
// The work for one (batch, head) is: pack K and V once into the ISA's layout (padded with
// zeros to `lkp` keys and `dp` features), then run query blocks of up to kQBlock rows. A
// query block keeps its running max m, running sum l and f32 output accumulator O in scratch
// and walks over the keys in blocks of kKBlock: S = Q·Kᵀ (register-blocked), online softmax
// update (O and l rescaled by exp(m_old − m_new)), O += P·V. Scores are computed in the
// log2 domain (scale·log2 e folded into one multiply) so exp2 is the only transcendental.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace sd35::cpu::attn {

inline constexpr int kQBlock = 96;  // query rows per task (a multiple of every kernel's row tile)
inline constexpr int kMaxTileRows = 12;  // rows of the largest register tile (S and P scratch)
inline constexpr int kKBlock = 64;  // keys per online-softmax step

enum class Mode : int {
  kScalar = 0,     // f32, plain loops (old CPUs)
  kAvx2F32 = 1,    // f32 FMA, 8 lanes
  kAvx512F32 = 2,  // f32 FMA, 16 lanes
  kAvx512Bf16 = 3, // vdpbf16ps: bf16 products, f32 accumulation and softmax state
};

// Layouts (elements; `lkp` = keys padded, `dp` = features padded):
//  kAvx512Bf16: K [lkp/16][dp/2][16 keys][2 features], V [lkp/2][dp][2 keys] (bf16)
//  kAvx512F32:  K [lkp/16][dp][16 keys],               V [lkp][dp] (f32)
//  kAvx2F32:    K [lkp/8][dp][8 keys],                 V [lkp][dp] (f32)
//  kScalar:     K [lk][d], V [lk][d] (f32)
struct PackArgs {
  const void* k;
  const void* v;
  DType kdt, vdt;
  int64_t k_ld, v_ld;  // row strides in elements
  int64_t lk, d, lkp, dp;
  void* kpack;  // 64-byte aligned
  void* vpack;
};

struct RowsArgs {
  const void* q;
  DType qdt;
  int64_t q_ld;
  int64_t rows;  // 1..kQBlock
  void* out;
  DType odt;
  int64_t out_ld;
  const void* kpack;
  const void* vpack;
  int64_t lk, d, lkp, dp;
  float scale_log2e;  // softmax scale · log2(e)
  void* scratch;      // 64-byte aligned, rows_scratch_bytes(mode, dp, lkp)
};

void pack_kv_avx512(const PackArgs& a, bool bf16);
void rows_avx512(const RowsArgs& a, bool bf16);
void pack_kv_avx2(const PackArgs& a);
void rows_avx2(const RowsArgs& a);

}  // namespace sd35::cpu::attn
