#!/usr/bin/python3
"""Training throughput of qkv's ViT against the same model in PyTorch, same threads and batch.

Both sides run forward, backward and an AdamW step (weight decay 0.05, label smoothing 0.1,
no dropout) on random images; rounds alternate between them so both see the same machine load,
and each side's median images/s is reported with the ratio qkv / PyTorch.

    bench/bench_vit.py [--threads 2] [--batch 128] [--steps 10] [--rounds 3]
                       [--qkv-bench build/release/bench/bench_vit] [shape options]

The default shape is the vit-fashion preset (28x28x1, patch 4, d-model 64, 6 layers, 4 heads,
MLP 128). PyTorch's model: Conv2d patches, nn.TransformerEncoderLayer(norm_first=True,
activation="gelu", batch_first=True), final LayerNorm, linear head on the class token.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ViT(nn.Module):
    def __init__(self, a):
        super().__init__()
        d, p = a.d_model, a.patch_size
        self.patch = nn.Conv2d(a.channels, d, kernel_size=p, stride=p)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, (a.image_size // p) ** 2 + 1, d) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, a.heads, a.d_ff, dropout=0.0, activation="gelu",
                                       layer_norm_eps=1e-6, batch_first=True, norm_first=True)
            for _ in range(a.layers))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, 10)

    def forward(self, images):
        x = self.patch(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x)[:, 0])


def torch_images_per_s(a):
    torch.manual_seed(1)
    model = ViT(a)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    images = torch.randn(a.batch, a.channels, a.image_size, a.image_size)
    labels = torch.arange(a.batch) % 10

    def step():
        opt.zero_grad()
        F.cross_entropy(model(images), labels, label_smoothing=0.1).backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    return a.batch * a.steps / (time.perf_counter() - start)


def qkv_images_per_s(a):
    cmd = [a.qkv_bench, "--batch", str(a.batch), "--threads", str(a.threads), "--steps",
           str(a.steps), "--d-model", str(a.d_model), "--layers", str(a.layers), "--heads",
           str(a.heads), "--d-ff", str(a.d_ff), "--patch-size", str(a.patch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["images_per_s"]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--qkv-bench", default=os.path.join(root, "build/release/bench/bench_vit"))
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=128)
    a = p.parse_args()
    if a.channels != 1 or a.image_size != 28:
        sys.exit("bench_vit.py: the qkv side runs the vit-fashion input shape (1x28x28) only")
    torch.set_num_threads(a.threads)
    qkv, ref = [], []
    for r in range(a.rounds):
        qkv.append(qkv_images_per_s(a))
        ref.append(torch_images_per_s(a))
        print(f"round {r + 1}: qkv {qkv[-1]:.1f} images/s, PyTorch {ref[-1]:.1f} images/s", flush=True)
    q, t = statistics.median(qkv), statistics.median(ref)
    print(f"ViT training, batch {a.batch}, {a.threads} threads, d-model {a.d_model}, "
          f"{a.layers} layers, patch {a.patch_size}: qkv {q:.1f} images/s, "
          f"PyTorch {torch.__version__} {t:.1f} images/s, ratio qkv/PyTorch {q / t:.2f}")


if __name__ == "__main__":
    main()
