// The hard-max hull key cache (HullCache.h): exact orientation and score
// comparison predicates (a floating-point filter, then expansion arithmetic
// à la Shewchuk), the upper/lower hull chains with per-vertex and per-edge
// tie groups, and the O(n) scan with the same semantics.
//
// Compiled with -ffp-contract=off: the filters' error bounds and the
// error-free transformations assume every product and sum is rounded once.
#include "attn/runtime/HullCache.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <stdexcept>

namespace attn::runtime {

namespace {

constexpr double kU = 0x1p-53; // unit roundoff of double

/// x + y = a + b exactly (Knuth's TwoSum).
inline void twoSum(double a, double b, double &x, double &y) {
  x = a + b;
  double bv = x - a;
  double av = x - bv;
  y = (a - av) + (b - bv);
}

/// x + y = a * b exactly (needs no underflow in y; see HullCache.h's range).
inline void twoProduct(double a, double b, double &x, double &y) {
  x = a * b;
  y = std::fma(a, b, -x);
}

/// Adds b to the nonoverlapping expansion h[0..len) (increasing magnitude)
/// in place, dropping zero components (Shewchuk's GROW-EXPANSION-ZEROELIM);
/// returns the new length. h must have room for len + 1 components.
inline int growExpansion(double *h, int len, double b) {
  double q = b;
  int k = 0;
  for (int i = 0; i < len; ++i) {
    double sum, err;
    twoSum(q, h[i], sum, err);
    q = sum;
    if (err != 0)
      h[k++] = err;
  }
  if (q != 0 || k == 0)
    h[k++] = q;
  return k;
}

/// The exact sign of sum_i a[i] * b[i], i < n (n <= 6).
int exactSignOfDot(const double *a, const double *b, int n) {
  double h[13];
  int len = 0;
  for (int i = 0; i < n; ++i) {
    double p, e;
    twoProduct(a[i], b[i], p, e);
    len = growExpansion(h, len, e);
    len = growExpansion(h, len, p);
  }
  double top = h[len - 1];
  return (top > 0) - (top < 0);
}

inline int signOf(double x) { return (x > 0) - (x < 0); }

void checkFinite(double x, double y, const char *what) {
  if (!std::isfinite(x) || !std::isfinite(y))
    throw std::invalid_argument(std::string("HullCache: non-finite ") + what);
}

} // namespace

namespace hull {

int orient2d(double ax, double ay, double bx, double by, double cx,
             double cy) {
  // Shewchuk's stage-A filter; below 2^-900 products of differences may have
  // underflowed, so the exact path decides.
  double detLeft = (ax - cx) * (by - cy);
  double detRight = (ay - cy) * (bx - cx);
  double det = detLeft - detRight;
  double detSum = std::fabs(detLeft) + std::fabs(detRight);
  constexpr double kBoundA = (3.0 + 16.0 * kU) * kU;
  if (detSum > 0x1p-900 && std::fabs(det) > kBoundA * detSum)
    return signOf(det);
  // det = ax*by - ax*cy - cx*by - ay*bx + ay*cx + cy*bx, exactly.
  const double a[6] = {ax, -ax, -cx, -ay, ay, cy};
  const double b[6] = {by, cy, by, bx, cx, bx};
  return exactSignOfDot(a, b, 6);
}

int compareScores(double qx, double qy, double ax, double ay, double bx,
                  double by) {
  double a1 = qx * ax, a2 = qy * ay, b1 = qx * bx, b2 = qy * by;
  double t = std::fabs(a1) + std::fabs(a2) + std::fabs(b1) + std::fabs(b2);
  if (t == 0)
    return 0; // every product is exactly zero (inputs in range)
  // |(a1+a2) - (b1+b2) - (q·a - q·b)| <= (2u + u²) · sum |products|.
  double d = (a1 + a2) - (b1 + b2);
  if (std::fabs(d) > 4 * kU * t)
    return signOf(d);
  const double l[4] = {qx, qy, -qx, -qy};
  const double r[4] = {ax, ay, bx, by};
  return exactSignOfDot(l, r, 4);
}

double score(double qx, double qy, double kx, double ky) {
  return qx * kx + qy * ky;
}

} // namespace hull

// --- the chain: a B+-tree of hull vertices ordered by x -----------------------
//
// Leaves hold up to kLeafCap vertex records and are linked in x order; inner
// nodes hold, for each child, the first and last vertex of its subtree. That
// is enough both to find a position by x and to find the maximizer of q·v:
// along an upper hull q·v rises strictly, peaks (at a vertex or an edge) and
// falls strictly, so "does the edge from child c's last vertex to child
// c+1's first vertex go up?" is monotone in c. Nodes are split on insertion
// and freed when empty (never merged), so the height stays O(log of the
// number of insertions).
//
// A vertex record is (x, y), then a Head describing the vertex's own keys
// inline — their smallest and largest j — and, for dv <= kInlineDv, the
// value of the largest j: 56 bytes for dv = 2. So a `latest` query reads
// nothing but the nodes on its path, and a vertex that holds a single key
// (every vertex of a parabola memory written once per address) needs no
// other storage. The count and compensated sums (for `average`) of a vertex
// with two or more keys, and every edge group, live in the group pool
// (HullCache::group). The tree's height is tracked, so a search knows when
// the next node is a leaf and prefetches the whole node (an inner node's
// 32 summaries, a leaf's records) before reading any of it: one memory
// round trip a level even when nothing is in cache.

namespace hull_detail {

constexpr int kLeafCap = 16;
constexpr int kInnerCap = 32;
/// Values of at most this many doubles are copied into the leaf payloads.
constexpr int kInlineDv = 4;

/// The payload of a vertex (followed by the latest value when inline).
struct Head {
  double minJ, maxJ; // the smallest and largest j of the keys at the vertex
  int32_t sums;      // pool group of the vertex's keys when >= 2, else -1
  int32_t edge;      // pool group of the keys strictly inside the edge to
                     // the next vertex, or -1
};

struct Inner;
struct Node {
  bool leaf;
  int n = 0;
  Inner *parent = nullptr;
  explicit Node(bool isLeaf) : leaf(isLeaf) {}
};
struct alignas(64) Leaf : Node {
  Leaf() : Node(true) {}
  Leaf *prev = nullptr, *next = nullptr;
  // The records (Chain::stride_ bytes each: x, y, Head, the inline value)
  // follow the struct.
  char *recs() { return reinterpret_cast<char *>(this + 1); }
  const char *recs() const { return reinterpret_cast<const char *>(this + 1); }
};
struct Summary {
  double fx, fy, lx, ly; // first and last vertex of a subtree
};
struct alignas(64) Inner : Node {
  Inner() : Node(false) {}
  Summary s[kInnerCap];
  Node *child[kInnerCap];
};

inline void prefetchBytes(const void *p, std::size_t bytes) {
  const char *c = static_cast<const char *>(p);
  for (std::size_t o = 0; o < bytes; o += 64)
    __builtin_prefetch(c + o);
}

/// q·b > q·a, exactly. The filter decides all but near-ties; its outcome is
/// used without a branch by the searches below.
inline bool rises(double qx, double qy, double ax, double ay, double bx,
                  double by) {
  double a1 = qx * ax, a2 = qy * ay, b1 = qx * bx, b2 = qy * by;
  double t = std::fabs(a1) + std::fabs(a2) + std::fabs(b1) + std::fabs(b2);
  double d = (b1 + b2) - (a1 + a2);
  if (__builtin_expect(!(std::fabs(d) > 4 * kU * t), 0))
    return hull::compareScores(qx, qy, bx, by, ax, ay) > 0;
  return d > 0;
}

/// The number of i in [0, m) with pred(i), for a pred that is true then
/// false; a binary search whose steps compile to conditional moves.
template <class Pred> inline int countTrue(int m, Pred pred) {
  if (m <= 0)
    return 0;
  int base = 0;
  while (m > 1) {
    int half = m / 2;
    base = pred(base + half) ? base + half : base;
    m -= half;
  }
  return base + (pred(base) ? 1 : 0);
}

} // namespace hull_detail

using namespace hull_detail;

class HullCache::Chain {
public:
  /// A record position; leaf == nullptr is the end.
  struct Pos {
    Leaf *leaf = nullptr;
    int i = 0;
    bool end() const { return leaf == nullptr; }
  };

