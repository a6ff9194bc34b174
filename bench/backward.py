"""The backward pass, measured side by side with PyTorch in one run (a
benchmark program: never a test).

For causal f32 B=1 H=8 L=2048 D=128 and a sliding window (256) at L=8192:
attnc's forward and backward kernels (Kernel.__call__ / Kernel.backward on
torch tensors, lse given by the forward) against PyTorch's
scaled_dot_product_attention forward and backward (autograd, CPU) on the same
tensors. The backward's GFLOP/s count 10·D flops per participating pair
(q·k, dout·v, dq, dk, dv; the forward's 4·D), and % of peak uses the
machine's measured FP32 peak (attnc-fp32-peak).

    .venv/bin/python bench/backward.py [--reps 5]
"""

import argparse
import os
import pathlib
import subprocess

import torch

import attnc
from timing import median_time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("ATTNC_BUILD", ROOT / "build"))

CASES = [
    ("causal", "mask = j <= i", 2048, lambda L: torch.ones(L, L, dtype=torch.bool).tril()),
    ("sliding window 256", "mask = j <= i && i - j < 256", 8192,
     lambda L: (torch.arange(L)[None, :] <= torch.arange(L)[:, None])
     & (torch.arange(L)[:, None] - torch.arange(L)[None, :] < 256)),
]


def peak_gflops():
    out = subprocess.run([str(BUILD / "bench" / "attnc-fp32-peak")], capture_output=True,
                         text=True, check=True).stdout
    for word in out.split():
        try:
            return float(word)
        except ValueError:
            continue
    raise RuntimeError(f"no figure in attnc-fp32-peak's output: {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    peak = peak_gflops()
    print(f"machine FP32 peak (attnc-fp32-peak): {peak:.1f} GFLOP/s, {os.cpu_count()} threads")
    B, H, D = 1, 8, 128
    for name, mask, L, dense_mask in CASES:
        source = f"""attention bench {{
  q: f32[B, H, L, D]; k: f32[B, H, L, D]; v: f32[B, H, L, D]
  {mask}
  output lse
}}"""
        kern = attnc.compile(source, backward=True)
        torch.manual_seed(0)
        q, k, v, dout = (torch.randn(B, H, L, D) for _ in range(4))
        out, lse = kern(q, k, v, return_lse=True)
        t_fwd = median_time(lambda: kern(q, k, v, return_lse=True), args.reps, warm_up=True)
        t_bwd = median_time(lambda: kern.backward(q, k, v, out=out, dout=dout, lse=lse),
                            args.reps, warm_up=True)
        m = dense_mask(L)
        pairs = int(m.sum()) * B * H
        fwd_flops, bwd_flops = 4 * D * pairs, 10 * D * pairs

        qt, kt, vt = (x.clone().requires_grad_() for x in (q, k, v))
        causal = name == "causal"

        def sdpa():
            return torch.nn.functional.scaled_dot_product_attention(
                qt, kt, vt, is_causal=causal, attn_mask=None if causal else m)

        with torch.no_grad():
            t_tfwd = median_time(sdpa, args.reps, warm_up=True)
        o = sdpa()
        t_tbwd = median_time(lambda: torch.autograd.grad(o, (qt, kt, vt), dout, retain_graph=True),
                             args.reps, warm_up=True)
        print(f"\n{name}, f32 B={B} H={H} L={L} D={D} ({pairs:,} pairs)")
        for who, f, b in (("attnc", t_fwd, t_bwd), ("torch SDPA", t_tfwd, t_tbwd)):
            print(f"  {who:11s} forward {f * 1e3:8.1f} ms ({fwd_flops / f / 1e9:6.1f} GFLOP/s)  "
                  f"backward {b * 1e3:8.1f} ms ({bwd_flops / b / 1e9:6.1f} GFLOP/s, "
                  f"{100 * bwd_flops / b / 1e9 / peak:4.1f}% of peak)  backward/forward {b / f:4.2f}")


if __name__ == "__main__":
    main()
