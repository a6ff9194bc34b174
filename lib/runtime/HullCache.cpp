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
#include <vector>

#include <sys/mman.h>

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

/// Adds v[0..dv) to the compensated sums (sum, err) of a tie group.
inline void addCompensated(double *sum, double *err, const double *v, int dv) {
  for (int d = 0; d < dv; ++d) {
    double t, e;
    twoSum(sum[d], v[d], t, e);
    sum[d] = t;
    err[d] += e;
  }
}

/// The average of a group from its compensated sums: out = (sum + err) /
/// count (out may be sum).
inline void finishAverage(const double *sum, const double *err, double count,
                          int dv, double *out) {
  for (int d = 0; d < dv; ++d)
    out[d] = (sum[d] + err[d]) / count;
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

/// The sign of q·a - q·b from the expansion arithmetic (the filter could
/// not decide); kept out of line so that the filter inlines small.
__attribute__((noinline)) int exactCompareScores(double qx, double qy,
                                                 double ax, double ay,
                                                 double bx, double by) {
  const double l[4] = {qx, qy, -qx, -qy};
  const double r[4] = {ax, ay, bx, by};
  return exactSignOfDot(l, r, 4);
}

/// hull::compareScores, for inlining into the searches.
inline int compareScoresInline(double qx, double qy, double ax, double ay,
                               double bx, double by) {
  double a1 = qx * ax, a2 = qy * ay, b1 = qx * bx, b2 = qy * by;
  double t = std::fabs(a1) + std::fabs(a2) + std::fabs(b1) + std::fabs(b2);
  if (t == 0)
    return 0; // every product is exactly zero (inputs in range)
  // |(a1+a2) - (b1+b2) - (q·a - q·b)| <= (2u + u²) · sum |products|.
  double d = (a1 + a2) - (b1 + b2);
  if (__builtin_expect(std::fabs(d) > 4 * kU * t, 1))
    return signOf(d);
  return exactCompareScores(qx, qy, ax, ay, bx, by);
}

constexpr std::size_t kHugePage = std::size_t(2) << 20;

/// Marks [mem, mem + bytes) for transparent huge pages when it spans one.
/// Advice: failure is harmless.
void adviseHugePages(void *mem, std::size_t bytes) {
#ifdef MADV_HUGEPAGE
  if (bytes >= kHugePage)
    madvise(mem, bytes, MADV_HUGEPAGE);
#endif
}

/// Allocates `bytes` (nonzero); blocks of 2 MiB and more are 2 MiB-aligned
/// and marked for transparent huge pages, so that filling them costs one
/// page fault per 2 MiB instead of one per 4 KiB. Throws std::bad_alloc.
void *allocate(std::size_t bytes) {
  std::size_t align = bytes >= kHugePage ? kHugePage : 64;
  bytes = (bytes + align - 1) / align * align; // aligned_alloc wants this
  void *mem = std::aligned_alloc(align, bytes);
  if (!mem)
    throw std::bad_alloc();
  adviseHugePages(mem, bytes);
  return mem;
}

void deallocate(void *p) noexcept { std::free(p); }

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
  return compareScoresInline(qx, qy, ax, ay, bx, by);
}

double score(double qx, double qy, double kx, double ky) {
  return qx * kx + qy * ky;
}


DoubleArray::~DoubleArray() { clear(); }

DoubleArray::DoubleArray(DoubleArray &&o) noexcept
    : data_(o.data_), size_(o.size_), capacity_(o.capacity_) {
  o.data_ = nullptr;
  o.size_ = o.capacity_ = 0;
}

DoubleArray &DoubleArray::operator=(DoubleArray &&o) noexcept {
  if (this != &o) {
    clear();
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }
  return *this;
}

double *DoubleArray::append(const double *p, std::size_t count) {
  if (size_ + count > capacity_) {
    // p may lie in the storage that grow() moves.
    bool inside = data_ && p >= data_ && p < data_ + size_;
    std::size_t from = inside ? std::size_t(p - data_) : 0;
    grow(size_ + count);
    if (inside)
      p = data_ + from;
  }
  double *at = data_ + size_;
  std::copy_n(p, count, at);
  size_ += count;
  return at;
}

double *DoubleArray::extend(std::size_t count) {
  if (size_ + count > capacity_)
    grow(size_ + count);
  double *at = data_ + size_;
  size_ += count;
  return at;
}

void DoubleArray::clear() noexcept {
  if (data_)
    munmap(data_, capacity_ * sizeof(double));
  data_ = nullptr;
  size_ = capacity_ = 0;
}

void DoubleArray::grow(std::size_t minCapacity) {
  constexpr std::size_t kPage = 4096;
  std::size_t bytes = std::max({minCapacity * sizeof(double),
                                2 * capacity_ * sizeof(double), kPage});
  bytes = (bytes + kPage - 1) / kPage * kPage;
  void *mem;
#ifdef MREMAP_MAYMOVE
  if (data_)
    mem = mremap(data_, capacity_ * sizeof(double), bytes, MREMAP_MAYMOVE);
  else
#endif
    mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    throw std::bad_alloc();
#ifndef MREMAP_MAYMOVE
  if (data_) { // no mremap: copy
    std::copy_n(data_, size_, static_cast<double *>(mem));
    munmap(data_, capacity_ * sizeof(double));
  }
#endif
  adviseHugePages(mem, bytes);
  data_ = static_cast<double *>(mem);
  capacity_ = bytes / sizeof(double);
}

} // namespace hull

