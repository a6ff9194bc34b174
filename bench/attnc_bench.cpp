// attnc-bench: benchmark programs of the runtime. `attnc-bench hull --n N`
// times N hard-max decode steps (append a key and value, then answer a query)
// through the hull key cache; with --scan, through the O(n) scan. The
// workload is the parabola key-value memory of issue 4: address a has key
// (2a, -a²), value (a, step); a read of address b is the query (b, 1).
// Addresses are uniform in [0, --addresses), the same range at every N
// (default 2^20, so that almost every write at N <= 10^6 is a new hull
// vertex: the hardest case), drawn before the timed loop. Each run starts
// from an empty cache; one untimed warm-up run, then --reps timed runs, and
// the median is reported (docs/hardmax.md, "Measuring"). Prints one line:
// `hull n=<N> ns_per_step=<X>` (or `scan ...`). With --query-only, the N
// writes are made untimed and N queries of the full cache are timed, one
// after another (`query n=<N> ns_per_step=<X>`): the latency of a query
// alone, for comparison with a whole step. `attnc-bench call FILE` times
// JitKernel::run per call on small shapes (the C++ baseline of the Python
// package's per-call overhead). `attnc-bench stream` measures the memory
// bandwidth (read and triad) that decode figures are read against.
#include "attn/jit/Decoder.h"
#include "attn/runtime/HullCache.h"
#include "attn/jit/Jit.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

using attn::runtime::HullCache;
using attn::runtime::TieRule;