  explicit Chain(int dv)
      : inlineValue_(dv <= kInlineDv),
        stride_(2 * sizeof(double) + sizeof(Head) +
                (dv <= kInlineDv ? sizeof(double) * std::size_t(dv) : 0)) {
    reset();
  }
  ~Chain() { destroy(root_); }
  Chain(const Chain &) = delete;
  Chain &operator=(const Chain &) = delete;

  std::size_t size() const { return size_; }
  void clear() {
    destroy(root_);
    reset();
  }
  /// Whether payloads carry the value of their largest j.
  bool inlineValue() const { return inlineValue_; }

  double *rec(const Leaf *lf, int i) const {
    return reinterpret_cast<double *>(const_cast<char *>(lf->recs()) +
                                      std::size_t(i) * stride_);
  }
  double x(Pos p) const { return rec(p.leaf, p.i)[0]; }
  double y(Pos p) const { return rec(p.leaf, p.i)[1]; }
  Head &head(Pos p) const {
    return *reinterpret_cast<Head *>(rec(p.leaf, p.i) + 2);
  }
  /// The value of head(p).maxJ (inlineValue() only).
  double *value(Pos p) const {
    return reinterpret_cast<double *>(&head(p) + 1);
  }

  /// Whether a record precedes p (p may be the end).
  bool hasPrev(Pos p) const {
    return size_ > 0 && !(p.leaf == first_ && p.i == 0);
  }
  Pos next(Pos p) const {
    if (++p.i < p.leaf->n)
      return p;
    return Pos{p.leaf->next, 0};
  }
  /// The record before p (p == end: the last record); p must not be begin.
  Pos prev(Pos p) const {
    if (p.end())
      return Pos{last_, last_->n - 1};
    if (p.i > 0)
      return Pos{p.leaf, p.i - 1};
    return Pos{p.leaf->prev, p.leaf->prev->n - 1};
  }
  Pos last() const { return Pos{last_, last_->n - 1}; }

