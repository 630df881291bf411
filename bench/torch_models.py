"""The PyTorch model qkv's benchmarks compare against: qkv's Seq2Seq (post-norm, tied embeddings,
sinusoidal positions, embeddings scaled by sqrt(d)) built from torch.nn Transformer layers, and
the decoding loops a PyTorch user writes for it without a KV cache: fixed-length greedy and beam
search for the `translate` part, and loops with decode::search's stopping rules (until <eos> or a
per-sentence limit) for the `test-split` part.

Dropout sits where qkv has it: on the embeddings, after each sub-layer and inside the
feed-forward block. qkv has no dropout on the attention probabilities, so the nn.MultiheadAttention
modules get dropout 0 (nn.Transformer*Layer would otherwise apply the same rate there too).
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from seq2seq_reference import load_decoder_layer, load_encoder_layer, sinusoidal  # noqa: E402

PRESETS = {  # as nn::Seq2SeqConfig::preset
    "tiny": dict(d_model=256, heads=4, d_ff=1024, encoder_layers=3, decoder_layers=3),
    "small": dict(d_model=512, heads=8, d_ff=2048, encoder_layers=3, decoder_layers=3),
    "base": dict(d_model=512, heads=8, d_ff=2048, encoder_layers=6, decoder_layers=6),
}


def preset_config(name, vocab):
    return dict(PRESETS[name], vocab_size=vocab, activation="relu", pre_norm=False,
                tie_embeddings=True, max_positions=1024, dropout=0.1, pad_id=0, bos_id=2, eos_id=3)


class Seq2Seq(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d = c["d_model"]
        kw = dict(d_model=d, nhead=c["heads"], dim_feedforward=c["d_ff"], dropout=c["dropout"],
                  activation=c["activation"], batch_first=True, norm_first=False)
        self.shared = nn.Parameter(torch.randn(c["vocab_size"], d) / math.sqrt(d))
        self.final_logits_bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.enc = nn.ModuleList(nn.TransformerEncoderLayer(**kw) for _ in range(c["encoder_layers"]))
        self.dec = nn.ModuleList(nn.TransformerDecoderLayer(**kw) for _ in range(c["decoder_layers"]))
        for layer in self.enc:
            layer.self_attn.dropout = 0.0
        for layer in self.dec:
            layer.self_attn.dropout = 0.0
            layer.multihead_attn.dropout = 0.0
        self.drop = nn.Dropout(c["dropout"])
        self.register_buffer("pe", sinusoidal(c["max_positions"], d))

    def load_qkv_weights(self, w):
        """w: {qkv parameter name: ndarray} as qkv_bench wrote them."""
        t = {k: torch.tensor(v) for k, v in w.items()}
        with torch.no_grad():
            self.shared.copy_(t["model.shared.weight"])
            self.final_logits_bias.copy_(t["final_logits_bias"])
            for i, layer in enumerate(self.enc):
                load_encoder_layer(layer, t, f"model.encoder.layers.{i}.")
            for i, layer in enumerate(self.dec):
                load_decoder_layer(layer, t, f"model.decoder.layers.{i}.")

    def embed(self, ids):
        e = F.embedding(ids, self.shared) * math.sqrt(self.c["d_model"]) + self.pe[: ids.shape[1]]
        return self.drop(e)

    def encode(self, src, src_len):
        src_pad = torch.arange(src.shape[1], device=src.device)[None, :] >= src_len[:, None]  # [B, S]
        x = self.embed(src)
        for layer in self.enc:
            x = layer(x, src_key_padding_mask=src_pad)
        return x, src_pad

    def decode(self, tgt_in, memory, src_pad):
        t = tgt_in.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=tgt_in.device), diagonal=1)
        y = self.embed(tgt_in)
        for layer in self.dec:
            y = layer(y, memory, tgt_mask=causal, memory_key_padding_mask=src_pad)
        return y

    def project(self, hidden):
        return F.linear(hidden, self.shared, self.final_logits_bias)

    def forward(self, src, src_len, tgt_in):
        memory, src_pad = self.encode(src, src_len)
        return self.project(self.decode(tgt_in, memory, src_pad))


def banned(c, logits, allow_eos):
    """Tokens search never emits (pad, bos), and <eos> before the fixed output length."""
    ids = [c["pad_id"], c["bos_id"]] + ([] if allow_eos else [c["eos_id"]])
    logits[:, ids] = float("-inf")
    return logits


@torch.inference_mode()
def greedy(model, src, src_len, length):
    """Exactly `length` tokens per sentence; the decoder re-runs on the whole prefix each step."""
    c = model.c
    memory, src_pad = model.encode(src, src_len)
    ys = torch.full((src.shape[0], 1), c["bos_id"], dtype=torch.long)
    for _ in range(length):
        logits = banned(c, model.project(model.decode(ys, memory, src_pad)[:, -1]), False)
        ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], 1)
    return ys[:, 1:]


@torch.inference_mode()
def beam_search(model, src, src_len, length, k):
    """Beam search of width k, exactly `length` tokens, without a KV cache; returns the best."""
    c = model.c
    b = src.shape[0]
    memory, src_pad = model.encode(src, src_len)
    memory, src_pad = memory.repeat_interleave(k, 0), src_pad.repeat_interleave(k, 0)
    ys = torch.full((b * k, 1), c["bos_id"], dtype=torch.long)
    scores = torch.full((b, k), float("-inf"))
    scores[:, 0] = 0  # the k copies of <bos> must not fill the beam with duplicates
    for _ in range(length):
        logits = banned(c, model.project(model.decode(ys, memory, src_pad)[:, -1]), False)
        logp = torch.log_softmax(logits, -1)  # [b*k, V]
        vocab = logp.shape[-1]
        scores, index = (scores.reshape(-1, 1) + logp).reshape(b, k * vocab).topk(k, -1)
        rows = (torch.arange(b)[:, None] * k + index // vocab).reshape(-1)
        ys = torch.cat([ys[rows], (index % vocab).reshape(-1, 1)], 1)
    return ys.reshape(b, k, -1)[:, 0, 1:]


# The decoding of `qkv translate` (decode::search) without a KV cache, for the test-split part:
# each sentence has its own length limit and stops at <eos>; a finished sentence leaves the batch.
# They take any model with encode/decode/project and a config dict `c` (seq2seq_reference's).


@torch.inference_mode()
def greedy_until_eos(model, src, src_len, limits, min_length=0):
    """Greedy decoding; limits[i]: most tokens of sentence i with <eos>, which is forced at the
    limit. Returns each sentence's tokens without <bos>/<eos>."""
    c = model.c
    memory, src_pad = model.encode(src, src_len)
    sentence = torch.arange(src.shape[0])  # the sentence of each row still decoding
    limits = torch.as_tensor(limits)
    ys = torch.full((src.shape[0], 1), c["bos_id"], dtype=torch.long)
    out = [None] * src.shape[0]
    for step in range(int(limits.max())):
        logits = model.project(model.decode(ys, memory, src_pad)[:, -1])  # [rows, V]
        logits[:, [c["pad_id"], c["bos_id"]]] = float("-inf")
        last = limits[sentence] == step + 1
        if step < min_length:
            logits[~last, c["eos_id"]] = float("-inf")
        nxt = logits.argmax(-1)
        nxt[last] = c["eos_id"]
        ended = nxt == c["eos_id"]
        for r in ended.nonzero()[:, 0].tolist():
            out[sentence[r]] = ys[r, 1:].tolist()
        keep = ~ended
        if not keep.any():
            break
        sentence, memory, src_pad = sentence[keep], memory[keep], src_pad[keep]
        ys = torch.cat([ys[keep], nxt[keep, None]], 1)
    return out


