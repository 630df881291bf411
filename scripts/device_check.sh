#!/usr/bin/env bash
# Runs on the GPU machine (CUDA 13 + driver, python3 with torch; none of qkv's other
# dependencies), from the repo root, after scripts/device_pack.sh filled .device/ elsewhere:
#   run(command="scripts/device_check.sh", carry=[".device"], timeout_s=480)
#   scripts/device_check.sh [--budget SECONDS] [--only NAME,NAME...]
# Unpacks the bundle (scripts/device_env.sh) and runs, FlashAttention first: qkv --help (every
# library loads), every CUDA test binary, compute-sanitizer memcheck and racecheck on the
# FlashAttention gradient test, then memcheck over the op tests. Each step has its own time
# limit, cut to what is left of the budget (default 420 s, so that one call of 480 s fits);
# the steps the budget leaves out are listed with the --only line that runs them in a second
# call. All logs and gtest XML go into one archive, $OUT/device_check.tar.gz (only a few files
# come back from the machine), and the pass/fail table is printed last (only the end of the
# output comes back). The benchmarks run in calls of their own: scripts/device_bench.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
budget=420
only=""
while (($#)); do
  case "$1" in
    --budget) budget=$2; shift 2 ;;
    --only) only=",$2,"; shift 2 ;;
    *) echo "usage: scripts/device_check.sh [--budget SECONDS] [--only NAME,NAME...]" >&2; exit 2 ;;
  esac
done
out=${OUT:-/tmp/qkv-device-check}
mkdir -p "$out"
logs=$(mktemp -d)
source scripts/device_env.sh || exit 1
bin=$QKV_DEVICE_BIN
head -2 .device/MANIFEST 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1
missing=$(ldd "$bin"/* 2>&1 | grep "not found" | sort -u)
[ -n "$missing" ] && echo "missing libraries: $missing"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)

reserve=15  # seconds kept for the archive and the table
table=() left_out=()
# step NAME LIMIT COMMAND...: runs it under min(LIMIT, what the budget has left), logs to
# NAME.log, adds a row to the table; with --only, only the NAMEs listed.
step() {
  local name=$1 limit=$2
  shift 2
  [ -n "$only" ] && [[ "$only" != *",$name,"* ]] && return
  local left=$((budget - reserve - SECONDS))
  if ((left < 10)); then
    left_out+=("$name")
    table+=("$(printf '%-44s %-8s' "$name" "NOT RUN (budget)")")
    return
  fi
  ((limit > left)) && limit=$left
  local log="$logs/${name//[:\/]/_}.log" start=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$? took=$((SECONDS - start))
  local passed failed skipped verdict
  passed=$(grep -o '\[  PASSED  \] [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  failed=$(grep -o '\[  FAILED  \] [0-9]* test' "$log" | grep -o '[0-9]*' | tail -1)
  skipped=$(grep -o '\[  SKIPPED \] [0-9]* test' "$log" | grep -o '[0-9]*' | tail -1)
  if [ $rc -eq 124 ]; then
    verdict=TIMEOUT
  elif grep -q "Device not supported" "$log"; then  # the sanitizer under gVisor
    verdict=NO-TOOL
  elif [ $rc -eq 0 ] && [ "${skipped:-0}" != 0 ]; then  # no GPU seen: libcuda or the driver
    verdict=SKIPPED
  elif [ $rc -eq 0 ]; then
    verdict=PASS
  else
    verdict=FAIL
  fi
  table+=("$(printf '%-44s %-8s rc=%-3s %4ss of %-4s passed %-3s failed %-3s skipped %-3s' "$name" \
    "$verdict" "$rc" "$took" "$limit" "${passed:-0}" "${failed:-0}" "${skipped:-0}")")
}
# sanitize TOOL BINARY LIMIT [GTEST_FILTER]: compute-sanitizer's TOOL over a test binary.
sanitize() {
  local tool=$1 name=$2 limit=$3 filter=${4:-*}
  local extra=()
  [ "$tool" = memcheck ] && extra=(--leak-check no)
  step "$tool:$name" "$limit" "$sanitizer" --tool "$tool" --error-exitcode 99 "${extra[@]}" \
    "$bin/$name" --gtest_filter="$filter"
}
gtest() {
  step "$1" "$2" "$bin/$1" --gtest_output="xml:$logs/$1.xml"
}

step qkv-help 20 "$bin/qkv" --help
gtest test_cuda_flash_attention 120
if [ -n "$sanitizer" ]; then
  sanitize memcheck test_cuda_flash_attention 90 '*GradientsInTheInputDtype*:*Bf16HeadDim64*'
  sanitize racecheck test_cuda_flash_attention 90 '*GradientsInTheInputDtype*'
fi
for path in "$bin"/test_cuda_*; do
  name=$(basename "$path")
  case $name in test_cuda_flash_attention | test_cuda_emulation) continue ;; esac
  gtest "$name" 90
done
if [ -n "$sanitizer" ]; then
  # The 3-million-element sums are left out: too slow under memcheck, and plain loops.
  for path in "$bin"/test_cuda_ops_*; do
    sanitize memcheck "$(basename "$path")" 60 '-CudaElementwise.ScaleAxpyAndSumsMatchCpu'
  done
else
  table+=("compute-sanitizer not found: memcheck and racecheck not run")
fi

# The failures in brief (from the logs, before they go into the archive).
failures=$(for log in "$logs"/*.log; do
  grep -E -B1 -A4 'Failure$|FAILED  \]|ERROR SUMMARY: [1-9]|RACECHECK SUMMARY: [1-9]|Invalid (__global__ )?(read|write)|terminate called|what\(\)' "$log" |
    head -40 | sed "s|^|$(basename "$log" .log): |"
done | head -150)
tar -C "$logs" -czf "$out/device_check.tar.gz" . && rm -rf "$logs"
echo
echo "==== failures (all logs and gtest XML: \$OUT/device_check.tar.gz) ===="
[ -n "$failures" ] && echo "$failures"
echo
echo "==== qkv device check: $(date -u +%T), ${SECONDS} s of a ${budget} s budget ===="
printf '%s\n' "${table[@]}"
if ((${#left_out[@]})); then
  echo "left out by the budget; a second call runs them:"
  echo "  scripts/device_check.sh --only $(IFS=,; echo "${left_out[*]}")"
fi
