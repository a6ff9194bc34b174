// A JIT user: compiles a kernel from source text with attnc::jit and runs
// it twice (the second compile is a cache hit).
#include "attn/jit/Jit.h"

#include <cmath>
#include <cstdio>

int main() {
  const char *source = R"(attention local {
  q: f32[B, H, L, 8]
  k: f32[B, H, L, 8]
  v: f32[B, H, L, 8]
  mask = j == i
}
)";
  using attn::runtime::HostTensor;
  HostTensor q(attn::dsl::ElemType::F32, {1, 2, 16, 8}), v(attn::dsl::ElemType::F32, {1, 2, 16, 8});
  for (int64_t e = 0; e < q.numel(); ++e) {
    q.as<float>()[e] = std::cos(0.1f * float(e));
    v.as<float>()[e] = float(e);
  }
  for (int round = 0; round < 2; ++round) {
    std::string messages;
    auto kernel = attn::JitKernel::compile({"local.attn", source}, {}, messages);
    std::fputs(messages.c_str(), stderr);
    if (!kernel)
      return 1;
    if (round == 1 && !kernel->cacheHit()) {
      std::fprintf(stderr, "jit_user: the second compile was not a cache hit\n");
      return 1;
    }
    HostTensor out;
    if (auto s = kernel->run({{"q", q}, {"k", q}, {"v", v}}, {}, out, nullptr); !s) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return 1;
    }
    // Each query attends to its own key only: out = v.
    for (int64_t e = 0; e < out.numel(); ++e)
      if (std::fabs(out.as<float>()[e] - v.as<float>()[e]) > 1e-4f) {
        std::fprintf(stderr, "jit_user: out[%lld] = %g, expected %g\n", (long long)e,
                     out.as<float>()[e], v.as<float>()[e]);
        return 1;
      }
  }
  std::printf("jit_user: ok\n");
  return 0;
}