// --- the chain: a B+-tree of hull vertices ordered by x -----------------------
//
// Leaves hold up to kLeafCap vertices and are linked in x order; inner nodes
// hold, for each child, the first and last vertex of its subtree. That is
// enough both to find a position by x and to find the maximizer of q·v:
// along an upper hull q·v rises strictly, peaks (at a vertex or an edge) and
// falls strictly, so "does the edge from child c's last vertex to child
// c+1's first vertex go up?" is monotone in c. Nodes are split on insertion
// and freed when empty (never merged), so the height stays O(log of the
// number of insertions).
//
// Searching by slope: along an upper hull the edge slopes decrease, and
// an edge rises under q (qy > 0) exactly when its slope exceeds -qx/qy. So
// each inner node keeps the rounded slope of the edge between each pair of
// adjacent children, and a peak search of an inner node is a binary search
// on doubles like the search by x: one subtraction and compare a step, the
// exact predicate on the coordinates only when the two slopes are within a
// few units in the last place of each other (HullCache.h's exactness holds
// whatever the slopes' rounding). In a leaf, whose vertices are at hand,
// the search evaluates the filtered predicate on them directly (`rises`),
// which spares the leaf a slope array.
//
// Layout, for hulls larger than the caches (docs/hardmax.md, "Measuring"):
// at 10^6 vertices a step's time is mostly the cache lines it brings from
// memory and the round trips it waits for, so both are kept few. Nodes are
// structures of arrays — a leaf keeps x's, y's, values and heads in four
// arrays, an inner node the first vertices, children and slopes of its
// children in arrays — so that a search touches few cache lines. The tree's
// height is tracked, so a search knows what the next node is and starts
// loading what it will read (loadAhead) before reading any of it: one
// memory round trip a level. Leaves are small (16 vertices: 832 bytes for
// dv = 2, of which a query loads the 576 before the heads) and loaded in
// one go, so that a peak search finds its vertex and reads its value in the
// same round trip; when an insertion lands near the end of a leaf, the
// vertices and heads of the neighbouring leaf it will look at are loaded in
// the same round too, and so is the parent's InnerCold when the insertion
// will update it. Nodes come from a pool whose slabs are 2 MiB-aligned and
// marked for transparent huge pages (fewer page walks and faults).
// HullCache::step runs the searches of an append and a query level by level
// together, so that their round trips overlap.
//
// A vertex's Head (16 bytes) describes its own keys: the largest j, the
// pool group of all of them when there are two or more, and the group of
// the keys inside the edge to the next vertex. For dv <= kInlineDv the
// leaf also keeps the value of the largest j. So a `latest` query without
// a tie reads nothing but the vertices and values on its path, and a vertex
// that holds a single key (every vertex of a parabola memory written once
// per address) needs no other storage. The count, smallest j and
// compensated sums (for `average`) of a vertex with two or more keys, and
// every edge group, live in the group pool (HullCache::group).