namespace {

volatile double gSink; // keeps the results of the timed loop alive

/// Nanoseconds on the wall clock, or of this thread's CPU time (which
/// leaves out the time the thread waits for a core on a shared machine).
double nowNs(bool cpuTime) {
  if (cpuTime) {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return 1e9 * static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec);
  }
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// One run of n steps from an empty cache (or empty key list); returns the
/// nanoseconds per step.
double runOnce(int64_t n, int64_t addresses, bool useScan, bool queryOnly,
               TieRule ties, bool cpuTime, std::mt19937_64 &rng) {
  std::uniform_int_distribution<int64_t> addr(0, addresses - 1);
  std::vector<double> writes(n), reads(n);
  for (int64_t s = 0; s < n; ++s) {
    writes[s] = static_cast<double>(addr(rng));
    reads[s] = static_cast<double>(addr(rng));
  }

  double check = 0;
  double out[2], score;
  HullCache cache(2);
  if (queryOnly) // the same N writes, untimed
    for (int64_t s = 0; s < n; ++s) {
      double a = writes[s];
      double v[2] = {a, static_cast<double>(s)};
      cache.append(2 * a, -a * a, v);
    }
  double t0 = nowNs(cpuTime);
  if (queryOnly) {
    // N reads of the full cache, each address depending on the previous
    // answer (by a term too small to change it), so that the reads do not
    // overlap: a query's latency.
    for (int64_t s = 0; s < n; ++s) {
      cache.query(reads[s] + check * 0x1p-1000, 1, ties, out, &score);
      check += out[0] + out[1] + score;
    }
  } else if (!useScan) {
    for (int64_t s = 0; s < n; ++s) {
      double a = writes[s];
      double v[2] = {a, static_cast<double>(s)};
      cache.step(2 * a, -a * a, v, reads[s], 1, ties, out, &score);
      check += out[0] + out[1] + score;
    }
    cache.clear(); // freeing it is timed, as the scan frees its key list
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
  double t1 = nowNs(cpuTime);
  gSink = gSink + check;
  return (t1 - t0) / static_cast<double>(n);
}

/// Prints `prefill n=<L> hull_ms=<X> kernel_ms=<Y> max_diff=<Z>`: the same
/// causal hard-max sequence (half-integer data: exact scores and ties)
/// through Decoder::prefill (median of 5) and through the JIT-compiled
/// kernel (once).
int runPrefill(int64_t L) {
  const std::string source = "attention lookup { q: f64[B, H, L, 2]; k: f64[B, H, L, 2];"
                             " v: f64[B, H, L, 2]\n score = dot(q, k)\n mask = j <= i\n"
                             " normalize = hardmax(ties = latest) }";
  std::string messages;
  auto kernel = attn::JitKernel::compile({"prefill.attn", source}, {}, messages);
  if (!kernel) {
    std::fprintf(stderr, "%s", messages.c_str());
    return 1;
  }
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> coord(-2000, 2000);
  std::map<std::string, attn::runtime::HostTensor> in;
  for (const char *t : {"q", "k", "v"}) {
    attn::runtime::HostTensor h(attn::dsl::ElemType::F64, {1, 1, L, 2});
    for (int64_t e = 0; e < h.numel(); ++e)
      h.as<double>()[e] = coord(rng) / 2.0;
    in[t] = std::move(h);
  }
  // The hull prefill, from a fresh decoder each time, 5 times (one call
  // takes milliseconds, too short to time once on a shared machine): the
  // median is printed.
  std::vector<double> viaHull(L * 2), hullMs;
  for (int r = 0; r < 5; ++r) {
    std::string error;
    auto decoder = attn::Decoder::create(*kernel, error);
    if (!decoder) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
    auto h0 = std::chrono::steady_clock::now();
    decoder->prefill(L, in["q"].as<double>(), in["k"].as<double>(),
                     in["v"].as<double>(), viaHull.data());
    hullMs.push_back(std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - h0)
                         .count());
  }
  std::nth_element(hullMs.begin(), hullMs.begin() + 2, hullMs.end());
  auto t1 = std::chrono::steady_clock::now();
  attn::runtime::HostTensor out;
  if (auto s = kernel->run(in, {}, out, nullptr); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  auto t2 = std::chrono::steady_clock::now();
  double diff = 0;
  for (int64_t e = 0; e < L * 2; ++e)
    diff = std::max(diff, std::abs(viaHull[e] - out.as<double>()[e]));
  std::printf("prefill n=%lld hull_ms=%.1f kernel_ms=%.1f max_diff=%g\n", (long long)L,
              hullMs[2],
              std::chrono::duration<double, std::milli>(t2 - t1).count(), diff);
  return diff == 0 ? 0 : 1;
}

/// Prints `linear n=<steps> ns_per_step=<X> state_doubles=<S>` for the
/// recurrent decoder of a linear-attention kernel (D = Dv = 64): the time
/// of one step (append + query) over the last 10% of `steps` steps, and
/// the decoder's state, which does not grow with the position.
int runLinearDecode(int64_t steps, bool retention, bool features) {
  // Retention: RetNet's per-head decay, the decoder of head 3's stream.
  // Features: elu+1 feature maps, computed per step by the kernel.
  const std::string source =
      std::string("attention lin { q: f64[B, H, L, 64]; k: f64[B, H, L, 64];"
                  " v: f64[B, H, L, 64]\n") +
      (features ? " let fq[c] = select(q[c] > 0, q[c] + 1, exp(q[c]))\n"
                  " let fk[c] = select(k[c] > 0, k[c] + 1, exp(k[c]))\n score = dot(fq, fk)"
                : " score = dot(q, k) * 0.125") +
      (retention ? " * pow(1 - pow(2.0, -5 - h), i - j)" : "") +
      "\n mask = j <= i\n normalize = linear }";
  std::string messages;
  auto kernel = attn::JitKernel::compile({"linear.attn", source}, {}, messages);
  if (!kernel) {
    std::fprintf(stderr, "%s", messages.c_str());
    return 1;
  }
  std::string error;
  auto decoder = attn::Decoder::create(*kernel, error, 0, 0, retention ? 3 : 0);
  if (!decoder || std::string(decoder->strategy()) != "linear") {
    std::fprintf(stderr, "attnc-bench: no linear decoder: %s\n", error.c_str());
    return 1;
  }
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  // 1024 random (q, k, v) rows, drawn before timing and used in turn.
  std::vector<double> rows(1024 * 3 * 64), out(64);
  for (double &x : rows)
    x = u(rng);
  int64_t timed = std::max<int64_t>(steps / 10, 1);
  double t0 = 0;
  for (int64_t n = 0; n < steps; ++n) {
    if (n == steps - timed)
      t0 = nowNs(false);
    const double *r = &rows[(n % 1024) * 3 * 64];
    decoder->step(r + 64, r + 128, r, out.data());
    gSink = gSink + out[0];
  }
  double t1 = nowNs(false);
  std::printf("%s%s n=%lld ns_per_step=%.1f state_doubles=%d\n",
              retention ? "retention" : "linear", features ? "+elu-features" : "", (long long)steps,
              (t1 - t0) / double(timed), 64 * 64 + 64);
  return 0;
}

/// Prints `call n=<iters> us_per_call=<X>`: the median over 5 rounds of
/// `iters` calls of JitKernel::run (argument checks, output allocation and
/// the kernel) of the single kernel of `file` on f32 q, k, v [B, H, L, D]:
/// the C++ side of the Python package's per-call overhead
/// (bench/python_call.py).
int runCall(const std::string &file, int64_t B, int64_t H, int64_t L, int64_t D, int iters) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  std::string messages;
  auto kernel = attn::JitKernel::compile({file, text.str()}, {}, messages);
  if (!kernel) {
    std::fprintf(stderr, "%s", messages.c_str());
    return 1;
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::map<std::string, attn::runtime::HostTensor> inputs;
  for (const char *name : {"q", "k", "v"}) {
    attn::runtime::HostTensor t(attn::dsl::ElemType::F32, {B, H, L, D});
    for (int64_t e = 0; e < t.numel(); ++e)
      t.as<float>()[e] = normal(rng);
    inputs[name] = std::move(t);
  }
  attn::runtime::HostTensor out;
  std::vector<double> rounds;
  for (int r = 0; r < 6; ++r) {
    double t0 = nowNs(false);
    for (int c = 0; c < iters; ++c)
      if (attn::runtime::Status s = kernel->run(inputs, {}, out, nullptr); !s) {
        std::fprintf(stderr, "%s\n", s.message().c_str());
        return 1;
      }
    if (r > 0) // the first round warms up
      rounds.push_back((nowNs(false) - t0) / 1e3 / iters);
  }
  std::sort(rounds.begin(), rounds.end());
  gSink = out.as<float>()[0];
  std::printf("call n=%d us_per_call=%.2f\n", iters, rounds[rounds.size() / 2]);
  return 0;
}

/// STREAM-style memory bandwidth with `threads` threads on arrays of
/// `bytes` bytes each (far beyond the caches): `read` sums one array (what
/// an attention kernel's K and V reads are), `triad` computes
/// a = b + s * c (two reads, one write, STREAM's count of 3 arrays). Pages
/// are touched before timing; each figure is the best of `reps` runs.
/// Prints `stream read_GBps=X triad_GBps=Y threads=T bytes=N`.
int runStream(int64_t bytes, int threads, int reps) {
  const int64_t n = bytes / static_cast<int64_t>(sizeof(double));
  std::vector<double> a(n), b(n), c(n);
  auto parallel = [&](auto body) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] { body(n * t / threads, n * (t + 1) / threads, t); });
    for (auto &t : ts)
      t.join();
  };
  parallel([&](int64_t lo, int64_t hi, int) { // first touch by the thread that uses it
    for (int64_t x = lo; x < hi; ++x) {
      a[x] = 0.0;
      b[x] = 1.0;
      c[x] = 2.0;
    }
  });
  std::vector<double> sums(threads);
  double bestRead = 0, bestTriad = 0;
  for (int r = 0; r < reps; ++r) {
    double t0 = nowNs(false);
    parallel([&](int64_t lo, int64_t hi, int t) {
      // Eight accumulators: the sum is bound by loads, not the add latency.
      double s[8] = {};
      int64_t x = lo;
      for (; x + 8 <= hi; x += 8)
        for (int u = 0; u < 8; ++u)
          s[u] += b[x + u];
      for (; x < hi; ++x)
        s[0] += b[x];
      sums[t] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    });
    double t1 = nowNs(false);
    parallel([&](int64_t lo, int64_t hi, int) {
      for (int64_t x = lo; x < hi; ++x)
        a[x] = b[x] + 3.0 * c[x];
    });
    double t2 = nowNs(false);
    bestRead = std::max(bestRead, 8.0 * n / (t1 - t0));
    bestTriad = std::max(bestTriad, 24.0 * n / (t2 - t1));
  }
  for (double s : sums)
    gSink = gSink + s + a[n / 2];
  std::printf("stream read_GBps=%.1f triad_GBps=%.1f threads=%d bytes=%lld\n", bestRead,
              bestTriad, threads, static_cast<long long>(bytes));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"attnc-bench: benchmarks of the attnc runtime"};
  app.require_subcommand(1);

  CLI::App *hull = app.add_subcommand(
      "hull", "hard-max decode (append + query per step) on parabola keys");
  int64_t n = 100000;
  int64_t addresses = int64_t(1) << 20;
  bool useScan = false;
  std::string ties = "latest";
  uint64_t seed = 1;
  hull->add_option("--n", n, "number of steps")
      ->required()
      ->check(CLI::PositiveNumber);
  hull->add_flag("--scan", useScan, "use the O(n) scan instead of the hull");
  hull->add_option("--addresses", addresses,
                   "addresses are uniform in [0, A) at every N (default 2^20)")
      ->check(CLI::PositiveNumber);
  hull->add_option("--ties", ties, "tie rule")
      ->check(CLI::IsMember({"average", "latest", "first"}));
  hull->add_option("--seed", seed, "random seed");
  int reps = 0;
  hull->add_option("--reps", reps,
                   "timed runs after one warm-up run, the median is printed "
                   "(default: about 4e6 steps in all, odd, 3 to 51; 1 and no "
                   "warm-up with --scan)")
      ->check(CLI::PositiveNumber);
  bool cpuTime = false;
  hull->add_flag("--cpu-time", cpuTime,
                 "time with the thread's CPU clock instead of the wall clock");
  bool queryOnly = false;
  hull->add_flag("--query-only", queryOnly,
         "append the N keys untimed, then time N queries of the full "
         "cache, one after another (prints `query n=...`)")
      ->excludes("--scan");

  CLI::App *prefill = app.add_subcommand(
      "prefill", "hard-max causal prefill of L positions (2-D heads): through "
                 "the hull decoder and through the compiled kernel");
  int64_t L = 100000;
  prefill->add_option("--n", L, "sequence length")->check(CLI::PositiveNumber);

  CLI::App *callCmd = app.add_subcommand(
      "call", "per-call time of JitKernel::run on f32 q, k, v [B, H, L, D]");
  std::string callFile;
  int64_t cB = 1, cH = 1, cL = 16, cD = 16;
  int iters = 20000;
  callCmd->add_option("FILE", callFile, ".attn file with one kernel")->required();
  callCmd->add_option("--B", cB)->check(CLI::PositiveNumber);
  callCmd->add_option("--H", cH)->check(CLI::PositiveNumber);
  callCmd->add_option("--L", cL)->check(CLI::PositiveNumber);
  callCmd->add_option("--D", cD)->check(CLI::PositiveNumber);
  callCmd->add_option("--iters", iters, "calls per round")->check(CLI::PositiveNumber);

  CLI::App *linearCmd = app.add_subcommand(
      "linear-decode", "steps of the recurrent decoder of a causal linear-attention kernel");
  int64_t linSteps = 1000000;
  linearCmd->add_option("--n", linSteps, "number of steps")->check(CLI::PositiveNumber);
  bool linRetention = false, linFeatures = false;
  linearCmd->add_flag("--features", linFeatures, "elu+1 feature maps, computed by the kernel");
  linearCmd->add_flag("--retention", linRetention,
                      "with RetNet's per-head decay pow(1 - 2^(-5 - h), i - j)");

  CLI::App *streamCmd = app.add_subcommand(
      "stream", "STREAM-style memory bandwidth: read (sum of one array) and triad");
  int64_t streamBytes = int64_t(1) << 30;
  int streamThreads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int streamReps = 5;
  streamCmd->add_option("--bytes", streamBytes, "bytes per array (default 1 GiB)")
      ->check(CLI::Range(int64_t(1) << 16, int64_t(1) << 36));
  streamCmd->add_option("--threads", streamThreads, "threads (default: one per core)")
      ->check(CLI::Range(1, 1024));
  streamCmd->add_option("--reps", streamReps, "runs; the best is printed")->check(CLI::Range(1, 1000));

  CLI11_PARSE(app, argc, argv);

  if (streamCmd->parsed())
    return runStream(streamBytes, streamThreads, streamReps);

  if (linearCmd->parsed())
    return runLinearDecode(linSteps, linRetention, linFeatures);

  if (prefill->parsed())
    return runPrefill(L);
  if (callCmd->parsed())
    return runCall(callFile, cB, cH, cL, cD, iters);

  if (hull->parsed()) {
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
                     : static_cast<int>(std::clamp<int64_t>(4000000 / n, 3,
                                                            51)) | 1;
    std::mt19937_64 rng(seed);
    if (!useScan)
      runOnce(n, addresses, useScan, queryOnly, rule, cpuTime, rng); // warm-up
    std::vector<double> ns;
    for (int r = 0; r < reps; ++r)
      ns.push_back(
          runOnce(n, addresses, useScan, queryOnly, rule, cpuTime, rng));
    std::nth_element(ns.begin(), ns.begin() + reps / 2, ns.end());
    std::printf("%s n=%lld ns_per_step=%.1f\n",
                useScan ? "scan" : queryOnly ? "query" : "hull",
                static_cast<long long>(n), ns[reps / 2]);
    return 0;
  }
  return 0;
}
