// CUDA backend conformance, elementwise / normalisation / layout ops: every op against the
// reference backend on identical inputs (fixed seeds), outputs in guard-banded buffers with
// padded rows. Tolerances: see elementwise_tol() (f32: 2e-5 relative — f32 device math vs
// the reference's f64, a few f32 ulps; bf16/f16: two ulps of the output). Conversions and
// copies must be bit-exact (same rounding code paths as core/float_convert.h).
#include <cstring>
#include <limits>

#include "backend/cuda/cuda_backend.h"
#include "cuda_test_util.h"

namespace sd35::cudatest {
namespace {

constexpr DType kAct[] = {DType::kF32, DType::kBF16, DType::kF16};

TEST(CudaOps, HostDeviceCopyRoundTrip) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kI32, DType::kF8E4M3FN}) {
    SCOPED_TRACE(dt(t));
    auto src = Mirror::make({3, 37}, t);
    if (t == DType::kI32) {
      int32_t* p = src->host().data_as<int32_t>();
      for (int i = 0; i < 3 * 37; ++i) p[i] = i * 7919 - 400;
    } else {
      src->fill_random(1, 3.0f);
    }
    auto dev = Mirror::make({3, 37}, t);
    auto back = Mirror::make({3, 37}, t);
    auto before = dev->snapshot();
    ASSERT_TRUE(cuda().copy(src->host(), dev->dev()).ok());  // upload
    ASSERT_TRUE(cuda().copy(dev->dev(), back->host()).ok());  // download
    EXPECT_EQ(0, std::memcmp(src->host().data(), back->host().data(), 3 * 37 * dtype_size(t)));
    dev->download();
    EXPECT_TRUE(dev->guards_intact(before, {dev->host()}));
  }
  // Host side not contiguous, or a dtype change across devices: a clear error.
  auto h = Mirror::make({4, 5}, DType::kF32, 3);
  auto d = Mirror::make({4, 5}, DType::kF32);
  Status s = cuda().copy(h->host(), d->dev());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("contiguous"), std::string::npos) << s.to_string();
  auto hb = Mirror::make({4, 5}, DType::kBF16);
  EXPECT_FALSE(cuda().copy(hb->host(), d->dev()).ok());
}

TEST(CudaOps, CastAllPairsStridedBitExact) {
  const DType all[] = {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3FN, DType::kF8E5M2};
  for (DType from : all) {
    for (DType to : all) {
      // Source: a transposed view ([5, 9] over a [9, 5+2] buffer) — any strides.
      auto x = Mirror::make({9, 5}, from, 2);
      x->fill_random(7, 600.0f);  // beyond fp8 e4m3fn's 448 (NaN) and e5m2 precision
      x->upload();
      Shape ts{5, 9}, tst{x->host().stride(1), x->host().stride(0)};
      auto y = Mirror::make({5, 9}, to, 3);
      run_and_compare("cast " + dt(from) + " -> " + dt(to), {{y.get(), kExact}},
                      [&](Backend& b, bool d) { return b.copy(side(*x, d, ts, tst), side(*y, d)); });
    }
  }
}

TEST(CudaOps, CopyRawIntegerStrided) {
  for (DType t : {DType::kI64, DType::kI32, DType::kU8}) {
    auto x = Mirror::make({4, 6, 3}, t, 1);
    Mirror::for_each(x->host(), [&, i = 0](void* p) mutable {
      int64_t v = (i++ * 2654435761LL) & 0x7FFFFFFF;
      std::memcpy(p, &v, dtype_size(t));
    });
    x->upload();
    auto y = Mirror::make({4, 6, 3}, t, 2);
    run_and_compare("raw copy " + dt(t), {{y.get(), kExact}},
                    [&](Backend& b, bool d) { return b.copy(side(*x, d), side(*y, d)); });
  }
}

