// Unit tests of mergeAttentionStates (Merge.h): the merge against a direct
// softmax over the union of the keys, its -inf / +inf / NaN rows, every
// dtype, strided views, the errors naming tensor and dimension, and cascade
// attention by the float64 reference (a prefix run and a suffix run merged
// equal one run over all keys).
#include "attn/runtime/Merge.h"
#include "attn/runtime/Reference.h"

#include "attn/dsl/Sema.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace attn;
using namespace attn::runtime;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

HostTensor tensor(ElemType type, std::vector<int64_t> shape,
                  std::vector<double> values = {}) {
  HostTensor t(type, std::move(shape));
  EXPECT_TRUE(values.empty() || (int64_t)values.size() == t.numel());
  for (size_t n = 0; n < values.size() && (int64_t)n < t.numel(); ++n)
    t.setDouble((int64_t)n, values[n]);
  return t;
}

/// The softmax state (out [1, 1, 1, Dv], lse [1, 1, 1]) of scores s over
/// values v (one row per key), in double.
void softmaxState(const std::vector<double> &s,
                  const std::vector<std::vector<double>> &v, size_t from,
                  size_t to, std::vector<double> &out, double &lse) {
  const size_t dv = v[0].size();
  out.assign(dv, 0);
  if (from == to) {
    lse = -kInf;
    return;
  }
  double m = -kInf, sum = 0;
  for (size_t j = from; j < to; ++j)
    m = std::max(m, s[j]);
  for (size_t j = from; j < to; ++j) {
    double e = std::exp(s[j] - m);
    sum += e;
    for (size_t d = 0; d < dv; ++d)
      out[d] += e * v[j][d];
  }
  for (double &o : out)
    o /= sum;
  lse = m + std::log(sum);
}

struct Merged {
  HostTensor out, lse;
  Status status;
};

Merged merge(const TensorRef &oa, const TensorRef &la, const TensorRef &ob,
             const TensorRef &lb) {
  Merged m;
  m.status = mergeAttentionStates(oa, la, ob, lb, m.out, m.lse);
  return m;
}

/// One row: out_a, lse_a, out_b, lse_b given as values, Dv = size of outs.
Merged mergeRow(const std::vector<double> &oa, double la,
                const std::vector<double> &ob, double lb,
                ElemType outType = ElemType::F64,
                ElemType lseType = ElemType::F64) {
  const int64_t dv = (int64_t)oa.size();
  HostTensor a = tensor(outType, {1, 1, 1, dv}, oa);
  HostTensor b = tensor(outType, {1, 1, 1, dv}, ob);
  HostTensor lsa = tensor(lseType, {1, 1, 1}, {la});
  HostTensor lsb = tensor(lseType, {1, 1, 1}, {lb});
  return merge(a, lsa, b, lsb);
}

TEST(Merge, MatchesTheSoftmaxOverTheUnionOfTheKeys) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0, 1);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 2 + trial % 9, split = 1 + trial % (n - 1), dv = 5;
    std::vector<double> s(n);
    std::vector<std::vector<double>> v(n, std::vector<double>(dv));
    for (size_t j = 0; j < n; ++j) {
      s[j] = 8 * normal(rng) + (trial % 3 == 0 ? 400 * (j < split) : 0);
      for (double &x : v[j])
        x = normal(rng);
    }
    std::vector<double> oa, ob, full;
    double la, lb, lfull;
    softmaxState(s, v, 0, split, oa, la);
    softmaxState(s, v, split, n, ob, lb);
    softmaxState(s, v, 0, n, full, lfull);
    Merged m = mergeRow(oa, la, ob, lb);
    ASSERT_TRUE(m.status) << m.status.message();
    ASSERT_EQ(m.out.describe(), "f64[1, 1, 1, 5]");
    ASSERT_EQ(m.lse.describe(), "f64[1, 1, 1]");
    for (size_t d = 0; d < dv; ++d)
      EXPECT_NEAR(m.out.as<double>()[d], full[d], 1e-14 * (1 + std::fabs(full[d])))
          << "trial " << trial << " d " << d;
    EXPECT_NEAR(m.lse.as<double>()[0], lfull, 1e-14 * (1 + std::fabs(lfull)));
  }
}

