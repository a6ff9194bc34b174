#!/usr/bin/env bash
# The demo: builds attnc, compiles every examples/variants/*.attn, runs each
# on random inputs, checks it against the float64 reference and prints a
# table; then benchmarks dense causal attention through `attnc run --bench`,
# runs the Python examples (a variant on PyTorch tensors against SDPA, a
# transformer block under torch.compile, the language-v2 examples), and hard-max decoding through the hull key cache against the O(n) scan.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
cd "$root"
echo
echo "== this machine's FP32 peak, measured =="
"$root/build/bench/attnc-fp32-peak"
echo
echo "== every variant in examples/variants, against the float64 reference =="
echo "   (% peak is against the measured peak above; ATTNC_PEAK_GFLOPS overrides it)"
"$root/build/tools/attnc-demo" "$root/examples/variants"
echo
echo "== attnc run --bench: causal f32, B=1 H=8 L=2048 D=128 =="
out="$root/demo-out"
mkdir -p "$out"
"$root/.venv/bin/python" - "$out" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
for n in "qkv":
    np.save(f"{sys.argv[1]}/{n}.npy", rng.standard_normal((1, 8, 2048, 128), dtype=np.float32))
PY
"$root/build/tools/attnc" run examples/variants/causal.attn \
  --in q="$out/q.npy" --in k="$out/k.npy" --in v="$out/v.npy" --out "$out/out.npy" --bench 10
echo
echo "== Python: examples/python (docs/python.md) =="
"$root/.venv/bin/python" examples/python/quickstart.py
"$root/.venv/bin/python" examples/python/transformer_block.py
"$root/.venv/bin/python" examples/python/language_v2.py
echo
echo "== hard-max decoding through the convex-hull key cache (docs/hardmax.md) =="
"$root/build/examples/hull_memory" 1000000
for n in 10000 100000 1000000; do
  "$root/build/bench/attnc-bench" hull --n "$n"
done
"$root/build/bench/attnc-bench" hull --n 10000 --scan
