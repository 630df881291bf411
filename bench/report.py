"""Joins the results of one bench/run.sh run into one JSON document, prints the comparison table
(ratios qkv / PyTorch, share of the sgemm peak, attention kernels) and appends a one-line summary
to a history file so that runs can be compared over time.

    report.py RAW_DIR --json bench/results/latest.json --history bench/results/history.jsonl

RAW_DIR holds what run.sh collected: meta.json, gemm.json, train_<preset>[_bf16]_{qkv,torch}.json,
translate_{qkv,torch}.json, test_split_{qkv,torch}.json, attention.json (any may be missing when a
part was skipped).
"""
import argparse
import glob
import json
import os
import re
import statistics

# Issue 6's goals; the table marks each measured value against its goal.
GOALS = {
    "train_ratio": 2.0,            # qkv / PyTorch training tokens/s, tiny and small
    "gemm_peak_share": 0.60,       # model FLOPs / step time / sgemm peak
    "greedy_b32_ratio": 15.0,      # qkv / PyTorch no-cache loop, batch 32
    "greedy_b1_ratio": 12.0,       # the same at batch 1
    "attention_512_time": 1.2,     # tiled / naive time at length 512: at most
    "attention_8192_time": 1.0,    # tiled / naive time at length 8192: below
    "greedy_b32_int8_over_f32": 1.5,  # qkv int8 / qkv f32 target tokens/s, greedy batch 32
    "greedy_b32_bf16_over_f32": 1.3,  # the same for bf16
    "train_bf16_over_f32": 1.6,    # qkv bf16 / qkv f32 training tokens/s (issue 20)
}


def load(raw, name):
    path = os.path.join(raw, name)
    return json.load(open(path)) if os.path.exists(path) else None


def mark(ok):
    return "ok " if ok else "-- "


def peak_share(flops, timing):
    """Median over runs of (FLOPs / run time) / sgemm rate right after the run."""
    return statistics.median(flops / t / 1e9 / g for t, g in zip(timing["runs_s"], timing["sgemm_gflops_after_runs"]))


def normalized_ratio(qkv, torch):
    """qkv speed / PyTorch speed, each divided by the sgemm rate measured right after its runs:
    the ratio at equal machine speed, robust when other processes load the CPUs unevenly."""
    def speed(t):
        return statistics.median(g * t_s for t_s, g in zip(t["runs_s"], t["sgemm_gflops_after_runs"]))
    return speed(torch) / speed(qkv)


def summarize_train(raw, peak):
    out = {}
    for path in sorted(glob.glob(os.path.join(raw, "train_*_qkv.json"))):
        preset = re.match(r"train_(.+)_qkv\.json", os.path.basename(path)).group(1)
        qkv, torch = load(raw, f"train_{preset}_qkv.json"), load(raw, f"train_{preset}_torch.json")
        flops = qkv["flops"]["training_step"]
        row = {"qkv_tokens_per_s": qkv["target_tokens_per_s"], "qkv_step_s": qkv["timing"]["median_s"],
               "model_gflop_per_step": flops / 1e9, "qkv": qkv, "torch": torch}
        # Share of the GEMM peak: against the sgemm rate measured right after each step in the
        # same process (same machine load); also against the gemm section's peak.
        row["qkv_gemm_peak_share"] = peak_share(flops, qkv["timing"])
        if peak:
            row["qkv_gemm_peak_share_vs_gemm_section"] = flops / qkv["timing"]["median_s"] / 1e9 / peak
        if torch:
            row["torch_tokens_per_s"] = torch["target_tokens_per_s"]
            row["ratio"] = qkv["target_tokens_per_s"] / torch["target_tokens_per_s"]
            row["ratio_at_equal_sgemm_rate"] = normalized_ratio(qkv["timing"], torch["timing"])
            row["torch_gemm_peak_share"] = peak_share(flops, torch["timing"])
            if peak:
                row["torch_gemm_peak_share_vs_gemm_section"] = flops / torch["timing"]["median_s"] / 1e9 / peak
        out[preset] = row
    # bf16 autocast rows against the same preset's f32 row: each side's own speed-up.
    for preset, row in out.items():
        base = out.get(preset.removesuffix("_bf16"))
        if preset.endswith("_bf16") and base:
            row["qkv_bf16_over_f32"] = row["qkv_tokens_per_s"] / base["qkv_tokens_per_s"]
            if "torch_tokens_per_s" in row and "torch_tokens_per_s" in base:
                row["torch_bf16_over_f32"] = row["torch_tokens_per_s"] / base["torch_tokens_per_s"]
    return out


