"""Compiles every .attn in a folder for CUDA sm_80 and assembles the PTX.

usage: ptxas_variants.py ATTNC PTXAS VARIANTS_DIR OUT_DIR
Exits 1 when a compile fails, a GPU kernel has no .ptx, or ptxas rejects it;
prints counts and the kernels that have no GPU kernel, with their reason.
"""
import json
import pathlib
import subprocess
import sys

attnc, ptxas, variants, out = sys.argv[1:5]
failed = []
with_ptx = assembled = 0
cpu_only = []
files = sorted(pathlib.Path(variants).glob("*.attn"))
for f in files:
    d = pathlib.Path(out) / f.stem
    r = subprocess.run([attnc, "compile", str(f), "--target", "x86-64-linux-cuda-cuda_capability_80",
                        "--no-backward", "-o", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        failed.append(f"{f.name}: attnc compile failed:\n{r.stderr}")
        continue
    manifest = json.loads(next(d.glob("*.json")).read_text())
    ptx = list(d.glob("*.ptx"))
    if not manifest.get("has_gpu"):
        cpu_only.append(f"{f.stem} ({manifest.get('gpu_why_not', '?')})")
        if ptx:
            failed.append(f"{f.name}: a .ptx without a GPU kernel")
        continue
    if not ptx:
        failed.append(f"{f.name}: has_gpu but no .ptx")
        continue
    with_ptx += 1
    ok = True
    for arch in ("sm_80", "sm_90"):
        p = subprocess.run([ptxas, f"-arch={arch}", str(ptx[0]), "-o", str(d / f"{arch}.cubin")],
                           capture_output=True, text=True)
        if p.returncode != 0:
            failed.append(f"{f.name}: ptxas -arch={arch} failed:\n{p.stderr}")
            ok = False
    assembled += ok
print(f"variants: {len(files)}, with PTX: {with_ptx}, assembled for sm_80 and sm_90: {assembled}")
for c in cpu_only:
    print(f"cpu only: {c}")
for msg in failed:
    print(msg, file=sys.stderr)
sys.exit(1 if failed else 0)
