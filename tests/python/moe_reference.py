"""PyTorch reference of a sparse Mixture-of-Experts feed-forward layer, in float64, as qkv's
src/nn/moe.h defines it, written from the published definitions:
- routing as Mixtral's sparse MoE block for k >= 2 (softmax over the E router logits, the top k,
  their probabilities renormalised to sum 1) and as Switch Transformer's router for k = 1 (the
  chosen expert's probability itself is the gate);
- capacity as Switch and GShard: while training with a factor c > 0 each expert takes at most
  C = ceil(c * N * k / E) assignments, filled choice by choice (every token's first choice in
  token order, then every second choice, ...); a dropped assignment adds nothing;
- Switch's load-balancing loss aux = E * sum_e f_e * P_e (f_e: the fraction of the N * k choices
  that picked e, before capacity; P_e: the mean router probability of e) and ST-MoE's router
  z-loss z = mean over tokens of logsumexp(logits)^2;
- the experts' MLPs: gated w2(act(w1 x) * w3 x) (SwiGLU with act silu), plain w2(act(w1 x)),
  act one of relu, gelu (exact), gelu_tanh, silu; biases when given.

    moe_reference.py DIR

DIR/cases.json maps a case name to {"experts", "top_k", "capacity_factor", "act", "gated",
"aux_weight", "z_weight"}; DIR/inputs.safetensors holds, per case, "<case>.x" [B, L, d],
"<case>.dy" [B, L, d] and the layer's parameters under "<case>.<name>" with Mixtral's names
(<name> ending in "gate.weight" [E, d] for the router and "experts.M.w1.weight" [ff, d],
"experts.M.w3.weight" [ff, d] (gated only), "experts.M.w2.weight" [d, ff], and their ".bias")
or NLLB-MoE's ("router.classifier.weight", "experts.expert_M.fc1.weight" as w1 and
"experts.expert_M.fc2.weight" as w2).
Writes DIR/reference.safetensors with, per case: "<case>.y" [B, L, d], ".probs" [N, E],
".aux" [1], ".z" [1], ".expert_choices" [E], ".dropped" [1], ".capacity" [1] (0: unlimited) and
the gradients of loss = sum(y * dy) + aux_weight * aux + z_weight * z: "<case>.grad.x" and
"<case>.grad.<name>" for every parameter. A case whose top-k choice is nearly a tie (within
1e-4 of probability) fails: float32 could choose differently there.
"""
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu,
               "gelu_tanh": lambda v: F.gelu(v, approximate="tanh")}
EXPERT = re.compile(r"experts\.(?:expert_)?(\d+)\.(w[123]|fc[12])\.(weight|bias)$")
ROUTER = re.compile(r"(gate|router\.classifier)\.weight$")
NLLB_NAMES = {"fc1": "w1", "fc2": "w2"}
TIE_MARGIN = 1e-4


def route(logits, k, name):
    """logits [N, E] -> probs [N, E], choices [N, k] (decreasing probability, ties to the lower
    index), gates [N, k]."""
    probs = torch.softmax(logits, dim=-1)
    # A stable sort on -probs keeps equal probabilities in index order.
    order = torch.sort(-probs.detach(), dim=-1, stable=True).indices
    choices = order[:, :k]
    if k < probs.shape[1]:
        ranked = probs.detach().gather(1, order)
        gap = (ranked[:, k - 1] - ranked[:, k]).min().item()
        if gap < TIE_MARGIN:
            raise ValueError(f"case {name}: a top-{k} choice is within {gap:.2g} of a tie")
    chosen = probs.gather(1, choices)
    gates = chosen if k == 1 else chosen / chosen.sum(-1, keepdim=True)
    return probs, choices, gates


