"""Language v2 (LANGUAGE.md §8) from Python: the examples/variants/v2 kernels
on the layouts and data structures they were written for, each checked
against a NumPy computation of the same thing.

    .venv/bin/python examples/python/language_v2.py
"""

import pathlib
import time

import numpy as np

import attnc

V2 = pathlib.Path(__file__).resolve().parents[2] / "examples" / "variants" / "v2"
rng = np.random.default_rng(0)


def softmax(s):
    m = s.max(-1, keepdims=True)
    w = np.exp(s - np.where(np.isfinite(m), m, 0))
    d = w.sum(-1, keepdims=True)
    return w / np.where(d > 0, d, 1)


def report(name, out, ref, seconds):
    err = np.abs(np.asarray(out, np.float64) - ref).max()
    print(f"  {name:<16} max |attnc - numpy| = {err:.1e}   {seconds * 1e3:7.1f} ms")


print("== language v2: index maps, lazy checks, channel vectors ==")

# PyTorch's [B, L, H, D] layout, no transposes.
kern = attnc.load(V2 / "bshd_causal.attn")
q, k, v = (rng.standard_normal((1, 512, n, 64)).astype(np.float32) for n in (8, 2, 2))
t0 = time.perf_counter()
out = kern(q, k, v)
dt = time.perf_counter() - t0
qh, kh, vh = (x.transpose(0, 2, 1, 3).astype(np.float64) for x in (q, k, v))
kh, vh = np.repeat(kh, 4, 1), np.repeat(vh, 4, 1)
s = qh @ kh.transpose(0, 1, 3, 2) / 8 + np.triu(np.full((512, 512), -np.inf), 1)
report("bshd_causal", out, softmax(s) @ vh, dt)

# A paged KV cache: pages in random order, -1 past each sequence's end.
kern = attnc.load(V2 / "paged_decode.attn")
S, P, seqlen = 16, 64, np.array([300, 7, 129], np.int32)
kc, vc = (rng.standard_normal((P, 2, S, 64)).astype(np.float32) for _ in range(2))
qp = q = rng.standard_normal((3, 8, 1, 64)).astype(np.float32)
pages = np.full((3, 20), -1, np.int32)
free = list(rng.permutation(P))
for b, n in enumerate(seqlen):
    pages[b, : (n + S - 1) // S] = [free.pop() for _ in range((n + S - 1) // S)]
t0 = time.perf_counter()
out = kern(q, kc, vc, pages=pages, seqlen=seqlen)
dt = time.perf_counter() - t0
ref = np.zeros(out.shape)
for b, n in enumerate(seqlen):
    rows = [(pages[b, j // S], j % S) for j in range(n)]
    for h in range(8):
        kk = np.stack([kc[p, h // 4, r] for p, r in rows]).astype(np.float64)
        vv = np.stack([vc[p, h // 4, r] for p, r in rows]).astype(np.float64)
        ref[b, h, 0] = softmax(kk @ q[b, h, 0] / 8) @ vv
report("paged_decode", out, ref, dt)

# A packed batch of sequences of 0 to 200 tokens.
kern = attnc.load(V2 / "varlen_causal.attn")
lens = [200, 0, 1, 77]
start = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
x = [rng.standard_normal((start[-1], 4, 64)).astype(np.float32) for _ in range(3)]
t0 = time.perf_counter()
out = kern(*x, start=start, max_len=max(lens))
dt = time.perf_counter() - t0
ref = np.zeros(out.shape)
for b, n in enumerate(lens):
    if n:
        qq, kk, vv = (a[start[b]: start[b] + n].transpose(1, 0, 2).astype(np.float64) for a in x)
        s = qq @ kk.transpose(0, 2, 1) / 8 + np.triu(np.full((n, n), -np.inf), 1)
        ref[b, :, :n] = softmax(s) @ vv
report("varlen_causal", out, ref, dt)

# RoPE computed in the kernel.
kern = attnc.load(V2 / "rope_causal.attn")
q, k, v = (rng.standard_normal((1, 4, 256, 64)).astype(np.float32) for _ in range(3))
t0 = time.perf_counter()
out = kern(q, k, v)
dt = time.perf_counter() - t0
ang = np.arange(256)[:, None] * 10000.0 ** (-np.arange(32) / 32)
rope = lambda a: np.concatenate([a[..., :32] * np.cos(ang) - a[..., 32:] * np.sin(ang),
                                 a[..., 32:] * np.cos(ang) + a[..., :32] * np.sin(ang)], -1)
s = rope(q.astype(np.float64)) @ rope(k.astype(np.float64)).transpose(0, 1, 3, 2) / 8
report("rope_causal", out, softmax(s + np.triu(np.full((256, 256), -np.inf), 1)) @ v, dt)

# Performer features through an aux projection, normalize = linear.
kern = attnc.load(V2 / "performer.attn")
w = rng.standard_normal((64, 64)).astype(np.float32)
q, k, v = (0.5 * rng.standard_normal((1, 4, 256, 64)).astype(np.float32) for _ in range(3))
t0 = time.perf_counter()
out = kern(q, k, v, w=w)
dt = time.perf_counter() - t0
f = lambda a: np.exp(a.astype(np.float64) @ w.T * 0.35355 - (a.astype(np.float64) ** 2).sum(-1, keepdims=True) / 16)
s = f(q) @ f(k).transpose(0, 1, 3, 2)
report("performer", out, (s / s.sum(-1, keepdims=True)) @ v, dt)

# A text KV cache and an image under one softmax (source blocks).
kern = attnc.load(V2 / "vlm_decode.attn")
B, H, G, T, N = 2, 8, 2, 300, 256
q = rng.standard_normal((B, H, 1, 128)).astype(np.float32)
tk, tv, ik, iv = (rng.standard_normal((B, G, n, 128)).astype(np.float32) for n in (T, T, N, N))
bias = rng.standard_normal(H).astype(np.float32)
t0 = time.perf_counter()
out = kern(q, text_k=tk, text_v=tv, image_k=ik, image_v=iv, img_bias=bias)
dt = time.perf_counter() - t0
K = np.repeat(np.concatenate([tk, ik], 2), H // G, 1).astype(np.float64)
Vv = np.repeat(np.concatenate([tv, iv], 2), H // G, 1).astype(np.float64)
s = q.astype(np.float64) @ K.transpose(0, 1, 3, 2) / np.sqrt(128)
s[..., T:] += bias[None, :, None, None]
report("vlm_decode", out, softmax(s) @ Vv, dt)

# An index in use and out of range is an error that says where.
bad = pages.copy()
bad[1, 0] = P
try:
    attnc.load(V2 / "paged_decode.attn")(qp, kc, vc, pages=bad, seqlen=seqlen)
except ValueError as e:
    print("  paged_decode with a bad page:", str(e).splitlines()[0])
