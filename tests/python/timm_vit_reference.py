"""A timm VisionTransformer folder and its logits, for qkv's `convert --from hf` of timm models
(Debian 12 has no timm; tests/python/make_hf_fixtures.py checks against timm itself where it is
installed).

    timm_vit_reference.py make DIR SPEC.json   random weights -> DIR/model.safetensors, config.json
    timm_vit_reference.py run DIR IO.safetensors

make: SPEC holds architecture, embed_dim, depth, num_heads, mlp_dim, img_size, patch_size,
in_chans, num_classes, seed and optionally model_args, label_names, global_pool, mean, std;
writes config.json as timm's save_for_hf does (architecture, num_classes, num_features,
global_pool, pretrained_cfg with input_size, mean, std) and model.safetensors with timm's names
(cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
mlp.fc2}, norm, head).
run: IO holds pixel_values (f32 [B, C, H, W]); writes back "logits" [B, num_classes], computed in
float64 by torch's own layers: Conv2d patches, the class token, positions,
nn.TransformerEncoderLayer(norm_first, GELU, eps 1e-6) whose packed in_proj is timm's qkv, the
final LayerNorm, and the head on the class token.
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
import random_weights  # noqa: E402
import safetensors_np  # noqa: E402


def make(d, s):
    rng = np.random.default_rng(s["seed"])
    e, m, c, p, k = s["embed_dim"], s["mlp_dim"], s["in_chans"], s["patch_size"], s["num_classes"]
    n = (s["img_size"] // p) ** 2
    w = {"cls_token": rng.normal(0, 0.5, (1, 1, e)), "pos_embed": rng.normal(0, 0.5, (1, n + 1, e)),
         "patch_embed.proj.weight": rng.normal(0, 1 / math.sqrt(c * p * p), (e, c, p, p)),
         "patch_embed.proj.bias": rng.normal(0, 0.1, (e,))}

    def lin(name, o, i):
        random_weights.linear(w, rng, name, o, i)

    def norm(name):
        random_weights.layer_norm(w, rng, name, e)

    for i in range(s["depth"]):
        b = f"blocks.{i}"
        norm(b + ".norm1"), lin(b + ".attn.qkv", 3 * e, e), lin(b + ".attn.proj", e, e)
        norm(b + ".norm2"), lin(b + ".mlp.fc1", m, e), lin(b + ".mlp.fc2", e, m)
    norm("norm")
    lin("head", k, e)
    safetensors_np.save(os.path.join(d, "model.safetensors"),
                        {name: a.astype(np.float32) for name, a in w.items()})
    config = {"architecture": s["architecture"], "num_classes": k, "num_features": e,
              "global_pool": s.get("global_pool", "token"),
              "pretrained_cfg": {"input_size": [c, s["img_size"], s["img_size"]],
                                 "mean": s.get("mean", [0.485, 0.456, 0.406][:c]),
                                 "std": s.get("std", [0.229, 0.224, 0.225][:c]),
                                 "num_classes": k, "first_conv": "patch_embed.proj",
                                 "classifier": "head"}}
    for key in ("model_args", "label_names"):
        if key in s:
            config[key] = s[key]
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)


def logits(d, pixels):
    w = {k: torch.tensor(a, dtype=torch.float64)
         for k, a in safetensors_np.load(os.path.join(d, "model.safetensors"))[0].items()}
    spec = json.load(open(os.path.join(d, "spec.json")))
    e, heads = w["cls_token"].shape[-1], spec["num_heads"]
    x = F.conv2d(pixels, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"],
                 stride=w["patch_embed.proj.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)  # [B, N, E], patches row by row
    x = torch.cat([w["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + w["pos_embed"]
    for i in range(spec["depth"]):
        b = f"blocks.{i}."
        layer = nn.TransformerEncoderLayer(e, heads, w[b + "mlp.fc1.weight"].shape[0], dropout=0.0,
                                           activation="gelu", layer_norm_eps=1e-6,
                                           batch_first=True, norm_first=True).double()
        sd = {"self_attn.in_proj_weight": "attn.qkv.weight", "self_attn.in_proj_bias": "attn.qkv.bias",
              "self_attn.out_proj.weight": "attn.proj.weight",
              "self_attn.out_proj.bias": "attn.proj.bias", "linear1.weight": "mlp.fc1.weight",
              "linear1.bias": "mlp.fc1.bias", "linear2.weight": "mlp.fc2.weight",
              "linear2.bias": "mlp.fc2.bias", "norm1.weight": "norm1.weight",
              "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}
        layer.load_state_dict({ours: w[b + timm] for ours, timm in sd.items()})
        layer.train()  # dropout is 0; training mode keeps torch off its fast path
        x = layer(x)
    x = F.layer_norm(x, (e,), w["norm.weight"], w["norm.bias"], 1e-6)
    return F.linear(x[:, 0], w["head.weight"], w["head.bias"])


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "make":
        spec = json.load(open(sys.argv[3]))
        make(sys.argv[2], spec)
        json.dump(spec, open(os.path.join(sys.argv[2], "spec.json"), "w"))
    else:
        io, _ = safetensors_np.load(sys.argv[3])
        with torch.no_grad():
            out = logits(sys.argv[2], torch.tensor(io["pixel_values"], dtype=torch.float64))
        safetensors_np.save(sys.argv[3], {**io, "logits": out.float().numpy()})
