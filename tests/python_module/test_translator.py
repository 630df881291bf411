"""qkv.Translator against `qkv translate` and `qkv score` on the same model and settings."""
import pytest

import qkv


@pytest.fixture(scope="module")
def translator(models):
    return qkv.Translator(str(models / "translation"))


@pytest.fixture(scope="module")
def sentences(bible_pairs):
    # An empty line too: the command answers it with an empty line.
    return [src for src, _ in bible_pairs[:12]] + [""]


def test_greedy_equals_the_command(translator, sentences, models, run_qkv):
    results = translator.translate_batch(sentences)
    printed = run_qkv("translate", "--model-dir", models / "translation",
                      stdin="\n".join(sentences) + "\n").split("\n")[:-1]
    assert [r.hypotheses for r in results] == [[line] for line in printed]
    assert all(len(r.scores) == 1 for r in results)


def test_beam_n_best_equals_the_command(translator, sentences, models, run_qkv):
    results = translator.translate_batch(sentences, beam_size=4, n_best=3, length_penalty=0.6)
    printed = run_qkv("translate", "--model-dir", models / "translation", "--beam", 4,
                      "--n-best", 3, "--length-penalty", 0.6, stdin="\n".join(sentences) + "\n")
    # `i ||| text ||| score`, the score as C++ streams print a float (6 significant digits).
    expected = {}
    for line in printed.splitlines():
        i, text, score = line.split(" ||| ")
        expected.setdefault(int(i), []).append((text, score))
    assert len(expected) == len(sentences)
    for i, r in enumerate(results):
        assert len(r.hypotheses) == len(r.scores)
        assert list(zip(r.hypotheses, [f"{s:g}" for s in r.scores])) == expected[i]
        assert r.scores == sorted(r.scores, reverse=True)
    assert all(len(r.hypotheses) == 3 for r in results[:-1])


def test_n_best_is_at_most_the_beam(translator, sentences):
    assert len(translator.translate_batch(sentences[:1], beam_size=2, n_best=5)[0].hypotheses) == 2


def test_score_equals_the_command(translator, bible_pairs, models, run_qkv, tmp_path):
    pairs = bible_pairs[:10]
    (tmp_path / "src").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "tgt").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    printed = run_qkv("score", "--model-dir", models / "translation", "--input",
                      f"{tmp_path / 'src'},{tmp_path / 'tgt'}").splitlines()
    results = translator.score_batch([s for s, _ in pairs], [t for _, t in pairs])
    assert [f"{r.log_prob:.6f}\t{r.tokens}" for r in results] == printed
    assert all(r.log_prob < 0 and r.tokens > 1 for r in results)


def test_results_print_their_fields(translator):
    r = translator.translate_batch(["Y dijo Dios"], beam_size=2, n_best=2)[0]
    assert repr(r) == f"TranslationResult(hypotheses={r.hypotheses!r}, scores={r.scores!r})"
    s = translator.score_batch(["Y dijo Dios"], ["God said"])[0]
    assert repr(s) == f"ScoreResult(log_prob={s.log_prob!r}, tokens={s.tokens})"


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "no-model-here"
    with pytest.raises(RuntimeError, match="no-model-here: no such model directory"):
        qkv.Translator(str(missing))


def test_another_family_is_named(models):
    with pytest.raises(RuntimeError, match="model-type is 'vit', expected seq2seq"):
        qkv.Translator(str(models / "vit"))


def test_bad_settings_are_value_errors(translator, models):
    with pytest.raises(ValueError, match="tpu"):
        qkv.Translator(str(models / "translation"), device="tpu")
    with pytest.raises(ValueError, match="middle"):
        qkv.Translator(str(models / "translation"), checkpoint="middle")
    with pytest.raises(ValueError, match="beam_size 0"):
        translator.translate_batch(["Y dijo Dios"], beam_size=0)
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        translator.score_batch(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="pair 1 has an empty source"):
        translator.score_batch([""], ["God said"])


def test_bad_argument_types_are_type_errors(translator):
    with pytest.raises(TypeError):
        translator.translate_batch("one string, not a list")
    with pytest.raises(TypeError):
        translator.translate_batch([1, 2])
    with pytest.raises(TypeError):
        translator.translate_batch(["Y dijo Dios"], beam_size="4")
    with pytest.raises(TypeError):
        qkv.Translator(42)
