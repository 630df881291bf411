#!/usr/bin/env bash
# The FlashAttention checks for a GPU session in one call (a few minutes on an H100): the
# tests, compute-sanitizer memcheck and racecheck on small cases, the tensor-core instructions
# in the machine code (where cuobjdump exists), then the benchmark (bench/gpu/run_attention.sh).
# Binaries from .device/bundle.tar.xz (scripts/device_env.sh).
#   bench/gpu/check_flash_attention.sh [--no-bench]
#   run(command="bench/gpu/check_flash_attention.sh", carry=[".device"])
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/device_env.sh || exit 1
test_bin=$QKV_DEVICE_BIN/test_cuda_flash_attention
[[ -x $test_bin ]] || test_bin=build/cuda/tests/test_cuda_flash_attention
[[ -x $test_bin ]] || { echo "no test_cuda_flash_attention" >&2; exit 1; }
status=0

echo "== tests"
timeout 300 "$test_bin" 2>&1 | grep -vE "^\[ +(RUN|OK) +\]" | tail -60 || status=1
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [[ -n $sanitizer ]]; then
  echo "== compute-sanitizer memcheck"
  timeout 240 "$sanitizer" --tool memcheck --error-exitcode 1 --leak-check no "$test_bin" \
    --gtest_filter='*GradientsInTheInputDtype*:*Bf16HeadDim64*' 2>&1 | tail -6 || status=1
  echo "== compute-sanitizer racecheck"
  timeout 240 "$sanitizer" --tool racecheck --error-exitcode 1 "$test_bin" \
    --gtest_filter='*GradientsInTheInputDtype*' 2>&1 | tail -6 || status=1
fi
cuobjdump=$(command -v cuobjdump || ls /usr/local/cuda*/bin/cuobjdump 2>/dev/null | head -1)
if [[ -n $cuobjdump ]]; then
  echo "== machine code: tensor-core (HMMA), local-memory (LDL/STL) instructions"
  "$cuobjdump" --dump-sass "$test_bin" > /tmp/flash_sass.txt 2>&1
  echo "HMMA: $(grep -c HMMA /tmp/flash_sass.txt)  LDL/STL: $(grep -cE 'LDL|STL' /tmp/flash_sass.txt)"
fi

[[ ${1:-} == --no-bench ]] || bench/gpu/run_attention.sh --repeats 15 || status=1
exit $status
