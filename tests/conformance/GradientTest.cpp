// Gradients of the compiled backward (JitOptions::backward,
// JitKernel::backward) against the float64 reference, on ragged sizes:
//
// - for scaled-dot softmax kernels (causal, GQA decode), against a float64
//   backward written here from the reference's weights (FlashAttention's
//   formulas: dv = Pᵀ dout, ds = P ∘ (dout vᵀ − Δ), dq = c ds k, dk = c dsᵀ q),
//   every element;
// - for every variant with a backward, against central differences of the
//   float64 reference's loss Σ dout ∘ out (q, k, v and aux elements in
//   their storage type with the exact stored step; params in f64), on a
//   deterministic sample of elements of every gradient.
//
// Fully masked rows must give dq = 0 exactly; no gradient may be NaN.
#include "ConformanceUtil.h"
#include "attn/runtime/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

using namespace attn;
using namespace attn::runtime;
using namespace attn::conformance;

namespace {

std::unique_ptr<JitKernel> compileWithBackward(const SourceFile &src) {
  return compileSource(src, "", /*backward=*/true);
}

/// The forward (out, lse) and the backward of `k` for a random dout.
struct Pass {
  JitKernel::Call call;
  HostTensor dout;
  std::map<std::string, HostTensor> grads;
};

bool runBoth(const JitKernel &k, const std::map<std::string, HostTensor> &in,
             const std::map<std::string, std::string> &params, std::mt19937 &rng, Pass &r) {
  Status s = k.prepare(in, params, r.call);
  EXPECT_TRUE(s) << s.message();
  if (!s || !(s = k.execute(r.call))) {
    EXPECT_TRUE(s) << s.message();
    return false;
  }
  r.dout = uniform(r.call.out.type, r.call.out.shape, rng);
  s = k.backward(in, params, r.call.out, r.dout, k.kernel().outputLse ? &r.call.lse : nullptr,
                 r.grads);
  EXPECT_TRUE(s) << s.message();
  return bool(s);
}

/// Σ dout ∘ out of the float64 reference.
double referenceLoss(const dsl::Kernel &k, const std::map<std::string, HostTensor> &in,
                     const Bindings &bd, const HostTensor &dout) {
  HostTensor out;
  Status s = referenceAttention(k, in, bd, out, nullptr);
  EXPECT_TRUE(s) << s.message();
  double loss = 0;
  for (int64_t n = 0; n < out.numel(); ++n)
    loss += dout.getDouble(n) * out.getDouble(n);
  return loss;
}

/// Up to `cap` element indices of a tensor of `numel` elements, spread over
/// it deterministically (first and last included).
std::vector<int64_t> sample(int64_t numel, int64_t cap, std::mt19937 &rng) {
  std::vector<int64_t> all(numel);
  std::iota(all.begin(), all.end(), 0);
  if (numel <= cap)
    return all;
  std::shuffle(all.begin() + 1, all.end() - 1, rng);
  std::vector<int64_t> some(all.begin(), all.begin() + cap - 1);
  some.push_back(numel - 1);
  return some;
}

/// Compares the gradient `got` with `want` at `where` (flat indices):
/// |got - want| <= rel·max|want| + abs. Returns the largest error.
double compare(const std::string &label, const HostTensor &got,
               const std::vector<std::pair<int64_t, double>> &want, double rel, double abs) {
  double maxRef = 0, maxErr = 0;
  for (auto [n, w] : want)
    maxRef = std::max(maxRef, std::fabs(w));
  double bound = rel * maxRef + abs;
  int reported = 0;
  for (auto [n, w] : want) {
    double g = got.getDouble(n), err = std::isnan(g) ? kInf : std::fabs(g - w);
    maxErr = std::max(maxErr, err);
    if (!(err <= bound) && reported++ < 6)
      ADD_FAILURE() << label << "[" << n << "] = " << g << ", reference " << w << ", |err| "
                    << err << " > " << bound;
  }
  if (std::getenv("ATTN_CONFORMANCE_VERBOSE"))
    std::printf("  %-44s max|ref| %-10.4g max err %-10.3g (bound %.3g, %zu elements)\n",
                label.c_str(), maxRef, maxErr, bound, want.size());
  return maxErr;
}

/// Checks every gradient of `k` on `in` against central differences of the
/// reference loss, on up to `cap` elements of each.
void checkByDifferences(const JitKernel &k, const std::map<std::string, HostTensor> &in,
                        const std::map<std::string, std::string> &params, const std::string &label,
                        int64_t cap = 48, double rel = 2e-4) {
  std::mt19937 rng(1234);
  Pass r;
  if (!runBoth(k, in, params, rng, r))
    return;
  const dsl::Kernel &kd = k.kernel();
  EXPECT_EQ(k.manifest().gradNames.size(), r.grads.size());
  for (const std::string &name : k.manifest().gradNames) {
    ASSERT_TRUE(r.grads.count(name)) << label << ": no gradient of " << name;
    const HostTensor &g = r.grads.at(name);
    for (int64_t n = 0; n < g.numel(); ++n)
      ASSERT_FALSE(std::isnan(g.getDouble(n))) << label << ": d" << name << "[" << n << "] is NaN";
    std::vector<std::pair<int64_t, double>> want;
    if (auto it = in.find(name); it != in.end()) {
      EXPECT_EQ(g.shape, it->second.shape) << label << ": d" << name;
      EXPECT_EQ(g.type, it->second.type) << label << ": d" << name;
      std::map<std::string, HostTensor> x = in;
      HostTensor &t = x.at(name);
      for (int64_t n : sample(t.numel(), cap, rng)) {
        double x0 = t.getDouble(n), eps = 1e-5 * std::max(1.0, std::fabs(x0));
        t.setDouble(n, x0 + eps);
        double hi = t.getDouble(n);
        double lossHi = referenceLoss(kd, x, r.call.bindings, r.dout);
        t.setDouble(n, x0 - eps);
        double lo = t.getDouble(n);
        double lossLo = referenceLoss(kd, x, r.call.bindings, r.dout);
        t.setDouble(n, x0);
        want.push_back({n, (lossHi - lossLo) / (hi - lo)});
      }
    } else { // a float param: perturbed in f64 in the bindings
      Bindings bd = r.call.bindings;
      double p0 = bd.params.at(name).f, eps = 1e-6 * std::max(1.0, std::fabs(p0));
      bd.params[name].f = p0 + eps;
      double lossHi = referenceLoss(kd, in, bd, r.dout);
      bd.params[name].f = p0 - eps;
      double lossLo = referenceLoss(kd, in, bd, r.dout);
      want.push_back({0, (lossHi - lossLo) / (2 * eps)});
    }
    compare(label + " d" + name, g, want, rel, 1e-5);
  }
}

/// The float64 backward of a softmax kernel whose score is c·dot(q, k) (and
/// any mask), from the reference's weights; compares every element.
void checkScaledDotSoftmax(const JitKernel &k, const std::map<std::string, HostTensor> &in,
                           double c, const std::string &label) {
  std::mt19937 rng(99);
  Pass r;
  if (!runBoth(k, in, {}, rng, r))
    return;
  const Bindings &bd = r.call.bindings;
  HostTensor P;
  Status s = referenceWeights(k.kernel(), in, bd, P);
  ASSERT_TRUE(s) << s.message();
  const int64_t B = bd.B, H = bd.H, Hk = bd.Hk, Lq = bd.Lq, Lk = bd.Lk, D = bd.D, Dv = bd.Dv;
  const int64_t G = H / Hk;
  const HostTensor &q = in.at("q"), &kk = in.at("k"), &v = in.at("v"), &dout = r.dout;
  std::vector<double> dq(q.numel()), dk(kk.numel()), dv(v.numel());
  auto Q = [&](int64_t b, int64_t h, int64_t i, int64_t d) { return ((b * H + h) * Lq + i) * D + d; };
  auto K = [&](int64_t b, int64_t h, int64_t j, int64_t d) { return ((b * Hk + h) * Lk + j) * D + d; };
  auto V = [&](int64_t b, int64_t h, int64_t j, int64_t d) { return ((b * Hk + h) * Lk + j) * Dv + d; };
  auto O = [&](int64_t b, int64_t h, int64_t i, int64_t d) { return ((b * H + h) * Lq + i) * Dv + d; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        int64_t hk = h / G;
        auto p = [&](int64_t j) { return P.getDouble(((b * H + h) * Lq + i) * Lk + j); };
        std::vector<double> dP(Lk);
        double delta = 0;
        for (int64_t j = 0; j < Lk; ++j) {
          for (int64_t d = 0; d < Dv; ++d)
            dP[j] += dout.getDouble(O(b, h, i, d)) * v.getDouble(V(b, hk, j, d));
          delta += p(j) * dP[j];
        }
        for (int64_t j = 0; j < Lk; ++j) {
          double ds = p(j) * (dP[j] - delta);
          for (int64_t d = 0; d < Dv; ++d)
            dv[V(b, hk, j, d)] += p(j) * dout.getDouble(O(b, h, i, d));
          for (int64_t d = 0; d < D; ++d) {
            dq[Q(b, h, i, d)] += c * ds * kk.getDouble(K(b, hk, j, d));
            dk[K(b, hk, j, d)] += c * ds * q.getDouble(Q(b, h, i, d));
          }
        }
      }
  auto all = [](const std::vector<double> &w) {
    std::vector<std::pair<int64_t, double>> out;
    for (size_t n = 0; n < w.size(); ++n)
      out.push_back({int64_t(n), w[n]});
    return out;
  };
  compare(label + " dq", r.grads.at("q"), all(dq), 2e-4, 1e-6);
  compare(label + " dk", r.grads.at("k"), all(dk), 2e-4, 1e-6);
  compare(label + " dv", r.grads.at("v"), all(dv), 2e-4, 1e-6);
}

// ---------------------------------------------------------------------------

TEST(Gradients, CausalAgainstTheFloat64Backward) {
  auto k = compileWithBackward(readVariant("causal.attn"));
  ASSERT_TRUE(k);
  EXPECT_TRUE(k->manifest().hasBackward);
  EXPECT_TRUE(k->manifest().hasLse); // no `output lse`: NAME_lse gives it
  std::mt19937 rng(1);
  for (int64_t L : {1, 19, 70, 129}) // 70 and 129 straddle 64-query and 128-key tiles
    checkScaledDotSoftmax(*k, qkv(ElemType::F32, 2, 2, 2, L, L, 16, 16, rng),
                          1.0 / std::sqrt(16.0), "causal L=" + std::to_string(L));
  // Value heads wider and narrower than the query/key heads.
  SourceFile src{"causal_dv.attn", R"(attention causal_dv {
  q: f32[B, H, L, D]
  k: f32[B, H, L, D]
  v: f32[B, H, L, E]
  mask = j <= i
  output lse
})"};
  auto kv = compileWithBackward(src);
  ASSERT_TRUE(kv);
  EXPECT_FALSE(kv->manifest().hasLse); // the forward gives lse
  for (auto [D, E] : std::vector<std::pair<int64_t, int64_t>>{{16, 24}, {24, 8}})
    checkScaledDotSoftmax(*kv, qkv(ElemType::F32, 1, 2, 2, 70, 70, D, E, rng),
                          1.0 / std::sqrt(double(D)),
                          "D=" + std::to_string(D) + " Dv=" + std::to_string(E));
}