namespace hull_detail {

constexpr int kLeafCap = 16;
constexpr int kInnerCap = 32;
/// Below this many vertices (under 1 MB of leaves, the L2 cache of the
/// machines measured) the nodes stay in cache and loading ahead would only
/// cost instructions: 10^4-step runs are about 15 % faster without it.
constexpr std::size_t kLoadAheadVertices = 8192;
/// Values of at most this many doubles are copied into the leaves.
constexpr int kInlineDv = 4;

/// What a leaf keeps of a vertex's keys besides its inline value.
struct Head {
  double maxJ;  // the largest j of the keys at the vertex (the only one when
                // sums < 0; else the group also has the smallest)
  int32_t sums; // pool group of the vertex's keys when >= 2, else -1
  int32_t edge; // pool group of the keys strictly inside the edge to the
                // next vertex, or -1
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
  // Followed by double xs[kLeafCap], ys[kLeafCap], the inline values
  // (kLeafCap * dv doubles, when dv <= kInlineDv) and Head heads[kLeafCap]
  // (Chain::vals/heads); slots at n and beyond are never read. A query
  // that finds no tie reads the vertices and values but not the heads.
  double *xs() { return reinterpret_cast<double *>(this + 1); }
  const double *xs() const { return reinterpret_cast<const double *>(this + 1); }
  double *ys() { return xs() + kLeafCap; }
  const double *ys() const { return xs() + kLeafCap; }
  double *vals() { return xs() + 2 * kLeafCap; }
  const double *vals() const { return xs() + 2 * kLeafCap; }
};
struct Summary {
  double fx, fy, lx, ly; // first and last vertex of a subtree
};
/// What an inner node keeps for exact decisions and upkeep only, in a block
/// of its own: the searches never touch it, so the inner nodes they walk
/// take half the memory (on a 640 000-vertex hull a step was 5-9 %
/// faster than with these arrays inside the node).
struct InnerCold {
  double fy[kInnerCap];                // first vertex of child c (with fx)
  double lx[kInnerCap], ly[kInnerCap]; // last vertex of child c
};
struct alignas(64) Inner : Node {
  explicit Inner(InnerCold *c) : Node(false), cold(c) {}
  InnerCold *cold;
  // A search by x reads fx and child, a peak search child and slope: each
  // loads one contiguous range. Slots at n and beyond are never read (left
  // uninitialized).
  double fx[kInnerCap]; // first vertex of child c
  Node *child[kInnerCap];
  double slope[kInnerCap]; // of the edge from child c to child c + 1
};

/// The slope of the edge from a to b (bx > ax), rounded: within 3 units in
/// the last place of the exact slope unless it overflows or underflows.
inline double edgeSlope(double ax, double ay, double bx, double by) {
  return (by - ay) / (bx - ax);
}

/// Starts loading the cache lines of [p, p + bytes) without waiting for
/// them: one load per line whose value is discarded. Not __builtin_prefetch:
/// a node the search goes to next usually lies on a page the TLB does not
/// map, and on the machines measured (AMD Zen 4 guests, docs/hardmax.md,
/// "Measuring") a software prefetch that misses the TLB gains little, while
/// a load walks the page tables and then fetches all the lines in parallel.
/// A query on a 640 000-vertex hull went from 870-1145 ns to 616-653 ns.
inline void loadAhead(const void *p, std::size_t bytes) {
  const char *c = static_cast<const char *>(p);
  for (std::size_t o = 0; o < bytes; o += 64) {
    char v = *static_cast<const volatile char *>(c + o);
    asm volatile("" ::"r"(v));
  }
}

/// q·b > q·a, exactly.
inline bool rises(double qx, double qy, double ax, double ay, double bx,
                  double by) {
  return compareScoresInline(qx, qy, bx, by, ax, ay) > 0;
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

/// The number of k < m with xs[k] < x, xs increasing on [0, m).
inline int countLess(const double *xs, int m, double x) {
  return countTrue(m, [&](int k) { return xs[k] < x; });
}

/// The number of k < m for which q·(bx[k], by[k]) > q·(ax[k], ay[k]) (qy >
/// 0, bx[k] > ax[k]), a predicate true then false in k. Edge k rises under q
/// exactly when its slope exceeds -qx/qy, so the binary search compares the
/// rounded slopes of the edges (slope[k]) with the rounded -qx/qy: one
/// subtraction and compare a step, decided for every slope not within a few
/// units in the last place of -qx/qy (and not overflowed); a step that is
/// not (a near or exact tie) asks the exact predicate on the coordinates.
inline int countRises(const double *slope, int m, double qx, double qy,
                      const double *ax, const double *ay, const double *bx,
                      const double *by) {
  const double sq = -qx / qy, margin = 8 * kU * std::fabs(sq) + 0x1p-1000;
  return countTrue(m, [&](int k) {
    // |error| of both slopes <= 4u of each plus underflow; infinities fail.
    double d = slope[k] - sq;
    if (__builtin_expect(std::fabs(d) > margin + 8 * kU * std::fabs(slope[k]),
                         1))
      return d > 0;
    return rises(qx, qy, ax[k], ay[k], bx[k], by[k]);
  });
}

/// Fixed-size blocks from slabs that grow geometrically; slabs of 2 MiB and
/// more are 2 MiB-aligned and marked for transparent huge pages. Blocks are
/// recycled through a free list and returned to the system all at once.
class BlockPool {
public:
  explicit BlockPool(std::size_t bytes) : bytes_(bytes) {}
  ~BlockPool() { release(); }
  BlockPool(const BlockPool &) = delete;
  BlockPool &operator=(const BlockPool &) = delete;

  std::size_t blockBytes() const { return bytes_; }
  void *get() {
    if (free_) {
      void *p = free_;
      free_ = *static_cast<void **>(p);
      return p;
    }
    if (bump_ == end_)
      grow();
    void *p = bump_;
    bump_ += bytes_;
    return p;
  }
  void put(void *p) {
    *static_cast<void **>(p) = free_;
    free_ = p;
  }
  /// Frees every slab (every block ever handed out).
  void release() {
    for (void *s : slabs_)
      deallocate(s);
    slabs_.clear();
    free_ = nullptr;
    bump_ = end_ = nullptr;
    nextBlocks_ = 4;
  }

private:
  void grow() {
    // Slabs double until they reach 2 MiB (allocate gives those huge
    // pages), then stay at 2-8 MiB.
    std::size_t bytes = nextBlocks_ * bytes_; // bytes_ is a multiple of 64
    if (bytes >= kHugePage)
      bytes = std::min((bytes + kHugePage - 1) / kHugePage, std::size_t(4)) *
              kHugePage;
    else
      nextBlocks_ *= 2;
    void *mem = allocate(bytes);
    slabs_.push_back(mem);
    bump_ = static_cast<char *>(mem);
    end_ = bump_ + bytes / bytes_ * bytes_;
  }

  std::size_t bytes_;
  std::vector<void *> slabs_;
  void *free_ = nullptr;
  char *bump_ = nullptr, *end_ = nullptr;
  std::size_t nextBlocks_ = 4;
};

} // namespace hull_detail

using namespace hull_detail;

/// A vertex position in a chain; leaf == nullptr is the end.
struct HullCache::ChainPos {
  Leaf *leaf = nullptr;
  int i = 0;
  bool end() const { return leaf == nullptr; }
};

class HullCache::Chain {
public:
  using Pos = ChainPos;