TEST(CudaOps, AddMulBroadcast) {
  struct Case {
    Shape a, b;
  };
  const Case cases[] = {{{2, 77, 96}, {1, 77, 96}},  // pos_embed onto a batch
                        {{2, 8, 5, 7}, {8, 1, 1}},    // conv bias onto NCHW
                        {{3, 33}, {33}},
                        {{4, 1, 6}, {4, 1, 6}},
                        {{2, 3, 4}, {1}},
                        {{1000, 3}, {1000, 1}}};
  int seed = 10;
  for (const Case& c : cases) {
    for (DType ta : kAct) {
      for (DType tb : {DType::kF32, DType::kBF16}) {
        for (bool mul : {false, true}) {
          auto a = Mirror::make(c.a, ta, 2);
          auto b = Mirror::make(c.b, tb, 1);
          auto y = Mirror::make(c.a, ta, 3);
          a->fill_random(uint32_t(++seed), 2.0f);
          b->fill_random(uint32_t(++seed), 2.0f);
          a->upload();
          b->upload();
          run_and_compare(std::string(mul ? "mul " : "add ") + c.a.to_string() + " " +
                              c.b.to_string() + " " + dt(ta) + "/" + dt(tb),
                          {{y.get(), elementwise_tol(ta, 4.0)}}, [&](Backend& bk, bool d) {
                            return mul ? bk.mul(side(*a, d), side(*b, d), side(*y, d))
                                       : bk.add(side(*a, d), side(*b, d), side(*y, d));
                          });
        }
      }
    }
  }
}

TEST(CudaOps, AddInPlaceAndTransposed) {
  // y aliases a; a is a transposed view.
  auto a = Mirror::make({6, 10}, DType::kF32);
  auto b = Mirror::make({10, 6}, DType::kF32);
  a->fill_random(3);
  b->fill_random(4);
  a->upload();
  b->upload();
  Shape ts{10, 6}, tst{1, 10};
  run_and_compare("add in place, transposed", {{a.get(), elementwise_tol(DType::kF32, 2)}},
                  [&](Backend& bk, bool d) {
                    Tensor av = side(*a, d, ts, tst);
                    return bk.add(av, side(*b, d), av);
                  });
}

TEST(CudaOps, Affine) {
  for (DType t : kAct) {
    auto x = Mirror::make({5, 41}, t, 3);
    auto y = Mirror::make({5, 41}, t, 1);
    x->fill_random(5, 4.0f);
    x->upload();
    AffineParams p;
    p.scale = 0.5f, p.shift = 0.25f, p.lo = -1.0f, p.hi = 1.5f;
    run_and_compare("affine " + dt(t), {{y.get(), elementwise_tol(t, 2)}},
                    [&](Backend& b, bool d) { return b.affine(side(*x, d), p, side(*y, d)); });
    AffineParams unclamped;
    unclamped.scale = 1.0f / 1.5305f, unclamped.shift = 0.0609f;
    run_and_compare("affine unclamped " + dt(t), {{y.get(), elementwise_tol(t, 4)}},
                    [&](Backend& b, bool d) { return b.affine(side(*x, d), unclamped, side(*y, d)); });
  }
}

TEST(CudaOps, EveryActivation) {
  const Activation acts[] = {Activation::kNone, Activation::kGeluTanh, Activation::kGeluErf,
                             Activation::kQuickGelu, Activation::kSilu};
  for (Activation act : acts) {
    for (DType t : kAct) {
      auto x = Mirror::make({3, 7, 129}, t, 5);
      auto y = Mirror::make({3, 7, 129}, t, 2);
      x->fill_random(uint32_t(int(act) + 20), 8.0f);  // both tails of every activation
      x->upload();
      run_and_compare("activation " + std::string(activation_name(act)) + " " + dt(t),
                      {{y.get(), elementwise_tol(t, 8)}},
                      [&](Backend& b, bool d) { return b.activation(side(*x, d), act, side(*y, d)); });
      // In place.
      run_and_compare("activation in place " + std::string(activation_name(act)) + " " + dt(t),
                      {{x.get(), elementwise_tol(t, 8)}}, [&](Backend& b, bool d) {
                        return b.activation(side(*x, d), act, side(*x, d));
                      });
    }
  }
}

TEST(CudaOps, Softmax) {
  for (int64_t c : {1, 7, 1000, 4099}) {
    for (DType t : kAct) {
      auto x = Mirror::make({2, 3, c}, t, 3);
      auto y = Mirror::make({2, 3, c}, t, 1);
      x->fill_random(uint32_t(c), 6.0f);
      x->upload();
      // Outputs are in [0, 1]: absolute tolerance on that scale.
      run_and_compare("softmax c=" + std::to_string(c) + " " + dt(t),
                      {{y.get(), elementwise_tol(t, 0.01)}},
                      [&](Backend& b, bool d) { return b.softmax(side(*x, d), side(*y, d)); });
    }
  }
}

