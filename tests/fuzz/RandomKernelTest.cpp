// Differential fuzzing of the whole compiler. From a seed, a generator writes
// a random but valid `.attn` kernel (element types, literal and named sizes,
// grouped heads, aux tensors, params, lets, a random score, a random mask and
// a normalization); the test emits it to Halide through attn::emitStage,
// JIT-compiles it, runs it on random ragged inputs and compares every output
// with the float64 reference (Reference.h), as the conformance suite does.
//
// The generator keeps every value tame, so that f32 kernels and the float64
// reference must agree within the conformance tolerances:
//  - it tracks an interval for every expression (sizes, params and data have
//    known bounds) and scales values down by powers of two when they grow,
//    so scores stay within about +-32 and exp/log/sqrt/pow/divisions only see
//    arguments where they are well conditioned;
//  - integer divisors are never zero, aux indices are in range by
//    construction (b, h, i, j for their own dimensions, or clamp/min/max);
//  - discontinuous operations (floor, ceil, float %, float comparisons) only
//    see values that are computed exactly in f32 (integers, dyadic constants,
//    stored data), so f32 and f64 take the same branch;
//  - hardmax and topk kernels use half-integer q, k and aux floats in a
//    small head dimension and scores built only from exact operations, so
//    that ties are the same ties in both (LANGUAGE.md, docs/language.md).
//
// Environment:
//   ATTN_FUZZ_KERNELS=N   kernels to try (default kDefaultKernels)
//   ATTN_FUZZ_SEED=S      seed of the first kernel; kernel n uses S + n, so a
//                         failure printed as "seed X" is reproduced by
//                         ATTN_FUZZ_SEED=X ATTN_FUZZ_KERNELS=1
//   ATTN_FUZZ_VERBOSE=1   print every kernel and the errors of every run
//   ATTN_FUZZ_DUMP=DIR    write every kernel to DIR/fz_SEED.attn
#include "attn/compiler/Driver.h"
#include "attn/dsl/Diagnostics.h"
#include "attn/dsl/Sema.h"
#include "attn/jit/Jit.h"
#include "attn/runtime/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace attn;
using namespace attn::runtime;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
// About 2.7 s per kernel (emit + JIT compile + three runs) on one core: the
// default run takes about 70 s.
const int kDefaultKernels = 25;
const uint64_t kDefaultSeed = 20240601;

/// One temporary kernel cache per test process, removed at exit.
class CacheDir : public ::testing::Environment {
public:
  static fs::path path() {
    static fs::path p =
        fs::temp_directory_path() / ("attn-fuzz-" + std::to_string(::getpid()));
    return p;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(path(), ec);
  }
};
const auto *const kCacheEnv = ::testing::AddGlobalTestEnvironment(new CacheDir);

// ---------------------------------------------------------------------------
// Expressions with bounds

enum class Ty { Int, Float, Bool };

// Precedence levels of the surface syntax, loosest first.
enum Prec { POr = 1, PAnd, PEq, PCmp, PAdd, PMul, PUnary, PAtom };

struct E {
  std::string s;
  int prec = PAtom;
  Ty ty = Ty::Float;
  double lo = 0, hi = 0; // bounds of the value (Int, Float)
  // Float: computed exactly in f32 and in f64 (so comparisons, floor, ceil
  // and ties agree). Exactness of a result of + - * is decided from `frac`
  // (the value is a multiple of 2^-frac) and the bounds; `raw` marks stored
  // data, exact as itself but of unknown granularity.
  bool exact = true;
  int frac = 0;
  bool raw = false;
  bool usesDot = false;
  double maxAbs() const { return std::max(std::fabs(lo), std::fabs(hi)); }
};

/// Exactness of an f32 value that is a multiple of 2^-frac bounded by m.
bool fitsF32(double m, int frac) { return m * std::ldexp(1.0, frac) <= std::ldexp(1.0, 23); }

/// Whether `s` mentions the identifier i or j.
bool mentionsIJ(const std::string &s) {
  for (size_t n = 0; n < s.size(); ++n) {
    if (s[n] != 'i' && s[n] != 'j')
      continue;
    bool before = n > 0 && (std::isalnum((unsigned char)s[n - 1]) || s[n - 1] == '_');
    bool after = n + 1 < s.size() && (std::isalnum((unsigned char)s[n + 1]) || s[n + 1] == '_');
    if (!before && !after)
      return true;
  }
  return false;
}

/// A named or literal size with the bounds of its run-time values.
struct Size {
  std::string tok; // "L" or "4"
  bool named = false;
  int64_t lo = 1, hi = 1;
  int64_t lit() const { return named ? -1 : lo; }
};

struct AuxInfo {
  std::string name;
  ElemType type;
  std::vector<std::string> dims; // size tokens
  enum Kind { Ids, Flags, Bias } kind;
};

struct ParamInfo {
  std::string name;
  ElemType type;
  std::vector<std::string> values; // run-time values to pick from
  bool hasDefault = false;
};

/// A generated kernel and what the runs need to know about it.
struct FuzzKernel {
  uint64_t seed = 0;
  std::string name, text, twinText; // twin: softmax + output lse, the masked-row oracle
  bool exact = false;               // hardmax/topk: half-integer q, k, bias
  bool cross = false;
  bool bshd = false; // q, k, v in [B, L, H, D] with `at` (LANGUAGE.md §8.1)
  /// Two key/value sources `a` and `b` (LANGUAGE.md §8.5), each with the
  /// kernel's score and mask and k, v of the same shape; inputs a.k, a.v,
  /// b.k, b.v.
  bool sources = false;
  Size B, H, Hk, Lq, Lk, D, Dv;
  ElemType qT = ElemType::F32, kT = ElemType::F32, vT = ElemType::F32;
  double qScale = 1;
  std::vector<AuxInfo> aux;
  std::vector<ParamInfo> params;
  dsl::NormKind norm = dsl::NormKind::Softmax;
  bool lse = false;
  bool multi = false; // the file holds another kernel too
};

class Generator {
public:
  explicit Generator(uint64_t seed) : rng_(seed) { fk_.seed = seed; }

  FuzzKernel generate();

private:
  std::mt19937_64 rng_;
  FuzzKernel fk_;
  std::vector<E> intLets_, floatLets_, boolLets_;
  int nextLet_ = 0;
  bool exactMode_ = false;
  bool computeF64_ = false;

  // --- random helpers
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  int uni(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  template <typename T> const T &pick(const std::vector<T> &v) {
    return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng_)];
  }

  // --- printing with precedence
  static std::string wrap(const E &e, int need) {
    return e.prec >= need ? e.s : "(" + e.s + ")";
  }
  std::string paren(const E &e, int need) {
    // sometimes redundant parentheses
    if (e.prec != PAtom && chance(0.1))
      return "(" + e.s + ")";
    return wrap(e, need);
  }

  // --- constructors
  E intLit(int64_t v) {
    E e;
    e.ty = Ty::Int;
    e.lo = e.hi = (double)v;
    e.s = std::to_string(v);
    e.prec = v < 0 ? PUnary : PAtom;
    return e;
  }
  E floatLit(double v) {
    E e;
    e.ty = Ty::Float;
    e.lo = e.hi = v;
    std::ostringstream os;
    os.precision(17);
    double a = std::fabs(v);
    std::string body;
    if (a == std::floor(a) && a < 1e6) {
      body = std::to_string((long long)a) + (chance(0.3) ? "." : ".0");
    } else if (a < 1 && chance(0.3)) {
      os << a;
      body = os.str();
      if (body.size() > 1 && body[0] == '0')
        body = body.substr(1); // ".25"
    } else if (chance(0.15)) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6e", a);
      body = buf;
    } else {
      os << a;
      body = os.str();
    }
    e.s = (v < 0 ? "-" : "") + body;
    e.prec = v < 0 ? PUnary : PAtom;
    // exactness from the binary expansion
    int f = 0;
    while (f < 40 && std::ldexp(v, f) != std::floor(std::ldexp(v, f)))
      ++f;
    e.frac = f;
    e.exact = f < 40 && fitsF32(a, f) && (double)(float)v == v;
    return e;
  }
  E atom(const std::string &s, Ty ty, double lo, double hi) {
    E e;
    e.s = s;
    e.ty = ty;
    e.lo = lo;
    e.hi = hi;
    return e;
  }
  static E toFloatView(E e) {
    if (e.ty == Ty::Int) {
      e.ty = Ty::Float;
      e.exact = true;
      e.frac = 0;
    }
    return e;
  }

  E binArith(const E &a, const E &b, char op);
  E scaleDown(E e, double limit);
  E call(const std::string &fn, std::vector<E> args, Ty ty, double lo, double hi);

  // --- generators
  E intLeaf();
  E intIndexFor(const std::string &dimTok);
  E genInt(int depth);
  E genFloat(int depth, bool requireExact);
  E floatLeaf(bool requireExact);
  E genDenominator(int depth, bool requireExact);
  E genBool(int depth);
  E comparison(int depth);
  E structuredMask();
  E auxRead(const AuxInfo &a);

  const Size *sizeByTok(const std::string &tok) const {
    for (const Size *s : {&fk_.B, &fk_.H, &fk_.Hk, &fk_.Lq, &fk_.Lk, &fk_.D, &fk_.Dv})
      if (s->tok == tok)
        return s;
    return nullptr;
  }
  std::vector<const Size *> namedSizes() const {
    std::vector<const Size *> out;
    for (const Size *s : {&fk_.B, &fk_.H, &fk_.Hk, &fk_.Lq, &fk_.Lk, &fk_.D, &fk_.Dv})
      if (s->named) {
        bool dup = false;
        for (const Size *o : out)
          dup |= o->tok == s->tok;
        if (!dup)
          out.push_back(s);
      }
    return out;
  }
  const AuxInfo *findAux(AuxInfo::Kind kind) {
    std::vector<const AuxInfo *> c;
    for (const AuxInfo &a : fk_.aux)
      if (a.kind == kind)
        c.push_back(&a);
    return c.empty() ? nullptr : pick(c);
  }
  const ParamInfo *findParam(const std::string &name) const {
    for (const ParamInfo &p : fk_.params)
      if (p.name == name)
        return &p;
    return nullptr;
  }
};

