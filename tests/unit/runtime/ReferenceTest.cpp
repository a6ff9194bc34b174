// Unit tests of the float64 reference implementation: hand-computed tiny
// cases for every normalization and the semantics of LANGUAGE.md §2-§5, and a
// larger causal case against a direct loop.
#include "attn/runtime/Reference.h"

#include "attn/dsl/Sema.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <random>

using namespace attn;
using namespace attn::runtime;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

HostTensor tensor(ElemType type, std::vector<int64_t> shape,
                  std::vector<double> values = {}) {
  HostTensor t(type, std::move(shape));
  if (!values.empty()) {
    EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
    for (int64_t n = 0; n < t.numel() && n < (int64_t)values.size(); ++n)
      t.setDouble(n, values[n]);
  }
  return t;
}

/// A checked kernel, bound inputs and the reference result.
struct RefRun {
  std::unique_ptr<dsl::Module> module;
  std::map<std::string, HostTensor> inputs;
  Bindings bind;
  HostTensor out, lse;
  Status status;

  const dsl::Kernel &kernel() const { return module->kernels[0]; }
  double o(int64_t b, int64_t h, int64_t i, int64_t d) const {
    return out.as<double>()[((b * bind.H + h) * bind.Lq + i) * bind.Dv + d];
  }
  double l(int64_t b, int64_t h, int64_t i) const {
    return lse.as<double>()[(b * bind.H + h) * bind.Lq + i];
  }
};

RefRun runRef(const std::string &src, std::map<std::string, HostTensor> inputs,
        std::map<std::string, std::string> params = {}, bool wantLse = true) {
  RefRun r;
  dsl::DiagnosticEngine diag("test.attn", src);
  auto m = dsl::parseAndCheck("test.attn", src, diag);
  EXPECT_TRUE(m.has_value()) << diag.render();
  if (!m) {
    r.status = Status::error("does not check");
    return r;
  }
  r.module = std::make_unique<dsl::Module>(std::move(*m));
  r.inputs = std::move(inputs);
  Status s = bindArguments(r.kernel(), r.inputs, params, r.bind);
  EXPECT_TRUE(s) << s.message();
  if (!s) {
    r.status = s;
    return r;
  }
  r.status = referenceAttention(r.kernel(), r.inputs, r.bind, r.out,
                                wantLse ? &r.lse : nullptr);
  return r;
}

/// q [1, 1, 1, 2] = (1, 0) against keys k [1, 1, n, 2] with values v
/// [1, 1, n, Dv]: every query sees every key, so scores are k[j][0].
std::map<std::string, HostTensor> oneQuery(const std::vector<double> &k,
                                           const std::vector<double> &v,
                                           int64_t dv = 2) {
  int64_t n = static_cast<int64_t>(k.size()) / 2;
  return {{"q", tensor(ElemType::F64, {1, 1, 1, 2}, {1, 0})},
          {"k", tensor(ElemType::F64, {1, 1, n, 2}, k)},
          {"v", tensor(ElemType::F64, {1, 1, n, dv}, v)}};
}

std::string crossKernel(const std::string &body) {
  return "attention t {\n  q: f64[B, H, Lq, D]\n  k: f64[B, Hk, Lk, D]\n"
         "  v: f64[B, Hk, Lk, Dv]\n" +
         body + "\n}\n";
}

} // namespace

TEST(Reference, SoftmaxOfTwoKeys) {
  RefRun r = runRef(crossKernel("output lse"),
              oneQuery({1, 0, 0, 1}, {1, 2, 3, 4}));
  ASSERT_TRUE(r.status) << r.status.message();
  double s0 = 1 / std::sqrt(2.0); // default score dot(q, k) * rsqrt(D)
  double w0 = std::exp(s0) / (std::exp(s0) + 1);
  EXPECT_NEAR(r.o(0, 0, 0, 0), w0 * 1 + (1 - w0) * 3, 1e-15);
  EXPECT_NEAR(r.o(0, 0, 0, 1), w0 * 2 + (1 - w0) * 4, 1e-15);
  EXPECT_NEAR(r.l(0, 0, 0), std::log(std::exp(s0) + 1), 1e-15);
  EXPECT_EQ(r.out.type, ElemType::F64);
  EXPECT_EQ(r.out.shape, (std::vector<int64_t>{1, 1, 1, 2}));
  EXPECT_EQ(r.lse.shape, (std::vector<int64_t>{1, 1, 1}));
}

