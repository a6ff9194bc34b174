#!/usr/bin/env bash
# The demo: builds attnc, compiles every examples/variants/*.attn, runs each
# on random inputs, checks it against the float64 reference and prints a
# table; then benchmarks dense causal attention through `attnc run --bench`,
# runs the Python examples (a variant on PyTorch tensors against SDPA, a
# transformer block under torch.compile, the language-v2 examples), a GPU
# kernel on OpenCL (PoCL) and a CUDA library whose PTX ptxas assembles, and
# hard-max decoding through the hull key cache against the O(n) scan.
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
echo "== GPU kernels (docs/gpu.md): causal on OpenCL through PoCL, checked against the CPU kernel =="
echo "   (PoCL runs the GPU schedule on this CPU: a correctness check, not a GPU speed)"
"$root/.venv/bin/python" - "$out" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(1)
for n in "qkv":
    np.save(f"{sys.argv[1]}/small_{n}.npy", rng.standard_normal((1, 4, 300, 64), dtype=np.float32))
PY
small=(--in q="$out/small_q.npy" --in k="$out/small_k.npy" --in v="$out/small_v.npy")
"$root/build/tools/attnc" run examples/variants/causal.attn "${small[@]}" --out "$out/small_cpu.npy"
"$root/build/tools/attnc" run examples/variants/causal.attn "${small[@]}" --target host-opencl \
  --out "$out/small_opencl.npy"
"$root/.venv/bin/python" -c "import numpy as np, sys; d = sys.argv[1]; a, b = (np.load(f'{d}/small_{t}.npy') for t in ('cpu', 'opencl')); print(f'OpenCL vs CPU kernel: max |diff| {np.abs(a - b).max():.2e} over {a.size} values')" "$out"
echo "   attnc compile --target x86-64-linux-cuda-cuda_capability_80: PTX that ptxas assembles"
"$root/build/tools/attnc" compile examples/variants/causal.attn --no-backward \
  --target x86-64-linux-cuda-cuda_capability_80 -o "$out/cuda"
if ptxas=$(command -v ptxas || command -v /usr/local/cuda/bin/ptxas); then
  "$ptxas" -arch=sm_80 -v "$out/cuda/causal.ptx" -o "$out/cuda/causal.cubin" 2>&1 | grep -E "registers" | head -1
fi
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
