"""qkv.Generator against `qkv generate --prompts FILE` on the same model and settings."""
import json

import pytest

import qkv

PROMPTS = ["In the beginning", "And God said", "", "The earth was"]


@pytest.fixture(scope="module")
def generator(models):
    return qkv.Generator(models / "gpt")  # a pathlib.Path


def command_lines(run_qkv, models, tmp_path, *options):
    """The command's JSON line per prompt and sample."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(p + "\n" for p in PROMPTS), encoding="utf-8")
    out = run_qkv("generate", "--model-dir", models / "gpt", "--prompts", prompts, *options)
    return [json.loads(line) for line in out.splitlines()]


def assert_same(results, lines, samples):
    assert len(lines) == len(PROMPTS) * samples
    assert len(results) == len(PROMPTS)
    for k, line in enumerate(lines):
        r, j = results[k // samples], k % samples
        assert line["prompt"] == PROMPTS[k // samples] and line["sample"] == j
        assert (r.sequences[j], r.finish_reasons[j], r.new_tokens[j], r.prompt_tokens) == (
            line["text"], line["finish_reason"], line["new_tokens"], line["prompt_tokens"])


def test_greedy_equals_the_command(generator, run_qkv, models, tmp_path):
    results = generator.generate_batch(PROMPTS, max_new_tokens=12, temperature=0)
    lines = command_lines(run_qkv, models, tmp_path, "--max-new-tokens", 12, "--temperature", 0)
    assert_same(results, lines, 1)
    assert all(r.new_tokens == [12] and r.finish_reasons == ["length"] for r in results)


def test_sampling_with_a_seed_equals_the_command(generator, run_qkv, models, tmp_path):
    settings = dict(max_new_tokens=10, temperature=0.8, top_k=20, top_p=0.9, min_p=0.01,
                    repetition_penalty=1.2, num_samples=3, seed=7)
    results = generator.generate_batch(PROMPTS, **settings)
    lines = command_lines(run_qkv, models, tmp_path, "--max-new-tokens", 10, "--temperature",
                          0.8, "--top-k", 20, "--top-p", 0.9, "--min-p", 0.01,
                          "--repetition-penalty", 1.2, "--num-samples", 3, "--seed", 7)
    assert_same(results, lines, 3)
    # Three different streams: a random model's samples are not all alike.
    assert any(len(set(r.sequences)) > 1 for r in results)
    assert generator.generate_batch(PROMPTS, **settings)[1].sequences == results[1].sequences
    assert generator.generate_batch(PROMPTS, **dict(settings, seed=8))[1].sequences != \
        results[1].sequences


def test_stop_strings_equal_the_command(generator, run_qkv, models, tmp_path):
    results = generator.generate_batch(PROMPTS, max_new_tokens=16, num_samples=2, seed=3,
                                       stop=["e", "a"])
    lines = command_lines(run_qkv, models, tmp_path, "--max-new-tokens", 16, "--num-samples",
                          2, "--seed", 3, "--stop", "e", "--stop", "a")
    assert_same(results, lines, 2)
    stopped = [s for r in results for s, why in zip(r.sequences, r.finish_reasons)
               if why == "stop"]
    assert stopped and not any("e" in s or "a" in s for s in stopped)
    # One string is a list of one.
    assert generator.generate_batch(PROMPTS, max_new_tokens=16, num_samples=2, seed=3,
                                    stop="e")[0].sequences == \
        generator.generate_batch(PROMPTS, max_new_tokens=16, num_samples=2, seed=3,
                                 stop=["e"])[0].sequences


def test_result_prints_its_fields(generator):
    r = generator.generate_batch(["And"], max_new_tokens=3, temperature=0)[0]
    assert repr(r) == (f"GenerationResult(sequences={r.sequences!r}, finish_reasons="
                       f"{r.finish_reasons!r}, new_tokens={r.new_tokens!r}, "
                       f"prompt_tokens={r.prompt_tokens})")


def test_bad_settings_are_value_errors(generator):
    with pytest.raises(ValueError, match="temperature"):
        generator.generate_batch(["And"], temperature=-1)
    with pytest.raises(ValueError, match="num-samples must be positive, not 0"):
        generator.generate_batch(["And"], num_samples=0)
    with pytest.raises(ValueError, match="stop string must not be empty"):
        generator.generate_batch(["And"], stop=[""])


def test_bad_types_and_directories(generator, models):
    with pytest.raises(TypeError, match="stop must be None, a str or a list of str"):
        generator.generate_batch(["And"], stop=3)
    with pytest.raises(TypeError):
        generator.generate_batch("And")
    with pytest.raises(RuntimeError, match="model-type is 'seq2seq', expected gpt"):
        qkv.Generator(str(models / "translation"))
