// attnc-attention-bench: Google Benchmark of JIT-compiled kernels from
// examples/variants, side by side in one run. Counters: GFLOP/s on
// DESIGN.md's work measure (participating pairs only) and % of the FP32 peak
// measured once per CPU and cached (attn/runtime/Peak.h). Use --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true for medians.
#include "attn/jit/Jit.h"
#include "attn/runtime/Peak.h"
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
              const std::map<std::string, std::string> &params = {},
              std::map<std::string, HostTensor> aux = {}, double pairsPerHead = 0) {
  static std::map<std::string, Case> cases;
  std::string key = name + "/" + std::to_string(H) + "/" + std::to_string(L) + "/" + std::to_string(D);
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
  for (auto &[n, t] : aux)
    c.inputs[n] = std::move(t);
  if (auto s = c.kernel->prepare(c.inputs, params, c.call); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    std::exit(1);
  }
  // DESIGN.md's work: 4 D per participating pair; counted by evaluating the
  // mask, or given in closed form for the largest cases.
  c.flops = pairsPerHead > 0 ? 4.0 * D * pairsPerHead * B * H
                             : attn::runtime::attentionFlops(c.kernel->kernel(), c.call.bindings,
                                                             c.inputs);
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

// Issue 3's comparison: B=1 H=4 D=128, L=16384.
constexpr int64_t kLongL = 16384;
double causalPairs(int64_t L) { return 0.5 * L * (L + 1); }
void BM_Causal_H4_L16384(benchmark::State &s) {
  run(s, prepare("causal", 1, 4, kLongL, 128, {}, {}, causalPairs(kLongL)));
}
/// 16 documents of 1024 tokens, causal within each.
Case &packedDocs() {
  HostTensor doc(attn::dsl::ElemType::I32, {1, kLongL});
  for (int64_t i = 0; i < kLongL; ++i)
    doc.as<int32_t>()[i] = int32_t(i / 1024);
  return prepare("packed_documents", 1, 4, kLongL, 128, {}, {{"doc", std::move(doc)}},
                 16 * causalPairs(1024));
}
void BM_PackedDocs16x1024_H4_L16384(benchmark::State &s) { run(s, packedDocs()); }
/// The tile map build of packed documents alone (what a new doc tensor
/// costs before the kernel runs), as timed inside JitKernel::prepare.
void BM_PackedDocs16x1024_H4_L16384_TileMap(benchmark::State &state) {
  Case &c = packedDocs();
  for (auto _ : state) {
    attn::JitKernel::Call call;
    if (auto s = c.kernel->prepare(c.inputs, {}, call); !s)
      state.SkipWithError(s.message().c_str());
    state.SetIterationTime(call.tileMapSeconds);
  }
}
void BM_SlidingWindow256_H4_L16384(benchmark::State &s) {
  double pairs = causalPairs(256) + double(kLongL - 256) * 256;
  run(s, prepare("sliding_window", 1, 4, kLongL, 128, {{"window", "256"}}, {}, pairs));
}

} // namespace

BENCHMARK(BM_Causal_H4_L16384)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_PackedDocs16x1024_H4_L16384)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_PackedDocs16x1024_H4_L16384_TileMap)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_SlidingWindow256_H4_L16384)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Dense_L2048)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Causal_L2048)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Causal_L8192)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_SlidingWindow256_L8192)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_MAIN();
