"""Byte-level BPE, written from its published definitions, for qkv's tokenizer tests: GPT-2's
(openai/gpt-2 src/encoder.py: bytes_to_unicode, the pre-tokenisation pattern run by the `regex`
module, merges by rank) and Llama 3's (the same, with Llama 3's pattern and Hugging Face
tokenizers' ignore_merges: a word that is itself a token is not merged). Added tokens are split
off the text first, the longest of those that start first, and become their ids, as
transformers' tokenizers do (GPT-2's: the vocabulary's "<|endoftext|>").

    byte_bpe_reference.py make DIR SEED MERGES TEXTS.json   GPT-2's files: random vocab.json,
                                                           merges.txt, tokenizer.yaml
    byte_bpe_reference.py make-llama3 DIR SEED MERGES TEXTS.json
                                                           Llama 3's: tokenizer.json, tokenizer.yaml
    byte_bpe_reference.py encode DIR TEXTS.json OUT.json     ids of each text (either kind)
    byte_bpe_reference.py split gpt2|llama3 TEXTS.json OUT.json
                                                           the pre-tokenised words of each text
    byte_bpe_reference.py replace IN.json OUT.json           hex bytes -> hex of
                                                           bytes.decode("utf-8", "replace")

make: each merge is drawn at random among the five most frequent adjacent pairs of the texts'
words (so that merges apply to them), ids are a random permutation, "<|endoftext|>" included.
make-llama3: the same merges, then twenty words of the texts that the merges do not make,
added whole to the vocabulary (so that ignore_merges matters), ids 0..n-1 in that order, and
Llama 3's added tokens after them; the post-processor puts <|begin_of_text|> before the text.
"""
import json
import os
import random
import sys

import regex

PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}
END_OF_TEXT = "<|endoftext|>"
LLAMA3_ADDED = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eot_id|>\n"]


