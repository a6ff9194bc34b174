"""attnc against PyTorch on the CPU, side by side in one run (issue 16's
table; a benchmark program, never a test).

For each workload: attnc's kernel (compiled once, then called on torch
tensors), torch's scaled_dot_product_attention and flex_attention under
torch.compile, on the same tensors, the median of --reps calls after a
warm-up call. Then the machine: its CPU, its measured FP32 peak
(attnc-fp32-peak, the figure "% of peak" uses) and its memory bandwidth
(attnc-bench stream). GFLOP/s count 4·D flops per pair the mask keeps
(q·k and p·v); decode rows count the bytes of K and V read once.

torch comes from the project's venv (scripts/setup.sh pins it); where that
venv has none, the script makes a scratch venv under build/ with torch from
PyPI and runs itself there.

    .venv/bin/python bench/compare_torch.py [--reps 5] [--only causal,decode]
"""

import argparse
import os
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("ATTNC_BUILD", ROOT / "build"))
TORCH_PIN = "torch==2.15.0"


def ensure_torch():
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    venv = BUILD / "bench-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                       check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--index-url",
                        "https://download.pytorch.org/whl/cpu", TORCH_PIN], check=True)
    os.execv(str(py), [str(py), *sys.argv])


ensure_torch()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import attnc  # noqa: E402
from timing import median_time  # noqa: E402


def tool(*args):
    return subprocess.run([str(BUILD / "bench" / args[0]), *args[1:]], capture_output=True,
                          text=True, check=True).stdout


def peak_gflops():
    for word in tool("attnc-fp32-peak").split():
        try:
            return float(word)
        except ValueError:
            continue
    raise RuntimeError("no figure in attnc-fp32-peak's output")


def bandwidth():
    fields = dict(w.split("=") for w in tool("attnc-bench", "stream").split()[1:])
    return float(fields["read_GBps"]), float(fields["triad_GBps"])


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    except OSError:
        pass
    return []


HEAD = """attention {name} {{
  q: {t}[B, H, Lq, D]
  k: {t}[B, G, Lk, D]
  v: {t}[B, G, Lk, D]
  {extra}
}}"""


def causal_mod(b, h, i, j):
    return j <= i


def window_mod(w):
    def mod(b, h, i, j):
        return (j <= i) & (i - j < w)
    return mod


def softcap_score(cap):
    def score(s, b, h, i, j):
        return cap * torch.tanh(s / cap)
    return score


# name, attnc body, dtype, B, H, G, Lq, Lk, D, mask_mod, score_mod, kept pairs per (b, h)
def workloads():
    D = 128
    tri = lambda L: L * (L + 1) // 2  # noqa: E731
    win = lambda L, w: sum(min(i + 1, w) for i in range(L))  # noqa: E731
    return [
        ("causal f32 L=2048", "mask = j <= i", torch.float32, 1, 8, 8, 2048, 2048, D,
         causal_mod, None, tri(2048)),
        ("causal f32 L=8192", "mask = j <= i", torch.float32, 1, 8, 8, 8192, 8192, D,
         causal_mod, None, tri(8192)),
        ("causal bf16 L=2048", "mask = j <= i", torch.bfloat16, 1, 8, 8, 2048, 2048, D,
         causal_mod, None, tri(2048)),
        ("GQA decode H=32 Hk=8 Lq=1 Lk=32768 f32", "mask = j <= i + Lk - Lq", torch.float32,
         1, 32, 8, 1, 32768, D, None, None, 32768),
        ("sliding window 256 causal L=8192", "mask = j <= i && i - j < 256", torch.float32,
         1, 8, 8, 8192, 8192, D, window_mod(256), None, win(8192, 256)),
        ("tanh soft-capping causal L=2048",
         "param cap: f32 = 50.0\n  score = cap * tanh(dot(q, k) * rsqrt(D) / cap)\n"
         "  mask = j <= i", torch.float32, 1, 8, 8, 2048, 2048, D, causal_mod,
         softcap_score(50.0), tri(2048)),
        ("top-k(32) causal L=2048", "mask = j <= i\n  normalize = topk(32)", torch.float32,
         1, 8, 8, 2048, 2048, D, None, None, tri(2048)),
    ]