@torch.inference_mode()
def beam_search_until_eos(model, src, src_len, limits, k, length_penalty=1.0, min_length=0):
    """Beam search with decode::search's rules: each step walks the 2k best extensions of a
    sentence's live beams, best first; one ending in <eos> is a finished hypothesis (score: log-prob
    / length^length_penalty, <eos> counted), the others refill the beam up to k. A sentence is done
    with k finished hypotheses or at its limit (only <eos> allowed there). Returns the tokens of the
    best finished hypothesis of each sentence."""
    c = model.c
    pad, eos, ninf = c["pad_id"], c["eos_id"], float("-inf")
    b = src.shape[0]
    memory, src_pad = model.encode(src, src_len)
    memory, src_pad = memory.repeat_interleave(k, 0), src_pad.repeat_interleave(k, 0)  # [b*k, S, d]
    sentence = list(range(b))  # the sentence of each group of k rows still decoding
    ys = torch.full((b * k, 1), c["bos_id"], dtype=torch.long)
    scores = torch.full((b, k), ninf)
    scores[:, 0] = 0  # the k copies of <bos> must not fill the beam with duplicates
    finished = [[] for _ in range(b)]  # (score, tokens)
    for step in range(max(limits)):
        logp = torch.log_softmax(model.project(model.decode(ys, memory, src_pad)[:, -1]), -1)
        vocab = logp.shape[-1]
        logp[:, [pad, c["bos_id"]]] = ninf
        logp = logp.view(-1, k, vocab)
        last = torch.tensor([limits[s] == step + 1 for s in sentence])
        if step < min_length:
            logp[~last, :, eos] = ninf
        logp[last, :, :eos] = ninf  # the limit forces <eos>
        logp[last, :, eos + 1:] = ninf
        top, index = (scores[:, :, None] + logp).view(len(sentence), -1).topk(2 * k, -1)
        rows, tokens, new_scores, alive = [], [], [], []
        for i, s in enumerate(sentence):
            beam = []  # (row, token, log-prob)
            for score, idx in zip(top[i].tolist(), index[i].tolist()):
                if score == ninf or len(beam) == k:
                    break
                row, v = i * k + idx // vocab, idx % vocab
                if v == eos:
                    hyp = ys[row, 1:].tolist()
                    finished[s].append((score / max(len(hyp) + 1, 1) ** length_penalty, hyp))
                else:
                    beam.append((row, v, score))
            if len(finished[s]) >= k or not beam or last[i]:
                continue
            beam += [(i * k, pad, ninf)] * (k - len(beam))
            alive.append(s)
            rows += [row for row, _, _ in beam]
            tokens += [v for _, v, _ in beam]
            new_scores += [score for _, _, score in beam]
        if not alive:
            break
        rows = torch.tensor(rows)
        ys = torch.cat([ys[rows], torch.tensor(tokens)[:, None]], 1)
        memory, src_pad = memory[rows], src_pad[rows]
        scores, sentence = torch.tensor(new_scores).view(-1, k), alive
    # max keeps the first of equal scores, as decode::search's stable sort.
    return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]
