"""Hugging Face side of bench/gpu/translate.sh: MarianMTModel.generate at qkv's `base` shape
(d-model 512, 8 heads, ff 2048, 6+6 layers, ReLU, tied embeddings; random weights, 8k vocabulary),
30 source tokens (29 random ids and </s>) to exactly --tgt-len target tokens (min_new_tokens =
max_new_tokens), greedy and beam search, as issue 7 measured it. The weights are cast to the
--dtype (bf16: the whole model in bfloat16, as a Hugging Face user runs it). Timing as qkv_bench's:
one untimed run, then the median of the timed runs (CUDA synchronized).
    hf_translate.py --dtype fp32|bf16 --json out.json
"""
import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import MarianConfig, MarianMTModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dtype", choices=["fp32", "bf16"], required=True)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--src-len", type=int, default=30)
    p.add_argument("--tgt-len", type=int, default=32)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 1])
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--budget", type=float, default=5.0, help="seconds per case")
    p.add_argument("--json", required=True)
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(1)
    pad, eos = 0, 3  # qkv's ids; Marian starts decoding with the pad id
    config = MarianConfig(vocab_size=a.vocab, d_model=512, encoder_layers=6, decoder_layers=6,
                          encoder_attention_heads=8, decoder_attention_heads=8,
                          encoder_ffn_dim=2048, decoder_ffn_dim=2048, activation_function="relu",
                          max_position_embeddings=1024, pad_token_id=pad, eos_token_id=eos,
                          decoder_start_token_id=pad, forced_eos_token_id=None,
                          scale_embedding=True, share_encoder_decoder_embeddings=True,
                          tie_word_embeddings=True, dropout=0.0)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = MarianMTModel(config).to("cuda", dtype=dtype).eval()
    g = torch.Generator().manual_seed(11)
    all_src = torch.randint(4, a.vocab, (max(a.batches), a.src_len), generator=g)
    all_src[:, -1] = eos
    cases = []
    for batch in a.batches:
        src = all_src[:batch].cuda()
        mask = torch.ones_like(src)
        for beam in a.beams:
            name = ("greedy" if beam == 1 else f"beam{beam}") + f"_b{batch}"
            out = {}

            def run(length=a.tgt_len):
                with torch.inference_mode():
                    out["ys"] = model.generate(input_ids=src, attention_mask=mask, num_beams=beam,
                                               do_sample=False, min_new_tokens=length,
                                               max_new_tokens=length, num_return_sequences=1)
                torch.cuda.synchronize()

            run()  # warm-up: kernels, allocator
            runs = []
            for i in range(a.runs):
                if i >= 1 and sum(runs) >= a.budget:
                    break
                t0 = time.perf_counter()
                run()
                runs.append(time.perf_counter() - t0)
            new_tokens = out["ys"].shape[1] - 1  # after the start token
            assert new_tokens == a.tgt_len, f"{name}: {new_tokens} tokens, not {a.tgt_len}"
            rate = batch * a.tgt_len / statistics.median(runs)
            print(f"translate {name:10s} hf {a.dtype} {rate:8.0f} target tokens/s",
                  file=sys.stderr, flush=True)
            cases.append({"name": name, "batch": batch, "beam": beam,
                          "timing": {"median_s": statistics.median(runs), "min_s": min(runs),
                                     "runs_s": runs},
                          "target_tokens_per_s": rate})
    with open(a.json, "w") as f:
        json.dump({"dtype": a.dtype, "device": torch.cuda.get_device_name(),
                   "torch": torch.__version__, "transformers": transformers.__version__,
                   "src_len": a.src_len, "tgt_len": a.tgt_len, "cases": cases}, f, indent=2)


if __name__ == "__main__":
    main()
