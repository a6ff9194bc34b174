// attnc-fp32-peak: measures this machine's FP32 FMA throughput (GFLOP/s), one
// thread per core, with independent 512-bit (or 256-bit) FMA chains. The
// figure that "% of peak" should be read against on a machine that is not
// the 2-core Zen 5 DESIGN.md assumes (466 GFLOP/s).
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

__attribute__((target("avx512f"))) double fmaLoop512(long n) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i)
    a[i] = _mm512_set1_ps(0.1f * i);
  const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-4f);
  auto t0 = std::chrono::steady_clock::now();
  for (long k = 0; k < n; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i)
      a[i] = _mm512_fmadd_ps(a[i], b, c);
    __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]),
                     "+v"(a[5]), "+v"(a[6]), "+v"(a[7]), "+v"(a[8]), "+v"(a[9]), "+v"(a[10]),
                     "+v"(a[11]));
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return n * 12.0 * 32 / s / 1e9;
}

__attribute__((target("avx2,fma"))) double fmaLoop256(long n) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i)
    a[i] = _mm256_set1_ps(0.1f * i);
  const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-4f);
  auto t0 = std::chrono::steady_clock::now();
  for (long k = 0; k < n; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i)
      a[i] = _mm256_fmadd_ps(a[i], b, c);
    __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]),
                     "+v"(a[5]), "+v"(a[6]), "+v"(a[7]), "+v"(a[8]), "+v"(a[9]), "+v"(a[10]),
                     "+v"(a[11]));
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return n * 12.0 * 16 / s / 1e9;
}

} // namespace

int main() {
  bool avx512 = __builtin_cpu_supports("avx512f");
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  const long n = 200'000'000;
  std::vector<double> rates(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { rates[t] = avx512 ? fmaLoop512(n) : fmaLoop256(n); });
  for (auto &th : pool)
    th.join();
  double total = 0;
  for (double r : rates)
    total += r;
  std::printf("fp32 peak: %.1f GFLOP/s on %u threads (%.1f per thread, %s FMA)\n", total, threads,
              total / threads, avx512 ? "512-bit" : "256-bit");
}