  explicit Chain(int dv)
      : inlineDv_(dv <= kInlineDv ? dv : 0),
        headsOffset_(sizeof(double) * (2 + std::size_t(inlineDv_)) * kLeafCap),
        leaves_(roundUp(sizeof(Leaf) + headsOffset_ + sizeof(Head) * kLeafCap)),
        inners_(roundUp(sizeof(Inner))), colds_(roundUp(sizeof(InnerCold))) {
    reset();
  }
  Chain(const Chain &) = delete;
  Chain &operator=(const Chain &) = delete;

  std::size_t size() const { return size_; }
  void clear() {
    leaves_.release();
    inners_.release();
    colds_.release();
    reset();
  }
  /// Whether leaves keep the value of each vertex's largest j.
  bool inlineValue() const { return inlineDv_ > 0; }

  double x(Pos p) const { return p.leaf->xs()[p.i]; }
  double y(Pos p) const { return p.leaf->ys()[p.i]; }
  Head &head(Pos p) const { return heads(p.leaf)[p.i]; }
  /// The value of head(p).maxJ (inlineValue() only).
  double *value(Pos p) const {
    return p.leaf->vals() + std::size_t(p.i) * std::size_t(inlineDv_);
  }

  /// Whether a vertex precedes p (p may be the end).
  bool hasPrev(Pos p) const {
    return size_ > 0 && !(p.leaf == first_ && p.i == 0);
  }
  Pos next(Pos p) const {
    if (++p.i < p.leaf->n)
      return p;
    return Pos{p.leaf->next, 0};
  }
  /// The vertex before p (p == end: the last vertex); p must not be begin.
  Pos prev(Pos p) const {
    if (p.end())
      return Pos{last_, last_->n - 1};
    if (p.i > 0)
      return Pos{p.leaf, p.i - 1};
    return Pos{p.leaf->prev, p.leaf->prev->n - 1};
  }

  /// One descent, one level at a time, so that several (in one chain or in
  /// two) can go down together and their memory round trips overlap:
  /// ByX finds the first vertex with x' >= x (or the end), Peak (non-empty
  /// chain, qy > 0) the first vertex v whose next vertex does not score
  /// strictly higher under q: the maximizer, or the first of the two ends
  /// of the maximizing edge.
  struct Search {
    enum Kind { ByX, Peak } kind;
    double a, b; // ByX: x; Peak: qx, qy
    const Chain *chain = nullptr;
    const Node *node = nullptr;
    int level = 0; // inner levels left above the leaves
    int slot = 0;  // the child taken at the last inner node
    bool done = false;
    Pos result;
  };
  void start(Search &s) const {
    s.chain = this;
    s.node = root_;
    s.level = height_;
    s.done = false;
    loadAheadFor(s);
  }
  /// Whether loading ahead pays: the hull has outgrown the caches.
  bool loadsAhead() const { return size_ >= kLoadAheadVertices; }
  /// Starts loading what search s reads of its next node: of an inner
  /// node, fx and child (by x) or child and slope (peak); of a leaf, all of
  /// it for an insertion, all but the heads for a peak search.
  void loadAheadFor(const Search &s) const {
    if (!loadsAhead())
      return;
    if (s.level > 0) {
      auto *in = static_cast<const Inner *>(s.node);
      if (s.kind == Search::ByX)
        loadAhead(in, std::size_t(reinterpret_cast<const char *>(in->slope) -
                                      reinterpret_cast<const char *>(in)));
      else {
        loadAhead(in, 1); // n
        loadAhead(in->child, sizeof(in->child) + sizeof(in->slope));
      }
    } else if (s.kind == Search::Peak && inlineValue()) {
      // A peak search reads the vertices and then the value of the one it
      // lands on: one round trip for both. The heads are read only on a
      // tie (HullCache::tiedAt).
      loadAhead(s.node, sizeof(Leaf) + headsOffset_);
    } else {
      // An insertion moves everything after its position.
      loadAhead(s.node, leaves_.blockBytes());
    }
  }
  /// Starts loading what an insertion at vertex i of leaf lf (child slot
  /// of its parent) reads of the neighbouring leaves (it looks at up to two
  /// vertices on each side) and of the parent's InnerCold.
  void loadNeighbours(const Leaf *lf, int i, int slot) const {
    if (!loadsAhead())
      return;
    if (i < 2 && lf->prev) { // its last two vertices and heads
      const Leaf *pv = lf->prev;
      loadAhead(pv, sizeof(Leaf) + 2 * sizeof(double) * kLeafCap);
      loadAhead(heads(pv), sizeof(Head) * kLeafCap);
    }
    if (i + 2 > lf->n && lf->next) { // its first two vertices and heads
      loadFirstVertices(lf->next);
      loadAhead(heads(lf->next), 2 * sizeof(Head));
    }
    // A new first or last vertex of the leaf updates the parent's summary
    // of child `slot` (or of the next one) and the slopes on both sides; a
    // split moves all the summaries after it.
    if (!lf->parent || !(i == 0 || i >= lf->n || lf->n == kLeafCap))
      return;
    const InnerCold *cold = lf->parent->cold;
    if (lf->n == kLeafCap) {
      loadAhead(cold, sizeof(InnerCold));
      return;
    }
    int c = std::max(slot - 1, 0), m = std::min(kInnerCap - c, 4);
    for (const double *a : {cold->fy, cold->lx, cold->ly})
      loadAhead(a + c, sizeof(double) * std::size_t(m));
  }
  /// Starts loading the first vertex after leaf lf (what the answer of a
  /// query that peaks at lf's last vertex compares it with).
  void loadSuccessor(const Leaf *lf) const {
    if (loadsAhead() && lf->next)
      loadFirstVertices(lf->next);
  }
  /// Starts loading the header of leaf lf and its first vertices.
  static void loadFirstVertices(const Leaf *lf) {
    loadAhead(lf, 1);
    loadAhead(lf->xs(), 2 * sizeof(double));
    loadAhead(lf->ys(), 2 * sizeof(double));
  }
  /// Goes down one level; at a leaf, sets result. Returns false when done.
  bool step(Search &s) const {
    if (s.level == 0) {
      auto *lf = const_cast<Leaf *>(static_cast<const Leaf *>(s.node));
      const double *xs = lf->xs(), *ys = lf->ys();
      if (s.kind == Search::ByX) {
        int i = countLess(xs, lf->n, s.a);
        s.result = i < lf->n ? Pos{lf, i} : Pos{lf->next, 0};
        loadNeighbours(lf, i, s.slot);
      } else {
        int i = countTrue(lf->n - 1, [&](int k) {
          return rises(s.a, s.b, xs[k], ys[k], xs[k + 1], ys[k + 1]);
        });
        s.result = Pos{lf, i};
        if (i == lf->n - 1)
          loadSuccessor(lf);
      }
      s.done = true;
      return false;
    }
    auto *in = static_cast<const Inner *>(s.node);
    int c;
    if (s.kind == Search::ByX) // the last child with fx < x, else 0
      c = countLess(in->fx + 1, in->n - 1, s.a);
    else
      c = countRises(in->slope, in->n - 1, s.a, s.b, in->cold->lx,
                     in->cold->ly, in->fx + 1, in->cold->fy + 1);
    s.node = in->child[c];
    s.slot = c;
    --s.level;
    loadAheadFor(s);
    return true;
  }
  /// Runs searches to the end together, a level of each in turn.
  static void run(Search *const *s, int count) {
    for (bool more = true; more;) {
      more = false;
      for (int k = 0; k < count; ++k)
        if (!s[k]->done)
          more |= s[k]->chain->step(*s[k]);
    }
  }

