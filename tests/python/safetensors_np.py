"""A small safetensors reader and writer on NumPy, written from the format's specification.

Debian 12 packages neither `safetensors` nor a PyTorch new enough to read the format, so the tests
use this to move tensors between qkv and PyTorch.
"""
import json
import struct

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "U8": np.uint8, "BF16": "bf16"}


def _read_header(data):
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8:8 + n])


def dtype_names(path):
    """Returns {name: safetensors dtype name}, e.g. {"w": "BF16"}."""
    with open(path, "rb") as f:
        data = f.read()
    _, header = _read_header(data)
    return {k: e["dtype"] for k, e in header.items() if k != "__metadata__"}


def load(path):
    """Returns ({name: ndarray}, metadata). BF16 is widened to float32."""
    with open(path, "rb") as f:
        data = f.read()
    n, header = _read_header(data)
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        raw = body[begin:end]
        if e["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(e["shape"]).copy()
    return out, meta


def save(path, tensors, metadata=None, dtypes=None):
    """Writes {name: ndarray}. `dtypes` overrides the stored dtype name of some tensors:
    {"w": "BF16"} stores the uint16 array "w" as bfloat16 bit patterns."""
    names = {np.dtype(v).name: k for k, v in DTYPES.items() if v != "bf16"}
    dtypes = dtypes or {}
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        arr = np.asarray(arr, order="C")  # ascontiguousarray would make a scalar 1-D
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        dtype = dtypes[name] if name in dtypes else names[arr.dtype.name]
        if dtype == "BF16" and arr.dtype != np.uint16:
            raise ValueError(f"{name}: BF16 needs uint16 bit patterns, got {arr.dtype}")
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