TEST(CudaOps, LayerNormAndRmsNorm) {
  for (int64_t c : {1, 3, 96, 1537}) {
    for (DType t : kAct) {
      for (DType pt : {DType::kF32, DType::kBF16}) {
        auto x = Mirror::make({2, 5, c}, t, 2);
        auto y = Mirror::make({2, 5, c}, t, 3);
        auto w = Mirror::make({c}, pt);
        auto bias = Mirror::make({c}, pt);
        x->fill_random(uint32_t(c + 1), 3.0f, 0.5f);
        w->fill_random(uint32_t(c + 2));
        bias->fill_random(uint32_t(c + 3));
        for (Mirror* m : {x.get(), w.get(), bias.get()}) m->upload();
        const std::string tag = " c=" + std::to_string(c) + " " + dt(t) + "/" + dt(pt);
        // Normalised values are O(1) (up to sqrt(C) for outliers): scale 4.
        run_and_compare("layer_norm affine" + tag, {{y.get(), elementwise_tol(t, 4)}},
                        [&](Backend& b, bool d) {
                          Tensor wv = side(*w, d), bv = side(*bias, d);
                          return b.layer_norm(side(*x, d), &wv, &bv, 1e-6f, side(*y, d));
                        });
        run_and_compare("layer_norm plain" + tag, {{y.get(), elementwise_tol(t, 4)}},
                        [&](Backend& b, bool d) {
                          return b.layer_norm(side(*x, d), nullptr, nullptr, 1e-5f, side(*y, d));
                        });
        run_and_compare("rms_norm" + tag, {{y.get(), elementwise_tol(t, 4)}},
                        [&](Backend& b, bool d) {
                          Tensor wv = side(*w, d);
                          return b.rms_norm(side(*x, d), &wv, 1e-6f, side(*y, d));
                        });
      }
    }
  }
}

TEST(CudaOps, PerHeadNormsInPlaceOnQkvSlices) {
  // The MMDiT's q/k norm: rows of head_dim values inside a fused [B, L, 3·H·hd] qkv buffer,
  // normalised in place per head. Head sizes of 16..512 bytes take the 16-byte vector kernel
  // (1 to 32 threads per row); the offset-by-one view and the odd head size take the
  // generic kernels, which must agree too. Same tolerances as LayerNormAndRmsNorm.
  const int64_t B = 2, L = 7, H = 3;
  struct Case {
    DType t;
    int64_t hd;
    int64_t offset;  // elements before the q slice (breaks the 16-byte alignment when odd)
  };
  const Case cases[] = {{DType::kBF16, 64, 0}, {DType::kF16, 64, 0}, {DType::kF32, 64, 0},
                        {DType::kBF16, 8, 0},  {DType::kBF16, 256, 0}, {DType::kF32, 4, 0},
                        {DType::kF32, 128, 0}, {DType::kBF16, 64, 1}, {DType::kBF16, 36, 0}};
  for (const Case& c : cases) {
    const int64_t D = H * c.hd, row = 3 * D + c.offset;
    auto qkv = Mirror::make({B, L, row}, c.t);
    auto w = Mirror::make({c.hd}, DType::kF32);
    auto bias = Mirror::make({c.hd}, DType::kBF16);
    qkv->fill_random(uint32_t(c.hd * 7 + c.offset), 3.0f, 0.25f);
    w->fill_random(uint32_t(c.hd + 11));
    bias->fill_random(uint32_t(c.hd + 13));
    for (Mirror* m : {qkv.get(), w.get(), bias.get()}) m->upload();
    const Shape hs{B, L, H, c.hd}, hst{L * row, row, c.hd, 1};
    const std::string tag = " " + dt(c.t) + " hd=" + std::to_string(c.hd) + " offset=" +
                            std::to_string(c.offset);
    run_and_compare("rms_norm q in place" + tag, {{qkv.get(), elementwise_tol(c.t, 4)}},
                    [&](Backend& b, bool d) {
                      Tensor q = side(*qkv, d, hs, hst, c.offset), wv = side(*w, d);
                      return b.rms_norm(q, &wv, 1e-6f, q);
                    });
    run_and_compare("layer_norm k in place" + tag, {{qkv.get(), elementwise_tol(c.t, 4)}},
                    [&](Backend& b, bool d) {
                      Tensor k = side(*qkv, d, hs, hst, c.offset + D);
                      Tensor wv = side(*w, d), bv = side(*bias, d);
                      return b.layer_norm(k, &wv, &bv, 1e-6f, k);
                    });
    // Out of place into a dense [B, L, H, hd] tensor, no weight.
    auto y = Mirror::make(hs, c.t);
    run_and_compare("rms_norm v to dense" + tag, {{y.get(), elementwise_tol(c.t, 4)}},
                    [&](Backend& b, bool d) {
                      return b.rms_norm(side(*qkv, d, hs, hst, c.offset + 2 * D), nullptr,
                                        1e-6f, side(*y, d));
                    });
  }
}