def summarize_translate(qkv, torch):
    if not qkv:
        return None
    theirs = {c["name"]: c for c in (torch or {}).get("cases", [])}
    cases = []
    for c in qkv["cases"]:
        row = {"name": c["name"], "batch": c["batch"], "beam": c["beam"],
               "qkv_tokens_per_s": c["target_tokens_per_s"]}
        for k in ("compute_type", "over_f32", "tokens_equal_to_f32"):
            if k in c:
                row[k] = c[k]
        t = theirs.get(c["name"])
        if t:
            row["torch_tokens_per_s"] = t["target_tokens_per_s"]
            row["ratio"] = c["target_tokens_per_s"] / t["target_tokens_per_s"]
            row["ratio_at_equal_sgemm_rate"] = normalized_ratio(c["timing"], t["timing"])
            for k in ("sentences_equal_to_qkv", "tokens_equal_to_qkv"):
                if k in t:
                    row[k] = t[k]
        cases.append(row)
    return {"src_len": qkv["src_len"], "tgt_len": qkv["tgt_len"], "cases": cases, "qkv": qkv, "torch": torch}


def summarize_test_split(qkv, torch):
    if not qkv:
        return None
    theirs = {c["name"]: c for c in (torch or {}).get("cases", [])}
    cases = []
    for c in qkv["cases"]:
        row = {"name": c["name"], "beam": c["beam"], "qkv_tokens_per_s": c["source_tokens_per_s"]}
        t = theirs.get(c["name"])
        if t:
            row["torch_tokens_per_s"] = t["source_tokens_per_s"]
            row["ratio"] = c["source_tokens_per_s"] / t["source_tokens_per_s"]
            row["ratio_at_equal_sgemm_rate"] = normalized_ratio(c["timing"], t["timing"])
            if "sentences_equal_to_qkv" in t:
                row["sentences_equal_to_qkv"] = t["sentences_equal_to_qkv"]
        cases.append(row)
    return {k: qkv[k] for k in ("model_dir", "weights", "test", "sentences", "source_tokens", "batch_tokens")} | {
        "cases": cases, "qkv": qkv, "torch": torch}


def print_test_split(doc):
    ts = doc.get("test_split")
    if not ts:
        if "test-split" in doc["meta"].get("parts", []):
            print("\ntest split: skipped (needs a trained model: bench/run.sh --model-dir DIR)")
        return
    print(f"\ntest split, {ts['sentences']} sentences ({ts['source_tokens']} source subwords) of {ts['test']},"
          f" batches of {ts['batch_tokens']} subwords")
    print(f"  model {ts['weights']}")
    print("  qkv translate vs the PyTorch loop (no KV cache)   qkv src tok/s  torch src tok/s"
          "  qkv/torch (at equal sgemm rate)  outputs equal to qkv")
    for c in ts["cases"]:
        eq = f"{c['sentences_equal_to_qkv']}/{ts['sentences']}" if "sentences_equal_to_qkv" in c else ""
        print(f"  {c['name']:48s} {c['qkv_tokens_per_s']:13.0f} {c.get('torch_tokens_per_s', float('nan')):16.0f}"
              f"  {c.get('ratio', float('nan')):9.2f} ({c.get('ratio_at_equal_sgemm_rate', float('nan')):6.2f})"
              f"           {eq}")


