"""The tables of bench/gpu/train.sh and translate.sh from the JSON files they wrote:
    report.py train DIR       qkv_{f32,bf16}.json, torch_{f32,bf16,bf16-compile}.json
    report.py translate DIR   qkv_{f32,bf16}.json, hf_{fp32,bf16}.json
Every ratio is qkv over the reference measured in the same run on the same GPU. A run that
failed or timed out shows as "-" (its log is next to the JSON). Also writes DIR/summary.json.
"""
import json
import os
import sys


def load(d, name):
    path = os.path.join(d, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def gpu_name(d):
    try:
        with open(os.path.join(d, "gpu.txt")) as f:
            return f.read().strip() or "unknown GPU"
    except OSError:
        return "unknown GPU"


def fmt(x, spec="8.0f"):
    return format(x, spec) if x is not None else format("-", ">" + spec.split(".")[0])


def ratio(a, b):
    return a / b if a is not None and b else None


def train(d):
    rows = [("qkv f32", "qkv_f32"), ("qkv bf16", "qkv_bf16"), ("torch f32 eager", "torch_f32"),
            ("torch bf16 eager", "torch_bf16"), ("torch bf16 compile", "torch_bf16-compile")]
    rate = {}
    for label, name in rows:
        j = load(d, name)
        rate[label] = j["target_tokens_per_s"] if j else None
    first = load(d, "qkv_bf16") or load(d, "qkv_f32") or {}
    print(f"\ntraining `{first.get('preset', 'base')}`, {first.get('batch', 256)} x "
          f"{first.get('tgt_len', 32)} target tokens/step, 8k vocabulary, on {gpu_name(d)}")
    print(f"{'':20s} {'tokens/s':>9s} {'qkv bf16 / this':>16s}")
    for label, _ in rows:
        r = ratio(rate["qkv bf16"], rate[label])
        print(f"{label:20s} {fmt(rate[label], '9.0f')} {fmt(r, '16.2f')}")
    print(f"qkv f32 / torch f32 eager: {fmt(ratio(rate['qkv f32'], rate['torch f32 eager']), '.2f')}"
          f"   qkv bf16 / qkv f32: {fmt(ratio(rate['qkv bf16'], rate['qkv f32']), '.2f')}"
          "   (goal: qkv bf16 >= 2x torch bf16 eager)")
    return {"gpu": gpu_name(d), "target_tokens_per_s": rate}


def translate(d):
    runs = {"qkv f32": "qkv_f32", "qkv bf16": "qkv_bf16", "hf fp32": "hf_fp32", "hf bf16": "hf_bf16"}
    rate = {}
    for label, name in runs.items():
        j = load(d, name)
        rate[label] = {c["name"]: c["target_tokens_per_s"] for c in (j or {}).get("cases", [])}
    names = []
    for r in rate.values():
        names += [n for n in r if n not in names]
    print(f"\ntranslation `base`, 30 -> 32 target tokens, random weights, 8k vocabulary, on {gpu_name(d)}")
    print(f"{'target tokens/s':14s} {'qkv f32':>9s} {'qkv bf16':>9s} {'hf fp32':>9s} {'hf bf16':>9s}"
          f" {'f32/fp32':>9s} {'bf16/bf16':>9s} {'best/best':>9s}")
    table = {}
    for n in names:
        v = {k: rate[k].get(n) for k in runs}
        best_qkv = max([x for x in (v["qkv f32"], v["qkv bf16"]) if x is not None], default=None)
        best_hf = max([x for x in (v["hf fp32"], v["hf bf16"]) if x is not None], default=None)
        ratios = [ratio(v["qkv f32"], v["hf fp32"]), ratio(v["qkv bf16"], v["hf bf16"]),
                  ratio(best_qkv, best_hf)]
        print(f"{n:14s} " + " ".join(fmt(v[k], "9.0f") for k in runs) + " " +
              " ".join(fmt(r, "9.2f") for r in ratios))
        table[n] = dict(v, best_ratio=ratios[2])
    print("goals: best/best >= 2 at batch 64, >= 5 at batch 1")
    return {"gpu": gpu_name(d), "target_tokens_per_s": table}


def main():
    kind, d = sys.argv[1], sys.argv[2]
    summary = train(d) if kind == "train" else translate(d)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
