"""PyTorch side of qkv's benchmark suite (bench/run.sh runs it next to qkv_bench).

    torch_bench.py train --preset tiny --threads 2 --json out.json
    torch_bench.py translate --model-dir DIR --threads 2 --json out.json
    torch_bench.py test-split --data-dir DIR --threads 2 --json out.json

train: the training step a PyTorch user runs for the model of torch_models.py (dropout, label-
smoothed cross-entropy summed and divided by the target tokens, backward, clip_grad_norm_, Adam)
on a fixed batch of random ids. translate: greedy and beam search without KV cache (the decoder
re-runs on the whole prefix), on the weights and source ids qkv_bench wrote to DIR, with every
output exactly --tgt-len tokens long; also reports how many greedy outputs equal qkv's.
test-split: the sentences `qkv_bench test-split --out-dir DIR` tokenized, decoded with the trained
model's weights (tests/python/seq2seq_reference.py's model) in the same length-sorted batches, by
greedy and beam loops without KV cache that follow decode::search's rules (stop at <eos> or the
length limit; see torch_models.py); reports source tokens/s and how many outputs equal qkv's.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import safetensors_np  # noqa: E402
import seq2seq_reference  # noqa: E402
import torch_models  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def time_runs(fn, warmup, runs, budget_s, min_runs):
    """Seconds of each timed run after `warmup` untimed ones; no more runs once budget_s seconds
    were spent (but at least min_runs). A square sgemm is timed right after each run (outside
    its time): the GEMM rate under the same machine load."""
    for _ in range(warmup):
        fn()
    out, sgemm = [], []
    for i in range(runs):
        if i >= min_runs and sum(out) >= budget_s:
            break
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
        sgemm.append(square_mm_gflops())
    return {"median_s": statistics.median(out), "min_s": min(out), "runs_s": out,
            "sgemm_gflops_after_runs": sgemm}


def square_mm_gflops(n=1024, reps=3):
    """Best rate of `reps` n^3 products through torch.mm (Debian's torch calls the same OpenBLAS)."""
    x, y = torch.full((n, n), 0.5), torch.full((n, n), 0.25)
    best = 0.0
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(x, y)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def bench_train(a):
    torch.manual_seed(a.seed)
    c = torch_models.preset_config(a.preset, a.vocab)
    model = torch_models.Seq2Seq(c).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    g = torch.Generator().manual_seed(a.seed + 1)
    src = torch.randint(4, a.vocab, (a.batch, a.src_len), generator=g)
    src_len = torch.full((a.batch,), a.src_len)
    words = torch.randint(4, a.vocab, (a.batch, a.tgt_len - 1), generator=g)
    tgt_in = torch.cat([torch.full((a.batch, 1), c["bos_id"]), words], 1)
    tgt_out = torch.cat([words, torch.full((a.batch, 1), c["eos_id"])], 1).reshape(-1)
    tokens = a.batch * a.tgt_len
    losses = []

    # bf16: CPU autocast (oneDNN's bf16 products, f32 weights and optimizer), as qkv's
    # AutocastScope around forward and backward.
    bf16 = a.precision == "bf16"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(src, src_len, tgt_in)
            loss = F.cross_entropy(logits.reshape(-1, a.vocab).float(), tgt_out, ignore_index=c["pad_id"],
                                   label_smoothing=0.1, reduction="sum") / tokens
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())

    timing = time_runs(step, a.warmup, a.steps, a.budget, 3)
    rate = tokens / timing["median_s"]
    log(f"train {a.preset:5s} torch {a.precision} {rate:8.0f} target tokens/s  ({timing['median_s']:.3f} s/step)")
    return {"preset": a.preset, "precision": a.precision, "batch": a.batch, "src_len": a.src_len, "tgt_len": a.tgt_len,
            "target_tokens_per_step": tokens, "params": sum(p.numel() for p in model.parameters()),
            "timing": timing, "target_tokens_per_s": rate, "losses": losses}


def bench_translate(a):
    c = json.load(open(os.path.join(a.model_dir, "config.json")))
    w, _ = safetensors_np.load(os.path.join(a.model_dir, "weights.safetensors"))
    model = torch_models.Seq2Seq(c).eval()
    model.load_qkv_weights(w)
    all_src = torch.tensor(safetensors_np.load(os.path.join(a.model_dir, "sources.safetensors"))[0]["src"]
                           .astype(np.int64))
    qkv_path = os.path.join(a.model_dir, "qkv_outputs.safetensors")
    qkv_out = safetensors_np.load(qkv_path)[0] if os.path.exists(qkv_path) else {}
    cases = []
    for batch in a.batches:
        src = all_src[:batch]
        src_len = torch.full((batch,), src.shape[1])
        for beam in a.beams:
            name = ("greedy" if beam == 1 else f"beam{beam}") + f"_b{batch}"
            out = {}

            def run(length=a.tgt_len):
                out["ys"] = (torch_models.greedy(model, src, src_len, length) if beam == 1 else
                             torch_models.beam_search(model, src, src_len, length, beam))

            run(2)  # a short run warms up the allocator and thread pool
            timing = time_runs(run, 0, a.runs, a.budget, 1)
            rate = batch * a.tgt_len / timing["median_s"]
            case = {"name": name, "batch": batch, "beam": beam, "timing": timing,
                    "target_tokens_per_s": rate}
            if name in qkv_out:  # same model, same input: do the outputs agree?
                ours = out["ys"].numpy()
                theirs = qkv_out[name]
                case["sentences_equal_to_qkv"] = int((ours == theirs).all(1).sum())
                case["tokens_equal_to_qkv"] = float((ours == theirs).mean())
            log(f"translate {name:10s} torch {rate:8.0f} target tokens/s")
            cases.append(case)
    return {"src_len": int(all_src.shape[1]), "tgt_len": a.tgt_len, "cases": cases}


