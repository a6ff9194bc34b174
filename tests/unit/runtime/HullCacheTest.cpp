// Unit tests of the hard-max hull key cache (HullCache.h): the exact
// predicates against 128-bit integer arithmetic, parabola key-value
// retrieval, the three tie rules on duplicate and collinear keys, the zero,
// horizontal and downward queries, and long random runs against scanQuery.
#include "attn/runtime/HullCache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

using namespace attn::runtime;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const TieRule kRules[] = {TieRule::Average, TieRule::Latest, TieRule::First};

struct Answer {
  std::vector<double> out;
  double score = 0;
};

Answer ask(const HullCache &c, double qx, double qy, TieRule t) {
  Answer a;
  a.out.assign(c.dv(), -12345.0);
  c.query(qx, qy, t, a.out.data(), &a.score);
  return a;
}

Answer scan(const HullCache &c, double qx, double qy, TieRule t) {
  Answer a;
  a.out.assign(c.dv(), -12345.0);
  scanQuery(c.keys(), c.values(), c.size(), c.dv(), qx, qy, t, a.out.data(),
            &a.score);
  return a;
}

/// Answer h of the hull equals the scan's s under rule t: bitwise unless
/// `avgTol` > 0, the relative tolerance for averages of values whose sums
/// are inexact.
::testing::AssertionResult same(const Answer &h, const Answer &s, TieRule t,
                                double avgTol) {
  if (!(h.score == s.score || (std::isnan(h.score) && std::isnan(s.score))))
    return ::testing::AssertionFailure()
           << "maxScore " << h.score << " vs " << s.score << " rule "
           << attn::dsl::toString(t);
  for (std::size_t d = 0; d < s.out.size(); ++d) {
    double tol =
        t == TieRule::Average ? avgTol * std::max(1.0, std::fabs(s.out[d])) : 0.0;
    if (!(std::fabs(h.out[d] - s.out[d]) <= tol))
      return ::testing::AssertionFailure()
             << "out[" << d << "] " << h.out[d] << " vs scan " << s.out[d]
             << " rule " << attn::dsl::toString(t);
  }
  return ::testing::AssertionSuccess();
}

/// Hull and scan agree for every tie rule (see same).
::testing::AssertionResult agrees(const HullCache &c, double qx, double qy,
                                  double avgTol = 0) {
  for (TieRule t : kRules) {
    auto r = same(ask(c, qx, qy, t), scan(c, qx, qy, t), t, avgTol);
    if (!r)
      return r << " for q=(" << qx << ", " << qy << ") n=" << c.size();
  }
  return ::testing::AssertionSuccess();
}

/// Appends key (x, y) with value {j, 10 j + 1} where j is its index.
void put(HullCache &c, double x, double y) {
  double j = static_cast<double>(c.size());
  double v[2] = {j, 10 * j + 1};
  c.append(x, y, v);
}

// --- exact predicates -----------------------------------------------------

int sign128(__int128 x) { return (x > 0) - (x < 0); }

TEST(HullPredicates, OrientMatchesInt128NearDegenerate) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> big(-(int64_t(1) << 49),
                                             int64_t(1) << 49);
  std::uniform_int_distribution<int64_t> small(-3, 3);
  std::uniform_int_distribution<int> scaleExp(-60, 60);
  int zeros = 0;
  for (int it = 0; it < 200000; ++it) {
    int64_t ax = big(rng) / 4, ay = big(rng) / 4;
    int64_t dx = big(rng) / 1024, dy = big(rng) / 1024;
    int64_t k = small(rng);
    // c close to the line through a and b = a + (dx, dy)
    int64_t bx = ax + dx, by = ay + dy;
    int64_t cx = ax + k * dx + small(rng), cy = ay + k * dy + small(rng);
    __int128 det = (__int128)(ax - cx) * (by - cy) -
                   (__int128)(ay - cy) * (bx - cx);
    double s = std::ldexp(1.0, scaleExp(rng)); // powers of 2 keep the sign
    int got = attn::runtime::hull::orient2d(ax * s, ay * s, bx * s, by * s,
                                            cx * s, cy * s);
    ASSERT_EQ(got, sign128(det)) << it;
    zeros += det == 0;
  }
  EXPECT_GT(zeros, 1000); // exact collinearity was exercised
}