def sdpa_case(name, dt, q, k, v, H, G, Lq, Lk, score_mod, mask_fn):
    """SDPA's best form of the workload, or None where it has none."""
    if score_mod is not None or "top-k" in name:
        return None, ""
    if Lq == 1 and G < H:
        # q grouped as [B, G, H/G, D]: one matrix product per K/V head.
        B = q.shape[0]
        qg = q.view(B, G, H // G, q.shape[-1])
        return (lambda: F.scaled_dot_product_attention(qg, k, v)), " (q as [B, G, H/G, D])"
    if "window" in name:
        m = mask_fn(Lq)
        return (lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=m)), " (dense mask)"
    return (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)), ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated substrings of workload names")
    ap.add_argument("--no-flex", action="store_true", help="leave flex_attention out")
    args = ap.parse_args()
    threads = os.cpu_count()
    torch.set_num_threads(threads)
    peak = peak_gflops()
    read_bw, triad_bw = bandwidth()
    print(f"CPU: {cpu_model()} ({threads} threads; {', '.join(cpu_flags()) or 'no AVX-512'})")
    print(f"FP32 peak (attnc-fp32-peak): {peak:.1f} GFLOP/s; memory (attnc-bench stream, "
          f"1 GiB arrays): read {read_bw:.1f} GB/s, triad {triad_bw:.1f} GB/s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; attnc {attnc.__version__}"
          if hasattr(attnc, "__version__") else f"torch {torch.__version__}")
    print()
    print("| workload (B=1 H=8 D=128 unless said) | attnc | torch SDPA | torch.compile flex |")
    print("|---|---|---|---|")
    only = [s for s in args.only.split(",") if s]
    softmax_time = None  # attnc's causal f32 L=2048, what top-k is read against
    for (name, body, dt, B, H, G, Lq, Lk, D, mask_mod, score_mod, pairs) in workloads():
        if only and not any(s in name for s in only):
            continue
        tname = {torch.float32: "f32", torch.bfloat16: "bf16"}[dt]
        src = HEAD.format(name="bench", t=tname, extra=body)
        kern = attnc.compile(src, backward=False)
        torch.manual_seed(0)
        q = torch.randn(B, H, Lq, D).to(dt)
        k = torch.randn(B, G, Lk, D).to(dt)
        v = torch.randn(B, G, Lk, D).to(dt)
        flops = 4 * D * pairs * B * H
        kv_bytes = 2 * B * G * Lk * D * q.element_size()
        decode = Lq <= 16

        def fmt(t):
            if t is None:
                return "—"
            if decode:
                return f"{t * 1e3:.2f} ms ({kv_bytes / t / 1e9:.1f} GB/s, " \
                       f"{100 * kv_bytes / t / 1e9 / read_bw:.0f}% of read)"
            return f"{t * 1e3:.1f} ms ({flops / t / 1e9:.0f} GFLOP/s, " \
                   f"{100 * flops / t / 1e9 / peak:.0f}% of peak)"

        t_attnc = median_time(lambda: kern(q, k, v), args.reps, warm_up=True)
        if name == "causal f32 L=2048":
            softmax_time = t_attnc
        note = ""
        if "top-k" in name and softmax_time:
            note = f", {t_attnc / softmax_time:.1f}× attnc's softmax"

        def dense_mask(L):
            i = torch.arange(L)[:, None]
            j = torch.arange(L)[None, :]
            return (j <= i) & (i - j < 256)

        fn, how = sdpa_case(name, dt, q, k, v, H, G, Lq, Lk, score_mod, dense_mask)
        t_sdpa = median_time(fn, args.reps, warm_up=True) if fn else None
        t_flex = None
        if not args.no_flex and "top-k" not in name:
            try:
                bm = create_block_mask(mask_mod, B, H, Lq, Lk, device="cpu") if mask_mod else None
                flex = torch.compile(flex_attention, dynamic=False)
                kw = dict(block_mask=bm, score_mod=score_mod, enable_gqa=G < H)
                t_flex = median_time(lambda: flex(q, k, v, **kw), args.reps, warm_up=True)
            except Exception as e:  # flex on the CPU lacks some cases; say which
                print(f"<!-- flex failed on {name}: {type(e).__name__}: {str(e)[:200]} -->")
        print(f"| {name} | {fmt(t_attnc)}{note} | {fmt(t_sdpa)}{how if fn else ''} | {fmt(t_flex)} |",
              flush=True)
    print("\nGFLOP/s count 4·D flops per kept pair; decode GB/s count K and V read once; "
          "% of peak and % of read use the figures above.")


if __name__ == "__main__":
    main()
