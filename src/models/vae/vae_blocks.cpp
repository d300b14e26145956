// The VAE encoder and decoder (SPEC-model.md §3; Stability sd3_impls.VAEEncoder/VAEDecoder,
// identical to ComfyUI's Encoder/Decoder for this config) written on Backend ops only.
//
// Memory: the trunk (the feature map between blocks) lives in two ping-pong buffers sized
// for the largest map of the pass; each block takes its temporaries from the arena inside
// an ArenaScope, so the peak is the two trunk buffers plus the temporaries of one block
// (about two or three maps of the block's size), whatever the depth.
//
// Precision: the trunk is always f32: it carries the residual sums, and keeping it f32
// costs one extra pass of rounding per conv input instead of compounding bf16 rounding over
// every residual add. In bf16 mode the inputs of the convolutions, of the attention GEMMs
// and of the attention itself are bf16 (oneDNN / AVX-512 bf16 products, f32 accumulation).
// GroupNorm always computes its statistics in f32 (every backend does, whatever the storage
// type): with a bf16 input that is only the rounding of the conv1 output, with an f32 trunk
// input none. Conv outputs that feed the trunk are written in f32 directly.
#include <algorithm>
#include <cmath>

#include "models/vae/vae_internal.h"

namespace sd35::vae_detail {
namespace {

constexpr Conv2dParams kSame3x3{1, 1, 1, 1, 1};
constexpr Conv2dParams k1x1{};
// Downsample: zero pad (left 0, right 1, top 0, bottom 1), then 3x3 stride 2 without padding.
constexpr Conv2dParams kDown{2, 0, 0, 1, 1};

// A view of the first numel(shape) elements of `buf` (contiguous) as `shape` and `dtype`.
Tensor view_as(const Tensor& buf, const Shape& shape, DType dtype) {
  return Tensor::view_of(buf.data(), dtype, shape, buf.device(), buf.owner());
}

// Ping-pong buffers for the trunk: the current map in one, the next written into the other.
class Trunk {
 public:
  static Result<Trunk> make(Arena& arena, int64_t max_elems) {
    Trunk t;
    for (auto& b : t.buf_) {
      SD35_ASSIGN_OR_RETURN(b, arena.tensor(Shape{max_elems}, DType::kF32));
    }
    return t;
  }
  const Tensor& cur() const { return cur_; }
  // The buffer that does not hold cur(), viewed as `shape`.
  Tensor next(const Shape& shape) const { return view_as(buf_[1 - index_], shape, DType::kF32); }
  void advance(const Tensor& t) {
    cur_ = t;
    index_ = 1 - index_;
  }
  // Starts the trunk on an outside tensor (the first op reads it and writes buffer 0).
  void start(const Tensor& t) {
    cur_ = t;
    index_ = 1;
  }

 private:
  Tensor buf_[2];
  Tensor cur_;
  int index_ = 1;
};

class Runner {
 public:
  Runner(Backend& backend, Arena& arena, const VAEOptions& options)
      : be_(backend), arena_(arena), cdt_(options.compute), cancelled_(options.cancelled) {}

  // kCancelled when the caller asked to stop (checked between blocks).
  Status check_cancelled() const {
    if (cancelled_ && cancelled_()) return cancelled("VAE cancelled");
    return ok_status();
  }

  Arena& arena() { return arena_; }

  // x itself when it already has the compute dtype, else a scratch copy (cast). The copy
  // lives until the caller's ArenaScope ends.
  Result<Tensor> as_compute(const Tensor& x, const Tensor* reuse = nullptr) {
    if (x.dtype() == cdt_) return x;
    Tensor c;
    if (reuse && reuse->numel() >= x.numel() && reuse->dtype() == cdt_) {
      c = view_as(*reuse, x.shape(), cdt_);
    } else {
      SD35_ASSIGN_OR_RETURN(c, arena_.tensor(x.shape(), cdt_));
    }
    SD35_RETURN_IF_ERROR(be_.copy(x, c));
    return c;
  }

