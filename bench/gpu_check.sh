#!/usr/bin/env bash
# GPU check: build (or unpack a prebuilt bundle), run the CUDA conformance tests and the goldens
# on the GPU, time a full-size random-weight SD3.5 Medium generation (1024², 20 steps,
# dpmpp_2m / sgm_uniform, cfg 4.5, bf16, fp8 T5 on the GPU) and, in the same run, the same
# MMDiT forward in PyTorch eager, then print a short table (always, last). See docs/gpu.md.
#
#   bench/gpu_check.sh [--prebuilt BUNDLE.tar.xz ...] [--out DIR] [--build-dir DIR]
#                      [--models DIR] [--budget SECONDS]
#
# --prebuilt may be given more than once (make_gpu_bundle.sh --split: bundle.tar.xz and
# bundle-libs.tar.xz); the archives are unpacked in order into one bundle folder.
#
# The checks after the build share one time budget (default 470 s, so the run ends within 8
# minutes on an H100 with the bundle); every step has its own timeout, clamped to what is left.
# A failed or timed-out step is recorded and the script goes on.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prebuilt="" out="" build_dir="$repo/build-gpu" models=/tmp/sd35-gpu budget=470
export repo prebuilt build_dir work  # read by the unpack/build functions run under timeout
while [ $# -gt 0 ]; do
  case "$1" in
    # Colon-separated: the unpack step runs in a child bash, which gets no arrays.
    --prebuilt) prebuilt="${prebuilt:+$prebuilt:}$(realpath "$2")"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d /tmp/sd35-gpu-check.XXXXXX)
if [ -n "$out" ]; then
  mkdir -p "$out" && out=$(realpath "$out")
  exec > >(tee -a "$out/gpu_check.log") 2>&1
fi
declare -A R       # results: key -> value (shown in the table)
declare -a STEPS   # "name|seconds|status" in run order
script_t0=$(date +%s)
deadline=$((script_t0 + 7200))  # the build has its own limit; the budget starts after it

now() { date +%s.%N; }
remaining() { echo $((deadline - $(date +%s))); }

# run_step NAME TIMEOUT CMD...: runs CMD with a timeout clamped to the budget left, its output
# shown and kept in $work/NAME.log; records seconds and ok / failed (rc) / timeout / skipped.
# Returns CMD's exit status.
run_step() {
  local name=$1 limit=$2; shift 2
  local left; left=$(remaining)
  if [ "$left" -lt 15 ]; then
    echo "== $name: skipped (time budget spent)"
    STEPS+=("$name|0|skipped (no time left)")
    return 124
  fi
  [ "$limit" -gt $((left - 10)) ] && limit=$((left - 10))
  echo "== $name (timeout ${limit}s): $*"
  local t0 rc status; t0=$(now)
  if declare -F "$1" >/dev/null; then  # a shell function: timeout needs a process to run
    # shellcheck disable=SC2163  # exports the function named by $1
    export -f "$1"
    set -- bash -c '"$@"' _ "$@"
  fi
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$work/$name.log"
  rc=${PIPESTATUS[0]}
  local secs; secs=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
  case $rc in
    0) status=ok ;;
    124|137) status="timeout (${limit}s)" ;;
    *) status="failed (rc $rc)" ;;
  esac
  STEPS+=("$name|$secs|$status")
  echo "== $name: $status, $secs s"
  return "$rc"
}

