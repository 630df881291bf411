#!/usr/bin/env bash
# Runs on the GPU machine, after scripts/device_pack.sh filled .device/ elsewhere: the GPU
# benchmarks of issue 7, one per call so that each fits a call's 10 minutes:
#   run(command="scripts/device_bench.sh train", carry=[".device"])      # ~4 min on an H100
#   run(command="scripts/device_bench.sh translate", carry=[".device"])  # ~3 min
# train: bench/gpu/train.sh; translate: bench/gpu/translate.sh (options after the name go to
# them). Logs, JSON and the table land in $OUT/<name>/; the table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  train | translate) name=$1; shift; exec "bench/gpu/$name.sh" "$@" ;;
  *) echo "usage: scripts/device_bench.sh train|translate [options of bench/gpu/<name>.sh]" >&2; exit 2 ;;
esac
