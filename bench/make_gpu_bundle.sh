#!/usr/bin/env bash
# Packs what bench/gpu_check.sh --prebuilt needs from a CUDA build into OUT_DIR/bundle.tar.xz,
# for GPU machines that have the CUDA toolkit and driver but not our Debian dev packages
# (oneDNN, ICU, libpng, ...):
#   bin/  sd35, bench_generate, the CUDA test binaries (test_cuda*, cuda_*conformance*)
#   lib/  every shared library they load per ldd, except glibc's, the driver's (libcuda,
#         libnvidia*) and the toolkit's (cudart, cuBLAS), which the GPU machine has
#   manifest  the build's source and binary dirs (test binaries have them compiled in)
# Copies are stripped (the bundle travels within a 64 MiB limit).
#
#   bench/make_gpu_bundle.sh [--split] BUILD_DIR OUT_DIR
#
# --split: the libraries over 8 MiB (oneDNN, ICU's data: ~14 MB of the ~23 MB compressed, and
# they change only with the Debian packages) go to OUT_DIR/bundle-libs.tar.xz and the rest to
# OUT_DIR/bundle.tar.xz, for carriers whose limit the source tree plus one bundle exceed; give
# gpu_check.sh both (--prebuilt twice).
set -euo pipefail

split=0
if [ "${1:-}" = "--split" ]; then
  split=1
  shift
fi
if [ $# -ne 2 ]; then
  echo "usage: $0 [--split] BUILD_DIR OUT_DIR" >&2
  exit 2
fi
build=$(realpath "$1")
mkdir -p "$2"
out=$(realpath "$2")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bundle/bin" "$stage/bundle/lib"

bins=()
for f in "$build"/sd35 "$build"/bench_generate "$build"/test_cuda* "$build"/cuda_*conformance*; do
  case $f in *_emulated) continue ;; esac  # CPU-only kernel emulation: CI runs it
  if [ -f "$f" ] && [ -x "$f" ]; then bins+=("$f"); fi
done
for need in sd35 bench_generate; do
  if [ ! -x "$build/$need" ]; then
    echo "make_gpu_bundle.sh: $build/$need is missing (build it first)" >&2
    exit 1
  fi
done

# Provided by the GPU machine: glibc, the NVIDIA driver, the CUDA toolkit's runtime and cuBLAS.
skip='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux[-a-z0-9_]*|libcuda|libnvidia[-a-z0-9_]*|libcublas[A-Za-z]*|libcudart)\.so'
declare -A libs=()
for b in "${bins[@]}"; do
  cp "$b" "$stage/bundle/bin/"
  while read -r path; do
    name=$(basename "$path")
    [[ $name =~ $skip ]] && continue
    libs[$name]=$path
  done < <(ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
  if ldd "$b" | grep -q 'not found'; then
    echo "make_gpu_bundle.sh: $b has unresolved libraries:" >&2
    ldd "$b" | grep 'not found' >&2
    exit 1
  fi
done
# The C++ runtime goes to lib/compat: gpu_check.sh uses the GPU machine's own when it is new
# enough (ours may need a newer glibc than that machine has), ours otherwise.
mkdir -p "$stage/bundle/lib/compat"
for name in "${!libs[@]}"; do
  case $name in
    libstdc++.so*|libgcc_s.so*) cp -L "${libs[$name]}" "$stage/bundle/lib/compat/$name" ;;
    *) cp -L "${libs[$name]}" "$stage/bundle/lib/$name" ;;
  esac
done
strip --strip-unneeded "$stage"/bundle/bin/* "$stage"/bundle/lib/*.so* \
  "$stage"/bundle/lib/compat/* 2>/dev/null || true

src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
{
  echo "source_dir=$src"
  echo "binary_dir=$build"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  echo "glibc=$(ldd --version | head -n1 | awk '{print $NF}')"
} >"$stage/bundle/manifest"

echo "binaries: $(cd "$stage/bundle/bin" && find . -type f | sort | tr '\n' ' ')"
echo "libraries: $(cd "$stage/bundle/lib" && find . -type f | sort | tr '\n' ' ')"
# pack NAME [tar arguments...]: OUT_DIR/NAME from the staged bundle folder. The x86 BCJ filter
# makes machine code compress ~10% better.
pack() {
  local name=$1
  shift
  tar -C "$stage" -cf - "$@" | xz -T2 --x86 --lzma2=preset=9 >"$out/$name.tmp"
  mv "$out/$name.tmp" "$out/$name"
  echo "wrote $out/$name: $(du -h "$out/$name" | cut -f1) ($(stat -c %s "$out/$name") bytes)"
}
echo "unpacked: $(du -sh "$stage/bundle" | cut -f1)"
if [ $split -eq 1 ]; then
  big=()
  while IFS= read -r f; do big+=("${f#"$stage"/}"); done \
    < <(find "$stage/bundle/lib" -maxdepth 1 -type f -size +8M | sort)
  excludes=()
  for f in "${big[@]}"; do excludes+=(--exclude="$f"); done
  rm -f "$out/bundle-libs.tar.xz"
  if [ ${#big[@]} -gt 0 ]; then pack bundle-libs.tar.xz "${big[@]}"; fi
  pack bundle.tar.xz "${excludes[@]}" bundle
else
  pack bundle.tar.xz bundle
fi
