// What the conformance tests share: the variants' sources, a temporary
// kernel cache per test process, deterministic random tensors.
#pragma once

#include "attn/jit/Jit.h"
#include "attn/runtime/Tensor.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <unistd.h>

#ifndef ATTN_VARIANTS_DIR
#error "ATTN_VARIANTS_DIR must name the source tree's examples/variants"
#endif

namespace attn::conformance {

namespace fs = std::filesystem;
using namespace attn::runtime;

inline const double kInf = std::numeric_limits<double>::infinity();

/// One temporary kernel cache per test process, removed at exit.
class CacheDir : public ::testing::Environment {
public:
  static fs::path path() {
    static fs::path p = fs::temp_directory_path() /
                        ("attn-conformance-" + std::to_string(::getpid()));
    return p;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(path(), ec);
  }
};

inline SourceFile readVariant(const std::string &file) {
  fs::path p = fs::path(ATTN_VARIANTS_DIR) / file;
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << p;
  std::stringstream s;
  s << in.rdbuf();
  return {p.string(), s.str()};
}

/// The target the suite runs on: ATTNC_TEST_TARGET (e.g. host-opencl; ctest
/// runs the suite once more on PoCL), else the host CPU. On a GPU target a
/// kernel whose GPU part fails is an error, never a silent CPU fallback.
inline std::string testTarget() {
  const char *t = std::getenv("ATTNC_TEST_TARGET");
  return t && *t ? t : "host";
}

/// Why a kernel compiled for the test target cannot be tested there (it
/// has no GPU schedule on a GPU target), or empty.
inline std::string untestableOnTarget(const JitKernel &k) {
  if (testTarget() == "host" || k.manifest().hasGpu)
    return "";
  return "kernel '" + k.manifest().name + "' has no GPU kernel on " + testTarget() + ": " +
         k.manifest().gpuWhyNot;
}

/// ASSERT_TRUE(k) for a compiled kernel, and a skip naming the reason when
/// the test target cannot run it.
#define ASSERT_COMPILED(k)                                                                          \
  do {                                                                                             \
    ASSERT_TRUE(k);                                                                                \
    if (std::string why = ::attn::conformance::untestableOnTarget(*(k)); !why.empty())             \
      GTEST_SKIP() << why;                                                                         \
  } while (0)

/// JIT options for the suite: the test's cache, testTarget().
inline JitOptions testOptions(const std::string &cacheDir = "") {
  JitOptions opts;
  opts.cacheDir = cacheDir.empty() ? CacheDir::path().string() : cacheDir;
  opts.target = testTarget();
  opts.requireGpu = opts.target != "host";
  return opts;
}

/// Compiles `src` just in time into the test's cache (with its backward
/// when asked), for testTarget(); null, with a test failure, when it does
/// not compile.
inline std::unique_ptr<JitKernel> compileSource(const SourceFile &src, const std::string &cacheDir = "",
                                                bool backward = false) {
  JitOptions opts = testOptions(cacheDir);
  opts.backward = backward;
  std::string messages;
  auto k = JitKernel::compile(src, opts, messages);
  EXPECT_TRUE(k) << src.fileName << ":\n" << messages;
  return k;
}

inline std::unique_ptr<JitKernel> compileVariant(const std::string &file,
                                                 const std::string &cacheDir = "") {
  return compileSource(readVariant(file), cacheDir);
}

/// Uniform random values in [lo, hi), stored in the tensor's type (rounded to
/// nearest-even for bf16/f16, so kernel and reference see the same values).
inline HostTensor uniform(ElemType type, std::vector<int64_t> shape, std::mt19937 &rng,
                   double lo = -1.0, double hi = 1.0) {
  HostTensor t(type, std::move(shape));
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t n = 0; n < t.numel(); ++n)
    t.setDouble(n, dist(rng));
  return t;
}

inline HostTensor filled(ElemType type, std::vector<int64_t> shape, double value = 0) {
  HostTensor t(type, std::move(shape));
  for (int64_t n = 0; n < t.numel(); ++n)
    t.setDouble(n, value);
  return t;
}

/// q [B, H, Lq, D], k [B, Hk, Lk, D], v [B, Hk, Lk, Dv]; q scaled by qScale to
/// make the softmax more or less peaked.
inline std::map<std::string, HostTensor> qkv(ElemType type, int64_t B, int64_t H, int64_t Hk,
                                      int64_t Lq, int64_t Lk, int64_t D, int64_t Dv,
                                      std::mt19937 &rng, double qScale = 2.0) {
  std::map<std::string, HostTensor> in;
  in["q"] = uniform(type, {B, H, Lq, D}, rng, -qScale, qScale);
  in["k"] = uniform(type, {B, Hk, Lk, D}, rng);
  in["v"] = uniform(type, {B, Hk, Lk, Dv}, rng);
  return in;
}

/// Document ids [B, L] of random lengths (a one-token document at position
/// 1), the last `pad` tokens of each row -1 (padding).
inline HostTensor documentIds(int64_t B, int64_t L, int64_t pad, std::mt19937 &rng) {
  HostTensor doc(ElemType::I32, {B, L});
  std::uniform_int_distribution<int64_t> len(1, std::max<int64_t>(1, L / 3));
  for (int64_t b = 0; b < B; ++b) {
    int64_t id = b * 100, left = 0; // ids differ between rows of the batch
    for (int64_t i = 0; i < L; ++i) {
      if (i >= L - pad) {
        doc.as<int32_t>()[b * L + i] = -1;
        continue;
      }
      if (left == 0) {
        left = i == 1 ? 1 : len(rng); // a one-token document at position 1
        ++id;
      }
      doc.as<int32_t>()[b * L + i] = (int32_t)id;
      --left;
    }
  }
  return doc;
}

} // namespace attn::conformance
