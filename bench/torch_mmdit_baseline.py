#!/usr/bin/env python3
r"""PyTorch eager baseline for the SD3.5 Medium MMDiT-X forward (SPEC-model.md §1).

This is the comparison a user would otherwise reach for: plain eager PyTorch, bf16 weights and
activations, torch's scaled_dot_product_attention (flash / memory-efficient kernels on CUDA),
no torch.compile, no CUDA graphs. Weights are random (std 0.02): speed does not depend on the
values. Module and parameter names follow the SAI checkpoint layout ("joint_blocks.3.x_block.
attn2.qkv.weight", ...), so --compare-checkpoint can check the structure against one of our
random checkpoints, key by key, without loading its data.

  torch_mmdit_baseline.py --height 1024 --width 1024 --batch 2 --iters 10      # GPU timing
  torch_mmdit_baseline.py --tiny --check-shapes                                # CPU smoke test
  torch_mmdit_baseline.py --check-shapes --device meta \
      --compare-checkpoint /tmp/sd35-gpu/model.safetensors

The last stdout line is one JSON object (gpu_check.sh parses it).
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# SPEC-model.md §1.1: parameters of SD3.5 Medium including pos_embed.
MEDIUM_PARAMS = 2_469_663_936


def rms_norm(x, weight, eps=1e-6):
    # F.rms_norm exists from torch 2.4; the manual form is the same math for older torch.
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def attention(q, k, v):
    """q, k, v [B, L, H, Dh] -> [B, L, H·Dh]; softmax scale 1/sqrt(Dh), no mask."""
    b, l, h, dh = q.shape
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if hasattr(F, "scaled_dot_product_attention"):
        o = F.scaled_dot_product_attention(q, k, v)
    else:  # torch < 2.0 (only for the CPU smoke test): the same result, materialised
        o = torch.softmax((q @ k.transpose(-1, -2)).float() / math.sqrt(dh), -1).to(v.dtype) @ v
    return o.transpose(1, 2).reshape(b, l, h * dh)


def modulate(x, shift, scale):
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


def layer_norm(x):
    # The block norms have no affine parameters (elementwise_affine=False), eps 1e-6.
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


class Mlp(nn.Module):
    def __init__(self, d, hidden, **kw):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden, **kw)
        self.fc2 = nn.Linear(hidden, d, **kw)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Attention(nn.Module):
    def __init__(self, d, heads, pre_only=False, **kw):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, **kw)
        self.ln_q = nn.Module()
        self.ln_k = nn.Module()
        # RMSNorm over the head dim with a learned weight (qk_norm "rms").
        self.ln_q.weight = nn.Parameter(torch.ones(d // heads, **kw))
        self.ln_k.weight = nn.Parameter(torch.ones(d // heads, **kw))
        if not pre_only:
            self.proj = nn.Linear(d, d, **kw)

    def qkv_heads(self, x):
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.heads, d // self.heads).unbind(2)
        return rms_norm(q, self.ln_q.weight), rms_norm(k, self.ln_k.weight), v


class BlockHalf(nn.Module):
    """One stream (context or x) of a joint block: adaLN, attention(s), MLP."""

    def __init__(self, d, heads, pre_only=False, dual=False, **kw):
        super().__init__()
        self.pre_only, self.dual = pre_only, dual
        n_mods = 2 if pre_only else (9 if dual else 6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, n_mods * d, **kw))
        self.attn = Attention(d, heads, pre_only, **kw)
        if dual:
            self.attn2 = Attention(d, heads, **kw)
        if not pre_only:
            self.mlp = Mlp(d, 4 * d, **kw)


class JointBlock(nn.Module):
    def __init__(self, d, heads, last, dual, **kw):
        super().__init__()
        self.context_block = BlockHalf(d, heads, pre_only=last, **kw)
        self.x_block = BlockHalf(d, heads, dual=dual, **kw)

    def forward(self, context, x, c):
        cb, xb = self.context_block, self.x_block
        cm = cb.adaLN_modulation(c).chunk(2 if cb.pre_only else 6, dim=1)
        xm = xb.adaLN_modulation(c).chunk(9 if xb.dual else 6, dim=1)
        cq, ck, cv = cb.attn.qkv_heads(modulate(layer_norm(context), cm[0], cm[1]))
        xn = layer_norm(x)  # one LN shared by attn and attn2
        xq, xk, xv = xb.attn.qkv_heads(modulate(xn, xm[0], xm[1]))
        # Joint attention: context tokens first.
        o = attention(torch.cat([cq, xq], 1), torch.cat([ck, xk], 1), torch.cat([cv, xv], 1))
        lc = context.shape[1]
        co, xo = o[:, :lc], o[:, lc:]
        if cb.pre_only:
            context = None
        else:
            context = context + cm[2].unsqueeze(1) * cb.attn.proj(co)
            context = context + cm[5].unsqueeze(1) * cb.mlp(
                modulate(layer_norm(context), cm[3], cm[4]))
        x = x + xm[2].unsqueeze(1) * xb.attn.proj(xo)
        if xb.dual:  # MMDiT-X: a second self-attention over the image tokens only
            o2 = attention(*xb.attn2.qkv_heads(modulate(xn, xm[6], xm[7])))
            x = x + xm[8].unsqueeze(1) * xb.attn2.proj(o2)
        x = x + xm[5].unsqueeze(1) * xb.mlp(modulate(layer_norm(x), xm[3], xm[4]))
        return context, x


class Embedder(nn.Module):
    def __init__(self, d_in, d, **kw):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_in, d, **kw), nn.SiLU(), nn.Linear(d, d, **kw))

    def forward(self, x):
        return self.mlp(x)


class MMDiTX(nn.Module):
    def __init__(self, depth=24, dual_layers=13, pos_max=384, context_dim=4096, adm=2048,
                 channels=16, patch=2, freq_dim=256, **kw):
        super().__init__()
        d = 64 * depth
        self.d, self.heads, self.patch, self.channels = d, depth, patch, channels
        self.pos_max, self.freq_dim = pos_max, freq_dim
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(channels, d, patch, stride=patch, **kw)
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_max * pos_max, d, **kw))
        self.t_embedder = Embedder(freq_dim, d, **kw)
        self.y_embedder = Embedder(adm, d, **kw)
        self.context_embedder = nn.Linear(context_dim, d, **kw)
        self.joint_blocks = nn.ModuleList(
            JointBlock(d, depth, last=i == depth - 1, dual=i < dual_layers, **kw)
            for i in range(depth))
        self.final_layer = nn.Module()
        self.final_layer.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d, **kw))
        self.final_layer.linear = nn.Linear(d, patch * patch * channels, **kw)

    def timestep_embedding(self, t):
        # Sinusoidal, [cos, sin] order, computed in f32 then cast (as the references do).
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) *
                          torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], -1)

    def forward(self, x, t, context, y):
        b, _, hh, ww = x.shape
        p = self.patch
        h, w = hh // p, ww // p
        x = self.x_embedder.proj(x).flatten(2).transpose(1, 2)  # [B, h·w, D], row-major
        top, left = (self.pos_max - h) // 2, (self.pos_max - w) // 2
        pe = self.pos_embed.view(1, self.pos_max, self.pos_max, self.d)
        x = x + pe[:, top:top + h, left:left + w].reshape(1, h * w, self.d)
        c = self.t_embedder(self.timestep_embedding(t).to(x.dtype)) + self.y_embedder(y)
        context = self.context_embedder(context)
        for blk in self.joint_blocks:
            context, x = blk(context, x, c)
        shift, scale = self.final_layer.adaLN_modulation(c).chunk(2, dim=1)
        x = self.final_layer.linear(modulate(layer_norm(x), shift, scale))
        x = x.view(b, h, w, p, p, self.channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, self.channels, h * p, w * p)


def init_random_(model, seed):
    """Linear/conv weights N(0, 0.02), biases 0, RMSNorm weights 1, pos_embed N(0, 0.02)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if prm.device.type == "meta":
                continue
            if name.endswith(".bias"):
                prm.zero_()
            elif name.endswith("ln_q.weight") or name.endswith("ln_k.weight"):
                prm.fill_(1.0)
            elif prm.device.type == "cpu":
                prm.normal_(0.0, 0.02, generator=g)
            else:  # on-device RNG: no 5 GB host round trip
                prm.normal_(0.0, 0.02)