  Status conv(const Tensor& x, const Conv& c, const Tensor& y, const Conv2dParams& p) {
    return be_.conv2d(x, c.w, &c.b, y, p);
  }

  // y = SiLU(GroupNorm(x)), y in the compute dtype (y may be the input of a conv).
  Status norm_silu(const Norm& n, const Tensor& x, const Tensor& y) {
    return be_.group_norm_silu(x, kGroups, &n.w, &n.b, kNormEps, y);
  }

  // out = shortcut(x) + conv2(SiLU(GN2(conv1(SiLU(GN1(x)))))); x, out f32 trunk maps.
  Status resblock(const ResBlock& rb, const Tensor& x, const Tensor& out) {
    ArenaScope scope(arena_);
    const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
    const Shape in_s{B, rb.in, H, W}, out_s{B, rb.out, H, W};
    // One buffer serves GN1's output and later GN2's (GN1's is dead once conv1 has run).
    SD35_ASSIGN_OR_RETURN(Tensor t, arena_.tensor(Shape{B, std::max(rb.in, rb.out), H, W}, cdt_));
    SD35_ASSIGN_OR_RETURN(Tensor h, arena_.tensor(out_s, cdt_));
    const Tensor t1 = view_as(t, in_s, cdt_), t2 = view_as(t, out_s, cdt_);
    SD35_RETURN_IF_ERROR(norm_silu(rb.norm1, x, t1));
    SD35_RETURN_IF_ERROR(conv(t1, rb.conv1, h, kSame3x3));
    SD35_RETURN_IF_ERROR(norm_silu(rb.norm2, h, t2));
    SD35_RETURN_IF_ERROR(conv(t2, rb.conv2, out, kSame3x3));
    if (!rb.nin_shortcut) return be_.add(out, x, out);
    // h is dead: in f32 mode it holds the 1x1 shortcut's output; t holds x cast to bf16.
    Tensor s = h;
    if (cdt_ != DType::kF32) {
      SD35_ASSIGN_OR_RETURN(s, arena_.tensor(out_s, DType::kF32));
    }
    SD35_ASSIGN_OR_RETURN(Tensor xc, as_compute(x, &t));
    SD35_RETURN_IF_ERROR(conv(xc, *rb.nin_shortcut, s, k1x1));
    return be_.add(out, s, out);
  }

  // x += proj_out(attention(q, k, v)) with q, k, v = 1x1 projections of GN(x): one head of
  // width C over the H·W positions. Done as GEMMs on the [B, H·W, C] layout and the
  // backend's online-softmax attention, so the (H·W)² scores (16384² at 1024²) are never
  // materialised. x: f32 [B, C, H, W], updated in place.
  Status attn(const AttnBlock& a, const Tensor& x) {
    ArenaScope scope(arena_);
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = H * W;
    const Shape tokens{B, S, C};
    SD35_ASSIGN_OR_RETURN(Tensor t, arena_.tensor(x.shape(), cdt_));
    SD35_RETURN_IF_ERROR(be_.group_norm(x, kGroups, &a.norm.w, &a.norm.b, kNormEps, t));
    SD35_ASSIGN_OR_RETURN(Tensor tt, arena_.tensor(tokens, cdt_));
    SD35_RETURN_IF_ERROR(be_.copy(t.reshape(Shape{B, C, S}).transpose(1, 2), tt));
    SD35_ASSIGN_OR_RETURN(Tensor q, arena_.tensor(tokens, cdt_));
    SD35_ASSIGN_OR_RETURN(Tensor k, arena_.tensor(tokens, cdt_));
    SD35_ASSIGN_OR_RETURN(Tensor v, arena_.tensor(tokens, cdt_));
    SD35_RETURN_IF_ERROR(be_.gemm(tt, a.q.w, &a.q.b, q, {}));
    SD35_RETURN_IF_ERROR(be_.gemm(tt, a.k.w, &a.k.b, k, {}));
    SD35_RETURN_IF_ERROR(be_.gemm(tt, a.v.w, &a.v.b, v, {}));
    // tt is dead after the projections: it receives the attention output.
    SD35_RETURN_IF_ERROR(be_.attention(q, k, v, tt, 1, 1.0f / std::sqrt(float(C))));
    Tensor o = q;  // dead after attention; f32 in f32 mode
    if (cdt_ != DType::kF32) {
      SD35_ASSIGN_OR_RETURN(o, arena_.tensor(tokens, DType::kF32));
    }
    SD35_RETURN_IF_ERROR(be_.gemm(tt, a.proj_out.w, &a.proj_out.b, o, {}));
    // o [B, S, C] read back as [B, C, H, W] through strides; add() takes any strides.
    const Tensor o_nchw = Tensor::strided_view_of(o.data(), DType::kF32, x.shape(),
                                                  Shape{S * C, 1, W * C, C}, o.device(), o.owner());
    return be_.add(x, o_nchw, x);
  }

