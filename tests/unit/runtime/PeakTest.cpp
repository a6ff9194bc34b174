// The measured FP32 peak: measured once per CPU, cached beside the compile
// cache, re-measured when the file is damaged, overridden by the environment.
#include "attn/runtime/Peak.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path &p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Peak, MeasuresAPositiveRate) {
  if (!__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "this CPU has no FMA unit to measure";
  EXPECT_GT(attn::runtime::measurePeakGflops(2'000'000), 1.0);
}

// peakGflops() measures once per process; run it in a child so each case
// starts fresh, with its own cache directory.
double peakInChild(const fs::path &dir, const char *override) {
  int fds[2];
  if (pipe(fds) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    setenv("ATTNC_CACHE_DIR", dir.c_str(), 1);
    if (override)
      setenv("ATTNC_PEAK_GFLOPS", override, 1);
    else
      unsetenv("ATTNC_PEAK_GFLOPS");
    double v = attn::runtime::peakGflops();
    (void)!write(fds[1], &v, sizeof v);
    _exit(0);
  }
  close(fds[1]);
  double v = -1;
  if (read(fds[0], &v, sizeof v) != sizeof v)
    v = -1;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return v;
}

TEST(Peak, CachedBesideTheCompileCacheAndReadBack) {
  if (!__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "this CPU has no FMA unit to measure";
  fs::path dir = fs::temp_directory_path() / ("attnc-peak-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  double first = peakInChild(dir, nullptr);
  ASSERT_GT(first, 1.0);
  std::string text = slurp(dir / "fp32-peak.txt");
  ASSERT_NE(text.find("gflops="), std::string::npos) << text;
  EXPECT_EQ(text.rfind("cpu=", 0), 0u) << text;

  // A second process reads the file: a value planted there comes back.
  std::string key = text.substr(0, text.find("gflops="));
  std::ofstream(dir / "fp32-peak.txt", std::ios::trunc) << key << "gflops=12345.5\n";
  EXPECT_DOUBLE_EQ(peakInChild(dir, nullptr), 12345.5);

  // Another CPU's figure, or a damaged file, is measured anew.
  std::ofstream(dir / "fp32-peak.txt", std::ios::trunc) << "cpu=some other CPU\nthreads=1\ngflops=7\n";
  double again = peakInChild(dir, nullptr);
  EXPECT_NE(again, 7.0);
  EXPECT_GT(again, 1.0);
  std::ofstream(dir / "fp32-peak.txt", std::ios::trunc) << "garbage";
  EXPECT_GT(peakInChild(dir, nullptr), 1.0);
  EXPECT_NE(slurp(dir / "fp32-peak.txt"), "garbage");

  // The environment wins.
  EXPECT_DOUBLE_EQ(peakInChild(dir, "321"), 321.0);
  fs::remove_all(dir);
}

} // namespace