TEST(Gradients, GqaDecodeSumsKeyGradientsOverTheGroup) {
  auto k = compileWithBackward(readVariant("gqa_decode.attn"));
  ASSERT_TRUE(k);
  std::mt19937 rng(2);
  // H = 6 query heads on G = 2 key heads; Lq < Lk (decode), Lq > Lk (rows
  // that see no key: dq = 0).
  for (auto [Lq, Lk] : std::vector<std::pair<int64_t, int64_t>>{{3, 70}, {5, 2}, {130, 140}})
    checkScaledDotSoftmax(*k, qkv(ElemType::F32, 1, 6, 2, Lq, Lk, 128, 128, rng),
                          1.0 / std::sqrt(128.0),
                          "gqa Lq=" + std::to_string(Lq) + " Lk=" + std::to_string(Lk));
}

TEST(Gradients, EveryDifferentiableVariantMatchesCentralDifferences) {
  struct Variant {
    const char *file;
    std::map<std::string, std::string> params;
    int64_t D = 16; // the head dim where the file does not fix it
  };
  const Variant variants[] = {
      {"causal.attn", {}},
      {"dense.attn", {}},
      {"sliding_window.attn", {{"window", "5"}}},
      {"prefix_lm.attn", {}},
      {"dilated_window.attn", {}},
      {"softcap.attn", {{"cap", "1.5"}}}, // a small cap: tanh far from linear
      {"sigmoid.attn", {}},
      {"relu.attn", {}},
      {"cosine.attn", {}},
      {"alibi_causal.attn", {}},
      {"topk.attn", {}}, // topk(32): rows of L = 70 keep 32 of up to 70 keys
  };
  for (const Variant &var : variants) {
    SCOPED_TRACE(var.file);
    auto k = compileWithBackward(readVariant(var.file));
    ASSERT_TRUE(k);
    std::mt19937 rng(3);
    const dsl::Kernel &kd = k->kernel();
    int64_t D = var.D;
    if (const dsl::Dim &last = kd.q->dims.back(); last.isLiteral())
      D = last.value;
    for (int64_t L : {7, 70})
      checkByDifferences(*k, qkv(kd.q->type, 1, 2, 2, L, L, D, D, rng), var.params,
                         std::string(var.file) + " L=" + std::to_string(L));
  }
}