TEST(Merge, IsTheDoubleFormulaRoundedOnce) {
  // Every element is the merge in double of the stored values, rounded once
  // to the output type (f16 and bf16 to nearest-even), bit for bit.
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(-3, 3);
  const int64_t B = 2, H = 3, L = 7, Dv = 4;
  for (ElemType t : {ElemType::F32, ElemType::F64, ElemType::F16, ElemType::BF16}) {
    const ElemType lseType = t == ElemType::F64 ? ElemType::F64 : ElemType::F32;
    HostTensor oa(t, {B, H, L, Dv}), ob(t, {B, H, L, Dv});
    HostTensor la(lseType, {B, H, L}), lb(lseType, {B, H, L});
    for (int64_t n = 0; n < oa.numel(); ++n) {
      oa.setDouble(n, u(rng));
      ob.setDouble(n, u(rng));
    }
    for (int64_t n = 0; n < la.numel(); ++n) {
      la.setDouble(n, 4 * u(rng));
      lb.setDouble(n, 4 * u(rng));
    }
    Merged m = merge(oa, la, ob, lb);
    ASSERT_TRUE(m.status) << m.status.message();
    ASSERT_EQ(m.out.describe(), oa.describe());
    ASSERT_EQ(m.lse.describe(), la.describe());
    HostTensor out(t, {B, H, L, Dv}), lse(lseType, {B, H, L});
    for (int64_t r = 0; r < B * H * L; ++r) {
      double a = la.getDouble(r), b = lb.getDouble(r), mx = std::max(a, b);
      double wa = std::exp(a - mx), wb = std::exp(b - mx);
      lse.setDouble(r, mx + std::log(wa + wb));
      for (int64_t d = 0; d < Dv; ++d) {
        int64_t e = r * Dv + d;
        out.setDouble(e, (wa * oa.getDouble(e) + wb * ob.getDouble(e)) / (wa + wb));
      }
    }
    EXPECT_EQ(m.out.bytes, out.bytes) << dsl::toString(t);
    EXPECT_EQ(m.lse.bytes, lse.bytes) << dsl::toString(t);
  }
}

TEST(Merge, BothStatesWithoutKeysGiveZeroAndMinusInfinity) {
  Merged m = mergeRow({kNaN, 5, -1}, -kInf, {7, kNaN, 2}, -kInf);
  ASSERT_TRUE(m.status) << m.status.message();
  for (int d = 0; d < 3; ++d) {
    EXPECT_EQ(m.out.as<double>()[d], 0.0);
    EXPECT_FALSE(std::signbit(m.out.as<double>()[d]));
  }
  EXPECT_EQ(m.lse.as<double>()[0], -kInf);
}

TEST(Merge, OneStateWithoutKeysCopiesTheOther) {
  const std::vector<double> o = {0.1, -2.5e-300, 3.0000000000000004};
  // The empty state's out is not read (NaN there changes nothing).
  Merged ab = mergeRow(o, 1.25, {kNaN, kNaN, kNaN}, -kInf);
  Merged ba = mergeRow({kNaN, 0, 1}, -kInf, o, -700.5);
  ASSERT_TRUE(ab.status && ba.status);
  for (int d = 0; d < 3; ++d) {
    EXPECT_EQ(ab.out.as<double>()[d], o[d]);
    EXPECT_EQ(ba.out.as<double>()[d], o[d]);
  }
  EXPECT_EQ(ab.lse.as<double>()[0], 1.25);
  EXPECT_EQ(ba.lse.as<double>()[0], -700.5);
}

TEST(Merge, InfiniteAndNaNLse) {
  Merged inf = mergeRow({1, 2}, kInf, {5, 6}, 3.0);
  ASSERT_TRUE(inf.status);
  EXPECT_EQ(inf.out.as<double>()[0], 1.0);
  EXPECT_EQ(inf.out.as<double>()[1], 2.0);
  EXPECT_EQ(inf.lse.as<double>()[0], kInf);

  Merged both = mergeRow({1, 2}, kInf, {5, 6}, kInf);
  ASSERT_TRUE(both.status);
  EXPECT_TRUE(std::isnan(both.out.as<double>()[0]));
  EXPECT_EQ(both.lse.as<double>()[0], kInf);

  for (auto [la, lb] : std::vector<std::pair<double, double>>{{kNaN, 0.0}, {-kInf, kNaN}, {kInf, kNaN}}) {
    Merged nan = mergeRow({1, 2}, la, {5, 6}, lb);
    ASSERT_TRUE(nan.status);
    EXPECT_TRUE(std::isnan(nan.out.as<double>()[0]));
    EXPECT_TRUE(std::isnan(nan.out.as<double>()[1]));
    EXPECT_TRUE(std::isnan(nan.lse.as<double>()[0]));
  }
}

