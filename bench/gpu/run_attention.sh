#!/usr/bin/env bash
# FlashAttention on the GPU (issue 7), one command: qkv (qkv_attention_bench, from
# .device/bin as scripts/device_pack.sh lays it out, else build/cuda/bench/gpu) and PyTorch's
# scaled_dot_product_attention (flash and cuDNN backends) on the same shapes in the same run,
# then one table. JSON results go to $OUT (on the device machine) or bench/results/gpu.
#   bench/gpu/run_attention.sh [--repeats N] [--seqs 512,1024] [--dims 64,128]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

out_dir=${OUT:-bench/results/gpu}
mkdir -p "$out_dir"
bin=.device/bin/qkv_attention_bench
[[ -x $bin ]] || bin=build/cuda/bench/gpu/qkv_attention_bench
[[ -x $bin ]] || { echo "no qkv_attention_bench (build the cuda preset first)" >&2; exit 1; }
export LD_LIBRARY_PATH=".device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv ||
  true
"$bin" --json "$out_dir/attention_qkv.json" "$@"
python3 bench/gpu/attention_torch.py --json "$out_dir/attention_torch.json" "$@"
python3 bench/gpu/attention_table.py "$out_dir/attention_qkv.json" "$out_dir/attention_torch.json"
