#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU and its driver (CI has
# none: there PoCL runs the OpenCL kernels and ptxas checks the PTX):
#   1. builds attnc (scripts/build.sh installs what it needs);
#   2. runs the conformance suite on `host-cuda`, a GPU failure being an
#      error, never a silent CPU fallback (ATTNC_TEST_TARGET);
#   3. assembles every variant's PTX for sm_80 and sm_90 (lit gpu/);
#   4. builds the installed package's AOT user on the CUDA library and
#      requires that it runs on the GPU without a failover warning;
#   5. prints attnc against PyTorch's scaled_dot_product_attention and
#      flex_attention on this GPU (bench/gpu_compare.py); the project venv's
#      torch (setup.sh's pin, a PyPI wheel) carries its CUDA libraries. A
#      wrong attnc output fails the run.
# Nothing skips: without a GPU the script stops at once, saying so.
#
#   scripts/gpu-check.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU answers nvidia-smi on this machine" >&2
  exit 1
fi
nvidia-smi -L
export PATH="$root/.venv/bin:/usr/local/cuda/bin:$PATH"
ATTNC_JOBS="${ATTNC_JOBS:-$(nproc)}" "$root/scripts/build.sh"

echo "== conformance on host-cuda"
ATTNC_TEST_TARGET=host-cuda "$root/build/tests/conformance/attn_conformance_tests" \
  --gtest_filter='Conformance.*'

echo "== PTX of every variant (ptxas sm_80, sm_90)"
"$root/.venv/bin/python" /usr/lib/llvm-19/build/utils/lit/lit.py -sv "$root/build/tests/lit" \
  --filter 'gpu/|opencl|fallback'

echo "== the installed package on the GPU"
(cd "$root/build" && ATTNC_EXPECT_GPU=1 ctest -R package_install --output-on-failure)

echo "== attnc vs PyTorch on this GPU"
"$root/.venv/bin/python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu-check: torch sees no CUDA device")'
"$root/.venv/bin/python" "$root/bench/gpu_compare.py"