TEST(Reference, FullyMaskedRow) {
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F32, {1, 1, 2, 2}, {1, 0, 0.5, 0.5})},
      {"k", tensor(ElemType::F32, {1, 1, 2, 2}, {2, 0, 0, 2})},
      {"v", tensor(ElemType::F32, {1, 1, 2, 1}, {10, 20})}};
  RefRun r = runRef("attention t { q: f32[B, H, L, 2]; k: f32[B, H, L, 2]; "
              "v: f32[B, H, L, 1]; score = dot(q, k); mask = j < i; "
              "output lse }",
              in);
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_EQ(r.o(0, 0, 0, 0), 0.0);
  EXPECT_EQ(r.l(0, 0, 0), -kInf);
  EXPECT_EQ(r.o(0, 0, 1, 0), 10.0);
  EXPECT_EQ(r.l(0, 0, 1), 1.0); // score of q1 . k0
}

TEST(Reference, NegativeInfinityScoreActsAsMask) {
  auto in = oneQuery({1, 0, 5, 0, 2, 0}, {1, 1, 100, 100, 3, 3});
  RefRun a = runRef(crossKernel("score = select(j == 1, -inf, dot(q, k))\noutput lse"), in);
  RefRun b = runRef(crossKernel("score = dot(q, k)\nmask = j != 1\noutput lse"), in);
  ASSERT_TRUE(a.status) << a.status.message();
  ASSERT_TRUE(b.status) << b.status.message();
  EXPECT_EQ(a.out.bytes, b.out.bytes);
  EXPECT_EQ(a.lse.bytes, b.lse.bytes);
  RefRun all = runRef(crossKernel("score = -inf + 0 * dot(q, k)\noutput lse"), in);
  ASSERT_TRUE(all.status) << all.status.message();
  EXPECT_EQ(all.o(0, 0, 0, 0), 0.0);
  EXPECT_EQ(all.l(0, 0, 0), -kInf);
}

TEST(Reference, GroupedQueryHeadMapping) {
  // H = 4 query heads over Hk = 2 key/value heads, B = 2: head h reads
  // kv head h / 2. One key, so out = v[b, h / 2, 0, :].
  std::vector<double> v;
  for (int b = 0; b < 2; ++b)
    for (int hk = 0; hk < 2; ++hk)
      v.push_back(100 * b + hk);
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F64, {2, 4, 1, 2})},
      {"k", tensor(ElemType::F64, {2, 2, 1, 2})},
      {"v", tensor(ElemType::F64, {2, 2, 1, 1}, v)}};
  RefRun r = runRef(crossKernel(""), in);
  ASSERT_TRUE(r.status) << r.status.message();
  for (int b = 0; b < 2; ++b)
    for (int h = 0; h < 4; ++h)
      EXPECT_EQ(r.o(b, h, 0, 0), 100 * b + h / 2) << b << " " << h;
}

TEST(Reference, GroupedQueryScoresUseTheMappedKeyHead) {
  // Scores differ per kv head, so a wrong mapping changes the weights.
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F64, {1, 2, 1, 1}, {1, 1})},
      {"k", tensor(ElemType::F64, {1, 1, 2, 1}, {0, 1})},
      {"v", tensor(ElemType::F64, {1, 1, 2, 1}, {0, 1})}};
  RefRun r = runRef(crossKernel("score = dot(q, k) * (h + 1)"), in);
  ASSERT_TRUE(r.status) << r.status.message();
  for (int h = 0; h < 2; ++h) {
    double w1 = std::exp(h + 1.0) / (1 + std::exp(h + 1.0));
    EXPECT_NEAR(r.o(0, h, 0, 0), w1, 1e-15);
  }
}

