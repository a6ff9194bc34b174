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
#include <iterator>
#include <limits>
#include <new>
#include <stdexcept>

namespace attn::runtime {

namespace {

constexpr double kU = 0x1p-53; // unit roundoff of double

// Group record layout (doubles): count, minJ, maxJ, latest key x, y, the
// latest value [dv], the first value [dv], the value sum [dv], its error [dv].
enum : std::size_t { kCount, kMinJ, kMaxJ, kKeyX, kKeyY, kLatest };

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
// number of insertions). Each level is a few contiguous cache lines, which
// is what makes queries on a million-vertex hull fast.

namespace hull_detail {

constexpr int kLeafCap = 64;
constexpr int kInnerCap = 32;

struct Rec {
  double x, y;
  int32_t self; // the keys at exactly (x, y)
  int32_t edge; // the keys strictly inside the edge to the next vertex
};
struct Inner;
struct Node {
  bool leaf;
  int n = 0;
  Inner *parent = nullptr;
  explicit Node(bool isLeaf) : leaf(isLeaf) {}
};
struct Leaf : Node {
  Leaf() : Node(true) {}
  Leaf *prev = nullptr, *next = nullptr;
  Rec r[kLeafCap];
};
struct Summary {
  double fx, fy, lx, ly; // first and last vertex of a subtree
};
struct Inner : Node {
  Inner() : Node(false) {}
  Node *child[kInnerCap];
  Summary s[kInnerCap];
};

inline void prefetchBytes(const void *p, std::size_t bytes) {
  const char *c = static_cast<const char *>(p);
  for (std::size_t o = 0; o < bytes; o += 64)
    __builtin_prefetch(c + o);
}

/// q·b > q·a, exactly.
inline bool rises(double qx, double qy, double ax, double ay, double bx,
                  double by) {
  double a1 = qx * ax, a2 = qy * ay, b1 = qx * bx, b2 = qy * by;
  double t = std::fabs(a1) + std::fabs(a2) + std::fabs(b1) + std::fabs(b2);
  double d = (b1 + b2) - (a1 + a2);
  if (std::fabs(d) > 4 * kU * t)
    return d > 0;
  return hull::compareScores(qx, qy, bx, by, ax, ay) > 0;
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

  Chain() { reset(); }
  ~Chain() { destroy(root_); }
  Chain(const Chain &) = delete;
  Chain &operator=(const Chain &) = delete;

  std::size_t size() const { return size_; }
  void clear() {
    destroy(root_);
    reset();
  }

  Rec &at(Pos p) const { return p.leaf->r[p.i]; }
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

  /// The first record with x' >= x (or the end).
  Pos lowerBound(double x) const {
    const Node *nd = root_;
    while (!nd->leaf) {
      auto *in = static_cast<const Inner *>(nd);
      int lo = 0, hi = in->n - 1; // the last child with fx < x, else 0
      while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (in->s[mid].fx < x)
          lo = mid;
        else
          hi = mid - 1;
      }
      nd = in->child[lo];
      prefetchNode(nd);
    }
    auto *lf = const_cast<Leaf *>(static_cast<const Leaf *>(nd));
    int lo = 0, hi = lf->n; // the first i with r[i].x >= x
    while (lo < hi) {
      int mid = (lo + hi) / 2;
      if (lf->r[mid].x < x)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < lf->n)
      return Pos{lf, lo};
    return Pos{lf->next, 0};
  }

  /// The first vertex v of a non-empty chain whose next vertex does not
  /// score strictly higher under q (qy > 0): the maximizer, or the first of
  /// the two ends of the maximizing edge.
  Pos peak(double qx, double qy) const {
    const Node *nd = root_;
    while (!nd->leaf) {
      auto *in = static_cast<const Inner *>(nd);
      int lo = 0, hi = in->n - 1;
      while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (rises(qx, qy, in->s[mid].lx, in->s[mid].ly, in->s[mid + 1].fx,
                  in->s[mid + 1].fy))
          lo = mid + 1;
        else
          hi = mid;
      }
      nd = in->child[lo];
      prefetchNode(nd);
    }
    auto *lf = const_cast<Leaf *>(static_cast<const Leaf *>(nd));
    int lo = 0, hi = lf->n - 1;
    while (lo < hi) {
      int mid = (lo + hi) / 2;
      if (rises(qx, qy, lf->r[mid].x, lf->r[mid].y, lf->r[mid + 1].x,
                lf->r[mid + 1].y))
        lo = mid + 1;
      else
        hi = mid;
    }
    return Pos{lf, lo};
  }

