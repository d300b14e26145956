// cpu::conv2d on oneDNN convolution (NCHW in, NCHW out).
//
// oneDNN 2.6 on plain NCHW picks an im2col "gemm:jit" implementation that runs at 200-450
// GFLOP/s here, against 360 (f32) / 700 (bf16) for its blocked "brgconv" kernels. So the
// primitive is created with layout "any" and src/dst are reordered to and from its blocked
// layout. To bound that extra memory for the VAE's large maps (128×1024×1024 f32 is 512 MB) the
// output is produced in bands of rows: each band reads its input rows plus the kernel halo and
// gets its own top/bottom zero padding, so the result equals one convolution over the whole map.
//
// Weights (any dtype) are converted to the activation dtype and reordered per call: VAE conv
// weights are at most 9.4 MB, small next to the convolution's work.
#include <algorithm>
#include <atomic>
#include <string>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dnnl_util.h"
#include "backend/cpu/gemm_checks.h"
#include "core/convert.h"

namespace sd35::cpu {
namespace {

using dnnl::memory;

// Blocked src + dst of one band stay below this (rounded to whole rows).
constexpr size_t kBandBytes = size_t(48) << 20;
std::atomic<size_t> g_band_bytes{kBandBytes};

struct ConvEntry {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward conv;
  memory::desc src_plain, dst_plain;  // strided views of the caller's tensors (band-sized)
  bool reorder_src = false, reorder_dst = false;
  dnnl::reorder src_reorder, dst_reorder;
};

memory::dims dims4(int64_t a, int64_t b, int64_t c, int64_t d) { return {a, b, c, d}; }

std::string strides_str(const Tensor& t) {
  std::string s;
  for (int i = 0; i < t.ndim(); ++i) s += std::to_string(t.strides()[i]) + ",";
  return s;
}

}  // namespace

void set_conv_band_bytes_for_testing(size_t bytes) {
  g_band_bytes.store(bytes ? bytes : kBandBytes, std::memory_order_relaxed);
}

Status conv2d(CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
              const Tensor& y, const Conv2dParams& params) {
  SD35_RETURN_IF_ERROR(linear_checks::conv2d(x, w, bias, y, params));
  if (y.numel() == 0) return ok_status();
  if (x.numel() == 0) return invalid_argument("conv2d: empty input");
  return dnnl_guard("conv2d", [&]() -> Status {
    DnnlState& st = dnnl_state(ctx);
    const dnnl::engine& eng = st.engine();
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
    const int64_t o = w.size(0), kh = w.size(2), kw = w.size(3), s = params.stride;
    const int64_t oh = y.size(2), ow = y.size(3);
    const DType cdt = x.dtype();
    const memory::data_type xdt = dnnl_dt(cdt), ydt = dnnl_dt(y.dtype());
    const size_t ces = dtype_size(cdt);

    // Weights converted to the activation dtype (plain OIHW) in scratch.
    const size_t wn = size_t(w.numel());
    void* wplain = thread_scratch(ScratchSlot::kConvW, wn * ces);
    float* b32 = bias ? static_cast<float*>(thread_scratch(ScratchSlot::kBias, size_t(o) * 4)) : nullptr;
    if (!wplain || (bias && !b32)) return resource_exhausted("conv2d: cannot allocate scratch");
    ctx.pool.parallel_for(o, 1, [&](int64_t o0, int64_t o1) {
      size_t per = wn / size_t(o);
      convert(static_cast<const char*>(w.data()) + size_t(o0) * per * w.element_size(), w.dtype(),
              static_cast<char*>(wplain) + size_t(o0) * per * ces, cdt, int64_t(per) * (o1 - o0));
    });
    if (bias) {
      for (int64_t i = 0; i < o; ++i)
        b32[i] = load_as_f32(static_cast<const char*>(bias->data()) +
                                 i * bias->stride(0) * int64_t(bias->element_size()),
                             bias->dtype(), 0);
    }

    // Output rows per band.
    const size_t row_bytes = size_t(n) * (size_t(c) * size_t(s) * size_t(wd) * ces +
                                          size_t(o) * size_t(ow) * y.element_size());
    int64_t band = std::clamp<int64_t>(int64_t(g_band_bytes.load(std::memory_order_relaxed) / std::max<size_t>(row_bytes, 1)), 1, oh);
    // Equal bands (the last may be shorter) keep the number of distinct primitives small.
    int64_t nbands = (oh + band - 1) / band;
    band = (oh + nbands - 1) / nbands;

    void* wblocked = nullptr;
    memory::desc wready;  // layout wblocked currently holds
    for (int64_t oh0 = 0; oh0 < oh; oh0 += band) {
      const int64_t oh1 = std::min(oh, oh0 + band), ob = oh1 - oh0;
      const int64_t in_lo = oh0 * s - params.pad_top, in_hi = (oh1 - 1) * s - params.pad_top + kh;
      const int64_t pt = std::max<int64_t>(0, -in_lo), pb = std::max<int64_t>(0, in_hi - h);
      const int64_t r0 = std::max<int64_t>(0, in_lo), hb = std::min(h, in_hi) - r0;
      std::string key = "conv:" + std::to_string(n) + "," + std::to_string(c) + "," +
                        std::to_string(hb) + "," + std::to_string(wd) + ":" + std::to_string(o) +
                        "," + std::to_string(kh) + "," + std::to_string(kw) + ":" +
                        std::to_string(s) + "," + std::to_string(pt) + "," +
                        std::to_string(params.pad_left) + "," + std::to_string(pb) + "," +
                        std::to_string(params.pad_right) + ":" + std::to_string(int(xdt)) + "," +
                        std::to_string(int(ydt)) + "," + std::to_string(bias != nullptr) + ":" +
                        strides_str(x) + ":" + strides_str(y);
      auto e = st.cached<ConvEntry>(key, [&] {
        memory::desc src_any(dims4(n, c, hb, wd), xdt, memory::format_tag::any);
        memory::desc w_any(dims4(o, c, kh, kw), xdt, memory::format_tag::any);
        memory::desc b_md({o}, memory::data_type::f32, memory::format_tag::x);
        auto make_pd = [&](memory::data_type dst_dt) {
          memory::desc dst_any(dims4(n, o, ob, ow), dst_dt, memory::format_tag::any);
          auto d = bias ? dnnl::convolution_forward::desc(
                              dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                              src_any, w_any, b_md, dst_any, {s, s}, {pt, params.pad_left},
                              {pb, params.pad_right})
                        : dnnl::convolution_forward::desc(
                              dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                              src_any, w_any, dst_any, {s, s}, {pt, params.pad_left},
                              {pb, params.pad_right});
          return dnnl::convolution_forward::primitive_desc(d, eng);
        };
        auto ent = std::make_shared<ConvEntry>();
        try {
          ent->pd = make_pd(ydt);
        } catch (const dnnl::error&) {
          // No f32-src/bf16-dst kernel: compute in the activation dtype, and let the dst
          // reorder round to y's dtype.
          ent->pd = make_pd(xdt);
        }
        ent->conv = dnnl::convolution_forward(ent->pd);
        ent->src_plain = memory::desc(dims4(n, c, hb, wd), xdt,
                                      dims4(x.stride(0), x.stride(1), x.stride(2), x.stride(3)));
        ent->dst_plain = memory::desc(dims4(n, o, ob, ow), ydt,
                                      dims4(y.stride(0), y.stride(1), y.stride(2), y.stride(3)));
        ent->reorder_src = ent->pd.src_desc() != ent->src_plain;
        ent->reorder_dst = ent->pd.dst_desc() != ent->dst_plain;
        if (ent->reorder_src)
          ent->src_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
              eng, ent->src_plain, eng, ent->pd.src_desc()));
        if (ent->reorder_dst)
          ent->dst_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
              eng, ent->pd.dst_desc(), eng, ent->dst_plain));
        return ent;
      });
      dnnl::stream strm(eng);
      if (!wblocked || e->pd.weights_desc() != wready) {
        // Bands differ only in height and padding, so they almost always agree on the weights
        // layout and this runs once per call.
        memory::desc wplain_md(dims4(o, c, kh, kw), xdt, memory::format_tag::oihw);
        wblocked = thread_scratch(ScratchSlot::kConvWBlocked, e->pd.weights_desc().get_size());
        if (!wblocked) return resource_exhausted("conv2d: cannot allocate scratch");
        memory wsrc(wplain_md, eng, wplain), wdst(e->pd.weights_desc(), eng, wblocked);
        dnnl::reorder(wsrc, wdst).execute(strm, wsrc, wdst);
        wready = e->pd.weights_desc();
      }
      memory wmem(e->pd.weights_desc(), eng, wblocked);
      char* xband = static_cast<char*>(x.data()) + r0 * x.stride(2) * int64_t(ces);
      char* yband = static_cast<char*>(y.data()) + oh0 * y.stride(2) * int64_t(y.element_size());
      memory xplain(e->src_plain, eng, xband), yplain(e->dst_plain, eng, yband);
      memory src = xplain, dst = yplain;
      if (e->reorder_src) {
        void* buf = thread_scratch(ScratchSlot::kConvSrc, e->pd.src_desc().get_size());
        if (!buf) return resource_exhausted("conv2d: cannot allocate scratch");
        src = memory(e->pd.src_desc(), eng, buf);
        e->src_reorder.execute(strm, xplain, src);
      }
      if (e->reorder_dst) {
        void* buf = thread_scratch(ScratchSlot::kConvDst, e->pd.dst_desc().get_size());
        if (!buf) return resource_exhausted("conv2d: cannot allocate scratch");
        dst = memory(e->pd.dst_desc(), eng, buf);
      }
      std::unordered_map<int, memory> args{
          {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, dst}};
      if (bias) args.emplace(DNNL_ARG_BIAS, memory(e->pd.bias_desc(), eng, b32));
      e->conv.execute(strm, args);
      if (e->reorder_dst) e->dst_reorder.execute(strm, dst, yplain);
      strm.wait();
    }
    return ok_status();
  });
}

}  // namespace sd35::cpu