TEST(Reference, SigmoidReluNone) {
  auto in = oneQuery({2, 0, -1, 0, 0.5, 0}, {1, 0, 0, 1, 1, 1});
  auto sig = [](double s) { return 1 / (1 + std::exp(-s)); };
  RefRun r = runRef(crossKernel("score = dot(q, k)\nnormalize = sigmoid"), in, {}, false);
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_NEAR(r.o(0, 0, 0, 0), sig(2) + sig(0.5), 1e-15);
  EXPECT_NEAR(r.o(0, 0, 0, 1), sig(-1) + sig(0.5), 1e-15);

  r = runRef(crossKernel("score = dot(q, k)\nnormalize = relu"), in, {}, false);
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_EQ(r.o(0, 0, 0, 0), 2.5);
  EXPECT_EQ(r.o(0, 0, 0, 1), 0.5);

  r = runRef(crossKernel("score = dot(q, k)\nnormalize = none"), in, {}, false);
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_EQ(r.o(0, 0, 0, 0), 2.5);
  EXPECT_EQ(r.o(0, 0, 0, 1), -0.5);

  r = runRef(crossKernel("score = dot(q, k)\nnormalize = relu"), in, {}, true);
  EXPECT_FALSE(r.status);
  EXPECT_NE(r.status.message().find("lse"), std::string::npos);
}

TEST(Reference, HardmaxTies) {
  // Scores 1, 2, 2, 1: keys 1 and 2 tie (duplicates) for the maximum.
  auto in = oneQuery({1, 0, 2, 0, 2, 0, 1, 0}, {1, 1, 2, 4, 6, 8, 100, 100});
  RefRun avg = runRef(crossKernel("score = dot(q, k)\nnormalize = hardmax\noutput lse"), in);
  ASSERT_TRUE(avg.status) << avg.status.message();
  EXPECT_EQ(avg.o(0, 0, 0, 0), 4.0);
  EXPECT_EQ(avg.o(0, 0, 0, 1), 6.0);
  EXPECT_EQ(avg.l(0, 0, 0), 2.0);
  RefRun latest = runRef(crossKernel("score = dot(q, k)\n"
                               "normalize = hardmax(ties = latest)\noutput lse"),
                   in);
  ASSERT_TRUE(latest.status) << latest.status.message();
  EXPECT_EQ(latest.o(0, 0, 0, 0), 6.0);
  EXPECT_EQ(latest.o(0, 0, 0, 1), 8.0);
  RefRun first = runRef(crossKernel("score = dot(q, k)\n"
                              "normalize = hardmax(ties = first)\noutput lse"),
                  in);
  ASSERT_TRUE(first.status) << first.status.message();
  EXPECT_EQ(first.o(0, 0, 0, 0), 2.0);
  EXPECT_EQ(first.o(0, 0, 0, 1), 4.0);
  RefRun masked = runRef(crossKernel("score = dot(q, k)\nmask = j == 7\n"
                               "normalize = hardmax\noutput lse"),
                   in);
  ASSERT_TRUE(masked.status) << masked.status.message();
  EXPECT_EQ(masked.o(0, 0, 0, 0), 0.0);
  EXPECT_EQ(masked.l(0, 0, 0), -kInf);
}

TEST(Reference, HardmaxCollinearKeys) {
  // lookup_2d: collinear keys (t, t) score q . k = 2t; the largest t wins,
  // and a duplicate of it ties exactly.
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F64, {1, 1, 4, 2}, {1, 1, 1, 1, 1, 1, 1, 1})},
      {"k", tensor(ElemType::F64, {1, 1, 4, 2}, {1, 1, 3, 3, 2, 2, 3, 3})},
      {"v", tensor(ElemType::F64, {1, 1, 4, 2}, {0, 0, 1, 1, 2, 2, 3, 3})}};
  RefRun r = runRef("attention lookup_2d { q: f64[B, H, L, 2]; k: f64[B, H, L, 2]; "
              "v: f64[B, H, L, 2]; score = dot(q, k); mask = j <= i; "
              "normalize = hardmax(ties = latest) }",
              in, {}, false);
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_EQ(r.o(0, 0, 0, 0), 0.0);
  EXPECT_EQ(r.o(0, 0, 1, 0), 1.0);
  EXPECT_EQ(r.o(0, 0, 2, 0), 1.0);
  EXPECT_EQ(r.o(0, 0, 3, 0), 3.0);
}