TEST(Gradients, BiasTableAndPerHeadSlopesGetTheirGradients) {
  auto k = compileWithBackward(readVariant("bias_table.attn"));
  ASSERT_TRUE(k);
  ASSERT_EQ(k->manifest().gradNames, (std::vector<std::string>{"q", "k", "v", "bias"}));
  std::mt19937 rng(4);
  auto in = qkv(ElemType::F32, 2, 2, 2, 19, 19, 16, 16, rng);
  in["bias"] = uniform(ElemType::F32, {2, 19, 19}, rng);
  checkByDifferences(*k, in, {}, "bias_table", 64);

  // A learned slope per head (f32[H]) and a float param: dslope is reduced
  // over every pair of its head in the kernel.
  SourceFile src{"slopes.attn", R"(attention learned_alibi {
  q: f32[B, H, L, D]
  k: f32[B, H, L, D]
  v: f32[B, H, L, D]
  slope: f32[H]
  param temperature: f32 = 0.7
  score = dot(q, k) * rsqrt(D) / temperature - slope[h] * abs(i - j)
  mask = j <= i
  output lse
})"};
  auto ks = compileWithBackward(src);
  ASSERT_TRUE(ks);
  ASSERT_EQ(ks->manifest().gradNames,
            (std::vector<std::string>{"q", "k", "v", "slope", "temperature"}));
  auto in2 = qkv(ElemType::F32, 2, 3, 3, 70, 70, 16, 16, rng);
  in2["slope"] = uniform(ElemType::F32, {3}, rng, 0.0, 0.5);
  checkByDifferences(*ks, in2, {}, "learned slopes");
}

