#!/usr/bin/env bash
# Configures and builds attnc in ./build (Ninja, ccache), after setup.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# ATTNC_SKIP_SETUP=1: the machine is set up already (e.g. a shared .venv with more pins).
[ "${ATTNC_SKIP_SETUP:-0}" = 1 ] || "$root/scripts/setup.sh"
export PATH="$root/.venv/bin:$PATH"
# ccache hits across clones and worktrees of the tree (paths made relative).
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
halide_cmake="$("$root/.venv/bin/python" -c 'import halide, os; print(os.path.join(os.path.dirname(halide.__file__), "lib64", "cmake"))')"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$halide_cmake" -DPython_EXECUTABLE="$root/.venv/bin/python" >/dev/null
# Two jobs: MLIR and Halide translation units each take ~1 GiB and a minute.
cmake --build "$root/build" -j "${ATTNC_JOBS:-2}"
# The Python package into the venv: `pip install ./python` with the build
# tree above (nothing is compiled twice; the wheel holds the extension and
# python/attnc/*.py).
CMAKE_BUILD_PARALLEL_LEVEL="${ATTNC_JOBS:-2}" "$root/.venv/bin/pip" install -q \
  --disable-pip-version-check --no-build-isolation --no-deps \
  --config-settings=build-dir="$root/build" --config-settings=cmake.define.ATTNC_BUILD_TESTS=ON "$root/python"
