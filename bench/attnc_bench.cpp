// attnc-bench: benchmark programs of the runtime. `attnc-bench hull --n N`
// times N hard-max decode steps (append a key and value, then answer a query)
// through the hull key cache; with --scan, through the O(n) scan. The
// workload is the parabola key-value memory of issue 4: address a has key
// (2a, -a²), value (a, step); a read of address b is the query (b, 1).
// Addresses are uniform in [0, --addresses) (default N), drawn before the
// timed loop. Each run starts from an empty cache; short runs are repeated
// (--reps) and the median is reported. Prints one line:
// `hull n=<N> ns_per_step=<X>` (or `scan ...`).
#include "attn/runtime/HullCache.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using attn::runtime::HullCache;
using attn::runtime::TieRule;

namespace {

volatile double gSink; // keeps the results of the timed loop alive

/// One run of n steps from an empty cache (or empty key list); returns the
/// nanoseconds per step.
double runOnce(int64_t n, int64_t addresses, bool useScan, TieRule ties,
               std::mt19937_64 &rng) {
  std::uniform_int_distribution<int64_t> addr(0, addresses - 1);
  std::vector<double> writes(n), reads(n);
  for (int64_t s = 0; s < n; ++s) {
    writes[s] = static_cast<double>(addr(rng));
    reads[s] = static_cast<double>(addr(rng));
  }

  double check = 0;
  double out[2], score;
  auto t0 = std::chrono::steady_clock::now();
  if (!useScan) {
    HullCache cache(2);
    for (int64_t s = 0; s < n; ++s) {
      double a = writes[s];
      double v[2] = {a, static_cast<double>(s)};
      cache.append(2 * a, -a * a, v);
      cache.query(reads[s], 1, ties, out, &score);
      check += out[0] + out[1] + score;
    }
  } else {
    std::vector<double> keys, values;
    keys.reserve(2 * n);
    values.reserve(2 * n);
    for (int64_t s = 0; s < n; ++s) {
      double a = writes[s];
      keys.push_back(2 * a);
      keys.push_back(-a * a);
      values.push_back(a);
      values.push_back(static_cast<double>(s));
      attn::runtime::scanQuery(keys.data(), values.data(), s + 1, 2, reads[s],
                               1, ties, out, &score);
      check += out[0] + out[1] + score;
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  gSink = gSink + check;
  return std::chrono::duration<double, std::nano>(t1 - t0).count() /
         static_cast<double>(n);
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"attnc-bench: benchmarks of the attnc runtime"};
  app.require_subcommand(1);

  CLI::App *hull = app.add_subcommand(
      "hull", "hard-max decode (append + query per step) on parabola keys");
  int64_t n = 100000;
  int64_t addresses = 0;
  bool useScan = false;
  std::string ties = "latest";
  uint64_t seed = 1;
  hull->add_option("--n", n, "number of steps")
      ->required()
      ->check(CLI::PositiveNumber);
  hull->add_flag("--scan", useScan, "use the O(n) scan instead of the hull");
  hull->add_option("--addresses", addresses,
                   "addresses are uniform in [0, A) (default: N)")
      ->check(CLI::PositiveNumber);
  hull->add_option("--ties", ties, "tie rule")
      ->check(CLI::IsMember({"average", "latest", "first"}));
  hull->add_option("--seed", seed, "random seed");
  int reps = 0;
  hull->add_option("--reps", reps,
                   "independent runs, the median is printed (default: enough "
                   "for 2e6 hull steps, at most 15; 1 with --scan)")
      ->check(CLI::PositiveNumber);

  CLI11_PARSE(app, argc, argv);

  if (hull->parsed()) {
    if (addresses == 0)
      addresses = n;
    if (addresses > (int64_t(1) << 26)) {
      std::fprintf(stderr, "attnc-bench: --addresses must be <= 2^26 (exact "
                           "parabola scores)\n");
      return 2;
    }
    TieRule rule = ties == "average" ? TieRule::Average
                   : ties == "first" ? TieRule::First
                                     : TieRule::Latest;
    if (reps == 0)
      reps = useScan ? 1
                     : static_cast<int>(std::clamp<int64_t>(
                           2000000 / n, 1, 15));
    std::mt19937_64 rng(seed);
    std::vector<double> ns;
    for (int r = 0; r < reps; ++r)
      ns.push_back(runOnce(n, addresses, useScan, rule, rng));
    std::nth_element(ns.begin(), ns.begin() + reps / 2, ns.end());
    std::printf("%s n=%lld ns_per_step=%.1f\n", useScan ? "scan" : "hull",
                static_cast<long long>(n), ns[reps / 2]);
    return 0;
  }
  return 0;
}