def print_table(doc):
    m = doc["meta"]
    print(f"\nqkv benchmarks  {m.get('date', '')}  commit {m.get('commit', '?')}  threads {m.get('threads')}")
    print(f"cpu: {m.get('cpu', '?')} ({m.get('cpus')} cpus)  load average before/after: "
          f"{m.get('loadavg_before')} / {m.get('loadavg_after')}"
          + "".join(f"  {k}={v}" for k, v in m.get("env", {}).items()))
    if m.get("busy"):
        print("WARNING: other processes were using the CPUs; absolute numbers are low, same-run ratios still compare.")
    g = doc.get("gemm")
    if g:
        print("\nsgemm (OpenBLAS)               GFLOP/s")
        for s in g["shapes"]:
            print(f"  {s['name']:42s} {s['gflops']:7.1f}")
        print(f"  {'peak (best of the above)':42s} {g['peak_gflops']:7.1f}")
    tr = doc.get("train")
    if tr:
        print("\ntraining, 64 x 32 target tokens/step  qkv tok/s  torch tok/s  qkv/torch (at equal sgemm rate)"
              "  GEMM-peak share qkv (torch)")
        for preset, r in tr.items():
            ratio = r.get("ratio")
            share = r.get("qkv_gemm_peak_share")
            tshare = r.get("torch_gemm_peak_share")
            print(f"  {preset:36s} {r['qkv_tokens_per_s']:9.0f} {r.get('torch_tokens_per_s', float('nan')):12.0f}"
                  f"  {mark(ratio is not None and ratio >= GOALS['train_ratio'])}{ratio or float('nan'):6.2f}"
                  f" ({r.get('ratio_at_equal_sgemm_rate', float('nan')):5.2f})          "
                  f"  {mark(share is not None and share >= GOALS['gemm_peak_share'])}{100 * (share or 0):5.1f}%"
                  f" ({100 * (tshare or 0):4.1f}%)   [{r['model_gflop_per_step']:.1f} GFLOP/step]")
        print(f"  goals: qkv/torch >= {GOALS['train_ratio']}, share >= {100 * GOALS['gemm_peak_share']:.0f}%"
              " (vs a 1024^3 sgemm timed right after each step, in the same process)")
        for preset, r in tr.items():
            if "qkv_bf16_over_f32" in r:
                speedup = r["qkv_bf16_over_f32"]
                print(f"  {preset}: bf16 / f32 tokens/s qkv {mark(speedup >= GOALS['train_bf16_over_f32'])}"
                      f"{speedup:.2f}, torch {r.get('torch_bf16_over_f32', float('nan')):.2f}"
                      f" (goal qkv >= {GOALS['train_bf16_over_f32']})")
    tl = doc.get("translate")
    if tl:
        print(f"\ntranslation, {tl['src_len']} source -> exactly {tl['tgt_len']} target tokens"
              "   qkv tok/s  torch tok/s (no KV cache)  qkv/torch (at equal sgemm rate)  outputs equal to qkv")
        for c in tl["cases"]:
            goal = {"greedy_b32": GOALS["greedy_b32_ratio"], "greedy_b1": GOALS["greedy_b1_ratio"]}.get(c["name"])
            ratio = c.get("ratio")
            flag = mark(ratio >= goal) if goal and ratio is not None else "   "
            eq = f"{c['sentences_equal_to_qkv']}/{c['batch']}" if "sentences_equal_to_qkv" in c else ""
            if "over_f32" in c:  # a compute type other than f32: against qkv f32, not PyTorch
                goal = GOALS.get(f"{c['name']}_over_f32")
                flag = mark(c["over_f32"] >= goal) if goal else "   "
                print(f"  {c['name']:50s} {c['qkv_tokens_per_s']:9.0f}   {flag}{c['over_f32']:5.2f}x qkv f32"
                      f"   tokens equal to f32: {c['tokens_equal_to_f32']:.1%}")
                continue
            print(f"  {c['name']:50s} {c['qkv_tokens_per_s']:9.0f} {c.get('torch_tokens_per_s', float('nan')):12.0f}"
                  f"              {flag}{ratio or float('nan'):7.2f} ({c.get('ratio_at_equal_sgemm_rate', float('nan')):6.2f})"
                  f"   {eq}")
        print(f"  goals: greedy batch 32 >= {GOALS['greedy_b32_ratio']}x, batch 1 >= {GOALS['greedy_b1_ratio']}x;"
              f" int8 >= {GOALS['greedy_b32_int8_over_f32']}x and bf16 >= {GOALS['greedy_b32_bf16_over_f32']}x"
              " qkv f32 at greedy batch 32")
    print_test_split(doc)
    at = doc.get("attention")
    if at:
        print(f"\nattention fwd+bwd, B={at['batch']} H={at['heads']} Dh={at['head_dim']}"
              f"{' causal' if at['causal'] else ''}   naive s   tiled s  tiled/naive  naive MiB  tiled MiB  auto")
        for c in at["cases"]:
            n, t = c["naive"], c["tiled"]
            r = c["tiled_over_naive_time"]
            goal = {512: r <= GOALS["attention_512_time"], 8192: r < GOALS["attention_8192_time"]}.get(c["length"])
            flag = "   " if goal is None else mark(goal)
            print(f"  L={c['length']:<37d} {n['timing']['median_s']:8.3f} {t['timing']['median_s']:9.3f}"
                  f"  {flag}{r:8.2f}  {n['peak_extra_bytes'] / 2**20:9.1f}  {t['peak_extra_bytes'] / 2**20:9.1f}"
                  f"  {c['automatic_picks']}")
        print(f"  goals: tiled/naive <= {GOALS['attention_512_time']} at 512 and < 1 at 8192; tiled memory linear in L")