E Generator::call(const std::string &fn, std::vector<E> args, Ty ty, double lo, double hi) {
  E e;
  e.s = fn + "(";
  for (size_t n = 0; n < args.size(); ++n)
    e.s += (n ? ", " : "") + args[n].s;
  e.s += ")";
  e.ty = ty;
  e.lo = lo;
  e.hi = hi;
  e.exact = false;
  for (const E &a : args)
    e.usesDot |= a.usesDot;
  return e;
}

/// a op b for op in + - * (numbers); result is Int when both are.
E Generator::binArith(const E &a0, const E &b0, char op) {
  bool isInt = a0.ty == Ty::Int && b0.ty == Ty::Int;
  E a = isInt ? a0 : toFloatView(a0), b = isInt ? b0 : toFloatView(b0);
  E e;
  e.ty = isInt ? Ty::Int : Ty::Float;
  e.usesDot = a.usesDot || b.usesDot;
  int lvl = op == '*' ? PMul : PAdd;
  e.s = paren(a, lvl) + " " + op + " " + paren(b, lvl + 1);
  e.prec = lvl;
  double c[4];
  switch (op) {
  case '+': e.lo = a.lo + b.lo; e.hi = a.hi + b.hi; break;
  case '-': e.lo = a.lo - b.hi; e.hi = a.hi - b.lo; break;
  default:
    c[0] = a.lo * b.lo, c[1] = a.lo * b.hi, c[2] = a.hi * b.lo, c[3] = a.hi * b.hi;
    e.lo = *std::min_element(c, c + 4);
    e.hi = *std::max_element(c, c + 4);
  }
  if (!isInt) {
    e.frac = op == '*' ? a.frac + b.frac : std::max(a.frac, b.frac);
    bool rawOk = op == '*' && ((a.raw && b.lo == b.hi && std::fabs(b.lo) == std::ldexp(1.0, (int)std::round(std::log2(std::fabs(b.lo))))) ||
                               (b.raw && a.lo == a.hi && std::fabs(a.lo) == std::ldexp(1.0, (int)std::round(std::log2(std::fabs(a.lo))))));
    e.exact = (a.exact && b.exact && !a.raw && !b.raw && fitsF32(e.maxAbs(), e.frac)) ||
              (rawOk && a.exact && b.exact);
    e.raw = rawOk && e.exact;
  }
  return e;
}

/// Multiplies a float by a power of two so that |value| <= limit (exactness
/// is kept).
E Generator::scaleDown(E e, double limit) {
  if (e.maxAbs() <= limit)
    return e;
  int k = 0;
  while (e.maxAbs() * std::ldexp(1.0, -k) > limit)
    ++k;
  E c = floatLit(std::ldexp(1.0, -k));
  if (e.ty == Ty::Int)
    e = toFloatView(e);
  E r = chance(0.5) || k > 10 ? binArith(e, c, '*') : [&] {
    E d = floatLit(std::ldexp(1.0, k));
    E q;
    q.ty = Ty::Float;
    q.s = paren(e, PMul) + " / " + paren(d, PMul + 1);
    q.prec = PMul;
    q.lo = e.lo / d.lo;
    q.hi = e.hi / d.lo;
    q.frac = e.frac + k;
    q.exact = e.exact && !e.raw;
    q.raw = e.raw && e.exact;
    q.usesDot = e.usesDot;
    return q;
  }();
  return r;
}

E Generator::intLeaf() {
  std::vector<std::function<E()>> opts;
  opts.push_back([&] { return atom("i", Ty::Int, 0, (double)fk_.Lq.hi - 1); });
  opts.push_back([&] { return atom("j", Ty::Int, 0, (double)fk_.Lk.hi - 1); });
  opts.push_back([&] { return atom("i", Ty::Int, 0, (double)fk_.Lq.hi - 1); });
  opts.push_back([&] { return atom("j", Ty::Int, 0, (double)fk_.Lk.hi - 1); });
  opts.push_back([&] { return atom("b", Ty::Int, 0, (double)fk_.B.hi - 1); });
  opts.push_back([&] { return atom("h", Ty::Int, 0, (double)fk_.H.hi - 1); });
  opts.push_back([&] { return intLit(uni(0, 9)); });
  opts.push_back([&] { return intLit(pick(std::vector<int>{-3, -1, 16, 32, 64, 100})); });
  auto sizes = namedSizes();
  if (!sizes.empty())
    opts.push_back([&, sizes] {
      const Size *s = pick(sizes);
      return atom(s->tok, Ty::Int, (double)s->lo, (double)s->hi);
    });
  if (const ParamInfo *p = findParam("window"))
    opts.push_back([&, p] { return atom(p->name, Ty::Int, 0, 200); });
  if (findAux(AuxInfo::Ids))
    opts.push_back([&] { return auxRead(*findAux(AuxInfo::Ids)); });
  for (const E &l : intLets_)
    opts.push_back([l] { return l; });
  return pick(opts)();
}

/// An index expression provably within [0, extent) for dimension `dimTok`.
E Generator::intIndexFor(const std::string &dimTok) {
  const Size *s = sizeByTok(dimTok);
  E natural;
  bool haveNatural = true;
  if (s == &fk_.B || dimTok == fk_.B.tok)
    natural = atom("b", Ty::Int, 0, (double)fk_.B.hi - 1);
  else if (dimTok == fk_.H.tok)
    natural = atom("h", Ty::Int, 0, (double)fk_.H.hi - 1);
  else if (dimTok == fk_.Lq.tok && (dimTok != fk_.Lk.tok || chance(0.5)))
    natural = atom("i", Ty::Int, 0, (double)fk_.Lq.hi - 1);
  else if (dimTok == fk_.Lk.tok)
    natural = atom("j", Ty::Int, 0, (double)fk_.Lk.hi - 1);
  else
    haveNatural = false;
  int64_t hi = s ? s->hi : std::stoll(dimTok);
  // "S - 1" as text
  std::string last = s && s->named ? s->tok + " - 1" : std::to_string(hi - 1);
  int r = uni(0, 9);
  if (haveNatural && r < 6)
    return natural;
  if (haveNatural && r < 8) {
    int c = uni(1, 5);
    E e;
    e.ty = Ty::Int;
    e.lo = 0;
    e.hi = (double)hi - 1;
    if (chance(0.5))
      e.s = "min(" + natural.s + " + " + std::to_string(c) + ", " + last + ")";
    else
      e.s = "max(" + natural.s + " - " + std::to_string(c) + ", 0)";
    return e;
  }
  // An index may not read the head vectors (Sema): retry until it does not.
  auto readsHeads = [](const E &x) {
    return x.usesDot || x.s.find("dot(") != std::string::npos ||
           x.s.find("sqnorm(") != std::string::npos;
  };
  E x = genInt(2);
  for (int t = 0; t < 20 && readsHeads(x); ++t)
    x = genInt(2);
  if (readsHeads(x))
    x.s = "0";
  E e;
  e.ty = Ty::Int;
  e.lo = 0;
  e.hi = (double)hi - 1;
  e.s = "clamp(" + x.s + ", 0, " + last + ")";
  return e;
}

E Generator::auxRead(const AuxInfo &a) {
  std::string s = a.name + "[";
  for (size_t d = 0; d < a.dims.size(); ++d)
    s += (d ? ", " : "") + intIndexFor(a.dims[d]).s;
  s += "]";
  switch (a.kind) {
  case AuxInfo::Ids:
    return atom(s, Ty::Int, -1, 15);
  case AuxInfo::Flags: {
    E e = atom(s, Ty::Bool, 0, 1);
    return e;
  }
  default: {
    E e = atom(s, Ty::Float, -2, 2);
    if (exactMode_) {
      e.exact = true;
      e.frac = 1; // half-integers
    } else {
      // stored data is exact as itself when the compute type holds it
      bool holds = computeF64_ || a.type != ElemType::F64;
      e.exact = holds;
      e.raw = true;
      e.frac = 40;
    }
    return e;
  }
  }
}

