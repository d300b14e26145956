#!/usr/bin/env bash
# Installs the Debian 12 packages sd35 needs, then configures and builds it (Release, -j2).
# Idempotent: when everything is installed it only runs the (incremental) build.
#   scripts/setup.sh                 # build into ./build
#   BUILD_DIR=out scripts/setup.sh   # elsewhere
#   SD35_SKIP_APT=1 scripts/setup.sh # do not touch packages
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}

# One line per dependency and why (see README "Dependencies").
PACKAGES=(
  build-essential   # g++ 12
  cmake             # build system (>= 3.25)
  libdnnl-dev       # oneDNN: CPU GEMM and convolution
  nlohmann-json3-dev  # JSON (safetensors headers, configs, API)
  libcli11-dev      # command-line parsing for the sd35 command
  libicu-dev        # Unicode data for the tokenizers (NFC, case mapping, categories, graphemes)
  libpng-dev        # PNG images (sd35 generate output, img2img input)
  libboost-dev       # Boost.Beast/Asio (header-only): the HTTP server sd35-server
  python3           # the server's black-box HTTP tests (tests/server, standard library only)
  googletest        # unit tests (GoogleTest/GoogleMock sources)
  libgtest-dev
)

# media and webhooks (src/service/media: JPEG/WebP codecs, webhook delivery, image downloads)
MEDIA_PACKAGES=(
  libjpeg62-turbo-dev   # JPEG encode (convert_output) and decode (img2img inputs)
  libwebp-dev           # WebP encode and decode
  libcurl4-openssl-dev  # webhook POSTs and input-image downloads
  libssl-dev            # HMAC-SHA256 for Standard Webhooks signatures
  pkg-config            # finds libwebp, which ships no CMake package
)
PACKAGES+=("${MEDIA_PACKAGES[@]}")

# The README's examples against the running server.
PACKAGES+=(curl jq)
# /docs and its test: the Swagger UI page comes from npm (package.json), rendered in a
# headless browser by tests/server.
PACKAGES+=(chromium)
# npm itself: Debian's nodejs + npm, unless a Node.js with npm is already installed (the
# NodeSource nodejs package bundles npm and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${SD35_SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages pinned by package-lock.json into ./node_modules; --ignore-scripts: none of them
# needs an install script (swagger-ui-dist's is a telemetry ping).
# The stamp skips the reinstall when the lock file did not change.
if ! cmp -s package-lock.json node_modules/.sd35-installed-lock 2>/dev/null; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.sd35-installed-lock
fi

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "setup: built into $BUILD_DIR"
