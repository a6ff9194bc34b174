#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds,
# then runs GoogleTest units, lit/FileCheck tests, the numerical conformance
# suite, the AOT/JIT examples and the installed package through ctest, and
# the libFuzzer targets (front end, .npy reader, lowering) for a fixed
# number of executions from their seed corpora (build-asan, clang-19, ASan +
# UBSan; about a minute).
#
#   scripts/test.sh [CTEST_ARGS...]             the above
#   scripts/test.sh --sanitize [CTEST_ARGS...]  everything built with ASan +
#       UBSan in build-asan: unit, lit and conformance tests, then the fuzzers
#   ATTNC_SKIP_FUZZ=1 scripts/test.sh           without the fuzzers
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sanitize=0
if [ "${1:-}" = "--sanitize" ]; then
  sanitize=1
  shift
fi
# ATTNC_SKIP_SETUP=1: the machine is set up already (e.g. a shared .venv with more pins).
[ "${ATTNC_SKIP_SETUP:-0}" = 1 ] || "$root/scripts/setup.sh"
export PATH="$root/.venv/bin:$PATH"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}" # ccache hits across clones
jobs="${ATTNC_JOBS:-2}"

# build-asan: clang-19 with ASan + UBSan and libFuzzer coverage.
configure_asan() {
  local halide_cmake
  halide_cmake="$("$root/.venv/bin/python" -c 'import halide, os; print(os.path.join(os.path.dirname(halide.__file__), "lib64", "cmake"))')"
  CC=clang-19 CXX=clang++-19 cmake -S "$root" -B "$root/build-asan" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTNC_SANITIZE=ON -DATTNC_FUZZ=ON -DATTNC_BUILD_PYTHON=OFF \
    -DCMAKE_PREFIX_PATH="$halide_cmake" >/dev/null
}
# Leaks are not reported: MLIR's and Halide's process-lifetime singletons
# are never freed. Every other ASan/UBSan report fails the test.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

if [ "$sanitize" = 1 ]; then
  configure_asan
  cmake --build "$root/build-asan" -j "$jobs"
  export ATTNC_CACHE_DIR="$root/build-asan/test-kernel-cache"
  rm -rf "$ATTNC_CACHE_DIR"
  cd "$root/build-asan"
  # Unit, lit, conformance and libFuzzer tests; not the examples and
  # projects built against this tree (they test packaging, not memory
  # safety), nor the differential random-kernel test (label fuzz: ten
  # minutes already in a release build).
  ctest --output-on-failure -j "${ATTNC_TEST_JOBS:-2}" \
    -E '^(aot_out_of_tree|package_install|aot_example|jit_example|hull_memory)$' -LE '^fuzz$' "$@"
  exit 0
fi

"$root/scripts/build.sh"
# Kernels compiled by the tests go to a fresh cache inside the build tree.
export ATTNC_CACHE_DIR="$root/build/test-kernel-cache"
rm -rf "$ATTNC_CACHE_DIR"
(cd "$root/build" && ctest --output-on-failure -j "${ATTNC_TEST_JOBS:-2}" "$@")

if [ "${ATTNC_SKIP_FUZZ:-0}" != 1 ]; then
  configure_asan
  cmake --build "$root/build-asan" -j "$jobs" --target attnc-fuzzers
  (cd "$root/build-asan" && ctest --output-on-failure -L libfuzzer)
fi