TEST(Merge, StridedViewsReadLikeDenseTensors) {
  // out_a stored [B, L, H, Dv] and viewed as [B, H, L, Dv]; lse_b read
  // backwards along L.
  const int64_t B = 2, H = 3, L = 4, Dv = 2;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-2, 2);
  HostTensor blhd(ElemType::F32, {B, L, H, Dv}), dense(ElemType::F32, {B, H, L, Dv});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < Dv; ++d) {
          double x = u(rng);
          blhd.setDouble(((b * L + i) * H + h) * Dv + d, x);
          dense.setDouble(((b * H + h) * L + i) * Dv + d, x);
        }
  HostTensor ob(ElemType::F32, {B, H, L, Dv}), la(ElemType::F32, {B, H, L});
  HostTensor lbDense(ElemType::F32, {B, H, L}), lbReversed(ElemType::F32, {B, H, L});
  for (int64_t n = 0; n < ob.numel(); ++n)
    ob.setDouble(n, u(rng));
  for (int64_t r = 0; r < B * H * L; ++r) {
    la.setDouble(r, u(rng));
    lbDense.setDouble(r, u(rng));
    int64_t i = r % L;
    lbReversed.setDouble(r - i + (L - 1 - i), lbDense.getDouble(r));
  }
  TensorRef oaView;
  oaView.type = ElemType::F32;
  oaView.shape = {B, H, L, Dv};
  oaView.strides = {L * H * Dv, Dv, H * Dv, 1};
  oaView.data = blhd.data();
  TensorRef lbView(lbReversed);
  lbView.strides = {H * L, L, -1};
  lbView.data = lbReversed.as<float>() + (L - 1);

  Merged viewed = merge(oaView, la, ob, lbView);
  Merged plain = merge(dense, la, ob, lbDense);
  ASSERT_TRUE(viewed.status) << viewed.status.message();
  ASSERT_TRUE(plain.status);
  EXPECT_EQ(viewed.out.bytes, plain.out.bytes);
  EXPECT_EQ(viewed.lse.bytes, plain.lse.bytes);
}

TEST(Merge, OutputsMayAliasTheInputs) {
  HostTensor o = tensor(ElemType::F64, {1, 1, 1, 2}, {1, 3});
  HostTensor l = tensor(ElemType::F64, {1, 1, 1}, {0});
  HostTensor o2 = tensor(ElemType::F64, {1, 1, 1, 2}, {3, 5});
  ASSERT_TRUE(mergeAttentionStates(o, l, o2, l, o, l));
  EXPECT_EQ(o.as<double>()[0], 2.0);
  EXPECT_EQ(o.as<double>()[1], 4.0);
  EXPECT_EQ(l.as<double>()[0], std::log(2.0));
}

TEST(Merge, EmptyTensors) {
  HostTensor oa(ElemType::F32, {1, 2, 0, 4}), la(ElemType::F32, {1, 2, 0});
  Merged m = merge(oa, la, oa, la);
  ASSERT_TRUE(m.status) << m.status.message();
  EXPECT_EQ(m.out.describe(), "f32[1, 2, 0, 4]");
  HostTensor od(ElemType::F32, {1, 1, 2, 0}), ld = tensor(ElemType::F32, {1, 1, 2}, {0, 1});
  m = merge(od, ld, od, ld);
  ASSERT_TRUE(m.status) << m.status.message();
  EXPECT_FLOAT_EQ(m.lse.as<float>()[1], 1 + std::log(2.0));
}

