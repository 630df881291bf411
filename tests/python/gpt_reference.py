"""PyTorch reference of qkv's decoder-only language models (nn::Gpt), written from the published
definitions in float64: GPT-2 (Radford et al. 2019: pre-norm blocks, learned positions, GELU MLP
(tanh form: gelu_new), LayerNorm, output tied to the embeddings) and Llama (Touvron et al. 2023:
RMSNorm, rotary position embeddings in the rotate-half layout with inv_freq = theta^(-2i/Dh),
SwiGLU MLP, grouped-query attention: query head h reads key/value head h // (heads / kv_heads)).

    gpt_reference.py DIR

DIR holds config.json (nn::GptConfig's fields under snake_case keys, plus lr, weight_decay and
steps), weights.safetensors (qkv's parameter names, which are Llama's) and batch.safetensors
(inputs and targets, i32 [B, L]; target -1 is not scored). Writes reference.safetensors:
"logits" [B, L, V] of the given weights, "grad.<name>" of every parameter for the mean loss, and
"losses": the mean loss before each of `steps` AdamW updates (torch.optim.AdamW, decay on
matrices except the position table, constant learning rate).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402


def norm(c, w, x, prefix):
    if c["norm"] == "rmsnorm":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["norm_eps"]) * w[prefix + ".weight"]
    return F.layer_norm(x, x.shape[-1:], w[prefix + ".weight"], w[prefix + ".bias"], c["norm_eps"])


def linear(w, x, prefix):
    return F.linear(x, w[prefix + ".weight"], w.get(prefix + ".bias"))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rope(x, theta):
    """x [B, H, L, Dh] at positions 0..L-1."""
    dh, length = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / theta ** (torch.arange(0, dh, 2, dtype=torch.float64) / dh)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def attention(c, w, x, prefix):
    b, length, d = x.shape
    heads, kv = c["heads"], c["kv_heads"] or c["heads"]
    dh = d // heads
    q = linear(w, x, prefix + ".q_proj").view(b, length, heads, dh).transpose(1, 2)
    k = linear(w, x, prefix + ".k_proj").view(b, length, kv, dh).transpose(1, 2)
    v = linear(w, x, prefix + ".v_proj").view(b, length, kv, dh).transpose(1, 2)
    if c["positions"] == "rope":
        q, k = rope(q, c["rope_theta"]), rope(k, c["rope_theta"])
    k = k.repeat_interleave(heads // kv, dim=1)
    v = v.repeat_interleave(heads // kv, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(b, length, d)
    return linear(w, out, prefix + ".o_proj")


def mlp(c, w, x, prefix):
    if c["mlp"] == "swiglu":
        gated = F.silu(linear(w, x, prefix + ".gate_proj")) * linear(w, x, prefix + ".up_proj")
        return linear(w, gated, prefix + ".down_proj")
    approximate = "tanh" if c["mlp"] == "gelu_tanh" else "none"
    return linear(w, F.gelu(linear(w, x, prefix + ".up_proj"), approximate=approximate), prefix + ".down_proj")


def forward(c, w, ids):
    x = w["model.embed_tokens.weight"][ids]
    if c["positions"] == "learned":
        x = x + w["model.embed_positions.weight"][: ids.shape[1]]
    for i in range(c["layers"]):
        p = "model.layers.%d" % i
        x = x + attention(c, w, norm(c, w, x, p + ".input_layernorm"), p + ".self_attn")
        x = x + mlp(c, w, norm(c, w, x, p + ".post_attention_layernorm"), p + ".mlp")
    x = norm(c, w, x, "model.norm")
    out = w["model.embed_tokens.weight"] if c["tie_embeddings"] else w["lm_head.weight"]
    return x @ out.T


def mean_loss(c, w, inputs, targets):
    logits = forward(c, w, inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    w = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
         for k, v in safetensors_np.load(os.path.join(d, "weights.safetensors"))[0].items()}
    batch, _ = safetensors_np.load(os.path.join(d, "batch.safetensors"))
    inputs = torch.tensor(batch["inputs"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    out = {"logits": forward(c, w, inputs).detach().numpy().astype(np.float32)}

    decay = [t for k, t in w.items() if t.dim() == 2 and "embed_positions" not in k]
    rest = [t for k, t in w.items() if not (t.dim() == 2 and "embed_positions" not in k)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=c["lr"], betas=(0.9, 0.99), eps=1e-8)
    losses = []
    for step in range(c["steps"]):
        opt.zero_grad()
        loss = mean_loss(c, w, inputs, targets)
        loss.backward()
        if step == 0:
            out.update({"grad." + k: t.grad.numpy().astype(np.float32) for k, t in w.items()})
        losses.append(loss.item())
        opt.step()
    out["losses"] = np.array(losses, dtype=np.float32)
    safetensors_np.save(os.path.join(d, "reference.safetensors"), out)


if __name__ == "__main__":
    main()
