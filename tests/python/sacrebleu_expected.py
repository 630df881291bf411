"""Test data and expected values for tests/test_metrics.cpp (qkv's BLEU and chrF).

  python3 tests/python/sacrebleu_expected.py data      # (re)writes tests/data/metrics/*
  python3 tests/python/sacrebleu_expected.py expected  # prints the C++ tables of expected values

`data` needs only the standard library (and /work/shared/data/bible.es-en.dev.tsv.xz, or the
path in $QKV_BIBLE_DEV). `expected` needs sacrebleu importable (PYTHONPATH); it runs sacrebleu's
own BLEU() and CHRF() with their defaults and its Tokenizer13a, nothing of qkv.
A set is a hypothesis file and one or more reference files in tests/data/metrics, one segment per
line, LF line ends; a line is the text between two '\n' (no other stripping).
"""
import lzma
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "metrics")
BIBLE_DEV = os.environ.get("QKV_BIBLE_DEV", "/work/shared/data/bible.es-en.dev.tsv.xz")

# The sets tests/test_metrics.cpp checks, in order: (hypothesis file, reference files).
SETS = [(f"{name}.hyp", [f"{name}.ref"]) for name in
        ["handwritten", "bible_en", "bible_es", "unicode", "identical", "empty_hyps", "short",
         "empty_refs", "no_matches", "exp_smoothing"]]
SETS.insert(2, ("bible_en.hyp", ["bible_en.ref", "bible_en.ref2"]))

HANDWRITTEN = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("He paid $3,000.50 for the car, didn't he?", "He paid $3,000.50 for his car, did not he?"),
    ("\"Quotes\" and (parentheses) are split: yes!", "\"Quotes\" and [brackets] are split; yes!"),
    ("The 1990-1995 period was well-known.", "The period 1990-1995 was well known."),
    ("E-mail me at john.doe@example.com, or call 555-1234.",
     "Email me at john.doe@example.com or call 555-1234."),
    ("It costs 5.5% more... really?!", "It costs 5.5 % more ... really ?!"),
    ("We&apos;ll see &quot;tomorrow&quot; &amp; later &lt;maybe&gt;.",
     "We'll see \"tomorrow\" & later <maybe>."),
    ("Mr. Smith went to Washington, D.C. on 1.2.2003.", "Mr. Smith went to Washington D.C. on 1.2.2003."),
    ("<skipped> a line with a skipped marker", "a line with a skipped marker"),
    ("Tabs\tand  double  spaces   here ", "Tabs and double spaces here"),
    ("3.14 is pi, 2,718 is e-ish; 10-20 items.", "3.14 is pi , 2,718 is e-ish ; 10 - 20 items ."),
    ("A-B-C, 1-2-3, x.y.z, 4.5.6", "A-B-C, 1-2-3, x.y.z, 4.5.6"),
    ("Trailing period.", "Trailing period ."),
    ("{curly} ~tilde~ `back` ^caret^ |pipe| _under_ #hash# *star* +plus+ =eq= \\back\\",
     "{curly} ~tilde~ `back` ^caret^ |pipe| _under_ #hash# *star* +plus+ =eq= \\back\\"),
]

UNICODE = [
    ("Él comió una manzana — y después, otra.", "Él comió una manzana — y luego otra."),
    ("Naïve café résumé: déjà vu!", "Naive café résumé: déjà vu!"),
    ("“Curly quotes” and ‘single’ ones…", "\"Curly quotes\" and 'single' ones..."),
    ("我爱北京天安门。", "我爱北京天安门！"),
    ("東京は日本の首都です", "東京は日本の首都である"),
    ("Emoji 😀 test 🚀 ok", "Emoji 😀 test 🚀 okay"),
    ("Non\u00a0breaking\u3000ideographic\u2009thin space", "Non breaking ideographic thin space"),
    ("Straße – Größe — Übung", "Strasse – Grösse — Übung"),
    ("Ελληνικά κείμενα, σωστά.", "Ελληνικά κείμενα σωστά."),
    ("Русский текст: привет, мир!", "Русский текст: привет мир!"),
    ("e\u0301 combining vs é precomposed", "é combining vs é precomposed"),
    ("Numbers ٣٤٥ and ３４５ full-width", "Numbers 345 and 345 full-width"),
    ("sep\u001cinfo\u001fseparators\u0085nel", "sep info separators nel"),
]

TOKENIZER_CASES = [
    "", " ", "Hello, world!", "  leading and trailing  ", "a.b,c", "a.,b", "1.5,2", "5.", ".5",
    "x.", ",x", "1,000,000.00", "3-4", "a-b", "3 -4", "-3", "x-\ny", "line\nbreak", "<skipped>",
    "<ski<skipped>pped>", "&quot;q&quot; &amp;amp; &lt;&gt; &apos;", "&amp;quot;", "no & entity",
    "$5 #1 @home 50% (a) [b] {c} <d> a/b a\\b a|b a~b a^b a_b a`b a=b a+b a*b a:b a;b a?b a!b",
    "don't 'quoted'", "U.S.A.", "e.g., i.e.", "...", "1...2", "a..b", "2,", ",2", "9.-", "1-2-3",
    "x\u00a0y\u3000z\u2028w", "Ünïcödé—dash…", "数字3.14和1,000。", "tab\there\rcr\fff\vvt",
    "\u001c\u001d\u001e\u001fsep", "a\u0085b", "a\u180eb", "a\u200bb", "😀.😀,😀",
]


