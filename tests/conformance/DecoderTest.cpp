// Decoders (jit/Decoder.h) against the compiled kernels: a causal
// prefill through the decoder must reproduce the kernel's rows, for the hull
// (hard-max, 2-D heads) and for the scan (everything else decodable).
#include "attn/jit/Decoder.h"
#include "attn/jit/Jit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <filesystem>
#include <random>

using namespace attn;
using attn::runtime::HostTensor;

namespace {

std::unique_ptr<JitKernel> compile(const std::string &text) {
  JitOptions opts;
  opts.cacheDir = (std::filesystem::temp_directory_path() / "attnc-decoder-test-cache").string();
  std::string messages;
  auto k = JitKernel::compile({"decoder.attn", text}, opts, messages);
  EXPECT_TRUE(k) << messages;
  return k;
}

/// q, k, v of one stream: [1, 1, L, d] (v: dv), half-integers when `exact`
/// so that f64 dot products and their ties are exact.
std::map<std::string, HostTensor> stream(int64_t L, int d, int dv, bool exact, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-3, 3);
  std::map<std::string, HostTensor> in;
  for (auto [name, w] : {std::pair("q", d), std::pair("k", d), std::pair("v", dv)}) {
    HostTensor t(dsl::ElemType::F64, {1, 1, L, w});
    for (int64_t e = 0; e < t.numel(); ++e)
      t.setDouble(e, exact ? std::round(u(rng) * 2) / 2 : u(rng));
    in[name] = std::move(t);
  }
  return in;
}

/// Max |prefill - kernel| over a causal sequence.
double prefillError(const JitKernel &kernel, Decoder &dec, int64_t L, bool exact, unsigned seed) {
  auto in = stream(L, dec.keyDim(), dec.valueDim(), exact, seed);
  HostTensor out;
  auto s = kernel.run(in, {}, out, nullptr);
  EXPECT_TRUE(s) << s.message();
  std::vector<double> got(L * dec.valueDim());
  dec.prefill(L, in["q"].as<double>(), in["k"].as<double>(), in["v"].as<double>(), got.data());
  double err = 0;
  for (int64_t e = 0; e < out.numel(); ++e)
    err = std::max(err, std::abs(got[e] - out.getDouble(e)));
  return err;
}

} // namespace

TEST(Decoder, HullPrefillReproducesTheKernelForEveryTieRule) {
  for (const char *ties : {"latest", "first", "average"}) {
    auto k = compile(std::string("attention h { q: f64[B, H, L, 2]; k: f64[B, H, L, 2];"
                                 " v: f64[B, H, L, 3]\n score = dot(q, k) * 0.5\n"
                                 " mask = j <= i\n normalize = hardmax(ties = ") +
                     ties + ") }");
    ASSERT_TRUE(k);
    std::string error;
    auto dec = Decoder::create(*k, error);
    ASSERT_TRUE(dec) << error;
    EXPECT_STREQ(dec->strategy(), "hull");
    // Half-integer data: many exact ties, duplicate and collinear keys.
    EXPECT_EQ(prefillError(*k, *dec, 700, true, 1), 0.0) << ties;
  }
}

TEST(Decoder, HullLseIsTheScaledMaximum) {
  auto k = compile("attention h { q: f64[B, H, L, 2]; k: f64[B, H, L, 2]; v: f64[B, H, L, 2]\n"
                   " score = dot(q, k) * 2.0\n normalize = hardmax(ties = latest) }");
  ASSERT_TRUE(k);
  std::string error;
  auto dec = Decoder::create(*k, error);
  ASSERT_TRUE(dec) << error;
  double out[2], lse;
  dec->query(std::array<double, 2>{1, 0}.data(), out, &lse); // no key yet
  EXPECT_EQ(lse, -INFINITY);
  EXPECT_EQ(out[0], 0.0);
  double k1[2] = {3, 1}, v1[2] = {5, 6}, k2[2] = {1, 4}, v2[2] = {7, 8};
  dec->append(k1, v1);
  dec->append(k2, v2);
  double q[2] = {0, 1};
  dec->query(q, out, &lse);
  EXPECT_EQ(lse, 8.0); // 2 * (0 * 1 + 1 * 4)
  EXPECT_EQ(out[0], 7.0);
  EXPECT_EQ(out[1], 8.0);
}

