"""A float64 Llama (Hugging Face's LlamaForCausalLM), written from its published definition
(Touvron et al. 2023; RoFormer's rotary embeddings in the rotate-half layout that Hugging Face's
Llama code and weights use), on the weights of a Hugging Face folder, for qkv's conversion tests
(tests/python/hf_gpt_fixtures.py loads the folder; Debian 12 has no `transformers`).

The model: token embeddings; pre-norm blocks
    x = x + o_proj(attention(input_layernorm(x)))
    x = x + down_proj(silu(gate_proj(h)) * up_proj(h)),   h = post_attention_layernorm(x)
then model.norm and logits h embed_tokens^T (tied) or lm_head. The norms are RMSNorm:
x / sqrt(mean(x^2) + eps) * weight. Attention is causal with scores / sqrt(Dh); query and key
vectors at position p are rotated: with inv_freq_i = theta^(-2i / Dh) (i < Dh/2), angle
a = p inv_freq repeated for both halves, x' = x cos(a) + rotate_half(x) sin(a), where
rotate_half([x1, x2]) = [-x2, x1]. RoPE scaling (rope_scaling, or rope_parameters): "linear"
divides inv_freq by factor (position interpolation); "llama3" (Meta's Llama 3.1 reference code,
apply_scaling) keeps the frequencies of wavelength 2 pi / inv_freq below
original / high_freq_factor, divides those above original / low_freq_factor by factor, and
between blends the two with s = (original / wavelength - low_freq_factor) /
(high_freq_factor - low_freq_factor), where original is original_max_position_embeddings.
Grouped-query attention: query head h reads key/value head
h // (heads / kv_heads). Projections have biases when attention_bias / mlp_bias.
"""
import math

import torch
import torch.nn.functional as F


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Llama:
    def __init__(self, config, weights):
        """config: config.json as a dict; weights: {name: float64 tensor}."""
        self.c = config
        self.w = weights
        self.d = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads") or self.heads
        self.dh = config.get("head_dim") or self.d // self.heads
        self.eps = config.get("rms_norm_eps", 1e-6)
        self.theta = config.get("rope_theta", 10000.0)
        self.scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
        self.theta = self.scaling.get("rope_theta", self.theta)
        tied = config.get("tie_word_embeddings", False)
        self.out = weights["model.embed_tokens.weight" if tied else "lm_head.weight"]

    def linear(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def norm(self, x, name):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.w[name + ".weight"]

    def inverse_frequencies(self):
        inv_freq = self.theta ** (-torch.arange(0, self.dh, 2, dtype=torch.float64) / self.dh)
        kind = self.scaling.get("rope_type", self.scaling.get("type", "default"))
        if kind == "default":
            return inv_freq
        factor = self.scaling["factor"]
        if kind == "linear":
            return inv_freq / factor
        assert kind == "llama3", kind
        low, high = self.scaling["low_freq_factor"], self.scaling["high_freq_factor"]
        original = self.scaling["original_max_position_embeddings"]
        out = []
        for f in inv_freq.tolist():
            wavelength = 2 * math.pi / f
            if wavelength < original / high:
                out.append(f)
            elif wavelength > original / low:
                out.append(f / factor)
            else:
                s = (original / wavelength - low) / (high - low)
                out.append((1 - s) * f / factor + s * f)
        return torch.tensor(out, dtype=torch.float64)

    def rotate(self, x):
        """x [B, H, L, Dh] at positions 0..L-1."""
        inv_freq = self.inverse_frequencies()
        angles = torch.arange(x.shape[2], dtype=torch.float64)[:, None] * inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)  # [L, Dh]
        return x * torch.cos(angles) + rotate_half(x) * torch.sin(angles)

    def attention(self, x, name):
        b, n = x.shape[0], x.shape[1]

        def heads(proj, h):  # [B, h, L, Dh]
            return self.linear(x, f"{name}.{proj}").reshape(b, n, h, self.dh).transpose(1, 2)

        q = self.rotate(heads("q_proj", self.heads))
        k = self.rotate(heads("k_proj", self.kv_heads))
        v = heads("v_proj", self.kv_heads)
        group = self.heads // self.kv_heads
        k, v = (t.repeat_interleave(group, dim=1) for t in (k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dh)
        future = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
        p = torch.softmax(scores.masked_fill(future, -math.inf), -1)
        o = (p @ v).transpose(1, 2).reshape(b, n, self.heads * self.dh)
        return self.linear(o, name + ".o_proj")

    def mlp(self, x, name):
        gate = F.silu(self.linear(x, name + ".gate_proj"))
        return self.linear(gate * self.linear(x, name + ".up_proj"), name + ".down_proj")

    def logits(self, ids):
        """ids: int64 [B, L] at positions 0..L-1 -> logits [B, L, V]."""
        x = F.embedding(ids, self.w["model.embed_tokens.weight"])
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}"
            x = x + self.attention(self.norm(x, p + ".input_layernorm"), p + ".self_attn")
            x = x + self.mlp(self.norm(x, p + ".post_attention_layernorm"), p + ".mlp")
        return self.norm(x, "model.norm") @ self.out.T