  /// The first vertex with x' >= x (or the end).
  Pos lowerBound(double x) const {
    Search s{Search::ByX, x, 0};
    start(s);
    while (step(s)) {
    }
    return s.result;
  }
  /// See Search::Peak.
  Pos peak(double qx, double qy) const {
    Search s{Search::Peak, qx, qy};
    start(s);
    while (step(s)) {
    }
    return s.result;
  }

  /// Inserts vertex (x, y) with head h and (inlineValue() only) value
  /// before p (p may be the end); positions are invalidated.
  void insert(Pos p, double x, double y, const Head &h, const double *value) {
    Leaf *lf = p.end() ? last_ : p.leaf;
    int i = p.end() ? lf->n : p.i;
    bool refresh = i == 0 || i == lf->n;
    if (lf->n == kLeafCap) {
      Leaf *nl = newLeaf();
      int half = kLeafCap / 2;
      move(nl, 0, lf, half, kLeafCap - half);
      nl->n = kLeafCap - half;
      lf->n = half;
      nl->next = lf->next;
      nl->prev = lf;
      if (lf->next)
        lf->next->prev = nl;
      else
        last_ = nl;
      lf->next = nl;
      addSibling(lf, nl);
      refreshUp(lf); // lf lost its second half
      if (i > half) {
        lf = nl;
        i -= half;
      }
      refresh = true;
    }
    move(lf, i + 1, lf, i, lf->n - i);
    lf->xs()[i] = x;
    lf->ys()[i] = y;
    heads(lf)[i] = h;
    std::copy_n(value, inlineDv_, lf->vals() + std::size_t(i) * inlineDv_);
    ++lf->n;
    ++size_;
    if (refresh)
      refreshUp(lf);
  }

  /// Erases the vertex at p; returns the position of the vertex after it.
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
    leaves_.put(lf);
    return Pos{after, 0};
  }

private:
  static std::size_t roundUp(std::size_t bytes) { return (bytes + 63) / 64 * 64; }
  Head *heads(const Leaf *lf) const {
    return reinterpret_cast<Head *>(
        reinterpret_cast<char *>(const_cast<Leaf *>(lf)->xs()) + headsOffset_);
  }

