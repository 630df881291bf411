#!/usr/bin/env bash
# Runs on the GPU machine (CUDA 13 + driver, python3 with torch; none of qkv's other
# dependencies), from the repo root, after scripts/device_pack.sh filled .device/ elsewhere:
#   run(command="scripts/device_check.sh", carry=[".device"])
# Unpacks the bundle (scripts/device_env.sh), runs every CUDA test binary (gtest XML and logs to
# $OUT), runs compute-sanitizer memcheck over the op tests, and prints a pass/fail table LAST
# (only the end of the output comes back). About 3 minutes; every step has a time limit. The benchmarks run in
# a call of their own: scripts/device_bench.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/qkv-device-check}
mkdir -p "$out"
source scripts/device_env.sh || exit 1
work=$(dirname "$QKV_DEVICE_BIN")
cat .device/MANIFEST 2>/dev/null | head -2
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1
missing=$(ldd "$work"/bin/* 2>&1 | grep "not found" | sort -u)
[ -n "$missing" ] && echo "missing libraries: $missing"

table=()
# run NAME LIMIT_S COMMAND...: runs it, logs to $out/NAME.log, adds a row to the table.
run() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$? took=$((SECONDS - start))
  local passed failed skipped verdict
  passed=$(grep -o '\[  PASSED  \] [0-9]*' "$out/$name.log" | grep -o '[0-9]*$' | tail -1)
  failed=$(grep -o '\[  FAILED  \] [0-9]* test' "$out/$name.log" | grep -o '[0-9]*' | tail -1)
  skipped=$(grep -o '\[  SKIPPED \] [0-9]* test' "$out/$name.log" | grep -o '[0-9]*' | tail -1)
  if [ $rc -eq 124 ]; then
    verdict=TIMEOUT
  elif grep -q "Device not supported" "$out/$name.log"; then  # the sanitizer under gVisor
    verdict=NO-TOOL
  elif [ $rc -eq 0 ] && [ "${skipped:-0}" != 0 ]; then  # no GPU seen: libcuda or the driver
    verdict=SKIPPED
  elif [ $rc -eq 0 ]; then
    verdict=PASS
  else
    verdict=FAIL
  fi
  table+=("$(printf '%-40s %-8s rc=%-3s %4ss  passed %-3s failed %-3s skipped %-3s' "$name" \
    "$verdict" "$rc" "$took" "${passed:-0}" "${failed:-0}" "${skipped:-0}")")
}

run qkv-help 20 "$work/bin/qkv" --help  # loads every library
for bin in "$work"/bin/test_cuda_*; do
  name=$(basename "$bin")
  run "$name" 120 "$bin" --gtest_output="xml:$out/$name.xml"
done

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$sanitizer" ]; then
  # The 3-million-element sums are left out: too slow under memcheck, and plain loops.
  for bin in "$work"/bin/test_cuda_ops_*; do
    name=$(basename "$bin")
    run "memcheck:$name" 60 "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check no \
      "$bin" --gtest_filter=-CudaElementwise.ScaleAxpyAndSumsMatchCpu
  done
else
  table+=("compute-sanitizer not found: memcheck skipped")
fi

# The failures in brief, then the table.
echo
echo "==== failures (full logs and XML in \$OUT) ===="
for log in "$out"/*.log; do
  grep -E -B1 -A4 'Failure$|FAILED  \]|ERROR SUMMARY: [1-9]|Invalid (__global__ )?(read|write)|terminate called|what\(\)' "$log" |
    head -40 | sed "s|^|$(basename "$log" .log): |"
done | head -150
echo
echo "==== qkv device check: $(date -u +%T) ===="
printf '%s\n' "${table[@]}"