  Status mid(const MidBlock& m, Trunk& trunk) {
    SD35_RETURN_IF_ERROR(check_cancelled());
    const Shape shape = trunk.cur().shape();  // the mid block keeps channels and size
    Tensor y = trunk.next(shape);
    SD35_RETURN_IF_ERROR(resblock(m.block_1, trunk.cur(), y));
    trunk.advance(y);
    SD35_RETURN_IF_ERROR(attn(m.attn_1, trunk.cur()));
    y = trunk.next(shape);
    SD35_RETURN_IF_ERROR(resblock(m.block_2, trunk.cur(), y));
    trunk.advance(y);
    return ok_status();
  }

  Status level_blocks(const Level& lv, Trunk& trunk) {
    for (const ResBlock& rb : lv.blocks) {
      SD35_RETURN_IF_ERROR(check_cancelled());
      const Tensor& x = trunk.cur();
      Tensor y = trunk.next(Shape{x.size(0), rb.out, x.size(2), x.size(3)});
      SD35_RETURN_IF_ERROR(resblock(rb, x, y));
      trunk.advance(y);
    }
    return ok_status();
  }

  // Nearest ×2 then 3x3 conv.
  Status upsample(const Conv& c, Trunk& trunk) {
    ArenaScope scope(arena_);
    const Tensor& x = trunk.cur();
    const Shape up{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)};
    SD35_ASSIGN_OR_RETURN(Tensor u, arena_.tensor(up, cdt_));
    SD35_RETURN_IF_ERROR(be_.upsample_nearest2x(x, u));
    Tensor y = trunk.next(Shape{up[0], c.w.size(0), up[2], up[3]});
    SD35_RETURN_IF_ERROR(conv(u, c, y, kSame3x3));
    trunk.advance(y);
    return ok_status();
  }

  Status downsample(const Conv& c, Trunk& trunk) {
    ArenaScope scope(arena_);
    const Tensor& x = trunk.cur();
    SD35_ASSIGN_OR_RETURN(Tensor xc, as_compute(x));
    // (H + 1 - 3) / 2 + 1 rows: H/2 for the even sizes encode() admits.
    Tensor y =
        trunk.next(Shape{x.size(0), c.w.size(0), (x.size(2) - 2) / 2 + 1, (x.size(3) - 2) / 2 + 1});
    SD35_RETURN_IF_ERROR(conv(xc, c, y, kDown));
    trunk.advance(y);
    return ok_status();
  }

  // SiLU(GN(trunk)) -> conv_out -> out (the caller's tensor).
  Status head(const Norm& n, const Conv& c, const Tensor& x, const Tensor& out) {
    ArenaScope scope(arena_);
    SD35_ASSIGN_OR_RETURN(Tensor t, arena_.tensor(x.shape(), cdt_));
    SD35_RETURN_IF_ERROR(norm_silu(n, x, t));
    return conv(t, c, out, kSame3x3);
  }