TEST(Reference, TopKBoundaryTiesPreferLargerJ) {
  // Scores 3, 1, 1, 1, 0 with K = 2: key 0 and, of the tied keys 1-3, key 3.
  auto in = oneQuery({3, 0, 1, 0, 1, 0, 1, 0, 0, 0},
                     {1, 0, 10, 0, 20, 0, 30, 0, 40, 0});
  RefRun r = runRef(crossKernel("score = dot(q, k)\nnormalize = topk(2)\noutput lse"), in);
  ASSERT_TRUE(r.status) << r.status.message();
  double w0 = std::exp(3.0) / (std::exp(3.0) + std::exp(1.0));
  EXPECT_NEAR(r.o(0, 0, 0, 0), w0 * 1 + (1 - w0) * 30, 1e-13);
  EXPECT_NEAR(r.l(0, 0, 0), std::log(std::exp(3.0) + std::exp(1.0)), 1e-15);

  // Fewer participating keys than K: all of them (plain softmax).
  RefRun few = runRef(crossKernel("score = dot(q, k)\nmask = j < 2\n"
                            "normalize = topk(4)\noutput lse"),
                in);
  RefRun soft = runRef(crossKernel("score = dot(q, k)\nmask = j < 2\noutput lse"), in);
  ASSERT_TRUE(few.status) << few.status.message();
  ASSERT_TRUE(soft.status) << soft.status.message();
  EXPECT_EQ(few.out.bytes, soft.out.bytes);
  EXPECT_EQ(few.lse.bytes, soft.lse.bytes);
}

TEST(Reference, IntegerDivisionAndRemainderFloor) {
  // One key with v = 1 and normalize = none: out[i] is the score of row i.
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F64, {1, 1, 8, 1})},
      {"k", tensor(ElemType::F64, {1, 1, 1, 1})},
      {"v", tensor(ElemType::F64, {1, 1, 1, 1}, {1})}};
  auto rows = [&](const std::string &expr) {
    RefRun r = runRef(crossKernel("score = " + expr + "\nnormalize = none"), in, {}, false);
    EXPECT_TRUE(r.status) << r.status.message();
    std::vector<double> v;
    for (int i = 0; i < 8 && r.status; ++i)
      v.push_back(r.o(0, 0, i, 0));
    return v;
  };
  EXPECT_EQ(rows("(i - 5) / 2 + 0.0"),
            (std::vector<double>{-3, -2, -2, -1, -1, 0, 0, 1}));
  EXPECT_EQ(rows("(i - 5) % 3 + 0.0"),
            (std::vector<double>{1, 2, 0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(rows("(i + 1) / -3 + 0.0"),
            (std::vector<double>{-1, -1, -1, -2, -2, -2, -3, -3}));
  EXPECT_EQ(rows("(i + 1) % -3 + 0.0"),
            (std::vector<double>{-2, -1, 0, -2, -1, 0, -2, -1}));
  EXPECT_EQ(rows("(i - 4) / 2 * 1.0"),
            (std::vector<double>{-2, -2, -1, -1, 0, 0, 1, 1}));
}

TEST(Reference, IntegerDivisionByZeroIsAnError) {
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F64, {1, 1, 3, 1})},
      {"k", tensor(ElemType::F64, {1, 1, 3, 1})},
      {"v", tensor(ElemType::F64, {1, 1, 3, 1})}};
  RefRun r = runRef(crossKernel("score = 1.0 * (i / (i - j))"), in);
  ASSERT_FALSE(r.status);
  EXPECT_NE(r.status.message().find("division by zero"), std::string::npos)
      << r.status.message();
  EXPECT_NE(r.status.message().find("b=0, h=0, i=0, j=0"), std::string::npos)
      << r.status.message();
  // Masked pairs are never evaluated.
  r = runRef(crossKernel("score = 1.0 * (i / (i - j))\nmask = j < i"), in);
  EXPECT_TRUE(r.status) << r.status.message();
}

TEST(Reference, AuxIndexOutOfRange) {
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F32, {1, 1, 4, 2})},
      {"k", tensor(ElemType::F32, {1, 1, 4, 2})},
      {"v", tensor(ElemType::F32, {1, 1, 4, 2})},
      {"doc", tensor(ElemType::I32, {1, 4}, {0, 0, 1, 1})}};
  RefRun r = runRef("attention t { q: f32[B, H, L, 2]; k: f32[B, H, L, 2]; "
              "v: f32[B, H, L, 2]; doc: i32[B, L]\n"
              "mask = doc[b, i + 1] == doc[b, j] }",
              in);
  ASSERT_FALSE(r.status);
  const std::string &m = r.status.message();
  EXPECT_NE(m.find("'doc'"), std::string::npos) << m;
  EXPECT_NE(m.find("dimension 1 (extent 4)"), std::string::npos) << m;
  EXPECT_NE(m.find("index 4 is out of range"), std::string::npos) << m;
  EXPECT_NE(m.find("i=3"), std::string::npos) << m;

  r = runRef("attention t { q: f32[B, H, L, 2]; k: f32[B, H, L, 2]; "
          "v: f32[B, H, L, 2]; doc: i32[B, L]\n"
          "mask = doc[b, j - 1] == 0 }",
          in);
  ASSERT_FALSE(r.status);
  EXPECT_NE(r.status.message().find("index -1 is out of range"), std::string::npos)
      << r.status.message();

  // A guarded read is not evaluated when the guard fails.
  r = runRef("attention t { q: f32[B, H, L, 2]; k: f32[B, H, L, 2]; "
          "v: f32[B, H, L, 2]; doc: i32[B, L]\n"
          "mask = i + 1 < L && doc[b, i + 1] == doc[b, j] }",
          in);
  EXPECT_TRUE(r.status) << r.status.message();
}

