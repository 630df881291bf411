"""Hugging Face Mixtral folders with random weights, and what the float64 reference
(mixtral_reference.py) computes on them, for tests/test_convert_hf_mixtral.cpp.

    mixtral_fixtures.py make DIR SPEC.json
    mixtral_fixtures.py run DIR IO.safetensors

make: SPEC holds "config" (config.json fields), "seed", "format" (safetensors, or shards: two
safetensors shards and model.safetensors.index.json), "layout" (classic: per-expert
block_sparse_moe.experts.M.w1/w2/w3 as transformers 4 writes them; fused: transformers 5's
mlp.gate and mlp.experts.gate_up_proj [E, 2 ff, d] (w1 rows, then w3 rows) and down_proj
[E, d, ff]) and "tokenizer_model" (a SentencePiece model file to copy as tokenizer.model). The
same seed gives the same weights in either layout. Writes DIR/config.json, the weights,
tokenizer.model and tokenizer_config.json, then DIR/expected.safetensors as
hf_gpt_fixtures.py does (ids, prompts, logits, greedy continuations).
run: as hf_gpt_fixtures.py's, with the Mixtral reference on DIR's weights in either layout.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_gpt_fixtures  # noqa: E402
import safetensors_np  # noqa: E402
from mixtral_reference import Mixtral  # noqa: E402


def mixtral_weights(c, rng):
    """Llama's weights, each layer's MLP replaced by a router and experts (classic names)."""
    w = {k: v for k, v in hf_gpt_fixtures.llama_weights(c, rng).items() if ".mlp." not in k}
    d, ff, experts = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    for i in range(c["num_hidden_layers"]):
        moe = f"model.layers.{i}.block_sparse_moe"
        w[moe + ".gate.weight"] = rng.normal(0, 0.5, (experts, d))
        for e in range(experts):
            for m, shape in (("w1", (ff, d)), ("w3", (ff, d)), ("w2", (d, ff))):
                w[f"{moe}.experts.{e}.{m}.weight"] = rng.normal(0, 1 / np.sqrt(shape[1]), shape)
    return w


def fuse(w, c):
    """The classic names -> transformers 5's fused experts."""
    out = {k: v for k, v in w.items() if ".block_sparse_moe." not in k}
    for i in range(c["num_hidden_layers"]):
        moe, mlp = f"model.layers.{i}.block_sparse_moe", f"model.layers.{i}.mlp"
        expert = lambda e, m: w[f"{moe}.experts.{e}.{m}.weight"]  # noqa: E731
        experts = range(c["num_local_experts"])
        out[mlp + ".gate.weight"] = w[moe + ".gate.weight"]
        out[mlp + ".experts.gate_up_proj"] = np.stack(
            [np.concatenate([expert(e, "w1"), expert(e, "w3")]) for e in experts])
        out[mlp + ".experts.down_proj"] = np.stack([expert(e, "w2") for e in experts])
    return out


def unfuse(w):
    """Transformers 5's fused experts -> the classic names (the reference's)."""
    out = {}
    for k, v in w.items():
        if k.endswith(".mlp.gate.weight"):
            out[k.replace(".mlp.", ".block_sparse_moe.")] = v
        elif k.endswith(".mlp.experts.gate_up_proj"):
            moe = k[:-len(".mlp.experts.gate_up_proj")] + ".block_sparse_moe"
            for e, (w1, w3) in enumerate(t.chunk(2, dim=0) for t in v):
                out[f"{moe}.experts.{e}.w1.weight"] = w1
                out[f"{moe}.experts.{e}.w3.weight"] = w3
        elif k.endswith(".mlp.experts.down_proj"):
            moe = k[:-len(".mlp.experts.down_proj")] + ".block_sparse_moe"
            for e, w2 in enumerate(v):
                out[f"{moe}.experts.{e}.w2.weight"] = w2
        else:
            out[k] = v
    return out


def run(d, io_path):
    config = json.load(open(os.path.join(d, "config.json")))
    model = Mixtral(config, unfuse(hf_gpt_fixtures.load_weights(d)))
    hf_gpt_fixtures.run(d, io_path, model)


def make(d, spec):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(spec["seed"])
    c = dict(spec["config"])
    c.update(architectures=["MixtralForCausalLM"], model_type="mixtral", torch_dtype="float32")
    w = mixtral_weights(c, rng)
    hf_gpt_fixtures.save_weights(d, fuse(w, c) if spec["layout"] == "fused" else w, spec["format"])
    shutil.copyfile(spec["tokenizer_model"], os.path.join(d, "tokenizer.model"))
    tok = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
           "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)
    json.dump(tok, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)

    v = c["vocab_size"]
    io = {"ids": rng.integers(0, v, (3, 12)).astype(np.int32),
          "prompt_ids": rng.integers(0, v, (3, 8)).astype(np.int32),
          "prompt_lengths": np.array([8, 3, 5], dtype=np.int32),
          "new_tokens": np.array([10], dtype=np.int32)}
    expected = os.path.join(d, "expected.safetensors")
    safetensors_np.save(expected, io)
    run(d, expected)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "make":
        make(sys.argv[2], json.load(open(sys.argv[3])))
    else:
        run(sys.argv[2], sys.argv[3])
