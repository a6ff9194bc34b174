#!/bin/sh
# fuzz-run.sh FUZZER CORPUS RUNS [libFuzzer flags and seed folders...]
#
# Runs a libFuzzer target for RUNS executions (0: until stopped) on a fresh
# CORPUS folder (new inputs go there) seeded from the folders given, with
# fixed time and memory limits per input, and prints libFuzzer's final
# statistics. Exits nonzero on any crash, sanitizer report, timeout or OOM;
# the reproducer is written into the folder of CORPUS.
set -eu
fuzzer=$1 corpus=$2 runs=$3
shift 3
# A fresh corpus each time unless ATTNC_FUZZ_KEEP_CORPUS=1 (scripts/fuzz.sh).
[ "${ATTNC_FUZZ_KEEP_CORPUS:-0}" = 1 ] || rm -rf "$corpus"
mkdir -p "$corpus"
dir=$(dirname "$corpus")
[ "$runs" = 0 ] && runs=-1 # libFuzzer: -1 is unlimited
exec "$fuzzer" -runs="$runs" -seed="${ATTNC_FUZZ_SEED:-1}" -timeout="${ATTNC_FUZZ_TIMEOUT:-20}" \
  -rss_limit_mb="${ATTNC_FUZZ_RSS_MB:-3072}" -max_len="${ATTNC_FUZZ_MAX_LEN:-4096}" \
  -print_final_stats=1 -artifact_prefix="$dir/" "$corpus" "$@"
