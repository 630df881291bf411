#!/usr/bin/env bash
# LoRA against full fine-tuning on a domain shift (issue #17): a translation model trained on the
# Old Testament only is adapted to the New Testament, with a LoRA adapter (rank 8 on q_proj and
# v_proj, base frozen), with one on every linear layer, and by training every weight, for the
# same time each. Prints, for the base and the three fine-tunes: BLEU and chrF on the New
# Testament verses of the test set, the trainable parameters, peak memory (RSS, validations
# included) and the median time of an update.
#   scripts/lora_domain.sh [WORK_DIR]    (default runs/lora-domain; a rerun skips finished runs)
# Environment: BASE_MINUTES (60), TUNE_MINUTES (10), THREADS (1 per run; the three fine-tunes
# run side by side), QKV (build/release/qkv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
QKV=${QKV:-build/release/qkv}
WORK=${1:-runs/lora-domain}
BASE_MINUTES=${BASE_MINUTES:-60} TUNE_MINUTES=${TUNE_MINUTES:-10} THREADS=${THREADS:-1}
mkdir -p "$WORK"

# The first column names the book: the New Testament starts at Matthew.
NEW_TESTAMENT='^(Matt|Mark|Luke|John|Acts|Rom|1Cor|2Cor|Gal|Eph|Phil|Col|1Thess|2Thess|1Tim|2Tim|Titus|Phlm|Heb|Jas|1Pet|2Pet|1John|2John|3John|Jude|Rev) '
for split in train dev test; do
  xz -dc "data/bible.es-en.$split.tsv.xz" >"$WORK/all.$split.tsv"
  grep -E "$NEW_TESTAMENT" "$WORK/all.$split.tsv" >"$WORK/nt.$split.tsv"
  grep -vE "$NEW_TESTAMENT" "$WORK/all.$split.tsv" >"$WORK/ot.$split.tsv"
done

# Each run is skipped when a previous call of this script finished it.
if [ ! -f "$WORK/base/model.safetensors" ]; then
  $QKV train --config configs/tiny.yaml --train-sets "$WORK/ot.train.tsv" \
    --valid-sets "$WORK/ot.dev.tsv" --model-dir "$WORK/base" --max-time "$BASE_MINUTES" \
    --threads "$THREADS" 2>&1 | tee -a "$WORK/base.log"
fi

# Both fine-tunes: the New Testament, validated on its dev verses, the same minutes and threads.
tune() {
  local name=$1
  shift
  [ -f "$WORK/$name.time" ] && return
  /usr/bin/time -v -o "$WORK/$name.time" $QKV train --init-from "$WORK/base" \
    --train-sets "$WORK/nt.train.tsv" --valid-sets "$WORK/nt.dev.tsv" --model-dir "$WORK/$name" \
    --max-time "$TUNE_MINUTES" --threads "$THREADS" --batch-tokens 2048 --warmup-steps 100 \
    --valid-freq 100 --save-freq 100 --disp-freq 20 --lr-schedule constant "$@" \
    >"$WORK/$name.log" 2>&1
}
tune lora --lora-rank 8 --lora-alpha 16 --lora-targets q_proj,v_proj --learning-rate 0.002 &
tune lora-all --lora-rank 8 --lora-alpha 16 --lora-targets all-linear --learning-rate 0.002 &
tune full --learning-rate 0.0003 &
wait

# The median seconds between logged updates, per update (validations fall out of the median).
median_update_seconds() {
  /usr/bin/python3 - "$1/metrics.jsonl" <<'PY'
import json, statistics, sys
ups = [json.loads(l) for l in open(sys.argv[1]) if '"event":"update"' in l]
steps = [(b["elapsed_s"] - a["elapsed_s"]) / (b["update"] - a["update"]) for a, b in zip(ups, ups[1:])]
print(f"{statistics.median(steps):.3f}" if steps else "n/a")
PY
}
peak_rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$1"; }

printf '%-8s %7s %7s %12s %10s %10s\n' model BLEU chrF trainable "RSS MiB" "s/update"
row() {
  local name=$1 trainable=$2 rss=$3 step=$4 model=$5
  shift 5
  local scores
  scores=$($QKV eval --model-dir "$model" "$@" --test "$WORK/nt.test.tsv" --json \
    --threads "$THREADS")
  printf '%-8s %7s %7s %12s %10s %10s\n' "$name" \
    "$(echo "$scores" | /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["bleu"], 2))')" \
    "$(echo "$scores" | /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["chrf"], 2))')" \
    "$trainable" "$rss" "$step"
}
trainable() { grep -oE '[0-9]+ (trainable )?parameters' "$1" | head -1 | grep -oE '^[0-9]+'; }
row base "$(trainable "$WORK/base.log")" - "$(median_update_seconds "$WORK/base")" "$WORK/base"
row lora "$(trainable "$WORK/lora.log")" "$(peak_rss_mib "$WORK/lora.time")" \
  "$(median_update_seconds "$WORK/lora")" "$WORK/base" --adapter "$WORK/lora"
row lora-all "$(trainable "$WORK/lora-all.log")" "$(peak_rss_mib "$WORK/lora-all.time")" \
  "$(median_update_seconds "$WORK/lora-all")" "$WORK/base" --adapter "$WORK/lora-all"
row full "$(trainable "$WORK/full.log")" "$(peak_rss_mib "$WORK/full.time")" \
  "$(median_update_seconds "$WORK/full")" "$WORK/full"
