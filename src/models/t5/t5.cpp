// T5 v1.1 encoder forward pass (SPEC-model.md §4.3; ComfyUI comfy/text_encoders/t5.py, SAI
// other_impls.py T5) on Backend ops, f32 activations, weights in their stored dtype.
//
// fp8 files (SPEC-model.md §2.4):
//  * plain fp8: gemm reads the fp8 matrices in place. ComfyUI then runs the model with an fp8
//    "model dtype" and applies torch.nan_to_num to the embedding output ("Fix for fp8 T5"):
//    NaN -> 0, +inf -> FLT_MAX, -inf -> -FLT_MAX. Done here with a host pass over the [B·L, D]
//    embedding rows (the affine op's clamp cannot map NaN to 0); on a device backend the rows
//    are downloaded and uploaded again (a few MB once per encode).
//  * scaled fp8 (marker `scaled_fp8`): the effective weight is float(w8)·scale_weight (one F32
//    scalar per Linear). Instead of materialising a scaled copy of every matrix we scale the
//    GEMM output: x·(s·W)ᵀ = s·(x·Wᵀ) exactly in real arithmetic; in f32 it differs from
//    ComfyUI's order (round(w·s) first) by about one rounding per output, far below the
//    tolerances. The activation that a plain GEMM fuses is applied after the scaling.
#include "models/t5/t5.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "backend/transfer.h"
#include "weights/weight_binder.h"
#include "weights/weight_index.h"
#include "weights/weight_specs.h"

namespace sd35 {

using S = Shape;

namespace {

// T5LayerNorm eps (HF layer_norm_epsilon).
constexpr float kRmsEps = 1e-6f;
// relative_attention_max_distance of every released T5 (the config, not the file, holds it).
constexpr int kMaxDistance = 128;

struct T5Linear {
  Tensor w;            // [out, in], stored dtype (f32/f16/bf16/fp8)
  float scale = 1.0f;  // scaled fp8: effective weight = w · scale
  bool scaled = false;
};

struct T5Block {
  Tensor ln0, ln1;  // RMSNorm weights [d_model], activation dtype
  T5Linear q, k, v, o, wi0, wi1, wo;
};

struct T5Weights {
  Tensor embedding;             // [vocab, d_model], stored dtype (gather_rows converts)
  std::vector<float> rel_bias;  // [num_buckets, heads] row-major, f32 (read on the host)
  std::vector<T5Block> blocks;
  Tensor final_ln;
};

bool is_fp8(DType t) { return t == DType::kF8E4M3FN || t == DType::kF8E5M2; }

class Binder : public WeightBinder {
 public:
  Binder(WeightMap& map, bool scaled_fp8, WeightPlacer* placer)
      : WeightBinder(map, "T5", placer), scaled_fp8_(scaled_fp8) {}
  Tensor vec(const std::string& field) { return take_vector(field); }
  // `canonical`: the layer's SAI name, under which its scale_weight is bound.
  T5Linear linear(const std::string& field, const std::string& canonical) {
    T5Linear l;
    l.w = take(field + ".w");
    Tensor s = take_host(canonical + ".scale_weight", /*required=*/false);  // read here
    // ComfyUI applies scale_weight only with the scaled_fp8 marker (scaled_fp8_ops); a layer
    // without one keeps its default of 1. Without the marker the key is unused, as in ComfyUI.
    if (scaled_fp8_ && s.defined()) {
      if (s.numel() != 1) {
        fail(invalid_argument("T5: " + canonical + ".scale_weight must be a scalar, got " +
                              s.describe()));
      } else {
        l.scale = load_as_f32(s.data(), s.dtype(), 0);
        l.scaled = true;
        if (!std::isfinite(l.scale))
          fail(invalid_argument("T5: " + canonical + ".scale_weight is not finite"));
      }
    }
    return l;
  }