TEST(CudaOps, GroupNormSmall) {
  for (DType t : kAct) {
    auto x = Mirror::make({2, 64, 5, 7}, t);
    auto y = Mirror::make({2, 64, 5, 7}, t);
    auto w = Mirror::make({64}, DType::kF32);
    auto bias = Mirror::make({64}, DType::kF32);
    x->fill_random(31, 2.0f, 0.3f);
    w->fill_random(32);
    bias->fill_random(33);
    for (Mirror* m : {x.get(), w.get(), bias.get()}) m->upload();
    // silu: the fused norm + SiLU against the reference's two ops (Backend's default); SiLU's
    // slope is below 1.1, so the norm's tolerance carries over.
    for (bool silu : {false, true}) {
      run_and_compare(std::string(silu ? "group_norm_silu" : "group_norm") + " small " + dt(t),
                      {{y.get(), elementwise_tol(t, 4)}}, [&](Backend& b, bool d) {
                        Tensor wv = side(*w, d), bv = side(*bias, d);
                        return silu ? b.group_norm_silu(side(*x, d), 32, &wv, &bv, 1e-6f,
                                                        side(*y, d))
                                    : b.group_norm(side(*x, d), 32, &wv, &bv, 1e-6f, side(*y, d));
                      });
    }
    run_and_compare("group_norm no affine, in place " + dt(t), {{x.get(), elementwise_tol(t, 4)}},
                    [&](Backend& b, bool d) {
                      return b.group_norm(side(*x, d), 8, nullptr, nullptr, 1e-6f, side(*x, d));
                    });
  }
}

// The one-pass group_norm_silu must give the very bytes of CUDA's own group_norm followed by
// activation(kSilu): the same normalisation code, the value rounded to y's dtype and read back
// exactly as the activation kernel would load it, the same SiLU function.
TEST(CudaOps, GroupNormSiluEqualsTheTwoOpsBitForBit) {
  const Shape s{2, 128, 33, 65};  // planes of 2145 values: several blocks and a ragged tail
  for (DType t : kAct) {
    auto x = Mirror::make(s, t);
    auto fused = Mirror::make(s, t);
    auto two = Mirror::make(s, t);
    auto w = Mirror::make({128}, DType::kBF16);
    auto bias = Mirror::make({128}, DType::kBF16);
    x->fill_random(51, 3.0f, 0.5f);
    w->fill_random(52);
    bias->fill_random(53);
    for (Mirror* m : {x.get(), w.get(), bias.get()}) m->upload();
    Tensor wv = w->dev(), bv = bias->dev();
    ASSERT_TRUE(cuda().group_norm_silu(x->dev(), 32, &wv, &bv, 1e-6f, fused->dev()).ok());
    ASSERT_TRUE(cuda().group_norm(x->dev(), 32, &wv, &bv, 1e-6f, two->dev()).ok());
    ASSERT_TRUE(cuda().activation(two->dev(), Activation::kSilu, two->dev()).ok());
    ASSERT_TRUE(cuda().synchronize().ok());
    fused->download();
    two->download();
    EXPECT_TRUE(fused->image() == two->image()) << dt(t) << ": fused and two-op bytes differ";
  }
}