TEST(Reference, PackedDocumentsLetsParamsAndAux) {
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F32, {1, 1, 4, 1}, {1, 1, 1, 1})},
      {"k", tensor(ElemType::F32, {1, 1, 4, 1}, {1, 1, 1, 1})},
      {"v", tensor(ElemType::F32, {1, 1, 4, 1}, {1, 2, 3, 4})},
      {"doc", tensor(ElemType::I32, {1, 4}, {0, 0, 1, 1})},
      {"bias", tensor(ElemType::F16, {4}, {0, 0.5, 0, 0.25})}};
  RefRun r = runRef("attention t { q: f32[B, H, L, 1]; k: f32[B, H, L, 1]; "
              "v: f32[B, H, L, 1]; doc: i32[B, L]; bias: f16[L]\n"
              "param window: i32 = 8\n"
              "let d = i - j\n"
              "let same = doc[b, i] == doc[b, j]\n"
              "score = bias[j] * 0.0 + select(same, 0.0, -inf)\n"
              "mask = d >= 0 && d < window\n"
              "output lse }",
              in, {{"window", "8"}});
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_EQ(r.o(0, 0, 0, 0), 1.0);
  EXPECT_EQ(r.o(0, 0, 1, 0), 1.5);
  EXPECT_EQ(r.o(0, 0, 2, 0), 3.0);
  EXPECT_EQ(r.o(0, 0, 3, 0), 3.5);
  EXPECT_NEAR(r.l(0, 0, 3), std::log(2.0), 1e-15);
}

TEST(Reference, ReducedPrecisionInputsUseStoredValues) {
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::BF16, {1, 1, 1, 2}, {0.1, 0.3})},
      {"k", tensor(ElemType::BF16, {1, 1, 1, 2}, {0.7, 1.1})},
      {"v", tensor(ElemType::BF16, {1, 1, 1, 1}, {1})}};
  RefRun r = runRef("attention t { q: bf16[B, H, L, 2]; k: bf16[B, H, L, 2]; "
              "v: bf16[B, H, L, 1]; score = dot(q, k); normalize = none }",
              in, {}, false);
  ASSERT_TRUE(r.status) << r.status.message();
  auto bf = [](double x) { return (double)bf16ToFloat(floatToBf16((float)x)); };
  EXPECT_EQ(r.o(0, 0, 0, 0), bf(0.1) * bf(0.7) + bf(0.3) * bf(1.1));
}

TEST(Reference, ValueDimensionDiffersFromHeadDimension) {
  auto in = oneQuery({1, 0, 0, 0}, {1, 2, 3, 4, 5, 6}, 3);
  RefRun r = runRef(crossKernel("score = dot(q, k) * 1000.0"), in);
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_EQ(r.bind.Dv, 3);
  EXPECT_NEAR(r.o(0, 0, 0, 2), 3.0, 1e-12);
}