TEST(HullPredicates, CompareScoresMatchesInt128NearTies) {
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<int64_t> big(-(int64_t(1) << 50),
                                             int64_t(1) << 50);
  std::uniform_int_distribution<int64_t> small(-2, 2);
  int zeros = 0;
  for (int it = 0; it < 200000; ++it) {
    int64_t qx = big(rng), qy = big(rng), ax = big(rng), ay = big(rng);
    // b = a + t * (-qy, qx) / g + noise: near the line of equal score
    int64_t g = std::gcd(qx, qy);
    if (g == 0)
      continue;
    int64_t t = small(rng);
    int64_t bx = ax - t * (qy / g) + (it % 3 == 0 ? small(rng) : 0);
    int64_t by = ay + t * (qx / g);
    __int128 d = (__int128)qx * ax + (__int128)qy * ay -
                 (__int128)qx * bx - (__int128)qy * by;
    int got = attn::runtime::hull::compareScores(
        double(qx), double(qy), double(ax), double(ay), double(bx),
        double(by));
    ASSERT_EQ(got, sign128(d)) << it;
    zeros += d == 0;
  }
  EXPECT_GT(zeros, 1000);
}

TEST(HullPredicates, NaiveDoubleWouldFail) {
  // q·a and q·b differ by 1 but both are ~2^100: the double scores are equal.
  double q = 0x1p50, ax = 0x1p50, bx = 0x1p50;
  double ay = 1, by = 0; // q·a - q·b = qy (= 1)
  EXPECT_EQ(hull::score(q, 1, ax, ay), hull::score(q, 1, bx, by));
  EXPECT_EQ(hull::compareScores(q, 1, ax, ay, bx, by), 1);
  EXPECT_EQ(hull::orient2d(0.5, 0.5, 12, 12, 24, 24), 0);
  EXPECT_EQ(hull::orient2d(0.5, 0.5, 12, 12, std::nextafter(24.0, 25.0), 24),
            -1);
}

// --- semantics on small cases -------------------------------------------

TEST(HullCache, EmptyCache) {
  HullCache c(3);
  for (TieRule t : kRules) {
    Answer a = ask(c, 1, 2, t);
    EXPECT_EQ(a.out, std::vector<double>(3, 0.0));
    EXPECT_EQ(a.score, -kInf);
    EXPECT_TRUE(agrees(c, 0, 0));
  }
  EXPECT_EQ(c.size(), 0u);
  EXPECT_THROW(HullCache(0), std::invalid_argument);
}

TEST(HullCache, SingleKey) {
  HullCache c(2);
  put(c, 3, -4);
  for (double qx : {-1.0, 0.0, 2.0})
    for (double qy : {-1.0, 0.0, 5.0})
      for (TieRule t : kRules) {
        Answer a = ask(c, qx, qy, t);
        EXPECT_EQ(a.out, (std::vector<double>{0, 1}));
        EXPECT_EQ(a.score, qx * 3 + qy * -4);
      }
}

TEST(HullCache, RejectsNonFinite) {
  HullCache c(1);
  double v = 1;
  EXPECT_THROW(c.append(std::nan(""), 0, &v), std::invalid_argument);
  EXPECT_THROW(c.append(0, kInf, &v), std::invalid_argument);
  c.append(0, 0, &v);
  double out;
  EXPECT_THROW(c.query(kInf, 0, TieRule::Latest, &out), std::invalid_argument);
  EXPECT_EQ(c.size(), 1u);
}

