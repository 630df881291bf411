"""peft LoRA adapter folders for the Hugging Face GPT-2 and Llama folders of hf_gpt_fixtures.py,
written by hand from peft's format, and the logits of the float64 references (gpt2_reference.py,
llama_reference.py) with the adapter's updates merged, for tests/test_convert_peft.cpp.

    peft_fixtures.py make HF_DIR PEFT_DIR SPEC.json
    peft_fixtures.py run HF_DIR PEFT_DIR IO.safetensors

make: SPEC holds "seed", "format" (safetensors, or bin: a torch.save adapter_model.bin) and
"config": adapter_config.json's fields (r, lora_alpha, target_modules, use_rslora, rank_pattern,
alpha_pattern, ...). Writes PEFT_DIR/adapter_config.json (peft_type LORA) and the weights as
peft's save_pretrained names them, base_model.model.<module>.lora_A.weight [r, in] and
.lora_B.weight [out, r], for every Linear / Conv1D module of the model's layers that
target_modules selects, both random (B is not zero, unlike a fresh adapter's).
run: IO holds "ids" i32 [B, L]; writes back "logits" f32 [B, L, V] of HF_DIR's model with every
update of PEFT_DIR merged into its weight, W += scaling B A (GPT-2's Conv1D stores W [in, out]:
it gains (B A)^T).

peft's definitions: a target selects a module named as it or ending in "." + it; a module's rank
and alpha are those of the first rank_pattern / alpha_pattern key (a regular expression) that
matches its name whole or after a ".", else r and lora_alpha; scaling = alpha / r, or
alpha / sqrt(r) with use_rslora.
"""
import json
import math
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402
from hf_gpt_fixtures import load_weights  # noqa: E402
from gpt2_reference import GPT2  # noqa: E402
from llama_reference import Llama  # noqa: E402

PREFIX = "base_model.model."


def is_gpt2(config):
    return config["architectures"][0] in ("GPT2LMHeadModel", "GPT2Model")


def layer_modules(weights, gpt2):
    """{module: (in, out)} of the Linear (Conv1D for GPT-2) weights in the model's layers."""
    out = {}
    for key, w in weights.items():
        module = key[:-len(".weight")]
        if not key.endswith(".weight") or w.dim() != 2 or not re.search(r"\.(h|layers)\.\d+\.",
                                                                          key):
            continue
        out[module] = (w.shape[0], w.shape[1]) if gpt2 else (w.shape[1], w.shape[0])
    return out


def selects(target, module):
    return module == target or module.endswith("." + target)


def pattern_value(patterns, module, fallback):
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return fallback


def rank_alpha(cfg, module):
    r = pattern_value(cfg.get("rank_pattern") or {}, module, cfg["r"])
    alpha = pattern_value(cfg.get("alpha_pattern") or {}, module, cfg.get("lora_alpha", r))
    return r, alpha


def make(hf, peft, spec):
    config = json.load(open(os.path.join(hf, "config.json")))
    modules = layer_modules(load_weights(hf), is_gpt2(config))
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": hf,
           "bias": "none", "lora_dropout": 0.0, "use_rslora": False, "rank_pattern": {},
           "alpha_pattern": {}, "fan_in_fan_out": is_gpt2(config), **spec["config"]}
    rng = np.random.default_rng(spec["seed"])
    tensors = {}
    for module, (i, o) in sorted(modules.items()):
        if not any(selects(t, module) for t in cfg["target_modules"]):
            continue
        r, _ = rank_alpha(cfg, module)
        tensors[f"{PREFIX}{module}.lora_A.weight"] = rng.normal(0, 1 / np.sqrt(i), (r, i))
        tensors[f"{PREFIX}{module}.lora_B.weight"] = rng.normal(0, 0.2, (o, r))
    os.makedirs(peft, exist_ok=True)
    json.dump(cfg, open(os.path.join(peft, "adapter_config.json"), "w"), indent=2)
    tensors = {k: a.astype(np.float32) for k, a in tensors.items()}
    if spec["format"] == "bin":
        torch.save({k: torch.from_numpy(a) for k, a in tensors.items()},
                   os.path.join(peft, "adapter_model.bin"))
    else:
        safetensors_np.save(os.path.join(peft, "adapter_model.safetensors"), tensors,
                            {"format": "pt"})


def load_adapter(peft):
    path = os.path.join(peft, "adapter_model.safetensors")
    if os.path.exists(path):
        arrays = safetensors_np.load(path)[0]
    else:
        arrays = {k: t.numpy() for k, t in torch.load(os.path.join(peft, "adapter_model.bin")).items()}
    return {k: torch.tensor(a, dtype=torch.float64) for k, a in arrays.items()}


def merged_model(hf, peft):
    config = json.load(open(os.path.join(hf, "config.json")))
    cfg = json.load(open(os.path.join(peft, "adapter_config.json")))
    weights, gpt2 = load_weights(hf), is_gpt2(config)
    modules = layer_modules(weights, gpt2)
    tensors = load_adapter(peft)
    for key, a in tensors.items():
        if key.endswith(".lora_B.weight"):
            continue
        module = key[len(PREFIX):-len(".lora_A.weight")]
        assert module in modules, f"{key}: no such module"
        assert any(selects(t, module) for t in cfg["target_modules"]), f"{module} not targeted"
        b = tensors[f"{PREFIX}{module}.lora_B.weight"]
        r, alpha = rank_alpha(cfg, module)
        assert a.shape[0] == r and b.shape[1] == r, f"{module}: rank {a.shape[0]}, config {r}"
        scaling = alpha / (math.sqrt(r) if cfg.get("use_rslora") else r)
        delta = scaling * (b @ a)  # [out, in]
        weights[module + ".weight"] += delta.T if gpt2 else delta
    return GPT2(config, weights) if gpt2 else Llama(config, weights)


def run(hf, peft, io_path):
    io, _ = safetensors_np.load(io_path)
    with torch.no_grad():
        logits = merged_model(hf, peft).logits(torch.tensor(io["ids"].astype(np.int64)))
    safetensors_np.save(io_path, {**io, "logits": logits.numpy().astype(np.float32)})


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], json.load(open(sys.argv[4])))
    else:
        run(sys.argv[2], sys.argv[3], sys.argv[4])
