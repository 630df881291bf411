#!/usr/bin/python3
"""nanoGPT's character-level training recipe in PyTorch, for comparing a model trained by
`qkv train-lm` with what the same shape and time give in PyTorch.

    bench/nanogpt_recipe.py --minutes 15 [--threads 2] [--n-layer 4 --n-head 4 --n-embd 128
                            --block-size 64 --batch-size 12 --dropout 0.0] [--bias]

The recipe (nanoGPT's train.py with config/train_shakespeare_char.py and its CPU "baby GPT"
settings, the defaults here): AdamW (lr 1e-3, betas 0.9/0.99, eps 1e-8, weight decay 0.1 on the
parameters of two or more dimensions), linear warm-up over 100 iterations then cosine decay to
lr/10 at the last iteration, gradient norm clipped to 1.0, batches of --batch-size windows of
--block-size characters at uniformly random offsets of the training text (targets: the next
characters). The model: bench/torch_gpt.py with nanoGPT's options (learned positions, LayerNorm,
GELU MLP, tied output, dropout also on the attention probabilities; no biases unless --bias, as
train.py's default). Training runs for --minutes of wall time; since the last iteration is not
known in advance, the cosine decays over the iterations expected in that time, re-estimated after
every iteration from the speed so far (as qkv's max-time does).

Data: column 3 (English) of the TSV corpora, one document per line, the lines joined with "\\n";
the vocabulary is the set of characters of the training text (sorted). After training it prints
the validation loss (nats per predicted character) and bits per character on --dev: the text cut
into consecutive windows of block-size inputs whose targets overlap by nothing, so every character
after the first is predicted exactly once; bits/char = summed nats / ln 2 / characters of the dev
text. Then --samples samples of --sample-tokens characters (temperature 0.8, top-k 200, as
nanoGPT's sample.py) from --prompt, each step running the model on the last block-size characters.
"""
import argparse
import lzma
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch starts OpenMP

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gpt  # noqa: E402


def read_column(path, column):
    """The 1-based `column` of each line of a TSV file (plain or .xz), joined with "\\n"."""
    opener = lzma.open if path.endswith(".xz") else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < column:
                sys.exit(f"{path}:{number}: {len(fields)} columns, no column {column}")
            docs.append(fields[column - 1])
    return "\n".join(docs)


def encode(text, stoi, what):
    missing = sorted(set(text) - stoi.keys())
    if missing:
        sys.exit(f"nanogpt_recipe.py: {what} has characters the training text lacks: {missing[:10]}")
    return torch.tensor([stoi[c] for c in text], dtype=torch.long)


def learning_rate(a, it, decay_iters):
    """nanoGPT's get_lr: linear warm-up, then cosine from lr to min_lr at decay_iters."""
    if it < a.warmup_iters:
        return a.lr * (it + 1) / (a.warmup_iters + 1)
    if it > decay_iters:
        return a.min_lr
    ratio = (it - a.warmup_iters) / max(decay_iters - a.warmup_iters, 1)
    return a.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (a.lr - a.min_lr)


