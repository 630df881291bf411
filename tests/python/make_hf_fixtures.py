"""Writes the Hugging Face fixtures of tests/test_convert_hf_fixtures.cpp, with `transformers`
itself (run it where transformers, sentencepiece and torch are installed, e.g. the GPU machine):

    python3 tests/python/make_hf_fixtures.py tests/data/hf

OUT/marian: a randomly initialised MarianMTModel from a small config (swish, scaled embeddings,
tied, <pad> last in the vocabulary, as OPUS-MT) with a MarianTokenizer whose SentencePiece
models are trained here on the bundled dev set; OUT/vit: a random ViTForImageClassification with
its ViTImageProcessor; OUT/timm_vit (where timm is installed): a random timm vit_tiny saved by
timm's save_for_hf. Each holds what save_pretrained (save_for_hf) wrote plus
expected.safetensors and expected.json: the tokenizer's input ids, the logits for fixed decoder
inputs (or images), and generate's greedy outputs and their text. About 1 MB in all.
"""
import io
import json
import lzma
import os
import sys

import numpy as np
import sentencepiece as spm
import torch
import transformers
from transformers import (MarianConfig, MarianMTModel, MarianTokenizer, ViTConfig,
                          ViTForImageClassification, ViTImageProcessor)

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
MAX_NEW_TOKENS = 9


def dev_pairs():
    with lzma.open(os.path.join(ROOT, "data", "bible.es-en.dev.tsv.xz"), "rt") as f:
        return [line.rstrip("\n").split("\t")[1:3] for line in f]


def train_spm(lines, path):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model,
                                   vocab_size=150, model_type="bpe", minloglevel=2)
    with open(path, "wb") as f:
        f.write(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def marian(out):
    os.makedirs(out, exist_ok=True)
    pairs = dev_pairs()
    tmp = os.path.join(out, "tmp")
    os.makedirs(tmp, exist_ok=True)
    src = train_spm([p[0] for p in pairs[:300]], os.path.join(tmp, "source.spm"))
    tgt = train_spm([p[1] for p in pairs[:300]], os.path.join(tmp, "target.spm"))
    vocab = {"</s>": 0, "<unk>": 1}
    for sp in (src, tgt):
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if not sp.is_control(i) and not sp.is_unknown(i) and piece not in vocab:
                vocab[piece] = len(vocab)
    vocab["<pad>"] = len(vocab)
    with open(os.path.join(tmp, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    tok = MarianTokenizer(os.path.join(tmp, "source.spm"), os.path.join(tmp, "target.spm"),
                          os.path.join(tmp, "vocab.json"), source_lang="es", target_lang="en",
                          model_max_length=64)
    tok.save_pretrained(out)
    for name in os.listdir(tmp):
        os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)

    v = len(vocab)
    config = MarianConfig(vocab_size=v, decoder_vocab_size=v, d_model=32, encoder_layers=2,
                          decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                          encoder_ffn_dim=64, decoder_ffn_dim=64, activation_function="swish",
                          scale_embedding=True, max_position_embeddings=64, pad_token_id=v - 1,
                          eos_token_id=0, decoder_start_token_id=v - 1, forced_eos_token_id=0,
                          share_encoder_decoder_embeddings=True, dropout=0.0)
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 0.5)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    # Set here, not only in the config: transformers versions differ in what they copy from the
    # model config into the generation config.
    gen = model.generation_config
    gen.decoder_start_token_id = gen.pad_token_id = v - 1
    gen.eos_token_id = gen.forced_eos_token_id = 0
    gen.bad_words_ids = [[v - 1]]
    model.save_pretrained(out)

    # Sentences whose pieces are all known: newer MarianTokenizers map a piece missing from
    # vocab.json to its SentencePiece id (an unrelated entry), qkv maps it to <unk>.
    known = lambda s: src.unk_id() not in src.encode(s)
    sentences = [p[0] for p in pairs if len(p[0]) <= 60 and known(p[0])][:6]
    batch = tok(sentences, return_tensors="pt", padding=True)
    g = torch.Generator().manual_seed(1)
    decoder_in = torch.randint(0, v, (len(sentences), 7), generator=g)
    decoder_in[:, 0] = config.decoder_start_token_id
    with torch.no_grad():
        logits = model(**batch, decoder_input_ids=decoder_in).logits
        generated = model.generate(**batch, num_beams=1, do_sample=False,
                                   max_new_tokens=MAX_NEW_TOKENS)
    # Target pieces through target.spm (newer versions default to source.spm with one vocab).
    texts = tok.batch_decode(generated, skip_special_tokens=True, use_source_tokenizer=False)
    safetensors_np.save(os.path.join(out, "expected.safetensors"), {
        "input_ids": batch["input_ids"].numpy().astype(np.int32),
        "attention_mask": batch["attention_mask"].numpy().astype(np.int32),
        "decoder_input_ids": decoder_in.numpy().astype(np.int32),
        "logits": logits.numpy().astype(np.float32),
        "generated": generated.numpy().astype(np.int32)})
    json.dump({"sentences": sentences, "texts": texts, "max_new_tokens": MAX_NEW_TOKENS,
               "transformers": transformers.__version__},
              open(os.path.join(out, "expected.json"), "w"), indent=1, ensure_ascii=False)


def vit(out):
    os.makedirs(out, exist_ok=True)
    labels = ["cat", "dog", "bird"]
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, image_size=16, patch_size=4, num_channels=3,
                       num_labels=3, id2label=dict(enumerate(labels)),
                       label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(2)
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layernorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.4, 0.5, 0.6],
                      image_std=[0.2, 0.25, 0.3]).save_pretrained(out)
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    safetensors_np.save(os.path.join(out, "expected.safetensors"),
                        {"pixel_values": pixels.numpy(), "logits": logits.numpy()})
    json.dump({"transformers": transformers.__version__},
              open(os.path.join(out, "expected.json"), "w"))


def timm_vit(out):
    try:
        import timm
    except ImportError:
        print("timm is not installed: no timm_vit fixture")
        return
    try:
        from timm.models._hub import save_for_hf
    except ImportError:
        from timm.models.hub import save_for_hf
    os.makedirs(out, exist_ok=True)
    args = dict(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0)
    torch.manual_seed(4)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4,
                              **args).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    save_for_hf(model, out, model_config={"label_names": ["cat", "dog", "bird", "fish"]},
                model_args=args, safe_serialization=True)
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(pixels)
    safetensors_np.save(os.path.join(out, "expected.safetensors"),
                        {"pixel_values": pixels.numpy(), "logits": logits.numpy()})
    json.dump({"timm": timm.__version__}, open(os.path.join(out, "expected.json"), "w"))


if __name__ == "__main__":
    marian(os.path.join(sys.argv[1], "marian"))
    vit(os.path.join(sys.argv[1], "vit"))
    timm_vit(os.path.join(sys.argv[1], "timm_vit"))