# Last line of a log that is a JSON object (bench_generate and the torch script end with one).
last_json() { grep -E '^\{.*\}$' "$1" 2>/dev/null | tail -n 1; }
print_table() {
  local gen="$work/bench_generate.json" tor="$work/torch.json" ab="$work/epilogue_ab.json" cg="$work/cuda_graphs.json"
  local cab="$work/cudnn_ab.json" fk="$work/flash_keys_ab.json"
  echo
  echo "== step times"
  local s
  for s in "${STEPS[@]}"; do
    IFS='|' read -r n t st <<<"$s"
    printf '  %-26s %7s s  %s\n' "$n" "$t" "$st"
  done
  printf '  %-26s %7s s\n' "whole script" "$(( $(date +%s) - script_t0 ))"
  R[card]=${R[card]:-unknown}
  python3 - "$gen" "$tor" "$ab" "$cg" "${R[card]}" "${R[conformance]:-not run}" "${R[golden_f32]:-not run}" \
      "${R[golden_bf16]:-not run}" "$cab" "${R[cudnn]:-not looked for}" "$fk" <<'EOF' || echo "(python3 missing: see the logs above)"
import json, sys
gen_path, torch_path, ab_path, cg_path, card, conf, g32, g16, cab_path, cudnn_found, fk_path = sys.argv[1:12]
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return {}
g, t, ab, cg, cab = (load(gen_path), load(torch_path), load(ab_path), load(cg_path),
                     load(cab_path))
fk = load(fk_path)
same = None
if g.get("image_fnv1a") and cg.get("image_fnv1a"):
    same = "yes" if g["image_fnv1a"] == cg["image_fnv1a"] else "NO (hashes differ)"
def num(d, k):
    v = d.get(k)
    return float(v) if isinstance(v, (int, float)) and v > 0 else None
def fmt(v, f):
    return f % v if v is not None else "n/a"
ours, theirs = num(g, "mmdit_forward_ms"), num(t, "forward_ms")
ratio = theirs / ours if ours and theirs else None
total, vram = num(g, "total_s"), num(g, "peak_vram_gb")
def target(v, ok):
    return "n/a" if v is None else ("met" if ok(v) else "missed")
rows = [
    ("card, driver", card),
    ("conformance (test_cuda*)", conf),
    ("goldens tiny-a, f32", g32),
    ("goldens tiny-a, bf16 (info)", g16),
    ("text encode", fmt(num(g, "text_encode_s"), "%.3f s")),
    ("per step (20 steps, cfg)", fmt(num(g, "step_s"), "%.4f s")),
    ("cuDNN for conv2d: where, what", "%s: %s" % (cudnn_found, g.get("cudnn", "n/a"))),
    ("VAE decode", fmt(num(g, "vae_decode_s"), "%.3f s")),
    ("VAE decode, cuDNN off", fmt(num(cab, "vae_decode_s"), "%.3f s (A/B, SD35_CUDNN=0)")),
    ("total 1024², 20 steps", fmt(total, "%.3f s")),
    ("peak VRAM (incl. context)", fmt(vram, "%.2f GB")),
    ("MMDiT fwd ours / PyTorch", "%s / %s ms" % (fmt(ours, "%.1f"), fmt(theirs, "%.1f"))),
    ("speed-up vs PyTorch eager", fmt(ratio, "%.2fx")),
    ("MMDiT fwd, Lt epilogues off", fmt(num(ab, "mmdit_forward_ms"), "%.1f ms (A/B, same run)")),
    ("MMDiT fwd, 64-key attention", fmt(num(fk, "mmdit_forward_ms"), "%.1f ms (A/B, same run)")),
    ("text encode, small-M GEMM on", fmt(num(ab, "text_encode_s"), "%.3f s (A/B, same run)")),
    ("graphs (%s replays) / eager: step" % g.get("graph_replays", "?"),
     "%s / %s" % (fmt(num(g, "step_s"), "%.4f s"), fmt(num(cg, "step_s"), "%.4f s (A/B)"))),
    ("CUDA graphs off: total", fmt(num(cg, "total_s"), "%.3f s (A/B, same run)")),
    ("graphs / eager: same image", same or "n/a"),
    ("same image in every run", "%s / %s" % (g.get("same_image_every_run", "n/a"),
                                             cg.get("same_image_every_run", "n/a"))),
    ("target: total <= 1.0 s", target(total, lambda v: v <= 1.0)),
    ("target: MMDiT >= 1.5x torch", target(ratio, lambda v: v >= 1.5)),
    ("target: peak VRAM <= 20 GB", target(vram, lambda v: v <= 20.0)),
]
print("\n== sd35 GPU check (bf16, fp8 T5 on the GPU; PyTorch %s eager bf16 + SDPA)" %
      t.get("torch", "?"))
w = max(len(r[0]) for r in rows)
print("+-" + "-" * w + "-+-" + "-" * 46 + "-+")
for k, v in rows:
    print("| %-*s | %-46s |" % (w, k, v[:46]))
print("+-" + "-" * w + "-+-" + "-" * 46 + "-+")
EOF
  if [ -n "$out" ]; then
    cp -f "$work"/*.log "$work"/*.json "$out"/ 2>/dev/null
  fi
}
trap 'echo "gpu_check.sh: interrupted"; print_table; exit 130' INT TERM

# ---- binaries: a prebuilt bundle, or a Release build with CUDA ---------------------------------
if [ -n "$prebuilt" ]; then
  unpack() {
    local archive
    local -a archives
    IFS=: read -r -a archives <<<"$prebuilt"
    for archive in "${archives[@]}"; do
      tar -xJf "$archive" -C "$work" 2>/dev/null ||  # no xz binary: Python's lzma
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
          "$archive" "$work" || return 1
    done
    [ -x "$work/bundle/bin/sd35" ]
  }
  run_step unpack 120 unpack
  bin="$work/bundle/bin"
  libpath="$work/bundle/lib:/usr/local/cuda/lib64"
  if ! ls /usr/local/cuda/lib64/libcublasLt.so* >/dev/null 2>&1; then
    # No toolkit cuBLAS: fall back to the one inside PyTorch's nvidia-* wheels.
    extra=$(python3 - <<'EOF' 2>/dev/null
import os
try:
    import nvidia
except Exception:
    raise SystemExit(0)
dirs = []
for base in list(getattr(nvidia, "__path__", [])):
    for sub in sorted(os.listdir(base)):
        d = os.path.join(base, sub, "lib")
        if os.path.isdir(d):
            dirs.append(d)
print(":".join(dirs))
EOF
)
    [ -n "$extra" ] && libpath="$libpath:$extra"
  fi
  export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The bundle's C++ runtime only when this machine's is too old for our binaries.
  if ! "$bin/sd35" --help >/dev/null 2>&1; then
    export LD_LIBRARY_PATH="$work/bundle/lib/compat:$LD_LIBRARY_PATH"
    echo "using the bundle's libstdc++ (lib/compat)"
  fi
  if ! "$bin/sd35" --help >/dev/null 2>&1; then
    echo "sd35 from the bundle does not start:"
    "$bin/sd35" --help 2>&1 | head -n 5
  fi
  # Test binaries have the build machine's tests/data and build paths compiled in: point those
  # paths at this checkout when they do not exist here.
  if [ -f "$work/bundle/manifest" ]; then
    src_dir=$(sed -n 's/^source_dir=//p' "$work/bundle/manifest")
    bld_dir=$(sed -n 's/^binary_dir=//p' "$work/bundle/manifest")
    if [ -n "$src_dir" ] && [ ! -e "$src_dir" ] && [ "$src_dir" != "$repo" ]; then
      mkdir -p "$(dirname "$src_dir")" && ln -s "$repo" "$src_dir" &&
        echo "linked $src_dir -> $repo (test data path compiled into the bundle)"
    fi
    [ -n "$bld_dir" ] && mkdir -p "$bld_dir" 2>/dev/null
  fi
else
  bin="$build_dir"
  build() {
    local gen=() arch=native
    # A new build dir gets Ninja when present; an existing one keeps its generator.
    [ -f "$build_dir/CMakeCache.txt" ] || ! command -v ninja >/dev/null || gen=(-G Ninja)
    # CMAKE_CUDA_ARCHITECTURES=native needs CMake 3.24; older CMake gets sm_90 (H100).
    local ver; ver=$(cmake --version | sed -n 's/^cmake version \([0-9]*\.[0-9]*\).*/\1/p')
    if [ "$(printf '%s\n3.24\n' "$ver" | sort -V | head -n1)" != "3.24" ]; then arch=90; fi
    # Also on an existing build dir: this check is about the CUDA build.
    cmake -S "$repo" -B "$build_dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSD35_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=$arch ||
      cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSD35_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 || return 1
    # Only what this check runs: the CLI, the benchmark and the CUDA tests.
    local targets
    targets=$(cmake --build "$build_dir" --target help 2>/dev/null |
      grep -oE '\b(test_cuda[A-Za-z0-9_]*|cuda_[A-Za-z0-9_]*conformance[A-Za-z0-9_]*)\b' | sort -u)
    # shellcheck disable=SC2086
    cmake --build "$build_dir" -j "$(nproc)" --target sd35 bench_generate $targets
  }
  run_step build 3600 build