TEST(Decoder, ScanPrefillReproducesSoftmaxTopkAndThreeDimensionalHardmax) {
  struct Case {
    const char *body;
    int d, dv;
    bool exact;
    double tol;
  } cases[] = {
      {"score = dot(q, k) * 0.25\n mask = j <= i", 8, 5, false, 1e-12},
      {"score = dot(q, k)\n mask = j <= i\n normalize = topk(4)", 4, 3, true, 1e-12},
      {"score = dot(q, k)\n mask = j <= i\n normalize = hardmax(ties = average)", 3, 2, true, 0},
      {"score = dot(q, k) * -1.0\n mask = j <= i\n normalize = hardmax(ties = latest)", 2, 2, true, 0},
      {"score = dot(q, k) * 0.1\n mask = j <= i\n normalize = sigmoid", 6, 4, false, 1e-12},
  };
  for (const Case &c : cases) {
    auto k = compile("attention s { q: f64[B, H, L, " + std::to_string(c.d) + "]; k: f64[B, H, L, " +
                     std::to_string(c.d) + "]; v: f64[B, H, L, " + std::to_string(c.dv) + "]\n " +
                     c.body + " }");
    ASSERT_TRUE(k);
    std::string error;
    auto dec = Decoder::create(*k, error);
    ASSERT_TRUE(dec) << error;
    EXPECT_STREQ(dec->strategy(), "scan") << c.body;
    EXPECT_LE(prefillError(*k, *dec, 300, c.exact, 2), c.tol) << c.body;
  }
}

TEST(Decoder, LinearKernelsDecodeThroughAConstantState) {
  // Plain linear attention, and retention's decay pow(g, i - j).
  for (auto [norm, score] : {std::pair("linear", "dot(q, k) * 0.5"), std::pair("none", "dot(q, k) * 0.5"),
                             std::pair("none", "dot(q, k) * pow(0.9, i - j) * 0.5"),
                             std::pair("linear", "pow(0.97, i - j) * dot(q, k)")}) {
    auto k = compile(std::string("attention l { q: f64[B, H, L, 6]; k: f64[B, H, L, 6];"
                                 " v: f64[B, H, L, 4]\n score = ") +
                     score + "\n mask = j <= i\n normalize = " + norm + " }");
    ASSERT_TRUE(k);
    EXPECT_EQ(k->manifest().strategy, "linear") << score;
    std::string error;
    auto dec = Decoder::create(*k, error);
    ASSERT_TRUE(dec) << error;
    EXPECT_STREQ(dec->strategy(), "linear") << norm << " " << score;
    // Positive keys and queries keep the normalizer away from 0.
    auto in = stream(300, 6, 4, false, 5);
    for (const char *t : {"q", "k"})
      for (int64_t e = 0; e < in[t].numel(); ++e)
        in[t].setDouble(e, std::abs(in[t].getDouble(e)) + 0.1);
    HostTensor out;
    ASSERT_TRUE(k->run(in, {}, out, nullptr));
    std::vector<double> got(300 * 4);
    dec->prefill(300, in["q"].as<double>(), in["k"].as<double>(), in["v"].as<double>(), got.data());
    double err = 0, scale = 1;
    for (int64_t e = 0; e < out.numel(); ++e) {
      err = std::max(err, std::abs(got[e] - out.getDouble(e)));
      scale = std::max(scale, std::abs(out.getDouble(e)));
    }
    EXPECT_LE(err, 1e-10 * scale) << norm << " " << score;
    // An empty stream: 0 and lse -inf.
    auto fresh = Decoder::create(*k, error);
    double q[6] = {1, 1, 1, 1, 1, 1}, o[4] = {9, 9, 9, 9}, lse = 0;
    fresh->query(q, o, &lse);
    EXPECT_EQ(o[0], 0.0);
    EXPECT_EQ(lse, -std::numeric_limits<double>::infinity());
  }
}