  /// Inserts rec before p (p may be the end); positions are invalidated.
  void insert(Pos p, const Rec &rec) {
    Leaf *lf = p.end() ? last_ : p.leaf;
    int i = p.end() ? lf->n : p.i;
    if (lf->n == kLeafCap) {
      auto *nl = new Leaf;
      int h = kLeafCap / 2;
      std::copy(lf->r + h, lf->r + kLeafCap, nl->r);
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
    }
    std::copy_backward(lf->r + i, lf->r + lf->n, lf->r + lf->n + 1);
    lf->r[i] = rec;
    ++lf->n;
    ++size_;
    refreshUp(lf);
  }

  /// Erases the record at p; returns the position of the record after it.
  Pos erase(Pos p) {
    Leaf *lf = p.leaf;
    std::copy(lf->r + p.i + 1, lf->r + lf->n, lf->r + p.i);
    --lf->n;
    --size_;
    if (lf->n > 0) {
      refreshUp(lf);
      return p.i < lf->n ? p : Pos{lf->next, 0};
    }
    if (lf == root_)
      return Pos{};
    Leaf *after = lf->next;
    (lf->prev ? lf->prev->next : first_) = lf->next;
    (lf->next ? lf->next->prev : last_) = lf->prev;
    removeChild(lf);
    delete lf;
    return Pos{after, 0};
  }

private:
  static void prefetchNode(const Node *nd) {
    if (nd->leaf)
      prefetchBytes(static_cast<const Leaf *>(nd)->r,
                    sizeof(Rec) * static_cast<std::size_t>(nd->n));
    else
      prefetchBytes(nd, sizeof(Inner));
  }