fi
export SD35_DATA_DIR="$repo/data"  # tokenizer files

# ---- cuDNN: conv2d loads it at run time when present (never part of the bundle) ---------------
# The toolkit's lib64 first, then PyTorch's pip wheel (nvidia-cudnn-cu13) or torch's own lib
# folder. Found: SD35_CUDNN_LIBRARY names it and its folder joins LD_LIBRARY_PATH (libcudnn.so.9
# loads libcudnn_cnn.so.9 and the other parts from there). Not found: conv2d runs im2col.
# Prints "WHERE PATH" (WHERE: a short label for the table).
find_cudnn() {
  local d label
  if [ -n "${SD35_CUDNN_LIBRARY:-}" ] && [ -f "$SD35_CUDNN_LIBRARY" ]; then
    echo "SD35_CUDNN_LIBRARY $SD35_CUDNN_LIBRARY"; return 0
  fi
  for label in toolkit pip-wheel torch-lib; do
    case $label in
      toolkit) d=/usr/local/cuda/lib64 ;;
      pip-wheel) d=$(python3 -c 'import nvidia.cudnn as m, os
print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null) ;;
      torch-lib) d=$(python3 -c 'import torch, os
print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) ;;
    esac
    if [ -n "$d" ] && [ -f "$d/libcudnn.so.9" ]; then echo "$label $d/libcudnn.so.9"; return 0; fi
  done
  return 1
}
if found=$(find_cudnn); then
  cudnn_lib=${found#* }
  export SD35_CUDNN_LIBRARY="$cudnn_lib"
  export LD_LIBRARY_PATH="$(dirname "$cudnn_lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  R[cudnn]=${found%% *}
  echo "== cuDNN: $cudnn_lib"
else
  R[cudnn]="not found"
  echo "== cuDNN: not found (conv2d runs im2col + cuBLASLt)"
fi
deadline=$(( $(date +%s) + budget ))

# ---- a. the card -------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
  run_step nvidia-smi 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv &&
    R[card]=$(sed -n '2p' "$work/nvidia-smi.log" | sed 's/, */, /g')
else
  R[card]="no nvidia-smi"
fi

# ---- b. CUDA conformance tests (gtest binaries) ------------------------------------------------
pass=0 fail=0 bins=0 bad=0
for t in "$bin"/test_cuda* "$bin"/cuda_*conformance*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  name=$(basename "$t")
  # The *_emulated tests run kernels on the CPU (CI runs them): no use for GPU time.
  case $name in *_emulated) continue ;; esac
  bins=$((bins + 1))
  run_step "$name" 240 "$t"
  rc=$?
  p=$(grep -oE '^\[  PASSED  \] [0-9]+' "$work/$name.log" | grep -oE '[0-9]+$' | tail -n1)
  f=$(grep -oE '^\[  FAILED  \] [0-9]+ test' "$work/$name.log" | grep -oE '[0-9]+' | tail -n1)
  pass=$((pass + ${p:-0})) fail=$((fail + ${f:-0}))
  # 77: the binary's "no GPU" skip; anything else non-zero without a gtest count is a failure.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -z "$f" ]; then bad=$((bad + 1)); fi
