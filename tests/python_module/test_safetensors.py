"""qkv.load_safetensors against numpy reading the file by the format's specification
(tests/python/safetensors_np.py: 8-byte little-endian header length, JSON header, raw data)."""
import numpy as np
import pytest

import qkv
import safetensors_np


def test_model_weights_equal_the_file(models):
    path = str(models / "translation" / "model.safetensors")
    loaded = qkv.load_safetensors(path)
    expected, _ = safetensors_np.load(path)
    assert len(loaded) > 10 and sorted(loaded) == sorted(expected)
    for name, array in expected.items():
        assert loaded[name].dtype == np.float32 and loaded[name].shape == array.shape, name
        assert np.array_equal(loaded[name], array), name


def test_every_dtype(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5,)).astype(np.float16),
        "bf16": rng.integers(0, 2**16, size=(2, 3), dtype=np.uint16) & 0xBFFF,  # no NaNs
        "i32": rng.integers(-2**31, 2**31, size=(4,), dtype=np.int32),
        "i64": rng.integers(-2**62, 2**62, size=(2, 2), dtype=np.int64),
        "u8": rng.integers(0, 256, size=(2, 2, 2), dtype=np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),
    }
    path = str(tmp_path / "all.safetensors")
    safetensors_np.save(path, tensors, dtypes={"bf16": "BF16"})
    expected, _ = safetensors_np.load(path)
    loaded = qkv.load_safetensors(path)
    assert sorted(loaded) == sorted(tensors)
    again = qkv.load_safetensors(tmp_path / "all.safetensors")  # named by a pathlib.Path
    assert all(np.array_equal(again[name], loaded[name]) for name in loaded)
    dtypes = {"f32": np.float32, "f16": np.float16, "bf16": np.float32, "i32": np.int32,
              "i64": np.int64, "u8": np.uint8, "scalar": np.float32}
    for name, array in expected.items():
        assert loaded[name].dtype == dtypes[name] and loaded[name].shape == array.shape, name
        assert np.array_equal(loaded[name], array), name
    # bfloat16 widened: the bit pattern in the upper half of a float32.
    assert np.array_equal(loaded["bf16"].view(np.uint32) >> 16, tensors["bf16"])


def test_bad_files_are_named(tmp_path):
    with pytest.raises(RuntimeError, match="nothing.safetensors"):
        qkv.load_safetensors(str(tmp_path / "nothing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(RuntimeError, match="bad.safetensors"):
        qkv.load_safetensors(str(bad))
