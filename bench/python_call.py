"""The cost of calling attnc from Python, measured side by side in one run
(a benchmark program: never a test).

1. Per-call overhead: `kern(q, k, v)` on B=1 H=1 L=16 D=16, NumPy and
   PyTorch inputs, against `attnc-bench call` (JitKernel::run from C++: the
   same argument checks, output allocation and kernel).
2. A real shape: causal f32 B=1 H=8 L=2048 D=128 through Python against
   `attnc run --bench` (the kernel alone from the CLI).

    .venv/bin/python bench/python_call.py [--rounds 5]
"""

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import attnc

ROOT = pathlib.Path(__file__).resolve().parents[1]
CAUSAL = ROOT / "examples" / "variants" / "causal.attn"
BUILD = pathlib.Path(os.environ.get("ATTNC_BUILD", ROOT / "build"))


def per_call_us(fn, iters):
    fn()
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        rounds.append((time.perf_counter() - t0) / iters * 1e6)
    return statistics.median(rounds)


def median_ms(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of Python and C++")
    args = ap.parse_args()
    kern = attnc.load(CAUSAL)
    print(f"attnc {attnc.version} (build {attnc.build_id}), target {kern.target}")

    rng = np.random.default_rng(0)
    small = [rng.standard_normal((1, 1, 16, 16), dtype=np.float32) for _ in range(3)]
    import torch

    small_t = [torch.from_numpy(x) for x in small]
    iters = 20000
    print("\n== per-call overhead, causal f32 B=1 H=1 L=16 D=16 (median of 5 rounds) ==")
    for r in range(args.rounds):
        py = per_call_us(lambda: kern(*small), iters)
        pt = per_call_us(lambda: kern(*small_t), iters)
        cxx = subprocess.run(
            [str(BUILD / "bench" / "attnc-bench"), "call", str(CAUSAL), "--iters", str(iters)],
            capture_output=True, text=True, check=True,
        ).stdout
        c = float(re.search(r"us_per_call=(\S+)", cxx).group(1))
        print(f"round {r}: C++ JitKernel::run {c:6.2f} us | Python numpy {py:6.2f} us (+{py - c:5.2f}) "
              f"| Python torch {pt:6.2f} us (+{pt - c:5.2f})")

    print("\n== causal f32 B=1 H=8 L=2048 D=128 (medians of 10) ==")
    big = [rng.standard_normal((1, 8, 2048, 128), dtype=np.float32) for _ in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        for n, x in zip("qkv", big):
            np.save(f"{tmp}/{n}.npy", x)
        for r in range(args.rounds):
            py = median_ms(lambda: kern(*big), 10)
            cli = subprocess.run(
                [str(BUILD / "tools" / "attnc"), "run", str(CAUSAL), "--out", f"{tmp}/out.npy",
                 "--bench", "10"] + [f"--in={n}={tmp}/{n}.npy" for n in "qkv"],
                capture_output=True, text=True, check=True,
            ).stdout
            c = float(re.search(r"median (\S+) ms", cli).group(1))
            print(f"round {r}: attnc run --bench {c:7.2f} ms | Python {py:7.2f} ms ({py / c:5.3f}x)")


if __name__ == "__main__":
    sys.exit(main())
