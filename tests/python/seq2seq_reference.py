"""PyTorch reference models for qkv's parity tests, built from torch.nn Transformer layers.

    seq2seq_reference.py block   DIR   # 2 encoder layers + linear head, 20 Adam steps
    seq2seq_reference.py seq2seq DIR   # qkv's Seq2Seq: logits, then 10 training steps

DIR holds what the C++ test wrote: config.json, weights.safetensors (qkv's parameter names) and
batch.safetensors. The script writes reference.safetensors ("logits", "losses", and for seq2seq "scores": the
summed log-probability of each row's target; "grad.<name>": the gradient of each of qkv's tensors in the first
training step) into DIR.
qkv's q_proj/k_proj/v_proj map onto torch's packed in_proj_weight; post-norm stacks have no
final LayerNorm (torch.nn.Transformer would add one), as in Vaswani et al.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402
from qkv_gradients import qkv_gradients  # noqa: E402


def sinusoidal(n, d):
    pe = torch.zeros(n, d, dtype=torch.float64)
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, i / d)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)[:, : d // 2]
    return pe.float()


def layer_kwargs(c):
    return dict(d_model=c["d_model"], nhead=c["heads"], dim_feedforward=c["d_ff"], dropout=0.0,
                activation=c["activation"], batch_first=True, norm_first=c["pre_norm"])


def load_attention(attn, w, p):
    attn.in_proj_weight.copy_(torch.cat([w[p + n + ".weight"] for n in ("q_proj", "k_proj", "v_proj")]))
    attn.in_proj_bias.copy_(torch.cat([w[p + n + ".bias"] for n in ("q_proj", "k_proj", "v_proj")]))
    attn.out_proj.weight.copy_(w[p + "out_proj.weight"])
    attn.out_proj.bias.copy_(w[p + "out_proj.bias"])


def load_norm(ln, w, p):
    ln.weight.copy_(w[p + ".weight"])
    ln.bias.copy_(w[p + ".bias"])


def load_ffn(layer, w, p):
    layer.linear1.weight.copy_(w[p + "fc1.weight"])
    layer.linear1.bias.copy_(w[p + "fc1.bias"])
    layer.linear2.weight.copy_(w[p + "fc2.weight"])
    layer.linear2.bias.copy_(w[p + "fc2.bias"])


def load_encoder_layer(layer, w, p):
    load_attention(layer.self_attn, w, p + "self_attn.")
    load_norm(layer.norm1, w, p + "self_attn_layer_norm")
    load_ffn(layer, w, p)
    load_norm(layer.norm2, w, p + "final_layer_norm")


def load_decoder_layer(layer, w, p):
    load_attention(layer.self_attn, w, p + "self_attn.")
    load_norm(layer.norm1, w, p + "self_attn_layer_norm")
    load_attention(layer.multihead_attn, w, p + "encoder_attn.")
    load_norm(layer.norm2, w, p + "encoder_attn_layer_norm")
    load_ffn(layer, w, p)
    load_norm(layer.norm3, w, p + "final_layer_norm")


class Seq2Seq(nn.Module):
    def __init__(self, c, w):
        super().__init__()
        self.c = c
        d = c["d_model"]
        self.shared = nn.Parameter(torch.tensor(w["model.shared.weight"]))
        self.bias = nn.Parameter(torch.tensor(w["final_logits_bias"]))
        self.enc = nn.ModuleList(nn.TransformerEncoderLayer(**layer_kwargs(c)) for _ in range(c["encoder_layers"]))
        self.dec = nn.ModuleList(nn.TransformerDecoderLayer(**layer_kwargs(c)) for _ in range(c["decoder_layers"]))
        self.enc_norm = nn.LayerNorm(d) if c["pre_norm"] else None
        self.dec_norm = nn.LayerNorm(d) if c["pre_norm"] else None
        self.lm_head = None if c["tie_embeddings"] else nn.Linear(d, c["vocab_size"], bias=False)
        self.register_buffer("pe", sinusoidal(c["max_positions"], d))
        t = {k: torch.tensor(v) for k, v in w.items()}
        with torch.no_grad():
            for i, layer in enumerate(self.enc):
                load_encoder_layer(layer, t, f"model.encoder.layers.{i}.")
            for i, layer in enumerate(self.dec):
                load_decoder_layer(layer, t, f"model.decoder.layers.{i}.")
            if c["pre_norm"]:
                load_norm(self.enc_norm, t, "model.encoder.layer_norm")
                load_norm(self.dec_norm, t, "model.decoder.layer_norm")
            if self.lm_head is not None:
                self.lm_head.weight.copy_(t["lm_head.weight"])

    def embed(self, ids):
        return F.embedding(ids, self.shared) * math.sqrt(self.c["d_model"]) + self.pe[: ids.shape[1]]

    def encode(self, src, src_len):
        """src [B, S], src_len [B] -> memory [B, S, d] and the source padding mask [B, S]."""
        src_pad = torch.arange(src.shape[1])[None, :] >= src_len[:, None]
        x = self.embed(src)
        for layer in self.enc:
            x = layer(x, src_key_padding_mask=src_pad)
        if self.enc_norm is not None:
            x = self.enc_norm(x)
        return x, src_pad

    def decode(self, tgt_in, memory, src_pad):
        """tgt_in [B, T] (starting with <bos>) -> hidden [B, T, d]."""
        t = tgt_in.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        y = self.embed(tgt_in)
        for layer in self.dec:
            y = layer(y, memory, tgt_mask=causal, memory_key_padding_mask=src_pad)
        if self.dec_norm is not None:
            y = self.dec_norm(y)
        return y

    def project(self, hidden):
        w = self.shared if self.lm_head is None else self.lm_head.weight
        return F.linear(hidden, w, self.bias)

    def forward(self, src, src_len, tgt_in):
        memory, src_pad = self.encode(src, src_len)
        return self.project(self.decode(tgt_in, memory, src_pad))


class Block(nn.Module):
    """Two post-norm encoder layers and a linear head: issue #2's training parity check."""

    def __init__(self, c, w):
        super().__init__()
        t = {k: torch.tensor(v) for k, v in w.items()}
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(**layer_kwargs(c)) for _ in range(2))
        self.head = nn.Linear(c["d_model"], c["vocab_size"])
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                load_encoder_layer(layer, t, f"layers.{i}.")
            self.head.weight.copy_(t["head.weight"])
            self.head.bias.copy_(t["head.bias"])

    def forward(self, x, lengths):
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        return self.head(x)