TEST(Gradients, FullyMaskedRowsGiveZeroGradientsNeverNaN) {
  auto k = compileWithBackward(readVariant("packed_documents.attn"));
  ASSERT_TRUE(k);
  std::mt19937 rng(5);
  for (int64_t L : {19, 140}) {
    auto in = qkv(ElemType::F32, 2, 2, 2, L, L, 16, 16, rng);
    in["doc"] = documentIds(2, L, 5, rng); // the last 5 tokens: padding
    Pass r;
    ASSERT_TRUE(runBoth(*k, in, {}, rng, r));
    const HostTensor &dq = r.grads.at("q"), &dk = r.grads.at("k"), &dv = r.grads.at("v");
    for (const HostTensor *g : {&dq, &dk, &dv})
      for (int64_t n = 0; n < g->numel(); ++n)
        ASSERT_FALSE(std::isnan(g->getDouble(n)));
    // Padding rows take part in no pair: their q, k and v get exactly 0.
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t i = L - 5; i < L; ++i)
          for (int64_t d = 0; d < 16; ++d) {
            int64_t n = ((b * 2 + h) * L + i) * 16 + d;
            EXPECT_EQ(dq.getDouble(n), 0.0) << "dq row " << i;
            EXPECT_EQ(dk.getDouble(n), 0.0) << "dk row " << i;
            EXPECT_EQ(dv.getDouble(n), 0.0) << "dv row " << i;
          }
    checkByDifferences(*k, in, {}, "packed documents L=" + std::to_string(L));
  }
}

