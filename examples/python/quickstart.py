"""attnc from Python in a minute: write a variant, compile it, call it on
PyTorch tensors, check it against PyTorch's own attention, look inside.

    .venv/bin/python examples/python/quickstart.py
"""

import math
import time

import torch
import torch.nn.functional as F

import attnc

# A sliding-window causal variant with grouped-query heads, the window a
# parameter of the call. Tensors are declared in PyTorch's [B, H, L, D].
SOURCE = """
attention sliding_window_gqa {
  q: f32[B, H, L, 64]
  k: f32[B, G, L, 64]
  v: f32[B, G, L, 64]
  param window: i32 = 128
  mask = j <= i && i - j < window
}
"""

kern = attnc.compile(SOURCE)  # compiled once, then loaded from the cache
print(kern.signature)
print(f"strategy: {kern.strategy}, target: {kern.target}")
print(f"compile: {kern.compile_seconds:.2f} s ({'cached' if kern.cache_hit else 'compiled'})")

B, H, G, L, D = 1, 8, 2, 1024, 64
torch.manual_seed(0)
# Activations as a model keeps them, [B, L, H, D]; the transposed views are
# read in place, without a copy.
q = torch.randn(B, L, H, D).transpose(1, 2)
k = torch.randn(B, L, G, D).transpose(1, 2)
v = torch.randn(B, L, G, D).transpose(1, 2)

out = kern(q, k, v, window=256)

# The same attention in PyTorch: an explicit boolean mask and GQA heads.
i = torch.arange(L)[:, None]
j = torch.arange(L)[None, :]
mask = (j <= i) & (i - j < 256)
ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
print(f"max |attnc - torch SDPA| = {(out - ref).abs().max().item():.2e}")


def median_ms(fn, runs=7):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[runs // 2]


a = median_ms(lambda: kern(q, k, v, window=256))
s = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True))
print(f"median of 7 calls: attnc {a:.2f} ms, torch SDPA with the mask {s:.2f} ms")

# Every stage of the compiler is printable; here the loop nest Halide runs.
stmt = kern.emit("stmt")
print(f"`kern.emit('stmt')`: {len(stmt.splitlines())} lines of Halide's loop nest")
