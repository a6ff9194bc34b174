// attnc-fp32-peak: measures this machine's FP32 FMA throughput (GFLOP/s), one
// thread per core, over about 2 s (attn::runtime::measurePeakGflops, which
// attn::runtime::peakGflops also runs, shorter, to cache the figure "% of
// peak" is read against).
#include "attn/runtime/Peak.h"

#include <algorithm>
#include <cstdio>
#include <thread>

int main() {
  bool wide = false;
  double total = attn::runtime::measurePeakGflops(200'000'000, &wide);
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::printf("fp32 peak: %.1f GFLOP/s on %u threads (%.1f per thread, %s FMA)\n", total, threads,
              total / threads, wide ? "512-bit" : "256-bit");
}