def history_line(doc):
    """The headline numbers of a run, one JSON object per line."""
    h = {k: doc["meta"].get(k) for k in ("date", "commit", "threads", "busy")}
    if doc.get("gemm"):
        h["sgemm_peak_gflops"] = round(doc["gemm"]["peak_gflops"], 1)
    for preset, r in (doc.get("train") or {}).items():
        h[f"train_{preset}_qkv"] = round(r["qkv_tokens_per_s"])
        if "qkv_bf16_over_f32" in r:
            h[f"train_{preset}_over_f32"] = round(r["qkv_bf16_over_f32"], 3)
        if "ratio" in r:
            h[f"train_{preset}_ratio"] = round(r["ratio"], 3)
        if "qkv_gemm_peak_share" in r:
            h[f"train_{preset}_peak_share"] = round(r["qkv_gemm_peak_share"], 3)
        if "ratio_at_equal_sgemm_rate" in r:
            h[f"train_{preset}_ratio_at_equal_sgemm_rate"] = round(r["ratio_at_equal_sgemm_rate"], 3)
    for c in (doc.get("translate") or {}).get("cases", []):
        h[f"{c['name']}_qkv"] = round(c["qkv_tokens_per_s"])
        if "over_f32" in c:
            h[f"{c['name']}_over_f32"] = round(c["over_f32"], 3)
        if "ratio" in c:
            h[f"{c['name']}_ratio"] = round(c["ratio"], 2)
            h[f"{c['name']}_ratio_at_equal_sgemm_rate"] = round(c["ratio_at_equal_sgemm_rate"], 2)
    for c in (doc.get("test_split") or {}).get("cases", []):
        h[f"test_split_{c['name']}_qkv"] = round(c["qkv_tokens_per_s"])
        if "ratio" in c:
            h[f"test_split_{c['name']}_ratio"] = round(c["ratio"], 2)
            h[f"test_split_{c['name']}_ratio_at_equal_sgemm_rate"] = round(c["ratio_at_equal_sgemm_rate"], 2)
    for c in (doc.get("attention") or {}).get("cases", []):
        h[f"attention_{c['length']}_tiled_over_naive"] = round(c["tiled_over_naive_time"], 3)
    return h


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw_dir")
    p.add_argument("--json", required=True)
    p.add_argument("--history", default="")
    a = p.parse_args()
    gemm = load(a.raw_dir, "gemm.json")
    peak = gemm["peak_gflops"] if gemm else None
    doc = {"meta": load(a.raw_dir, "meta.json") or {}, "goals": GOALS, "gemm": gemm,
           "train": summarize_train(a.raw_dir, peak) or None,
           "translate": summarize_translate(load(a.raw_dir, "translate_qkv.json"),
                                            load(a.raw_dir, "translate_torch.json")),
           "test_split": summarize_test_split(load(a.raw_dir, "test_split_qkv.json"),
                                              load(a.raw_dir, "test_split_torch.json")),
           "attention": load(a.raw_dir, "attention.json")}
    doc = {k: v for k, v in doc.items() if v is not None}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    if a.history:
        with open(a.history, "a") as f:
            f.write(json.dumps(history_line(doc)) + "\n")
    print_table(doc)
    print(f"\nresults: {a.json}")


if __name__ == "__main__":
    main()