def length_sorted_batches(lengths, batch_tokens):
    """decode::Translator's batches: non-empty sources sorted by length (stable), each batch as
    many as fit batch_tokens padded subwords."""
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: lengths[i])
    batches, begin = [], 0
    while begin < len(order):
        end = begin + 1
        while end < len(order) and (end - begin + 1) * lengths[order[end]] <= batch_tokens:
            end += 1
        batches.append(order[begin:end])
        begin = end
    return batches


def bench_test_split(a):
    c = json.load(open(os.path.join(a.data_dir, "config.json")))
    o = c["search"]
    model = seq2seq_reference.Seq2Seq(c, safetensors_np.load(c["weights"])[0]).eval()
    s = safetensors_np.load(os.path.join(a.data_dir, "sources.safetensors"))[0]
    lengths = s["src_lengths"].tolist()
    sources = [row[:n].tolist() for row, n in zip(s["src"], lengths)]
    qkv_out = safetensors_np.load(os.path.join(a.data_dir, "qkv_outputs.safetensors"))[0]
    batches = length_sorted_batches(lengths, c["batch_tokens"])

    def limit(n):  # decode::search's most target tokens (with <eos>)
        return max(1, min(math.ceil(o["max_length_ratio"] * n) + o["max_length_offset"], o["max_length"]))

    def translate(beam, batch, max_length=None):
        src = torch.tensor([sources[i] + [c["pad_id"]] * (lengths[batch[-1]] - lengths[i]) for i in batch])
        src_len = torch.tensor([lengths[i] for i in batch])
        limits = [min(limit(lengths[i]), max_length or o["max_length"]) for i in batch]
        if beam == 1:
            return torch_models.greedy_until_eos(model, src, src_len, limits, o["min_length"])
        return torch_models.beam_search_until_eos(model, src, src_len, limits, beam, o["length_penalty"],
                                                  o["min_length"])

    cases = []
    for beam in a.beams:
        name = "greedy" if beam == 1 else f"beam{beam}"
        out = [[] for _ in sources]

        def run():
            for batch in batches:
                for i, tokens in zip(batch, translate(beam, batch)):
                    out[i] = tokens

        translate(beam, batches[0][:8], max_length=2)  # warms up the allocator and thread pool
        timing = time_runs(run, 0, a.runs, a.budget, 1)
        rate = sum(lengths) / timing["median_s"]
        case = {"name": name, "beam": beam, "timing": timing, "target_tokens": sum(map(len, out)),
                "source_tokens_per_s": rate}
        if name in qkv_out:  # same weights, same input: do the outputs agree?
            theirs = [row[:n].tolist() for row, n in zip(qkv_out[name], qkv_out[name + "_lengths"])]
            case["sentences_equal_to_qkv"] = sum(x == y for x, y in zip(out, theirs))
        log(f"test-split {name:7s} torch {rate:8.0f} source tokens/s")
        cases.append(case)
    return {"sentences": len(sources), "source_tokens": sum(lengths), "cases": cases}


def main():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=2)
    common.add_argument("--json", default="", help="write the results here (default: stdout)")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", parents=[common])
    t.add_argument("--preset", default="tiny", choices=sorted(torch_models.PRESETS))
    t.add_argument("--vocab", type=int, default=8000)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--src-len", type=int, default=30)
    t.add_argument("--tgt-len", type=int, default=32)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--steps", type=int, default=5, help="most timed steps (at least 3)")
    t.add_argument("--budget", type=float, default=15, help="no more timed steps after this many seconds")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--precision", default="f32", choices=["f32", "bf16"], help="bf16: CPU autocast")
    d = sub.add_parser("translate", parents=[common])
    d.add_argument("--model-dir", required=True)
    d.add_argument("--tgt-len", type=int, default=32)
    d.add_argument("--batches", type=int, nargs="+", default=[32, 1])
    d.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    d.add_argument("--runs", type=int, default=5)
    d.add_argument("--budget", type=float, default=5)
    e = sub.add_parser("test-split", parents=[common])
    e.add_argument("--data-dir", required=True, help="the --out-dir of qkv_bench test-split")
    e.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    e.add_argument("--runs", type=int, default=3)
    e.add_argument("--budget", type=float, default=20, help="seconds per beam size")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    result = {"train": bench_train, "translate": bench_translate, "test-split": bench_test_split}[a.cmd](a)
    result.update(threads=a.threads, torch_version=torch.__version__)
    text = json.dumps(result, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
