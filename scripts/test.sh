#!/usr/bin/env bash
# Runs the test suite of a build made by scripts/setup.sh. Extra arguments go to ctest
# (e.g. -L backend, -LE slow, -R Safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
exec ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${JOBS:-2}" "$@"
