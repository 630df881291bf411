"""PyTorch side of bench/gpu/train.sh: training target tokens/s of torch_models.Seq2Seq (the
model of qkv's CPU suite) on the GPU, on a fixed batch of random ids, with the step of
bench/torch_bench.py (dropout, label-smoothed cross-entropy summed / target tokens, backward,
clip_grad_norm_, Adam) and qkv_bench's timing rules (warm-up steps untimed, median of the timed).
    torch_train.py --mode f32|bf16|bf16-compile --preset base --json out.json
f32: plain fp32 (TF32 off, as qkv's f32 cuBLAS products). bf16: torch.autocast(bfloat16) around
forward and loss, fp32 weights and Adam state (what qkv's precision: bf16 does).
bf16-compile: the same model through torch.compile (bench/gpu/train.sh gives it a time limit).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import torch_models  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["f32", "bf16", "bf16-compile"], required=True)
    p.add_argument("--preset", default="base")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--src-len", type=int, default=30)
    p.add_argument("--tgt-len", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--budget", type=float, default=10.0, help="seconds of timed steps")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    torch.manual_seed(a.seed)
    c = torch_models.preset_config(a.preset, a.vocab)
    model = torch_models.Seq2Seq(c).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    forward = torch.compile(model) if a.mode == "bf16-compile" else model
    g = torch.Generator().manual_seed(a.seed + 1)
    src = torch.randint(4, a.vocab, (a.batch, a.src_len), generator=g).to(dev)
    src_len = torch.full((a.batch,), a.src_len, device=dev)
    words = torch.randint(4, a.vocab, (a.batch, a.tgt_len - 1), generator=g)
    tgt_in = torch.cat([torch.full((a.batch, 1), c["bos_id"]), words], 1).to(dev)
    tgt_out = torch.cat([words, torch.full((a.batch, 1), c["eos_id"])], 1).reshape(-1).to(dev)
    tokens = a.batch * a.tgt_len
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.mode != "f32"):
            logits = forward(src, src_len, tgt_in)
            loss = F.cross_entropy(logits.reshape(-1, a.vocab).float(), tgt_out,
                                   ignore_index=c["pad_id"], label_smoothing=0.1,
                                   reduction="sum") / tokens
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        torch.cuda.synchronize()

    start = time.perf_counter()
    for _ in range(a.warmup):
        step()
    warmup_s = time.perf_counter() - start
    runs = []
    for i in range(a.steps):
        if i >= 3 and sum(runs) >= a.budget:
            break
        t0 = time.perf_counter()
        step()
        runs.append(time.perf_counter() - t0)
    median = statistics.median(runs)
    rate = tokens / median
    print(f"train {a.preset:5s} torch {a.mode:12s} {rate:8.0f} target tokens/s  ({median:.4f} s/step, "
          f"warm-up {warmup_s:.1f} s)", file=sys.stderr, flush=True)
    result = {"preset": a.preset, "mode": a.mode, "device": torch.cuda.get_device_name(),
              "torch": torch.__version__, "batch": a.batch, "src_len": a.src_len,
              "tgt_len": a.tgt_len, "target_tokens_per_step": tokens,
              "params": sum(q.numel() for q in model.parameters()),
              "timing": {"median_s": median, "min_s": min(runs), "runs_s": runs},
              "warmup_s": warmup_s, "target_tokens_per_s": rate, "losses": losses,
              "peak_bytes_allocated": torch.cuda.max_memory_allocated()}
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
