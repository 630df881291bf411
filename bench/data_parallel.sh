#!/usr/bin/env bash
# Data-parallel training over MPI (issue 21) on this machine, in one run:
#   - the same updates (each of 2 batches of --batch-tokens) as 1 rank x 2 threads accumulating
#     2 batches, and as 2 ranks x 1 thread under mpirun: target tokens/s of each and their ratio,
#     and the ranks' gradient allreduce per update with the share of it hidden behind backward;
#   - the projection for many nodes: one update's compute time of --project-preset (1 rank, all
#     threads, measured here), its parameter count, and a ring allreduce of its f32 gradients
#     (2 (N - 1) / N of the bytes through each node's link) at --gbits, for 8, 32 and 128 nodes.
# Prints a table and writes bench/results/data_parallel_cpu.json (--json PATH).
#
#   bench/data_parallel.sh [--preset tiny] [--updates 60] [--batch-tokens 2048]
#                          [--project-preset base] [--project-updates 6] [--gbits 25]
#                          [--json PATH] [--build-dir DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

preset=tiny
updates=60
batch_tokens=2048
project_preset=base
project_updates=6
gbits=25
json=bench/results/data_parallel_cpu.json
build_dir=build/release
while (($#)); do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --updates) updates=$2; shift 2 ;;
    --batch-tokens) batch_tokens=$2; shift 2 ;;
    --project-preset) project_preset=$2; shift 2 ;;
    --project-updates) project_updates=$2; shift 2 ;;
    --gbits) gbits=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    *) echo "bench/data_parallel.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$build_dir/qkv" ] || source scripts/setup.sh qkv
qkv=$(realpath "$build_dir/qkv")
command -v mpirun >/dev/null || { echo "bench/data_parallel.sh: mpirun not found (openmpi-bin)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=passive
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
# A run's options: the bundled corpus, the tokenizer of the first run reused by the others.
train_options() {  # preset, model dir, max-updates, disp-freq
  echo train --preset "$1" --model-dir "$2" --train-sets data/bible.es-en.train.tsv.xz \
    --batch-tokens "$batch_tokens" --max-updates "$3" --disp-freq "$4" --save-freq 100000 \
    --valid-freq 100000 --spm-model "$work/spm/spm.model"
}
echo "bench/data_parallel.sh: a tokenizer for the runs" >&2
"$qkv" train --model-dir "$work/spm" --train-sets data/bible.es-en.train.tsv.xz --preset tiny \
  --max-updates 1 --disp-freq 1 --save-freq 100000 --valid-freq 100000 2>/dev/null

echo "bench/data_parallel.sh: $preset, 1 rank x 2 threads, accumulate 2" >&2
"$qkv" $(train_options "$preset" "$work/one" "$updates" 5) --threads 2 --accumulate 2 2>/dev/null
echo "bench/data_parallel.sh: $preset, 2 ranks x 1 thread" >&2
"${mpirun[@]}" -np 2 "$qkv" $(train_options "$preset" "$work/two" "$updates" 5) --threads 1 \
  2>/dev/null
echo "bench/data_parallel.sh: $project_preset, one update's compute (1 rank, 2 threads)" >&2
"$qkv" $(train_options "$project_preset" "$work/project" "$project_updates" 1) --threads 2 \
  2>/dev/null

/usr/bin/python3 - "$work" "$json" "$preset" "$project_preset" "$gbits" "$batch_tokens" <<'EOF'
import json, struct, sys
work, out, preset, project_preset, gbits, batch_tokens = sys.argv[1:]
gbits = float(gbits)

def updates(run):
    rows = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl")]
    return [r for r in rows if r.get("event") == "update"]

def steady(rows, key):  # the first log line (warm-up: allocation, first touches) left out
    if not rows:
        sys.exit("bench/data_parallel.sh: no update was logged: give more --updates")
    rows = rows[1:] if len(rows) > 1 else rows
    return sum(r[key] for r in rows) / len(rows)

def parameters(run):
    with open(f"{work}/{run}/model.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return sum((v["data_offsets"][1] - v["data_offsets"][0]) // 4
               for k, v in header.items() if k != "__metadata__")

one, two, proj = updates("one"), updates("two"), updates("project")
r = {"preset": preset, "batch_tokens": int(batch_tokens), "batches_per_update": 2,
     "one_rank_two_threads_tokens_per_s": steady(one, "tgt_tokens_per_s"),
     "two_ranks_one_thread_tokens_per_s": steady(two, "tgt_tokens_per_s"),
     "allreduce_ms_per_update": steady(two, "allreduce_ms"),
     "allreduce_exposed_ms_per_update": steady(two, "allreduce_exposed_ms")}
r["ratio_two_ranks_over_one"] = (r["two_ranks_one_thread_tokens_per_s"] /
                                 r["one_rank_two_threads_tokens_per_s"])
r["allreduce_hidden_share"] = 1 - r["allreduce_exposed_ms_per_update"] / r["allreduce_ms_per_update"]

# The projection: an update of `project_preset` takes t seconds on one node (here); its P f32
# gradients cross each node's link 2 (N - 1) / N times in a ring allreduce, plus 2 (N - 1) steps
# of latency (50 us each, TCP). Efficiency: t / (t + allreduce), no overlap assumed.
elapsed = [r_["elapsed_s"] for r_ in proj]
step_s = (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)
params = parameters("project")
bytes_per_s = gbits * 1e9 / 8
proj_rows = []
for nodes in (8, 32, 128):
    allreduce_s = 2 * (nodes - 1) / nodes * 4 * params / bytes_per_s + 2 * (nodes - 1) * 50e-6
    proj_rows.append({"nodes": nodes, "allreduce_s": allreduce_s,
                      "efficiency_no_overlap": step_s / (step_s + allreduce_s)})
r["projection"] = {"preset": project_preset, "parameters": params, "update_s": step_s,
                   "gbits": gbits, "nodes": proj_rows}
json.dump(r, open(out, "w"), indent=2)
print(f"{preset}, updates of 2 batches of {batch_tokens} tokens")
print(f"  1 rank x 2 threads  {r['one_rank_two_threads_tokens_per_s']:10.0f} tgt tokens/s")
print(f"  2 ranks x 1 thread  {r['two_ranks_one_thread_tokens_per_s']:10.0f} tgt tokens/s"
      f"  ({r['ratio_two_ranks_over_one']:.2f}x)")
print(f"  allreduce {r['allreduce_ms_per_update']:.1f} ms/update, "
      f"{100 * r['allreduce_hidden_share']:.0f}% hidden behind backward")
print(f"{project_preset}: {params / 1e6:.1f}M parameters, {step_s:.2f} s per update here; "
      f"ring allreduce at {gbits:g} Gbit/s:")
for p in proj_rows:
    print(f"  {p['nodes']:4d} nodes  {1e3 * p['allreduce_s']:7.1f} ms  "
          f"efficiency {100 * p['efficiency_no_overlap']:.1f}% without overlap")
print(f"written {out}")
EOF
