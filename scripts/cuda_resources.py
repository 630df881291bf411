#!/usr/bin/env python3
"""Per-kernel resource use from ptxas's report (nvcc -Xptxas=-v), and a check on spills.

    scripts/cuda_resources.py BUILD_LOG [--allow-spills REGEX]

BUILD_LOG holds the output of a build whose CUDA flags include -Xptxas=-v (scripts/test.sh
writes build/cuda/ptxas.log). Prints one row per kernel (entry function): registers per thread,
stack frame, spill stores and loads, in bytes; then fails (exit 1) when a kernel spills
registers to local memory, unless its demangled name matches --allow-spills. A spill is a
slowdown nobody chose: the FlashAttention kernels, pinned by __launch_bounds__ to 168 and 255
registers per thread, must keep their tiles in registers. Exit 2 when the log has no report.
"""
import argparse
import re
import subprocess
import sys

ENTRY = re.compile(r"ptxas info\s*: Compiling entry function '([^']+)' for '(\w+)'")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"ptxas info\s*: Used (\d+) registers")


def parse(lines):
    """The kernels of a ptxas -v report: {(mangled name, arch): {registers, stack, stores, loads}}."""
    kernels, current = {}, None
    for line in lines:
        m = ENTRY.search(line)
        if m:
            current = (m.group(1), m.group(2))
            kernels[current] = {"registers": 0, "stack": 0, "stores": 0, "loads": 0}
            continue
        if current is None:
            continue
        m = FRAME.search(line)
        if m:
            k = kernels[current]
            k["stack"], k["stores"], k["loads"] = (int(g) for g in m.groups())
            continue
        m = USED.search(line)
        if m:
            kernels[current]["registers"] = int(m.group(1))
            current = None  # the entry's report ends with its register count
    return kernels


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                             check=True).stdout.splitlines()
        return out if len(out) == len(names) else names
    except (OSError, subprocess.CalledProcessError):
        return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log")
    parser.add_argument("--allow-spills", default=None,
                        help="a regex of demangled kernel names that may spill")
    args = parser.parse_args()
    with open(args.log, errors="replace") as f:
        kernels = parse(f)
    if not kernels:
        print(f"cuda_resources: no ptxas report in {args.log} (build with -Xptxas=-v, from clean)",
              file=sys.stderr)
        return 2
    keys = list(kernels)
    names = demangle([name for name, _ in keys])
    rows = sorted(zip(names, keys))
    print(f"{'registers':>9} {'stack':>6} {'spill st':>9} {'spill ld':>9}  arch    kernel")
    spilling = []
    for name, (mangled, arch) in rows:
        k = kernels[(mangled, arch)]
        short = re.sub(r"\(.*\)$", "", name)  # without the parameter list
        print(f"{k['registers']:9d} {k['stack']:6d} {k['stores']:9d} {k['loads']:9d}  {arch:7s} {short}")
        if (k["stores"] or k["loads"]) and not (args.allow_spills and
                                                re.search(args.allow_spills, name)):
            spilling.append(short)
    print(f"cuda_resources: {len(kernels)} kernels, {len(spilling)} spilling")
    for name in spilling:
        print(f"cuda_resources: spills registers to local memory: {name}", file=sys.stderr)
    return 1 if spilling else 0


if __name__ == "__main__":
    sys.exit(main())
