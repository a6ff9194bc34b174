// attnc-fp32-peak: measures this machine's FP32 FMA throughput (GFLOP/s), one
// thread per core (attn::runtime::measurePeakGflops), and prints the figure
// "% of peak" is read against (attn::runtime::peakGflops: the cached
// measurement, or $ATTNC_PEAK_GFLOPS).
#include "attn/runtime/Peak.h"

#include <cstdio>
#include <thread>

int main() {
  bool wide = false;
  double total = attn::runtime::measurePeakGflops(200'000'000, &wide);
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::printf("fp32 peak: %.1f GFLOP/s on %u threads (%.1f per thread, %s FMA)\n", total, threads,
              total / threads, wide ? "512-bit" : "256-bit");
  std::printf("%% of peak figures use: %.1f GFLOP/s\n", attn::runtime::peakGflops());
}
