// An AOT user: the causal kernel from attnc_add_kernel() on tensors of the
// host runtime (attnc::runtime), checked against a direct computation, and
// the runtime's merge of attention states on its output.
#include "causal.h"

#include "HalideBuffer.h"
#include "attn/runtime/Merge.h"
#include "attn/runtime/Tensor.h"

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const int L = 20, D = 8;
  using attn::runtime::HostTensor;
  HostTensor q(attn::dsl::ElemType::F32, {1, 1, L, D});
  for (int64_t e = 0; e < q.numel(); ++e)
    q.as<float>()[e] = std::sin(0.37f * float(e));
  HostTensor out(attn::dsl::ElemType::F32, {1, 1, L, D});
  // Halide's dimensions are the reverse of the C-order shape.
  Halide::Runtime::Buffer<float> qb(q.as<float>(), D, L, 1, 1), ob(out.as<float>(), D, L, 1, 1);
  if (causal(qb, qb, qb, ob) != 0) {
    std::fprintf(stderr, "causal failed\n");
    return 1;
  }
  double worst = 0;
  for (int i = 0; i < L; ++i) {
    std::vector<double> w(i + 1);
    double mx = -1e300, sum = 0;
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      for (int d = 0; d < D; ++d)
        s += double(q.as<float>()[i * D + d]) * q.as<float>()[j * D + d];
      w[j] = s / std::sqrt(double(D));
      mx = std::max(mx, w[j]);
    }
    for (double &x : w)
      sum += (x = std::exp(x - mx));
    for (int d = 0; d < D; ++d) {
      double ref = 0;
      for (int j = 0; j <= i; ++j)
        ref += w[j] / sum * q.as<float>()[j * D + d];
      worst = std::max(worst, std::fabs(ref - out.as<float>()[i * D + d]));
    }
  }
  std::printf("aot_user: max error %.2e\n", worst);

  // A state merged with one that saw no key is itself.
  HostTensor lse(attn::dsl::ElemType::F32, {1, 1, L}), none(attn::dsl::ElemType::F32, {1, 1, L});
  for (int i = 0; i < L; ++i) {
    lse.as<float>()[i] = 0.5f * float(i);
    none.as<float>()[i] = -INFINITY;
  }
  HostTensor merged, mergedLse;
  attn::runtime::Status s =
      attn::runtime::mergeAttentionStates(out, lse, out, none, merged, mergedLse);
  if (!s || merged.bytes != out.bytes || mergedLse.bytes != lse.bytes) {
    std::fprintf(stderr, "aot_user: merge: %s\n", s ? "not the state itself" : s.message().c_str());
    return 1;
  }
  return worst < 1e-5 ? 0 : 1;
}