TEST(Decoder, RetentionsPerHeadDecaysDecodeThroughTheKernelsDecayTable) {
  // RetNet's g_h = 1 - 2^(-5 - h): the kernel tabulates it (NAME_decay) and
  // the decoder of head h's stream takes g_h.
  auto k = compile("attention r { q: f64[B, H, L, 6]; k: f64[B, H, L, 6]; v: f64[B, H, L, 4]\n"
                   " score = dot(q, k) * pow(1 - pow(2.0, -1 - h), i - j)\n mask = j <= i\n"
                   " normalize = linear }");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->manifest().strategy, "linear");
  EXPECT_EQ(k->manifest().decode, "linear");
  EXPECT_TRUE(k->manifest().hasDecayTable);
  const int64_t H = 4, L = 200;
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> u(0.1, 2);
  std::map<std::string, HostTensor> in;
  for (auto [name, w] : {std::pair("q", 6), std::pair("k", 6), std::pair("v", 4)}) {
    HostTensor t(dsl::ElemType::F64, {1, H, L, w});
    for (int64_t e = 0; e < t.numel(); ++e)
      t.setDouble(e, u(rng));
    in[name] = std::move(t);
  }
  HostTensor out;
  ASSERT_TRUE(k->run(in, {}, out, nullptr));
  for (int64_t h = 0; h < H; ++h) {
    double g = 0;
    ASSERT_TRUE(k->decayOfHead(h, g));
    EXPECT_DOUBLE_EQ(g, 1 - std::pow(2.0, -1.0 - h));
    std::string error;
    auto dec = Decoder::create(*k, error, 0, 0, h);
    ASSERT_TRUE(dec) << error;
    std::vector<double> got(L * 4);
    dec->prefill(L, in["q"].as<double>() + h * L * 6, in["k"].as<double>() + h * L * 6,
                 in["v"].as<double>() + h * L * 4, got.data());
    double err = 0;
    for (int64_t e = 0; e < L * 4; ++e)
      err = std::max(err, std::abs(got[e] - out.getDouble(h * L * 4 + e)));
    EXPECT_LE(err, 1e-10) << "head " << h;
    // The decay of head 0 (g = 1/2) is not head 3's: a decoder for the
    // wrong head gives other rows.
    if (h == 3) {
      auto wrong = Decoder::create(*k, error, 0, 0, 0);
      std::vector<double> other(L * 4);
      wrong->prefill(L, in["q"].as<double>() + h * L * 6, in["k"].as<double>() + h * L * 6,
                     in["v"].as<double>() + h * L * 4, other.data());
      double diff = 0;
      for (int64_t e = 0; e < L * 4; ++e)
        diff = std::max(diff, std::abs(other[e] - got[e]));
      EXPECT_GT(diff, 1e-3);
    }
  }
  std::string error;
  EXPECT_FALSE(Decoder::create(*k, error, 0, 0, -1));
  EXPECT_NE(error.find("out of range"), std::string::npos) << error;
}

/// Max |prefill - kernel| over head 0 of a causal [1, 1, L, d] stream, aux
/// tensors given to both.
double featurePrefillError(const JitKernel &kernel, Decoder &dec, int64_t L,
                           const std::map<std::string, HostTensor> &aux, unsigned seed) {
  auto in = stream(L, dec.keyDim(), dec.valueDim(), false, seed);
  for (const char *t : {"q", "k"}) // keep exp() features in range
    for (int64_t e = 0; e < in[t].numel(); ++e)
      in[t].setDouble(e, in[t].getDouble(e) / 3);
  for (const auto &[name, t] : aux)
    in[name] = t;
  HostTensor out;
  auto s = kernel.run(in, {}, out, nullptr);
  EXPECT_TRUE(s) << s.message();
  std::vector<double> got(L * dec.valueDim());
  dec.prefill(L, in["q"].as<double>(), in["k"].as<double>(), in["v"].as<double>(), got.data());
  double err = 0, scale = 1;
  for (int64_t e = 0; e < out.numel(); ++e) {
    err = std::max(err, std::abs(got[e] - out.getDouble(e)));
    scale = std::max(scale, std::abs(out.getDouble(e)));
  }
  return err / scale;
}

