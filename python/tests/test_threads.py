"""One kernel called from several threads at once; the GIL is released while
a kernel runs."""

import sys
import threading

import numpy as np

from conftest import assert_close


def test_concurrent_calls_are_right(causal):
    rng = np.random.default_rng(7)
    problems = [tuple(rng.standard_normal((1, 2, 96, 32)).astype(np.float32) for _ in range(3)) for _ in range(8)]
    expected = [causal.reference(*p) for p in problems]
    results = [None] * len(problems)
    errors = []

    def work(t):
        try:
            for _ in range(5):
                results[t] = causal(*problems[t])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for out, ref in zip(results, expected):
        assert_close(out, ref, "f32")


def test_gil_is_released_while_a_kernel_runs(causal):
    # With a switch interval of 100 s the interpreter never takes the GIL
    # from a running thread: the main thread can run during the worker's
    # call only if the call released it.
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal((1, 8, 1024, 64)).astype(np.float32) for _ in range(3))
    causal(q, k, v)  # warm up
    started, done = threading.Event(), threading.Event()
    seen_running = []

    def worker():
        started.set()
        for _ in range(3):
            causal(q, k, v)
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(100)
    try:
        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        seen_running.append(not done.is_set())
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert seen_running == [True]
