"""Linear attention in O(L) (issue 17): time against L for the linear kernel
attn-select-strategy chooses and the quadratic kernel of the same source
(``analyse=False``), causal and non-causal elu+1 features, and causal
retention (RetNet's per-head decay pow(1 - 2^(-5 - h), i - j), normalize =
none), B=1 H=8 D=64 (feature size 64). Medians of a few runs; the quadratic
one only up to --max-quadratic.

    .venv/bin/python bench/linear.py [--max-quadratic 16384] [--max-l 65536]
"""

import argparse

import numpy as np

import attnc
from timing import median_time

SRC = """attention elu_{mask} {{
  q: f32[B, H, L, 64]; k: f32[B, H, L, 64]; v: f32[B, H, L, 64]
  let fq[c] = select(q[c] > 0, q[c] + 1, exp(q[c]))
  let fk[c] = select(k[c] > 0, k[c] + 1, exp(k[c]))
  score = dot(fq, fk)
  {m}
  normalize = linear
}}"""

RETENTION = """attention retention_bench {
  q: f32[B, H, L, 64]; k: f32[B, H, L, 64]; v: f32[B, H, L, 64]
  score = dot(q, k) * 0.125 * pow(1 - pow(2.0, -5 - h), i - j)
  mask = j <= i
  normalize = none
}"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-quadratic", type=int, default=16384)
    ap.add_argument("--max-l", type=int, default=65536)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = [("causal elu+1", SRC.format(mask="causal", m="mask = j <= i")),
             ("non-causal elu+1", SRC.format(mask="full", m="")),
             ("causal retention (per-head decay)", RETENTION)]
    for title, src in cases:
        fast, slow = attnc.compile(src), attnc.compile(src, analyse=False)
        assert fast.strategy == "linear"
        print(f"{title}, B=1 H=8 D=64:")
        print(f"  {'L':>6} {'linear ms':>10} {'ms/1k':>7} {'quadratic ms':>13} {'speed-up':>9}")
        L = 1024
        while L <= args.max_l:
            q, k, v = (0.5 * rng.standard_normal((1, 8, L, 64)).astype(np.float32) for _ in range(3))
            tf = median_time(lambda: fast(q, k, v), 3, warm_up=True)
            line = f"  {L:>6} {tf * 1e3:>10.1f} {tf * 1e3 / (L / 1024):>7.2f}"
            if L <= args.max_quadratic:
                ts = median_time(lambda: slow(q, k, v), 1 if L > 4096 else 3, warm_up=True)
                a, b = fast(q, k, v), slow(q, k, v)
                np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(np.abs(b).max()))
                line += f" {ts * 1e3:>13.1f} {ts / tf:>8.1f}x"
            print(line, flush=True)
            L *= 2


if __name__ == "__main__":
    main()
