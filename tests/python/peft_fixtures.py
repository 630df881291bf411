"""peft LoRA adapter folders for the Hugging Face GPT-2 and Llama folders of hf_gpt_fixtures.py
and the ViTForImageClassification folders made here, written by hand from peft's format, and the
logits of the float64 references (gpt2_reference.py, llama_reference.py, vit_reference.py) with
the adapter's updates merged, for tests/test_convert_peft.cpp.

    peft_fixtures.py vit DIR SEED
    peft_fixtures.py make HF_DIR PEFT_DIR SPEC.json
    peft_fixtures.py run HF_DIR PEFT_DIR IO.safetensors

vit: a random ViTForImageClassification folder (config.json, model.safetensors; 16x16 images of 4x4
patches, 3 classes) and DIR/expected.safetensors with random "images" f32 [2, 3, 16, 16].

make: SPEC holds "seed", "format" (safetensors, or bin: a torch.save adapter_model.bin) and
"config": adapter_config.json's fields (r, lora_alpha, target_modules, use_rslora, rank_pattern,
alpha_pattern, ...). Writes PEFT_DIR/adapter_config.json (peft_type LORA) and the weights as
peft's save_pretrained names them, base_model.model.<module>.lora_A.weight [r, in] and
.lora_B.weight [out, r], for every Linear / Conv1D module of the model's layers that
target_modules selects, both random (B is not zero, unlike a fresh adapter's).
run: IO holds "ids" i32 [B, L] (ViT: "images"); writes back "logits" f32 [B, L, V] ([B, classes])
of HF_DIR's model with every
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
from vit_reference import ViT  # noqa: E402

PREFIX = "base_model.model."


def is_gpt2(config):
    return config["architectures"][0] in ("GPT2LMHeadModel", "GPT2Model")


def layer_modules(weights, gpt2):
    """{module: (in, out)} of the Linear (Conv1D for GPT-2) weights in the model's layers."""
    out = {}
    for key, w in weights.items():
        module = key[:-len(".weight")]
        in_layer = re.search(r"\.(h|layers|layer)\.\d+\.", key)
        if not key.endswith(".weight") or w.dim() != 2 or not in_layer:
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
    task = None if config["architectures"][0] == "ViTForImageClassification" else "CAUSAL_LM"
    cfg = {"peft_type": "LORA", "task_type": task, "base_model_name_or_path": hf,
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
    if config["architectures"][0] == "ViTForImageClassification":
        return vit_model(config, weights)
    return GPT2(config, weights) if gpt2 else Llama(config, weights)


def vit_model(config, weights):
    c = {"d_model": config["hidden_size"], "layers": config["num_hidden_layers"],
         "heads": config["num_attention_heads"], "d_ff": config["intermediate_size"],
         "patch_size": config["patch_size"], "image_size": config["image_size"],
         "channels": config["num_channels"], "layer_norm_eps": config["layer_norm_eps"],
         "classes": len(config["id2label"])}
    torch.set_default_dtype(torch.float64)
    model = ViT(c, {k: w.numpy() for k, w in weights.items()})
    return lambda images: model(torch.tensor(images, dtype=torch.float64))


def make_vit(d, seed):
    rng = np.random.default_rng(seed)
    dm, ff, layers, patch, size, classes = 32, 64, 2, 4, 16, 3
    config = {"architectures": ["ViTForImageClassification"], "model_type": "vit",
              "hidden_size": dm, "num_hidden_layers": layers, "num_attention_heads": 4,
              "intermediate_size": ff, "image_size": size, "patch_size": patch,
              "num_channels": 3, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
              "qkv_bias": True, "id2label": {str(i): f"class{i}" for i in range(classes)}}
    e = "vit.embeddings."
    w = {e + "patch_embeddings.projection.weight": rng.normal(0, 0.2, (dm, 3, patch, patch)),
         e + "patch_embeddings.projection.bias": rng.normal(0, 0.1, (dm,)),
         e + "cls_token": rng.normal(0, 0.5, (1, 1, dm)),
         e + "position_embeddings": rng.normal(0, 0.5, (1, (size // patch) ** 2 + 1, dm))}

    def linear(name, o, i):
        w[name + ".weight"] = rng.normal(0, 1 / np.sqrt(i), (o, i))
        w[name + ".bias"] = rng.normal(0, 0.1, (o,))

    def norm(name):
        w[name + ".weight"] = 1 + rng.normal(0, 0.1, (dm,))
        w[name + ".bias"] = rng.normal(0, 0.1, (dm,))

    for i in range(layers):
        p = f"vit.encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            linear(p + "attention.attention." + proj, dm, dm)
        linear(p + "attention.output.dense", dm, dm)
        linear(p + "intermediate.dense", ff, dm), linear(p + "output.dense", dm, ff)
        norm(p + "layernorm_before"), norm(p + "layernorm_after")
    norm("vit.layernorm")
    linear("classifier", classes, dm)
    os.makedirs(d, exist_ok=True)
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
    safetensors_np.save(os.path.join(d, "model.safetensors"),
                        {k: a.astype(np.float32) for k, a in w.items()}, {"format": "pt"})
    images = rng.normal(0, 1, (2, 3, size, size)).astype(np.float32)
    safetensors_np.save(os.path.join(d, "expected.safetensors"), {"images": images})


def run(hf, peft, io_path):
    io, _ = safetensors_np.load(io_path)
    model = merged_model(hf, peft)
    with torch.no_grad():
        if "images" in io:
            logits = model(io["images"])
        else:
            logits = model.logits(torch.tensor(io["ids"].astype(np.int64)))
    safetensors_np.save(io_path, {**io, "logits": logits.numpy().astype(np.float32)})


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "vit":
        make_vit(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], json.load(open(sys.argv[4])))
    else:
        run(sys.argv[2], sys.argv[3], sys.argv[4])