TEST(Reference, CountsParticipatingPairsAndFlops) {
  std::map<std::string, HostTensor> in{
      {"q", tensor(ElemType::F32, {2, 3, 4, 8})},
      {"k", tensor(ElemType::F32, {2, 3, 4, 8})},
      {"v", tensor(ElemType::F32, {2, 3, 4, 16})}};
  RefRun r = runRef("attention t { q: f32[B, H, L, 8]; k: f32[B, H, L, 8]; "
              "v: f32[B, H, L, 16]; param window: i32 = 2\n"
              "let d = i - j\nmask = d >= 0 && d < window }",
              in, {}, false);
  ASSERT_TRUE(r.status) << r.status.message();
  int64_t pairs = 0;
  ASSERT_TRUE(countParticipatingPairs(r.kernel(), r.inputs, r.bind, pairs));
  EXPECT_EQ(pairs, 2 * 3 * 7); // rows see 1, 2, 2, 2 keys
  EXPECT_EQ(attentionFlops(r.kernel(), r.bind, r.inputs),
            2 * 3 * 7 * (2.0 * 8 + 2.0 * 16));

  // A head-dependent mask is evaluated per head.
  RefRun hd = runRef("attention t { q: f32[B, H, L, 8]; k: f32[B, H, L, 8]; "
               "v: f32[B, H, L, 16]\nmask = j <= h }",
               in, {}, false);
  ASSERT_TRUE(hd.status) << hd.status.message();
  ASSERT_TRUE(countParticipatingPairs(hd.kernel(), hd.inputs, hd.bind, pairs));
  EXPECT_EQ(pairs, 2 * 4 * (1 + 2 + 3));

  // Errors in the mask are reported; the flop count is then NaN.
  std::map<std::string, HostTensor> aux = in;
  aux["tbl"] = tensor(ElemType::I32, {3});
  RefRun bad = runRef("attention t { q: f32[B, H, L, 8]; k: f32[B, H, L, 8]; "
                "v: f32[B, H, L, 16]; tbl: i32[T]\nmask = tbl[j] == 0 }",
                aux, {}, false);
  EXPECT_FALSE(bad.status);
  EXPECT_FALSE(countParticipatingPairs(bad.kernel(), bad.inputs, bad.bind, pairs));
  EXPECT_TRUE(std::isnan(attentionFlops(bad.kernel(), bad.bind, bad.inputs)));
}

TEST(Reference, CausalSoftmaxMatchesDirectLoop) {
  const int64_t H = 2, L = 256, D = 64;
  std::mt19937 rng(7);
  std::normal_distribution<double> dist;
  std::map<std::string, HostTensor> in;
  for (const char *name : {"q", "k", "v"}) {
    HostTensor t(ElemType::F32, {1, H, L, D});
    for (int64_t n = 0; n < t.numel(); ++n)
      t.setDouble(n, dist(rng));
    in[name] = std::move(t);
  }
  auto start = std::chrono::steady_clock::now();
  RefRun r = runRef("attention causal { q: f32[B, H, L, 64]; k: f32[B, H, L, 64]; "
              "v: f32[B, H, L, 64]; mask = j <= i; output lse }",
              in);
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_LT(seconds, 5.0);
  const HostTensor &q = r.inputs.at("q"), &k = r.inputs.at("k"),
                   &v = r.inputs.at("v");
  double maxErr = 0;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < L; i += 17) {
      std::vector<double> s(i + 1);
      double m = -kInf;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += q.getDouble((h * L + i) * D + d) * k.getDouble((h * L + j) * D + d);
        s[j] = dot / 8.0;
        m = std::max(m, s[j]);
      }
      double sum = 0;
      for (double x : s)
        sum += std::exp(x - m);
      for (int64_t d = 0; d < D; ++d) {
        double o = 0;
        for (int64_t j = 0; j <= i; ++j)
          o += std::exp(s[j] - m) / sum * v.getDouble((h * L + j) * D + d);
        maxErr = std::max(maxErr, std::fabs(o - r.o(0, h, i, d)));
      }
      maxErr = std::max(maxErr, std::fabs(m + std::log(sum) - r.l(0, h, i)));
    }
  EXPECT_LT(maxErr, 1e-12);
}

// ---------------------------------------------------------------------------
// referenceWeights: the weights the reference normalizes to.

