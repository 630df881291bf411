#!/usr/bin/env bash
# qkv's benchmark suite (issue 6): qkv against the same model in PyTorch, in one run, with the
# same shapes, batch and thread count. Builds qkv_bench (the first time through
# scripts/setup.sh, which also installs the packages), then measures
#   gemm       OpenBLAS sgemm GFLOP/s (the peak that training's FLOP rate is compared with)
#   train      training target tokens/s of the tiny and small presets, qkv and PyTorch, in f32
#              and (where the CPU has AVX512_BF16, or with --precisions) bf16 autocast on both
#   translate  greedy and beam-5 target tokens/s, batch 32 and 1, qkv (KV cache) and the
#              PyTorch loop without a cache, on the same weights and inputs; qkv also in its
#              bf16 and int8 compute types, against its f32
#   test-split source tokens/s of qkv translate's decoding (greedy, beam 5) of the test split
#              with a trained model (--model-dir, else skipped), and the same decoding in PyTorch
#   attention  tiled vs naive attention at length 512, 2048, 8192: time and peak memory
# and prints the table (bench/report.py). Results: bench/results/latest.json, and a
# summary line appended to bench/results/history.jsonl (with --json PATH: only PATH).
#
#   bench/run.sh [--threads N] [--json PATH] [--only gemm,train,translate,test-split,attention]
#                [--presets tiny,small] [--precisions f32,bf16] [--quick] [--build-dir DIR]
#                [--model-dir DIR] [--test FILE] [--sentences N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

threads=2
json=bench/results/latest.json
history=bench/results/history.jsonl
only=gemm,train,translate,test-split,attention
presets=tiny,small
precisions=f32
grep -qw avx512_bf16 /proc/cpuinfo && precisions=f32,bf16  # bf16 products in hardware
quick=0
build_dir=""
model_dir=""  # a directory written by qkv train: the test-split part's model
split_opts=()  # --test FILE
sentences=""
while (($#)); do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --json) json=$2; history=""; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --presets) presets=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --model-dir) model_dir=$2; shift 2 ;;
    --test) split_opts+=(--test "$2"); shift 2 ;;
    --sentences) sentences=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$build_dir" ]; then
  build_dir=build/release
  if [ ! -f "$build_dir/build.ninja" ]; then
    PRESET=release source scripts/setup.sh
  else
    cmake --build --preset release --target qkv_bench
  fi
else
  cmake --build "$build_dir" --target qkv_bench
fi
qkv_bench="$build_dir/bench/qkv_bench"
# Idle OpenMP threads sleep instead of spinning, for both sides. On CPUs shared with other
# processes, spinning threads wait for a descheduled partner at every parallel region: qkv's
# 2-thread training ran 4x and its decoding 25x slower that way (PyTorch's training 5x), which
# measures the neighbours, not the code. Set OMP_WAIT_POLICY=active to measure spinning.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
python=/usr/bin/python3  # Debian's python3-torch
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
wants() { [[ ",$only," == *",$1,"* ]]; }

# --quick: a smoke run (tiny only, fewer runs, shorter attention) for checking the suite itself.
train_opts=() translate_opts=() attention_opts=()
if ((quick)); then
  presets=tiny
  train_opts=(--steps 3 --budget 1)
  translate_opts=(--runs 1 --batches 8 1)
  attention_opts=(--lengths 256 1024)
  sentences=${sentences:-20}
fi
if wants test-split && [ -z "$model_dir" ]; then
  echo "bench/run.sh: skipping test-split: it needs a trained model (--model-dir DIR, from qkv train)" >&2
fi

"$python" - "$raw/meta.json" "$threads" "$only" "$model_dir" <<'PY'
import datetime, json, os, platform, subprocess, sys
commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "commit": commit, "threads": int(sys.argv[2]), "cpu": cpu, "cpus": os.cpu_count(),
           "parts": sys.argv[3].split(","), "model_dir": sys.argv[4] or None,
           "loadavg_before": round(os.getloadavg()[0], 2),
           "env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "OPENBLAS_"))}},
          open(sys.argv[1], "w"))
PY

if wants gemm; then
  "$qkv_bench" gemm --threads "$threads" --json "$raw/gemm.json"
fi
if wants train; then
  for p in ${presets//,/ }; do
    for precision in ${precisions//,/ }; do
      name=$p
      [ "$precision" = f32 ] || name=${p}_$precision
      "$qkv_bench" train --preset "$p" --precision "$precision" --threads "$threads" "${train_opts[@]}" \
        --json "$raw/train_${name}_qkv.json"
      "$python" bench/torch_bench.py train --preset "$p" --precision "$precision" --threads "$threads" \
        "${train_opts[@]}" --json "$raw/train_${name}_torch.json"
    done
  done
fi
if wants translate; then
  "$qkv_bench" translate --threads "$threads" "${translate_opts[@]}" --model-dir "$raw/model" \
    --compute-types f32 bf16 int8 --json "$raw/translate_qkv.json"
  "$python" bench/torch_bench.py translate --threads "$threads" "${translate_opts[@]}" \
    --model-dir "$raw/model" --json "$raw/translate_torch.json"
fi
if wants test-split && [ -n "$model_dir" ]; then
  runs=()
  ((quick)) && runs=(--runs 1)
  "$qkv_bench" test-split --threads "$threads" --model-dir "$model_dir" "${split_opts[@]}" "${runs[@]}" \
    ${sentences:+--sentences "$sentences"} \
    --out-dir "$raw/test_split" --json "$raw/test_split_qkv.json"
  "$python" bench/torch_bench.py test-split --threads "$threads" "${runs[@]}" --data-dir "$raw/test_split" \
    --json "$raw/test_split_torch.json"
fi
if wants attention; then
  "$qkv_bench" attention --threads "$threads" "${attention_opts[@]}" --json "$raw/attention.json"
fi

"$python" - "$raw/meta.json" "$threads" <<'PY'
import json, os, sys
meta = json.load(open(sys.argv[1]))
meta["loadavg_after"] = round(os.getloadavg()[0], 2)
# The suite itself keeps about `threads` CPUs busy; more load means other processes competed.
meta["busy"] = meta["loadavg_after"] > int(sys.argv[2]) + 0.75
json.dump(meta, open(sys.argv[1], "w"))
PY
"$python" bench/report.py "$raw" --json "$json" ${history:+--history "$history"}
