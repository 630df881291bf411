"""Hugging Face GPT-2 and Llama folders with random weights, and what the float64 references
(gpt2_reference.py, llama_reference.py) compute on them, for tests/test_convert_hf_gpt.cpp.

    hf_gpt_fixtures.py make DIR SPEC.json
    hf_gpt_fixtures.py run DIR IO.safetensors

make: SPEC holds "arch" (gpt2 or llama), "config" (config.json fields), "seed", "format"
(safetensors, bin: a torch.save pytorch_model.bin, or shards: two safetensors shards and
model.safetensors.index.json), and for gpt2 "prefix" (false: GPT2Model's names without
"transformer.") and "buffers" (true: the attn.bias / attn.masked_bias buffers of older
checkpoints), for llama "tokenizer_model" (a SentencePiece model file to copy as
tokenizer.model) or "tokenizer": "llama3" (Llama 3's layout instead: a tokenizer.json of
byte_bpe_reference.py learnt from the dev text, <|begin_of_text|> first, <|eot_id|> the eos). Writes DIR/config.json and the weights as save_pretrained lays them out (no
lm_head.weight when tied), the tokenizer files (gpt2: a small byte-level BPE vocab.json and
merges.txt learnt here from the bundled English dev text, with <|endoftext|> last;
tokenizer_config.json for both), then DIR/expected.safetensors: random "ids" i32 [3, 12],
prompts "prompt_ids" i32 [3, 8] with "prompt_lengths" i32 [3], and what run writes.
run: IO holds ids, prompt_ids, prompt_lengths and "new_tokens" (i32 [1]); writes back "logits"
(f32 [B, L, V] of ids at positions 0..L-1) and "greedy" (i32 [B, new_tokens]: the argmax
continuation of each prompt's first prompt_lengths[b] tokens, recomputed from the whole sequence
at every step, never stopping early).
"""
import collections
import json
import lzma
import os
import re
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import byte_bpe_reference  # noqa: E402
import safetensors_np  # noqa: E402
from gpt2_reference import GPT2  # noqa: E402
from llama_reference import Llama  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
END_OF_TEXT = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's table: printable bytes stand for themselves, the others for code points 256 on."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_byte_bpe(d, merges_wanted):
    """vocab.json (the 256 byte symbols, one token per merge, <|endoftext|>) and merges.txt:
    the most frequent adjacent pairs, merged one after another, over the dev text's words."""
    byte_chars = bytes_to_unicode()
    with lzma.open(os.path.join(ROOT, "data", "bible.es-en.dev.tsv.xz"), "rt") as f:
        text = " ".join(line.rstrip("\n").split("\t")[2] for line in f)
    words = collections.Counter(
        tuple(byte_chars[b] for b in w.encode()) for w in re.findall(r" ?\w+| ?[^\s\w]+", text))
    vocab = {c: i for i, c in enumerate(byte_chars.values())}
    merges = []
    while len(merges) < merges_wanted:
        pairs = collections.Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[a, b] += n
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        vocab[a + b] = len(vocab)
        merged = collections.Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    vocab[END_OF_TEXT] = len(vocab)
    json.dump(vocab, open(os.path.join(d, "vocab.json"), "w", encoding="utf-8"),
              ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return len(vocab)


def gpt2_weights(c, rng, spec):
    d, n = c["n_embd"], c["n_positions"]
    ff = c.get("n_inner") or 4 * d
    p = "transformer." if spec.get("prefix", True) else ""
    w = {p + "wte.weight": rng.normal(0, 0.5, (c["vocab_size"], d)),
         p + "wpe.weight": rng.normal(0, 0.5, (n, d))}

    def conv1d(name, i, o):  # Conv1D: weight [in, out]
        w[name + ".weight"] = rng.normal(0, 1 / np.sqrt(i), (i, o))
        w[name + ".bias"] = rng.normal(0, 0.1, (o,))

    def norm(name):
        w[name + ".weight"] = 1 + rng.normal(0, 0.1, (d,))
        w[name + ".bias"] = rng.normal(0, 0.1, (d,))

    for i in range(c["n_layer"]):
        h = f"{p}h.{i}"
        norm(h + ".ln_1"), conv1d(h + ".attn.c_attn", d, 3 * d), conv1d(h + ".attn.c_proj", d, d)
        norm(h + ".ln_2"), conv1d(h + ".mlp.c_fc", d, ff), conv1d(h + ".mlp.c_proj", ff, d)
        if spec.get("buffers", False):
            w[h + ".attn.bias"] = np.tril(np.ones((n, n))).reshape(1, 1, n, n)
            w[h + ".attn.masked_bias"] = np.array(-1e4)
    norm(p + "ln_f")
    if not c.get("tie_word_embeddings", True):
        w["lm_head.weight"] = rng.normal(0, 0.5, (c["vocab_size"], d))
    return w


def llama_weights(c, rng):
    d, ff, heads = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    dh = d // heads
    w = {"model.embed_tokens.weight": rng.normal(0, 0.5, (c["vocab_size"], d))}

    def linear(name, o, i, bias):
        w[name + ".weight"] = rng.normal(0, 1 / np.sqrt(i), (o, i))
        if bias:
            w[name + ".bias"] = rng.normal(0, 0.1, (o,))

    def norm(name):
        w[name + ".weight"] = 1 + rng.normal(0, 0.1, (d,))

    attn_bias, mlp_bias = c.get("attention_bias", False), c.get("mlp_bias", False)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        norm(p + ".input_layernorm")
        for proj, o in (("q_proj", d), ("k_proj", kv * dh), ("v_proj", kv * dh)):
            linear(f"{p}.self_attn.{proj}", o, d, attn_bias)
        linear(p + ".self_attn.o_proj", d, d, attn_bias)
        norm(p + ".post_attention_layernorm")
        linear(p + ".mlp.gate_proj", ff, d, mlp_bias), linear(p + ".mlp.up_proj", ff, d, mlp_bias)
        linear(p + ".mlp.down_proj", d, ff, mlp_bias)
    norm("model.norm")
    if not c.get("tie_word_embeddings", False):
        w["lm_head.weight"] = rng.normal(0, 0.5, (c["vocab_size"], d))
    return w


def save_weights(d, w, fmt):
    w = {k: np.asarray(a, dtype=np.float32) for k, a in w.items()}
    if fmt == "safetensors":
        safetensors_np.save(os.path.join(d, "model.safetensors"), w, {"format": "pt"})
    elif fmt == "bin":
        torch.save({k: torch.from_numpy(a) for k, a in w.items()},
                   os.path.join(d, "pytorch_model.bin"))
    elif fmt == "shards":
        names = sorted(w)
        weight_map = {}
        for part, chunk in enumerate((names[0::2], names[1::2])):
            shard = f"model-0000{part + 1}-of-00002.safetensors"
            safetensors_np.save(os.path.join(d, shard), {k: w[k] for k in chunk}, {"format": "pt"})
            weight_map.update({k: shard for k in chunk})
        index = {"metadata": {"total_size": sum(a.nbytes for a in w.values())},
                 "weight_map": weight_map}
        json.dump(index, open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)
    else:
        raise ValueError(f"unknown format {fmt}")


def load_weights(d):
    """{name: float64 tensor} from model.safetensors, its shards, or pytorch_model.bin."""
    single, index = os.path.join(d, "model.safetensors"), os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(single):
        arrays = safetensors_np.load(single)[0]
    elif os.path.exists(index):
        arrays = {}
        for shard in sorted(set(json.load(open(index))["weight_map"].values())):
            arrays.update(safetensors_np.load(os.path.join(d, shard))[0])
    else:
        arrays = {k: t.numpy() for k, t in torch.load(os.path.join(d, "pytorch_model.bin")).items()}
    return {k: torch.tensor(a, dtype=torch.float64) for k, a in arrays.items()}


def model_of(d):
    config = json.load(open(os.path.join(d, "config.json")))
    arch = config["architectures"][0]
    if arch in ("GPT2LMHeadModel", "GPT2Model"):
        return GPT2(config, load_weights(d))
    if arch == "LlamaForCausalLM":
        return Llama(config, load_weights(d))
    raise ValueError(f"{d}: architecture {arch}")


def run(d, io_path, model=None):
    """`model` (a reference with .logits) instead of the folder's GPT-2 or Llama: other
    architectures' fixtures (mixtral_fixtures.py)."""
    io, _ = safetensors_np.load(io_path)
    model = model if model is not None else model_of(d)
    with torch.no_grad():
        logits = model.logits(torch.tensor(io["ids"].astype(np.int64)))
        greedy = []
        for prompt, n in zip(io["prompt_ids"], io["prompt_lengths"]):
            seq = [int(t) for t in prompt[:n]]
            for _ in range(int(io["new_tokens"][0])):
                seq.append(int(torch.argmax(model.logits(torch.tensor([seq]))[0, -1])))
            greedy.append(seq[n:])
    safetensors_np.save(io_path, {**io, "logits": logits.numpy().astype(np.float32),
                                  "greedy": np.array(greedy, dtype=np.int32)})


def make(d, spec):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(spec["seed"])
    c = dict(spec["config"])
    if spec["arch"] == "gpt2":
        vocab = write_byte_bpe(d, 60)
        c.setdefault("vocab_size", vocab)
        c.update(architectures=["GPT2LMHeadModel"], model_type="gpt2", bos_token_id=vocab - 1,
                 eos_token_id=vocab - 1)
        w = gpt2_weights(c, rng, spec)
        tok = {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": False,
               "bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT,
               "model_max_length": c["n_positions"]}
    elif spec.get("tokenizer") == "llama3":
        with lzma.open(os.path.join(ROOT, "data", "bible.es-en.dev.tsv.xz"), "rt") as f:
            texts = [line.rstrip("\n").split("\t")[2] for line in f]
        byte_bpe_reference.make_llama3(d, spec["seed"], 60, texts)
        os.remove(os.path.join(d, "tokenizer.yaml"))  # qkv's file, not Hugging Face's
        t = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
        ids = {a["content"]: a["id"] for a in t["added_tokens"]}
        c.update(architectures=["LlamaForCausalLM"], model_type="llama",
                 vocab_size=len(t["model"]["vocab"]) + len(ids),
                 bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|eot_id|>"])
        w = llama_weights(c, rng)
        tok = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
               "eos_token": "<|eot_id|>", "model_max_length": 1000000000000000019884624838656}
    else:
        shutil.copyfile(spec["tokenizer_model"], os.path.join(d, "tokenizer.model"))
        c.update(architectures=["LlamaForCausalLM"], model_type="llama")
        w = llama_weights(c, rng)
        tok = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
               "bos_token": {"content": "<s>", "lstrip": False, "normalized": False,
                             "rstrip": False, "single_word": False},
               "eos_token": "</s>", "unk_token": "<unk>"}
    c["torch_dtype"] = "float32"
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)
    json.dump(tok, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    save_weights(d, w, spec["format"])

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
