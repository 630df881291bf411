"""compute_type of the three classes: the same products as the commands' --compute-type, and a
directory written by `qkv quantize` (int8 by default) loading everywhere."""
import numpy as np
import pytest

import qkv


@pytest.mark.parametrize("compute_type,flag", [("int8", "int8"), ("bfloat16", "bf16")])
def test_scores_equal_the_command(models, run_qkv, bible_pairs, tmp_path, compute_type, flag):
    pairs = bible_pairs[:8]
    (tmp_path / "src").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "tgt").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    printed = run_qkv("score", "--model-dir", models / "translation", "--compute-type", flag,
                      "--input", f"{tmp_path / 'src'},{tmp_path / 'tgt'}").splitlines()
    translator = qkv.Translator(models / "translation", compute_type=compute_type)
    results = translator.score_batch([s for s, _ in pairs], [t for _, t in pairs])
    assert [f"{r.log_prob:.6f}\t{r.tokens}" for r in results] == printed
    f32 = qkv.Translator(models / "translation").score_batch([s for s, _ in pairs],
                                                              [t for _, t in pairs])
    for got, want in zip(results, f32):
        assert got.log_prob == pytest.approx(want.log_prob, rel=0.03)


def test_a_quantized_directory_runs_int8_by_default(models, run_qkv, tmp_path):
    out = tmp_path / "q8"
    run_qkv("quantize", "--model-dir", models / "translation", "--to", out)
    weights = qkv.load_safetensors(out / "model.safetensors")
    assert weights["model.shared.weight"].dtype == np.int8
    assert weights["model.shared.weight_scale"].dtype == np.float32
    sentences = ["Y dijo Dios", "Sea la luz"]
    default = qkv.Translator(out).translate_batch(sentences, beam_size=2)
    int8 = qkv.Translator(out, compute_type="int8").translate_batch(sentences, beam_size=2)
    assert [r.hypotheses for r in default] == [r.hypotheses for r in int8]
    printed = run_qkv("translate", "--model-dir", out, "--beam", "2",
                      stdin="\n".join(sentences) + "\n").splitlines()
    assert [r.hypotheses[0] for r in default] == printed


def test_generator_and_classifier_take_a_compute_type(models):
    g = qkv.Generator(models / "gpt", compute_type="int8")
    assert len(g.generate_batch(["In the"], max_new_tokens=4)[0].sequences) == 1
    c = qkv.Classifier(models / "vit", compute_type="bf16")
    assert len(c.classify(np.zeros((8, 8, 3), np.uint8), top_k=2)[0]) == 2


def test_bad_compute_types_are_named(models):
    for name in ("default", "float32", "f32", "bf16", "int8"):
        qkv.Translator(str(models / "translation"), compute_type=name)
    with pytest.raises(ValueError, match="'int4'"):
        qkv.Translator(models / "translation", compute_type="int4")
    with pytest.raises(ValueError, match="'fp8'"):
        qkv.Generator(models / "gpt", compute_type="fp8")
