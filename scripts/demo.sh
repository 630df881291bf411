#!/usr/bin/env bash
# The main job on its built-in default: installs and builds qkv, trains the `tiny` translation
# model on the bundled Spanish->English corpus for QKV_DEMO_MINUTES (default 15) minutes on the
# CPU, evaluates it on the test split (BLEU, chrF), and translates a few Spanish sentences.
# Run it again to continue training the same model from its last checkpoint.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Builds only the `qkv` command: the tests and benchmarks are scripts/test.sh's.
PRESET=release source scripts/setup.sh qkv
# OpenMP threads that spin while waiting make a shared CPU several times slower; passive
# waiting costs little on an idle one.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
qkv=build/release/qkv
dir=${QKV_DEMO_DIR:-runs/demo-tiny}
minutes=${QKV_DEMO_MINUTES:-15}

echo "== training configs/tiny.yaml for $minutes minutes into $dir"
"$qkv" train --config configs/tiny.yaml --model-dir "$dir" --max-time "$minutes"

echo "== BLEU / chrF on the test split (greedy)"
"$qkv" eval --model-dir "$dir" --test data/bible.es-en.test.tsv.xz --output "$dir/test.hyp.en"

echo "== sample translations (beam 5)"
"$qkv" translate --model-dir "$dir" --beam 5 <<'SENTENCES'
En el principio creó Dios los cielos y la tierra.
Y dijo Dios: Sea la luz; y fué la luz.
Amarás a tu prójimo como a ti mismo.
Bienaventurados los pacificadores, porque ellos serán llamados hijos de Dios.
El Señor es mi pastor; nada me faltará.
SENTENCES
