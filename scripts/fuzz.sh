#!/usr/bin/env bash
# Longer fuzzing campaigns than the test suite's fixed runs:
#
#   scripts/fuzz.sh TARGET [SECONDS] [libFuzzer flags...]
#
# TARGET is front-end, npy or lower (ATTNC_FUZZ_STMT=1: lower through
# Halide's loop nest too). Runs on build-asan's fuzzers (ASan + UBSan,
# built here when missing) with all cores (-fork), for SECONDS (default
# 600), keeping its corpus in build-asan/fuzz-campaign/TARGET; a crash,
# timeout (20 s an input) or OOM (3 GiB) leaves a reproducer there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:?usage: scripts/fuzz.sh front-end|npy|lower [SECONDS] [flags...]}"
seconds="${2:-600}"
shift $(( $# >= 2 ? 2 : 1 ))
case "$target" in
  front-end|lower) seeds=("$root/examples/variants" "$root/examples/variants/v2" "$root/tests/lit/cli/Inputs" "$root/tests/lit/emit"
                          "$root/examples/aot" "-dict=$root/tests/fuzz/attn.dict") ;;
  npy) seeds=("$root/tests/fuzz/corpus/npy") ;;
  *) echo "fuzz.sh: unknown target '$target' (front-end, npy or lower)" >&2; exit 2 ;;
esac
# ATTNC_SKIP_SETUP=1: the machine is set up already (e.g. a shared .venv with more pins).
[ "${ATTNC_SKIP_SETUP:-0}" = 1 ] || "$root/scripts/setup.sh"
export PATH="$root/.venv/bin:$PATH"
halide_cmake="$("$root/.venv/bin/python" -c 'import halide, os; print(os.path.join(os.path.dirname(halide.__file__), "lib64", "cmake"))')"
CC=clang-19 CXX=clang++-19 cmake -S "$root" -B "$root/build-asan" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTNC_SANITIZE=ON -DATTNC_FUZZ=ON \
  -DCMAKE_PREFIX_PATH="$halide_cmake" >/dev/null
cmake --build "$root/build-asan" -j "${ATTNC_JOBS:-2}" --target "attnc-fuzz-$target"
export ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}"
export ATTNC_FUZZ_KEEP_CORPUS=1 ATTNC_CACHE_DIR="$root/build-asan/fuzz-kernel-cache"
exec "$root/tests/fuzz/fuzz-run.sh" "$root/build-asan/tests/fuzz/attnc-fuzz-$target" \
  "$root/build-asan/fuzz-campaign/$target/corpus" 0 -max_total_time="$seconds" \
  -fork="$(nproc)" "${seeds[@]}" "$@"