TEST(CudaOps, GroupNormLargeSpatial) {
  // VAE-like: 32 groups of 4 channels × 256×256 (262144 elements per group, many blocks per
  // group), values offset by 10 so a one-pass E[x²]-E[x]² would lose precision.
  const Shape s{1, 128, 256, 256};
  for (DType t : {DType::kF32, DType::kBF16}) {
    auto x = Mirror::make(s, t);
    auto y = Mirror::make(s, t);
    auto w = Mirror::make({128}, DType::kF32);
    auto bias = Mirror::make({128}, DType::kF32);
    x->fill_random(41, 1.0f, 10.0f);
    w->fill_random(42);
    bias->fill_random(43);
    for (Mirror* m : {x.get(), w.get(), bias.get()}) m->upload();
    // f32: the mean of 2^18 values is exact to ~1e-6 relative; normalised outputs O(2).
    // silu: also the fused norm + SiLU (SiLU's slope < 1.1 keeps the tolerance).
    for (bool silu : {false, true}) {
      run_and_compare(std::string(silu ? "group_norm_silu" : "group_norm") + " large " + dt(t),
                      {{y.get(), t == DType::kF32 ? Tol{5e-5, 5e-5} : elementwise_tol(t, 4)}},
                      [&](Backend& b, bool d) {
                        Tensor wv = side(*w, d), bv = side(*bias, d);
                        return silu ? b.group_norm_silu(side(*x, d), 32, &wv, &bv, 1e-6f,
                                                        side(*y, d))
                                    : b.group_norm(side(*x, d), 32, &wv, &bv, 1e-6f, side(*y, d));
                      });
    }
  }
}

TEST(CudaOps, ModulateWithChunkedParams) {
  // shift/scale are chunks 0 and 1 of an adaLN output [B, 6·D] (row stride 6·D).
  const int64_t B = 2, L = 77, D = 96;
  for (DType t : kAct) {
    auto x = Mirror::make({B, L, D}, t, 4);
    auto y = Mirror::make({B, L, D}, t, 2);
    auto ada = Mirror::make({B, 6 * D}, t);
    x->fill_random(51, 3.0f);
    ada->fill_random(52, 1.0f);
    x->upload();
    ada->upload();
    const Shape ps{B, D}, pst{6 * D, 1};
    run_and_compare("modulate " + dt(t), {{y.get(), elementwise_tol(t, 8)}}, [&](Backend& b, bool d) {
      return b.modulate(side(*x, d), side(*ada, d, ps, pst, 0), side(*ada, d, ps, pst, D),
                        side(*y, d));
    });
    run_and_compare("modulate in place " + dt(t), {{x.get(), elementwise_tol(t, 8)}},
                    [&](Backend& b, bool d) {
                      return b.modulate(side(*x, d), side(*ada, d, ps, pst, 3 * D),
                                        side(*ada, d, ps, pst, 4 * D), side(*x, d));
                    });
  }
}