TEST(Decoder, FeatureMapsDecodeThroughTheKernelsFeatureEntryPoint) {
  // elu+1 (Katharopoulos et al.), with and without a decay: the decoder
  // maps each row through NAME_features and keeps an N x dv state.
  const char *elu =
      "attention e { q: f64[B, H, L, 6]; k: f64[B, H, L, 6]; v: f64[B, H, L, 4]\n"
      " let fq[c] = select(q[c] > 0, q[c] + 1, exp(q[c]))\n"
      " let fk[c] = select(k[c] > 0, k[c] + 1, exp(k[c]))\n"
      " score = dot(fq, fk) * 0.5%s\n mask = j <= i\n normalize = linear }";
  for (const char *decay : {"", " * pow(0.95, i - j)"}) {
    char text[1024];
    std::snprintf(text, sizeof text, elu, decay);
    auto k = compile(text);
    ASSERT_TRUE(k);
    EXPECT_EQ(k->manifest().decode, "linear") << decay;
    EXPECT_TRUE(k->manifest().hasFeatures) << decay;
    std::string error;
    auto dec = Decoder::create(*k, error);
    ASSERT_TRUE(dec) << error;
    EXPECT_STREQ(dec->strategy(), "linear");
    EXPECT_LE(featurePrefillError(*k, *dec, 300, {}, 11), 1e-12) << decay;
  }
  // Performer: positive random features through an aux projection w [R, 6]
  // (R = 10 from w), given to the decoder.
  auto k = compile("attention p { q: f64[B, H, L, 6]; k: f64[B, H, L, 6]; v: f64[B, H, L, 4]\n"
                   " w: f64[R, 6]\n"
                   " let fq[r < R] = exp(sum(c < 6: w[r, c] * q[c]) * 0.6 - sqnorm(q) / 4)\n"
                   " let fk[r < R] = exp(sum(c < 6: w[r, c] * k[c]) * 0.6 - sqnorm(k) / 4)\n"
                   " score = dot(fq, fk)\n mask = j <= i\n normalize = linear }");
  ASSERT_TRUE(k);
  EXPECT_TRUE(k->manifest().hasFeatures);
  EXPECT_EQ(k->manifest().featureLength, "R");
  HostTensor w(dsl::ElemType::F64, {10, 6});
  std::mt19937 rng(4);
  std::normal_distribution<double> n01;
  for (int64_t e = 0; e < w.numel(); ++e)
    w.setDouble(e, n01(rng));
  std::string error;
  auto dec = Decoder::create(*k, error, 0, 0, 0, {{"w", w}});
  ASSERT_TRUE(dec) << error;
  EXPECT_LE(featurePrefillError(*k, *dec, 300, {{"w", w}}, 12), 1e-12);
  // Without w, or with a w of the wrong width: an error naming it.
  EXPECT_FALSE(Decoder::create(*k, error));
  EXPECT_NE(error.find("w"), std::string::npos) << error;
  HostTensor narrow(dsl::ElemType::F64, {10, 5});
  EXPECT_FALSE(Decoder::create(*k, error, 0, 0, 0, {{"w", narrow}}));
  EXPECT_NE(error.find("w"), std::string::npos) << error;
}

TEST(Decoder, FeaturesThatReadTheHeadOrPositionAreNotDecoded) {
  for (const char *fk : {"k[c] * (1 + hk)", "k[c] + j", "k[c] + b", "k[c] * L"}) {
    auto k = compile(std::string("attention f { q: f64[B, H, L, 6]; k: f64[B, H, L, 6];"
                                 " v: f64[B, H, L, 4]\n let fk[c] = ") +
                     fk + "\n score = dot(q, fk)\n mask = j <= i\n normalize = none }");
    ASSERT_TRUE(k);
    EXPECT_EQ(k->manifest().strategy, "linear") << fk;
    EXPECT_EQ(k->manifest().decode, "none") << fk;
  }
}

TEST(Decoder, DecaysThatReadSizesOrAuxTensorsAreNotDecoded) {
  for (const char *decl_score :
       {"score = dot(q, k) * pow(1 - 1.0 / (H + 1 + h), i - j)",
        "gamma: f64[H]\n score = dot(q, k) * pow(gamma[h], i - j)"}) {
    auto k = compile(std::string("attention r { q: f64[B, H, L, 6]; k: f64[B, H, L, 6];"
                                 " v: f64[B, H, L, 4]\n") +
                     decl_score + "\n mask = j <= i\n normalize = none }");
    ASSERT_TRUE(k);
    EXPECT_EQ(k->manifest().strategy, "linear") << decl_score;
    EXPECT_EQ(k->manifest().decode, "none") << decl_score;
  }
}

TEST(Decoder, KernelsThatCannotBeDecodedSaySo) {
  auto k = compile("attention w { q: f64[B, H, L, 2]; k: f64[B, H, L, 2]; v: f64[B, H, L, 2]\n"
                   " mask = j <= i && i - j < 8\n normalize = hardmax }");
  ASSERT_TRUE(k);
  std::string error;
  EXPECT_FALSE(Decoder::create(*k, error));
  EXPECT_NE(error.find("cannot be decoded"), std::string::npos) << error;
}
