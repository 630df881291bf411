#!/usr/bin/env bash
# Builds qkv and runs the whole test suite (Release, then AddressSanitizer + UBSan unless
# QKV_SKIP_ASAN=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PRESET=release source scripts/setup.sh
ctest --preset release -j "$(nproc)"
if [ "${QKV_SKIP_ASAN:-0}" != 1 ]; then
  PRESET=asan source scripts/setup.sh
  ctest --preset asan -j "$(nproc)"
fi
