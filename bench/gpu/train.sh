#!/usr/bin/env bash
# Training speed on the GPU (issue 7): target tokens/s of qkv's `base` preset (random ids, 8k
# vocabulary, 256 x 32 target tokens per step, 30 source tokens) on cuda in f32 and in bf16
# (precision: bf16), against the same model in PyTorch on the same GPU: fp32, eager with bf16
# autocast, and torch.compile with bf16 autocast (given 240 s, compile included; skipped past
# that). Runs on the GPU machine after scripts/device_pack.sh (qkv_bench from .device/bin):
#   run(command="bench/gpu/train.sh", carry=[".device"])      # about 4 minutes on an H100
#   bench/gpu/train.sh [--preset base] [--batch 256] [--steps 10] [--budget 10]
# Logs and JSON go to $OUT/train (else /tmp/qkv-gpu-bench/train); the table (bench/gpu/report.py)
# is printed last.
set -uo pipefail
cd "$(dirname "$0")/../.."
preset=base batch=256 steps=10 budget=10
while (($#)); do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    *) echo "bench/gpu/train.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
source scripts/device_env.sh || exit 1
out=${OUT:-/tmp/qkv-gpu-bench}/train
mkdir -p "$out"
shape=(--preset "$preset" --batch "$batch" --src-len 30 --tgt-len 32)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

for precision in f32 bf16; do
  echo "qkv $precision ..."
  timeout 150 "$QKV_DEVICE_BIN/qkv_bench" --threads 8 train "${shape[@]}" --vocab 8000 \
    --device cuda --precision "$precision" --warmup 3 --steps "$steps" --budget "$budget" \
    --json "$out/qkv_$precision.json" >"$out/qkv_$precision.log" 2>&1
  echo "  rc=$? $(tail -1 "$out/qkv_$precision.log")"
done
for mode in f32 bf16 bf16-compile; do
  limit=150
  [ "$mode" = bf16-compile ] && limit=240
  echo "torch $mode ..."
  timeout "$limit" python3 bench/gpu/torch_train.py --mode "$mode" "${shape[@]}" --vocab 8000 \
    --steps "$steps" --budget "$budget" --json "$out/torch_$mode.json" >"$out/torch_$mode.log" 2>&1
  echo "  rc=$? $(tail -1 "$out/torch_$mode.log")"
done
python3 bench/gpu/report.py train "$out" | tee "$out/table.txt"
