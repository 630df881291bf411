"""Reference for qkv's sampling filters, in float64 torch, written from the published definitions
of Hugging Face transformers' logits processors (not from their code).

    logits_processors_reference.py DIR

DIR holds what the C++ test wrote: logits.safetensors ("logits.<set>": f32 [V]) and cases.json, a
list of {"name", "logits": <set>, "sequence": [ids], "temperature", "top_k", "top_p", "min_p",
"repetition_penalty", "repeat_last_n"}. Each case runs, in order:
  - repetition penalty: each distinct token of the last repeat_last_n of the sequence (-1: all,
    0: none): logit < 0 ? logit * penalty : logit / penalty;
  - temperature: logits / temperature; 0 is greedy: the first argmax after the penalty;
  - top-k (0 or >= V: off): removes logits below the k-th largest;
  - top-p (1: off): a stable ascending sort, softmax, cumulative sum; removes the tokens whose
    cumulative probability is <= 1 - top_p, always keeping the last (most probable) one;
  - min-p (0: off): removes the tokens whose probability is < min_p times the largest, keeping
    the most probable one.
Removed logits become -inf. Writes reference.safetensors into DIR: "probs.<name>" (f32 [V], the
softmax of the processed logits) and "removed.<name>" (u8 [V], 1 where the processed logit is
-inf), or for a greedy case "greedy.<name>" (i32 [1]).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402

NEG_INF = float("-inf")


def repetition_penalty(scores, sequence, penalty, last_n):
    if last_n == 0 or not sequence:
        return scores
    window = sequence if last_n == -1 else sequence[max(0, len(sequence) - last_n):]
    ids = torch.tensor(sorted(set(window)), dtype=torch.long)
    picked = scores[ids]
    scores[ids] = torch.where(picked < 0, picked * penalty, picked / penalty)
    return scores


def top_k(scores, k):
    if k == 0 or k >= scores.numel():
        return scores
    kth = torch.topk(scores, k).values[-1]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p(scores, p):
    if p == 1.0:
        return scores
    ascending, order = torch.sort(scores, descending=False, stable=True)
    cumulative = torch.softmax(ascending, dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= 1 - p
    remove_sorted[-1] = False  # min_tokens_to_keep = 1
    remove = torch.zeros_like(remove_sorted)
    remove[order] = remove_sorted
    return scores.masked_fill(remove, NEG_INF)


def min_p(scores, m):
    if m == 0.0:
        return scores
    probs = torch.softmax(scores, dim=-1)
    remove = probs < m * probs.max()
    remove[torch.argmax(probs)] = False  # min_tokens_to_keep = 1
    return scores.masked_fill(remove, NEG_INF)


def main(directory):
    logits, _ = safetensors_np.load(os.path.join(directory, "logits.safetensors"))
    with open(os.path.join(directory, "cases.json")) as f:
        cases = json.load(f)
    out = {}
    for c in cases:
        scores = torch.tensor(logits["logits." + c["logits"]], dtype=torch.float64)
        scores = repetition_penalty(scores, c["sequence"], c["repetition_penalty"],
                                    c["repeat_last_n"])
        if c["temperature"] == 0:
            out["greedy." + c["name"]] = np.array([int(torch.argmax(scores))], dtype=np.int32)
            continue
        scores = scores / c["temperature"]
        scores = top_k(scores, c["top_k"])
        scores = top_p(scores, c["top_p"])
        scores = min_p(scores, c["min_p"])
        out["probs." + c["name"]] = torch.softmax(scores, dim=-1).numpy().astype(np.float32)
        out["removed." + c["name"]] = (scores == NEG_INF).numpy().astype(np.uint8)
    safetensors_np.save(os.path.join(directory, "reference.safetensors"), out)


if __name__ == "__main__":
    main(sys.argv[1])
