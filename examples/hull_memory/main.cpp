// hull_memory: a key-value memory driven through hard-max attention, the way
// a transformer that executes programs can address memory. Address a is
// written as the key (2a, -a²) with value (data, a); reading address b is the
// query (b, 1), whose score 2ab - a² = b² - (a - b)² is largest, and equal to
// b², exactly at a = b. Repeated writes to one address are duplicate keys,
// and ties = latest makes the most recent write win. The hull key cache
// answers every read in O(log n); each read is checked against a
// std::unordered_map. Usage: hull_memory [STEPS] (default 1000000). Prints
// the steps per second; exits nonzero on any mismatch.
#include "attn/runtime/HullCache.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <unordered_map>

using attn::runtime::HullCache;
using attn::runtime::TieRule;

int main(int argc, char **argv) {
  const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 1000000;
  const int64_t kAddresses = 1 << 16; // addresses in [-2^15, 2^15)
  if (steps <= 0) {
    std::fprintf(stderr, "usage: hull_memory [STEPS > 0]\n");
    return 2;
  }

  HullCache memory(2); // value: (data, address)
  std::unordered_map<int64_t, double> reference;
  std::mt19937_64 rng(2026);
  std::uniform_int_distribution<int64_t> address(-kAddresses / 2,
                                                 kAddresses / 2 - 1);
  std::uniform_int_distribution<int64_t> data(0, 1000000000);

  int64_t writes = 0, reads = 0, hits = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < steps; ++step) {
    double a = static_cast<double>(address(rng));
    if (rng() % 2 == 0) { // write
      double value[2] = {static_cast<double>(data(rng)), a};
      memory.append(2 * a, -a * a, value);
      reference[static_cast<int64_t>(a)] = value[0];
      ++writes;
      continue;
    }
    double out[2], score;
    memory.query(a, 1, TieRule::Latest, out, &score);
    ++reads;
    auto it = reference.find(static_cast<int64_t>(a));
    bool present = score == a * a; // else another address won, or none
    if (present != (it != reference.end()) ||
        (present && (out[0] != it->second || out[1] != a))) {
      std::fprintf(stderr,
                   "hull_memory: MISMATCH at step %lld reading address %.0f: "
                   "attention gives (%.0f, %.0f) with score %.17g, the map %s "
                   "%.0f\n",
                   static_cast<long long>(step), a, out[0], out[1], score,
                   it == reference.end() ? "has nothing" : "has",
                   it == reference.end() ? 0.0 : it->second);
      return 1;
    }
    hits += present;
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("hull_memory: %lld steps (%lld writes, %lld reads, %lld of "
              "them of written addresses; %zu keys on the upper hull) in "
              "%.3f s: %.0f steps/s; every read matches std::unordered_map\n",
              static_cast<long long>(steps), static_cast<long long>(writes),
              static_cast<long long>(reads), static_cast<long long>(hits),
              memory.upperHullSize(), seconds, steps / seconds);
  return 0;
}
