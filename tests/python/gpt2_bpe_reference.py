"""GPT-2's byte-level BPE, written from its published definition (openai/gpt-2 src/encoder.py:
bytes_to_unicode, the pre-tokenisation pattern run by the `regex` module, merges by rank), for
qkv's tokenizer tests. Added tokens (here the vocabulary's "<|endoftext|>") are split off the text
first and become their ids, as transformers' GPT-2 tokenizer does.

    gpt2_bpe_reference.py make DIR SEED MERGES TEXTS.json   random vocab.json, merges.txt,
                                                           tokenizer.yaml learnt from the texts
    gpt2_bpe_reference.py encode DIR TEXTS.json OUT.json     ids of each text
    gpt2_bpe_reference.py split TEXTS.json OUT.json          the pre-tokenised words of each text
    gpt2_bpe_reference.py replace IN.json OUT.json           hex bytes -> hex of
                                                           bytes.decode("utf-8", "replace")

make: each merge is drawn at random among the five most frequent adjacent pairs of the texts'
words (so that merges apply to them), ids are a random permutation, "<|endoftext|>" included.
"""
import json
import random
import sys

import regex

PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
END_OF_TEXT = "<|endoftext|>"


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
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = dict(zip(merges, range(len(merges))))
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        symbols = word_symbols(word)
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
        parts = text.split(END_OF_TEXT)
        for k, part in enumerate(parts):
            if k > 0:
                ids.append(self.vocab[END_OF_TEXT])
            for word in PATTERN.findall(part):
                ids.extend(self.vocab[s] for s in self.bpe(word))
        return ids


def make(folder, seed, merge_count, texts):
    rng = random.Random(seed)
    counts = {}
    for text in texts:
        for part in text.split(END_OF_TEXT):
            for word in PATTERN.findall(part):
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


def load(folder):
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
    if mode == "make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), read_json(sys.argv[5]))
    elif mode == "encode":
        encoder = load(sys.argv[2])
        write_json(sys.argv[4], [encoder.encode(t) for t in read_json(sys.argv[3])])
    elif mode == "split":
        write_json(sys.argv[3], [PATTERN.findall(t) for t in read_json(sys.argv[2])])
    elif mode == "replace":
        out = [bytes.fromhex(h).decode("utf-8", "replace").encode("utf-8").hex()
               for h in read_json(sys.argv[2])]
        write_json(sys.argv[3], out)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
