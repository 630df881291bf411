#!/usr/bin/env python3
"""The attention benchmark's table: qkv (qkv_attention_bench's JSON) next to PyTorch's flash and
cuDNN backends (attention_torch.py's JSON), in TFLOP/s, with the ratio qkv / flash.

    attention_table.py QKV_JSON TORCH_JSON
"""
import json
import os
import sys


def load(path):
    if not os.path.exists(path):
        return {"results": []}
    with open(path) as f:
        return json.load(f)


def main():
    qkv, torch = load(sys.argv[1]), load(sys.argv[2])
    key = lambda r: (r["seq"], r["head_dim"], r["causal"])
    theirs = {key(r): r for r in torch["results"]}
    print(f"\nFlashAttention, bf16, 16k tokens per batch, hidden 2048, TFLOP/s on "
          f"{qkv.get('device', '?')} (torch {torch.get('torch', '-')})")
    print(f"{'seq':>5} {'D':>4} {'causal':>6} | {'qkv fwd':>8} {'flash fwd':>9} | "
          f"{'qkv f+b':>8} {'flash f+b':>9} {'cuDNN f+b':>9} | {'qkv/flash f+b':>13}")
    fmt = lambda x: f"{x:.1f}" if x is not None else "-"
    for r in qkv["results"]:
        t = theirs.get(key(r), {})
        flash, cudnn = t.get("flash"), t.get("cudnn")
        flash_fb = flash["fwd_bwd_tflops"] if flash else None
        ratio = r["fwd_bwd_tflops"] / flash_fb if flash_fb else None
        print(f"{r['seq']:>5} {r['head_dim']:>4} {('yes' if r['causal'] else 'no'):>6} | "
              f"{fmt(r['fwd_tflops']):>8} {fmt(flash['fwd_tflops'] if flash else None):>9} | "
              f"{fmt(r['fwd_bwd_tflops']):>8} {fmt(flash_fb):>9} "
              f"{fmt(cudnn['fwd_bwd_tflops'] if cudnn else None):>9} | "
              f"{(f'{ratio:.2f}' if ratio else '-'):>13}")


if __name__ == "__main__":
    main()