def train(a, model, data):
    opt = torch_gpt.adamw(model, a.lr, (a.beta1, a.beta2), a.weight_decay)
    model.train()
    block, budget = a.block_size, a.minutes * 60
    start = time.perf_counter()
    it, losses = 0, []
    while time.perf_counter() - start < budget:
        elapsed = time.perf_counter() - start
        last = it + int((budget - elapsed) / (elapsed / it)) if it else 0  # warm-up ignores it
        lr = learning_rate(a, it, last)
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(len(data) - block, (a.batch_size,))
        x = torch.stack([data[i:i + block] for i in starts])  # [B, block]
        y = torch.stack([data[i + 1:i + 1 + block] for i in starts])
        loss = F.cross_entropy(model(x).view(-1, model.s.vocab), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        it += 1
        if it % a.log_interval == 0:
            print(f"iter {it}: loss {sum(losses) / len(losses):.4f}, lr {lr:.2e}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            losses = []
    seconds = time.perf_counter() - start
    print(f"trained {it} iterations in {seconds:.0f} s "
          f"({it * a.batch_size * block / seconds:.0f} tokens/s)")


@torch.no_grad()
def evaluate(a, model, ids):
    """Summed nats over every character after the first, in windows of block-size inputs."""
    model.eval()
    block, total = a.block_size, 0.0
    starts = list(range(0, len(ids) - 1, block))
    full = [s for s in starts if s + block + 1 <= len(ids)]
    for i in range(0, len(full), a.batch_size):
        batch = full[i:i + a.batch_size]
        x = torch.stack([ids[s:s + block] for s in batch])
        y = torch.stack([ids[s + 1:s + block + 1] for s in batch])
        total += F.cross_entropy(model(x).view(-1, model.s.vocab), y.view(-1), reduction="sum").item()
    for s in starts[len(full):]:  # the last, shorter window
        x, y = ids[None, s:len(ids) - 1], ids[None, s + 1:]
        total += F.cross_entropy(model(x).view(-1, model.s.vocab), y.view(-1), reduction="sum").item()
    return total


@torch.no_grad()
def sample(a, model, prompt):
    """nanoGPT's generate: the last block-size tokens, logits / temperature, top-k, one draw."""
    model.eval()
    ids = prompt[None]
    for _ in range(a.sample_tokens):
        logits = model(ids[:, -a.block_size:])[:, -1] / a.temperature
        kth = torch.topk(logits, min(a.top_k, logits.shape[-1])).values[:, [-1]]
        logits[logits < kth] = float("-inf")
        ids = torch.cat([ids, torch.multinomial(logits.softmax(-1), 1)], dim=1)
    return ids[0]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="training wall time")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--bias", action="store_true", help="biases in Linear and LayerNorm")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=None, help="default: lr / 10")
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--train", default=os.path.join(root, "data/bible.es-en.train.tsv.xz"))
    p.add_argument("--dev", default=os.path.join(root, "data/bible.es-en.dev.tsv.xz"))
    p.add_argument("--column", type=int, default=3, help="1-based TSV column of the text")
    p.add_argument("--prompt", default="In the beginning")
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--sample-tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=200)
    p.add_argument("--log-interval", type=int, default=50)
    p.add_argument("--seed", type=int, default=1337)
    a = p.parse_args()
    if a.min_lr is None:
        a.min_lr = a.lr / 10
    if a.minutes <= 0 or a.n_embd % a.n_head:
        sys.exit("nanogpt_recipe.py: --minutes must be positive and --n-embd a multiple of --n-head")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    text = read_column(a.train, a.column)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = encode(text, stoi, a.train)
    dev_text = read_column(a.dev, a.column)
    dev = encode(dev_text, stoi, a.dev)
    shape = torch_gpt.GptShape(vocab=len(chars), context=a.block_size, d_model=a.n_embd,
                               layers=a.n_layer, heads=a.n_head, bias=a.bias, dropout=a.dropout,
                               attn_dropout=a.dropout)
    model = torch_gpt.Gpt(shape)
    print(f"vocabulary {len(chars)}, train {len(data)} characters, dev {len(dev)}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, {a.threads} threads, "
          f"PyTorch {torch.__version__}", flush=True)

    train(a, model, data)
    nats = evaluate(a, model, dev)
    print(f"validation loss {nats / (len(dev) - 1):.4f} nats/char, "
          f"{nats / math.log(2) / len(dev_text):.4f} bits/char ({len(dev_text)} characters)")
    prompt = encode(a.prompt, stoi, "--prompt")
    for n in range(a.samples):
        print(f"--- sample {n + 1}\n" + "".join(chars[i] for i in sample(a, model, prompt).tolist()))


if __name__ == "__main__":
    main()
