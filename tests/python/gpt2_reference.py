"""A float64 GPT-2 (Hugging Face's GPT2LMHeadModel), written from its published definition
(Radford et al. 2019 and OpenAI's gpt-2 model.py, which Hugging Face's GPT2 code follows), on the
weights of a Hugging Face folder, for qkv's conversion tests (tests/python/hf_gpt_fixtures.py
loads the folder; Debian 12 has no `transformers`).

The model: token embeddings wte plus learned positions wpe; pre-norm blocks
    x = x + c_proj(attention(ln_1(x)))     causal, heads of n_embd / n_head, scores / sqrt(Dh)
    x = x + mlp.c_proj(act(mlp.c_fc(ln_2(x))))
then ln_f and logits h wte^T (lm_head when untied). Every projection is a Conv1D: y = x W + b with
W stored [in, out]; attn.c_attn packs the query, key and value projections as its output columns
in that order.
"""
import math

import torch
import torch.nn.functional as F


def gelu_tanh(x):  # gelu_new: OpenAI's tanh approximation
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


ACTIVATIONS = {"gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "gelu_fast": gelu_tanh,
               "gelu": gelu_erf}


class GPT2:
    def __init__(self, config, weights):
        """config: config.json as a dict; weights: {name: float64 tensor} as the folder names
        them (with or without the "transformer." prefix)."""
        self.c = config
        self.w = weights
        self.p = "transformer." if "transformer.wte.weight" in weights else ""
        self.d, self.heads = config["n_embd"], config["n_head"]
        self.eps = config.get("layer_norm_epsilon", 1e-5)
        self.act = ACTIVATIONS[config.get("activation_function", "gelu_new")]
        tied = config.get("tie_word_embeddings", True)
        self.out = weights[self.p + "wte.weight"] if tied else weights["lm_head.weight"]

    def conv1d(self, x, name):
        return x @ self.w[name + ".weight"] + self.w[name + ".bias"]

    def norm(self, x, name):
        return F.layer_norm(x, (self.d,), self.w[name + ".weight"], self.w[name + ".bias"],
                            self.eps)

    def attention(self, x, name):
        b, n, h = x.shape[0], x.shape[1], self.heads
        dh = self.d // h
        q, k, v = self.conv1d(x, name + ".c_attn").split(self.d, dim=2)
        q, k, v = (t.reshape(b, n, h, dh).transpose(1, 2) for t in (q, k, v))  # [B, H, L, Dh]
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
        future = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
        p = torch.softmax(scores.masked_fill(future, -math.inf), -1)
        return self.conv1d((p @ v).transpose(1, 2).reshape(b, n, self.d), name + ".c_proj")

    def logits(self, ids):
        """ids: int64 [B, L] at positions 0..L-1 -> logits [B, L, V]."""
        x = F.embedding(ids, self.w[self.p + "wte.weight"])
        x = x + self.w[self.p + "wpe.weight"][:ids.shape[1]]
        for i in range(self.c["n_layer"]):
            h = f"{self.p}h.{i}"
            x = x + self.attention(self.norm(x, h + ".ln_1"), h + ".attn")
            m = self.act(self.conv1d(self.norm(x, h + ".ln_2"), h + ".mlp.c_fc"))
            x = x + self.conv1d(m, h + ".mlp.c_proj")
        return self.norm(x, self.p + "ln_f") @ self.out.T