E Generator::genInt(int depth) {
  if (depth <= 0 || chance(0.3))
    return intLeaf();
  for (int attempt = 0; attempt < 8; ++attempt) {
    int r = uni(0, 11);
    E e;
    if (r <= 3) { // + - *
      E a = genInt(depth - 1), b = genInt(depth - 1);
      char op = "+-*"[r % 3];
      if (op == '*' && chance(0.5))
        b = intLit(uni(-3, 4));
      e = binArith(a, b, op);
    } else if (r <= 5) { // / %
      E a = genInt(depth - 1);
      E d;
      int which = uni(0, 3);
      auto sizes = namedSizes();
      if (which == 0 || (which == 1 && sizes.empty())) {
        d = intLit(pick(std::vector<int>{2, 3, 4, 5, 7, 8, 16, 64, -2, -3, -5}));
      } else if (which == 1) {
        const Size *s = pick(sizes);
        d = atom(s->tok, Ty::Int, (double)s->lo, (double)s->hi);
      } else if (which == 2) {
        E x = genInt(depth - 1);
        d = atom("max(" + x.s + ", 1)", Ty::Int, std::max(1.0, x.lo), std::max(1.0, x.hi));
      } else {
        E x = genInt(depth - 1);
        double m = x.maxAbs();
        d = atom("(abs(" + x.s + ") + 1)", Ty::Int, 1, m + 1);
      }
      bool mod = chance(0.5);
      e.ty = Ty::Int;
      e.s = paren(a, PMul) + (mod ? " % " : " / ") + paren(d, PMul + 1);
      e.prec = PMul;
      if (mod) {
        double m = std::max(std::fabs(d.lo), std::fabs(d.hi)) - 1;
        e.lo = d.lo < 0 ? -m : 0;
        e.hi = d.hi > 0 ? m : 0;
      } else {
        double m = a.maxAbs();
        e.lo = -m - 1;
        e.hi = m;
      }
    } else if (r == 6) {
      E a = genInt(depth - 1);
      e = atom("abs(" + a.s + ")", Ty::Int, a.lo < 0 && a.hi > 0 ? 0 : std::min(std::fabs(a.lo), std::fabs(a.hi)), a.maxAbs());
    } else if (r <= 8) {
      E a = genInt(depth - 1), b = genInt(depth - 1);
      bool mn = r == 7;
      e = atom(std::string(mn ? "min(" : "max(") + a.s + ", " + b.s + ")", Ty::Int,
               mn ? std::min(a.lo, b.lo) : std::max(a.lo, b.lo),
               mn ? std::min(a.hi, b.hi) : std::max(a.hi, b.hi));
    } else if (r == 9) {
      E a = genInt(depth - 1);
      int lo = uni(-5, 10), hi = lo + uni(0, 40);
      e = atom("clamp(" + a.s + ", " + std::to_string(lo) + ", " + std::to_string(hi) + ")",
               Ty::Int, lo, hi);
    } else if (r == 10) {
      E c = genBool(depth - 1), a = genInt(depth - 1), b = genInt(depth - 1);
      e = atom("select(" + c.s + ", " + a.s + ", " + b.s + ")", Ty::Int, std::min(a.lo, b.lo),
               std::max(a.hi, b.hi));
    } else {
      E a = genInt(depth - 1);
      e.ty = Ty::Int;
      e.s = "-" + wrap(a, PAtom);
      e.prec = PUnary;
      e.lo = -a.hi;
      e.hi = -a.lo;
    }
    if (e.maxAbs() <= 100000)
      return e;
  }
  return intLeaf();
}

E Generator::floatLeaf(bool requireExact) {
  std::vector<std::function<E()>> opts;
  double Dmax = (double)fk_.D.hi;
  std::string Dtok = fk_.D.tok;
  if (exactMode_) {
    // half-integer q, k in [-2, 2]
    auto dot = [&] {
      E e = atom(chance(0.8) ? "dot(q, k)" : "dot(k, q)", Ty::Float, -4 * Dmax, 4 * Dmax);
      e.frac = 2;
      e.exact = true;
      e.usesDot = true;
      return e;
    };
    opts.push_back(dot);
    opts.push_back(dot);
    opts.push_back(dot);
    opts.push_back([&] {
      E e = atom(chance(0.5) ? "sqnorm(q)" : "sqnorm(k)", Ty::Float, 0, 4 * Dmax);
      e.frac = 2;
      e.exact = true;
      e.usesDot = true;
      return e;
    });
    opts.push_back([&] { return floatLit(pick(std::vector<double>{0.5, 1.0, 2.0, -1.5, 0.25, 3.0, -0.75})); });
  } else {
    double qs = fk_.qScale;
    double dotB = std::min(Dmax * qs, 1.6 * std::sqrt(Dmax) * qs);
    auto dot = [&, dotB] {
      E e = atom(chance(0.8) ? "dot(q, k)" : "dot(k, q)", Ty::Float, -dotB, dotB);
      e.exact = false;
      e.usesDot = true;
      return e;
    };
    opts.push_back(dot);
    opts.push_back(dot);
    opts.push_back([&, qs, Dtok] {
      E e = atom("dot(q, k) * rsqrt(" + Dtok + ")", Ty::Float, -1.6 * qs, 1.6 * qs);
      e.prec = PMul;
      e.exact = false;
      e.usesDot = true;
      return e;
    });
    opts.push_back([&, qs] {
      bool isQ = chance(0.5);
      double m = std::min(Dmax * (isQ ? qs * qs : 1.0), (isQ ? qs * qs : 1.0) * (Dmax / 3 + 3 * std::sqrt(Dmax)));
      E e = atom(isQ ? "sqnorm(q)" : "sqnorm(k)", Ty::Float, 0, m);
      e.exact = false;
      e.usesDot = true;
      return e;
    });
    opts.push_back([&] { return floatLit(pick(std::vector<double>{0.5, 1.0, 2.0, -1.5, 0.25, 3.0, 0.1, -0.7, 1e-3})); });
  }
  opts.push_back([&] { return toFloatView(intLeaf()); });
  if (const AuxInfo *a = findAux(AuxInfo::Bias))
    opts.push_back([&, a] { return auxRead(*a); });
  if (const ParamInfo *p = findParam("scale"))
    opts.push_back([&, p] {
      E e = atom(p->name, Ty::Float, 0.5, 1.75);
      e.exact = true;
      e.frac = 2;
      return e;
    });
  for (const E &l : floatLets_)
    opts.push_back([l] { return l; });
  for (int attempt = 0; attempt < 20; ++attempt) {
    E e = pick(opts)();
    if (!requireExact || e.exact)
      return scaleDown(e, 32);
  }
  return floatLit(1.0);
}

/// A float denominator bounded away from 0 (|d| >= 0.5) and well
/// conditioned.
E Generator::genDenominator(int depth, bool requireExact) {
  if (requireExact || chance(0.35))
    return floatLit(pick(std::vector<double>{2.0, 4.0, -2.0, 0.5, 8.0, 0.25}));
  int r = uni(0, 4);
  if (r == 0) {
    E c = floatLit(pick(std::vector<double>{3.0, -1.5, 0.75, 7.0, 10.0}));
    return c;
  }
  if (r == 1) {
    auto sizes = namedSizes();
    if (!sizes.empty()) {
      const Size *s = pick(sizes);
      return atom(s->tok, Ty::Int, (double)s->lo, (double)s->hi);
    }
  }
  E x = scaleDown(genFloat(depth - 1, false), 8);
  if (r == 2) {
    E e = atom("(1.0 + abs(" + x.s + "))", Ty::Float, 1, 1 + x.maxAbs());
    e.exact = false;
    e.usesDot = x.usesDot;
    return e;
  }
  E e = atom("(1.5 + tanh(" + x.s + "))", Ty::Float, 0.5, 2.5);
  e.exact = false;
  e.usesDot = x.usesDot;
  return e;
}

