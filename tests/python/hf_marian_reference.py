"""A float64 PyTorch MarianMTModel, written from Hugging Face's definition, for qkv's
conversion tests (Debian 12 has no `transformers`; tests/python/hf_fixtures.py checks the same
folders against `transformers` itself where it is installed).

    hf_marian_reference.py make DIR SPEC.json   random weights -> DIR/model.safetensors, config.json
    hf_marian_reference.py run DIR IO.safetensors

make: SPEC holds the config.json fields (vocab_size, d_model, ...) and "seed"; writes config.json
and a model.safetensors as `save_pretrained` does (shared embeddings under model.shared.weight, no
lm_head.weight when tied, final_logits_bias [1, V], no position tables) plus
generation_config.json.
run: IO holds src (i32 [B, S]), src_len (i32 [B]), tgt_in (i32 [B, T]) and max_new (i32 [B]);
writes back "logits" ([B, T, V] for tgt_in) and "greedy" (i64 [B, max(max_new)], padded with -1):
the greedy search of `generate` (start with decoder_start_token_id, <pad> and the other
bad_words_ids never chosen, <eos> forced at the last allowed step, a sentence stops at <eos>).

The model: embeddings x sqrt(d) when scale_embedding, plus the sinusoid table with sin in the
first half of the columns and cos in the second, post-norm encoder and decoder layers (attention,
residual, LayerNorm; fc1, activation, fc2, residual, LayerNorm), logits = h W_shared^T (or
lm_head) + final_logits_bias.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import random_weights  # noqa: E402
import safetensors_np  # noqa: E402

ACT = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu, "silu": F.silu,
       "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


def sinusoids(n, d):
    enc = np.array([[p / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for p in range(n)])
    out = np.empty((n, d))
    half = d // 2 if d % 2 == 0 else d // 2 + 1
    out[:, :half] = np.sin(enc[:, 0::2])
    out[:, half:] = np.cos(enc[:, 1::2])
    return torch.tensor(out)


def make(d, spec):
    c = dict(spec)
    seed = c.pop("seed")
    rng = np.random.default_rng(seed)
    v, dm, ff = c["vocab_size"], c["d_model"], c["encoder_ffn_dim"]
    w = {"model.shared.weight": rng.normal(0, 0.5, (v, dm))}

    def lin(name, o, i):
        random_weights.linear(w, rng, name, o, i)

    def norm(name):
        random_weights.layer_norm(w, rng, name, dm)

    def attn(name):
        for p in ("k_proj", "v_proj", "q_proj", "out_proj"):
            lin(f"{name}.{p}", dm, dm)

    for i in range(c["encoder_layers"]):
        p = f"model.encoder.layers.{i}"
        attn(p + ".self_attn"), norm(p + ".self_attn_layer_norm")
        lin(p + ".fc1", ff, dm), lin(p + ".fc2", dm, ff), norm(p + ".final_layer_norm")
    for i in range(c["decoder_layers"]):
        p = f"model.decoder.layers.{i}"
        attn(p + ".self_attn"), norm(p + ".self_attn_layer_norm")
        attn(p + ".encoder_attn"), norm(p + ".encoder_attn_layer_norm")
        lin(p + ".fc1", ff, dm), lin(p + ".fc2", dm, ff), norm(p + ".final_layer_norm")
    if not c.get("tie_word_embeddings", True):
        w["lm_head.weight"] = rng.normal(0, 0.5, (v, dm))
    w["final_logits_bias"] = rng.normal(0, 0.5, (1, v))
    w = {k: a.astype(np.float32) for k, a in w.items()}
    safetensors_np.save(os.path.join(d, "model.safetensors"), w, {"format": "pt"})
    config = {"architectures": ["MarianMTModel"], "model_type": "marian", **c}
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
    gen = {"bad_words_ids": [[c["pad_token_id"]]], "decoder_start_token_id": c["decoder_start_token_id"],
           "eos_token_id": c["eos_token_id"], "forced_eos_token_id": c["eos_token_id"],
           "pad_token_id": c["pad_token_id"], "max_length": 64}
    json.dump(gen, open(os.path.join(d, "generation_config.json"), "w"), indent=2)


class Marian:
    def __init__(self, d):
        self.c = json.load(open(os.path.join(d, "config.json")))
        arrays, _ = safetensors_np.load(os.path.join(d, "model.safetensors"))
        self.w = {k: torch.tensor(a, dtype=torch.float64) for k, a in arrays.items()}
        c = self.c
        self.d = c["d_model"]
        self.heads = c["encoder_attention_heads"]
        self.act = ACT[c.get("activation_function", "gelu")]
        self.scale = math.sqrt(self.d) if c.get("scale_embedding", False) else 1.0
        self.pos = sinusoids(c.get("max_position_embeddings", 1024), self.d)
        self.out = self.w["model.shared.weight"] if c.get("tie_word_embeddings", True) \
            else self.w["lm_head.weight"]
        gen_path = os.path.join(d, "generation_config.json")
        gen = json.load(open(gen_path)) if os.path.exists(gen_path) else {}
        self.bad = [b[0] for b in gen.get("bad_words_ids", [[c.get("pad_token_id", 58100)]])]

    def linear(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def norm(self, x, name):
        return F.layer_norm(x, (self.d,), self.w[name + ".weight"], self.w[name + ".bias"], 1e-5)

    def attention(self, x, mem, name, mask):
        b, t, s, h = x.shape[0], x.shape[1], mem.shape[1], self.heads
        hd = self.d // h
        q = (self.linear(x, name + ".q_proj") * hd ** -0.5).view(b, t, h, hd).transpose(1, 2)
        k = self.linear(mem, name + ".k_proj").view(b, s, h, hd).transpose(1, 2)
        v = self.linear(mem, name + ".v_proj").view(b, s, h, hd).transpose(1, 2)
        p = torch.softmax(q @ k.transpose(-1, -2) + mask, -1)
        return self.linear((p @ v).transpose(1, 2).reshape(b, t, self.d), name + ".out_proj")

    def embed(self, ids):
        return F.embedding(ids, self.w["model.shared.weight"]) * self.scale + self.pos[:ids.shape[1]]

    def ffn(self, x, p):
        return self.linear(self.act(self.linear(x, p + ".fc1")), p + ".fc2")

    def encode(self, src, src_len):
        key_pad = torch.arange(src.shape[1])[None, :] >= src_len[:, None]
        mask = torch.zeros(key_pad.shape, dtype=torch.float64).masked_fill(key_pad, -1e300)[:, None, None]
        x = self.embed(src)
        for i in range(self.c["encoder_layers"]):
            p = f"model.encoder.layers.{i}"
            x = self.norm(x + self.attention(x, x, p + ".self_attn", mask), p + ".self_attn_layer_norm")
            x = self.norm(x + self.ffn(x, p), p + ".final_layer_norm")
        return x, mask

    def decode(self, tgt, mem, mem_mask):
        t = tgt.shape[1]
        causal = torch.triu(torch.full((t, t), -1e300, dtype=torch.float64), 1)
        x = self.embed(tgt)
        for i in range(self.c["decoder_layers"]):
            p = f"model.decoder.layers.{i}"
            x = self.norm(x + self.attention(x, x, p + ".self_attn", causal), p + ".self_attn_layer_norm")
            x = self.norm(x + self.attention(x, mem, p + ".encoder_attn", mem_mask),
                          p + ".encoder_attn_layer_norm")
            x = self.norm(x + self.ffn(x, p), p + ".final_layer_norm")
        return x @ self.out.T + self.w["final_logits_bias"].reshape(-1)

    def greedy(self, src, src_len, max_new):
        c = self.c
        start, eos = c.get("decoder_start_token_id", 58100), c.get("eos_token_id", 0)
        out = np.full((src.shape[0], int(max_new.max())), -1, dtype=np.int64)
        for b in range(src.shape[0]):
            mem, mask = self.encode(src[b:b + 1, :src_len[b]], src_len[b:b + 1])
            seq = [start]
            for step in range(int(max_new[b])):
                logits = self.decode(torch.tensor([seq]), mem, mask)[0, -1].clone()
                logits[self.bad] = -math.inf
                if step == max_new[b] - 1:
                    logits[:] = -math.inf
                    logits[eos] = 0
                tok = int(torch.argmax(logits))
                out[b, step] = tok
                seq.append(tok)
                if tok == eos:
                    break
        return out


def run(d, io_path):
    io, _ = safetensors_np.load(io_path)
    m = Marian(d)
    src, src_len, tgt_in = (torch.tensor(io[k].astype(np.int64)) for k in ("src", "src_len", "tgt_in"))
    with torch.no_grad():
        mem, mask = m.encode(src, src_len)
        logits = m.decode(tgt_in, mem, mask)
        greedy = m.greedy(src, src_len, io["max_new"])
    safetensors_np.save(io_path, {**io, "logits": logits.numpy().astype(np.float32), "greedy": greedy})


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "make":
        make(sys.argv[2], json.load(open(sys.argv[3])))
    else:
        run(sys.argv[2], sys.argv[3])
