"""Fixtures of the tests of `import qkv` (ctest -R python_module): the built `qkv` command and
the random model directories of make_random_models, whose answers the module must repeat.

ctest sets PYTHONPATH to the module's folder and QKV_BINARY, QKV_MAKE_RANDOM_MODELS to the
built programs."""
import lzma
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))  # safetensors_np


def _built(variable):
    path = os.environ.get(variable)
    if not path:
        pytest.fail(f"{variable} is not set: run these tests with `ctest -R python_module`")
    return path


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A folder with translation/, gpt/ and vit/: small models with random weights."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run([_built("QKV_MAKE_RANDOM_MODELS"), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def run_qkv():
    """run_qkv(arg, ..., stdin=None) -> the command's stdout; a failure fails the test."""
    binary = _built("QKV_BINARY")

    def run(*args, stdin=None):
        r = subprocess.run([binary, *map(str, args)], input=stdin, capture_output=True,
                           text=True)
        assert r.returncode == 0, f"qkv {' '.join(map(str, args))}: {r.stderr}"
        return r.stdout

    return run


@pytest.fixture(scope="session")
def bible_pairs():
    """(Spanish, English) pairs of the dev split short enough for the random model's 64
    positions on both sides."""
    with lzma.open(os.path.join(ROOT, "data", "bible.es-en.dev.tsv.xz"), "rt",
                   encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    return [(src, tgt) for _, src, tgt in rows if len(src) < 70 and len(tgt) < 70]


def write_png(path, pixels):
    """Writes uint8 pixels [H, W] or [H, W, C] (C 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as an
    8-bit PNG, unfiltered: what the PNG specification requires and nothing more."""
    a = np.asarray(pixels, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    height, width, channels = a.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + a[y].tobytes() for y in range(height))  # filter type 0 per row

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                + chunk(b"IEND", b""))