TEST(Gradients, WholeTilesTheMaskEmptiesAreSkippedAndStillCorrect) {
  // A sliding window of 8 over 300 keys: most 64 x 128 tiles are empty.
  auto k = compileWithBackward(readVariant("sliding_window.attn"));
  ASSERT_TRUE(k);
  std::mt19937 rng(6);
  checkByDifferences(*k, qkv(ElemType::F32, 1, 2, 2, 300, 300, 16, 16, rng), {{"window", "8"}},
                     "sliding window 8, L=300", 32);
}

TEST(Gradients, ALossOnLseGetsItsGradient) {
  // L = Σ dout ∘ out + Σ dlse ∘ lse: the backward takes dlse.
  auto k = compileWithBackward(readVariant("packed_documents.attn"));
  ASSERT_TRUE(k);
  std::mt19937 rng(9);
  auto in = qkv(ElemType::F32, 1, 2, 2, 21, 21, 16, 16, rng);
  in["doc"] = documentIds(1, 21, 3, rng);
  JitKernel::Call call;
  ASSERT_TRUE(k->prepare(in, {}, call));
  ASSERT_TRUE(k->execute(call));
  HostTensor dout = uniform(ElemType::F32, call.out.shape, rng);
  HostTensor dlse = uniform(ElemType::F32, call.lse.shape, rng);
  std::map<std::string, HostTensor> grads;
  Status s = k->backward(in, {}, call.out, dout, &call.lse, grads, &dlse);
  ASSERT_TRUE(s) << s.message();
  auto loss = [&](const std::map<std::string, HostTensor> &x) {
    HostTensor out, lse;
    EXPECT_TRUE(referenceAttention(k->kernel(), x, call.bindings, out, &lse));
    double l = 0;
    for (int64_t n = 0; n < out.numel(); ++n)
      l += dout.getDouble(n) * out.getDouble(n);
    for (int64_t n = 0; n < lse.numel(); ++n)
      if (std::isfinite(lse.getDouble(n))) // fully masked rows: lse = -inf, constant
        l += dlse.getDouble(n) * lse.getDouble(n);
    return l;
  };
  for (const char *name : {"q", "k", "v"}) {
    std::map<std::string, HostTensor> x = in;
    HostTensor &t = x.at(name);
    std::vector<std::pair<int64_t, double>> want;
    for (int64_t n : sample(t.numel(), 40, rng)) {
      double x0 = t.getDouble(n);
      t.setDouble(n, x0 + 1e-5);
      double hi = t.getDouble(n), lHi = loss(x);
      t.setDouble(n, x0 - 1e-5);
      double lo = t.getDouble(n), lLo = loss(x);
      t.setDouble(n, x0);
      want.push_back({n, (lHi - lLo) / (hi - lo)});
    }
    compare(std::string("lse loss d") + name, grads.at(name), want, 2e-4, 1e-5);
  }
  HostTensor bad(ElemType::F32, {1, 2, 20});
  s = k->backward(in, {}, call.out, dout, &call.lse, grads, &bad);
  EXPECT_NE(s.message().find("'dlse', dimension 2"), std::string::npos) << s.message();
}

