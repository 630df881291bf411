#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the shapes of bench/gpu/attention.cpp.

16k tokens per batch (batch = 16384 / seq), hidden 2048 (heads = 2048 / D), bf16, [B, H, L, D]
tensors; forward and forward+backward under the flash backend and the cuDNN backend, timed the
same way as qkv: CUDA events around each call, warm-up first, the median of the timed runs,
rotating among several input sets. Without torch or a CUDA device it says so and exits 0.

    attention_torch.py [--json PATH] [--repeats N] [--seqs 512,1024,...] [--dims 64,128]
"""
import argparse
import json
import sys

TOKENS, HIDDEN = 16384, 2048
INPUT_SETS, WARMUP = 3, 3


def median_ms(torch, fn, repeats):
    for i in range(WARMUP):
        fn(i % INPUT_SETS)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(repeats):
        start.record()
        fn(i % INPUT_SETS)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[repeats // 2]


def time_backend(torch, backend, sets, shape, causal, repeats):
    """(fwd ms, fwd+bwd ms) under one SDPA backend, or None where it refuses the shape."""
    from torch.nn.attention import sdpa_kernel

    sdpa = torch.nn.functional.scaled_dot_product_attention
    views = [[x.view(shape) for x in s] for s in sets]  # q, k, v, dout
    leaves = [[x.detach().requires_grad_() for x in v[:3]] for v in views]

    def forward(i):
        with torch.no_grad():
            sdpa(*views[i][:3], is_causal=causal)

    def forward_backward(i):
        for x in leaves[i]:
            x.grad = None
        sdpa(*leaves[i], is_causal=causal).backward(views[i][3])

    try:
        with sdpa_kernel(backend):
            return median_ms(torch, forward, repeats), median_ms(torch, forward_backward, repeats)
    except RuntimeError as e:
        print(f"  {backend}: {str(e).splitlines()[0]}", file=sys.stderr)
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default="attention_torch.json")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seqs", default="512,1024,2048,4096,8192")
    parser.add_argument("--dims", default="64,128")
    args = parser.parse_args()
    try:
        import torch
        from torch.nn.attention import SDPBackend
    except ImportError as e:
        print(f"attention_torch.py: no PyTorch ({e}), nothing to time (skipped)")
        return 0
    if not torch.cuda.is_available():
        print("attention_torch.py: no CUDA device, nothing to time (skipped)")
        return 0

    device = torch.cuda.get_device_name()
    print(f"PyTorch {torch.__version__} scaled_dot_product_attention on {device}, bf16")
    gen = torch.Generator(device="cuda").manual_seed(2026)
    sets = [[torch.randn(TOKENS * HIDDEN, device="cuda", dtype=torch.bfloat16, generator=gen)
             for _ in range(4)] for _ in range(INPUT_SETS)]
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    results = []
    for d in [int(x) for x in args.dims.split(",")]:
        for seq in [int(x) for x in args.seqs.split(",")]:
            for causal in (False, True):
                batch, heads = TOKENS // seq, HIDDEN // d
                fwd_flops = 4.0 * batch * heads * seq * seq * d * (0.5 if causal else 1.0)
                row = {"seq": seq, "head_dim": d, "causal": causal, "batch": batch,
                       "heads": heads}
                line = f"seq {seq:5d}  D {d:3d}  {'causal' if causal else 'full':6s}"
                for name, backend in backends.items():
                    timing = time_backend(torch, backend, sets, (batch, heads, seq, d), causal,
                                          args.repeats)
                    if timing is None:
                        row[name] = None
                        line += f"  {name} -"
                        continue
                    fwd_ms, fwd_bwd_ms = timing
                    row[name] = {"fwd_ms": fwd_ms, "fwd_tflops": fwd_flops / fwd_ms / 1e9,
                                 "fwd_bwd_ms": fwd_bwd_ms,
                                 "fwd_bwd_tflops": 3.5 * fwd_flops / fwd_bwd_ms / 1e9}
                    line += (f"  {name} fwd {row[name]['fwd_tflops']:6.1f} fwd+bwd "
                             f"{row[name]['fwd_bwd_tflops']:6.1f} TFLOP/s")
                print(line, flush=True)
                results.append(row)
    with open(args.json, "w") as f:
        json.dump({"device": device, "torch": torch.__version__, "repeats": args.repeats,
                   "input_sets": INPUT_SETS, "results": results}, f, indent=1)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
