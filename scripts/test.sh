#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds,
# then runs GoogleTest units, lit/FileCheck tests, the numerical conformance
# suite and the AOT/JIT examples through ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
# Kernels compiled by the tests go to a fresh cache inside the build tree.
export ATTNC_CACHE_DIR="$root/build/test-kernel-cache"
rm -rf "$ATTNC_CACHE_DIR"
cd "$root/build"
ctest --output-on-failure -j "${ATTNC_TEST_JOBS:-2}" "$@"