def kept_assignments(choices, experts, capacity):
    """Which of the [N, k] assignments an expert with room for `capacity` (0: any number) takes,
    filled choice by choice in token order."""
    n, k = choices.shape
    kept = torch.ones(n, k, dtype=torch.bool)
    if capacity == 0:
        return kept
    taken = [0] * experts
    for s in range(k):
        for t in range(n):
            e = int(choices[t, s])
            kept[t, s] = taken[e] < capacity
            taken[e] += 1
    return kept


def expert_mlp(w, x, act, gated):
    h = act(F.linear(x, w["w1.weight"], w.get("w1.bias")))
    if gated:
        h = h * F.linear(x, w["w3.weight"], w.get("w3.bias"))
    return F.linear(h, w["w2.weight"], w.get("w2.bias"))


def moe_case(name, c, t):
    x = t.pop("x").requires_grad_(True)
    dy = t.pop("dy")
    params = {key: v.requires_grad_(True) for key, v in t.items()}
    router = [v for key, v in params.items() if ROUTER.search(key)]
    assert len(router) == 1, f"case {name}: no single router weight among {sorted(params)}"
    e_count, k = c["experts"], c["top_k"]
    experts = [{} for _ in range(e_count)]
    for key, v in params.items():
        m = EXPERT.search(key)
        if m:
            matrix = NLLB_NAMES.get(m.group(2), m.group(2))
            experts[int(m.group(1))][matrix + "." + m.group(3)] = v
    for i, w in enumerate(experts):
        need = {"w1.weight", "w2.weight"} | ({"w3.weight"} if c["gated"] else set())
        assert need <= set(w), f"case {name}: expert {i} lacks {sorted(need - set(w))}"

    tokens = x.reshape(-1, x.shape[-1])  # [N, d]
    n = tokens.shape[0]
    logits = F.linear(tokens, router[0])  # [N, E]
    probs, choices, gates = route(logits, k, name)
    capacity = 0
    if c["capacity_factor"] > 0:
        capacity = math.ceil(c["capacity_factor"] * n * k / e_count)
    kept = kept_assignments(choices, e_count, capacity)

    y = torch.zeros_like(tokens)
    for e in range(e_count):
        rows, slots = ((choices == e) & kept).nonzero(as_tuple=True)
        if len(rows) > 0:
            out = expert_mlp(experts[e], tokens[rows], ACTIVATIONS[c["act"]], c["gated"])
            y = y.index_add(0, rows, gates[rows, slots, None] * out)
    y = y.reshape(x.shape)

    picked = torch.bincount(choices.reshape(-1), minlength=e_count).double()  # [E]
    aux = e_count * (picked / (n * k) * probs.mean(0)).sum()
    z = (torch.logsumexp(logits, dim=-1) ** 2).mean()
    loss = (y * dy).sum() + c["aux_weight"] * aux + c["z_weight"] * z
    names = list(params)
    grads = torch.autograd.grad(loss, [x] + [params[key] for key in names], allow_unused=True)
    out = {"y": y, "probs": probs, "aux": aux.reshape(1), "z": z.reshape(1),
           "expert_choices": picked, "dropped": torch.tensor([float((~kept).sum())]),
           "capacity": torch.tensor([float(capacity)]), "grad.x": grads[0]}
    for key, g in zip(names, grads[1:]):
        out["grad." + key] = g if g is not None else torch.zeros_like(params[key])
    return out


def main(d):
    with open(os.path.join(d, "cases.json")) as f:
        cases = json.load(f)
    arrays, _ = safetensors_np.load(os.path.join(d, "inputs.safetensors"))
    out = {}
    for name, c in cases.items():
        t = {key[len(name) + 1:]: torch.tensor(v, dtype=torch.float64) for key, v in arrays.items()
             if key.startswith(name + ".")}
        results = moe_case(name, c, t)
        out.update({name + "." + key: v.detach().numpy().astype(np.float32)
                    for key, v in results.items()})
    safetensors_np.save(os.path.join(d, "reference.safetensors"), out)


if __name__ == "__main__":
    main(sys.argv[1])