TEST(HullCache, ParabolaRetrieval) {
  // key (2a, -a²) for address a; query (a, 1) scores a² - (a - b)²: maximal
  // (a²) exactly at the written address.
  HullCache c(2);
  std::vector<int> addrs(2000);
  std::iota(addrs.begin(), addrs.end(), -1000);
  std::shuffle(addrs.begin(), addrs.end(), std::mt19937(3));
  for (int a : addrs) {
    double v[2] = {double(a), 7.0 * a};
    c.append(2.0 * a, -double(a) * a, v);
  }
  EXPECT_EQ(c.upperHullSize(), 2000u);
  for (int a = -1000; a < 1000; ++a)
    for (TieRule t : kRules) {
      Answer r = ask(c, a, 1, t);
      ASSERT_EQ(r.out, (std::vector<double>{double(a), 7.0 * a})) << a;
      ASSERT_EQ(r.score, double(a) * a);
    }
  // Halfway between two addresses both tie: average, first, latest differ.
  HullCache d(1);
  double v0 = 10, v1 = 20;
  d.append(2.0 * 5, -25.0, &v0);
  d.append(2.0 * 6, -36.0, &v1);
  double out;
  d.query(5.5, 1, TieRule::Average, &out);
  EXPECT_EQ(out, 15);
  d.query(5.5, 1, TieRule::Latest, &out);
  EXPECT_EQ(out, 20);
  d.query(5.5, 1, TieRule::First, &out);
  EXPECT_EQ(out, 10);
}

TEST(HullCache, MostRecentWriteWins) {
  HullCache c(1);
  std::mt19937 rng(4);
  std::uniform_int_distribution<int> addr(0, 63);
  std::vector<double> last(64, -1), firstW(64, -1), sum(64, 0), cnt(64, 0);
  for (int step = 0; step < 5000; ++step) {
    int a = addr(rng);
    double v = step;
    c.append(2.0 * a, -double(a) * a, &v);
    last[a] = v;
    if (firstW[a] < 0)
      firstW[a] = v;
    sum[a] += v;
    cnt[a] += 1;
    int b = addr(rng);
    if (last[b] < 0)
      continue;
    double out, score;
    c.query(b, 1, TieRule::Latest, &out, &score);
    ASSERT_EQ(out, last[b]) << step;
    ASSERT_EQ(score, double(b) * b);
    c.query(b, 1, TieRule::First, &out);
    ASSERT_EQ(out, firstW[b]);
    c.query(b, 1, TieRule::Average, &out);
    ASSERT_EQ(out, sum[b] / cnt[b]);
  }
}

TEST(HullCache, DuplicateKeys) {
  HullCache c(2);
  put(c, 0, 0);   // j0
  put(c, 1, 1);   // j1
  put(c, 1, 1);   // j2
  put(c, -1, 0);  // j3
  put(c, 1, 1);   // j4
  put(c, 0, -1);  // j5
  // (1, 1) is the unique maximizer point of q = (1, 1), held by j1, j2, j4.
  EXPECT_EQ(ask(c, 1, 1, TieRule::Average).out,
            (std::vector<double>{7.0 / 3, 73.0 / 3}));
  EXPECT_EQ(ask(c, 1, 1, TieRule::Latest).out,
            (std::vector<double>{4, 41}));
  EXPECT_EQ(ask(c, 1, 1, TieRule::First).out, (std::vector<double>{1, 11}));
  EXPECT_EQ(ask(c, 1, 1, TieRule::First).score, 2);
  // Horizontal query: the largest x is 1 (the three duplicates).
  EXPECT_EQ(ask(c, 2, 0, TieRule::Latest).out, (std::vector<double>{4, 41}));
  EXPECT_EQ(ask(c, -2, 0, TieRule::Latest).out, (std::vector<double>{3, 31}));
  for (double qx = -2; qx <= 2; qx += 0.5)
    for (double qy = -2; qy <= 2; qy += 0.5)
      EXPECT_TRUE(agrees(c, qx, qy));
}

