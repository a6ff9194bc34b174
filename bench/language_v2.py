"""What index maps and sources cost (issue 14, point 2), measured side by
side in one run: a causal kernel on [B, L, H, D] (`at [b, i, h]`) against
the same kernel on [B, H, L, D], a paged GQA decode against the unpaged
one, and a prefill over two key/value sources (`source` blocks, one
softmax) against one kernel over the keys concatenated beforehand (and the
concatenation itself, which sources avoid, and PyTorch's SDPA on it when
torch is installed). Medians of alternating rounds, so both see the same
machine state.

    .venv/bin/python bench/language_v2.py [--rounds 7]
"""

import argparse

import numpy as np

import attnc
from timing import median_time

CAUSAL = """attention causal_{name} {{
  q: f32[{q}]{qa}; k: f32[{k}]{ka}; v: f32[{k}]{ka}
  mask = j <= i
}}"""

DECODE_PAGED = """attention decode_paged {
  q: f32[B, H, 1, 128]
  k: f32[P, G, S, 128] at [pages[b, j / S], hk, j % S]
  v: f32[P, G, S, 128] at [pages[b, j / S], hk, j % S]
  pages: i32[B, NP]
  seqlen: i32[B]
  range j < NP * S
  mask = j < seqlen[b]
  output lse
}"""

TWO_SOURCES = """attention two_sources {
  q: f32[B, H, L, 128]
  source cache { k: f32[B, H, S, 128]; v: f32[B, H, S, 128] }
  source fresh { k: f32[B, H, L, 128]; v: f32[B, H, L, 128]; mask = j <= i }
}"""

CONCATENATED = """attention concatenated {
  q: f32[B, H, L, 128]; k: f32[B, H, Lk, 128]; v: f32[B, H, Lk, 128]
  mask = j <= i + Lk - L
}"""

DECODE_FLAT = """attention decode_flat {
  q: f32[B, H, 1, 128]
  k: f32[B, G, L, 128]; v: f32[B, G, L, 128]
  seqlen: i32[B]
  mask = j < seqlen[b]
  output lse
}"""


def compare(label, a, b, rounds, reps):
    for f in (a, b):
        f()  # warm up
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(median_time(a, reps))
        tb.append(median_time(b, reps))
    ma, mb = np.median(ta), np.median(tb)
    print(f"{label}: {ma * 1e3:8.2f} ms vs {mb * 1e3:8.2f} ms  ({ma / mb:.3f}x)")
    return ma, mb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--L", type=int, default=2048)
    ap.add_argument("--Lk", type=int, default=32768)
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    B, H, L, D = 1, 8, args.L, 128
    bshd = attnc.compile(CAUSAL.format(name="bshd", q="B, L, H, 128", qa=" at [b, i, h]",
                                       k="B, L, H, 128", ka=" at [b, j, hk]"))
    bhld = attnc.compile(CAUSAL.format(name="bhld", q="B, H, L, 128", qa="",
                                       k="B, H, L, 128", ka=""))
    x = [rng.standard_normal((B, L, H, D)).astype(np.float32) for _ in range(3)]
    t = [np.ascontiguousarray(a.transpose(0, 2, 1, 3)) for a in x]
    np.testing.assert_allclose(bshd(*x), bhld(*t), rtol=0, atol=1e-5)
    print(f"causal f32 B={B} H={H} L={L} D={D}, [B, L, H, D] `at` vs [B, H, L, D]:")
    compare("  causal", lambda: bshd(*x), lambda: bhld(*t), args.rounds, 3)

    Hq, G, S, Lk = 32, 8, 16, args.Lk
    P = Lk // S + 8
    paged = attnc.compile(DECODE_PAGED)
    flat = attnc.compile(DECODE_FLAT)
    q = rng.standard_normal((1, Hq, 1, D)).astype(np.float32)
    kc, vc = (rng.standard_normal((P, G, S, D)).astype(np.float32) for _ in range(2))
    # Four spare entries of -1 past the end, as a cache that grows holds:
    # the index check then runs its exact pass on every call.
    pages = np.concatenate([rng.permutation(P)[: Lk // S], np.full(4, -1)]).astype(np.int32)[None, :]
    seqlen = np.array([Lk], np.int32)
    # The same keys laid out contiguously, for the unpaged kernel.
    kf, vf = (np.ascontiguousarray(c[pages[0, : Lk // S]].transpose(1, 0, 2, 3).reshape(1, G, Lk, D))
              for c in (kc, vc))
    o1 = paged(q, kc, vc, pages=pages, seqlen=seqlen)
    o2 = flat(q, kf, vf, seqlen=seqlen)
    np.testing.assert_allclose(o1, o2, rtol=0, atol=1e-5)
    print(f"GQA decode f32 H={Hq} Hk={G} Lk={Lk} D={D}, pages of {S} keys in random order vs contiguous:")
    tp, tf = compare("  decode", lambda: paged(q, kc, vc, pages=pages, seqlen=seqlen),
                     lambda: flat(q, kf, vf, seqlen=seqlen), args.rounds, 5)
    gb = 2 * G * Lk * D * 4 / 1e9
    print(f"  K+V read: {gb / tp:.1f} GB/s paged, {gb / tf:.1f} GB/s contiguous")

    # A chunk of L new tokens attending to a cache of S keys and to itself
    # (causal): two sources, or one kernel over the keys concatenated.
    B, H, L, S = 1, 8, 512, args.L
    two = attnc.compile(TWO_SOURCES)
    cat = attnc.compile(CONCATENATED)
    q = rng.standard_normal((B, H, L, D)).astype(np.float32)
    kc, vc = (rng.standard_normal((B, H, S, D)).astype(np.float32) for _ in range(2))
    kn, vn = (rng.standard_normal((B, H, L, D)).astype(np.float32) for _ in range(2))
    kcat, vcat = np.concatenate([kc, kn], 2), np.concatenate([vc, vn], 2)
    named = dict(cache_k=kc, cache_v=vc, fresh_k=kn, fresh_v=vn)
    np.testing.assert_allclose(two(q, **named), cat(q, kcat, vcat), rtol=0, atol=1e-5)
    print(f"two sources f32 B={B} H={H} L={L} (new, causal) + S={S} (cache) D={D}:")
    compare("  sources vs concatenated keys", lambda: two(q, **named), lambda: cat(q, kcat, vcat),
            args.rounds, 3)
    compare("  sources vs concatenate + kernel", lambda: two(q, **named),
            lambda: cat(q, np.concatenate([kc, kn], 2), np.concatenate([vc, vn], 2)),
            args.rounds, 3)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(2)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, kcat, vcat))
    mask = torch.from_numpy(np.arange(S + L)[None, :] <= np.arange(L)[:, None] + S)
    sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
    np.testing.assert_allclose(sdpa().numpy(), cat(q, kcat, vcat), rtol=0, atol=1e-4)
    compare("  sources vs torch SDPA (concatenated, bool mask)", lambda: two(q, **named), sdpa,
            args.rounds, 3)


if __name__ == "__main__":
    main()
