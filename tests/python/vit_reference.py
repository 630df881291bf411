"""PyTorch reference ViT for qkv's parity test, built from torch.nn layers.

    vit_reference.py DIR

DIR holds what the C++ test wrote: config.json, weights.safetensors (Hugging Face
ViTForImageClassification names, as qkv saves them) and batch.safetensors (images, labels).
The model: a Conv2d patch embedding (kernel = stride = patch), a class token, learned position
embeddings, nn.TransformerEncoderLayer(norm_first=True, activation="gelu"), a final LayerNorm and
a linear classifier on the class token. Writes reference.safetensors into DIR: "logits" of the
first forward pass, "losses" before each of `steps` AdamW updates and "grad.<name>", the gradient of
each of qkv's tensors in the first update.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402
from qkv_gradients import qkv_gradients  # noqa: E402


class ViT(nn.Module):
    def __init__(self, c, w):
        super().__init__()
        d, p = c["d_model"], c["patch_size"]
        self.patch = nn.Conv2d(c["channels"], d, kernel_size=p, stride=p)
        n = (c["image_size"] // p) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, d))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, c["heads"], c["d_ff"], dropout=0.0, activation="gelu",
                                       layer_norm_eps=c["layer_norm_eps"], batch_first=True,
                                       norm_first=True)
            for _ in range(c["layers"]))
        self.norm = nn.LayerNorm(d, eps=c["layer_norm_eps"])
        self.head = nn.Linear(d, c["classes"])
        t = {k: torch.tensor(v) for k, v in w.items()}
        with torch.no_grad():
            e = "vit.embeddings."
            self.patch.weight.copy_(t[e + "patch_embeddings.projection.weight"])
            self.patch.bias.copy_(t[e + "patch_embeddings.projection.bias"])
            self.cls.copy_(t[e + "cls_token"])
            self.pos.copy_(t[e + "position_embeddings"])
            for i, layer in enumerate(self.layers):
                p = f"vit.encoder.layer.{i}."
                a = p + "attention.attention."
                attn = layer.self_attn
                attn.in_proj_weight.copy_(torch.cat([t[a + n + ".weight"] for n in ("query", "key", "value")]))
                attn.in_proj_bias.copy_(torch.cat([t[a + n + ".bias"] for n in ("query", "key", "value")]))
                attn.out_proj.weight.copy_(t[p + "attention.output.dense.weight"])
                attn.out_proj.bias.copy_(t[p + "attention.output.dense.bias"])
                layer.linear1.weight.copy_(t[p + "intermediate.dense.weight"])
                layer.linear1.bias.copy_(t[p + "intermediate.dense.bias"])
                layer.linear2.weight.copy_(t[p + "output.dense.weight"])
                layer.linear2.bias.copy_(t[p + "output.dense.bias"])
                layer.norm1.weight.copy_(t[p + "layernorm_before.weight"])
                layer.norm1.bias.copy_(t[p + "layernorm_before.bias"])
                layer.norm2.weight.copy_(t[p + "layernorm_after.weight"])
                layer.norm2.bias.copy_(t[p + "layernorm_after.bias"])
            self.norm.weight.copy_(t["vit.layernorm.weight"])
            self.norm.bias.copy_(t["vit.layernorm.bias"])
            self.head.weight.copy_(t["classifier.weight"])
            self.head.bias.copy_(t["classifier.bias"])

    def forward(self, images):
        x = self.patch(images).flatten(2).transpose(1, 2)  # [B, N, d]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x)[:, 0])


def main():
    d = sys.argv[1]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    c = json.load(open(os.path.join(d, "config.json")))
    w, _ = safetensors_np.load(os.path.join(d, "weights.safetensors"))
    b, _ = safetensors_np.load(os.path.join(d, "batch.safetensors"))
    images, labels = torch.tensor(b["images"]), torch.tensor(b["labels"].astype(np.int64))
    model = ViT(c, w)
    logits = model(images)
    grads = {}
    # Decay on the weight matrices only, as qkv (optim::decays): not on biases, LayerNorms,
    # the class token or the position embeddings.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in ("cls", "pos")]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n not in ("cls", "pos"))]
    opt = torch.optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=c["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=c["weight_decay"])
    losses = []
    for _ in range(c["steps"]):
        opt.zero_grad()
        loss = F.cross_entropy(model(images), labels, label_smoothing=c["label_smoothing"])
        loss.backward()
        if not losses:
            grads = qkv_gradients(lambda weights: ViT(c, weights), model, w)
        opt.step()
        losses.append(loss.item())
    safetensors_np.save(os.path.join(d, "reference.safetensors"),
                        {"logits": logits.detach().numpy().astype(np.float32),
                         "losses": np.array(losses, dtype=np.float32),
                         **{"grad." + name: g for name, g in grads.items()}})


if __name__ == "__main__":
    main()