/// The error of merging the states, and a check that it wrote nothing.
std::string mergeError(const HostTensor &oa, const HostTensor &la,
                       const HostTensor &ob, const HostTensor &lb) {
  HostTensor out = tensor(ElemType::I32, {3}, {1, 2, 3}), lse = out;
  Status s = mergeAttentionStates(oa, la, ob, lb, out, lse);
  EXPECT_FALSE(s);
  EXPECT_EQ(out.describe(), "i32[3]");
  EXPECT_EQ(lse.describe(), "i32[3]");
  EXPECT_EQ(out.as<int32_t>()[2], 3);
  return s.message();
}

TEST(Merge, ErrorsNameTheTensorAndTheDimension) {
  const ElemType F32 = ElemType::F32;
  HostTensor o(F32, {2, 3, 8, 4}), l(F32, {2, 3, 8});
  EXPECT_EQ(mergeError(HostTensor(F32, {2, 3, 8}), l, o, l),
            "tensor 'out_a' has rank 3 (f32[2, 3, 8]) but a state's out is "
            "[B, H, L, Dv] (rank 4)");
  EXPECT_EQ(mergeError(o, l, o, HostTensor(F32, {2, 3, 8, 1})),
            "tensor 'lse_b' has rank 4 (f32[2, 3, 8, 1]) but a state's lse is "
            "[B, H, L] (rank 3)");
  EXPECT_EQ(mergeError(o, l, HostTensor(F32, {2, 3, 6, 4}), l),
            "tensor 'out_b' (f32[2, 3, 6, 4]): dimension 2 (L) is 6 but out_a's "
            "(f32[2, 3, 8, 4]) is 8; both states must hold the same rows and Dv");
  EXPECT_EQ(mergeError(o, l, HostTensor(F32, {2, 3, 8, 5}), l),
            "tensor 'out_b' (f32[2, 3, 8, 5]): dimension 3 (Dv) is 5 but out_a's "
            "(f32[2, 3, 8, 4]) is 4; both states must hold the same rows and Dv");
  EXPECT_EQ(mergeError(o, HostTensor(F32, {2, 1, 8}), o, l),
            "tensor 'lse_a' (f32[2, 1, 8]): dimension 1 (H) is 1 but out_a's "
            "(f32[2, 3, 8, 4]) is 3; lse_a must be [B, H, L] of out_a");
  EXPECT_EQ(mergeError(o, l, o, HostTensor(F32, {1, 3, 8})),
            "tensor 'lse_b' (f32[1, 3, 8]): dimension 0 (B) is 1 but out_a's "
            "(f32[2, 3, 8, 4]) is 2; lse_b must be [B, H, L] of out_a");
  EXPECT_EQ(mergeError(o, l, HostTensor(ElemType::F16, {2, 3, 8, 4}), l),
            "tensor 'out_b' has dtype f16 but out_a has f32: the two states' outs "
            "must have one dtype");
  EXPECT_EQ(mergeError(HostTensor(ElemType::I32, {2, 3, 8, 4}), l, o, l),
            "tensor 'out_a' has dtype i32; a state's out is f32, f64, f16 or bf16");
  EXPECT_EQ(mergeError(o, HostTensor(ElemType::BF16, {2, 3, 8}), o, l),
            "tensor 'lse_a' has dtype bf16; a state's lse is f32 or f64");
  EXPECT_EQ(mergeError(o, l, o, HostTensor(ElemType::F64, {2, 3, 8})),
            "tensor 'lse_b' has dtype f64 but lse_a has f32: the two states' lses "
            "must have one dtype");

  TensorRef bad(o);
  bad.strides.pop_back();
  HostTensor out, lse;
  Status s = mergeAttentionStates(o, l, bad, l, out, lse);
  EXPECT_EQ(s.message(), "tensor 'out_b' (f32[2, 3, 8, 4]) has 3 strides for its 4 dimensions");
  EXPECT_TRUE(checkMergeTypes(o, l, o, l));
}

// --- cascade attention by the float64 reference ----------------------------

/// Queries at absolute positions query0 + i over keys at key0 + j, causal:
/// a prefix run (keys [0, p), key0 = 0) and a suffix run (keys [p, n),
/// key0 = p) merged are the run over keys [0, n).
const char *kCascade = R"(
attention cascade {
  q: f64[B, H, Lq, 16]
  k: f64[B, G, Lk, 16]
  v: f64[B, G, Lk, 8]
  param key0: i32 = 0
  param query0: i32 = 0
  mask = j + key0 <= i + query0
  output lse
}
)";