TEST(Gradients, HardmaxSendsTheGradientToTheChosenValuesOnly) {
  // out_i = v of the maximizing key(s): dv_j = Σ_i w_ij dout_i with the
  // reference's hard-max weights (1/n to each of n tied keys for average,
  // 1 to the latest or first), dq = dk = 0. Half-integer data make ties
  // exact in f32 and f64 alike.
  std::mt19937 rng(11);
  for (const char *ties : {"average", "latest", "first"}) {
    SourceFile src{"hardmax.attn", std::string(R"(attention hm {
  q: f32[B, H, L, D]
  k: f32[B, G, L, D]
  v: f32[B, G, L, E]
  score = dot(q, k)
  mask = j <= i
  normalize = hardmax(ties = )") + ties + R"()
  output lse
})"};
    auto k = compileWithBackward(src);
    ASSERT_TRUE(k);
    auto in = qkv(ElemType::F32, 1, 4, 2, 150, 150, 2, 8, rng);
    for (const char *t : {"q", "k"})
      for (int64_t n = 0; n < in[t].numel(); ++n)
        in[t].setDouble(n, std::round(in[t].getDouble(n) * 2) / 2); // many exact ties
    Pass r;
    ASSERT_TRUE(runBoth(*k, in, {}, rng, r));
    HostTensor P;
    Status s = referenceWeights(k->kernel(), in, r.call.bindings, P);
    ASSERT_TRUE(s) << s.message();
    const Bindings &bd = r.call.bindings;
    std::vector<double> dv(in["v"].numel());
    for (int64_t h = 0; h < bd.H; ++h)
      for (int64_t i = 0; i < bd.Lq; ++i)
        for (int64_t j = 0; j < bd.Lk; ++j)
          for (int64_t d = 0; d < bd.Dv; ++d)
            dv[((h / 2) * bd.Lk + j) * bd.Dv + d] +=
                P.getDouble((h * bd.Lq + i) * bd.Lk + j) * r.dout.getDouble((h * bd.Lq + i) * bd.Dv + d);
    std::vector<std::pair<int64_t, double>> want;
    for (size_t n = 0; n < dv.size(); ++n)
      want.push_back({int64_t(n), dv[n]});
    compare(std::string("hardmax ") + ties + " dv", r.grads.at("v"), want, 1e-5, 1e-6);
    for (const char *t : {"q", "k"})
      for (int64_t n = 0; n < r.grads.at(t).numel(); ++n)
        ASSERT_EQ(r.grads.at(t).getDouble(n), 0.0) << ties << " d" << t;
  }
}

