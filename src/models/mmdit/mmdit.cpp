// MMDiT-X forward pass (SPEC-model.md §1.4): embedders, the joint-block loop, the final
// layer, and the patchify / unpatchify layout work, all on Backend ops. The only host loop
// over data is the timestep sinusoid ([B, 256] values), staged and uploaded for a device
// backend.
#include "models/mmdit/mmdit.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "backend/transfer.h"
#include "models/mmdit/mmdit_internal.h"
#include "models/mmdit/mmdit_weights.h"
#include "weights/weight_index.h"
#include "weights/weight_specs.h"

namespace sd35 {

using S = Shape;
using mmdit::ForwardContext;
using mmdit::Linear;

struct MMDiT::Impl {
  MMDiTConfig cfg;
  mmdit::Weights w;
};

MMDiT::MMDiT(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MMDiT::~MMDiT() = default;
const MMDiTConfig& MMDiT::config() const { return impl_->cfg; }

namespace {

bool is_act_dtype(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

// The kernels convert any float weight; vectors added elementwise (biases, norm weights,
// pos_embed) must be activation dtypes.
Status check_weight_dtypes(const WeightMap& map) {
  std::string bad;
  for (const auto& [field, t] : map) {
    const bool matrix = t.ndim() >= 2 && field != "pos_embed";
    const bool ok = matrix ? dtype_is_compute_float(t.dtype()) : is_act_dtype(t.dtype());
    if (!ok)
      bad += (bad.empty() ? "" : ", ") + field + " (" + std::string(dtype_name(t.dtype())) + ")";
  }
  if (bad.empty()) return ok_status();
  return unsupported("MMDiT: unsupported weight dtypes: " + bad);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

Status check_inputs(const Backend& be, const MMDiTConfig& cfg, const MMDiTInputs& in,
                    const Tensor& out, const MMDiTOptions& opt) {
  auto bad = [](const std::string& m) { return invalid_argument("MMDiT forward: " + m); };
  const Tensor* named[] = {&in.x, &in.timesteps, &in.context, &in.y, &out};
  const char* names[] = {"x", "timesteps", "context", "y", "out"};
  for (int i = 0; i < 5; ++i) {
    if (!named[i]->defined() || named[i]->data() == nullptr) {
      return bad(std::string(names[i]) + " is missing");
    }
    if (named[i]->dtype() != DType::kF32) {
      return bad(std::string(names[i]) + " must be f32, got " + named[i]->describe());
    }
  }
  const Tensor& x = in.x;
  if (x.ndim() != 4 || x.size(0) < 1 || x.size(2) < 1 || x.size(3) < 1) {
    return bad("x must be [B, C, H, W] with B, H, W >= 1, got " + x.describe());
  }
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  if (x.size(1) != cfg.in_channels) {
    return bad("x has " + std::to_string(x.size(1)) + " channels, the model expects " +
               std::to_string(cfg.in_channels));
  }
  if (in.timesteps.ndim() != 1 || in.timesteps.size(0) != B) {
    return bad("timesteps must be [" + std::to_string(B) + "], got " + in.timesteps.describe());
  }
  for (int i : {0, 2, 3, 4}) {
    if (named[i]->device() != be.device()) {
      return bad(std::string(names[i]) + " is on " + std::string(device_name(named[i]->device())) +
                 ", the backend on " + std::string(device_name(be.device())));
    }
  }
  if (in.timesteps.device() != Device::kCPU && in.timesteps.device() != be.device()) {
    return bad("timesteps must be host memory or on the backend's device");
  }
  if (in.context.ndim() != 3 || in.context.size(0) != B || in.context.size(1) < 1 ||
      in.context.size(2) != cfg.context_dim) {
    return bad("context must be [" + std::to_string(B) + ", L >= 1, " +
               std::to_string(cfg.context_dim) + "], got " + in.context.describe());
  }
  if (in.y.ndim() != 2 || in.y.size(0) != B || in.y.size(1) != cfg.adm_in_channels) {
    return bad("y must be [" + std::to_string(B) + ", " + std::to_string(cfg.adm_in_channels) +
               "], got " + in.y.describe());
  }
  if (in.timestep_features.defined()) {
    const Tensor& tf = in.timestep_features;
    if (tf.dtype() != DType::kF32 || tf.shape() != Shape{B, cfg.freq_dim} || !tf.rows_dense() ||
        tf.device() != be.device() || tf.data() == nullptr) {
      return bad("timestep_features must be f32 [" + std::to_string(B) + ", " +
                 std::to_string(cfg.freq_dim) + "] with dense rows on the backend's device, got " +
                 tf.describe());
    }
  }
  const Shape want{B, cfg.out_channels, H, W};
  if (out.shape() != want) {
    return bad("out must be " + want.to_string() + ", got " + out.describe());
  }
  const int64_t p = cfg.patch_size, max_side = int64_t(cfg.pos_embed_max_size);
  if (ceil_div(H, p) > max_side || ceil_div(W, p) > max_side) {
    return bad("latent " + std::to_string(H) + "x" + std::to_string(W) + " exceeds the " +
               std::to_string(max_side * p) + "x" + std::to_string(max_side * p) +
               " the position embedding covers");
  }
  if (opt.compute != DType::kF32 && opt.compute != DType::kBF16) {
    return unsupported("MMDiT forward: compute dtype " + std::string(dtype_name(opt.compute)) +
                       " (use f32 or bf16)");
  }
  for (int i : opt.skip_layers) {
    if (i < 0 || i >= cfg.depth) {
      return bad("skip layer " + std::to_string(i) + " is outside [0, " +
                 std::to_string(cfg.depth) + ")");
    }
  }
  return ok_status();
}

// ComfyUI pad_to_patch_size: pad the bottom/right up to a multiple of p with
// mode='circular' (row H+i repeats row i). Done with strided copies inside `xp`
// [B, C, Hp, Wp]: first the image, then the missing rows, then the missing columns over the
// full padded height (which fills the corner from the top-left, as torch does). A pad
// larger than the image (p > 2) keeps wrapping instead of failing like torch.
Status circular_pad(Backend& be, const Tensor& x, const Tensor& xp) {
  const int64_t H = x.size(2), W = x.size(3), Hp = xp.size(2), Wp = xp.size(3);
  SD35_RETURN_IF_ERROR(be.copy(x, xp.slice(2, 0, H).slice(3, 0, W)));
  const Tensor left = xp.slice(3, 0, W);
  for (int64_t r = H; r < Hp; r += std::min(H, Hp - r)) {
    const int64_t n = std::min(H, Hp - r);
    SD35_RETURN_IF_ERROR(be.copy(left.slice(2, 0, n), left.slice(2, r, r + n)));
  }
  for (int64_t c = W; c < Wp; c += std::min(W, Wp - c)) {
    const int64_t n = std::min(W, Wp - c);
    SD35_RETURN_IF_ERROR(be.copy(xp.slice(3, 0, n), xp.slice(3, c, c + n)));
  }
  return ok_status();
}

// Timestep embedding exactly as the references compute it in float32:
// freqs[i] = exp(-ln(10000)·i/half) (the scalar rounded to f32 before the product, as a torch
// float tensor times a Python float is), args = t·freqs, emb = [cos(args), sin(args)]
// (flip_sin_to_cos), a zero column appended for an odd width. Rows of `dim` floats.
void fill_timestep_sinusoid(std::span<const float> t, int64_t dim, float* e) {
  const int64_t half = dim / 2;
  const float neg_log = float(-std::log(10000.0));
  for (size_t b = 0; b < t.size(); ++b) {
    const float tb = t[b];
    float* row = e + int64_t(b) * dim;
    for (int64_t i = 0; i < half; ++i) {
      const float freq = std::exp(neg_log * float(i) / float(half));
      const float arg = tb * freq;
      row[i] = std::cos(arg);
      row[half + i] = std::sin(arg);
    }
    if (dim % 2) row[dim - 1] = 0.0f;
  }
}

// t is read on the host (downloaded first when it is device memory); emb is written through
// a HostStaging (in place for a host arena, uploaded for a device one).
Status timestep_sinusoid(Backend& be, const Tensor& t, const Tensor& emb) {
  const int64_t B = emb.size(0), dim = emb.size(1);
  std::vector<float> tv(static_cast<size_t>(B));
  if (t.device() == Device::kCPU) {
    for (int64_t b = 0; b < B; ++b)
      tv[size_t(b)] = load_as_f32(t.data(), t.dtype(), b * t.stride(0));
  } else {
    if (!t.is_contiguous())
      return invalid_argument("MMDiT forward: device timesteps must be contiguous");
    SD35_RETURN_IF_ERROR(download_bytes(be, t, tv.data()));
  }
  HostStaging staging(be, emb);
  float* e = staging.data<float>();
  if (!e) return resource_exhausted("MMDiT forward: out of host memory for the sinusoid");
  fill_timestep_sinusoid(tv, dim, e);
  return staging.commit();
}

// Linear -> SiLU -> Linear (TimestepEmbedder / VectorEmbedder), in f32: [B, D] is tiny.
Status embed_mlp(Backend& be, Arena& ar, const Tensor& in, const Linear& l0, const Linear& l2,
                 const Tensor& out) {
  SD35_ASSIGN_OR_RETURN(Tensor hidden, ar.tensor(S{in.size(0), l0.out_features()}, DType::kF32));
  SD35_RETURN_IF_ERROR(be.gemm(in, l0.w, l0.bias(), hidden, {Activation::kSilu, false}));
  return be.gemm(hidden, l2.w, l2.bias(), out, {});
}

}  // namespace

Result<std::unique_ptr<MMDiT>> MMDiT::load(const WeightIndex& index, WeightPlacer* placer) {
  SD35_ASSIGN_OR_RETURN(MMDiTConfig cfg, derive_mmdit_config(index));
  if (cfg.depth < 1 || cfg.heads * cfg.head_dim != cfg.hidden || cfg.patch_size < 1 ||
      cfg.freq_dim < 1 || cfg.pos_embed_max_size < 1) {
    return unsupported("MMDiT: unsupported config (depth " + std::to_string(cfg.depth) +
                       ", hidden " + std::to_string(cfg.hidden) + ", patch " +
                       std::to_string(cfg.patch_size) + ")");
  }
  SD35_ASSIGN_OR_RETURN(WeightMap map,
                        bind_weights(index, Component::kMMDiT, mmdit_weight_specs(cfg)));
  SD35_RETURN_IF_ERROR(check_weight_dtypes(map));
  auto impl = std::make_unique<Impl>();
  SD35_ASSIGN_OR_RETURN(impl->w, mmdit::weights_from_map(cfg, std::move(map), placer));
  impl->cfg = std::move(cfg);
  return std::unique_ptr<MMDiT>(new MMDiT(std::move(impl)));
}

Status MMDiT::forward(Backend& be, Arena& arena, const MMDiTInputs& in, const Tensor& out,
                      const MMDiTOptions& opt) const {
  const MMDiTConfig& cfg = impl_->cfg;
  const mmdit::Weights& w = impl_->w;
  SD35_RETURN_IF_ERROR(check_inputs(be, cfg, in, out, opt));
  auto observe = [&](const std::string& name, const Tensor& t) {
    if (opt.observe) opt.observe(name, t);
  };
  ArenaScope scope(arena);
  const int64_t B = in.x.size(0), C = in.x.size(1), H = in.x.size(2), W = in.x.size(3);
  const int64_t p = cfg.patch_size, D = cfg.hidden, P = cfg.pos_embed_max_size;
  const int64_t h = ceil_div(H, p), wd = ceil_div(W, p), Hp = h * p, Wp = wd * p;
  const int64_t T = h * wd, Lc = in.context.size(1);
  const bool padded = Hp != H || Wp != W;
  ForwardContext f{be, arena, cfg, opt.compute, B, Lc, T};

  // 1. Patch embed: conv p×p stride p -> [B, D, h, w] -> tokens [B, h·w, D] (row-major).
  Tensor xin = in.x;
  if (padded || !in.x.is_contiguous()) {
    SD35_ASSIGN_OR_RETURN(xin, arena.tensor(S{B, C, Hp, Wp}, DType::kF32));
    SD35_RETURN_IF_ERROR(circular_pad(be, in.x, xin));
  }
  SD35_ASSIGN_OR_RETURN(Tensor x, arena.tensor(S{B, T, D}, DType::kF32));
  {
    ArenaScope conv_scope(arena);
    SD35_ASSIGN_OR_RETURN(Tensor pe, arena.tensor(S{B, D, h, wd}, DType::kF32));
    Conv2dParams cp;
    cp.stride = int(p);
    SD35_RETURN_IF_ERROR(be.conv2d(xin, w.x_embedder.w, w.x_embedder.bias(), pe, cp));
    SD35_RETURN_IF_ERROR(be.copy(pe.reshape(S{B, D, T}).transpose(1, 2), x));
  }
  // 2. + pos_embed cropped from the centre of the P×P grid (a strided view, broadcast over B).
  const Tensor pos = w.pos_embed.reshape(S{1, P, P, D})
                         .slice(1, (P - h) / 2, (P - h) / 2 + h)
                         .slice(2, (P - wd) / 2, (P - wd) / 2 + wd);
  const Tensor x4 = x.reshape(S{B, h, wd, D});
  SD35_RETURN_IF_ERROR(be.add(x4, pos, x4));
  if (opt.observe) {
    ArenaScope obs_scope(arena);
    SD35_ASSIGN_OR_RETURN(Tensor pc, arena.tensor(S{1, h, wd, D}, DType::kF32));
    SD35_RETURN_IF_ERROR(be.copy(pos, pc));
    observe("pos_embed_cropped", pc.reshape(S{1, T, D}));
    observe("x_embedded", x);
  }

  // 3-4. c = t_embedder(t) + y_embedder(y); every adaLN takes SiLU(c).
  SD35_ASSIGN_OR_RETURN(Tensor silu_c, arena.tensor(S{B, D}, DType::kF32));
  {
    ArenaScope emb_scope(arena);
    Tensor tf = in.timestep_features;
    if (!tf.defined()) {
      SD35_ASSIGN_OR_RETURN(tf, arena.tensor(S{B, cfg.freq_dim}, DType::kF32));
      SD35_RETURN_IF_ERROR(timestep_sinusoid(be, in.timesteps, tf));
    }
    SD35_ASSIGN_OR_RETURN(Tensor t_emb, arena.tensor(S{B, D}, DType::kF32));
    SD35_ASSIGN_OR_RETURN(Tensor y_emb, arena.tensor(S{B, D}, DType::kF32));
    SD35_ASSIGN_OR_RETURN(Tensor c, arena.tensor(S{B, D}, DType::kF32));
    SD35_RETURN_IF_ERROR(embed_mlp(be, arena, tf, w.t_mlp0, w.t_mlp2, t_emb));
    SD35_RETURN_IF_ERROR(embed_mlp(be, arena, in.y, w.y_mlp0, w.y_mlp2, y_emb));
    SD35_RETURN_IF_ERROR(be.add(t_emb, y_emb, c));
    observe("t_emb", t_emb);
    observe("y_emb", y_emb);
    observe("c", c);
    SD35_RETURN_IF_ERROR(be.activation(c, Activation::kSilu, silu_c));
  }

  // 5. context = context_embedder(context).
  SD35_ASSIGN_OR_RETURN(Tensor ctx, arena.tensor(S{B, Lc, D}, DType::kF32));
  {
    ArenaScope ctx_scope(arena);
    Tensor cin = in.context;
    if (f.act != DType::kF32 || !cin.rows_dense()) {
      SD35_ASSIGN_OR_RETURN(cin, arena.tensor(in.context.shape(), f.act));
      SD35_RETURN_IF_ERROR(be.copy(in.context, cin));
    }
    SD35_RETURN_IF_ERROR(be.gemm(cin, w.context_embedder.w, w.context_embedder.bias(), ctx, {}));
  }
  observe("context_embedded", ctx);

  // 6. Joint blocks; a skipped block (skip-layer guidance) is the identity on both streams.
  const std::set<int> skip(opt.skip_layers.begin(), opt.skip_layers.end());
  for (int i = 0; i < cfg.depth; ++i) {
    const mmdit::BlockWeights& bw = w.blocks[size_t(i)];
    if (!skip.count(i)) SD35_RETURN_IF_ERROR(mmdit::joint_block(f, bw, silu_c, ctx, x));
    if (opt.observe) {
      const std::string prefix = "block" + std::to_string(i);
      if (!bw.ctx.pre_only) observe(prefix + ".context_out", ctx);
      observe(prefix + ".x_out", x);
    }
  }

  // 7. Final layer: (shift, scale) = chunk2(Linear(SiLU(c))) -- shift FIRST -- then
  // Linear(LN(x)·(1+scale)+shift) -> [B, T, p·p·C_out].
  const int64_t F = w.final_linear.out_features();
  SD35_ASSIGN_OR_RETURN(Tensor fin, arena.tensor(S{B, T, F}, DType::kF32));
  {
    ArenaScope final_scope(arena);
    SD35_ASSIGN_OR_RETURN(Tensor mods, arena.tensor(S{B, 2 * D}, DType::kF32));
    SD35_RETURN_IF_ERROR(be.gemm(silu_c, w.final_adaln.w, w.final_adaln.bias(), mods, {}));
    SD35_ASSIGN_OR_RETURN(Tensor hmod, arena.tensor(S{B, T, D}, f.act));
    SD35_RETURN_IF_ERROR(mmdit::modulated_layer_norm(be, x, mmdit::mod_chunk(mods, 0, D),
                                                     mmdit::mod_chunk(mods, 1, D), hmod));
    SD35_RETURN_IF_ERROR(be.gemm(hmod, w.final_linear.w, w.final_linear.bias(), fin, {}));
  }
  observe("final_layer_out", fin);

  // 8. Unpatchify, einsum "nhwpqc->nchpwq": token (i, j) feature (py·p + px)·C_out + c goes
  // to pixel (c, i·p + py, j·p + px). One strided copy into a 6-D view of the output (or of
  // a padded buffer, cropped to [:H, :W] as ComfyUI does for odd sizes).
  const int64_t Co = cfg.out_channels;
  Tensor dst = out;
  if (padded) {
    SD35_ASSIGN_OR_RETURN(dst, arena.tensor(S{B, Co, Hp, Wp}, DType::kF32));
  }
  const Tensor dst6 = Tensor::strided_view_of(dst.data(), dst.dtype(), S{B, h, wd, p, p, Co},
                                              S{dst.stride(0), p * dst.stride(2), p * dst.stride(3),
                                                dst.stride(2), dst.stride(3), dst.stride(1)},
                                              dst.device(), dst.owner());
  SD35_RETURN_IF_ERROR(be.copy(fin.reshape(S{B, h, wd, p, p, Co}), dst6));
  if (padded) SD35_RETURN_IF_ERROR(be.copy(dst.slice(2, 0, H).slice(3, 0, W), out));
  return ok_status();
}

void MMDiT::timestep_features(std::span<const float> t, float* out) const {
  fill_timestep_sinusoid(t, impl_->cfg.freq_dim, out);
}

double MMDiT::forward_flops(const MMDiTConfig& cfg, int64_t batch, int64_t height, int64_t width,
                            int64_t context_len) {
  const double p = cfg.patch_size > 0 ? cfg.patch_size : 1;
  const double B = double(batch), D = cfg.hidden, M = cfg.mlp_hidden, Lc = double(context_len);
  const double T = std::ceil(double(height) / p) * std::ceil(double(width) / p);
  const double L = Lc + T;
  auto lin = [](double rows, double in, double out) { return 2.0 * rows * in * out; };
  // Per head: q·kᵀ and P·v, each 2·Lq·Lk·head_dim; summed over heads: 4·Lq·Lk·D.
  auto attn = [&](double lq, double lk) { return 4.0 * lq * lk * D; };
  const std::set<int> dual(cfg.x_block_self_attn_layers.begin(),
                           cfg.x_block_self_attn_layers.end());
  double f = lin(T, cfg.in_channels * p * p, D);       // patch embed
  f += lin(1, cfg.freq_dim, D) + lin(1, D, D);         // t_embedder
  f += lin(1, cfg.adm_in_channels, D) + lin(1, D, D);  // y_embedder
  f += lin(Lc, cfg.context_dim, D);                    // context_embedder
  for (int i = 0; i < cfg.depth; ++i) {
    const bool pre_only = i == cfg.depth - 1, two = dual.count(i) > 0;
    f += lin(1, D, (pre_only ? 2 : 6) * D) + lin(1, D, (two ? 9 : 6) * D);  // adaLN
    f += lin(Lc, D, 3 * D) + lin(T, D, 3 * D) + attn(L, L);                 // qkv + joint attn
    if (!pre_only) f += lin(Lc, D, D) + lin(Lc, D, M) + lin(Lc, M, D);
    f += lin(T, D, D) + lin(T, D, M) + lin(T, M, D);
    if (two) f += lin(T, D, 3 * D) + attn(T, T) + lin(T, D, D);
  }
  f += lin(1, D, 2 * D) + lin(T, D, p * p * cfg.out_channels);  // final layer
  return B * f;
}

}  // namespace sd35