TEST(CudaOps, LayerNormModulateWithChunkedParams) {
  // The MMDiT's fused adaLN pre-norm: x f32 [B, L, D] with padded rows (row stride D + 4),
  // shift/scale chunks 1 and 4 of an f32 adaLN output [B, 6·D] (row stride 6·D), y f32 /
  // bf16 / f16 with padded rows in guard-banded buffers. D: odd small widths (one warp per
  // row, masked tails), the model's 1536 (the row held in registers) and 9000 (more than
  // 8 values x 1024 threads: the kernel re-reads x for each pass). Tolerance: normalised
  // values are O(2), times |1 + scale| <= 2 plus |shift| <= 1: scale 8 (as modulate).
  for (int64_t D : {7, 33, 1536, 9000}) {
    const int64_t B = 2, L = D > 2000 ? 3 : 37;
    auto x = Mirror::make({B, L, D}, DType::kF32, 4);
    auto ada = Mirror::make({B, 6 * D}, DType::kF32);
    x->fill_random(uint32_t(71 + D), 1.0f, 3.0f);  // centred on 3: a one-pass variance fails
    ada->fill_random(uint32_t(72 + D), 1.0f);
    x->upload();
    ada->upload();
    const Shape ps{B, D}, pst{6 * D, 1};
    for (DType t : kAct) {
      auto y = Mirror::make({B, L, D}, t, 3);
      run_and_compare("layer_norm_modulate D=" + std::to_string(D) + " y " + dt(t),
                      {{y.get(), elementwise_tol(t, 8)}}, [&](Backend& b, bool d) {
                        return b.layer_norm_modulate(side(*x, d), side(*ada, d, ps, pst, D),
                                                     side(*ada, d, ps, pst, 4 * D), 1e-6f,
                                                     side(*y, d));
                      });
    }
    // x as rows 2..L+1 of a longer sequence [B, L + 5, D]: the batch stride is not L times
    // the row stride (the model's per-stream views of one buffer).
    auto seq = Mirror::make({B, L + 5, D}, DType::kF32);
    seq->fill_random(uint32_t(73 + D), 0.5f, -2.0f);
    seq->upload();
    const Shape xs{B, L, D}, xst{(L + 5) * D, D, 1};
    auto y = Mirror::make({B, L, D}, DType::kBF16);
    run_and_compare("layer_norm_modulate sequence slice D=" + std::to_string(D),
                    {{y.get(), elementwise_tol(DType::kBF16, 8)}}, [&](Backend& b, bool d) {
                      return b.layer_norm_modulate(side(*seq, d, xs, xst, 2 * D),
                                                   side(*ada, d, ps, pst, 0),
                                                   side(*ada, d, ps, pst, D), 1e-6f, side(*y, d));
                    });
    // In place (y is x, f32): each block reads its row before writing it.
    run_and_compare("layer_norm_modulate in place D=" + std::to_string(D),
                    {{x.get(), elementwise_tol(DType::kF32, 8)}}, [&](Backend& b, bool d) {
                      return b.layer_norm_modulate(side(*x, d), side(*ada, d, ps, pst, 3 * D),
                                                   side(*ada, d, ps, pst, 5 * D), 1e-6f,
                                                   side(*x, d));
                    });
  }
  // The shared argument checks also guard the device: a bf16 x is rejected, not launched.
  auto xb = Mirror::make({1, 2, 8}, DType::kBF16);
  auto p = Mirror::make({1, 8}, DType::kF32);
  auto yb = Mirror::make({1, 2, 8}, DType::kBF16);
  Status s = cuda().layer_norm_modulate(xb->dev(), p->dev(), p->dev(), 1e-6f, yb->dev());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("layer_norm_modulate"), std::string::npos) << s.to_string();
}

TEST(CudaOps, GatedAdd) {
  const int64_t B = 2, L = 33, D = 64;
  for (DType t : kAct) {
    auto x = Mirror::make({B, L, D}, t, 1);
    auto h = Mirror::make({B, L, D}, t, 3);
    auto out = Mirror::make({B, L, D}, t, 2);
    auto ada = Mirror::make({B, 6 * D}, t);
    x->fill_random(61, 2.0f);
    h->fill_random(62, 2.0f);
    ada->fill_random(63);
    for (Mirror* m : {x.get(), h.get(), ada.get()}) m->upload();
    const Shape gs{B, D}, gst{6 * D, 1};
    run_and_compare("gated_add " + dt(t), {{out.get(), elementwise_tol(t, 8)}},
                    [&](Backend& b, bool d) {
                      return b.gated_add(side(*x, d), side(*ada, d, gs, gst, 2 * D), side(*h, d),
                                         side(*out, d));
                    });
    run_and_compare("gated_add in place " + dt(t), {{x.get(), elementwise_tol(t, 8)}},
                    [&](Backend& b, bool d) {
                      return b.gated_add(side(*x, d), side(*ada, d, gs, gst, 5 * D), side(*h, d),
                                         side(*x, d));
                    });
  }
}

TEST(CudaOps, UpsampleNearest2x) {
  for (DType t : kAct) {
    for (DType to : {t, DType::kF32}) {
      auto x = Mirror::make({2, 3, 5, 7}, t, 1);
      auto y = Mirror::make({2, 3, 10, 14}, to, 2);
      x->fill_random(71, 5.0f);
      x->upload();
      run_and_compare("upsample " + dt(t) + " -> " + dt(to), {{y.get(), kExact}},
                      [&](Backend& b, bool d) { return b.upsample_nearest2x(side(*x, d), side(*y, d)); });
    }
  }
}