 private:
  bool scaled_fp8_;
};

Result<T5Weights> weights_from_map(const T5Config& cfg, WeightMap map, WeightPlacer* placer) {
  Binder b(map, cfg.scaled_fp8, placer);
  T5Weights w;
  // ComfyUI embeds with shared.weight; SAI with encoder.embed_tokens.weight (identical copies
  // in every released file). Take shared when present.
  w.embedding = b.take("shared", /*required=*/false);
  if (!w.embedding.defined()) w.embedding = b.take("embed_tokens");
  const Tensor rb = b.take_host("relative_attention_bias");  // read on the host per encode
  if (rb.defined()) {
    w.rel_bias.resize(size_t(rb.numel()));
    for (int64_t i = 0; i < rb.numel(); ++i)
      w.rel_bias[size_t(i)] = load_as_f32(rb.data(), rb.dtype(), i);
  }
  w.blocks.resize(size_t(cfg.layers));
  for (int i = 0; i < cfg.layers; ++i) {
    const std::string f = "blocks." + std::to_string(i);
    const std::string n = "encoder.block." + std::to_string(i);
    const std::string att = n + ".layer.0.SelfAttention.", ff = n + ".layer.1.DenseReluDense.";
    T5Block& blk = w.blocks[size_t(i)];
    blk.ln0 = b.vec(f + ".ln0");
    blk.q = b.linear(f + ".q", att + "q");
    blk.k = b.linear(f + ".k", att + "k");
    blk.v = b.linear(f + ".v", att + "v");
    blk.o = b.linear(f + ".o", att + "o");
    blk.ln1 = b.vec(f + ".ln1");
    blk.wi0 = b.linear(f + ".wi_0", ff + "wi_0");
    blk.wi1 = b.linear(f + ".wi_1", ff + "wi_1");
    blk.wo = b.linear(f + ".wo", ff + "wo");
  }
  w.final_ln = b.vec("final_layer_norm");
  SD35_RETURN_IF_ERROR(b.status());
  return w;
}

// y (+)= act(x·Wᵀ) for a possibly scaled-fp8 Linear (T5 has no biases).
Status linear(Backend& be, Arena& arena, const Tensor& x, const T5Linear& l, const Tensor& y,
              Activation act = Activation::kNone, bool accumulate = false) {
  if (!l.scaled) return be.gemm(x, l.w, nullptr, y, {act, accumulate});
  AffineParams scale;
  scale.scale = l.scale;
  if (!accumulate) {
    SD35_RETURN_IF_ERROR(be.gemm(x, l.w, nullptr, y, {}));
    SD35_RETURN_IF_ERROR(be.affine(y, scale, y));
    return act == Activation::kNone ? ok_status() : be.activation(y, act, y);
  }
  ArenaScope scope(arena);
  SD35_ASSIGN_OR_RETURN(Tensor t, arena.tensor(y.shape(), DType::kF32));
  SD35_RETURN_IF_ERROR(be.gemm(x, l.w, nullptr, t, {}));
  SD35_RETURN_IF_ERROR(be.affine(t, scale, t));
  if (act != Activation::kNone) SD35_RETURN_IF_ERROR(be.activation(t, act, t));
  return be.add(y, t, y);
}

}  // namespace

int t5_relative_position_bucket(int64_t relative_position, int num_buckets, int max_distance) {
  // HF/ComfyUI _relative_position_bucket, bidirectional: half the buckets per direction, the
  // first half of those exact, the rest logarithmic up to max_distance. Computed in float32 and
  // truncated toward zero like torch's .to(torch.long).
  const int half = num_buckets / 2;
  int bucket = relative_position > 0 ? half : 0;
  const int64_t n = std::llabs(relative_position);
  const int max_exact = half / 2;
  if (n < max_exact) return bucket + int(n);
  const float ratio = float(n) / float(max_exact);
  const float log_ratio = std::log(ratio);
  const float denom = float(std::log(double(max_distance) / double(max_exact)));
  const float large = float(max_exact) + log_ratio / denom * float(half - max_exact);
  const int64_t large_i = std::min<int64_t>(int64_t(large), half - 1);
  return bucket + int(large_i);
}

struct T5Encoder::Impl {
  T5Config cfg;
  T5Weights w;
  bool nan_to_num = false;  // ComfyUI's fp8 embedding fix (see the top of the file)
};

T5Encoder::T5Encoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
T5Encoder::~T5Encoder() = default;
const T5Config& T5Encoder::config() const { return impl_->cfg; }
bool T5Encoder::fp8_embedding_fix() const { return impl_->nan_to_num; }

Result<std::unique_ptr<T5Encoder>> T5Encoder::load(const WeightIndex& index,
                                                   const ConfigOverrides& overrides,
                                                   WeightPlacer* placer) {
  SD35_ASSIGN_OR_RETURN(T5Config cfg, derive_t5_config(index, overrides));
  if (cfg.layers < 1 || cfg.heads < 1 || cfg.d_kv < 1 || cfg.num_buckets < 4 || cfg.d_ff < 1) {
    return unsupported("T5: unsupported config (" + std::to_string(cfg.layers) + " blocks, " +
                       std::to_string(cfg.heads) + " heads, " + std::to_string(cfg.num_buckets) +
                       " buckets)");
  }
  SD35_ASSIGN_OR_RETURN(WeightMap map,
                        bind_weights(index, Component::kT5XXL, t5_weight_specs(cfg)));
  // ComfyUI's T5 "model dtype" is the dtype holding most of the parameters
  // (comfy.utils.weight_dtype counts elements); nan_to_num applies when it is not
  // f32/f16/bf16, i.e. for fp8 files.
  int64_t fp8 = 0, other = 0;
  for (const auto& [field, t] : map) (is_fp8(t.dtype()) ? fp8 : other) += t.numel();
  auto impl = std::make_unique<Impl>();
  impl->nan_to_num = fp8 > other;
  SD35_ASSIGN_OR_RETURN(impl->w, weights_from_map(cfg, std::move(map), placer));
  impl->cfg = std::move(cfg);
  return std::unique_ptr<T5Encoder>(new T5Encoder(std::move(impl)));
}

Status T5Encoder::encode(
    Backend& be, Arena& arena, const Tensor& ids, const Tensor& out,
    const std::function<void(std::string_view, const Tensor&)>& observe) const {
  const T5Config& cfg = impl_->cfg;
  const T5Weights& w = impl_->w;
  auto bad = [](const std::string& m) { return invalid_argument("t5xxl encode: " + m); };
  if (!ids.defined() || ids.data() == nullptr) return bad("ids are missing");
  if (ids.dtype() != DType::kI32) return bad("ids must be int32, got " + ids.describe());
  if (ids.ndim() != 2 || ids.size(0) < 1 || ids.size(1) < 1) {
    return bad("ids must be [B, L] with B, L >= 1, got " + ids.describe());
  }
  if (!ids.is_contiguous()) return bad("ids must be contiguous");
  if (ids.device() != Device::kCPU && ids.device() != be.device()) {
    return bad("ids must be host memory or on the backend's device");
  }
  const int64_t B = ids.size(0), L = ids.size(1), D = cfg.d_model, H = cfg.heads;
  const int64_t inner = H * cfg.d_kv, F = cfg.d_ff;
  const Shape want{B, L, D};
  if (!out.defined() || out.data() == nullptr || out.dtype() != DType::kF32 ||
      out.shape() != want) {
    return bad("out must be f32" + want.to_string() + ", got " +
               (out.defined() ? out.describe() : std::string("nothing")));
  }
  if (out.device() != be.device()) return bad("out is not on the backend's device");
  std::vector<std::byte> ids_storage;
  SD35_ASSIGN_OR_RETURN(const Tensor host_ids, to_host(be, ids, ids_storage));
  const int32_t* id = host_ids.data_as<const int32_t>();
  for (int64_t i = 0; i < B * L; ++i) {
    if (id[i] < 0 || id[i] >= cfg.vocab) {
      return bad("token id " + std::to_string(id[i]) + " at [" + std::to_string(i / L) + ", " +
                 std::to_string(i % L) + "] is outside the embedding's " +
                 std::to_string(cfg.vocab) + " rows");
    }
  }
  auto emit = [&](std::string_view name, const Tensor& t) {
    if (observe) observe(name, t);
  };

  ArenaScope scope(arena);
  SD35_ASSIGN_OR_RETURN(const Tensor dev_ids, to_backend(be, arena, ids));
  // x = shared[ids] (no embedding scaling in T5 v1.1), f32.
  SD35_ASSIGN_OR_RETURN(Tensor x, arena.tensor(S{B, L, D}, DType::kF32));
  SD35_RETURN_IF_ERROR(
      be.gather_rows(w.embedding, dev_ids.reshape(S{B * L}), x.reshape(S{B * L, D})));
  if (impl_->nan_to_num) {
    HostStaging staging(be, x);
    float* p = staging.data<float>();
    if (!p) return resource_exhausted("t5xxl encode: out of host memory for the embedding fix");
    if (x.device() != Device::kCPU) SD35_RETURN_IF_ERROR(download_bytes(be, x, p));
    constexpr float kMax = std::numeric_limits<float>::max();
    for (int64_t i = 0; i < x.numel(); ++i) {
      if (std::isnan(p[i]))
        p[i] = 0.0f;
      else if (std::isinf(p[i]))
        p[i] = p[i] > 0 ? kMax : -kMax;
    }
    SD35_RETURN_IF_ERROR(staging.commit());
  }

  // Relative position bias [1, H, L, L]: bias[h, i, j] = rel_bias[bucket(j - i), h]. Computed
  // once (block 0 in the references) and added to the scores of every block.
  SD35_ASSIGN_OR_RETURN(Tensor bias, arena.tensor(S{1, H, L, L}, DType::kF32));
  {
    std::vector<int> bucket(size_t(2 * L - 1));
    for (int64_t r = -(L - 1); r <= L - 1; ++r) {
      bucket[size_t(r + L - 1)] = t5_relative_position_bucket(r, cfg.num_buckets, kMaxDistance);
    }
    HostStaging staging(be, bias);
    float* bp = staging.data<float>();
    if (!bp) return resource_exhausted("t5xxl encode: out of host memory for the position bias");
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < L; ++i) {
        float* row = bp + (h * L + i) * L;
        for (int64_t j = 0; j < L; ++j)
          row[j] = w.rel_bias[size_t(bucket[size_t(j - i + L - 1)] * H + h)];
      }
    }
    SD35_RETURN_IF_ERROR(staging.commit());
  }
  emit("position_bias", bias);

  for (int i = 0; i < cfg.layers; ++i) {
    const T5Block& blk = w.blocks[size_t(i)];
    {
      ArenaScope block_scope(arena);
      SD35_ASSIGN_OR_RETURN(Tensor h, arena.tensor(S{B, L, D}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor q, arena.tensor(S{B, L, inner}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor k, arena.tensor(S{B, L, inner}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor v, arena.tensor(S{B, L, inner}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor a, arena.tensor(S{B, L, inner}, DType::kF32));
      // x += o(attention(RMSNorm(x))): scores q·kᵀ + bias with NO 1/sqrt(d_kv) scaling (T5
      // folds it into the weights; ComfyUI passes k·sqrt(d) to an SDPA that divides by it),
      // no padding mask (SD3: t5_attention_mask=False, pads are attended to).
      SD35_RETURN_IF_ERROR(be.rms_norm(x, &blk.ln0, kRmsEps, h));
      SD35_RETURN_IF_ERROR(linear(be, arena, h, blk.q, q));
      SD35_RETURN_IF_ERROR(linear(be, arena, h, blk.k, k));
      SD35_RETURN_IF_ERROR(linear(be, arena, h, blk.v, v));
      SD35_RETURN_IF_ERROR(be.attention_masked(q, k, v, a, int(H), 1.0f, /*causal=*/false, &bias));
      SD35_RETURN_IF_ERROR(linear(be, arena, a, blk.o, x, Activation::kNone, /*accumulate=*/true));
    }
    {
      ArenaScope ffn_scope(arena);
      SD35_ASSIGN_OR_RETURN(Tensor h, arena.tensor(S{B, L, D}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor g, arena.tensor(S{B * L, F}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor u, arena.tensor(S{B * L, F}, DType::kF32));
      SD35_ASSIGN_OR_RETURN(Tensor m, arena.tensor(S{B * L, F}, DType::kF32));
      // x += wo(gelu_tanh(wi_0 h) ⊙ wi_1 h), h = RMSNorm(x); f32 throughout (an fp16 FFN
      // overflows in T5-XXL).
      SD35_RETURN_IF_ERROR(be.rms_norm(x, &blk.ln1, kRmsEps, h));
      const Tensor h2 = h.reshape(S{B * L, D});
      SD35_RETURN_IF_ERROR(linear(be, arena, h2, blk.wi0, g, Activation::kGeluTanh));
      SD35_RETURN_IF_ERROR(linear(be, arena, h2, blk.wi1, u));
      SD35_RETURN_IF_ERROR(be.mul(g, u, m));  // the gated FFN product g ⊙ u
      SD35_RETURN_IF_ERROR(linear(be, arena, m, blk.wo, x.reshape(S{B * L, D}), Activation::kNone,
                                  /*accumulate=*/true));
    }
    if (observe) emit("block" + std::to_string(i) + "_out", x);
  }
  SD35_RETURN_IF_ERROR(be.rms_norm(x, &w.final_ln, kRmsEps, out));
  emit("last_hidden_state", out);
  return ok_status();
}

}  // namespace sd35