def write_lines(name, lines):
    assert all("\n" not in line for line in lines), name
    with open(os.path.join(DATA, name), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))


def read_lines(name):
    with open(os.path.join(DATA, name), encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n") or text == "", name
    return text.split("\n")[:-1]


def perturb(line, i, drop_every=7, swap_every=5, replace_every=11):
    """A deterministic stand-in for a system output: drops, swaps and replaces some words."""
    words = line.split()
    out = [w for j, w in enumerate(words) if j % drop_every != drop_every - 1]
    for j in range(len(out) - 1):
        if (i + j) % swap_every == 0:
            out[j], out[j + 1] = out[j + 1], out[j]
    for j in range(len(out)):
        if (i * 3 + j) % replace_every == 0:
            out[j] = out[j].lower() if j % 2 else "the"
    return " ".join(out)


def make_data():
    os.makedirs(DATA, exist_ok=True)
    with lzma.open(BIBLE_DEV, "rt", encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][:200]
    es = [r[1] for r in rows]
    en = [r[2] for r in rows]
    hyps = ["" if i % 37 == 36 else perturb(line, i) for i, line in enumerate(en)]
    write_lines("bible_en.hyp", hyps)
    write_lines("bible_en.ref", en)
    write_lines("bible_en.ref2", [perturb(line, i + 1, 4, 3, 7) for i, line in enumerate(en)])
    es100 = es[:100]
    write_lines("bible_es.hyp", [perturb(line, i, 6, 4, 9) for i, line in enumerate(es100)])
    write_lines("bible_es.ref", es100)
    write_lines("handwritten.hyp", [h for h, _ in HANDWRITTEN])
    write_lines("handwritten.ref", [r for _, r in HANDWRITTEN])
    write_lines("unicode.hyp", [h for h, _ in UNICODE])
    write_lines("unicode.ref", [r for _, r in UNICODE])
    write_lines("identical.hyp", en[:20])
    write_lines("identical.ref", en[:20])
    write_lines("empty_hyps.hyp", ["", "", ""])
    write_lines("empty_hyps.ref", en[:3])
    write_lines("short.hyp", ["Yes.", "No", "a b"])
    write_lines("short.ref", ["Yes.", "No!", "a c"])
    write_lines("empty_refs.hyp", ["something here", "and more"])
    write_lines("empty_refs.ref", ["", ""])
    write_lines("no_matches.hyp", ["alpha beta gamma delta", "epsilon"])
    write_lines("no_matches.ref", ["one two three four five", "six seven"])
    # unigram and bigram matches only: orders 3 and 4 are smoothed to 1/2 and 1/4 of a match
    write_lines("exp_smoothing.hyp", ["the cat the dog a bird sat", "on a mat under it"])
    write_lines("exp_smoothing.ref", ["the cat sat on a mat near the dog", "a mat on it"])


def cpp_string(text):
    out = []
    for ch in text:
        if ch == "\\" or ch == "\"":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\%03o" % ord(ch))
        elif ord(ch) >= 0x80 and not ch.isprintable() or ch.isspace() and ch != " ":
            out.append("\\u%04x" % ord(ch) if ord(ch) < 0x10000 else "\\U%08x" % ord(ch))
        else:
            out.append(ch)
    return "\"" + "".join(out) + "\""


def print_expected():
    import sacrebleu
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    print(f"// sacrebleu {sacrebleu.__version__}")
    print("const Tokenizer13aCase kTokenizerCases[] = {")
    tok = Tokenizer13a()
    for case in TOKENIZER_CASES:
        print(f"    {{{cpp_string(case)}, {cpp_string(tok(case))}}},")
    print("};")
    print("const MetricCase kMetricCases[] = {")
    for hyp_file, ref_files in SETS:
        hyps = read_lines(hyp_file)
        refs = [read_lines(name) for name in ref_files]
        bleu, chrf = BLEU(), CHRF()
        b = bleu.corpus_score(hyps, refs)
        c = chrf.corpus_score(hyps, refs)
        ref_list = ", ".join(f'"{name}"' for name in ref_files)
        print(f"    {{\"{hyp_file}\", {{{ref_list}}}, {b.score!r}, {c.score!r},")
        print(f"     {cpp_string(b.format(signature=str(bleu.get_signature())))},")
        print(f"     {cpp_string(c.format(signature=str(chrf.get_signature())))}}},")
    print("};")


if __name__ == "__main__":
    if sys.argv[1:] == ["data"]:
        make_data()
    elif sys.argv[1:] == ["expected"]:
        print_expected()
    else:
        sys.exit(__doc__)