  /// The first record with x' >= x (or the end).
  Pos lowerBound(double x) const {
    const Node *nd = root_;
    for (int level = height_; level > 0; --level) {
      auto *in = static_cast<const Inner *>(nd);
      // The last child with fx < x, else 0 (fx increases with c).
      int c = countTrue(in->n - 1, [&](int k) { return in->s[k + 1].fx < x; });
      nd = in->child[c];
      prefetchNode(nd, level == 1);
    }
    auto *lf = const_cast<Leaf *>(static_cast<const Leaf *>(nd));
    int i = countTrue(lf->n, [&](int k) { return rec(lf, k)[0] < x; });
    if (i < lf->n)
      return Pos{lf, i};
    return Pos{lf->next, 0};
  }

  /// The first vertex v of a non-empty chain whose next vertex does not
  /// score strictly higher under q (qy > 0): the maximizer, or the first of
  /// the two ends of the maximizing edge.
  Pos peak(double qx, double qy) const {
    const Node *nd = root_;
    for (int level = height_; level > 0; --level) {
      auto *in = static_cast<const Inner *>(nd);
      int c = countTrue(in->n - 1, [&](int k) {
        return rises(qx, qy, in->s[k].lx, in->s[k].ly, in->s[k + 1].fx,
                     in->s[k + 1].fy);
      });
      nd = in->child[c];
      prefetchNode(nd, level == 1);
    }
    auto *lf = const_cast<Leaf *>(static_cast<const Leaf *>(nd));
    int i = countTrue(lf->n - 1, [&](int k) {
      const double *a = rec(lf, k), *b = rec(lf, k + 1);
      return rises(qx, qy, a[0], a[1], b[0], b[1]);
    });
    return Pos{lf, i};
  }

  /// Inserts vertex (x, y) with `pay` (a Head, then the inline value)
  /// before p (p may be the end); positions are invalidated.
  void insert(Pos p, double x, double y, const void *pay) {
    Leaf *lf = p.end() ? last_ : p.leaf;
    int i = p.end() ? lf->n : p.i;
    bool refresh = i == 0 || i == lf->n;
    if (lf->n == kLeafCap) {
      Leaf *nl = newLeaf();
      int h = kLeafCap / 2;
      move(nl, 0, lf, h, kLeafCap - h);
      nl->n = kLeafCap - h;
      lf->n = h;
      nl->next = lf->next;
      nl->prev = lf;
      if (lf->next)
        lf->next->prev = nl;
      else
        last_ = nl;
      lf->next = nl;
      addSibling(lf, nl);
      refreshUp(lf); // lf lost its second half
      if (i > h) {
        lf = nl;
        i -= h;
      }
      refresh = true;
    }
    move(lf, i + 1, lf, i, lf->n - i);
    double *r = rec(lf, i);
    r[0] = x;
    r[1] = y;
    std::memcpy(r + 2, pay, stride_ - 2 * sizeof(double));
    ++lf->n;
    ++size_;
    if (refresh)
      refreshUp(lf);
  }

