#!/usr/bin/env bash
# FlashAttention on the GPU (issue 7), one command: qkv (qkv_attention_bench) and PyTorch's
# scaled_dot_product_attention (flash and cuDNN backends) on the same shapes in the same run,
# then one table. Binaries from .device/bundle.tar.xz (scripts/device_env.sh).
# JSON results go to $OUT (on the device machine) or bench/results/gpu.
#   bench/gpu/run_attention.sh [--repeats N] [--seqs 512,1024] [--dims 64,128]
#   run(command="bench/gpu/run_attention.sh", carry=[".device"])
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/device_env.sh || exit 1

out_dir=${OUT:-bench/results/gpu}
mkdir -p "$out_dir"
bench=$QKV_DEVICE_BIN/qkv_attention_bench
[[ -x $bench ]] || { echo "no $bench (scripts/device_pack.sh, or build the cuda preset)" >&2; exit 1; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv ||
  true
"$bench" --json "$out_dir/attention_qkv.json" "$@"
python3 bench/gpu/attention_torch.py --json "$out_dir/attention_torch.json" "$@"
python3 bench/gpu/attention_table.py "$out_dir/attention_qkv.json" "$out_dir/attention_torch.json"
