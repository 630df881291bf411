"""A float64 Mixtral (Hugging Face's MixtralForCausalLM), written from its published definition
(Jiang et al. 2024, "Mixtral of Experts"), on the weights of a Hugging Face folder in the classic
layout, for qkv's conversion tests (tests/python/mixtral_fixtures.py loads the folder).

The model is Llama's (llama_reference.py) with each block's MLP replaced by a sparse
Mixture-of-Experts block of E experts, each token x going to k of them:
    p = softmax(x gate^T)                                   [E] router probabilities
    the k largest p_e (experts S), their weights g_e = p_e / sum over S of p_s
    y = sum over e in S of g_e * w2_e(silu(w1_e x) * w3_e x)
Names: model.layers.N.block_sparse_moe.gate.weight [E, d] and
block_sparse_moe.experts.M.{w1, w3 [ff, d], w2 [d, ff]}.weight; no biases anywhere.
"""
import torch
import torch.nn.functional as F

from llama_reference import Llama


class Mixtral(Llama):
    def __init__(self, config, weights):
        super().__init__(config, weights)
        self.experts = config.get("num_local_experts", 8)
        self.top_k = config.get("num_experts_per_tok", 2)

    def mlp(self, x, name):
        """x [B, L, d]; name: the layer's "model.layers.N.mlp"."""
        moe = name.rsplit(".", 1)[0] + ".block_sparse_moe"
        p = torch.softmax(F.linear(x, self.w[moe + ".gate.weight"]), -1)  # [B, L, E]
        top, chosen = torch.topk(p, self.top_k, dim=-1)
        g = torch.zeros_like(p).scatter(-1, chosen, top / top.sum(-1, keepdim=True))
        y = torch.zeros_like(x)
        for e in range(self.experts):  # every expert on every token, weighed 0 where not chosen
            w = lambda m: self.w[f"{moe}.experts.{e}.{m}.weight"]  # noqa: E731
            out = F.linear(F.silu(F.linear(x, w("w1"))) * F.linear(x, w("w3")), w("w2"))
            y = y + g[..., e:e + 1] * out
        return y