  /// Erases the record at p; returns the position of the record after it.
  Pos erase(Pos p) {
    Leaf *lf = p.leaf;
    move(lf, p.i, lf, p.i + 1, lf->n - p.i - 1);
    --lf->n;
    --size_;
    if (lf->n > 0) {
      if (p.i == 0 || p.i == lf->n)
        refreshUp(lf);
      return p.i < lf->n ? p : Pos{lf->next, 0};
    }
    if (lf == root_)
      return Pos{};
    Leaf *after = lf->next;
    (lf->prev ? lf->prev->next : first_) = lf->next;
    (lf->next ? lf->next->prev : last_) = lf->prev;
    removeChild(lf);
    freeLeaf(lf);
    return Pos{after, 0};
  }

private:
  /// Moves records [si, si + count) of s to [di, di + count) of d (the
  /// ranges may overlap).
  void move(Leaf *d, int di, Leaf *s, int si, int count) {
    if (count <= 0)
      return;
    std::memmove(rec(d, di), rec(s, si), stride_ * std::size_t(count));
  }
  Leaf *newLeaf() const {
    void *mem = ::operator new(sizeof(Leaf) + kLeafCap * stride_,
                               std::align_val_t(alignof(Leaf)));
    return new (mem) Leaf;
  }
  static void freeLeaf(Leaf *lf) {
    lf->~Leaf();
    ::operator delete(lf, std::align_val_t(alignof(Leaf)));
  }

  /// Prefetches a whole node (without reading it: its header would be a
  /// cache miss of its own before the prefetches could start).
  void prefetchNode(const Node *nd, bool isLeaf) const {
    prefetchBytes(nd, isLeaf ? sizeof(Leaf) + kLeafCap * stride_
                             : sizeof(Inner));
  }

  // Out of line: inlined into a call on a Leaf, GCC warns about the Inner
  // branch (-Warray-bounds).
  __attribute__((noinline)) Summary summarize(const Node *nd) const {
    if (nd->leaf) {
      auto *lf = static_cast<const Leaf *>(nd);
      const double *r = rec(lf, 0), *l = rec(lf, lf->n - 1);
      return {r[0], r[1], l[0], l[1]};
    }
    auto *in = static_cast<const Inner *>(nd);
    return {in->s[0].fx, in->s[0].fy, in->s[in->n - 1].lx,
            in->s[in->n - 1].ly};
  }
  static int indexOf(const Inner *p, const Node *child) {
    int c = 0;
    while (p->child[c] != child)
      ++c;
    return c;
  }
  /// Updates the summaries of nd's ancestors after nd's first or last
  /// vertex may have changed.
  void refreshUp(Node *nd) const {
    while (nd->parent) {
      Inner *p = nd->parent;
      int c = indexOf(p, nd);
      p->s[c] = summarize(nd);
      if (c != 0 && c != p->n - 1)
        return;
      nd = p;
    }
  }

  /// Puts `right` just after `left` in left's parent (splitting as needed).
  void addSibling(Node *left, Node *right) {
    Inner *p = left->parent;
    if (!p) {
      p = new Inner;
      p->n = 1;
      p->child[0] = left;
      p->s[0] = summarize(left);
      left->parent = p;
      root_ = p;
      ++height_;
    }
    int c = indexOf(p, left) + 1;
    if (p->n == kInnerCap) {
      auto *np = new Inner;
      int h = kInnerCap / 2;
      std::copy(p->child + h, p->child + kInnerCap, np->child);
      std::copy(p->s + h, p->s + kInnerCap, np->s);
      np->n = kInnerCap - h;
      p->n = h;
      for (int k = 0; k < np->n; ++k)
        np->child[k]->parent = np;
      addSibling(p, np);
      refreshUp(p); // p lost its second half
      if (c > h) {
        p = np;
        c -= h;
      }
    }
    std::copy_backward(p->child + c, p->child + p->n, p->child + p->n + 1);
    std::copy_backward(p->s + c, p->s + p->n, p->s + p->n + 1);
    p->child[c] = right;
    p->s[c] = summarize(right);
    right->parent = p;
    ++p->n;
    refreshUp(p);
  }

