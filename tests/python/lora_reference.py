"""PyTorch reference of LoRA as Hugging Face peft defines its LoRA Linear (Hu et al. 2021), in
float64: a frozen layer y = W x + b gains
    result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling
with A [r, in], B [out, r], scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora
(Kalajdzievski 2023), and dropout nn.Dropout(lora_dropout) (kept inputs scaled by 1 / (1 - p)).
Merging folds the update into the weight: W + scaling * B @ A.

    lora_reference.py linear DIR

DIR/cases.json maps a case name to {"lora_alpha", "use_rslora", "lora_dropout"};
DIR/inputs.safetensors holds, per case, "<case>.x" [N, in], ".weight" [out, in], ".bias" [out]
(optional), ".lora_A", ".lora_B", ".dout" [N, out] and ".keep" (optional: the inputs dropout
kept, 1, or zeroed, 0). Writes DIR/reference.safetensors: "<case>.out", the gradients of
sum(out * dout) "<case>.d_x", ".d_lora_A", ".d_lora_B", and "<case>.merged_weight" with
"<case>.merged_out" (the merged layer on x, without dropout).

    lora_reference.py train DIR

gpt_reference.py's model (its config.json, weights.safetensors, batch.safetensors) with the
adapter of DIR/adapter.safetensors (peft's keys base_model.model.<module>.lora_A.weight and
.lora_B.weight) on the linear layers it names, config.json adding lora_alpha, use_rslora, lr,
beta1, beta2, eps, clip_norm and steps. The base is frozen; each of `steps` updates is
torch.optim.Adam on the mean cross-entropy's gradient, clipped as qkv clips it (scaled by
clip_norm / norm when the adapter's global gradient norm exceeds clip_norm). Writes
DIR/reference.safetensors: "losses" (before each update) and the adapter's final tensors under
their keys.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import gpt_reference  # noqa: E402
import safetensors_np  # noqa: E402

KEY_PREFIX = "base_model.model."


def scaling(lora_alpha, r, use_rslora):
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def lora_linear(x, weight, bias, a, b, s, dropped=None):
    """peft's Linear.forward: the base layer plus the scaled update of the dropped input."""
    return F.linear(x, weight, bias) + F.linear(F.linear(x if dropped is None else dropped, a), b) * s


def linear_cases(d):
    with open(os.path.join(d, "cases.json")) as f:
        cases = json.load(f)
    arrays, _ = safetensors_np.load(os.path.join(d, "inputs.safetensors"))
    out = {}
    for name, c in cases.items():
        t = {k[len(name) + 1:]: torch.tensor(v, dtype=torch.float64) for k, v in arrays.items()
             if k.startswith(name + ".")}
        x, a, b = (t[k].requires_grad_(True) for k in ("x", "lora_A", "lora_B"))
        s = scaling(c["lora_alpha"], a.shape[0], c["use_rslora"])
        dropped = None
        if "keep" in t:  # nn.Dropout with the given mask
            dropped = x * t["keep"] / (1.0 - c["lora_dropout"])
        y = lora_linear(x, t["weight"], t.get("bias"), a, b, s, dropped)
        dx, da, db = torch.autograd.grad((y * t["dout"]).sum(), [x, a, b])
        merged = t["weight"] + s * (b @ a)
        results = {"out": y, "d_x": dx, "d_lora_A": da, "d_lora_B": db, "merged_weight": merged,
                   "merged_out": F.linear(x, merged, t.get("bias"))}
        out.update({name + "." + k: v.detach().numpy().astype(np.float32) for k, v in results.items()})
    safetensors_np.save(os.path.join(d, "reference.safetensors"), out)


def train(d):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    w = {k: torch.tensor(v, dtype=torch.float64)  # frozen: no gradients
         for k, v in safetensors_np.load(os.path.join(d, "weights.safetensors"))[0].items()}
    adapter = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
               for k, v in safetensors_np.load(os.path.join(d, "adapter.safetensors"))[0].items()}
    modules = {k[len(KEY_PREFIX):-len(".lora_A.weight")] for k in adapter}
    batch, _ = safetensors_np.load(os.path.join(d, "batch.safetensors"))
    inputs = torch.tensor(batch["inputs"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)

    base_linear = gpt_reference.linear

    def linear(weights, x, prefix):
        if prefix not in modules:
            return base_linear(weights, x, prefix)
        a = adapter[KEY_PREFIX + prefix + ".lora_A.weight"]
        b = adapter[KEY_PREFIX + prefix + ".lora_B.weight"]
        s = scaling(c["lora_alpha"], a.shape[0], c["use_rslora"])
        return lora_linear(x, weights[prefix + ".weight"], weights.get(prefix + ".bias"), a, b, s)

    gpt_reference.linear = linear  # the model's layers now carry the adapter
    params = list(adapter.values())
    opt = torch.optim.Adam(params, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"])
    losses = []
    for _ in range(c["steps"]):
        opt.zero_grad()
        loss = gpt_reference.mean_loss(c, w, inputs, targets)
        loss.backward()
        norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
        if c["clip_norm"] > 0 and norm > c["clip_norm"]:
            for p in params:
                p.grad.mul_(c["clip_norm"] / norm)
        losses.append(loss.item())
        opt.step()
    out = {k: v.detach().numpy().astype(np.float32) for k, v in adapter.items()}
    out["losses"] = np.array(losses, dtype=np.float32)
    safetensors_np.save(os.path.join(d, "reference.safetensors"), out)


if __name__ == "__main__":
    {"linear": linear_cases, "train": train}[sys.argv[1]](sys.argv[2])