  /// Moves vertices [si, si + count) of s to [di, di + count) of d (the
  /// ranges may overlap).
  void move(Leaf *d, int di, Leaf *s, int si, int count) {
    if (count <= 0)
      return;
    std::memmove(d->xs() + di, s->xs() + si, sizeof(double) * count);
    std::memmove(d->ys() + di, s->ys() + si, sizeof(double) * count);
    std::memmove(d->vals() + std::size_t(di) * inlineDv_,
                 s->vals() + std::size_t(si) * inlineDv_,
                 sizeof(double) * inlineDv_ * std::size_t(count));
    std::memmove(heads(d) + di, heads(s) + si, sizeof(Head) * count);
  }
  Leaf *newLeaf() { return new (leaves_.get()) Leaf; }
  Inner *newInner() {
    return new (inners_.get()) Inner(static_cast<InnerCold *>(colds_.get()));
  }
  void freeInner(Inner *p) {
    colds_.put(p->cold);
    inners_.put(p);
  }

  static Summary summarize(const Node *nd) {
    if (nd->leaf) {
      auto *lf = static_cast<const Leaf *>(nd);
      int l = lf->n - 1;
      return {lf->xs()[0], lf->ys()[0], lf->xs()[l], lf->ys()[l]};
    }
    auto *in = static_cast<const Inner *>(nd);
    int l = in->n - 1;
    return {in->fx[0], in->cold->fy[0], in->cold->lx[l], in->cold->ly[l]};
  }
  /// Recomputes the slope of the edge from child c's last vertex to child
  /// c + 1's first (nothing when either is missing).
  static void fixSlope(Inner *p, int c) {
    if (c >= 0 && c + 1 < p->n)
      p->slope[c] = edgeSlope(p->cold->lx[c], p->cold->ly[c], p->fx[c + 1],
                              p->cold->fy[c + 1]);
  }
  /// Sets child c's summary and the slopes of the edges on both its sides.
  static void setSummary(Inner *p, int c, const Summary &s) {
    p->fx[c] = s.fx;
    p->cold->fy[c] = s.fy;
    p->cold->lx[c] = s.lx;
    p->cold->ly[c] = s.ly;
    fixSlope(p, c - 1);
    fixSlope(p, c);
  }
  /// Moves child slots [si, si + count) of s to [di, di + count) of d.
  static void moveSlots(Inner *d, int di, Inner *s, int si, int count) {
    if (count <= 0)
      return;
    auto mv = [&](auto *dst, auto *src) {
      std::memmove(dst + di, src + si, sizeof(*dst) * std::size_t(count));
    };
    mv(d->fx, s->fx);
    mv(d->slope, s->slope);
    mv(d->cold->fy, s->cold->fy);
    mv(d->cold->lx, s->cold->lx);
    mv(d->cold->ly, s->cold->ly);
    mv(d->child, s->child);
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
      setSummary(p, c, summarize(nd));
      if (c != 0 && c != p->n - 1)
        return;
      nd = p;
    }
  }

  /// Puts `right` just after `left` in left's parent (splitting as needed).
  void addSibling(Node *left, Node *right) {
    Inner *p = left->parent;
    if (!p) {
      p = newInner();
      p->n = 1;
      p->child[0] = left;
      setSummary(p, 0, summarize(left));
      left->parent = p;
      root_ = p;
      ++height_;
    }
    int c = indexOf(p, left) + 1;
    if (p->n == kInnerCap) {
      Inner *np = newInner();
      int half = kInnerCap / 2;
      moveSlots(np, 0, p, half, kInnerCap - half);
      np->n = kInnerCap - half;
      p->n = half;
      for (int k = 0; k < np->n; ++k)
        np->child[k]->parent = np;
      // The slopes moved with their children; p's last one is unused.
      addSibling(p, np);
      refreshUp(p); // p lost its second half
      if (c > half) {
        p = np;
        c -= half;
      }
    }
    moveSlots(p, c + 1, p, c, p->n - c); // the slopes move with the children
    p->child[c] = right;
    right->parent = p;
    ++p->n;
    setSummary(p, c, summarize(right)); // and the slopes on both its sides
    refreshUp(p);
  }

  /// Removes an emptied node from its parent, freeing emptied ancestors.
  void removeChild(Node *nd) {
    Inner *p = nd->parent;
    int c = indexOf(p, nd);
    moveSlots(p, c, p, c + 1, p->n - c - 1);
    --p->n;
    fixSlope(p, c - 1); // the others moved with their children
    if (p->n == 0) {
      if (p == root_) { // cannot happen while vertices remain
        clear();
        return;
      }
      removeChild(p);
      freeInner(p);
      return;
    }
    refreshUp(p);
    while (!root_->leaf && root_->n == 1) {
      Inner *old = static_cast<Inner *>(root_);
      root_ = old->child[0];
      root_->parent = nullptr;
      --height_;
      freeInner(old);
    }
  }

  void reset() {
    Leaf *lf = newLeaf();
    root_ = lf;
    first_ = last_ = lf;
    size_ = 0;
    height_ = 0;
  }

  std::size_t inlineDv_;    // doubles per inline value (0: none)
  std::size_t headsOffset_; // bytes from xs() to the heads
  BlockPool leaves_, inners_, colds_;
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
  groups_.clear();
  freeGroups_.clear();
}

