#!/usr/bin/env bash
# Fails when an object compiled with AVX2/AVX-512 flags exports a weak (W/V) symbol: the
# linker could pick that copy of an inline function or template for baseline code, which
# would then crash on CPUs without those instructions (docs/architecture.md). Arguments: the
# engine library's object files (ctest passes $<TARGET_OBJECTS:sd35_engine>).
set -euo pipefail
checked=0
bad=0
for obj in "$@"; do
  case "$obj" in
    *_avx2.cpp.o|*_avx512.cpp.o) ;;
    *) continue ;;
  esac
  checked=$((checked + 1))
  weak=$(nm -C "$obj" | awk '$(NF-1) ~ /^[WVu]$/ || $1 ~ /^[WVu]$/' || true)
  if [ -n "$weak" ]; then
    echo "$obj exports weak symbols:"
    echo "$weak"
    bad=1
  fi
done
if [ "$checked" -eq 0 ]; then
  echo "no ISA-specific objects found: the check is not looking at the right files"
  exit 1
fi
[ "$bad" -eq 0 ] && echo "$checked ISA-specific objects, no weak symbols"
exit $bad