  /// Removes an emptied node from its parent, freeing emptied ancestors.
  void removeChild(Node *nd) {
    Inner *p = nd->parent;
    int c = indexOf(p, nd);
    std::copy(p->child + c + 1, p->child + p->n, p->child + c);
    std::copy(p->s + c + 1, p->s + p->n, p->s + c);
    --p->n;
    if (p->n == 0) {
      if (p == root_) { // cannot happen while records remain
        delete p;
        reset();
        return;
      }
      removeChild(p);
      delete p;
      return;
    }
    refreshUp(p);
    while (!root_->leaf && root_->n == 1) {
      Inner *old = static_cast<Inner *>(root_);
      root_ = old->child[0];
      root_->parent = nullptr;
      --height_;
      delete old;
    }
  }

  void reset() {
    Leaf *lf = newLeaf();
    root_ = lf;
    first_ = last_ = lf;
    size_ = 0;
    height_ = 0;
  }
  static void destroy(Node *nd) {
    if (nd->leaf) {
      freeLeaf(static_cast<Leaf *>(nd));
      return;
    }
    auto *in = static_cast<Inner *>(nd);
    for (int c = 0; c < in->n; ++c)
      destroy(in->child[c]);
    delete in;
  }

  bool inlineValue_;
  std::size_t stride_; // payload bytes per vertex
  Node *root_;
  int height_; // inner levels above the leaves
  Leaf *first_, *last_;
  std::size_t size_;
};

// --- HullCache --------------------------------------------------------------

namespace {
// Pool group record layout (doubles): count, minJ, maxJ, the value sum [dv]
// and its error [dv]. The key and value of j are keys_[2j..] and
// values_[j*dv..].
enum : std::size_t { kCount, kMinJ, kMaxJ, kSum };
} // namespace

HullCache::HullCache(int dv)
    : dv_(dv), upper_(std::make_unique<Chain>(std::max(dv, 1))),
      lower_(std::make_unique<Chain>(std::max(dv, 1))),
      groupStride_(std::size_t(kSum + 2 * std::max(dv, 0))) {
  if (dv < 1)
    throw std::invalid_argument("HullCache: dv must be >= 1");
}

HullCache::~HullCache() = default;
HullCache::HullCache(HullCache &&) noexcept = default;
HullCache &HullCache::operator=(HullCache &&) noexcept = default;

std::size_t HullCache::upperHullSize() const { return upper_->size(); }
std::size_t HullCache::lowerHullSize() const { return lower_->size(); }

void HullCache::clear() {
  keys_.clear();
  values_.clear();
  upper_->clear();
  lower_->clear();
  all_ = minXGroup_ = maxXGroup_ = -1;
  groupCount_ = 0;
  freeGroups_.clear();
}

void HullCache::FreeDeleter::operator()(double *p) const { std::free(p); }

int32_t HullCache::newGroup(int64_t j, const double *value) {
  int32_t g;
  if (!freeGroups_.empty()) {
    g = freeGroups_.back();
    freeGroups_.pop_back();
  } else {
    if (groupCount_ == groupCapacity_) {
      std::size_t cap = std::max<std::size_t>(64, 2 * groupCapacity_);
      auto *mem = static_cast<double *>(
          std::malloc(cap * groupStride_ * sizeof(double)));
      if (!mem)
        throw std::bad_alloc();
      if (groupCount_)
        std::copy_n(groupData_.get(), groupCount_ * groupStride_, mem);
      groupData_.reset(mem);
      groupCapacity_ = cap;
    }
    g = static_cast<int32_t>(groupCount_++);
  }
  double *G = group(g);
  G[kCount] = 1;
  G[kMinJ] = G[kMaxJ] = static_cast<double>(j);
  double *sum = G + kSum, *err = sum + dv_;
  for (int d = 0; d < dv_; ++d) {
    sum[d] = value[d];
    err[d] = 0;
  }
  return g;
}

void HullCache::addToGroup(int32_t &g, int64_t j, const double *value) {
  if (g < 0) {
    g = newGroup(j, value);
    return;
  }
  // j is the newest key, so it becomes the group's latest.
  double *G = group(g);
  G[kCount] += 1;
  G[kMaxJ] = static_cast<double>(j);
  double *sum = G + kSum, *err = sum + dv_;
  for (int d = 0; d < dv_; ++d) {
    double t, e;
    twoSum(sum[d], value[d], t, e);
    sum[d] = t;
    err[d] += e;
  }
}

void HullCache::mergeGroup(int32_t &into, int32_t &from) {
  if (from < 0)
    return;
  if (into < 0) {
    into = from;
    from = -1;
    return;
  }
  double *I = group(into);
  const double *F = group(from);
  I[kCount] += F[kCount];
  I[kMaxJ] = std::max(I[kMaxJ], F[kMaxJ]);
  I[kMinJ] = std::min(I[kMinJ], F[kMinJ]);
  double *sum = I + kSum, *err = sum + dv_;
  const double *fsum = F + kSum, *ferr = fsum + dv_;
  for (int d = 0; d < dv_; ++d) {
    double t, e;
    twoSum(sum[d], fsum[d], t, e);
    sum[d] = t;
    err[d] += ferr[d] + e;
  }
  releaseGroup(from);
}

void HullCache::releaseGroup(int32_t &g) {
  if (g >= 0)
    freeGroups_.push_back(g);
  g = -1;
}

void HullCache::insertIntoChain(Chain &ch, double x, double y, int64_t j,
                                const double *value) {
  using Pos = Chain::Pos;
  // The pool group of the keys at vertex p (created for a single key); the
  // vertex is about to leave the chain.
  auto takeVertexKeys = [&](Pos p) {
    Head &h = ch.head(p);
    int32_t g = h.sums;
    h.sums = -1;
    if (g < 0)
      g = newGroup(static_cast<int64_t>(h.minJ),
                   values_.data() + std::size_t(h.minJ) * dv_);
    return g;
  };

  Pos it = ch.lowerBound(x);
  Pos from = it, to = it; // the vertices p replaces: [from, to)
  int removed = 0;
  if (!it.end() && ch.x(it) == x) {
    Head &e = ch.head(it);
    if (y == ch.y(it)) { // a duplicate of the vertex: j is its newest key
      if (e.sums < 0)
        e.sums = newGroup(static_cast<int64_t>(e.minJ),
                          values_.data() + std::size_t(e.minJ) * dv_);
      addToGroup(e.sums, j, value);
      e.maxJ = static_cast<double>(j);
      if (ch.inlineValue())
        std::copy_n(value, dv_, ch.value(it));
      return;
    }
    if (y < ch.y(it))
      return; // below the vertex at the same x
    // The old vertex is strictly below p, and so is its edges' inside.
    releaseGroup(e.sums);
    releaseGroup(e.edge);
    to = ch.next(it);
    removed = 1;
  } else if (!it.end() && ch.hasPrev(it)) {
    Pos l = ch.prev(it);
    int o = hull::orient2d(ch.x(l), ch.y(l), ch.x(it), ch.y(it), x, y);
    if (o < 0)
      return; // strictly inside
    if (o == 0) {
      addToGroup(ch.head(l).edge, j, value); // strictly inside the edge
      return;
    }
  }

  // p is a new vertex. Left: the edge it cuts off lies strictly below it;
  // then pop vertices that are no longer strictly convex. One that lies
  // exactly on the new edge joins its inside (with the inside of the edge
  // it ended) and stops the walk.
  if (ch.hasPrev(from)) {
    Pos l = ch.prev(from);
    releaseGroup(ch.head(l).edge);
    int32_t leftEdge = -1;
    while (ch.hasPrev(l)) {
      Pos ll = ch.prev(l);
      int o = hull::orient2d(ch.x(ll), ch.y(ll), ch.x(l), ch.y(l), x, y);
      if (o < 0)
        break;
      if (o == 0) {
        mergeGroup(leftEdge, ch.head(ll).edge);
        int32_t keys = takeVertexKeys(l);
        mergeGroup(leftEdge, keys);
      } else {
        releaseGroup(ch.head(ll).edge);
        releaseGroup(ch.head(l).sums);
      }
      from = l;
      ++removed;
      l = ll;
      if (o == 0)
        break;
    }
    ch.head(l).edge = leftEdge;
  }
  // Right, the same way.
  int32_t rightEdge = -1;
  if (!to.end()) {
    Pos r = to;
    for (Pos rr = ch.next(r); !rr.end(); r = rr, rr = ch.next(r)) {
      int o = hull::orient2d(x, y, ch.x(r), ch.y(r), ch.x(rr), ch.y(rr));
      if (o < 0)
        break;
      if (o == 0) {
        int32_t keys = takeVertexKeys(r);
        mergeGroup(rightEdge, keys);
        mergeGroup(rightEdge, ch.head(r).edge);
      } else {
        releaseGroup(ch.head(r).sums);
        releaseGroup(ch.head(r).edge);
      }
      ++removed;
      if (o == 0)
        break;
    }
  }
  Pos pos = from;
  for (int k = 0; k < removed; ++k)
    pos = ch.erase(pos);
  alignas(8) char pay[sizeof(Head) + sizeof(double) * kInlineDv];
  Head h{static_cast<double>(j), static_cast<double>(j), -1, rightEdge};
  std::memcpy(pay, &h, sizeof h);
  if (ch.inlineValue())
    std::memcpy(pay + sizeof h, value, sizeof(double) * std::size_t(dv_));
  ch.insert(pos, x, y, pay);
}

void HullCache::append(double kx, double ky, const double *value) {
  checkFinite(kx, ky, "key");
  int64_t j = static_cast<int64_t>(size());
  keys_.push_back(kx);
  keys_.push_back(ky);
  std::size_t at = values_.size();
  if (!values_.empty() && value >= values_.data() &&
      value < values_.data() + at) {
    std::size_t from = std::size_t(value - values_.data()); // aliasing
    values_.resize(at + dv_);
    std::copy_n(values_.data() + from, dv_, values_.data() + at);
  } else {
    values_.insert(values_.end(), value, value + dv_);
  }
  const double *v = &values_[std::size_t(j) * dv_]; // stable copy

  if (j == 0) {
    minX_ = maxX_ = kx;
  } else {
    if (kx > maxX_) {
      releaseGroup(maxXGroup_);
      maxX_ = kx;
    }
    if (kx < minX_) {
      releaseGroup(minXGroup_);
      minX_ = kx;
    }
  }
  if (kx == maxX_)
    addToGroup(maxXGroup_, j, v);
  if (kx == minX_)
    addToGroup(minXGroup_, j, v);
  addToGroup(all_, j, v);
  insertIntoChain(*upper_, kx, ky, j, v);
  insertIntoChain(*lower_, kx, -ky, j, v);
}

void HullCache::query(double qx, double qy, TieRule ties, double *out,
                      double *maxScore) const {
  checkFinite(qx, qy, "query");
  if (empty()) {
    std::fill(out, out + dv_, 0.0);
    if (maxScore)
      *maxScore = -std::numeric_limits<double>::infinity();
    return;
  }
  // The tie set: one to three groups, each a vertex's keys or a pool group.
  struct Tied {
    double minJ, maxJ;
    int32_t pool;         // the pool group with the count and sums, or -1:
                          // a single key, whose value is `latest`
    const double *latest; // the value of maxJ
    double kx, ky;        // the key of maxJ
  };
  Tied g[3];
  int n = 0;
  auto poolGroup = [&](int32_t id) {
    const double *G = group(id);
    std::size_t maxJ = static_cast<std::size_t>(G[kMaxJ]);
    g[n++] = Tied{G[kMinJ],        G[kMaxJ],         id,
                  values_.data() + maxJ * dv_, keys_[2 * maxJ],
                  keys_[2 * maxJ + 1]};
  };
  if (qy != 0) {
    const Chain &ch = qy > 0 ? *upper_ : *lower_;
    const double cy = std::fabs(qy), sy = qy > 0 ? 1.0 : -1.0;
    auto vertex = [&](Chain::Pos p) {
      const Head &h = ch.head(p);
      const double *latest =
          ch.inlineValue()
              ? ch.value(p)
              : values_.data() + static_cast<std::size_t>(h.maxJ) * dv_;
      g[n++] = Tied{h.minJ, h.maxJ, h.sums, latest, ch.x(p), sy * ch.y(p)};
    };
    Chain::Pos p = ch.peak(qx, cy);
    vertex(p);
    Chain::Pos nx = ch.next(p);
    if (!nx.end() &&
        hull::compareScores(qx, cy, ch.x(p), ch.y(p), ch.x(nx), ch.y(nx)) ==
            0) {
      if (ch.head(p).edge >= 0)
        poolGroup(ch.head(p).edge);
      vertex(nx);
    }
  } else {
    poolGroup(qx > 0 ? maxXGroup_ : qx < 0 ? minXGroup_ : all_);
  }

  const Tied *latest = &g[0], *first = &g[0];
  for (int k = 1; k < n; ++k) {
    if (g[k].maxJ > latest->maxJ)
      latest = &g[k];
    if (g[k].minJ < first->minJ)
      first = &g[k];
  }
  switch (ties) {
  case TieRule::Latest:
    std::copy_n(latest->latest, dv_, out);
    break;
  case TieRule::First:
    std::copy_n(values_.data() + static_cast<std::size_t>(first->minJ) * dv_,
                dv_, out);
    break;
  case TieRule::Average: {
    double count = 0;
    for (int k = 0; k < n; ++k)
      count += g[k].pool >= 0 ? group(g[k].pool)[kCount] : 1.0;
    for (int d = 0; d < dv_; ++d) {
      double sum = 0, err = 0;
      for (int k = 0; k < n; ++k) {
        const double *G = g[k].pool >= 0 ? group(g[k].pool) : nullptr;
        double t, e;
        twoSum(sum, G ? G[kSum + d] : g[k].latest[d], t, e);
        sum = t;
        err += (G ? G[kSum + dv_ + d] : 0.0) + e;
      }
      out[d] = (sum + err) / count;
    }
    break;
  }
  }
  if (maxScore)
    *maxScore = hull::score(qx, qy, latest->kx, latest->ky);
}

// --- scan -------------------------------------------------------------------

void scanQuery(const double *keys, const double *values, std::size_t n,
               int dv, double qx, double qy, TieRule ties, double *out,
               double *maxScore) {
  checkFinite(qx, qy, "query");
  if (n == 0) {
    std::fill(out, out + dv, 0.0);
    if (maxScore)
      *maxScore = -std::numeric_limits<double>::infinity();
    return;
  }
  const bool average = ties == TieRule::Average;
  std::vector<double> acc(average ? 2 * dv : 0);
  auto reset = [&](std::size_t j) {
    for (int d = 0; d < dv && average; ++d) {
      acc[d] = values[j * dv + d];
      acc[dv + d] = 0;
    }
  };
  auto add = [&](std::size_t j) {
    for (int d = 0; d < dv && average; ++d) {
      double sum, err;
      twoSum(acc[d], values[j * dv + d], sum, err);
      acc[d] = sum;
      acc[dv + d] += err;
    }
  };

  std::size_t best = 0, first = 0, latest = 0;
  int64_t count = 1;
  double bestP1 = qx * keys[0], bestP2 = qy * keys[1];
  double bestS = bestP1 + bestP2;
  double bestT = std::fabs(bestP1) + std::fabs(bestP2);
  reset(0);
  for (std::size_t j = 1; j < n; ++j) {
    double p1 = qx * keys[2 * j], p2 = qy * keys[2 * j + 1];
    double s = p1 + p2;
    double t = std::fabs(p1) + std::fabs(p2) + bestT;
    double d = s - bestS;
    int c;
    if (std::fabs(d) > 4 * kU * t) // the filter of hull::compareScores
      c = signOf(d);
    else if (t == 0)
      c = 0;
    else
      c = hull::compareScores(qx, qy, keys[2 * j], keys[2 * j + 1],
                              keys[2 * best], keys[2 * best + 1]);
    if (c > 0) {
      best = first = latest = j;
      count = 1;
      bestS = s;
      bestT = std::fabs(p1) + std::fabs(p2);
      reset(j);
    } else if (c == 0) {
      latest = j;
      ++count;
      add(j);
    }
  }
  switch (ties) {
  case TieRule::Latest:
    std::copy_n(values + latest * dv, dv, out);
    break;
  case TieRule::First:
    std::copy_n(values + first * dv, dv, out);
    break;
  case TieRule::Average:
    for (int d = 0; d < dv; ++d)
      out[d] = (acc[d] + acc[dv + d]) / static_cast<double>(count);
    break;
  }
  if (maxScore)
    *maxScore = hull::score(qx, qy, keys[2 * latest], keys[2 * latest + 1]);
}

} // namespace attn::runtime