struct State {
  HostTensor out, lse;
};

State reference(const dsl::Kernel &k, const HostTensor &q, const HostTensor &keys,
                const HostTensor &values, std::map<std::string, std::string> params) {
  std::map<std::string, HostTensor> in{{"q", q}, {"k", keys}, {"v", values}};
  Bindings bind;
  Status s = bindArguments(k, in, params, bind);
  EXPECT_TRUE(s) << s.message();
  State st;
  s = referenceAttention(k, in, bind, st.out, &st.lse);
  EXPECT_TRUE(s) << s.message();
  return st;
}

/// Keys [from, to) of k or v [B, G, Lk, D].
HostTensor keySlice(const HostTensor &t, int64_t from, int64_t to) {
  const int64_t B = t.shape[0], G = t.shape[1], Lk = t.shape[2], D = t.shape[3];
  HostTensor s(t.type, {B, G, to - from, D});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t j = from; j < to; ++j)
        for (int64_t d = 0; d < D; ++d)
          s.setDouble(((b * G + g) * (to - from) + j - from) * D + d,
                      t.getDouble(((b * G + g) * Lk + j) * D + d));
  return s;
}

TEST(Merge, CascadeAttentionEqualsTheRunOverAllKeys) {
  dsl::DiagnosticEngine diag("cascade.attn", kCascade);
  auto module = dsl::parseAndCheck("cascade.attn", kCascade, diag);
  ASSERT_TRUE(module) << diag.render();
  const dsl::Kernel &k = module->kernels[0];

  // 12 queries at positions -2..9 over 10 keys split at 5: rows 0-1 see no
  // key, rows 2-6 only the prefix, rows 7-11 both parts.
  const int64_t B = 2, H = 4, G = 2, Lq = 12, n = 10, p = 5;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal(0, 1);
  HostTensor q(ElemType::F64, {B, H, Lq, 16}), keys(ElemType::F64, {B, G, n, 16}),
      values(ElemType::F64, {B, G, n, 8});
  for (HostTensor *t : {&q, &keys, &values})
    for (int64_t e = 0; e < t->numel(); ++e)
      t->setDouble(e, 2 * normal(rng));

  State full = reference(k, q, keys, values, {{"query0", "-2"}});
  State prefix = reference(k, q, keySlice(keys, 0, p), keySlice(values, 0, p),
                           {{"query0", "-2"}});
  State suffix = reference(k, q, keySlice(keys, p, n), keySlice(values, p, n),
                           {{"query0", "-2"}, {"key0", std::to_string(p)}});
  HostTensor out, lse;
  Status s = mergeAttentionStates(prefix.out, prefix.lse, suffix.out, suffix.lse, out, lse);
  ASSERT_TRUE(s) << s.message();
  ASSERT_EQ(out.describe(), full.out.describe());
  ASSERT_EQ(lse.describe(), full.lse.describe());

  int suffixEmpty = 0;
  for (int64_t r = 0; r < B * H * Lq; ++r) {
    const int64_t i = r % Lq;
    const double want = full.lse.as<double>()[r], got = lse.as<double>()[r];
    if (i < 2) {
      EXPECT_EQ(got, -kInf) << "row " << r;
    } else {
      EXPECT_NEAR(got, want, 1e-13) << "row " << r;
    }
    suffixEmpty += suffix.lse.as<double>()[r] == -kInf;
    for (int64_t d = 0; d < 8; ++d) {
      const double o = out.as<double>()[r * 8 + d], f = full.out.as<double>()[r * 8 + d];
      if (i < 7) { // no suffix key: the prefix state, copied exactly
        EXPECT_EQ(o, i < 2 ? 0.0 : prefix.out.as<double>()[r * 8 + d]) << "row " << r;
      }
      EXPECT_NEAR(o, f, 1e-13) << "row " << r << " d " << d;
    }
  }
  EXPECT_EQ(suffixEmpty, B * H * 7);
}

} // namespace