def bytes_to_unicode():
    """Byte -> printable character: printable Latin-1 bytes keep their own character, the others
    take U+0100 onwards in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
                 list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_CHARS = bytes_to_unicode()


def word_symbols(word):
    return tuple(BYTE_CHARS[b] for b in word.encode("utf-8"))


def pairs_of(symbols):
    return {(symbols[i], symbols[i + 1]) for i in range(len(symbols) - 1)}


def merge_pair(symbols, first, second):
    """Every occurrence of (first, second) merged, left to right (encoder.py's inner loop)."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
            out.append(first + second)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


class Encoder:
    def __init__(self, vocab, merges, pattern="gpt2", added=(END_OF_TEXT,), whole_words=()):
        self.vocab = vocab
        self.ranks = dict(zip(merges, range(len(merges))))
        self.pattern = regex.compile(PATTERNS[pattern])
        # Added tokens, the longest first: the alternation takes the first that matches.
        longest_first = sorted(added, key=len, reverse=True)
        self.added = regex.compile("(" + "|".join(regex.escape(a) for a in longest_first) + ")")
        self.whole_words = set(whole_words)  # ignore_merges: the model's vocabulary
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        symbols = word_symbols(word)
        if "".join(symbols) in self.whole_words:
            return ("".join(symbols),)
        while len(symbols) > 1:
            ranked = [p for p in pairs_of(symbols) if p in self.ranks]
            if not ranked:
                break
            first, second = min(ranked, key=lambda p: self.ranks[p])
            symbols = merge_pair(symbols, first, second)
        self.cache[word] = symbols
        return symbols

    def encode(self, text):
        ids = []
        for k, part in enumerate(self.added.split(text)):
            if k % 2:
                ids.append(self.vocab[part])
                continue
            for word in self.pattern.findall(part):
                ids.extend(self.vocab[s] for s in self.bpe(word))
        return ids


def learn_merges(rng, merge_count, texts, pattern, added):
    """Merges drawn among the most frequent pairs, the tokens they make, and the words'
    symbols after them."""
    splitter = Encoder({}, [], pattern, added)
    counts = {}
    for text in texts:
        for k, part in enumerate(splitter.added.split(text)):
            if k % 2 == 0:
                for word in splitter.pattern.findall(part):
                    symbols = word_symbols(word)
                    counts[symbols] = counts.get(symbols, 0) + 1
    tokens = [BYTE_CHARS[b] for b in range(256)]
    known = set(tokens)
    merges = []
    for _ in range(merge_count):
        pair_counts = {}
        for symbols, n in counts.items():
            for i in range(len(symbols) - 1):
                pair = (symbols[i], symbols[i + 1])
                pair_counts[pair] = pair_counts.get(pair, 0) + n
        if not pair_counts:
            break
        top = sorted(pair_counts, key=lambda p: (-pair_counts[p], p))[:5]
        first, second = rng.choice(top)
        merges.append((first, second))
        if first + second not in known:
            known.add(first + second)
            tokens.append(first + second)
        merged = {}
        for symbols, n in counts.items():
            symbols = merge_pair(symbols, first, second)
            merged[symbols] = merged.get(symbols, 0) + n
        counts = merged
    return merges, tokens, counts


def make(folder, seed, merge_count, texts):
    rng = random.Random(seed)
    merges, tokens, _ = learn_merges(rng, merge_count, texts, "gpt2", [END_OF_TEXT])
    tokens.append(END_OF_TEXT)
    ids = list(range(len(tokens)))
    rng.shuffle(ids)
    vocab = dict(zip(tokens, ids))
    with open(f"{folder}/vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(f"{folder}/merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for first, second in merges:
            f.write(f"{first} {second}\n")
    with open(f"{folder}/tokenizer.yaml", "w", encoding="utf-8") as f:
        f.write('type: byte-bpe\nadd-bos: false\nbos-token: "<|endoftext|>"\n'
                'eos-token: "<|endoftext|>"\n')


def make_llama3(folder, seed, merge_count, texts):
    rng = random.Random(seed)
    merges, tokens, counts = learn_merges(rng, merge_count, texts, "llama3", LLAMA3_ADDED)
    known = set(tokens)
    unmerged = sorted("".join(s) for s in counts if len(s) > 1 and "".join(s) not in known)
    tokens += rng.sample(unmerged, min(20, len(unmerged)))
    vocab = {t: i for i, t in enumerate(tokens)}
    added = [{"id": len(tokens) + i, "content": c, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, c in enumerate(LLAMA3_ADDED)]
    bos = LLAMA3_ADDED[0]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PATTERNS["llama3"]}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos, "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos: {"id": bos, "ids": [added[0]["id"]], "tokens": [bos]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [list(m) for m in merges]},
    }
    with open(f"{folder}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=2)
    with open(f"{folder}/tokenizer.yaml", "w", encoding="utf-8") as f:
        f.write(f'type: byte-bpe\nadd-bos: true\nbos-token: "{bos}"\n'
                'eos-token: "<|eot_id|>"\n')


def load(folder):
    if os.path.exists(f"{folder}/tokenizer.json"):
        with open(f"{folder}/tokenizer.json", encoding="utf-8") as f:
            t = json.load(f)
        model = t["model"]
        merges = [tuple(m.split(" ") if isinstance(m, str) else m) for m in model["merges"]]
        vocab = dict(model["vocab"])
        vocab.update({a["content"]: a["id"] for a in t["added_tokens"]})
        whole_words = model["vocab"] if model.get("ignore_merges", False) else ()
        return Encoder(vocab, merges, "llama3", [a["content"] for a in t["added_tokens"]],
                       whole_words)
    with open(f"{folder}/vocab.json", encoding="utf-8") as f:
        vocab = json.load(f)
    with open(f"{folder}/merges.txt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = [tuple(line.split(" ")) for line in lines if line]
    return Encoder(vocab, merges)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)


def main():
    mode = sys.argv[1]
    if mode in ("make", "make-llama3"):
        maker = make if mode == "make" else make_llama3
        maker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), read_json(sys.argv[5]))
    elif mode == "encode":
        encoder = load(sys.argv[2])
        write_json(sys.argv[4], [encoder.encode(t) for t in read_json(sys.argv[3])])
    elif mode == "split":
        pattern = regex.compile(PATTERNS[sys.argv[2]])
        write_json(sys.argv[4], [pattern.findall(t) for t in read_json(sys.argv[3])])
    elif mode == "replace":
        out = [bytes.fromhex(h).decode("utf-8", "replace").encode("utf-8").hex()
               for h in read_json(sys.argv[2])]
        write_json(sys.argv[3], out)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