TEST(Gradients, HardmaxAuxTensorsAndParamsGetZero) {
  // The chosen key does not move with a small change of the score, so a
  // bias table and a float param of a hard-max kernel get exactly 0.
  SourceFile src{"hardmax_bias.attn", R"(attention hmb {
  q: f32[B, H, L, D]
  k: f32[B, H, L, D]
  v: f32[B, H, L, D]
  bias: f32[H, L, L]
  param scale: f32 = 2.0
  score = scale * dot(q, k) + bias[h, i, j]
  normalize = hardmax
})"};
  auto k = compileWithBackward(src);
  ASSERT_TRUE(k);
  ASSERT_EQ(k->manifest().gradNames, (std::vector<std::string>{"q", "k", "v", "bias", "scale"}));
  std::mt19937 rng(13);
  auto in = qkv(ElemType::F32, 1, 2, 2, 9, 9, 4, 4, rng);
  in["bias"] = uniform(ElemType::F32, {2, 9, 9}, rng);
  Pass r;
  ASSERT_TRUE(runBoth(*k, in, {}, rng, r));
  for (const char *name : {"q", "k", "bias", "scale"})
    for (int64_t n = 0; n < r.grads.at(name).numel(); ++n)
      ASSERT_EQ(r.grads.at(name).getDouble(n), 0.0) << "d" << name << "[" << n << "]";
  double sum = 0;
  for (int64_t n = 0; n < r.grads.at("v").numel(); ++n)
    sum += r.grads.at("v").getDouble(n);
  double want = 0; // every row's dout goes to its chosen value
  for (int64_t n = 0; n < r.dout.numel(); ++n)
    want += r.dout.getDouble(n);
  EXPECT_NEAR(sum, want, 1e-4);
}

TEST(Gradients, TopkWithoutOutputLseComputesItsOwn) {
  // NAME_lse of a top-k kernel: the log-sum-exp of the K kept scores.
  SourceFile src{"topk5.attn", R"(attention topk5 {
  q: f32[B, H, Lq, D]
  k: f32[B, G, Lk, D]
  v: f32[B, G, Lk, D]
  normalize = topk(5)
})"};
  auto k = compileWithBackward(src);
  ASSERT_TRUE(k);
  EXPECT_TRUE(k->manifest().hasLse);
  std::mt19937 rng(12);
  checkByDifferences(*k, qkv(ElemType::F32, 1, 4, 2, 23, 150, 16, 16, rng), {}, "topk(5) GQA");
}

TEST(Gradients, KernelsWithoutABackwardSayWhy) {
  JitOptions opts;
  opts.cacheDir = CacheDir::path().string();
  opts.backward = true;
  std::string messages;
  auto k = JitKernel::compile(readVariant("v2/rope_causal.attn"), opts, messages);
  EXPECT_FALSE(k);
  EXPECT_NE(messages.find("no backward for kernel"), std::string::npos) << messages;
  EXPECT_NE(messages.find("the score reads channel vectors"), std::string::npos) << messages;
  // Compiled without it, backward() is an error, not a crash.
  auto fwd = compileVariant("causal.attn");
  ASSERT_TRUE(fwd);
  std::mt19937 rng(7);
  auto in = qkv(ElemType::F32, 1, 1, 1, 4, 4, 8, 8, rng);
  std::map<std::string, HostTensor> grads;
  HostTensor out(ElemType::F32, {1, 1, 4, 8});
  Status s = fwd->backward(in, {}, out, out, nullptr, grads);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("without its backward"), std::string::npos) << s.message();
}

TEST(Gradients, WrongDoutShapesNameTheTensorAndDimension) {
  auto k = compileWithBackward(readVariant("causal.attn"));
  ASSERT_TRUE(k);
  std::mt19937 rng(8);
  auto in = qkv(ElemType::F32, 1, 2, 2, 5, 5, 8, 8, rng);
  Pass r;
  ASSERT_TRUE(runBoth(*k, in, {}, rng, r));
  HostTensor bad(ElemType::F32, {1, 2, 6, 8});
  std::map<std::string, HostTensor> grads;
  Status s = k->backward(in, {}, r.call.out, bad, nullptr, grads);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("'dout', dimension 2"), std::string::npos) << s.message();
  HostTensor f64(ElemType::F64, {1, 2, 5, 8});
  s = k->backward(in, {}, f64, r.dout, nullptr, grads);
  EXPECT_NE(s.message().find("'out' must be f32"), std::string::npos) << s.message();
}

} // namespace
