// Just-in-time kernels from C++: compile a `.attn` source string with
// attn::JitKernel, run it on host tensors, and compare with the float64
// reference implementation (attn::runtime::referenceAttention). Compiled
// kernels are cached in $ATTNC_CACHE_DIR (see attn/jit/Jit.h).
#include "attn/jit/Jit.h"
#include "attn/runtime/Reference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>

using attn::runtime::HostTensor;
using attn::dsl::ElemType;

namespace {

// Mistral-style sliding window with grouped-query heads (LANGUAGE.md §1).
const char *kSource = R"(
attention sliding_window {
  q: f32[B, H, L, D]
  k: f32[B, G, L, D]
  v: f32[B, G, L, D]
  param window: i32 = 4096
  mask = j <= i && i - j < window
  output lse
}
)";

HostTensor randomTensor(std::vector<int64_t> shape, std::mt19937 &rng) {
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  HostTensor t(ElemType::F32, std::move(shape));
  for (int64_t n = 0; n < t.numel(); ++n)
    t.setDouble(n, uniform(rng));
  return t;
}

/// max |a - b| over two tensors of the same shape (a -inf matching a -inf is 0).
double maxError(const HostTensor &a, const HostTensor &b) {
  double err = 0;
  for (int64_t n = 0; n < a.numel(); ++n) {
    double x = a.getDouble(n), y = b.getDouble(n);
    if (x != y)
      err = std::max(err, std::abs(x - y));
  }
  return err;
}

} // namespace

int main() {
  std::string messages;
  auto kernel = attn::JitKernel::compile({"sliding_window.attn", kSource}, {}, messages);
  std::fputs(messages.c_str(), stderr);
  if (!kernel)
    return 1;
  std::printf("kernel %s: %s in %.2f s (strategy %s)\n", kernel->kernel().name.c_str(),
              kernel->cacheHit() ? "loaded from the cache" : "compiled",
              kernel->compileSeconds(), kernel->manifest().strategy.c_str());

  // 8 query heads share 2 key/value heads; tensors are C order [B, H, L, D].
  const int64_t B = 2, H = 8, G = 2, L = 257, D = 64;
  std::mt19937 rng(7);
  std::map<std::string, HostTensor> inputs{{"q", randomTensor({B, H, L, D}, rng)},
                                           {"k", randomTensor({B, G, L, D}, rng)},
                                           {"v", randomTensor({B, G, L, D}, rng)}};
  std::map<std::string, std::string> params{{"window", "48"}};

  HostTensor out, lse;
  if (attn::runtime::Status s = kernel->run(inputs, params, out, &lse); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }

  attn::runtime::Bindings bind;
  HostTensor refOut, refLse;
  attn::runtime::Status s = attn::runtime::bindArguments(kernel->kernel(), inputs, params, bind);
  if (s)
    s = attn::runtime::referenceAttention(kernel->kernel(), inputs, bind, refOut, &refLse);
  if (!s) {
    std::fprintf(stderr, "reference: %s\n", s.message().c_str());
    return 1;
  }

  const double tolerance = 1e-4;
  double outErr = maxError(out, refOut), lseErr = maxError(lse, refLse);
  std::printf("out %s: max error %.3g\nlse %s: max error %.3g\n", out.describe().c_str(), outErr,
              lse.describe().c_str(), lseErr);

  // A wrong argument is an error naming the tensor and dimension.
  HostTensor badV = randomTensor({B, G, L + 1, D}, rng);
  std::map<std::string, HostTensor> bad = inputs;
  bad["v"] = badV;
  HostTensor unused;
  attn::runtime::Status badStatus = kernel->run(bad, params, unused, nullptr);
  std::printf("with a wrong v: %s\n", badStatus ? "no error?" : badStatus.message().c_str());

  bool ok = outErr <= tolerance && lseErr <= tolerance && !badStatus;
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
