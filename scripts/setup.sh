#!/usr/bin/env bash
# Installs what qkv needs on Debian 12 (when missing) and builds it. Sourced by demo.sh and
# test.sh; `PRESET=asan` picks another CMake preset. Arguments name the targets to build
# (`source scripts/setup.sh qkv` builds only the command); without any, every target is built
# (all tests and benchmarks).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QKV_PACKAGES=(build-essential cmake ninja-build pkg-config git xz-utils lld
  libopenblas-openmp-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libsentencepiece-dev liblzma-dev
  zlib1g-dev libzip-dev libstb-dev dataset-fashion-mnist openmpi-bin libopenmpi-dev
  python3-torch python3-numpy python3-regex
  libcpp-httplib-dev pybind11-dev python3-dev python3-pytest chromium python3-websocket)

missing=()
for p in "${QKV_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "qkv setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PRESET=${PRESET:-release}
cmake --preset "$PRESET" >/dev/null
if (($#)); then
  cmake --build --preset "$PRESET" --target "$@"
else
  cmake --build --preset "$PRESET"
fi
