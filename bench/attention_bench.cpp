// attnc-attention-bench: Google Benchmark of JIT-compiled kernels from
// examples/variants, side by side in one run. Counters: GFLOP/s on
// DESIGN.md's work measure (participating pairs only) and % of the FP32 peak
// (ATTNC_PEAK_GFLOPS, default 466). Use --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true for medians.
#include "attn/runtime/Jit.h"
#include "attn/runtime/Reference.h"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

using attn::runtime::HostTensor;

namespace {

struct Case {
  std::unique_ptr<attn::JitKernel> kernel;
  std::map<std::string, HostTensor> inputs;
  attn::JitKernel::Call call;
  double flops = 0;
};

/// Compiles variants/NAME.attn and prepares a call on random q/k/v of
/// [B, H, L, D] (every named size of q/k/v bound by these).
Case &prepare(const std::string &name, int64_t B, int64_t H, int64_t L, int64_t D,
              const std::map<std::string, std::string> &params = {}) {
  static std::map<std::string, Case> cases;
  std::string key = name + "/" + std::to_string(L) + "/" + std::to_string(D);
  auto it = cases.find(key);
  if (it != cases.end())
    return it->second;
  Case &c = cases[key];
  std::ifstream in(std::string(ATTNC_VARIANTS_DIR) + "/" + name + ".attn");
  std::stringstream text;
  text << in.rdbuf();
  std::string messages;
  c.kernel = attn::JitKernel::compile({name + ".attn", text.str()}, {}, messages);
  if (!c.kernel) {
    std::fprintf(stderr, "%s", messages.c_str());
    std::exit(1);
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (const char *t : {"q", "k", "v"}) {
    HostTensor h(attn::dsl::ElemType::F32, {B, H, L, D});
    for (int64_t e = 0; e < h.numel(); ++e)
      h.as<float>()[e] = normal(rng);
    c.inputs[t] = std::move(h);
  }
  if (auto s = c.kernel->prepare(c.inputs, params, c.call); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    std::exit(1);
  }
  c.flops = attn::runtime::attentionFlops(c.kernel->kernel(), c.call.bindings, c.inputs);
  return c;
}

void run(benchmark::State &state, Case &c) {
  double seconds = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    if (auto s = c.kernel->execute(c.call); !s)
      state.SkipWithError(s.message().c_str());
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(dt);
    seconds += dt;
  }
  double gflops = c.flops * 1e-9 * state.iterations() / seconds;
  state.counters["GFLOP/s"] = gflops;
  state.counters["pct_of_peak"] = 100 * gflops / attn::runtime::peakGflops();
}

void BM_Dense_L2048(benchmark::State &s) { run(s, prepare("dense", 1, 8, 2048, 128)); }
void BM_Causal_L2048(benchmark::State &s) { run(s, prepare("causal", 1, 8, 2048, 128)); }
void BM_Causal_L8192(benchmark::State &s) { run(s, prepare("causal", 1, 8, 8192, 128)); }
void BM_SlidingWindow256_L8192(benchmark::State &s) {
  run(s, prepare("sliding_window", 1, 8, 8192, 128, {{"window", "256"}}));
}

} // namespace

BENCHMARK(BM_Dense_L2048)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Causal_L2048)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Causal_L8192)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_SlidingWindow256_L8192)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_MAIN();