done
R[conformance]="$pass passed, $fail failed ($bins binaries$([ $bad -gt 0 ] && echo ", $bad crashed/timed out"))"
[ $bins -eq 0 ] && R[conformance]="no test_cuda* binaries"

# ---- c. goldens on the GPU ---------------------------------------------------------------------
run_step golden-f32 90 "$bin/sd35" golden "$repo/tests/data/tiny-a" --backend cuda &&
  R[golden_f32]=pass || R[golden_f32]="FAIL ($(tail -n1 "$work/golden-f32.log" | cut -c1-30))"
# bf16 activations: looser sanity bounds (mmdit, vae), informational only.
run_step golden-bf16 90 "$bin/sd35" golden "$repo/tests/data/tiny-a" --backend cuda \
  --compute bf16 --stage mmdit,vae &&
  R[golden_bf16]=pass || R[golden_bf16]="fail (informational)"

# ---- d. full-size random checkpoint ------------------------------------------------------------
ckpt="$models/model.safetensors" te="$models/text"
if [ -f "$ckpt" ] && [ -f "$te/t5xxl_fp8_e4m3fn_scaled.safetensors" ] &&
   [ -f "$te/clip_l.safetensors" ] && [ -f "$te/clip_g.safetensors" ]; then
  echo "== random checkpoint: present in $models"
  STEPS+=("random-checkpoint|0|present")
