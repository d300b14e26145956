// One MMDiT-X joint block (SPEC-model.md §1.4 step 6; SAI mmditx.py JointBlock /
// _block_mixing, ComfyUI mmdit.py). Both streams' qkv GEMMs write into ONE [B, Lc+Lx, 3D]
// buffer, context tokens first as in the reference's torch.cat, so the joint attention reads
// q, k and v as strided column views of it without a concatenation copy.
#include <algorithm>
#include <cmath>

#include "models/mmdit/mmdit_internal.h"

namespace sd35::mmdit {
namespace {

using S = Shape;

// [B, L, H·hd] (strided column view of a qkv buffer) -> [B, L, H, hd], so a row op over the
// last dim normalises each head separately.
Tensor per_head(const Tensor& t, int heads, int64_t head_dim) {
  return Tensor::strided_view_of(t.data(), t.dtype(), S{t.size(0), t.size(1), heads, head_dim},
                                 S{t.stride(0), t.stride(1), head_dim, 1}, t.device(), t.owner());
}

// The q/k norm of one attention, in place on the qkv rows of one stream ([B, n, 3D] view).
// SAI / ComfyUI apply it per head over head_dim (64) with eps 1e-6, to q and k only.
Status qk_norm(const ForwardContext& f, const AttentionWeights& a, const Tensor& qkv) {
  if (f.cfg.qk_norm == QKNorm::kNone) return ok_status();
  const int64_t d = f.cfg.hidden;
  const Tensor q = per_head(qkv.slice(2, 0, d), f.cfg.heads, f.cfg.head_dim);
  const Tensor k = per_head(qkv.slice(2, d, 2 * d), f.cfg.heads, f.cfg.head_dim);
  if (f.cfg.qk_norm == QKNorm::kRMS) {
    SD35_RETURN_IF_ERROR(f.backend.rms_norm(q, &a.ln_q_w, kNormEps, q));
    return f.backend.rms_norm(k, &a.ln_k_w, kNormEps, k);
  }
  // qk_norm "ln" (SAI mmditx: LayerNorm(head_dim, elementwise_affine=True, eps=1e-6)).
  SD35_RETURN_IF_ERROR(f.backend.layer_norm(q, &a.ln_q_w, &a.ln_q_b, kNormEps, q));
  return f.backend.layer_norm(k, &a.ln_k_w, &a.ln_k_b, kNormEps, k);
}

Status attend(const ForwardContext& f, const Tensor& qkv, const Tensor& out) {
  const int64_t d = f.cfg.hidden;
  const float scale = 1.0f / std::sqrt(float(f.cfg.head_dim));
  return f.backend.attention(qkv.slice(2, 0, d), qkv.slice(2, d, 2 * d), qkv.slice(2, 2 * d, 3 * d),
                             out, f.cfg.heads, scale);
}

// Scratch shared by the steps of one block, sized for the longer stream.
struct Scratch {
  Tensor h;      // act [B·Lmax·D]: modulated input of a GEMM
  Tensor delta;  // f32 [B·Lmax·D]: proj / fc2 output before its gated residual
  Tensor mlp;    // act [B·Lmax·mlp_hidden]
};

// v += gate · fc2(gelu_tanh(fc1(LN(v)·(1+scale)+shift))), the MLP half of a stream.
Status mlp_residual(const ForwardContext& f, const Scratch& s, const StreamWeights& w,
                    const Tensor& mods, const Tensor& v) {
  const int64_t b = v.size(0), n = v.size(1), d = f.cfg.hidden;
  const Tensor h = prefix_view(s.h, S{b, n, d});
  const Tensor mid = prefix_view(s.mlp, S{b, n, w.fc1.out_features()});
  const Tensor delta = prefix_view(s.delta, S{b, n, d});
  Backend& be = f.backend;
  SD35_RETURN_IF_ERROR(
      modulated_layer_norm(be, v, mod_chunk(mods, 3, d), mod_chunk(mods, 4, d), h));
  SD35_RETURN_IF_ERROR(be.gemm(h, w.fc1.w, w.fc1.bias(), mid, {Activation::kGeluTanh, false}));
  SD35_RETURN_IF_ERROR(be.gemm(mid, w.fc2.w, w.fc2.bias(), delta, {}));
  return be.gated_add(v, mod_chunk(mods, 5, d), delta, v);
}

// v += gate · proj(attn_out): the attention residual of a stream.
Status attn_residual(const ForwardContext& f, const Scratch& s, const Linear& proj,
                     const Tensor& attn_out, const Tensor& gate, const Tensor& v) {
  const Tensor delta = prefix_view(s.delta, S{v.size(0), v.size(1), f.cfg.hidden});
  SD35_RETURN_IF_ERROR(f.backend.gemm(attn_out, proj.w, proj.bias(), delta, {}));
  return f.backend.gated_add(v, gate, delta, v);
}

}  // namespace

Status modulated_layer_norm(Backend& be, const Tensor& v, const Tensor& shift, const Tensor& scale,
                            const Tensor& out) {
  return be.layer_norm_modulate(v, shift, scale, kNormEps, out);
}

Status joint_block(const ForwardContext& f, const BlockWeights& w, const Tensor& silu_c,
                   const Tensor& context, const Tensor& x) {
  ArenaScope scope(f.arena);
  Backend& be = f.backend;
  Arena& ar = f.arena;
  const int64_t B = f.batch, Lc = f.context_len, Lx = f.image_len, L = Lc + Lx;
  const int64_t D = f.cfg.hidden, Lmax = std::max(Lc, Lx);
  const StreamWeights &wc = w.ctx, &wx = w.x;

  // adaLN: Linear(SiLU(c)) -> [B, n·D]; the chunks are column views (shift_msa, scale_msa,
  // gate_msa, shift_mlp, scale_mlp, gate_mlp[, shift_msa2, scale_msa2, gate_msa2]). Kept in
  // f32: every activation of the block is scaled by (1 + scale), so their error is not
  // averaged away anywhere.
  SD35_ASSIGN_OR_RETURN(Tensor mc, ar.tensor(S{B, wc.n_mods * D}, DType::kF32));
  SD35_ASSIGN_OR_RETURN(Tensor mx, ar.tensor(S{B, wx.n_mods * D}, DType::kF32));
  SD35_RETURN_IF_ERROR(be.gemm(silu_c, wc.adaln.w, wc.adaln.bias(), mc, {}));
  SD35_RETURN_IF_ERROR(be.gemm(silu_c, wx.adaln.w, wx.adaln.bias(), mx, {}));

  Scratch s;
  SD35_ASSIGN_OR_RETURN(s.h, ar.tensor(S{B * Lmax * D}, f.act));
  SD35_ASSIGN_OR_RETURN(s.delta, ar.tensor(S{B * Lmax * D}, DType::kF32));
  SD35_ASSIGN_OR_RETURN(s.mlp, ar.tensor(S{B * Lmax * int64_t(f.cfg.mlp_hidden)}, f.act));

  // Pre-attention: q, k, v of both streams into one buffer, context rows first.
  SD35_ASSIGN_OR_RETURN(Tensor qkv, ar.tensor(S{B, L, 3 * D}, f.act));
  const Tensor qkv_c = qkv.slice(1, 0, Lc), qkv_x = qkv.slice(1, Lc, L);
  {
    const Tensor h = prefix_view(s.h, S{B, Lc, D});
    SD35_RETURN_IF_ERROR(
        modulated_layer_norm(be, context, mod_chunk(mc, 0, D), mod_chunk(mc, 1, D), h));
    SD35_RETURN_IF_ERROR(be.gemm(h, wc.attn.qkv.w, wc.attn.qkv.bias(), qkv_c, {}));
    SD35_RETURN_IF_ERROR(qk_norm(f, wc.attn, qkv_c));
  }
  Tensor qkv2;
  {
    // Dual blocks share ONE LayerNorm(x) between attn and attn2 (SAI pre_attention_x);
    // only the modulation differs. The fused op recomputes the (identical: x is unchanged,
    // the arithmetic deterministic) statistics for attn2 instead of keeping an f32 LN(x):
    // one more read of x costs less than writing and re-reading the normalised tensor.
    const Tensor h = prefix_view(s.h, S{B, Lx, D});
    SD35_RETURN_IF_ERROR(modulated_layer_norm(be, x, mod_chunk(mx, 0, D), mod_chunk(mx, 1, D), h));
    SD35_RETURN_IF_ERROR(be.gemm(h, wx.attn.qkv.w, wx.attn.qkv.bias(), qkv_x, {}));
    SD35_RETURN_IF_ERROR(qk_norm(f, wx.attn, qkv_x));
    if (wx.dual) {
      SD35_ASSIGN_OR_RETURN(qkv2, ar.tensor(S{B, Lx, 3 * D}, f.act));
      SD35_RETURN_IF_ERROR(
          modulated_layer_norm(be, x, mod_chunk(mx, 6, D), mod_chunk(mx, 7, D), h));
      SD35_RETURN_IF_ERROR(be.gemm(h, wx.attn2.qkv.w, wx.attn2.qkv.bias(), qkv2, {}));
      SD35_RETURN_IF_ERROR(qk_norm(f, wx.attn2, qkv2));
    }
  }

  // Joint attention over [context; x]; attn2 over the image tokens only.
  SD35_ASSIGN_OR_RETURN(Tensor attn_out, ar.tensor(S{B, L, D}, f.act));
  SD35_RETURN_IF_ERROR(attend(f, qkv, attn_out));
  Tensor attn2_out;
  if (wx.dual) {
    SD35_ASSIGN_OR_RETURN(attn2_out, ar.tensor(S{B, Lx, D}, f.act));
    SD35_RETURN_IF_ERROR(attend(f, qkv2, attn2_out));
  }

  // Post-attention. The pre-only context block ends here (its output is discarded).
  if (!wc.pre_only) {
    SD35_RETURN_IF_ERROR(
        attn_residual(f, s, wc.attn.proj, attn_out.slice(1, 0, Lc), mod_chunk(mc, 2, D), context));
    SD35_RETURN_IF_ERROR(mlp_residual(f, s, wc, mc, context));
  }
  // SAI post_attention_x: x += gate_msa·proj(attn); x += gate_msa2·proj2(attn2); then the
  // MLP on LN of the updated x.
  SD35_RETURN_IF_ERROR(
      attn_residual(f, s, wx.attn.proj, attn_out.slice(1, Lc, L), mod_chunk(mx, 2, D), x));
  if (wx.dual) {
    SD35_RETURN_IF_ERROR(attn_residual(f, s, wx.attn2.proj, attn2_out, mod_chunk(mx, 8, D), x));
  }
  return mlp_residual(f, s, wx, mx, x);
}

}  // namespace sd35::mmdit
