"""attnc's GPU kernels against PyTorch on the same NVIDIA GPU, in one run (a
benchmark program, run by scripts/gpu-check.sh; never a test).

Workloads: dense causal, sliding window 256, a document mask, each at
B=4 H=16 L=4096 D=128, and GQA decode (H=32, 8 K/V heads, Lq=1,
Lk=32768), in bf16 and f32. attnc runs its `host-cuda` kernel through the
Python package (`attnc.compile(..., target="host-cuda")`) on host tensors:
its time includes copying q, k, v to the device and out back, which the
table says. PyTorch runs scaled_dot_product_attention and flex_attention
(torch.compile) on CUDA tensors. Every attnc output is checked against
SDPA's first: a wrong kernel fails the run.

    .venv/bin/python bench/gpu_compare.py [--reps 10]
"""

import argparse
import statistics
import sys
import time

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import attnc

B, H, L, D = 4, 16, 4096, 128
DOCS = 8  # documents of the document mask, equal lengths


def workloads():
    docs = "doc: i32[B, L]\n  mask = doc[b, i] == doc[b, j] && j <= i"
    return [
        ("causal", "mask = j <= i", B, H, H, L, L, None),
        ("sliding window 256", "mask = j <= i && i - j < 256", B, H, H, L, L, None),
        ("document mask", docs, B, H, H, L, L, "doc"),
        ("GQA decode", "mask = j <= i + Lk - Lq", 1, 32, 8, 1, 32768, None),
    ]


def source(mask, dtype, grouped):
    t = {"f32": "f32", "bf16": "bf16"}[dtype]
    kv = "B, G, Lk, 128" if grouped else "B, H, L, 128"
    q = "B, H, Lq, 128" if grouped else "B, H, L, 128"
    return f"""attention gpu_bench {{
  q: {t}[{q}]; k: {t}[{kv}]; v: {t}[{kv}]
  {mask}
}}"""


def host_time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def cuda_time(fn, reps):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_compare.py: no CUDA device (torch.cuda.is_available() is False)")
    dev = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print("| workload | dtype | attnc host-cuda (with copies) | torch SDPA | flex_attention |")
    print("|---|---|---|---|---|")
    flex = torch.compile(flex_attention)
    failed = False
    for name, mask, b, h, hk, lq, lk, aux in workloads():
        for dtype in ("bf16", "f32"):
            tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
            kern = attnc.compile(source(mask, dtype, hk != h), target="host-cuda", cache=False)
            if "GPU" in kern.warnings:
                print(kern.warnings, file=sys.stderr)
            g = torch.Generator().manual_seed(0)
            q = torch.randn(b, h, lq, D, generator=g).to(tdt)
            k = torch.randn(b, hk, lk, D, generator=g).to(tdt)
            v = torch.randn(b, hk, lk, D, generator=g).to(tdt)
            named = {}
            doc = None
            if aux:
                doc = (torch.arange(L) * DOCS // L).to(torch.int32).expand(b, L).contiguous()
                named["doc"] = doc
            qd, kd, vd = q.to(dev), k.to(dev), v.to(dev)
            off = lk - lq
            qi = torch.arange(lq, device=dev)[:, None] + off
            kj = torch.arange(lk, device=dev)[None, :]
            allowed = kj <= qi
            if name.startswith("sliding"):
                allowed &= qi - kj < 256
            if doc is not None:
                dd = doc[0].to(dev)
                allowed &= dd[:, None] == dd[None, :]

            def mask_mod(bb, hh, i, j):
                ok = j <= i + off
                if name.startswith("sliding"):
                    ok = ok & (i + off - j < 256)
                if doc is not None:
                    ok = ok & (dd[i] == dd[j])
                return ok

            ref = torch.nn.functional.scaled_dot_product_attention(
                qd, kd, vd, attn_mask=allowed, enable_gqa=hk != h)
            out = kern(q, k, v, **named)
            err = (out.float() - ref.cpu().float()).abs().max().item()
            tol = 2e-2 if dtype == "bf16" else 1e-4
            if not err <= tol:
                print(f"FAIL {name} {dtype}: attnc differs from SDPA by {err} (> {tol})",
                      file=sys.stderr)
                failed = True
            t_attnc = host_time(lambda: kern(q, k, v, **named), args.reps)
            t_sdpa = cuda_time(lambda: torch.nn.functional.scaled_dot_product_attention(
                qd, kd, vd, attn_mask=allowed, enable_gqa=hk != h), args.reps)
            bm = create_block_mask(mask_mod, None, None, lq, lk, device=dev)
            t_flex = cuda_time(lambda: flex(qd, kd, vd, block_mask=bm, enable_gqa=hk != h), args.reps)
            print(f"| {name} B={b} H={h} Hk={hk} Lq={lq} Lk={lk} | {dtype} | {t_attnc * 1e3:.2f} ms "
                  f"| {t_sdpa * 1e3:.2f} ms | {t_flex * 1e3:.2f} ms |", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
