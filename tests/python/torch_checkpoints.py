"""Checkpoints written by torch.save itself, for tests/test_torch_checkpoint.cpp and the
conversion tests.

    torch_checkpoints.py make DIR
        DIR/zip.pt and DIR/legacy.pt (torch.save's ZIP and legacy formats) of one state dict of
        views, dtypes and odd shapes; DIR/zip64.pt, zip.pt rewritten with ZIP64 records (as
        torch writes files over 4 GiB); DIR/expected.safetensors, the same tensors contiguous
        (float64 rounded to float32, bool as uint8), their order in its metadata "order";
        DIR/calls_system.pt (a pickle that would run os.system), DIR/training.pt (a training
        checkpoint {"model": state_dict, "optimizer": ..., "epoch": 3}), DIR/two_models.pt
        ({"model": ..., "ema": ..., "step": 7}), DIR/mixed.pt ({"w": tensor, "epoch": 3}),
        DIR/deflated.pt (zip.pt recompressed), DIR/complex.pt (a complex tensor).
    torch_checkpoints.py from-safetensors IN OUT FORMAT [TIED,...]
        OUT: torch.save (FORMAT zip or legacy) of IN's tensors; the names in TIED after the first
        become the first's tensor (one storage), as tied weights are in Hugging Face's
        pytorch_model.bin.
"""
import collections
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402


class CallsSystem:
    """Pickles as a call of os.system: a reader that ran it would create the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ("touch " + self.marker,)


def state_dict():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=g)
    sd = collections.OrderedDict()
    sd["matrix"] = base
    sd["transposed"] = base.t()  # the same storage, strides (1, 6)
    sd["slice"] = base[1:4, 2:5]  # offset 8
    sd["every_other"] = base[:, ::2]
    sd["half"] = torch.randn(3, 4, generator=g).half()
    sd["bfloat"] = torch.randn(7, generator=g).bfloat16()
    sd["double"] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    sd["long"] = torch.arange(-3, 9).reshape(3, 4)
    sd["int"] = torch.arange(5, dtype=torch.int32) * -1000
    sd["byte"] = torch.arange(250, 256, dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(4, generator=g))
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)  # stride 0
    sd._metadata = collections.OrderedDict({"": {"version": 1}})
    return sd


def expected(sd):
    arrays, dtypes = {}, {}
    for name, t in sd.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            arrays[name], dtypes[name] = t.view(torch.int16).numpy().view(np.uint16), "BF16"
        elif t.dtype == torch.float64:
            arrays[name] = t.float().numpy()
        elif t.dtype == torch.bool:
            arrays[name] = t.to(torch.uint8).numpy()
        else:
            arrays[name] = t.numpy()
    return arrays, dtypes


def write_zip64(src, out):
    """Rewrites the ZIP archive `src` with every size and offset in ZIP64 fields."""
    with zipfile.ZipFile(src) as z:
        entries = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    body, central = bytearray(), bytearray()
    for name, data in entries:
        n, crc, offset = name.encode(), zlib.crc32(data), len(body)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        body += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF,
                            0xFFFFFFFF, len(n), len(extra)) + n + extra + data
        extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(n), len(extra), 0, 0, 0, 0,
                               0xFFFFFFFF) + n + extra
    directory = len(body)
    body += central
    record = len(body)
    body += struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(entries), len(entries),
                        len(central), directory)
    body += struct.pack("<IIQI", 0x07064b50, 0, record, 1)
    body += struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(out, "wb") as f:
        f.write(body)
    with zipfile.ZipFile(out) as z:  # Python's reader agrees that it is a valid archive
        assert z.testzip() is None and [i.filename for i in z.infolist()] == [e[0] for e in entries]


def make(d):
    sd = state_dict()
    torch.save(sd, os.path.join(d, "zip.pt"))
    torch.save(sd, os.path.join(d, "legacy.pt"), _use_new_zipfile_serialization=False)
    write_zip64(os.path.join(d, "zip.pt"), os.path.join(d, "zip64.pt"))
    arrays, dtypes = expected(sd)
    safetensors_np.save(os.path.join(d, "expected.safetensors"), arrays,
                        {"order": ",".join(sd.keys())}, dtypes)
    torch.save({"w": torch.ones(2), "run": CallsSystem(os.path.join(d, "pwned"))},
               os.path.join(d, "calls_system.pt"))
    optimizer = {"state": {0: {"step": torch.tensor(7.0)}}, "param_groups": [{"lr": 0.1}]}
    torch.save({"model": {"w": torch.ones(2)}, "optimizer": optimizer, "epoch": 3},
               os.path.join(d, "training.pt"))
    torch.save({"model": {"w": torch.ones(2)}, "ema": {"w": torch.zeros(2)}, "step": 7},
               os.path.join(d, "two_models.pt"))
    torch.save({"w": torch.ones(2), "epoch": 3}, os.path.join(d, "mixed.pt"))
    with zipfile.ZipFile(os.path.join(d, "zip.pt")) as src, \
            zipfile.ZipFile(os.path.join(d, "deflated.pt"), "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    torch.save({"c": torch.zeros(2, dtype=torch.complex64)}, os.path.join(d, "complex.pt"))


def from_safetensors(src, out, fmt, tied):
    arrays, _ = safetensors_np.load(src)
    sd = collections.OrderedDict((k, torch.from_numpy(a)) for k, a in arrays.items())
    for name in tied[1:]:  # added if missing, as transformers 4 saved tied copies
        sd[name] = sd[tied[0]]
    torch.save(sd, out, _use_new_zipfile_serialization=(fmt == "zip"))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        from_safetensors(sys.argv[2], sys.argv[3], sys.argv[4],
                         sys.argv[5].split(",") if len(sys.argv) > 5 else [])