E Generator::genFloat(int depth, bool requireExact) {
  if (depth <= 0 || chance(0.25))
    return floatLeaf(requireExact);
  for (int attempt = 0; attempt < 12; ++attempt) {
    int r = uni(0, 21);
    bool exactOnly = requireExact;
    E e;
    auto operand = [&](int d) {
      if (chance(0.2))
        return toFloatView(genInt(std::min(d, 2)));
      return genFloat(d, exactOnly);
    };
    if (r <= 5) { // + - *
      char op = "+-*"[r % 3];
      E a = operand(depth - 1), b = operand(depth - 1);
      if (op == '*') {
        a = scaleDown(a, 8);
        b = chance(0.4) ? floatLit(pick(std::vector<double>{0.5, 2.0, -1.0, 0.25, 1.5, -0.125}))
                        : scaleDown(b, 4);
        if (chance(0.5))
          std::swap(a, b);
      }
      e = binArith(a, b, op);
    } else if (r <= 7) { // division
      E a = scaleDown(operand(depth - 1), 8);
      E d = genDenominator(depth - 1, exactOnly);
      double dmin = std::min(std::fabs(d.lo), std::fabs(d.hi));
      if (d.lo < 0 && d.hi > 0)
        continue;
      if (dmin < 0.2 || a.maxAbs() / (dmin * dmin) > 16)
        a = scaleDown(a, std::max(0.5, 16 * dmin * dmin));
      E af = toFloatView(a);
      if (a.ty == Ty::Int && d.ty == Ty::Int)
        continue; // that would be integer division
      e.ty = Ty::Float;
      e.s = paren(af, PMul) + " / " + paren(d, PMul + 1);
      e.prec = PMul;
      double c[4] = {af.lo / d.lo, af.lo / d.hi, af.hi / d.lo, af.hi / d.hi};
      e.lo = *std::min_element(c, c + 4);
      e.hi = *std::max_element(c, c + 4);
      e.usesDot = af.usesDot || d.usesDot;
      // exact only for a power-of-two constant divisor
      bool pow2 = d.lo == d.hi && d.ty == Ty::Float &&
                  std::fabs(d.lo) == std::ldexp(1.0, (int)std::round(std::log2(std::fabs(d.lo))));
      e.frac = af.frac + (pow2 ? std::max(0, (int)std::round(std::log2(std::fabs(d.lo)))) : 0);
      e.exact = pow2 && af.exact && !af.raw && fitsF32(e.maxAbs(), e.frac);
    } else if (r <= 9) { // min / max
      E a = operand(depth - 1), b = operand(depth - 1);
      if (a.ty == Ty::Int && b.ty == Ty::Int)
        b = floatLit(0.5);
      bool mn = r == 8;
      e = call(mn ? "min" : "max", {a, b}, Ty::Float, mn ? std::min(a.lo, b.lo) : std::max(a.lo, b.lo),
               mn ? std::min(a.hi, b.hi) : std::max(a.hi, b.hi));
      E fa = toFloatView(a), fb = toFloatView(b);
      e.exact = fa.exact && fb.exact;
      e.raw = fa.raw || fb.raw;
      e.frac = std::max(fa.frac, fb.frac);
    } else if (r == 10) { // abs
      E a = genFloat(depth - 1, exactOnly);
      e = call("abs", {a}, Ty::Float, a.lo < 0 && a.hi > 0 ? 0 : std::min(std::fabs(a.lo), std::fabs(a.hi)),
               a.maxAbs());
      e.exact = a.exact;
      e.raw = a.raw;
      e.frac = a.frac;
    } else if (r == 11) { // clamp
      E a = genFloat(depth - 1, exactOnly);
      double lo = pick(std::vector<double>{-4.0, -1.0, -0.5, 0.0, 1.0});
      double hi = lo + pick(std::vector<double>{0.5, 1.0, 2.0, 8.0});
      E l = floatLit(lo), h = floatLit(hi);
      e = call("clamp", {a, l, h}, Ty::Float, std::max(lo, std::min(a.lo, hi)), std::min(hi, std::max(a.hi, lo)));
      e.exact = a.exact;
      e.raw = a.raw;
      e.frac = std::max(a.frac, 1);
    } else if (r == 12) { // select
      E c = genBool(depth - 1);
      E a = genFloat(depth - 1, exactOnly), b = genFloat(depth - 1, exactOnly);
      e = call("select", {c, a, b}, Ty::Float, std::min(a.lo, b.lo), std::max(a.hi, b.hi));
      e.exact = a.exact && b.exact;
      e.raw = a.raw || b.raw;
      e.frac = std::max(a.frac, b.frac);
    } else if (r == 13) { // unary minus
      E a = genFloat(depth - 1, exactOnly);
      e = a;
      e.s = "-" + wrap(a, PAtom);
      e.prec = PUnary;
      e.lo = -a.hi;
      e.hi = -a.lo;
    } else if (r == 14) { // floor / ceil of an exact value
      E a = genFloat(depth - 1, true);
      if (!a.exact)
        continue;
      bool fl = chance(0.5);
      e = call(fl ? "floor" : "ceil", {a}, Ty::Float, std::floor(a.lo), std::ceil(a.hi));
      e.exact = true;
      e.frac = 0;
    } else if (r == 15) { // float % by a power of two, exact values only
      E a = genFloat(depth - 1, true);
      if (!a.exact || a.raw)
        continue;
      double m = pick(std::vector<double>{2.0, 4.0, 0.5, 8.0});
      E d = floatLit(m);
      e.ty = Ty::Float;
      e.s = paren(a, PMul) + " % " + paren(d, PMul + 1);
      e.prec = PMul;
      e.lo = 0;
      e.hi = m;
      e.frac = std::max(a.frac, 1);
      e.exact = true;
      e.usesDot = a.usesDot;
    } else { // transcendental: continuous only
      if (exactOnly)
        continue;
      E a = genFloat(depth - 1, false);
      int f = uni(0, 9);
      if (f == 0) {
        a = scaleDown(a, 3);
        e = call(chance(0.5) ? "exp" : "exp2", {a}, Ty::Float, std::exp(a.lo), std::exp(a.hi));
        if (e.s[3] == '2') {
          e.lo = std::exp2(a.lo);
          e.hi = std::exp2(a.hi);
        }
      } else if (f <= 2) {
        e = call("tanh", {a}, Ty::Float, std::tanh(a.lo), std::tanh(a.hi));
      } else if (f <= 4) {
        e = call("sigmoid", {a}, Ty::Float, 1 / (1 + std::exp(-a.lo)), 1 / (1 + std::exp(-a.hi)));
      } else if (f <= 7) { // log log2 sqrt rsqrt of a positive, bounded-away argument
        E s = scaleDown(a, 16);
        std::string arg = chance(0.5) ? "0.5 + abs(" + s.s + ")" : "1.0 + " + wrap(s, PAdd + 1) + " * " + wrap(s, PMul + 1);
        double lo = arg[0] == '0' ? 0.5 : 1.0;
        double hi = arg[0] == '0' ? 0.5 + s.maxAbs() : 1.0 + s.maxAbs() * s.maxAbs();
        if (hi > 300)
          continue;
        std::string fn = pick(std::vector<std::string>{"log", "log2", "sqrt", "rsqrt"});
        E x = atom(arg, Ty::Float, lo, hi);
        x.usesDot = a.usesDot;
        double l = 0, h = 0;
        if (fn == "log") l = std::log(lo), h = std::log(hi);
        if (fn == "log2") l = std::log2(lo), h = std::log2(hi);
        if (fn == "sqrt") l = std::sqrt(lo), h = std::sqrt(hi);
        if (fn == "rsqrt") l = 1 / std::sqrt(hi), h = 1 / std::sqrt(lo);
        e = call(fn, {x}, Ty::Float, l, h);
      } else { // pow with a base in [1, 2] or [0.5, 2.5] and a tame exponent
        E base;
        if (chance(0.5)) {
          base = atom("1.0 + sigmoid(" + a.s + ")", Ty::Float, 1, 2);
        } else {
          E s = scaleDown(a, 2);
          base = atom("0.5 + abs(" + s.s + ")", Ty::Float, 0.5, 0.5 + s.maxAbs());
        }
        base.usesDot = a.usesDot;
        E ex = chance(0.5) ? floatLit(pick(std::vector<double>{2.0, 3.0, 0.5, -1.0, -1.5, 1.25}))
                           : scaleDown(genFloat(depth - 1, false), 2);
        double c[4] = {std::pow(base.lo, ex.lo), std::pow(base.lo, ex.hi), std::pow(base.hi, ex.lo),
                       std::pow(base.hi, ex.hi)};
        e = call("pow", {base, ex}, Ty::Float, *std::min_element(c, c + 4), *std::max_element(c, c + 4));
        if (e.maxAbs() > 32)
          continue;
      }
    }
    if (requireExact && !e.exact)
      continue;
    if (!std::isfinite(e.lo) || !std::isfinite(e.hi))
      continue;
    return scaleDown(e, 32);
  }
  return floatLeaf(requireExact);
}