  // conv_in of an outside input: the first trunk map.
  Status stem(const Conv& c, const Tensor& in, Trunk& trunk) {
    ArenaScope scope(arena_);
    SD35_ASSIGN_OR_RETURN(Tensor xc, as_compute(in));
    trunk.start(in);
    Tensor y = trunk.next(Shape{in.size(0), c.w.size(0), in.size(2), in.size(3)});
    SD35_RETURN_IF_ERROR(conv(xc, c, y, kSame3x3));
    trunk.advance(y);
    return ok_status();
  }

 private:
  Backend& be_;
  Arena& arena_;
  DType cdt_;
  const std::function<bool()>& cancelled_;
};

}  // namespace

Status run_decoder(Backend& backend, Arena& arena, const VAEConfig& cfg, const DecoderWeights& w,
                   const Tensor& latent, const Tensor& image, const VAEOptions& options) {
  ArenaScope scope(arena);
  const int levels = int(cfg.ch_mult.size());
  const int64_t B = latent.size(0);
  // Largest trunk map: each level's maps, and its upsampled output at twice the size.
  int64_t rh = latent.size(2), rw = latent.size(3);
  int64_t max_elems = int64_t(cfg.ch) * cfg.ch_mult.back() * rh * rw;
  for (int l = levels - 1; l >= 0; --l) {
    const int64_t c = int64_t(cfg.ch) * cfg.ch_mult[size_t(l)];
    max_elems = std::max(max_elems, c * rh * rw);
    if (l != 0) rh *= 2, rw *= 2;
    max_elems = std::max(max_elems, c * rh * rw);
  }
  SD35_ASSIGN_OR_RETURN(Trunk trunk, Trunk::make(arena, B * max_elems));
  Runner r(backend, arena, options);
  SD35_RETURN_IF_ERROR(r.stem(w.conv_in, latent, trunk));
  SD35_RETURN_IF_ERROR(r.mid(w.mid, trunk));
  for (int l = levels - 1; l >= 0; --l) {
    const Level& lv = w.up[size_t(l)];
    SD35_RETURN_IF_ERROR(r.level_blocks(lv, trunk));
    if (lv.resample) SD35_RETURN_IF_ERROR(r.upsample(*lv.resample, trunk));
  }
  return r.head(w.norm_out, w.conv_out, trunk.cur(), image);
}

Status run_encoder(Backend& backend, Arena& arena, const VAEConfig& cfg, const EncoderWeights& w,
                   const Tensor& pixels, const Tensor& moments, const VAEOptions& options) {
  ArenaScope scope(arena);
  const int levels = int(cfg.ch_mult.size());
  const int64_t B = pixels.size(0);
  int64_t rh = pixels.size(2), rw = pixels.size(3);
  int64_t max_elems = int64_t(cfg.ch) * rh * rw;
  for (int l = 0; l < levels; ++l) {
    const int64_t c = int64_t(cfg.ch) * cfg.ch_mult[size_t(l)];
    max_elems = std::max(max_elems, c * rh * rw);
    if (l != levels - 1) rh /= 2, rw /= 2;
  }
  SD35_ASSIGN_OR_RETURN(Trunk trunk, Trunk::make(arena, B * max_elems));
  Runner r(backend, arena, options);
  SD35_RETURN_IF_ERROR(r.stem(w.conv_in, pixels, trunk));
  for (int l = 0; l < levels; ++l) {
    const Level& lv = w.down[size_t(l)];
    SD35_RETURN_IF_ERROR(r.level_blocks(lv, trunk));
    if (lv.resample) SD35_RETURN_IF_ERROR(r.downsample(*lv.resample, trunk));
  }
  SD35_RETURN_IF_ERROR(r.mid(w.mid, trunk));
  return r.head(w.norm_out, w.conv_out, trunk.cur(), moments);
}

}  // namespace sd35::vae_detail
