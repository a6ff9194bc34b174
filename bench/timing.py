"""Timing helpers shared by the Python benchmarks of bench/."""

import time

import numpy as np


def median_time(fn, n, warm_up=False):
    """The median wall time of n calls of fn (after one untimed call with
    warm_up)."""
    if warm_up:
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))
