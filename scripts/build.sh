#!/usr/bin/env bash
# Configures and builds attnc in ./build (Ninja, ccache), after setup.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# ATTNC_SKIP_SETUP=1: the machine is set up already (e.g. a shared .venv with more pins).
[ "${ATTNC_SKIP_SETUP:-0}" = 1 ] || "$root/scripts/setup.sh"
export PATH="$root/.venv/bin:$PATH"
halide_cmake="$("$root/.venv/bin/python" -c 'import halide, os; print(os.path.join(os.path.dirname(halide.__file__), "lib64", "cmake"))')"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$halide_cmake" >/dev/null
# Two jobs: MLIR and Halide translation units each take ~1 GiB and a minute.
cmake --build "$root/build" -j "${ATTNC_JOBS:-2}"