namespace {

/// Random inputs of a GQA cross kernel: B = 2, H = 4 over Hk = 2, Lq = 5,
/// Lk = 7, D = 3, Dv = 2, scores drawn from a few values so hardmax and topk
/// rows have ties.
std::map<std::string, HostTensor> randomCross(unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> small(-2, 2);
  std::normal_distribution<double> normal;
  HostTensor q(ElemType::F64, {2, 4, 5, 3}), k(ElemType::F64, {2, 2, 7, 3}),
      v(ElemType::F64, {2, 2, 7, 2});
  for (int64_t n = 0; n < q.numel(); ++n)
    q.setDouble(n, small(gen));
  for (int64_t n = 0; n < k.numel(); ++n)
    k.setDouble(n, small(gen));
  for (int64_t n = 0; n < v.numel(); ++n)
    v.setDouble(n, normal(gen));
  return {{"q", std::move(q)}, {"k", std::move(k)}, {"v", std::move(v)}};
}

/// weights · v for the bound shapes.
std::vector<double> weightsTimesV(const HostTensor &w, const HostTensor &v,
                                  const Bindings &bd) {
  std::vector<double> out(static_cast<size_t>(bd.B * bd.H * bd.Lq * bd.Dv), 0);
  const double *wd = w.as<double>();
  int64_t group = bd.H / bd.Hk;
  for (int64_t b = 0; b < bd.B; ++b)
    for (int64_t h = 0; h < bd.H; ++h)
      for (int64_t i = 0; i < bd.Lq; ++i)
        for (int64_t j = 0; j < bd.Lk; ++j) {
          double x = wd[((b * bd.H + h) * bd.Lq + i) * bd.Lk + j];
          for (int64_t d = 0; d < bd.Dv; ++d)
            out[((b * bd.H + h) * bd.Lq + i) * bd.Dv + d] +=
                x * v.getDouble(((b * bd.Hk + h / group) * bd.Lk + j) * bd.Dv + d);
        }
  return out;
}

} // namespace

TEST(ReferenceWeights, WeightsTimesVIsOutForEveryNormalization) {
  // A mask with fully masked rows (i = 0 sees nothing when h is odd) and a
  // score that is -inf on some pairs.
  const char *norms[] = {"softmax", "sigmoid", "relu", "none",
                         "hardmax(ties = average)", "hardmax(ties = latest)",
                         "hardmax(ties = first)", "topk(3)"};
  for (const char *norm : norms) {
    RefRun r = runRef(crossKernel(std::string("score = select((i + j) % 5 == 4, -inf, dot(q, k))\n"
                                              "mask = j <= i + 2 && (h % 2 == 0 || i > 0)\n"
                                              "normalize = ") + norm),
                      randomCross(7), {}, false);
    ASSERT_TRUE(r.status) << norm << ": " << r.status.message();
    HostTensor w;
    std::vector<uint8_t> part;
    Status s = referenceWeights(r.kernel(), r.inputs, r.bind, w, &part);
    ASSERT_TRUE(s) << norm << ": " << s.message();
    ASSERT_EQ(w.shape, (std::vector<int64_t>{2, 4, 5, 7})) << norm;
    ASSERT_EQ(part.size(), static_cast<size_t>(w.numel()));
    std::vector<double> wv = weightsTimesV(w, r.inputs.at("v"), r.bind);
    for (size_t n = 0; n < wv.size(); ++n)
      ASSERT_NEAR(wv[n], r.out.as<double>()[n], 1e-12) << norm << " at " << n;
    // Masked pairs and -inf scores weigh 0 and do not take part.
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t i = 0; i < 5; ++i)
          for (int64_t j = 0; j < 7; ++j) {
            size_t n = static_cast<size_t>(((b * 4 + h) * 5 + i) * 7 + j);
            bool admitted = j <= i + 2 && (h % 2 == 0 || i > 0) && (i + j) % 5 != 4;
            EXPECT_EQ(part[n], admitted ? 1 : 0) << norm << " " << b << h << i << j;
            if (!admitted)
              EXPECT_EQ(w.as<double>()[n], 0.0) << norm;
          }
  }
}

TEST(ReferenceWeights, SoftmaxRowsSumToOneAndMaskedRowsAreZero) {
  RefRun r = runRef(crossKernel("mask = j <= i && h != 3"), randomCross(3), {}, false);
  ASSERT_TRUE(r.status) << r.status.message();
  HostTensor w;
  ASSERT_TRUE(referenceWeights(r.kernel(), r.inputs, r.bind, w));
  const double *wd = w.as<double>();
  for (int64_t row = 0; row < 2 * 4 * 5; ++row) {
    double sum = 0;
    for (int64_t j = 0; j < 7; ++j) {
      EXPECT_GE(wd[row * 7 + j], 0.0);
      sum += wd[row * 7 + j];
    }
    bool masked = (row / 5) % 4 == 3;
    EXPECT_NEAR(sum, masked ? 0.0 : 1.0, 1e-14) << row;
  }
}