  // Out of line: inlined into a call on a Leaf, GCC warns about the Inner
  // branch (-Warray-bounds).
  __attribute__((noinline)) static Summary summarize(const Node *nd) {
    if (nd->leaf) {
      auto *lf = static_cast<const Leaf *>(nd);
      return {lf->r[0].x, lf->r[0].y, lf->r[lf->n - 1].x, lf->r[lf->n - 1].y};
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
  static void refreshUp(Node *nd) {
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
      delete old;
    }
  }

  void reset() {
    auto *lf = new Leaf;
    root_ = lf;
    first_ = last_ = lf;
    size_ = 0;
  }
  static void destroy(Node *nd) {
    if (nd->leaf) {
      delete static_cast<Leaf *>(nd);
      return;
    }
    auto *in = static_cast<Inner *>(nd);
    for (int c = 0; c < in->n; ++c)
      destroy(in->child[c]);
    delete in;
  }

  Node *root_;
  Leaf *first_, *last_;
  std::size_t size_;
};

// --- HullCache --------------------------------------------------------------

HullCache::HullCache(int dv)
    : dv_(dv), upper_(std::make_unique<Chain>()),
      lower_(std::make_unique<Chain>()),
      groupStride_((std::size_t(kLatest + 4 * std::max(dv, 0)) + 7) / 8 * 8) {
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
          std::aligned_alloc(64, cap * groupStride_ * sizeof(double)));
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
  G[kKeyX] = keys_[2 * j];
  G[kKeyY] = keys_[2 * j + 1];
  double *latest = G + kLatest, *first = latest + dv_, *sum = first + dv_,
         *err = sum + dv_;
  for (int d = 0; d < dv_; ++d) {
    latest[d] = first[d] = sum[d] = value[d];
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
  G[kKeyX] = keys_[2 * j];
  G[kKeyY] = keys_[2 * j + 1];
  double *latest = G + kLatest, *sum = latest + 2 * dv_, *err = sum + dv_;
  for (int d = 0; d < dv_; ++d) {
    latest[d] = value[d];
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
  if (F[kMaxJ] > I[kMaxJ]) {
    I[kMaxJ] = F[kMaxJ];
    I[kKeyX] = F[kKeyX];
    I[kKeyY] = F[kKeyY];
    std::copy_n(F + kLatest, dv_, I + kLatest);
  }
  if (F[kMinJ] < I[kMinJ]) {
    I[kMinJ] = F[kMinJ];
    std::copy_n(F + kLatest + dv_, dv_, I + kLatest + dv_);
  }
  double *sum = I + kLatest + 2 * dv_, *err = sum + dv_;
  const double *fsum = F + kLatest + 2 * dv_, *ferr = fsum + dv_;
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
  Pos it = ch.lowerBound(x);
  Pos from = it, to = it; // the vertices p replaces: [from, to)
  int removed = 0;
  if (!it.end() && ch.at(it).x == x) {
    Rec &e = ch.at(it);
    if (y == e.y) {
      addToGroup(e.self, j, value);
      return;
    }
    if (y < e.y)
      return; // below the vertex at the same x
    // The old vertex is strictly below p, and so is its edges' inside.
    releaseGroup(e.self);
    releaseGroup(e.edge);
    to = ch.next(it);
    removed = 1;
  } else if (!it.end() && ch.hasPrev(it)) {
    Rec &l = ch.at(ch.prev(it));
    const Rec &r = ch.at(it);
    int o = hull::orient2d(l.x, l.y, r.x, r.y, x, y);
    if (o < 0)
      return; // strictly inside
    if (o == 0) {
      addToGroup(l.edge, j, value); // strictly inside the edge (l, r)
      return;
    }
  }

  // p is a new vertex. Left: the edge it cuts off lies strictly below it;
  // then pop vertices that are no longer strictly convex. One that lies
  // exactly on the new edge joins its inside (with the inside of the edge
  // it ended) and stops the walk.
  if (ch.hasPrev(from)) {
    Pos l = ch.prev(from);
    releaseGroup(ch.at(l).edge);
    int32_t leftEdge = -1;
    while (ch.hasPrev(l)) {
      Pos ll = ch.prev(l);
      Rec &L = ch.at(l), &LL = ch.at(ll);
      int o = hull::orient2d(LL.x, LL.y, L.x, L.y, x, y);
      if (o < 0)
        break;
      if (o == 0)
        mergeGroup(leftEdge, LL.edge), mergeGroup(leftEdge, L.self);
      else
        releaseGroup(LL.edge), releaseGroup(L.self);
      from = l;
      ++removed;
      l = ll;
      if (o == 0)
        break;
    }
    ch.at(l).edge = leftEdge;
  }
  // Right, the same way.
  int32_t rightEdge = -1;
  if (!to.end()) {
    Pos r = to;
    for (Pos rr = ch.next(r); !rr.end(); r = rr, rr = ch.next(r)) {
      Rec &R = ch.at(r), &RR = ch.at(rr);
      int o = hull::orient2d(x, y, R.x, R.y, RR.x, RR.y);
      if (o < 0)
        break;
      if (o == 0)
        mergeGroup(rightEdge, R.self), mergeGroup(rightEdge, R.edge);
      else
        releaseGroup(R.self), releaseGroup(R.edge);
      ++removed;
      if (o == 0)
        break;
    }
  }
  Pos pos = from;
  for (int k = 0; k < removed; ++k)
    pos = ch.erase(pos);
  ch.insert(pos, Rec{x, y, newGroup(j, value), rightEdge});
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

int HullCache::chainTies(const Chain &ch, double qx, double qy,
                         int32_t groups[3]) const {
  Chain::Pos p = ch.peak(qx, qy);
  const Rec &v = ch.at(p);
  groups[0] = v.self;
  Chain::Pos nx = ch.next(p);
  if (!nx.end()) {
    const Rec &w = ch.at(nx);
    if (hull::compareScores(qx, qy, v.x, v.y, w.x, w.y) == 0) {
      groups[1] = v.edge;
      groups[2] = w.self;
      return 3;
    }
  }
  return 1;
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
  int32_t groups[3];
  int n = 1;
  if (qy > 0)
    n = chainTies(*upper_, qx, qy, groups);
  else if (qy < 0)
    n = chainTies(*lower_, qx, -qy, groups);
  else if (qx > 0)
    groups[0] = maxXGroup_;
  else if (qx < 0)
    groups[0] = minXGroup_;
  else
    groups[0] = all_;

  const double *latest = nullptr, *first = nullptr;
  double count = 0;
  for (int g = 0; g < n; ++g) {
    if (groups[g] < 0)
      continue;
    const double *G = group(groups[g]);
    if (!latest || G[kMaxJ] > latest[kMaxJ])
      latest = G;
    if (!first || G[kMinJ] < first[kMinJ])
      first = G;
    count += G[kCount];
  }
  switch (ties) {
  case TieRule::Latest:
    std::copy_n(latest + kLatest, dv_, out);
    break;
  case TieRule::First:
    std::copy_n(first + kLatest + dv_, dv_, out);
    break;
  case TieRule::Average:
    for (int d = 0; d < dv_; ++d) {
      double sum = 0, err = 0;
      for (int g = 0; g < n; ++g) {
        if (groups[g] < 0)
          continue;
        const double *s = group(groups[g]) + kLatest + 2 * dv_;
        double t, e;
        twoSum(sum, s[d], t, e);
        sum = t;
        err += s[dv_ + d] + e;
      }
      out[d] = (sum + err) / count;
    }
    break;
  }
  if (maxScore)
    *maxScore = hull::score(qx, qy, latest[kKeyX], latest[kKeyY]);
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