def checkpoint_keys(path):
    """{canonical key: shape} of an MMDiT in a safetensors file, from its header only."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        if k.startswith("model.diffusion_model."):
            out[k[len("model.diffusion_model."):]] = tuple(v["shape"])
        elif not k.startswith("first_stage_model."):
            out[k] = tuple(v["shape"])
    return out


def read_safetensors(path):
    """{name: tensor} of a whole (small) safetensors file."""
    dtypes = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] not in dtypes:
            continue
        a, b = v["data_offsets"]
        flat = (torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[v["dtype"]]) if b > a
                else torch.empty(0, dtype=dtypes[v["dtype"]]))
        out[k] = flat.reshape(v["shape"])
    return out


def golden_check(set_dir, dev):
    """Runs this implementation in f32 with a fixture set's MMDiT weights (e.g. tests/data/tiny-a)
    against its goldens_mmdit cases: proof that the baseline computes the same function as the
    model it is compared with. Returns True when every case matches."""
    cfg = json.load(open(f"{set_dir}/config.json"))["mmdit"]
    prefix = "model.diffusion_model."
    sd = {k[len(prefix):]: v.float() for k, v in
          read_safetensors(f"{set_dir}/model.safetensors").items() if k.startswith(prefix)}
    model = MMDiTX(depth=cfg["depth"], dual_layers=len(cfg["x_block_self_attn_layers"]),
                   pos_max=cfg["pos_embed_max_size"],
                   context_dim=sd["context_embedder.weight"].shape[1],
                   adm=sd["y_embedder.mlp.0.weight"].shape[1], channels=cfg["in_channels"],
                   patch=cfg["patch_size"], device=dev, dtype=torch.float32).eval()
    assert cfg["x_block_self_attn_layers"] == list(range(len(cfg["x_block_self_attn_layers"])))
    model.load_state_dict(sd, strict=True)
    gold = read_safetensors(f"{set_dir}/goldens_mmdit.safetensors")
    # Full f32 on CUDA too (cuDNN convolutions default to TF32, ~1e-3 relative).
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    ok = True
    for case in sorted({k.split(".")[0] for k in gold}):
        g = {k.split(".", 1)[1]: v.to(dev) for k, v in gold.items() if k.startswith(case + ".")}
        with torch.inference_mode():
            out = model(g["x"], g["t"], g["context"], g["y"])
        err = (out - g["out"]).abs().max().item()
        scale = g["out"].abs().max().item()
        # f32 against the f32 references: only summation order differs (fp32 vs fp64 ~1e-6).
        good = err <= 1e-4 * scale + 1e-5
        ok &= good
        print(f"golden {case}: x {list(g['x'].shape)}, context {list(g['context'].shape)}: "
              f"max abs err {err:.2e} (max |out| {scale:.3g}) {'PASS' if good else 'FAIL'}")
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--height", type=int, default=1024, help="image height in pixels")
    ap.add_argument("--width", type=int, default=1024, help="image width in pixels")
    ap.add_argument("--batch", type=int, default=2, help="2 = cond + uncond batched (CFG)")
    ap.add_argument("--context", type=int, default=154, help="text tokens (77 CLIP + 77 T5)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--depth", type=int, default=24, help="24 = SD3.5 Medium")
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cpu, meta")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true",
                    help="depth 2, 128x128 image, batch 1, 2 iterations: a quick smoke test")
    ap.add_argument("--check-shapes", action="store_true",
                    help="print the parameter count (and check it against SD3.5 Medium's)")
    ap.add_argument("--compare-checkpoint", metavar="FILE",
                    help="check every MMDiT key and shape against this safetensors file")
    ap.add_argument("--golden", metavar="SET_DIR",
                    help="first check the forward in f32 against a fixture set's MMDiT goldens "
                         "(e.g. tests/data/tiny-a)")
    args = ap.parse_args()
    if args.tiny:
        args.depth, args.height, args.width = 2, 128, 128
        args.batch, args.iters, args.warmup = 1, 2, 1
    if args.height % 16 or args.width % 16:
        ap.error("height and width must be multiples of 16")
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.dtype]
    kw = dict(device=dev, dtype=dtype)
    torch.manual_seed(args.seed)
    golden_ok = None
    if args.golden:
        golden_ok = golden_check(args.golden, "cpu" if dev == "meta" else dev)

    t0 = time.perf_counter()
    model = MMDiTX(depth=args.depth, dual_layers=min(13, args.depth), **kw).eval()
    init_random_(model, args.seed)
    if dev == "cuda":
        torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    result = {"device": dev, "torch": torch.__version__, "dtype": args.dtype, "depth": args.depth,
              "params": n_params, "height": args.height, "width": args.width,
              "batch": args.batch, "context": args.context, "build_s": round(build_s, 3)}
    if dev == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0)
    ok = golden_ok is not False
    if golden_ok is not None:
        result["golden"] = golden_ok

    if args.check_shapes:
        print(f"parameters: {n_params:,} ({n_params * 2 / 1e9:.2f} GB in bf16)")
        if args.depth == 24:
            match = n_params == MEDIUM_PARAMS
            ok &= match
            print(f"SD3.5 Medium has {MEDIUM_PARAMS:,}: {'match' if match else 'MISMATCH'}")
    if args.compare_checkpoint:
        ours = {k: tuple(p.shape) for k, p in model.named_parameters()}
        theirs = checkpoint_keys(args.compare_checkpoint)
        missing = sorted(set(theirs) - set(ours))
        extra = sorted(set(ours) - set(theirs))
        shape = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
        for k in missing[:10]:
            print(f"  only in the checkpoint: {k} {theirs[k]}")
        for k in extra[:10]:
            print(f"  only in this model: {k} {ours[k]}")
        for k in shape[:10]:
            print(f"  shape differs: {k} ours {ours[k]} checkpoint {theirs[k]}")
        same = not (missing or extra or shape)
        ok &= same
        print(f"compare with {args.compare_checkpoint}: {len(theirs)} keys, "
              f"{'identical keys and shapes' if same else 'DIFFERENT'}")
        result["checkpoint_match"] = same

    if dev != "meta" and args.iters > 0:
        b, lat_h, lat_w = args.batch, args.height // 8, args.width // 8
        x = torch.randn(b, 16, lat_h, lat_w, **kw)
        t = torch.linspace(500, 750, b, device=dev)
        ctx = torch.randn(b, args.context, 4096, **kw) * 0.5
        y = torch.randn(b, 2048, **kw)

        def sync():
            if dev == "cuda":
                torch.cuda.synchronize()

        with torch.inference_mode():
            for _ in range(args.warmup):
                out = model(x, t, ctx, y)
            sync()
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(args.iters):
                t1 = time.perf_counter()
                out = model(x, t, ctx, y)
                sync()
                times.append(time.perf_counter() - t1)
        finite = bool(torch.isfinite(out).all())
        ok &= finite and tuple(out.shape) == tuple(x.shape)
        times.sort()
        mean_ms = 1e3 * sum(times) / len(times)
        result.update({"forward_ms": round(mean_ms, 3), "forward_min_ms": round(1e3 * times[0], 3),
                       "forward_median_ms": round(1e3 * times[len(times) // 2], 3),
                       "iters": args.iters, "finite": finite})
        sdpa = "scaled_dot_product_attention" if hasattr(
            F, "scaled_dot_product_attention") else "manual softmax attention (old torch)"
        print(f"PyTorch {torch.__version__} eager {args.dtype} on {result.get('gpu', dev)}: "
              f"MMDiT forward {args.height}x{args.width} batch {b} context {args.context}: "
              f"{mean_ms:.2f} ms mean, {1e3 * times[0]:.2f} ms min over {args.iters} "
              f"(after {args.warmup} warm-ups; {sdpa}){'' if finite else ', NON-FINITE OUTPUT'}")
        if dev == "cuda":
            peak = torch.cuda.max_memory_allocated()
            result["peak_allocated_bytes"] = peak
            print(f"peak allocated {peak / 1e9:.2f} GB (torch.cuda.max_memory_allocated, "
                  f"weights included)")
    result["ok"] = ok
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
