"""GPT models in PyTorch for bench/bench_gpt.py and bench/nanogpt_recipe.py, written from nanoGPT's
published model definition (pre-norm blocks; causal self-attention with one fused q/k/v
projection, scaled_dot_product_attention when torch has it, else the explicit
softmax(q k^T / sqrt(Dh)) v with a causal mask, as nanoGPT falls back to; a GELU MLP; LayerNorm;
learned positions; the output tied to the token embeddings; dropout on the embeddings, the
attention probabilities, and each block's two outputs) and, for the Llama options, from Touvron
et al. 2023 (RMSNorm, rotary embeddings in the rotate-half layout with frequencies
theta^(-2i/Dh), SwiGLU MLP, grouped-query attention: query head h reads key/value head
h // (heads / kv_heads)).

forward(ids, start, cache) runs positions start..start+L-1; with a KvCache it writes the new keys
and values at `start` and attends to everything before them (prefill, then one token per step).
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GptShape:
    vocab: int
    context: int = 64
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 0  # 0: heads
    d_ff: int = 0  # 0: 4 d_model, or Llama's 8/3 d_model up to a multiple of 64 for swiglu
    llama: bool = False  # RMSNorm, RoPE, SwiGLU, untied output (else LayerNorm, learned, GELU)
    bias: bool = True  # of the Linear layers and LayerNorms (qkv's presets: biases)
    dropout: float = 0.0  # embeddings and block outputs
    attn_dropout: float = 0.0  # attention probabilities (nanoGPT: the same as dropout)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    @property
    def head_dim(self):
        return self.d_model // self.heads

    @property
    def kv_count(self):
        return self.kv_heads or self.heads

    @property
    def ff_width(self):
        if self.d_ff:
            return self.d_ff
        if not self.llama:
            return 4 * self.d_model
        return ((8 * self.d_model + 2) // 3 + 63) // 64 * 64


# qkv's presets (src/nn/gpt_config.cpp).
PRESETS = {
    "gpt-nano": dict(context=64, layers=4, heads=4, d_model=128),
    "gpt-mini": dict(context=256, layers=6, heads=6, d_model=384, dropout=0.2),
    "llama-tiny": dict(context=256, layers=4, heads=8, kv_heads=2, d_model=256, llama=True,
                       bias=False),
}


class LayerNorm(nn.Module):
    def __init__(self, d, bias, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def make_norm(s):
    return RmsNorm(s.d_model, s.norm_eps) if s.llama else LayerNorm(s.d_model, s.bias, s.norm_eps)


class RmsNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class KvCache:
    """Keys and values [B, kv_heads, capacity, Dh] per layer; `length` positions are filled."""

    def __init__(self, s, batch, capacity):
        shape = (batch, s.kv_count, capacity, s.head_dim)
        self.k = [torch.zeros(shape) for _ in range(s.layers)]
        self.v = [torch.zeros(shape) for _ in range(s.layers)]
        self.length = 0


def attend(q, k, v, causal, dropout):
    """q [B, H, L, Dh], k/v [B, H, S, Dh] -> [B, H, L, Dh]; causal: query i sees keys <= i."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))  # [B, H, L, S]
    if causal:
        length = q.shape[-2]
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = F.dropout(scores.softmax(-1), dropout, training=dropout > 0)
    return probs @ v