def train(model, c, loss_fn, steps, first_gradients):
    """Adam steps; returns the losses before each, and first_gradients() after the first
    backward pass (the gradients of the weights as loaded)."""
    opt = torch.optim.Adam(model.parameters(), lr=c["lr"], betas=(0.9, 0.98), eps=1e-9)
    losses, grads = [], {}
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        if not losses:
            grads = first_gradients()
        opt.step()
        losses.append(loss.item())
    return losses, grads


def main():
    mode, d = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    c = json.load(open(os.path.join(d, "config.json")))
    w, _ = safetensors_np.load(os.path.join(d, "weights.safetensors"))
    b, _ = safetensors_np.load(os.path.join(d, "batch.safetensors"))
    b = {k: torch.tensor(v.astype(np.int64) if v.dtype.kind == "i" else v) for k, v in b.items()}
    ce = lambda logits, tgt: F.cross_entropy(  # noqa: E731
        logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=0,
        label_smoothing=c["label_smoothing"], reduction="sum") / (tgt != 0).sum()
    extra = {}
    build = (lambda weights: Block(c, weights)) if mode == "block" else (lambda weights: Seq2Seq(c, weights))
    model = build(w)
    first_gradients = lambda: qkv_gradients(build, model, w)  # noqa: E731
    if mode == "block":
        logits = model(b["x"], b["lengths"])
        losses, grads = train(model, c, lambda: ce(model(b["x"], b["lengths"]), b["targets"]), c["steps"],
                              first_gradients)
    else:
        logits = model(b["src"], b["src_lengths"], b["tgt_in"])
        lp = torch.log_softmax(logits.double(), -1).gather(-1, b["tgt_out"][..., None])[..., 0]
        extra["scores"] = (lp * (b["tgt_out"] != 0)).sum(-1).detach().numpy().astype(np.float32)
        losses, grads = train(model, c, lambda: ce(model(b["src"], b["src_lengths"], b["tgt_in"]), b["tgt_out"]),
                              c["steps"], first_gradients)
    safetensors_np.save(os.path.join(d, "reference.safetensors"),
                        {"logits": logits.detach().numpy().astype(np.float32),
                         "losses": np.array(losses, dtype=np.float32), **extra,
                         **{"grad." + name: g for name, g in grads.items()}})


if __name__ == "__main__":
    main()