int32_t HullCache::newGroup(int64_t j, const double *value) {
  int32_t g;
  if (!freeGroups_.empty()) {
    g = freeGroups_.back();
    freeGroups_.pop_back();
  } else {
    g = static_cast<int32_t>(groups_.size() / groupStride_);
    groups_.extend(groupStride_);
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
  addCompensated(G + kSum, G + kSum + dv_, value, dv_);
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
  addCompensated(I + kSum, I + kSum + dv_, F + kSum, dv_);
  for (int d = 0; d < dv_; ++d) // and from's own error
    I[kSum + dv_ + d] += F[kSum + dv_ + d];
  releaseGroup(from);
}

void HullCache::releaseGroup(int32_t &g) {
  if (g >= 0)
    freeGroups_.push_back(g);
  g = -1;
}

const double *HullCache::latestValue(const Chain &ch,
                                     const ChainPos &p) const {
  return ch.inlineValue()
             ? ch.value(p)
             : values_.data() + static_cast<std::size_t>(ch.head(p).maxJ) * dv_;
}

void HullCache::insertIntoChain(Chain &ch, const ChainPos &at, double x,
                                double y, int64_t j, const double *value) {
  using Pos = Chain::Pos;
  // The pool group of the keys at vertex p (created for a single key); the
  // vertex is about to leave the chain.
  auto takeVertexKeys = [&](Pos p) {
    Head &h = ch.head(p);
    int32_t g = h.sums;
    h.sums = -1;
    if (g < 0)
      g = newGroup(static_cast<int64_t>(h.maxJ), latestValue(ch, p));
    return g;
  };

  Pos it = at;
  Pos from = it, to = it; // the vertices p replaces: [from, to)
  int removed = 0;
  if (!it.end() && ch.x(it) == x) {
    Head &e = ch.head(it);
    if (y == ch.y(it)) { // a duplicate of the vertex: j is its newest key
      if (e.sums < 0)
        e.sums = newGroup(static_cast<int64_t>(e.maxJ), latestValue(ch, it));
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
  ch.insert(pos, x, y, Head{static_cast<double>(j), -1, rightEdge}, value);
}

const double *HullCache::storeKey(double kx, double ky, const double *value) {
  int64_t j = static_cast<int64_t>(size());
  const double key[2] = {kx, ky};
  keys_.append(key, 2);
  // A stable copy (value may point into values_ itself).
  const double *v = values_.append(value, std::size_t(dv_));

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
  return v;
}

void HullCache::append(double kx, double ky, const double *value) {
  checkFinite(kx, ky, "key");
  int64_t j = static_cast<int64_t>(size());
  const double *v = storeKey(kx, ky, value);
  insertIntoChain(*upper_, upper_->lowerBound(kx), kx, ky, j, v);
  insertIntoChain(*lower_, lower_->lowerBound(kx), kx, -ky, j, v);
}

/// One group of a tie set: a vertex's keys or a pool group.
struct HullCache::Tied {
  double maxJ;
  int32_t pool;         // the pool group with the count, sums and smallest j,
                        // or -1: a single key (maxJ), whose value is `latest`
  const double *latest; // the value of maxJ
  double kx, ky;        // the key of maxJ
};

int HullCache::tiedAt(const Chain &ch, const ChainPos &p, double qx,
                      double qy, TieRule ties, Tied *g) const {
  int n = 0;
  const double sy = qy > 0 ? 1.0 : -1.0, cy = std::fabs(qy);
  Chain::Pos nx = ch.next(p);
  bool edgeTie =
      !nx.end() &&
      hull::compareScores(qx, cy, ch.x(p), ch.y(p), ch.x(nx), ch.y(nx)) == 0;
  if (!edgeTie && ties == TieRule::Latest && ch.inlineValue()) {
    // The one vertex's latest value is all the rule reads: its head (and
    // the line it lies on) is not needed.
    g[0] = Tied{0, -1, ch.value(p), ch.x(p), sy * ch.y(p)};
    return 1;
  }
  auto vertex = [&](Chain::Pos v) {
    const Head &h = ch.head(v);
    g[n++] = Tied{h.maxJ, h.sums, latestValue(ch, v), ch.x(v), sy * ch.y(v)};
  };
  vertex(p);
  if (edgeTie) {
    if (ch.head(p).edge >= 0)
      g[n++] = poolTied(ch.head(p).edge);
    vertex(nx);
  }
  return n;
}

HullCache::Tied HullCache::poolTied(int32_t id) const {
  const double *G = group(id);
  std::size_t maxJ = static_cast<std::size_t>(G[kMaxJ]);
  return Tied{G[kMaxJ], id, values_.data() + maxJ * dv_,
              keys_[2 * maxJ], keys_[2 * maxJ + 1]};
}

void HullCache::resolve(const Tied *g, int n, TieRule ties, double *out,
                        double *err, double &count, double &kx,
                        double &ky) const {
  const Tied *latest = &g[0];
  for (int k = 1; k < n; ++k)
    if (g[k].maxJ > latest->maxJ)
      latest = &g[k];
  kx = latest->kx;
  ky = latest->ky;
  count = 0;
  switch (ties) {
  case TieRule::Latest:
    std::copy_n(latest->latest, dv_, out);
    break;
  case TieRule::First: {
    // Only here is a group read for its smallest j.
    double minJ = std::numeric_limits<double>::infinity();
    for (int k = 0; k < n; ++k)
      minJ = std::min(minJ,
                      g[k].pool >= 0 ? group(g[k].pool)[kMinJ] : g[k].maxJ);
    std::copy_n(values_.data() + static_cast<std::size_t>(minJ) * dv_, dv_,
                out);
    break;
  }
  case TieRule::Average:
    for (int k = 0; k < n; ++k)
      count += g[k].pool >= 0 ? group(g[k].pool)[kCount] : 1.0;
    for (int d = 0; d < dv_; ++d) {
      double sum = 0, e = 0;
      for (int k = 0; k < n; ++k) {
        const double *G = g[k].pool >= 0 ? group(g[k].pool) : nullptr;
        double t, te;
        twoSum(sum, G ? G[kSum + d] : g[k].latest[d], t, te);
        sum = t;
        e += (G ? G[kSum + dv_ + d] : 0.0) + te;
      }
      out[d] = sum;
      err[d] = e;
    }
    break;
  }
}

namespace {
/// dv doubles of scratch: on the stack when few (queries stay free of
/// allocation and of shared state).
struct Scratch {
  explicit Scratch(int dv) {
    if (dv > kStack) {
      heap.resize(std::size_t(dv));
      data = heap.data();
    }
  }
  static constexpr int kStack = 16;
  double stack[kStack];
  std::vector<double> heap;
  double *data = stack;
};
} // namespace

void HullCache::query(double qx, double qy, TieRule ties, double *out,
                      double *maxScore) const {
  checkFinite(qx, qy, "query");
  if (empty()) {
    std::fill(out, out + dv_, 0.0);
    if (maxScore)
      *maxScore = -std::numeric_limits<double>::infinity();
    return;
  }
  Tied g[3];
  int n;
  if (qy != 0) {
    const Chain &ch = qy > 0 ? *upper_ : *lower_;
    n = tiedAt(ch, ch.peak(qx, std::fabs(qy)), qx, qy, ties, g);
  } else {
    g[0] = poolTied(qx > 0 ? maxXGroup_ : qx < 0 ? minXGroup_ : all_);
    n = 1;
  }
  Scratch err(dv_);
  double count, kx, ky;
  resolve(g, n, ties, out, err.data, count, kx, ky);
  if (ties == TieRule::Average)
    finishAverage(out, err.data, count, dv_, out);
  if (maxScore)
    *maxScore = hull::score(qx, qy, kx, ky);
}

void HullCache::step(double kx, double ky, const double *value, double qx,
                     double qy, TieRule ties, double *out, double *maxScore) {
  checkFinite(kx, ky, "key");
  checkFinite(qx, qy, "query");
  if (empty() || qy == 0) {
    append(kx, ky, value);
    query(qx, qy, ties, out, maxScore);
    return;
  }
  // Where the key goes in both hulls and where the query peaks before the
  // key is added: three descents that go down together, so that their
  // memory round trips overlap.
  using Search = Chain::Search;
  const Chain &looked = qy > 0 ? *upper_ : *lower_;
  Search up{Search::ByX, kx, 0}, lo{Search::ByX, kx, 0},
      pk{Search::Peak, qx, std::fabs(qy)};
  upper_->start(up);
  lower_->start(lo);
  looked.start(pk);
  Search *all[3] = {&pk, &up, &lo};
  Chain::run(all, 3);

  // The answer over the keys before j, copied out before the insertions
  // move vertices and recycle groups: out holds it (for `average` the
  // compensated sum, err its error).
  Tied g[3];
  int n = tiedAt(looked, pk.result, qx, qy, ties, g);
  Scratch err(dv_);
  double count, tx, ty;
  resolve(g, n, ties, out, err.data, count, tx, ty);

  int64_t j = static_cast<int64_t>(size());
  const double *v = storeKey(kx, ky, value);
  insertIntoChain(*upper_, up.result, kx, ky, j, v);
  insertIntoChain(*lower_, lo.result, kx, -ky, j, v);

  // Key j joins the tie set when it ties, or replaces it when it scores
  // strictly higher (compared exactly, like every tie).
  int c = hull::compareScores(qx, qy, kx, ky, tx, ty);
  if (c > 0) {
    std::copy_n(v, dv_, out);
    tx = kx;
    ty = ky;
  } else if (c == 0) {
    tx = kx;
    ty = ky;
    if (ties == TieRule::Latest) {
      std::copy_n(v, dv_, out);
    } else if (ties == TieRule::Average) {
      addCompensated(out, err.data, v, dv_);
      count += 1;
    }
  }
  if (ties == TieRule::Average && c <= 0)
    finishAverage(out, err.data, count, dv_, out);
  if (maxScore)
    *maxScore = hull::score(qx, qy, tx, ty);
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
    if (average)
      addCompensated(acc.data(), acc.data() + dv, values + j * dv, dv);
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
    finishAverage(acc.data(), acc.data() + dv, static_cast<double>(count), dv,
                  out);
    break;
  }
  if (maxScore)
    *maxScore = hull::score(qx, qy, keys[2 * latest], keys[2 * latest + 1]);
}

} // namespace attn::runtime