else
  mkdir -p "$models"
  run_step random-checkpoint 200 "$bin/sd35" make-random-checkpoint "$ckpt" --with-vae \
    --text-encoders "$te"
fi

# ---- e. our end-to-end generation + MMDiT forward ----------------------------------------------
# The defaults a user gets: CUDA graphs on, the attention tiles attention.cu picks. Stage times
# are medians of three timed generations after one warm-up.
run_step bench_generate 240 "$bin/bench_generate" "$ckpt" "$te/clip_l.safetensors" \
  "$te/clip_g.safetensors" "$te/t5xxl_fp8_e4m3fn_scaled.safetensors" --backend cuda \
  --width 1024 --height 1024 --steps 20 --sampler dpmpp_2m --scheduler sgm_uniform --cfg 4.5 \
  --compute bf16 --text-device gpu --warmup 1 --runs 3 --mmdit-iters 10
last_json "$work/bench_generate.log" >"$work/bench_generate.json"

# ---- e2. A/B: the same MMDiT forward with cuBLASLt's fused epilogues off ------------------------
# (SD35_CUDA_LT_EPILOGUE=0: bias/GELU through our own epilogue pass, the behaviour before
# the fused epilogues), one step only, for the table's A/B row. The same run has the opt-in
# small-M GEMM on (SD35_CUDA_SMALLM_GEMM=1: the text encoders' f32 GEMMs read the 16-bit/fp8
# weights in place instead of converting them for cuBLASLt): it only takes f32 inputs, so the
# bf16 MMDiT forwards are unaffected, and the timed generations after one warm-up (median of
# three) give the text-encode A/B row.
run_step epilogue-ab 150 env SD35_CUDA_LT_EPILOGUE=0 SD35_CUDA_SMALLM_GEMM=1 \
  "$bin/bench_generate" "$ckpt" \
  "$te/clip_l.safetensors" "$te/clip_g.safetensors" "$te/t5xxl_fp8_e4m3fn_scaled.safetensors" \
  --backend cuda --width 1024 --height 1024 --steps 1 --sampler dpmpp_2m --scheduler sgm_uniform \
  --cfg 4.5 --compute bf16 --text-device gpu --warmup 1 --runs 3 --mmdit-iters 10
last_json "$work/epilogue-ab.log" >"$work/epilogue_ab.json"