E Generator::comparison(int depth) {
  static const char *ops[] = {"<", "<=", ">", ">=", "==", "!="};
  const char *op = ops[uni(0, 5)];
  E a, b;
  if (chance(0.8)) {
    bool wantIJ = chance(0.75);
    for (int t = 0; t < 6; ++t) {
      a = genInt(depth - 1);
      b = chance(0.4) ? intLit(uni(-2, 70)) : genInt(depth - 1);
      if (!wantIJ || mentionsIJ(a.s + " " + b.s))
        break;
    }
    // equality of two wide integer ranges is almost always false; prefer
    // orderings for them
    if (chance(0.5) && std::string(op) == "==" )
      op = "<=";
  } else {
    // a float comparison on values computed exactly in both types
    a = genFloat(depth - 1, true);
    b = chance(0.6) ? floatLit(pick(std::vector<double>{0.0, 0.5, -1.0, 1.5, 4.0})) : genFloat(depth - 1, true);
    if (!a.exact || !b.exact) {
      a = genInt(depth - 1);
      b = intLit(uni(-2, 70));
    }
  }
  E e;
  e.ty = Ty::Bool;
  e.s = paren(a, PAdd) + " " + op + " " + paren(b, PAdd);
  e.prec = op[0] == '=' || op[0] == '!' ? PEq : PCmp;
  e.usesDot = a.usesDot || b.usesDot;
  return e;
}

E Generator::genBool(int depth) {
  std::vector<std::function<E()>> leaves;
  leaves.push_back([&] { return comparison(depth); });
  leaves.push_back([&] { return comparison(depth); });
  leaves.push_back([&] { return comparison(depth); });
  if (findAux(AuxInfo::Flags))
    leaves.push_back([&] { return auxRead(*findAux(AuxInfo::Flags)); });
  if (findParam("causal"))
    leaves.push_back([&] { return atom("causal", Ty::Bool, 0, 1); });
  // The shapes of real masks: causal, windows, blocks, strides, documents,
  // cross-attention alignment.
  leaves.push_back([&] { return structuredMask(); });
  leaves.push_back([&] { return structuredMask(); });
  for (const E &l : boolLets_)
    leaves.push_back([l] { return l; });
  if (depth <= 0 || chance(0.35))
    return pick(leaves)();
  int r = uni(0, 9);
  E e;
  e.ty = Ty::Bool;
  if (r <= 3) {
    E a = genBool(depth - 1), b = genBool(depth - 1);
    bool isAnd = r <= 1;
    int lvl = isAnd ? PAnd : POr;
    e.s = paren(a, lvl) + (isAnd ? " && " : " || ") + paren(b, lvl + 1);
    e.prec = lvl;
  } else if (r <= 5) {
    E a = genBool(depth - 1);
    e.s = "!" + wrap(a, PAtom);
    e.prec = PUnary;
  } else if (r == 6) {
    E a = genBool(depth - 1), b = genBool(depth - 1);
    // bool equality: both sides must be tighter than ==
    e.s = wrap(a, PCmp) + (chance(0.5) ? " == " : " != ") + wrap(b, PCmp);
    e.prec = PEq;
  } else if (r == 7) {
    E c = genBool(depth - 1), a = genBool(depth - 1), b = genBool(depth - 1);
    e.s = "select(" + c.s + ", " + a.s + ", " + b.s + ")";
  } else if (r == 8) {
    e.s = chance(0.5) ? "true" : "false";
  } else {
    return pick(leaves)();
  }
  return e;
}

E Generator::structuredMask() {
  std::vector<std::string> c;
  std::string n = std::to_string(pick(std::vector<int>{1, 2, 3, 4, 7, 16, 31, 64, 100}));
  c.push_back("j <= i");
  c.push_back("j < i");
  c.push_back("i <= j");
  c.push_back("abs(i - j) <= " + n);
  c.push_back("i - j < " + n);
  c.push_back("i / " + n + " == j / " + n);
  c.push_back("j / " + n + " <= i / " + n);
  c.push_back("j % " + n + " == 0");
  c.push_back("(i - j) % " + n + " == 0");
  c.push_back("i % " + n + " < " + std::to_string(uni(1, 9)));
  c.push_back("j >= " + fk_.Lk.tok + " - " + n);
  c.push_back("j < " + n);
  if (fk_.cross) {
    c.push_back("j * " + fk_.Lq.tok + " <= i * " + fk_.Lk.tok);
    c.push_back("j * " + fk_.Lq.tok + " < (i + 1) * " + fk_.Lk.tok);
    c.push_back("j + " + fk_.Lq.tok + " <= i + " + fk_.Lk.tok); // bottom-right causal
  }
  if (const ParamInfo *p = findParam("window")) {
    c.push_back("i - j < " + p->name);
    c.push_back("j <= i && i - j <= " + p->name);
    c.push_back("abs(i - j) < " + p->name);
    c.push_back("j < " + p->name + " || i - j < " + p->name);
  }
  for (const AuxInfo &a : fk_.aux) {
    if (a.kind == AuxInfo::Ids && !fk_.cross)
      c.push_back(a.name + "[b, i] == " + a.name + "[b, j]");
    if (a.kind == AuxInfo::Ids && !fk_.cross)
      c.push_back(a.name + "[b, i] == " + a.name + "[b, j] && " + a.name + "[b, i] >= 0");
    if (a.kind == AuxInfo::Ids && fk_.cross && a.name == "qdoc")
      c.push_back("qdoc[b, i] == kdoc[b, j]");
    if (a.kind == AuxInfo::Flags)
      c.push_back(a.name + "[b, j] || j <= i");
  }
  E e = atom(pick(c), Ty::Bool, 0, 1);
  e.prec = e.s.find("||") != std::string::npos ? POr : e.s.find("&&") != std::string::npos ? PAnd
           : e.s.find("==") != std::string::npos                                     ? PEq
                                                                                      : PCmp;
  return e;
}

