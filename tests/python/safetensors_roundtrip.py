"""Moves safetensors files between qkv and PyTorch for tests/test_safetensors.cpp.

  safetensors_roundtrip.py double IN OUT   loads IN into torch tensors, checks the values qkv's
                                           test wrote, saves every tensor doubled (same dtype)
                                           and the metadata plus {"python": "doubled"} to OUT
  safetensors_roundtrip.py write OUT       writes tensors of six dtypes (incl. a scalar and an
                                           empty one) and metadata, the values that
                                           test_safetensors.cpp expects

Exits 1 with a message on stderr when a value differs from what the test expects.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8}

# What test_safetensors.cpp writes before calling `double` (kept in step with that test).
KNOWN_FROM_QKV = {
    "f32": ("F32", [2, 3], [0.5, -1.25, 3.0, 1e-3, -7.5, 100.0]),
    "i32": ("I32", [4], [-3, 0, 7, 1 << 20]),
    "bf16": ("BF16", [3], [1.5, -0.0078125, 256.0]),
    "u8": ("U8", [2, 2], [0, 1, 100, 127]),
    "scalar": ("F32", [], [2.5]),
    "empty": ("F32", [0, 4], []),
}
KNOWN_METADATA = {"format": "pt", "origin": "qkv"}


def load_torch(path):
    """Returns ({name: torch tensor of the stored dtype}, metadata)."""
    arrays, meta = safetensors_np.load(path)
    names = safetensors_np.dtype_names(path)
    return {k: torch.from_numpy(a).to(TORCH_DTYPES[names[k]]) for k, a in arrays.items()}, meta


def save_torch(path, tensors, metadata):
    arrays, dtypes = {}, {}
    for name, t in tensors.items():
        if t.dtype == torch.bfloat16:
            arrays[name] = t.contiguous().view(torch.int16).numpy().view(np.uint16)
            dtypes[name] = "BF16"
        else:
            arrays[name] = t.contiguous().numpy()
    safetensors_np.save(path, arrays, metadata, dtypes)


def check_known(tensors, meta):
    if meta != KNOWN_METADATA:
        raise ValueError(f"metadata {meta}, expected {KNOWN_METADATA}")
    if set(tensors) != set(KNOWN_FROM_QKV):
        raise ValueError(f"tensors {sorted(tensors)}, expected {sorted(KNOWN_FROM_QKV)}")
    for name, (dtype, shape, values) in KNOWN_FROM_QKV.items():
        t = tensors[name]
        want = torch.tensor(values, dtype=TORCH_DTYPES[dtype]).reshape(shape)
        if t.dtype != want.dtype or list(t.shape) != shape or not torch.equal(t, want):
            raise ValueError(f"{name}: got {t.dtype} {list(t.shape)} {t.flatten().tolist()}, "
                             f"expected {want.dtype} {shape} {values}")


def double(src, dst):
    tensors, meta = load_torch(src)
    check_known(tensors, meta)
    save_torch(dst, {k: t * 2 for k, t in tensors.items()}, {**meta, "python": "doubled"})


def write(dst):
    tensors = {
        "w.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.25 - 1,
        "w.f16": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16),
        "w.bf16": torch.tensor([[1.0, -3.5], [0.1, 1e30]], dtype=torch.float32).to(torch.bfloat16),
        "ids.i32": torch.tensor([-2, 0, 7, 2147483647], dtype=torch.int32),
        "ids.i64": torch.tensor([-(1 << 40), 5], dtype=torch.int64),
        "mask.u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
        "scalar": torch.tensor(-4.0),
        "empty": torch.zeros(0, 3),
    }
    save_torch(dst, tensors, {"format": "pt", "written_by": "torch " + torch.__version__})


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["double"] and len(sys.argv) == 4:
            double(sys.argv[2], sys.argv[3])
        elif sys.argv[1:2] == ["write"] and len(sys.argv) == 3:
            write(sys.argv[2])
        else:
            sys.exit(__doc__)
    except ValueError as e:
        sys.exit(f"safetensors_roundtrip.py: {e}")