class Attention(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        kv = s.kv_count * s.head_dim
        self.qkv = nn.Linear(s.d_model, s.d_model + 2 * kv, bias=s.bias)  # nanoGPT's c_attn
        self.out = nn.Linear(s.d_model, s.d_model, bias=s.bias)  # c_proj
        self.out.residual = True

    def forward(self, x, start, rope, cache, layer):
        s = self.s
        b, length, d = x.shape
        kv = s.kv_count * s.head_dim
        q, k, v = self.qkv(x).split([d, kv, kv], dim=2)
        q = q.view(b, length, s.heads, s.head_dim).transpose(1, 2)  # [B, H, L, Dh]
        k = k.view(b, length, s.kv_count, s.head_dim).transpose(1, 2)  # [B, Hkv, L, Dh]
        v = v.view(b, length, s.kv_count, s.head_dim).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:
            end = start + length
            cache.k[layer][:, :, start:end] = k
            cache.v[layer][:, :, start:end] = v
            k, v = cache.k[layer][:, :, :end], cache.v[layer][:, :, :end]
        groups = s.heads // s.kv_count
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        # A prefill attends causally to its own keys; one new token to every key before it.
        y = attend(q, k, v, causal=length > 1, dropout=s.attn_dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class Mlp(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.llama = s.llama
        if s.llama:
            self.gate = nn.Linear(s.d_model, s.ff_width, bias=s.bias)
        self.up = nn.Linear(s.d_model, s.ff_width, bias=s.bias)  # c_fc
        self.down = nn.Linear(s.ff_width, s.d_model, bias=s.bias)  # c_proj
        self.down.residual = True

    def forward(self, x):
        if self.llama:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = make_norm(s), Attention(s), make_norm(s), Mlp(s)
        self.drop = nn.Dropout(s.dropout)

    def forward(self, x, start, rope, cache, layer):
        x = x + self.drop(self.attn(self.norm1(x), start, rope, cache, layer))
        return x + self.drop(self.mlp(self.norm2(x)))


class Gpt(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.embed = nn.Embedding(s.vocab, s.d_model)
        if not s.llama:
            self.positions = nn.Embedding(s.context, s.d_model)
        self.drop = nn.Dropout(s.dropout)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.layers))
        self.norm = make_norm(s)
        self.head = nn.Linear(s.d_model, s.vocab, bias=False) if s.llama else None
        if s.llama:
            inv_freq = 1.0 / s.rope_theta ** (torch.arange(0, s.head_dim, 2).float() / s.head_dim)
            angles = torch.arange(s.context).float()[:, None] * inv_freq[None, :]
            angles = torch.cat([angles, angles], dim=-1)  # [context, Dh]
            self.register_buffer("cos", angles.cos(), persistent=False)
            self.register_buffer("sin", angles.sin(), persistent=False)
        self.apply(self._init)

    def _init(self, m):
        """nanoGPT's: N(0, 0.02), projections into the residual stream N(0, 0.02 / sqrt(2 layers))."""
        if isinstance(m, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.s.layers) if getattr(m, "residual", False) else 0.02
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, ids, start=0, cache=None):
        """ids [B, L] at positions start.. -> logits [B, L, V]."""
        length = ids.shape[1]
        if start + length > self.s.context:
            raise ValueError(f"positions up to {start + length} exceed the context {self.s.context}")
        x = self.embed(ids)
        rope = None
        if self.s.llama:
            rope = (self.cos[start:start + length], self.sin[start:start + length])
        else:
            x = x + self.positions.weight[start:start + length]
        x = self.drop(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, start, rope, cache, layer)
        x = self.norm(x)
        return F.linear(x, self.embed.weight if self.head is None else self.head.weight)


def adamw(model, lr, betas, weight_decay):
    """nanoGPT's optimizer: AdamW with decay on the parameters of two or more dimensions."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


@torch.no_grad()
def greedy_with_cache(model, prompt, new_tokens):
    """prompt [B, P] -> [B, new_tokens] greedy tokens, with a KV cache: the prompt in one
    forward, then one token per step. A row that fills the context keeps its newest half
    (qkv's decode::Generator does the same): its last max(capacity // 2, 1) - 1 tokens before the
    newest are run again from position 0, then it goes on."""
    batch, length = prompt.shape
    capacity = min(model.s.context, length + new_tokens)
    cache = KvCache(model.s, batch, capacity)
    logits = model(prompt, 0, cache)[:, -1]
    cache.length = length
    tokens = prompt
    out = []
    for i in range(new_tokens):
        token = logits.argmax(-1, keepdim=True)  # [B, 1]
        out.append(token)
        tokens = torch.cat([tokens, token], dim=1)
        if i + 1 == new_tokens:
            break
        if cache.length == capacity:
            keep = max(capacity // 2, 1) - 1
            cache.length = 0
            if keep:
                model(tokens[:, -1 - keep:-1], 0, cache)
                cache.length = keep
        logits = model(token, cache.length, cache)[:, -1]
        cache.length += 1
    return torch.cat(out, dim=1)


def load_qkv_weights(model, weights):
    """Copies qkv's parameters ({name: tensor}, nn::Gpt's Llama names) into `model`."""
    s = model.s
    take = dict(weights)

    def put(param, name):
        value = take.pop(name)
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"{name}: shape {tuple(value.shape)}, expected {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(value)

    put(model.embed.weight, "model.embed_tokens.weight")
    if not s.llama:
        put(model.positions.weight, "model.embed_positions.weight")
    kinds = ["weight", "bias"] if s.bias else ["weight"]
    norm_kinds = ["weight"] if s.llama else kinds
    for i, b in enumerate(model.blocks):
        p = f"model.layers.{i}."
        for kind in kinds:
            fused = [take.pop(f"{p}self_attn.{x}_proj.{kind}") for x in "qkv"]
            with torch.no_grad():
                getattr(b.attn.qkv, kind).copy_(torch.cat(fused, dim=0))
            put(getattr(b.attn.out, kind), f"{p}self_attn.o_proj.{kind}")
            if s.llama:
                put(getattr(b.mlp.gate, kind), f"{p}mlp.gate_proj.{kind}")
            put(getattr(b.mlp.up, kind), f"{p}mlp.up_proj.{kind}")
            put(getattr(b.mlp.down, kind), f"{p}mlp.down_proj.{kind}")
        for kind in norm_kinds:
            put(getattr(b.norm1, kind), f"{p}input_layernorm.{kind}")
            put(getattr(b.norm2, kind), f"{p}post_attention_layernorm.{kind}")
    for kind in norm_kinds:
        put(getattr(model.norm, kind), f"model.norm.{kind}")
    if s.llama:
        put(model.head.weight, "lm_head.weight")
    if take:
        raise ValueError(f"qkv weights the PyTorch model lacks: {sorted(take)}")
