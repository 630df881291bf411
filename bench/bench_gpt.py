#!/usr/bin/python3
"""Speed of qkv's GPT models against the same models in PyTorch, same threads and batch.

    bench/bench_gpt.py [--threads 2] [--rounds 2] [--presets gpt-nano,gpt-mini,llama-tiny]
                       [--modes train,generate] [--train-batch 12] [--generate-batches 1,16]
                       [--train-steps N] [--generate-steps 1] [--vocab 65]
                       [--qkv-bench build/release/bench/bench_gpt]

train: training tokens/s (batch x context per update) of each preset on random token windows
(vocabulary --vocab, 65 as nanoGPT's shakespeare_char): forward with the preset's dropout (qkv
has none on the attention probabilities, so neither has PyTorch here), mean cross-entropy,
backward, gradient norm clipped to 1.0, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1).
generate: new tokens/s of greedy decoding, a 32-token random prompt -> 128 new tokens per row,
batch 1 and 16, random seeded weights. PyTorch decodes with a KV cache (the prompt in one forward,
then one token per step) and shifts a full context as qkv's decode::Generator does (gpt-nano:
context 64 < 32 + 128). PyTorch's models: bench/torch_gpt.py. In the first round of each generate
setting, qkv also writes its weights and tokens (bench_gpt --dump) and PyTorch decodes the same
prompts with those weights: the line printed counts the rows whose 128 tokens are all equal.

Rounds alternate between the two sides so both see the same machine load; each side's median is
reported with the ratio qkv / PyTorch and the goal of issue #16 (training >= 1.5x for gpt-nano
and gpt-mini, generation >= 3x at batch 1). OMP_WAIT_POLICY is passive unless set (spinning
OpenMP threads stall on a shared machine; see bench/README.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch starts OpenMP

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests/python"))
import safetensors_np  # noqa: E402
import torch_gpt  # noqa: E402

GOALS = {("train", "gpt-nano"): 1.5, ("train", "gpt-mini"): 1.5}  # generate at batch 1: 3
PROMPT_TOKENS, NEW_TOKENS = 32, 128


def shape(preset, vocab):
    return torch_gpt.GptShape(vocab=vocab, **torch_gpt.PRESETS[preset])


def torch_train(a, preset, steps):
    torch.manual_seed(a.seed)
    s = shape(preset, a.vocab)
    model = torch_gpt.Gpt(s).train()
    opt = torch_gpt.adamw(model, 1e-3, (0.9, 0.99), 0.1)
    stream = torch.randint(a.vocab, (100000,))

    def update():
        starts = torch.randint(len(stream) - s.context - 1, (a.train_batch,))
        x = torch.stack([stream[i:i + s.context] for i in starts])  # [B, context]
        y = torch.stack([stream[i + 1:i + 1 + s.context] for i in starts])
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, s.vocab), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    update()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        update()
    return steps * a.train_batch * s.context / (time.perf_counter() - start)


def torch_generate(a, preset, batch, steps):
    torch.manual_seed(a.seed)
    model = torch_gpt.Gpt(shape(preset, a.vocab)).eval()
    prompt = torch.randint(a.vocab, (batch, PROMPT_TOKENS))
    torch_gpt.greedy_with_cache(model, prompt, NEW_TOKENS)  # warm-up
    start = time.perf_counter()
    tokens = 0
    for _ in range(steps):
        tokens += torch_gpt.greedy_with_cache(model, prompt, NEW_TOKENS).numel()
    return tokens / (time.perf_counter() - start)


def same_tokens(a, preset, folder):
    """Greedy decoding of qkv's prompts with qkv's weights in PyTorch: (rows whose 128 tokens
    equal qkv's, the mean number of leading tokens that agree)."""
    weights, _ = safetensors_np.load(os.path.join(folder, "weights.safetensors"))
    tokens, _ = safetensors_np.load(os.path.join(folder, "tokens.safetensors"))
    model = torch_gpt.Gpt(shape(preset, a.vocab)).eval()
    torch_gpt.load_qkv_weights(model, {k: torch.from_numpy(v) for k, v in weights.items()})
    ours = torch_gpt.greedy_with_cache(model, torch.from_numpy(tokens["prompt"]).long(), NEW_TOKENS)
    equal = ours == torch.from_numpy(tokens["generated"]).long()  # [B, new tokens]
    agreeing = equal.long().cumprod(dim=1).sum(dim=1).float()
    return int(equal.all(dim=1).sum()), agreeing.mean().item()


def qkv_rate(a, mode, preset, batch, steps, dump=None):
    cmd = [a.qkv_bench, "--mode", mode, "--preset", preset, "--vocab", str(a.vocab), "--batch",
           str(batch), "--threads", str(a.threads), "--steps", str(steps), "--warmup", "1",
           "--seed", str(a.seed)]
    if mode == "generate":
        cmd += ["--prompt-tokens", str(PROMPT_TOKENS), "--new-tokens", str(NEW_TOKENS)]
    if dump:
        cmd += ["--dump", dump]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result.get("eos_stops", 0):
        print(f"  note: {result['eos_stops']} qkv sequences stopped at eos before "
              f"{NEW_TOKENS} tokens", flush=True)
    return result["tokens_per_s"]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--presets", default="gpt-nano,gpt-mini,llama-tiny")
    p.add_argument("--modes", default="train,generate")
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--train-batch", type=int, default=12)
    p.add_argument("--generate-batches", default="1,16")
    p.add_argument("--train-steps", type=int, default=0,
                   help="timed updates per round (0: 10 for gpt-nano, 2 for the others)")
    p.add_argument("--generate-steps", type=int, default=1, help="timed generations per round")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--qkv-bench", default=os.path.join(root, "build/release/bench/bench_gpt"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    presets = a.presets.split(",")
    for preset in presets:
        if preset not in torch_gpt.PRESETS:
            sys.exit(f"bench_gpt.py: unknown preset '{preset}' "
                     f"(expected {', '.join(torch_gpt.PRESETS)})")
    settings = []
    for mode in a.modes.split(","):
        if mode not in ("train", "generate"):
            sys.exit(f"bench_gpt.py: --modes takes train and generate, not '{mode}'")
        for preset in presets:
            if mode == "train":
                steps = a.train_steps or (10 if preset == "gpt-nano" else 2)
                settings.append((mode, preset, a.train_batch, steps))
            else:
                for batch in (int(b) for b in a.generate_batches.split(",")):
                    settings.append((mode, preset, batch, a.generate_steps))

    rows = []
    for mode, preset, batch, steps in settings:
        qkv, ref = [], []
        for r in range(a.rounds):
            if mode == "generate" and r == 0:
                with tempfile.TemporaryDirectory() as folder:
                    qkv.append(qkv_rate(a, mode, preset, batch, steps, folder))
                    rows_equal, agreeing = same_tokens(a, preset, folder)
                print(f"{mode} {preset} batch {batch}: PyTorch with qkv's weights decodes the "
                      f"same {NEW_TOKENS} tokens in {rows_equal} of {batch} rows (on average the "
                      f"first {agreeing:.1f} agree)", flush=True)
            else:
                qkv.append(qkv_rate(a, mode, preset, batch, steps))
            ref.append(torch_train(a, preset, steps) if mode == "train"
                       else torch_generate(a, preset, batch, steps))
            print(f"{mode} {preset} batch {batch} round {r + 1}: qkv {qkv[-1]:.0f} tokens/s, "
                  f"PyTorch {ref[-1]:.0f} tokens/s", flush=True)
        goal = GOALS.get((mode, preset), 3.0 if mode == "generate" and batch == 1 else None)
        rows.append((mode, preset, batch, statistics.median(qkv), statistics.median(ref), goal))

    print(f"\nGPT models, {a.threads} threads, vocabulary {a.vocab}, PyTorch {torch.__version__}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, medians of {a.rounds} rounds")
    print("| mode | preset | batch | qkv tokens/s | PyTorch tokens/s | ratio | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode, preset, batch, q, t, goal in rows:
        met = "" if goal is None else f">= {goal:g}x " + ("met" if q / t >= goal else "MISSED")
        print(f"| {mode} | {preset} | {batch} | {q:.0f} | {t:.0f} | {q / t:.2f} | {met} |")


if __name__ == "__main__":
    main()