FuzzKernel Generator::generate() {
  FuzzKernel &k = fk_;
  k.name = "fz_" + std::to_string(k.seed);

  // Normalization first: it decides exact mode.
  int nr = uni(0, 19);
  std::string normText;
  if (nr <= 7) {
    k.norm = dsl::NormKind::Softmax;
    normText = chance(0.5) ? "" : "softmax";
  } else if (nr <= 9) {
    k.norm = dsl::NormKind::Sigmoid;
    normText = "sigmoid";
  } else if (nr <= 11) {
    k.norm = dsl::NormKind::Relu;
    normText = "relu";
  } else if (nr <= 12) {
    k.norm = dsl::NormKind::None;
    normText = "none";
  } else if (nr <= 16) {
    k.norm = dsl::NormKind::Hardmax;
    int t = uni(0, 3);
    normText = t == 0 ? "hardmax" : t == 1 ? "hardmax(ties = average)" : t == 2 ? "hardmax(ties = latest)"
                                                                            : "hardmax(ties = first)";
  } else {
    k.norm = dsl::NormKind::TopK;
    normText = "topk(" + std::to_string(pick(std::vector<int>{1, 2, 3, 5, 8, 17, 130})) + ")";
  }
  exactMode_ = k.exact = k.norm == dsl::NormKind::Hardmax || k.norm == dsl::NormKind::TopK;
  bool hasLseNorm = k.norm == dsl::NormKind::Softmax || k.norm == dsl::NormKind::Hardmax ||
                    k.norm == dsl::NormKind::TopK;
  k.lse = hasLseNorm && chance(0.4);

  // Element types.
  auto elem = [&]() {
    int r = uni(0, 9);
    return r <= 5 ? ElemType::F32 : r == 6 ? ElemType::F64 : r == 7 ? ElemType::F16 : ElemType::BF16;
  };
  k.qT = elem();
  k.kT = chance(0.7) ? k.qT : elem();
  k.vT = chance(0.7) ? k.kT : elem();
  computeF64_ = k.qT == ElemType::F64;
  k.qScale = chance(0.5) ? 1.0 : 2.0;

  // Sizes.
  auto named = [](const std::string &tok, int64_t lo, int64_t hi) {
    Size s;
    s.tok = tok;
    s.named = true;
    s.lo = lo;
    s.hi = hi;
    return s;
  };
  auto literal = [](int64_t v) {
    Size s;
    s.tok = std::to_string(v);
    s.lo = s.hi = v;
    return s;
  };
  k.B = chance(0.8) ? named("B", 1, 2) : literal(uni(1, 2));
  int hr = uni(0, 9);
  if (hr <= 3) { // MHA, named
    k.H = named("H", 1, 4);
    k.Hk = k.H;
  } else if (hr <= 4) { // MHA, literal
    k.H = literal(uni(1, 4));
    k.Hk = k.H;
  } else if (hr <= 6) { // GQA, named
    k.H = named("H", 1, 4);
    k.Hk = named("G", 1, 4);
  } else if (hr == 7) { // MQA
    k.H = chance(0.5) ? named("H", 1, 4) : literal(uni(1, 4));
    k.Hk = literal(1);
  } else if (hr == 8) { // literal GQA
    k.H = literal(4);
    k.Hk = literal(2);
  } else { // literal H, named G
    k.H = literal(pick(std::vector<int>{2, 3, 4}));
    k.Hk = named("G", 1, 4);
  }
  k.cross = chance(0.3);
  k.bshd = chance(0.3);
  k.sources = chance(0.15);
  if (k.cross) {
    std::vector<std::pair<std::string, std::string>> names = {{"Lq", "Lk"}, {"T", "N"}, {"M", "L"}};
    auto nm = pick(names);
    k.Lq = named(nm.first, 1, 150);
    k.Lk = named(nm.second, 1, 150);
  } else {
    k.Lq = named(chance(0.8) ? "L" : "S", 1, 150);
    k.Lk = k.Lq;
  }
  int64_t dMax = exactMode_ ? 8 : 40;
  k.D = chance(0.5) ? named("D", 1, dMax) : literal(uni(1, (int)dMax));
  int dv = uni(0, 2);
  k.Dv = dv == 0 ? k.D : dv == 1 ? named(k.D.tok == "E" ? "Dv" : (chance(0.5) ? "Dv" : "E"), 1, 40) : literal(uni(1, 40));

  // Aux tensors.
  if (chance(0.35)) {
    ElemType t = chance(0.8) ? ElemType::I32 : ElemType::I64;
    if (k.cross) {
      k.aux.push_back({"qdoc", t, {k.B.tok, k.Lq.tok}, AuxInfo::Ids});
      k.aux.push_back({"kdoc", t, {k.B.tok, k.Lk.tok}, AuxInfo::Ids});
    } else {
      k.aux.push_back({chance(0.5) ? "doc" : "seg", t, {k.B.tok, k.Lq.tok}, AuxInfo::Ids});
    }
  }
  if (chance(0.2))
    k.aux.push_back({"flag", ElemType::Bool, {k.B.tok, k.Lk.tok}, AuxInfo::Flags});
  if (chance(0.3)) {
    ElemType t = pick(std::vector<ElemType>{ElemType::F32, ElemType::F32, ElemType::F16, ElemType::F64, ElemType::BF16});
    if (chance(0.5))
      k.aux.push_back({"bias", t, {k.H.tok}, AuxInfo::Bias});
    else
      k.aux.push_back({"bias", t, {k.Lk.tok}, AuxInfo::Bias});
  }
  // Params.
  if (chance(0.35)) {
    ParamInfo p{"window", chance(0.8) ? ElemType::I32 : ElemType::I64, {"0", "1", "2", "5", "16", "64", "100", "200"}, chance(0.5)};
    k.params.push_back(p);
  }
  if (chance(0.25)) {
    ParamInfo p{"scale", computeF64_ && chance(0.5) ? ElemType::F64 : ElemType::F32, {"0.5", "1", "1.75"}, chance(0.5)};
    k.params.push_back(p);
  }
  if (chance(0.15)) {
    ParamInfo p{"causal", ElemType::Bool, {"true", "false", "1", "0"}, chance(0.5)};
    k.params.push_back(p);
  }

  // Text.
  std::ostringstream os;
  auto sep = [&]() { return chance(0.8) ? "\n  " : "; "; };
  auto dims = [](std::vector<std::string> d) {
    std::string s = "[";
    for (size_t n = 0; n < d.size(); ++n)
      s += (n ? ", " : "") + d[n];
    return s + "]";
  };
  os << "# fuzz seed " << k.seed << "\nattention " << k.name << " {\n  ";
  std::ostringstream kv; // k and v: in the kernel, or in each source
  if (k.bshd) {
    os << "q: " << dsl::toString(k.qT) << dims({k.B.tok, k.Lq.tok, k.H.tok, k.D.tok})
       << " at [b, i, h]";
    kv << "k: " << dsl::toString(k.kT) << dims({k.B.tok, k.Lk.tok, k.Hk.tok, k.D.tok})
       << " at [b, j, hk]" << sep();
    kv << "v: " << dsl::toString(k.vT) << dims({k.B.tok, k.Lk.tok, k.Hk.tok, k.Dv.tok})
       << " at [b, j, hk]";
  } else {
    os << "q: " << dsl::toString(k.qT) << dims({k.B.tok, k.H.tok, k.Lq.tok, k.D.tok});
    kv << "k: " << dsl::toString(k.kT) << dims({k.B.tok, k.Hk.tok, k.Lk.tok, k.D.tok}) << sep();
    kv << "v: " << dsl::toString(k.vT) << dims({k.B.tok, k.Hk.tok, k.Lk.tok, k.Dv.tok});
  }
  if (!k.sources)
    os << sep() << kv.str();
  for (const AuxInfo &a : k.aux)
    os << sep() << a.name << ": " << dsl::toString(a.type) << dims(a.dims);
  for (const ParamInfo &p : k.params) {
    os << sep() << "param " << p.name << ": " << dsl::toString(p.type);
    if (p.hasDefault)
      os << " = " << (p.name == "window" ? pick(p.values) : p.name == "scale" ? std::string("0.5") : "true");
  }
  std::string head = os.str();
  os.str("");

  // Lets, then score and mask.
  std::vector<std::string> lets, others;
  int nLets = uni(0, 2);
  for (int n = 0; n < nLets; ++n) {
    std::string name = chance(0.1) ? pick(std::vector<std::string>{"tanh", "min", "abs", "exp"})
                                   : "t" + std::to_string(nextLet_);
    ++nextLet_;
    bool clash = false;
    for (const E &l : intLets_) clash |= l.s == name;
    for (const E &l : floatLets_) clash |= l.s == name;
    for (const E &l : boolLets_) clash |= l.s == name;
    if (clash)
      name = "t" + std::to_string(nextLet_++);
    int r = uni(0, 2);
    E v = r == 0 ? genInt(2) : r == 1 ? genFloat(2, exactMode_) : genBool(2);
    lets.push_back("let " + name + " = " + v.s);
    E leaf = v;
    leaf.s = name;
    leaf.prec = PAtom;
    (r == 0 ? intLets_ : r == 1 ? floatLets_ : boolLets_).push_back(leaf);
  }

  // Score.
  std::string scoreText;
  int sr = uni(0, 9);
  bool defaultOk = !exactMode_ || (!k.D.named && (k.D.lo == 1 || k.D.lo == 4));
  if (sr == 0 && defaultOk) {
    scoreText = ""; // default
  } else {
    int depth = uni(1, 4);
    E s = genFloat(depth, exactMode_);
    if (!s.usesDot && chance(0.7)) {
      E d;
      for (int t = 0; t < 10 && !d.usesDot; ++t)
        d = floatLeaf(exactMode_);
      s = scaleDown(binArith(s, d, chance(0.5) ? '+' : '-'), 32);
    }
    if (exactMode_ && !s.exact)
      s = floatLeaf(true);
    if (s.ty == Ty::Int && chance(0.5))
      s = toFloatView(s);
    // sometimes a -inf score for some pairs
    if (chance(0.1)) {
      E c = genBool(1);
      s.s = "select(" + c.s + ", -inf, " + s.s + ")";
      s.prec = PAtom;
    }
    scoreText = s.s;
  }
  if (!scoreText.empty())
    others.push_back("score = " + scoreText);

  // Mask.
  std::string maskText;
  int mr = uni(0, 9);
  if (mr >= 2) {
    E m = genBool(uni(1, 3));
    // bias towards common structure
    if (mr == 9)
      m.s = "j <= i && (" + m.s + ")";
    maskText = m.s;
    others.push_back("mask = " + maskText);
  }
  // Statements after the declarations in a random order, lets in theirs
  // (score and mask may use a let declared below them).
  std::vector<std::string> stmts = lets, twinStmts;
  if (k.sources) {
    // The same k, v, score and mask in two sources; lets stay shared.
    std::string inner;
    for (const std::string &o : others)
      inner += "\n    " + o;
    for (const char *name : {"a", "b"})
      stmts.insert(stmts.begin() + uni(0, (int)stmts.size()),
                   std::string("source ") + name + " {\n    " + kv.str() + inner + "\n  }");
  } else {
    for (const std::string &o : others)
      stmts.insert(stmts.begin() + uni(0, (int)stmts.size()), o);
  }
  twinStmts = stmts;
  std::vector<std::string> tail;
  if (!normText.empty())
    tail.push_back("normalize = " + normText);
  if (k.lse)
    tail.push_back("output lse");
  for (const std::string &t : tail)
    stmts.insert(stmts.begin() + uni(0, (int)stmts.size()), t);
  std::string body, twinBody;
  for (const std::string &t : stmts)
    body += sep() + t;
  for (const std::string &t : twinStmts)
    twinBody += "\n  " + t;
  k.text = head + body + "\n}\n";
  // Sometimes another kernel in the same file (the JIT picks by name).
  if (chance(0.1)) {
    std::string decoy = "attention decoy_" + std::to_string(k.seed) +
                        " {\n  q: f32[B, H, L, 8]; k: f32[B, H, L, 8]; v: f32[B, H, L, 8]\n"
                        "  mask = j <= i\n}\n";
    k.text = chance(0.5) ? decoy + k.text : k.text + decoy;
    k.multi = true;
  }
  k.twinText = head + twinBody + "\n  normalize = softmax\n  output lse\n}\n";
  return k;
}