# ---- e5. A/B: the same MMDiT forward with 64-key attention tiles ---------------------------------
# (SD35_CUDA_FLASH_KEYS=64: the flash kernel's 64-key K/V tiles; the default is 128 on sm_90.)
run_step flash-keys-ab 150 env SD35_CUDA_FLASH_KEYS=64 "$bin/bench_generate" "$ckpt" \
  "$te/clip_l.safetensors" "$te/clip_g.safetensors" "$te/t5xxl_fp8_e4m3fn_scaled.safetensors" \
  --backend cuda --width 1024 --height 1024 --steps 1 --sampler dpmpp_2m --scheduler sgm_uniform \
  --cfg 4.5 --compute bf16 --text-device gpu --warmup 0 --mmdit-iters 10
last_json "$work/flash-keys-ab.log" >"$work/flash_keys_ab.json"

# ---- e3. A/B: the generation of e with the denoising forwards run eagerly (no CUDA graphs) -----
# Same settings and seed: the image must be byte-identical (same kernels, same order).
run_step cuda-graphs 200 "$bin/bench_generate" "$ckpt" "$te/clip_l.safetensors" \
  "$te/clip_g.safetensors" "$te/t5xxl_fp8_e4m3fn_scaled.safetensors" --backend cuda \
  --width 1024 --height 1024 --steps 20 --sampler dpmpp_2m --scheduler sgm_uniform --cfg 4.5 \
  --compute bf16 --text-device gpu --warmup 1 --runs 3 --no-cuda-graphs
last_json "$work/cuda-graphs.log" >"$work/cuda_graphs.json"

# ---- e4. A/B: VAE decode with cuDNN off -----------------------------------------------------------
# SD35_CUDNN=0: every conv2d on im2col + cuBLASLt (the behaviour before cuDNN). One step and
# no MMDiT timing; --warmup 1 so the timed decode is warm like e's (its "VAE decode" row is
# the cuDNN-on side). Only when cuDNN was found: otherwise both sides are the same path.
if [ -n "${SD35_CUDNN_LIBRARY:-}" ]; then
  run_step cudnn-ab 120 env SD35_CUDNN=0 "$bin/bench_generate" "$ckpt" \
    "$te/clip_l.safetensors" "$te/clip_g.safetensors" "$te/t5xxl_fp8_e4m3fn_scaled.safetensors" \
    --backend cuda --width 1024 --height 1024 --steps 1 --sampler dpmpp_2m \
    --scheduler sgm_uniform --cfg 4.5 --compute bf16 --text-device gpu --warmup 1 --runs 3 \
    --mmdit-iters 0
  last_json "$work/cudnn-ab.log" >"$work/cudnn_ab.json"
fi

# ---- f. the PyTorch eager baseline -------------------------------------------------------------
run_step torch-baseline 150 python3 "$repo/bench/torch_mmdit_baseline.py" --height 1024 \
  --width 1024 --batch 2 --iters 10 --golden "$repo/tests/data/tiny-a"
last_json "$work/torch-baseline.log" >"$work/torch.json"

# ---- f2. a per-op profile of the same pipeline (last: skipped when the budget is spent) ----------
# SD35_CUDA_PROFILE=1 times every backend op with events and prints the table at exit (each
# op kind's first call apart: lazy kernel loading, planning); a warm-up generation, two steps
# and three forwards are enough to rank the ops. The log is kept with --out.
run_step profile 150 env SD35_CUDA_PROFILE=1 "$bin/bench_generate" "$ckpt" \
  "$te/clip_l.safetensors" "$te/clip_g.safetensors" "$te/t5xxl_fp8_e4m3fn_scaled.safetensors" \
  --backend cuda --width 1024 --height 1024 --steps 2 --sampler dpmpp_2m --scheduler sgm_uniform \
  --cfg 4.5 --compute bf16 --text-device gpu --warmup 1 --mmdit-iters 3

# ---- g. the table ------------------------------------------------------------------------------
print_table
rm -rf "$work/bundle"  # the unpacked binaries; the logs stay (and are copied to --out)
