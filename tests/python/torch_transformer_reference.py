"""A torch.nn.Transformer translation model for qkv's `convert --from torch` test.

    torch_transformer_reference.py DIR

DIR/spec.json: vocab, d_model, heads, d_ff, layers, activation, norm_first, seed.
DIR/io.safetensors: src (i32 [B, S]), src_len (i32 [B]), tgt_in (i32 [B, T]).
Builds a module with `embedding` (nn.Embedding), `transformer` (nn.Transformer, batch_first) and
`generator` (nn.Linear with bias), randomly initialised (LayerNorms too), writes its state_dict
to DIR/weights.safetensors and, with torch.save, DIR/weights.pt (float64) and DIR/training.pt
({"model": state_dict, "epoch": 4}), and the logits (float64 computation) into io.safetensors.
Inputs: embeddings x sqrt(d) plus interleaved sinusoids (sin in even columns, cos in odd ones).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402


class Translator(nn.Module):
    def __init__(self, s):
        super().__init__()
        d = s["d_model"]
        self.embedding = nn.Embedding(s["vocab"], d)
        self.transformer = nn.Transformer(d, s["heads"], s["layers"], s["layers"], s["d_ff"],
                                          dropout=0.0, activation=s["activation"],
                                          batch_first=True, norm_first=s["norm_first"])
        self.generator = nn.Linear(d, s["vocab"])

    def positions(self, n):
        d = self.embedding.embedding_dim
        pe = torch.zeros(n, d, dtype=torch.float64)
        for p in range(n):
            for i in range(0, d, 2):
                angle = p / math.pow(10000.0, i / d)
                pe[p, i], pe[p, i + 1] = math.sin(angle), math.cos(angle)
        return pe

    def embed(self, ids):
        d = self.embedding.embedding_dim
        return self.embedding(ids) * math.sqrt(d) + self.positions(ids.shape[1])

    def forward(self, src, src_len, tgt_in):
        pad = torch.arange(src.shape[1])[None, :] >= src_len[:, None]
        t = tgt_in.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), dtype=torch.float64), 1)
        h = self.transformer(self.embed(src), self.embed(tgt_in), tgt_mask=causal,
                             src_key_padding_mask=pad, memory_key_padding_mask=pad)
        return self.generator(h)


def main():
    d = sys.argv[1]
    s = json.load(open(os.path.join(d, "spec.json")))
    torch.manual_seed(s["seed"])
    model = Translator(s).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
    model.train()  # dropout is 0; training mode keeps torch off its nested-tensor fast path
    io, _ = safetensors_np.load(os.path.join(d, "io.safetensors"))
    with torch.no_grad():
        logits = model(*(torch.tensor(io[k].astype(np.int64)) for k in ("src", "src_len", "tgt_in")))
    safetensors_np.save(os.path.join(d, "weights.safetensors"),
                        {k: v.float().numpy() for k, v in model.state_dict().items()})
    torch.save(model.state_dict(), os.path.join(d, "weights.pt"))
    torch.save({"model": model.state_dict(), "epoch": 4}, os.path.join(d, "training.pt"))
    safetensors_np.save(os.path.join(d, "io.safetensors"),
                        {**io, "logits": logits.float().numpy()})


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
