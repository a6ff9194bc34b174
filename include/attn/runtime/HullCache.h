// The hard-max key cache for one (batch, head) stream with 2-D keys: keys are
// kept on their convex hull so that a hard-max attention query q (score
// q·k) is answered in O(log n) and a (key, value) pair is appended in
// amortized O(log n), with LANGUAGE.md §5's tie rules (average, latest,
// first) over duplicate and collinear keys. Also the O(n) scan with the same
// semantics (the reference for tests, and the fallback decoder). Pure C++:
// no MLIR or Halide. docs/hardmax.md explains what is exact.
#pragma once

#include "attn/dsl/AST.h" // dsl::TieRule

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace attn::runtime {

using TieRule = dsl::TieRule;

namespace hull {
/// A growable array of doubles for the cache's keys, values and groups,
/// which grow to tens of MB. Its storage is an anonymous mapping that grows
/// by doubling without copying (mremap on Linux moves the page tables, not
/// the data) and is marked for transparent huge pages from 2 MiB on; with a
/// std::vector each doubling copied the array and faulted in twice its
/// pages, a few per cent of a decode step at 10^6 keys.
class DoubleArray {
public:
  DoubleArray() = default;
  ~DoubleArray();
  DoubleArray(DoubleArray &&o) noexcept;
  DoubleArray &operator=(DoubleArray &&o) noexcept;
  DoubleArray(const DoubleArray &) = delete;
  DoubleArray &operator=(const DoubleArray &) = delete;

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  double *data() { return data_; }
  const double *data() const { return data_; }
  const double &operator[](std::size_t i) const { return data_[i]; }
  /// Appends p[0..count) (p may point into this array); returns where the
  /// copy starts. Throws std::bad_alloc.
  double *append(const double *p, std::size_t count);
  /// Appends count uninitialized doubles; returns where they start.
  double *extend(std::size_t count);
  /// Empties the array and frees its storage.
  void clear() noexcept;

private:
  void grow(std::size_t minCapacity);
  double *data_ = nullptr;
  std::size_t size_ = 0, capacity_ = 0;
};
} // namespace hull

/// Exact geometric predicates on doubles (docs/hardmax.md). They are exact
/// (the sign of the real-number expression) for finite arguments each of
/// which is 0 or has magnitude in [2^-480, 2^480]; a floating-point filter
/// answers most calls, an expansion-arithmetic fallback the rest.
namespace hull {
/// The sign (-1, 0, +1) of (ax - cx)(by - cy) - (ay - cy)(bx - cx): +1 when
/// a, b, c turn counterclockwise, 0 when collinear.
int orient2d(double ax, double ay, double bx, double by, double cx,
             double cy);
/// The sign of q·a − q·b: +1 when key a scores strictly higher than key b
/// under query q, 0 on an exact tie.
int compareScores(double qx, double qy, double ax, double ay, double bx,
                  double by);
/// The score as a kernel computes it: qx*kx + qy*ky in double, each product
/// rounded, no fused multiply-add.
double score(double qx, double qy, double kx, double ky);
} // namespace hull

/// A hard-max attention key cache for one (batch, head) stream.
///
/// Keys are points (kx, ky); the j-th appended key (j = 0, 1, ...) carries a
/// value of `dv` doubles, copied into the cache. A query q returns, for
/// score(j) = q·k_j, the tie set T = { j : score(j) = max_i score(i) } and
///   average: the mean of the values of T,
///   latest:  the value of max T,
///   first:   the value of min T,
/// which is LANGUAGE.md §5's hard-max. Ties are decided in exact real
/// arithmetic on the double inputs (q·a = q·b as real numbers); this equals
/// "exact equality of the computed double scores" whenever the scores are
/// computed exactly, e.g. integer coordinates of magnitude < 2^26 (so every
/// product and sum is an integer < 2^53). float inputs may be converted to
/// double (exactly) and appended; see docs/hardmax.md.
///
/// Every key that can tie is kept: duplicate keys (each counts, with its own
/// j), and keys lying exactly on a hull edge between its two end vertices,
/// which tie with them for the query orthogonal to the edge. Keys strictly
/// inside the hull can never be maximizers and are left out of the hull
/// (their values are still stored, and they still count for the zero query,
/// for which every key ties).
///
/// Complexity: append amortized O(log n), query O(log n), both independent
/// of how many keys tie; memory O(n · dv) for the stored keys and values
/// plus O(h · dv) for the h distinct keys on the hull.
///
/// Coordinates must be finite; append and query throw std::invalid_argument
/// otherwise. Exactness needs each coordinate (of keys and queries) to be 0
/// or of magnitude in [2^-480, 2^480]. Move-only; not thread-safe for
/// concurrent appends (concurrent const queries are fine).
class HullCache {
public:
  explicit HullCache(int dv);

  int dv() const { return dv_; }
  /// The number of appended keys (including those off the hull).
  std::size_t size() const { return keys_.size() / 2; }
  bool empty() const { return keys_.empty(); }
  /// Forgets every key; dv stays.
  void clear();

  /// Appends key (kx, ky) with value[0..dv) as entry j = size().
  void append(double kx, double ky, const double *value);

  /// Hard-max attention of query (qx, qy) over the keys appended so far:
  /// writes dv doubles to `out` (see the class comment for the tie rules)
  /// and, when maxScore is not null, the maximum score, as
  /// hull::score(q, k_j) for the largest j in the tie set (all tied keys
  /// have the same exact score; their computed scores can differ only by
  /// rounding, and do not when scores are computed exactly). The zero
  /// query ties every key. An empty cache gives out = 0, maxScore = -inf.
  void query(double qx, double qy, TieRule ties, double *out,
             double *maxScore = nullptr) const;

  /// One decode step: append(kx, ky, value), then query(qx, qy, ties, out,
  /// maxScore), with the same results (for `average` up to the last bits
  /// when the sums of values are not exact in double). Faster than the two
  /// calls when the hull outgrows the caches: the searches for where the
  /// key goes and for where the query peaks go down the trees together, so
  /// their memory round trips overlap; the query is answered over the keys
  /// before this one, then key j joins (ties) or replaces (scores higher)
  /// the tie set, decided exactly.
  void step(double kx, double ky, const double *value, double qx, double qy,
            TieRule ties, double *out, double *maxScore = nullptr);

  /// The stored keys, [size(), 2] row-major, and values, [size(), dv].
  const double *keys() const { return keys_.data(); }
  const double *values() const { return values_.data(); }

  /// The number of vertices of the upper and of the lower hull (for tests
  /// and statistics).
  std::size_t upperHullSize() const;
  std::size_t lowerHullSize() const;

  ~HullCache();
  HullCache(HullCache &&) noexcept;
  HullCache &operator=(HullCache &&) noexcept;

private:
  /// A chain of hull vertices ordered by x (a B+-tree; HullCache.cpp): the
  /// upper hull of its points. The lower hull is kept as the upper hull of
  /// the points mirrored to (x, -y). Each vertex record carries its keys'
  /// largest j and, when dv is small, that key's value.
  class Chain;
  /// Pool group g (the keys strictly inside one hull edge, the keys of a
  /// vertex that holds two or more, all keys, the keys at the smallest or
  /// largest x) is kept in groupStride_ doubles at groups_.data() + g *
  /// groupStride_: count, the smallest and the largest j, and the
  /// compensated sum of the values (the key and value of a j are read from
  /// keys_ and values_). Creating a group may move the others.
  double *group(int32_t g) {
    return groups_.data() + std::size_t(g) * groupStride_;
  }
  const double *group(int32_t g) const {
    return groups_.data() + std::size_t(g) * groupStride_;
  }

  /// A vertex position in a chain, and one group of a tie set.
  struct ChainPos;
  struct Tied;

  /// Stores key j = size() and its value, and adds it to the groups of the
  /// smallest and largest x and of all keys; returns the stored value.
  const double *storeKey(double kx, double ky, const double *value);
  /// Adds key j at (x, y) to the chain; `at` is the first vertex with
  /// x' >= x (Chain::lowerBound).
  void insertIntoChain(Chain &chain, const ChainPos &at, double x, double y,
                       int64_t j, const double *value);
  /// The tie set (1 to 3 groups, into g) of a query with qy != 0 whose peak
  /// on the chain it looks at is p; returns the number of groups. Reads
  /// no head for `latest` without a tie (the vertex's inline value).
  int tiedAt(const Chain &chain, const ChainPos &p, double qx, double qy,
             TieRule ties, Tied *g) const;
  Tied poolTied(int32_t id) const;
  /// The value of the largest j at vertex p: inline in the leaf when values
  /// are small, else from values_.
  const double *latestValue(const Chain &chain, const ChainPos &p) const;
  /// What the tie rule reads of the tie set g[0..n): out = the value
  /// (latest, first) or the compensated sum with its error in err and the
  /// count (average); the key of the latest.
  void resolve(const Tied *g, int n, TieRule ties, double *out, double *err,
               double &count, double &kx, double &ky) const;

  int32_t newGroup(int64_t j, const double *value);
  /// Adds key j to group g, creating it when g == -1.
  void addToGroup(int32_t &g, int64_t j, const double *value);
  /// Moves group `from` into `into` (either may be -1); from becomes -1.
  void mergeGroup(int32_t &into, int32_t &from);
  /// Frees group g (when not -1) and sets it to -1.
  void releaseGroup(int32_t &g);

  int dv_;
  hull::DoubleArray keys_;   // [n, 2]
  hull::DoubleArray values_; // [n, dv]
  std::unique_ptr<Chain> upper_; // upper hull of (x, y)
  std::unique_ptr<Chain> lower_; // upper hull of (x, -y)
  int32_t all_ = -1;           // every key (the zero query)
  int32_t minXGroup_ = -1, maxXGroup_ = -1; // keys at the smallest/largest x
  double minX_ = 0, maxX_ = 0;
  std::size_t groupStride_;
  hull::DoubleArray groups_;
  std::vector<int32_t> freeGroups_;
};

/// The O(n) brute-force hard-max with HullCache::query's semantics (exact
/// ties, the same tie rules and maxScore) over n keys [n, 2] and values
/// [n, dv] in append order. Results are bitwise equal to the cache's except
/// that an `average` over values whose sums are not exact in double may
/// differ in the last bits (both use compensated sums, in different orders).
void scanQuery(const double *keys, const double *values, std::size_t n,
               int dv, double qx, double qy, TieRule ties, double *out,
               double *maxScore = nullptr);

} // namespace attn::runtime