TEST(ReferenceWeights, HardmaxTiesSplitOrPick) {
  // Scores 1, 2, 2, 1: keys 1 and 2 tie for the maximum.
  auto in = oneQuery({1, 0, 2, 0, 2, 0, 1, 0}, {1, 1, 2, 4, 6, 8, 100, 100});
  auto weightsOf = [&](const std::string &norm) {
    RefRun r = runRef(crossKernel("score = dot(q, k)\nnormalize = " + norm), in, {}, false);
    HostTensor w;
    Status s = referenceWeights(r.kernel(), r.inputs, r.bind, w);
    EXPECT_TRUE(s) << s.message();
    return std::vector<double>(w.as<double>(), w.as<double>() + w.numel());
  };
  EXPECT_EQ(weightsOf("hardmax"), (std::vector<double>{0, 0.5, 0.5, 0}));
  EXPECT_EQ(weightsOf("hardmax(ties = latest)"), (std::vector<double>{0, 0, 1, 0}));
  EXPECT_EQ(weightsOf("hardmax(ties = first)"), (std::vector<double>{0, 1, 0, 0}));
  // topk(3) keeps 2, 2 and the later 1 (ties at the boundary prefer larger j).
  std::vector<double> t = weightsOf("topk(3)");
  double e = std::exp(-1.0), sum = 2 + e;
  EXPECT_EQ(t[0], 0.0);
  EXPECT_NEAR(t[1], 1 / sum, 1e-15);
  EXPECT_NEAR(t[2], 1 / sum, 1e-15);
  EXPECT_NEAR(t[3], e / sum, 1e-15);
  // Infinite scores share the weight equally.
  auto inf = oneQuery({1, 0, 2, 0, 3, 0}, {1, 1, 2, 2, 3, 3});
  RefRun r = runRef(crossKernel("score = select(j != 1, inf, dot(q, k))"), inf, {}, false);
  HostTensor w;
  ASSERT_TRUE(referenceWeights(r.kernel(), r.inputs, r.bind, w));
  EXPECT_EQ(std::vector<double>(w.as<double>(), w.as<double>() + 3),
            (std::vector<double>{0.5, 0, 0.5}));
}

TEST(ReferenceWeights, OneHeadIsItsPlaneOfTheWhole) {
  RefRun r = runRef(crossKernel("mask = j <= i + h\nnormalize = topk(2)"), randomCross(11), {},
                    false);
  ASSERT_TRUE(r.status) << r.status.message();
  HostTensor all;
  ASSERT_TRUE(referenceWeights(r.kernel(), r.inputs, r.bind, all));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 4; ++h) {
      HostTensor one;
      std::vector<uint8_t> part;
      Status s = referenceWeightsOfHead(r.kernel(), r.inputs, r.bind, b, h, one, &part);
      ASSERT_TRUE(s) << s.message();
      ASSERT_EQ(one.shape, (std::vector<int64_t>{5, 7}));
      for (int64_t n = 0; n < 35; ++n) {
        EXPECT_EQ(one.as<double>()[n], all.as<double>()[(b * 4 + h) * 35 + n]);
        EXPECT_EQ(part[n], (n % 7) <= (n / 7) + h ? 1 : 0);
      }
    }
  HostTensor w;
  Status s = referenceWeightsOfHead(r.kernel(), r.inputs, r.bind, 0, 4, w);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("head index h = 4 is outside [0, 4)"), std::string::npos)
      << s.message();
}

TEST(ReferenceWeights, RefusesLargeProblems) {
  // Bindings alone decide: 2 x 8 x 4096 x 4096 = 2^28 elements.
  RefRun r = runRef(crossKernel(""), randomCross(1), {}, false);
  ASSERT_TRUE(r.status);
  Bindings big = r.bind;
  big.B = 2, big.H = 8, big.Hk = 8, big.Lq = 4096, big.Lk = 4096;
  HostTensor w;
  Status s = referenceWeights(r.kernel(), r.inputs, big, w);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("the weights [2, 8, 4096, 4096] needs 2048 MiB; weights are "
                             "for small problems, at most 67108864 elements (512 MiB of f64)"),
            std::string::npos)
      << s.message();
  EXPECT_TRUE(w.shape.empty()) << "nothing is returned";
  big.Lq = 8193, big.Lk = 8192;
  s = referenceWeightsOfHead(r.kernel(), r.inputs, big, 0, 0, w);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("the weights of one head [8193, 8192] needs 513 MiB"),
            std::string::npos)
      << s.message();
}