TEST(CudaOps, Concat) {
  for (int axis : {0, 1, -1}) {
    Shape s1{2, 3, 4}, s2{2, 3, 4};
    Shape sy{2, 3, 4};
    const int a = axis < 0 ? 2 : axis;
    s1[a] = 2, s2[a] = 5, sy[a] = 7;
    auto x1 = Mirror::make(s1, DType::kF32, 1);
    auto x2 = Mirror::make(s2, DType::kBF16, 2);
    auto y = Mirror::make(sy, DType::kBF16, 3);
    x1->fill_random(81, 3.0f);
    x2->fill_random(82, 3.0f);
    x1->upload();
    x2->upload();
    run_and_compare("concat axis " + std::to_string(axis), {{y.get(), kExact}},
                    [&](Backend& b, bool d) {
                      Tensor in[] = {side(*x1, d), side(*x2, d)};
                      return b.concat(in, axis, side(*y, d));
                    });
  }
}

TEST(CudaOps, ErrorsAreStatusesNotCrashes) {
  auto a = Mirror::make({4, 8}, DType::kF32);
  auto y = Mirror::make({4, 8}, DType::kF32);
  auto bad = Mirror::make({4, 9}, DType::kF32);
  // A host tensor given to a CUDA op.
  Status s = cuda().add(a->host(), a->dev(), y->dev());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cpu"), std::string::npos) << s.to_string();
  s = cuda().activation(a->dev(), Activation::kSilu, y->host());
  EXPECT_FALSE(s.ok()) << "host output accepted";
  s = cuda().softmax(a->host(), y->host());
  EXPECT_FALSE(s.ok()) << "host tensors accepted";
  // Shape mismatches, bad parameters.
  EXPECT_FALSE(cuda().add(a->dev(), bad->dev(), y->dev()).ok());
  EXPECT_FALSE(cuda().layer_norm(a->dev(), nullptr, nullptr, -1.0f, y->dev()).ok());
  EXPECT_FALSE(cuda().group_norm(a->dev(), 3, nullptr, nullptr, 1e-6f, y->dev()).ok());
  EXPECT_FALSE(cuda().copy(a->dev(), bad->dev()).ok());
  // The messages match the reference backend's for the same mistake.
  Status rs = ref().add(a->host(), bad->host(), y->host());
  Status cs = cuda().add(a->dev(), bad->dev(), y->dev());
  EXPECT_EQ(rs.message(), cs.message());
  EXPECT_TRUE(cuda().synchronize().ok());
}

TEST(CudaOps, DeviceMemoryInterface) {
  DeviceMemory& mem = cuda().memory();
  EXPECT_EQ(mem.device(), Device::kCUDA);
  auto p = mem.allocate(1000);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  auto q = mem.allocate(1000);
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % 256, 0u);
  std::vector<uint8_t> src(1000), dst(1000, 0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t(i * 31 + 7);
  ASSERT_TRUE(mem.copy_to_device(*p, src.data(), src.size()).ok());
  ASSERT_TRUE(mem.copy_on_device(*q, *p, src.size()).ok());
  ASSERT_TRUE(mem.copy_to_host(dst.data(), *q, dst.size()).ok());
  EXPECT_EQ(src, dst);
  size_t free_b = 0, total_b = 0;
  ASSERT_TRUE(mem.mem_info(&free_b, &total_b).ok());
  EXPECT_GT(total_b, free_b);
  mem.deallocate(*p);
  mem.deallocate(*q);
  // Absurd sizes fail cleanly with ResourceExhausted.
  auto huge = mem.allocate(size_t(1) << 50);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kResourceExhausted) << huge.status().to_string();
  // Weight memory: shared per device, synchronous copies.
  auto wm = cuda_weight_memory(0);
  ASSERT_TRUE(wm.ok()) << wm.status().to_string();
  auto wm2 = cuda_weight_memory(0);
  ASSERT_TRUE(wm2.ok());
  EXPECT_EQ(wm->get(), wm2->get());
  auto w = (*wm)->allocate(64);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*wm)->copy_to_device(*w, src.data(), 64).ok());
  std::vector<uint8_t> back(64);
  ASSERT_TRUE((*wm)->copy_to_host(back.data(), *w, 64).ok());
  EXPECT_EQ(0, std::memcmp(back.data(), src.data(), 64));
  (*wm)->deallocate(*w);
}

}  // namespace
}  // namespace sd35::cudatest
