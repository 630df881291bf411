#!/usr/bin/env bash
# Translation speed on the GPU (issue 7): qkv's decode::search (KV cache) on cuda, f32 and bf16
# products, greedy and beam 5, batch 64 and 1, 30 source tokens to exactly 32 target tokens, at
# the `base` shape with random weights and an 8k vocabulary, against Hugging Face
# MarianMTModel.generate with the same shape (fp32 and bf16 weights) on the same GPU.
# Runs on the GPU machine after scripts/device_pack.sh (qkv_bench from .device/bin):
#   run(command="bench/gpu/translate.sh", carry=[".device"])  # about 3 minutes on an H100
#   bench/gpu/translate.sh [--runs 5] [--budget 5]
# Logs and JSON go to $OUT/translate (else /tmp/qkv-gpu-bench/translate); the table
# (bench/gpu/report.py) is printed last.
set -uo pipefail
cd "$(dirname "$0")/../.."
runs=5 budget=5
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    *) echo "bench/gpu/translate.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
source scripts/device_env.sh || exit 1
out=${OUT:-/tmp/qkv-gpu-bench}/translate
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
cases=(--batches 64 1 --beams 1 5 --src-len 30 --tgt-len 32 --runs "$runs" --budget "$budget")

for precision in f32 bf16; do
  echo "qkv $precision ..."
  timeout 150 "$QKV_DEVICE_BIN/qkv_bench" --threads 8 translate --preset base --vocab 8000 \
    "${cases[@]}" --device cuda --precision "$precision" \
    --json "$out/qkv_$precision.json" >"$out/qkv_$precision.log" 2>&1
  echo "  rc=$? $(tail -1 "$out/qkv_$precision.log")"
done
for dtype in fp32 bf16; do
  echo "hf $dtype ..."
  timeout 200 python3 bench/gpu/hf_translate.py --dtype "$dtype" --vocab 8000 "${cases[@]}" \
    --json "$out/hf_$dtype.json" >"$out/hf_$dtype.log" 2>&1
  echo "  rc=$? $(tail -1 "$out/hf_$dtype.log")"
done
python3 bench/gpu/report.py translate "$out" | tee "$out/table.txt"