// ---------------------------------------------------------------------------
// Inputs

struct Run {
  std::map<std::string, HostTensor> inputs;
  std::map<std::string, std::string> params;
  std::string label;
};

HostTensor uniformT(ElemType type, std::vector<int64_t> shape, std::mt19937_64 &rng, double lo,
                    double hi, bool halfInts) {
  HostTensor t(type, std::move(shape));
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t n = 0; n < t.numel(); ++n) {
    double x = dist(rng);
    t.setDouble(n, halfInts ? std::round(x * 2) / 2 : x);
  }
  return t;
}

int64_t sizeValue(const Size &s, std::map<std::string, int64_t> &env) {
  if (!s.named)
    return s.lo;
  return env.at(s.tok);
}

Run makeRun(const FuzzKernel &k, int which, std::mt19937_64 &rng) {
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto pickv = [&](std::vector<int64_t> v) { return v[uni(0, (int64_t)v.size() - 1)]; };
  std::map<std::string, int64_t> env;
  auto bind = [&](const Size &s, int64_t v) {
    if (s.named && !env.count(s.tok))
      env[s.tok] = v;
  };
  bind(k.B, uni(1, 2));
  // heads: H a multiple of Hk, H <= 4
  {
    int64_t hk = k.Hk.named ? -1 : k.Hk.lo, h = k.H.named ? -1 : k.H.lo;
    if (k.Hk.tok == k.H.tok) {
      bind(k.H, uni(1, 4));
    } else if (hk < 0 && h < 0) {
      int64_t g = uni(1, 2), r = g == 1 ? uni(1, 4) : uni(1, 2);
      env["G"] = g;
      env["H"] = g * r;
    } else if (hk < 0) { // literal H, named G: a divisor of H
      std::vector<int64_t> divs;
      for (int64_t d = 1; d <= h; ++d)
        if (h % d == 0)
          divs.push_back(d);
      env["G"] = pickv(divs);
    } else if (h < 0) { // named H, literal Hk
      env["H"] = hk * uni(1, 4 / hk);
    }
  }
  const std::vector<int64_t> small = {1, 2, 3, 5}, mid = {17, 31, 63, 64, 65}, large = {100, 127, 128, 129, 150};
  const std::vector<int64_t> &bucket = which == 0 ? mid : which == 1 ? large : small;
  bind(k.Lq, pickv(bucket));
  bind(k.Lk, k.cross ? pickv(which == 2 ? mid : bucket) : env.count(k.Lq.tok) ? env[k.Lq.tok] : 1);
  bind(k.D, uni(1, k.D.hi));
  bind(k.Dv, uni(1, 40));
  int64_t B = sizeValue(k.B, env), H = sizeValue(k.H, env), Hk = sizeValue(k.Hk, env),
          Lq = sizeValue(k.Lq, env), Lk = sizeValue(k.Lk, env), D = sizeValue(k.D, env),
          Dv = sizeValue(k.Dv, env);
  Run r;
  bool half = k.exact;
  double qs = half ? 2.0 : k.qScale;
  auto shapeOf = [&](int64_t heads, int64_t len, int64_t d) {
    return k.bshd ? std::vector<int64_t>{B, len, heads, d} : std::vector<int64_t>{B, heads, len, d};
  };
  r.inputs["q"] = uniformT(k.qT, shapeOf(H, Lq, D), rng, -qs, qs, half);
  for (const char *src : k.sources ? std::vector<const char *>{"a.", "b."} : std::vector<const char *>{""}) {
    r.inputs[std::string(src) + "k"] =
        uniformT(k.kT, shapeOf(Hk, Lk, D), rng, half ? -2.0 : -1.0, half ? 2.0 : 1.0, half);
    r.inputs[std::string(src) + "v"] = uniformT(k.vT, shapeOf(Hk, Lk, Dv), rng, -1, 1, false);
  }
  auto dimValue = [&](const std::string &tok) -> int64_t {
    if (env.count(tok))
      return env[tok];
    return std::stoll(tok);
  };
  for (const AuxInfo &a : k.aux) {
    std::vector<int64_t> shape;
    for (const std::string &d : a.dims)
      shape.push_back(dimValue(d));
    HostTensor t(a.type, shape);
    if (a.kind == AuxInfo::Ids) {
      // sorted runs of ids (documents), -1 padding at the end, or random ids
      int64_t L = shape[1];
      bool runs = uni(0, 2) > 0;
      for (int64_t b = 0; b < shape[0]; ++b) {
        int64_t id = -1, left = 0, pad = runs && uni(0, 1) ? uni(0, std::min<int64_t>(L, 7)) : 0;
        for (int64_t x = 0; x < L; ++x) {
          int64_t v;
          if (!runs) {
            v = uni(-1, 4);
          } else if (x >= L - pad) {
            v = -1;
          } else {
            if (left == 0) {
              left = uni(1, std::max<int64_t>(1, L / 3));
              id = std::min<int64_t>(id + 1, 15);
            }
            --left;
            v = id;
          }
          t.setDouble(b * L + x, (double)v);
        }
      }
    } else if (a.kind == AuxInfo::Flags) {
      double p = std::vector<double>{0.1, 0.5, 0.9}[uni(0, 2)];
      std::bernoulli_distribution on(p);
      for (int64_t n = 0; n < t.numel(); ++n)
        t.setDouble(n, on(rng) ? 1 : 0);
    } else {
      t = uniformT(a.type, shape, rng, -2, 2, half);
    }
    r.inputs[a.name] = std::move(t);
  }
  for (const ParamInfo &p : k.params) {
    if (p.hasDefault && uni(0, 2) == 0)
      continue;
    r.params[p.name] = p.values[uni(0, (int64_t)p.values.size() - 1)];
  }
  std::ostringstream os;
  os << "B=" << B << " H=" << H << " Hk=" << Hk << " Lq=" << Lq << " Lk=" << Lk << " D=" << D
     << " Dv=" << Dv;
  for (auto &[n, v] : r.params)
    os << " " << n << "=" << v;
  r.label = os.str();
  return r;
}

// ---------------------------------------------------------------------------
// Comparison

struct Tolerance {
  double rel, abs;
};
Tolerance toleranceFor(ElemType t) {
  switch (t) {
  case ElemType::F64: return {1e-12, 1e-12};
  case ElemType::F16: return {2e-3, 1e-4};
  case ElemType::BF16: return {8e-3, 1e-4};
  default: return {2e-5, 1e-5};
  }
}

/// Compares one run; returns an empty string when it matches, else a report.
std::string runAndCompare(const JitKernel &jk, const dsl::Kernel &twin, const Run &run,
                          int64_t &maskedRows, double &worstRatio) {
  std::ostringstream bad;
  const dsl::Kernel &kd = jk.kernel();
  JitKernel::Call call;
  Status s = jk.prepare(run.inputs, run.params, call);
  if (!s)
    return "prepare failed: " + s.message();
  s = jk.execute(call);
  if (!s)
    return "execute failed: " + s.message();

  bool hasLse = kd.normalize.kind == dsl::NormKind::Softmax ||
                kd.normalize.kind == dsl::NormKind::Hardmax ||
                kd.normalize.kind == dsl::NormKind::TopK;
  HostTensor ref, refLse;
  s = referenceAttention(kd, run.inputs, call.bindings, ref, hasLse ? &refLse : nullptr);
  if (!s)
    return "reference failed: " + s.message();
  // Fully masked rows from the twin (softmax + lse) when the kernel's own
  // normalization has no lse.
  HostTensor maskLse;
  if (!hasLse) {
    Bindings tb;
    s = bindArguments(twin, run.inputs, run.params, tb);
    if (!s)
      return "twin bind failed: " + s.message();
    HostTensor tout;
    s = referenceAttention(twin, run.inputs, tb, tout, &maskLse);
    if (!s)
      return "twin reference failed: " + s.message();
  }
  const HostTensor &rowLse = hasLse ? refLse : maskLse;

  const Bindings &bd = call.bindings;
  const HostTensor &out = call.out;
  if (out.shape != std::vector<int64_t>{bd.B, bd.H, bd.Lq, bd.Dv} || out.type != kd.q->type)
    return "out has shape/type " + out.describe();
  double maxRef = 0;
  for (int64_t n = 0; n < ref.numel(); ++n)
    maxRef = std::max(maxRef, std::fabs(ref.getDouble(n)));
  Tolerance tol = toleranceFor(kd.q->type);
  double bound = std::max(tol.rel * maxRef, tol.abs);
  double maxErr = 0, maxLseErr = 0;
  int reported = 0, mismatches = 0;
  int64_t rows = bd.B * bd.H * bd.Lq;
  maskedRows = 0;
  for (int64_t row = 0; row < rows; ++row) {
    int64_t b = row / (bd.H * bd.Lq), h = row / bd.Lq % bd.H, i = row % bd.Lq;
    bool masked = rowLse.getDouble(row) == -kInf;
    maskedRows += masked;
    for (int64_t d = 0; d < bd.Dv; ++d) {
      int64_t n = row * bd.Dv + d;
      double got = out.getDouble(n), want = ref.getDouble(n);
      double err = std::isnan(got) || std::isnan(want) ? kInf : std::fabs(got - want);
      if (!masked) {
        maxErr = std::max(maxErr, err);
        worstRatio = std::max(worstRatio, err / bound);
      }
      bool wrong = masked ? !(got == 0.0 && want == 0.0) : !(err <= bound);
      if (wrong) {
        ++mismatches;
        if (reported++ < 6)
          bad << "  out[" << b << ", " << h << ", " << i << ", " << d << "] = " << got
              << ", reference " << want << (masked ? " (fully masked row: must be exactly 0)" : "")
              << ", |err| " << err << " > " << bound << "\n";
      }
    }
    if (kd.outputLse) {
      double got = call.lse.getDouble(row), want = refLse.getDouble(row);
      bool wrong;
      if (masked) {
        wrong = !(got == -kInf);
      } else {
        double err = std::isnan(got) ? kInf : std::fabs(got - want);
        maxLseErr = std::max(maxLseErr, err);
        worstRatio = std::max(worstRatio, err / (1e-4 + 2e-6 * std::fabs(want)));
        wrong = !(err <= 1e-4 + 2e-6 * std::fabs(want));
      }
      if (wrong) {
        ++mismatches;
        if (reported++ < 6)
          bad << "  lse[" << b << ", " << h << ", " << i << "] = " << got << ", reference " << want
              << "\n";
      }
    }
  }
  if (kd.outputLse &&
      (call.lse.shape != std::vector<int64_t>{bd.B, bd.H, bd.Lq} || call.lse.type != ElemType::F32))
    bad << "  lse has shape/type " << call.lse.describe() << "\n";
  if (std::getenv("ATTN_FUZZ_VERBOSE"))
    std::printf("    %-60s max|ref| %-10.4g max err %-10.3g (bound %.3g) lse err %-10.3g masked rows %lld\n",
                run.label.c_str(), maxRef, maxErr, bound, maxLseErr, (long long)maskedRows);
  if (mismatches)
    return std::to_string(mismatches) + " mismatches (max|ref| " + std::to_string(maxRef) + ")\n" +
           bad.str();
  return bad.str();
}