TEST(HullCache, CollinearKeysOnAnEdgeAllCount) {
  // Three collinear keys: the middle one must tie, in every append order.
  std::vector<std::array<double, 2>> pts = {{0, 0}, {1, 0}, {2, 0}};
  std::vector<int> order = {0, 1, 2};
  do {
    HullCache c(1);
    for (int i : order) {
      double v = 10.0 * i;
      c.append(pts[i][0], pts[i][1], &v);
    }
    double out, score;
    c.query(0, 1, TieRule::Average, &out, &score);
    EXPECT_EQ(out, 10.0); // (0 + 10 + 20) / 3
    EXPECT_EQ(score, 0.0);
    c.query(0, 1, TieRule::Latest, &out);
    EXPECT_EQ(out, 10.0 * order[2]);
    c.query(0, 1, TieRule::First, &out);
    EXPECT_EQ(out, 10.0 * order[0]);
    c.query(0, -3, TieRule::Average, &out); // the lower hull too
    EXPECT_EQ(out, 10.0);
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(HullCache, CollinearEdgeEveryOrder) {
  // Five keys on the segment y = x, 0 <= x <= 4, one of them twice, and
  // three keys above it; every query compared with the scan in many orders.
  std::vector<std::array<double, 2>> pts = {
      {0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {2, 2}, {0, 3}, {-1, 2}, {1, 5}};
  std::vector<int> order(pts.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(5);
  for (int rep = 0; rep < 400; ++rep) {
    std::shuffle(order.begin(), order.end(), rng);
    HullCache c(2);
    for (int i : order)
      put(c, pts[i][0], pts[i][1]);
    for (int qx = -3; qx <= 3; ++qx)
      for (int qy = -3; qy <= 3; ++qy)
        ASSERT_TRUE(agrees(c, qx, qy)) << "rep " << rep;
    // q = (1, -1) is orthogonal to the segment: all six keys on it tie.
    Answer a = ask(c, 1, -1, TieRule::Average);
    double mean = 0;
    for (std::size_t j = 0; j < order.size(); ++j)
      if (order[j] <= 5)
        mean += double(j);
    EXPECT_EQ(a.out[0], mean / 6);
    EXPECT_EQ(a.score, 0);
  }
}

TEST(HullCache, CollinearExtensionDemotesVertices) {
  // The chain grows along one line, left and right; earlier end vertices
  // become interior points of the edge and must still tie.
  HullCache c(1);
  std::vector<double> xs = {0, 1, -1, 2, -2, 3, 0.5, -1.5};
  for (double x : xs) {
    double v = x;
    c.append(x, 2 * x + 1, &v);
  }
  EXPECT_EQ(c.upperHullSize(), 2u);
  EXPECT_EQ(c.lowerHullSize(), 2u);
  double out;
  c.query(-2, 1, TieRule::Average, &out); // orthogonal to (1, 2)
  EXPECT_EQ(out, (0 + 1 - 1 + 2 - 2 + 3 + 0.5 - 1.5) / 8.0);
  c.query(2, -1, TieRule::Latest, &out);
  EXPECT_EQ(out, -1.5);
  c.query(2, -1, TieRule::First, &out);
  EXPECT_EQ(out, 0);
  // A key above the line makes the whole segment interior but its ends.
  double v = 100;
  c.append(0, 5, &v);
  EXPECT_TRUE(agrees(c, -2, 1));
  c.query(-2, 1, TieRule::Average, &out);
  EXPECT_EQ(out, 100);
  c.query(2, -1, TieRule::Average, &out); // the lower side still ties all 8
  EXPECT_EQ(out, (0 + 1 - 1 + 2 - 2 + 3 + 0.5 - 1.5) / 8.0);
}

TEST(HullCache, ZeroQueryTiesEveryKey) {
  HullCache c(2);
  std::mt19937 rng(6);
  std::uniform_real_distribution<double> u(-1, 1);
  double sum0 = 0;
  for (int j = 0; j < 100; ++j) {
    put(c, u(rng), u(rng)); // most are strictly inside the hull
    sum0 += j;
  }
  Answer a = ask(c, 0, 0, TieRule::Average);
  EXPECT_EQ(a.out[0], sum0 / 100);
  EXPECT_EQ(a.score, 0);
  EXPECT_EQ(ask(c, 0, 0, TieRule::Latest).out[0], 99);
  EXPECT_EQ(ask(c, -0.0, 0, TieRule::First).out[0], 0);
  EXPECT_TRUE(agrees(c, 0, 0));
  EXPECT_TRUE(agrees(c, -0.0, -0.0));
}

TEST(HullCache, HorizontalAndDownwardQueries) {
  // A vertical edge at the largest x with an interior point, and at the
  // smallest x two keys; y = 0 queries tie every key at the extreme x.
  HullCache c(2);
  put(c, 5, 0);   // j0
  put(c, 0, 0);   // j1
  put(c, 5, 2);   // j2
  put(c, 5, 1);   // j3  (inside the vertical edge)
  put(c, -1, 7);  // j4
  put(c, 5, -3);  // j5
  put(c, -1, -7); // j6
  put(c, 2, 1);   // j7
  EXPECT_EQ(ask(c, 1, 0, TieRule::Average).out[0], (0 + 2 + 3 + 5) / 4.0);
  EXPECT_EQ(ask(c, 3, 0, TieRule::Latest).out[0], 5);
  EXPECT_EQ(ask(c, 3, 0, TieRule::First).out[0], 0);
  EXPECT_EQ(ask(c, 3, 0, TieRule::First).score, 15);
  EXPECT_EQ(ask(c, -1, 0, TieRule::Average).out[0], 5);
  EXPECT_EQ(ask(c, -1, -0.0, TieRule::Latest).out[0], 6);
  EXPECT_EQ(ask(c, 0, -1, TieRule::Latest).out[0], 6);  // lowest key
  EXPECT_EQ(ask(c, 1, -1, TieRule::Latest).out[0], 5);  // (5,-3): 8 > 6
  EXPECT_EQ(ask(c, 0, 1, TieRule::Latest).out[0], 4);
  for (double qx = -3; qx <= 3; qx += 0.25)
    for (double qy = -3; qy <= 3; qy += 0.25)
      ASSERT_TRUE(agrees(c, qx, qy));
}

TEST(HullCache, ClearForgetsEverything) {
  HullCache c(1);
  for (int i = 0; i < 10; ++i)
    put(c, i, i * i % 7);
  c.clear();
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(ask(c, 1, 1, TieRule::Latest).score, -kInf);
  put(c, 1, 1);
  EXPECT_EQ(ask(c, 1, 1, TieRule::Latest).out[0], 0);
  EXPECT_TRUE(agrees(c, -1, 2));
}

TEST(HullCache, AppendValueFromTheCacheItself) {
  HullCache c(2);
  put(c, 0, 0);
  // Grows values() (several times) while copying from it.
  for (int i = 1; i < 5000; ++i)
    c.append(i, 0, c.values() + 2 * (i / 2));
  EXPECT_EQ(ask(c, 1, 0, TieRule::Latest).out, (std::vector<double>{0, 1}));
  EXPECT_EQ(ask(c, -1, 0, TieRule::First).out, (std::vector<double>{0, 1}));
  for (int i = 0; i < 5000; ++i)
    ASSERT_EQ(c.values()[2 * i + 1], 1) << i;
}

TEST(HullDoubleArray, GrowsKeepingContentsAndAppendsFromItself) {
  hull::DoubleArray a;
  std::vector<double> shadow;
  EXPECT_TRUE(a.empty());
  for (int i = 0; i < 300000; ++i) { // 2.4 MB and more: past 2 MiB pages
    double v = i;
    a.append(&v, 1);
    shadow.push_back(v);
    if (i % 4099 == 0) {
      // The last (up to) 1000 doubles, appended from the array itself: the
      // copy of a range that the growth it causes may move.
      std::size_t from = a.size() > 1000 ? a.size() - 1000 : 0;
      a.append(a.data() + from, a.size() - from);
      shadow.insert(shadow.end(), shadow.begin() + from, shadow.end());
    }
  }
  double *g = a.extend(2);
  g[0] = g[1] = -1;
  shadow.insert(shadow.end(), 2, -1.0);
  ASSERT_EQ(a.size(), shadow.size());
  EXPECT_TRUE(std::equal(shadow.begin(), shadow.end(), a.data()));
  hull::DoubleArray b = std::move(a);
  EXPECT_TRUE(a.empty());
  ASSERT_EQ(b.size(), shadow.size());
  EXPECT_TRUE(std::equal(shadow.begin(), shadow.end(), b.data()));
  b.clear();
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.data(), nullptr);
}

// --- long random runs against the scan ------------------------------------

/// Random keys from `key`, values (`dv` of them) random; after each
/// append, queries from `qry` compared with the scan for all three tie
/// rules. With `viaStep`, each step is one HullCache::step (append, then
/// query, fused) instead, for a tie rule cycling through all three, and its
/// answer is compared with the scan's over the keys including the new one.
template <class KeyGen, class QueryGen>
void randomRun(uint32_t seed, int steps, int queriesPerStep, KeyGen key,
               QueryGen qry, bool integerValues, double avgTol, int dv = 3,
               bool viaStep = false) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> iv(-50, 50);
  std::normal_distribution<double> nv(0, 1);
  HullCache c(dv);
  std::vector<double> v(dv);
  for (int step = 0; step < steps; ++step) {
    auto [x, y] = key(rng);
    for (double &e : v)
      e = integerValues ? iv(rng) : nv(rng);
    if (viaStep) {
      auto [qx, qy] = qry(rng);
      TieRule t = kRules[step % 3];
      Answer h;
      h.out.assign(dv, -12345.0);
      c.step(x, y, v.data(), qx, qy, t, h.out.data(), &h.score);
      ASSERT_TRUE(same(h, scan(c, qx, qy, t), t, avgTol))
          << "q=(" << qx << ", " << qy << ") seed " << seed << " step " << step;
      continue;
    }
    c.append(x, y, v.data());
    for (int k = 0; k < queriesPerStep; ++k) {
      auto [qx, qy] = qry(rng);
      ASSERT_TRUE(agrees(c, qx, qy, avgTol)) << "seed " << seed << " step "
                                             << step;
    }
  }
}

/// Keys on the integer grid [-6, 6]², queries on [-3, 3]²: duplicates,
/// collinear hull edges and exact ties on almost every query.
std::pair<double, double> gridKey(std::mt19937_64 &r) {
  std::uniform_int_distribution<int> d(-6, 6);
  return {double(d(r)), double(d(r))};
}
std::pair<double, double> gridQuery(std::mt19937_64 &r) {
  std::uniform_int_distribution<int> d(-3, 3);
  return {double(d(r)), double(d(r))};
}

template <class KeyGen, class QueryGen>
void randomStepRun(uint32_t seed, int steps, KeyGen key, QueryGen qry,
                   bool integerValues, double avgTol, int dv = 3) {
  randomRun(seed, steps, 1, key, qry, integerValues, avgTol, dv, true);
}

TEST(HullCacheStep, ParabolaMemoryAllQuadrants) {
  // The parabola memory with repeated addresses, reads that hit a written
  // address, fall between two (an exact tie of two vertices) or look down
  // and sideways; the hull grows past one leaf level and past the 8192
  // vertices from which the searches load nodes ahead (and the neighbours
  // of an insertion's leaf).
  std::uniform_int_distribution<int> addr(-6000, 5999);
  auto key = [&](std::mt19937_64 &r) {
    double a = addr(r);
    return std::pair<double, double>(2 * a, -a * a);
  };
  auto qry = [&](std::mt19937_64 &r) {
    int kind = static_cast<int>(r() % 4);
    double b = addr(r) + (kind == 1 ? 0.5 : 0.0);
    return kind == 2 ? std::pair<double, double>(b, -1)
         : kind == 3 ? std::pair<double, double>(b, 0)
                     : std::pair<double, double>(b, 1);
  };
  randomStepRun(33, 30000, key, qry, true, 0);
}

TEST(HullCacheStep, RandomDoubles) {
  std::normal_distribution<double> n(0, 1);
  auto key = [&](std::mt19937_64 &r) {
    return std::pair<double, double>(n(r), n(r));
  };
  auto qry = [&](std::mt19937_64 &r) {
    return std::pair<double, double>(n(r), n(r));
  };
  randomStepRun(34, 20000, key, qry, false, 1e-12);
}

TEST(HullCacheRandom, SmallIntegerGridManyTies) {
  // Keys and queries on a small integer grid in all four quadrants: exact
  // duplicates, collinear hull edges and exact ties on almost every query.
  randomRun(7, 20000, 1, gridKey, gridQuery, true, 0);
  // The same through HullCache::step, values inline and not (dv = 6).
  randomStepRun(31, 20000, gridKey, gridQuery, true, 0);
  randomStepRun(32, 20000, gridKey, gridQuery, true, 0, /*dv=*/6);
}

TEST(HullCacheRandom, SmallIntegerGridWideValues) {
  // As above with dv = 6: values too wide to be copied into the hull's
  // vertex records, so latest/first are read from the stored values.
  randomRun(17, 20000, 1, gridKey, gridQuery, true, 0, /*dv=*/6);
}

TEST(HullCacheRandom, GrowingIntegerRangeRandomOrder) {
  // The range grows with the step, so the hull keeps changing, with keys in
  // random x order; integer queries up to 1000 (scores exact in double).
  int step = 0;
  auto key = [&step](std::mt19937_64 &r) {
    int m = 2 + step++ / 50;
    std::uniform_int_distribution<int> d(-m, m);
    return std::pair<double, double>(d(r), d(r));
  };
  auto qry = [](std::mt19937_64 &r) {
    std::uniform_int_distribution<int> d(-1000, 1000);
    return std::pair<double, double>(d(r), d(r) % 3 == 0 ? 0 : d(r));
  };
  randomRun(8, 20000, 1, key, qry, true, 0);
}

TEST(HullCacheRandom, RandomDoubles) {
  auto key = [](std::mt19937_64 &r) {
    std::uniform_real_distribution<double> d(-1e3, 1e3);
    return std::pair<double, double>(d(r), d(r));
  };
  auto qry = [](std::mt19937_64 &r) {
    std::uniform_real_distribution<double> d(-1, 1);
    return std::pair<double, double>(d(r), d(r));
  };
  randomRun(9, 20000, 1, key, qry, false, 1e-12);
}

TEST(HullCacheRandom, DoublesOnACircleAndNearDegenerate) {
  // Every key on (or within rounding of) a circle: a large hull whose
  // vertices are nearly collinear locally; keys with inexact decimal
  // coordinates; queries in all quadrants and on the axes.
  auto key = [](std::mt19937_64 &r) {
    std::uniform_int_distribution<int> d(0, 4095);
    double t = d(r) * (2 * M_PI / 4096);
    return std::pair<double, double>(std::cos(t) * 1e6, std::sin(t) * 1e6);
  };
  auto qry = [](std::mt19937_64 &r) {
    std::uniform_int_distribution<int> d(-10, 10);
    return std::pair<double, double>(d(r) * 0.1, d(r) * 0.1);
  };
  randomRun(10, 20000, 1, key, qry, true, 0);
}

TEST(HullCacheRandom, ParabolaWithRepeatsAllQuadrants) {
  auto key = [](std::mt19937_64 &r) {
    std::uniform_int_distribution<int> d(-300, 300);
    double a = d(r);
    return std::pair<double, double>(2 * a, -a * a);
  };
  auto qry = [](std::mt19937_64 &r) {
    std::uniform_int_distribution<int> d(-300, 300);
    std::uniform_int_distribution<int> s(-1, 1);
    return std::pair<double, double>(d(r), s(r));
  };
  randomRun(11, 20000, 1, key, qry, true, 0);
}

/// A hull of ~20000 vertices (a B+-tree several levels deep), then keys
/// above the parabola that pop runs of vertices spanning many leaves, and
/// keys exactly on chords of the parabola (collinear with two keys). Values
/// are (step, step + 1, ...), dv of them.
void largeHullWithRangeRemovals(int dv) {
  HullCache c(dv);
  std::vector<double> v(dv);
  auto value = [&](double step) {
    for (int d = 0; d < dv; ++d)
      v[d] = step + d;
    return v.data();
  };
  std::mt19937_64 rng(13);
  std::uniform_int_distribution<int> addr(-15000, 14999);
  auto check = [&](int step) {
    for (int k = 0; k < 4; ++k) {
      double b = addr(rng) + (k == 3 ? 0.5 : 0.0);
      ASSERT_TRUE(agrees(c, b, 1)) << step;
      ASSERT_TRUE(agrees(c, b, -1)) << step;
    }
  };
  for (int step = 0; step < 30000; ++step) {
    double a = addr(rng);
    c.append(2 * a, -a * a, value(step));
    if (step % 500 == 0)
      check(step);
  }
  EXPECT_GT(c.upperHullSize(), 15000u);
  std::uniform_int_distribution<int> lift(1, 2000000);
  for (int step = 0; step < 300; ++step) {
    double a = addr(rng);
    if (step % 3 == 0) {
      // Exactly on the chord from a-1 to a+1: on a hull edge when a was
      // never written and both neighbours are vertices, else inside.
      c.append(2 * a, -a * a - 1, value(30000 + step));
    } else {
      int h = lift(rng);
      c.append(2 * a, -a * a + h, value(30000 + step));
      // The lifted key pops the vertices within about sqrt(h) of a, often
      // whole leaves: queries across both ends of that gap and inside it
      // walk the inner nodes whose children just changed.
      double w = std::sqrt(static_cast<double>(h));
      for (int k = -12; k <= 12; ++k)
        ASSERT_TRUE(agrees(c, a + k * w / 10 + 0.5 * (k & 1), 1)) << step;
    }
    if (step % 10 == 0)
      check(step);
  }
  EXPECT_LT(c.upperHullSize(), 15000u);
}

TEST(HullCacheRandom, LargeHullWithRangeRemovals) {
  largeHullWithRangeRemovals(1);
}

TEST(HullCacheRandom, LargeHullWithRangeRemovalsWideValues) {
  largeHullWithRangeRemovals(6); // values not copied into the hull
}

TEST(HullCacheRandom, ExactTiesEqualComputedTiesForSmallIntegers) {
  // With integer coordinates below 2^26 the computed double scores are
  // exact, so the cache's ties are LANGUAGE.md §5's ties of computed scores.
  HullCache c(1);
  std::mt19937_64 rng(12);
  std::uniform_int_distribution<int> d(-(1 << 12), 1 << 12);
  std::vector<double> kx, ky;
  for (int step = 0; step < 4000; ++step) {
    double x = d(rng) / 64 * 64, y = d(rng) / 64 * 64, v = step;
    c.append(x, y, &v);
    kx.push_back(x);
    ky.push_back(y);
    double qx = d(rng) / 512, qy = d(rng) / 512;
    double best = -kInf;
    int64_t latest = -1;
    for (std::size_t j = 0; j < kx.size(); ++j) {
      double s = qx * kx[j] + qy * ky[j];
      if (s >= best) {
        best = s;
        latest = int64_t(j);
      }
    }
    double out, score;
    c.query(qx, qy, TieRule::Latest, &out, &score);
    ASSERT_EQ(out, double(latest));
    ASSERT_EQ(score, best);
  }
}

} // namespace
