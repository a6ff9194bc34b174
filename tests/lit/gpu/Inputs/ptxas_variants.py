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
decode_kernels = []
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
    if manifest.get("has_gpu_decode") and not (d / f"{manifest['name']}_decode.ptx").exists():
        failed.append(f"{f.name}: has_gpu_decode but no {manifest['name']}_decode.ptx")
    decode_kernels.append(len(ptx) == 2)
    ok = True
    for p in ptx:  # NAME.ptx and the split-key NAME_decode.ptx
        for arch in ("sm_80", "sm_90"):
            r = subprocess.run([ptxas, f"-arch={arch}", str(p), "-o", str(d / f"{p.stem}.{arch}.cubin")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                failed.append(f"{f.name}: ptxas -arch={arch} {p.name} failed:\n{r.stderr}")
                ok = False
    assembled += ok
print(f"variants: {len(files)}, with PTX: {with_ptx}, assembled for sm_80 and sm_90: {assembled}, "
      f"with a split-key decode kernel: {sum(decode_kernels)}")
for c in cpu_only:
    print(f"cpu only: {c}")
for msg in failed:
    print(msg, file=sys.stderr)
sys.exit(1 if failed else 0)