uint64_t envU64(const char *name, uint64_t dflt) {
  const char *v = std::getenv(name);
  if (!v || !*v)
    return dflt;
  return std::strtoull(v, nullptr, 10);
}

struct Stats {
  int kernels = 0, emitted = 0, compiled = 0, runs = 0, failures = 0;
  int64_t maskedRows = 0, rows = 0;
  double worstRatio = 0; // the largest error / tolerance of a passing run
  uint64_t worstSeed = 0;
  std::map<std::string, int> norms;
};

/// Generates, emits, compiles and runs kernel `seed`; failures are reported
/// with the seed and the source. Returns true when all is well.
bool fuzzOne(uint64_t seed, Stats &st) {
  Generator gen(seed);
  FuzzKernel fk = gen.generate();
  ++st.kernels;
  ++st.norms[dsl::toString(fk.norm)];
  bool verbose = std::getenv("ATTN_FUZZ_VERBOSE") != nullptr;
  std::fprintf(stderr, "[fuzz] seed %llu (%s%s)\n", (unsigned long long)seed,
               dsl::toString(fk.norm), fk.lse ? ", lse" : "");
  if (verbose)
    std::fprintf(stderr, "%s", fk.text.c_str());
  if (const char *dir = std::getenv("ATTN_FUZZ_DUMP")) {
    fs::create_directories(dir);
    std::ofstream(fs::path(dir) / (fk.name + ".attn")) << fk.text;
  }
  std::string repro = "\nreproduce: ATTN_FUZZ_SEED=" + std::to_string(seed) +
                      " ATTN_FUZZ_KERNELS=1\n--- kernel ---\n" + fk.text + "--------------\n";
  SourceFile src{fk.name + ".attn", fk.text};

  // 1. The front end must accept it (the generator writes valid kernels).
  dsl::DiagnosticEngine diag(src.fileName, src.text);
  auto mod = dsl::parseAndCheck(src.fileName, src.text, diag);
  if (!mod) {
    ADD_FAILURE() << "seed " << seed << ": the generated kernel does not check:\n"
                  << diag.render() << repro;
    ++st.failures;
    return false;
  }
  dsl::DiagnosticEngine tdiag(src.fileName, fk.twinText);
  auto twin = dsl::parseAndCheck(src.fileName, fk.twinText, tdiag);
  if (!twin) {
    ADD_FAILURE() << "seed " << seed << ": the twin does not check:\n" << tdiag.render() << repro;
    ++st.failures;
    return false;
  }

  // 2. Every stage of `attnc emit` (stmt, the slowest, for every fourth
  // kernel): never a crash; a valid kernel must lower.
  std::vector<std::pair<Stage, const char *>> stages = {
      {Stage::Ast, "ast"}, {Stage::Mlir, "mlir"}, {Stage::MlirOpt, "mlir-opt"}, {Stage::Halide, "halide"}};
  if (seed % 4 == 0)
    stages.push_back({Stage::Stmt, "stmt"});
  for (auto [stage, name] : stages) {
    std::string out, err;
    CompileOptions co;
    if (fk.multi)
      co.kernel = fk.name;
    if (!emitStage(src, stage, co, out, err) || out.empty()) {
      ADD_FAILURE() << "seed " << seed << ": emit --stage " << name << " failed:\n" << err << repro;
      ++st.failures;
      return false;
    }
  }
  ++st.emitted;

  // 3. JIT compile.
  JitOptions opts;
  opts.cacheDir = CacheDir::path().string();
  if (fk.multi)
    opts.kernel = fk.name;
  std::string messages;
  auto jk = JitKernel::compile(src, opts, messages);
  if (!jk) {
    ADD_FAILURE() << "seed " << seed << ": JIT compile failed:\n" << messages << repro;
    ++st.failures;
    return false;
  }
  ++st.compiled;

  // 4. Runs at three shapes.
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  bool good = true;
  for (int which = 0; which < 3; ++which) {
    Run run = makeRun(fk, which, rng);
    int64_t masked = 0;
    double ratio = 0;
    std::string report = runAndCompare(*jk, twin->kernels[0], run, masked, ratio);
    ++st.runs;
    st.maskedRows += masked;
    st.rows += run.inputs.at("q").shape[0] * run.inputs.at("q").shape[1] * run.inputs.at("q").shape[2];
    if (report.empty() && ratio > st.worstRatio) {
      st.worstRatio = ratio;
      st.worstSeed = seed;
    }
    if (!report.empty()) {
      ADD_FAILURE() << "seed " << seed << ", run " << which << " (" << run.label << "): " << report
                    << repro;
      good = false;
    }
  }
  if (!good)
    ++st.failures;
  return good;
}

TEST(Fuzz, GeneratorIsDeterministicAndValid) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    FuzzKernel a = Generator(seed).generate(), b = Generator(seed).generate();
    ASSERT_EQ(a.text, b.text);
    dsl::DiagnosticEngine diag("g.attn", a.text);
    auto mod = dsl::parseAndCheck("g.attn", a.text, diag);
    ASSERT_TRUE(mod) << "seed " << seed << ":\n" << diag.render() << a.text;
    // The score and mask the generator meant are the ones that check.
    const dsl::Kernel *k = mod->findKernel(a.name);
    ASSERT_TRUE(k) << a.text;
    EXPECT_EQ(k->normalize.kind, a.norm) << a.text;
    EXPECT_EQ(k->outputLse, a.lse) << a.text;
  }
}

TEST(Fuzz, RandomKernels) {
  uint64_t seed0 = envU64("ATTN_FUZZ_SEED", kDefaultSeed);
  int n = (int)envU64("ATTN_FUZZ_KERNELS", kDefaultKernels);
  Stats st;
  auto t0 = std::chrono::steady_clock::now();
  for (int x = 0; x < n; ++x)
    fuzzOne(seed0 + (uint64_t)x, st);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string norms;
  for (auto &[name, c] : st.norms)
    norms += " " + name + ":" + std::to_string(c);
  std::printf("[fuzz] seeds %llu..%llu: %d kernels (%s), %d emitted, %d compiled, %d runs, "
              "%d failing kernels, %.1f s; fully masked rows %lld of %lld; worst error/tolerance "
              "of a passing run %.3g (seed %llu)\n",
              (unsigned long long)seed0, (unsigned long long)(seed0 + n - 1), st.kernels,
              norms.c_str() + 1, st.emitted, st.compiled, st.runs, st.failures, secs,
              (long long)st.maskedRows, (long long)st.rows, st.worstRatio,
              (unsigned long long)st.worstSeed);
}

} // namespace
