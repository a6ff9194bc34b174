// Unit tests of the mask analysis (MaskAnalysis.h): a brute-force property
// test over random predicates, exactness on the affine examples, interval
// corner cases (floor division/modulo of negatives, overflow), load
// summaries and the concrete mask evaluator.
#include "attn/compiler/MaskAnalysis.h"
#include "attn/compiler/MLIRGen.h"
#include "attn/compiler/Passes.h"
#include "attn/dsl/Sema.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

#include <climits>
#include <functional>
#include <memory>
#include <random>
#include <sstream>

using namespace attn;

namespace {

/// One kernel compiled from `.attn` text through MLIRGen and the default
/// pipeline (canonicalize, cse, analyses), as every compile does.
struct Compiled {
  mlir::MLIRContext ctx;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  KernelOp kernel;
};

std::unique_ptr<Compiled> compile(const std::string &source, bool optimize = true) {
  auto c = std::make_unique<Compiled>();
  dsl::DiagnosticEngine diag("test.attn", source);
  std::optional<dsl::Module> ast = dsl::parseAndCheck("test.attn", source, diag);
  if (!ast) {
    ADD_FAILURE() << diag.render() << "\nin:\n" << source;
    return nullptr;
  }
  c->module = mlirGen(c->ctx, *ast);
  if (!c->module) {
    ADD_FAILURE() << "mlirGen failed";
    return nullptr;
  }
  if (optimize) {
    mlir::PassManager pm(&c->ctx);
    buildDefaultPipeline(pm);
    if (mlir::failed(pm.run(*c->module))) {
      ADD_FAILURE() << "pipeline failed";
      return nullptr;
    }
  }
  c->module->walk([&](KernelOp k) { c->kernel = k; });
  return c;
}

/// A kernel with self-attention over L (or cross attention over Lq x Lk),
/// an i32 param `p` and the given mask.
std::string kernelText(const std::string &mask, bool cross = false,
                       const std::string &extraDecls = "") {
  std::string lq = cross ? "Lq" : "L", lk = cross ? "Lk" : "L";
  return "attention t {\n  q: f32[B, H, " + lq + ", 8]; k: f32[B, H, " + lk +
         ", 8]; v: f32[B, H, " + lk + ", 8]\n  param p: i32 = 1\n" + extraDecls +
         "  mask = " + mask + "\n}\n";
}

using Pred = std::function<bool(int64_t i, int64_t j)>;

/// The exact tile map of a predicate, by brute force.
std::vector<TileClass> bruteForce(const Pred &f, int64_t Lq, int64_t Lk, int tq, int tk) {
  std::vector<TileClass> tiles;
  for (int64_t i0 = 0; i0 < Lq; i0 += tq)
    for (int64_t j0 = 0; j0 < Lk; j0 += tk) {
      bool any = false, all = true;
      for (int64_t i = i0; i < std::min(Lq, i0 + tq); ++i)
        for (int64_t j = j0; j < std::min(Lk, j0 + tk); ++j) {
          bool m = f(i, j);
          any |= m;
          all &= m;
        }
      tiles.push_back(all ? TileClass::Full : any ? TileClass::Partial : TileClass::Empty);
    }
  return tiles;
}

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
int64_t floorMod(int64_t a, int64_t b) { return a - floorDiv(a, b) * b; }

//===----------------------------------------------------------------------===//
// Random predicates
//===----------------------------------------------------------------------===//

struct Env {
  int64_t i, j, Lq, Lk, p;
};

/// A random integer or boolean expression with its text and its meaning
/// (int64, floor division; the sizes keep every value far from overflow).
struct Gen {
  std::mt19937 rng;
  explicit Gen(unsigned seed) : rng(seed) {}
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }
  int64_t range(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

  struct IntE {
    std::string text;
    std::function<int64_t(const Env &)> eval;
  };
  struct BoolE {
    std::string text;
    std::function<bool(const Env &)> eval;
  };

  IntE leaf() {
    switch (pick(6)) {
    case 0:
    case 1: return {"i", [](const Env &e) { return e.i; }};
    case 2:
    case 3: return {"j", [](const Env &e) { return e.j; }};
    case 4: {
      int64_t c = range(-6, 6);
      return {c < 0 ? "(" + std::to_string(c) + ")" : std::to_string(c),
              [c](const Env &) { return c; }};
    }
    default:
      switch (pick(3)) {
      case 0: return {"Lq", [](const Env &e) { return e.Lq; }};
      case 1: return {"Lk", [](const Env &e) { return e.Lk; }};
      default: return {"p", [](const Env &e) { return e.p; }};
      }
    }
  }

  /// A divisor that is never zero: a constant, or +-(i + c) / +-(j + c).
  IntE divisor() {
    if (pick(3)) {
      int64_t c = range(1, 6) * (pick(4) ? 1 : -1);
      return {"(" + std::to_string(c) + ")", [c](const Env &) { return c; }};
    }
    bool useI = pick(2), neg = !pick(3);
    int64_t c = range(1, 3);
    std::string t = std::string("(") + (neg ? "-" : "") + "(" + (useI ? "i" : "j") + " + " +
                    std::to_string(c) + "))";
    return {t, [useI, neg, c](const Env &e) {
              int64_t v = (useI ? e.i : e.j) + c;
              return neg ? -v : v;
            }};
  }

  IntE intExpr(int depth) {
    if (depth == 0)
      return leaf();
    switch (pick(10)) {
    case 0: case 1: {
      IntE a = intExpr(depth - 1), b = intExpr(depth - 1);
      bool add = pick(2);
      return {"(" + a.text + (add ? " + " : " - ") + b.text + ")",
              [a, b, add](const Env &e) { return add ? a.eval(e) + b.eval(e) : a.eval(e) - b.eval(e); }};
    }
    case 2: {
      IntE a = intExpr(depth - 1), b = pick(2) ? leaf() : intExpr(depth - 1);
      return {"(" + a.text + " * " + b.text + ")",
              [a, b](const Env &e) { return a.eval(e) * b.eval(e); }};
    }
    case 3: {
      IntE a = intExpr(depth - 1), d = divisor();
      return {"(" + a.text + " / " + d.text + ")",
              [a, d](const Env &e) { return floorDiv(a.eval(e), d.eval(e)); }};
    }
    case 4: case 5: {
      IntE a = intExpr(depth - 1), d = divisor();
      return {"(" + a.text + " % " + d.text + ")",
              [a, d](const Env &e) { return floorMod(a.eval(e), d.eval(e)); }};
    }
    case 6: {
      IntE a = intExpr(depth - 1);
      return {"abs(" + a.text + ")", [a](const Env &e) { return std::abs(a.eval(e)); }};
    }
    case 7: {
      IntE a = intExpr(depth - 1), b = intExpr(depth - 1);
      bool mn = pick(2);
      return {std::string(mn ? "min(" : "max(") + a.text + ", " + b.text + ")",
              [a, b, mn](const Env &e) {
                return mn ? std::min(a.eval(e), b.eval(e)) : std::max(a.eval(e), b.eval(e));
              }};
    }
    case 8: {
      IntE a = intExpr(depth - 1);
      return {"(-" + a.text + ")", [a](const Env &e) { return -a.eval(e); }};
    }
    default:
      return leaf();
    }
  }

  BoolE compare(int depth) {
    IntE a = intExpr(depth), b = intExpr(depth);
    static const char *ops[] = {"==", "!=", "<", "<=", ">", ">="};
    int op = pick(6);
    return {"(" + a.text + " " + ops[op] + " " + b.text + ")", [a, b, op](const Env &e) {
              int64_t x = a.eval(e), y = b.eval(e);
              switch (op) {
              case 0: return x == y;
              case 1: return x != y;
              case 2: return x < y;
              case 3: return x <= y;
              case 4: return x > y;
              default: return x >= y;
              }
            }};
  }

  BoolE boolExpr(int depth) {
    if (depth == 0 || pick(3) == 0)
      return compare(pick(3));
    switch (pick(4)) {
    case 0: {
      BoolE a = boolExpr(depth - 1), b = boolExpr(depth - 1);
      return {"(" + a.text + " && " + b.text + ")",
              [a, b](const Env &e) { return a.eval(e) && b.eval(e); }};
    }
    case 1: {
      BoolE a = boolExpr(depth - 1), b = boolExpr(depth - 1);
      return {"(" + a.text + " || " + b.text + ")",
              [a, b](const Env &e) { return a.eval(e) || b.eval(e); }};
    }
    case 2: {
      BoolE a = boolExpr(depth - 1);
      return {"!" + a.text, [a](const Env &e) { return !a.eval(e); }};
    }
    default:
      return compare(pick(3));
    }
  }
};

/// Random predicates, sizes and tiles: no Empty tile holds a participating
/// pair, no Full tile a non-participating one, and the concrete evaluator
/// agrees with the brute force everywhere.
TEST(MaskAnalysisProperty, TileClassesAreSoundForRandomPredicates) {
  Gen gen(20240611);
  int cases = 0, exactTiles = 0, tiles = 0;
  for (int n = 0; n < 2500; ++n) {
    Gen::BoolE pred = gen.boolExpr(2);
    bool cross = gen.pick(3) == 0;
    int64_t Lq = gen.range(1, 20), Lk = cross ? gen.range(1, 20) : Lq, p = gen.range(-4, 8);
    int tq = static_cast<int>(gen.range(1, 8)), tk = static_cast<int>(gen.range(1, 8));
    // Always Lq x Lk (the predicates read both); self-attention has Lq == Lk.
    auto c = compile(kernelText(pred.text, /*cross=*/true));
    ASSERT_TRUE(c) << pred.text;
    std::map<std::string, int64_t> sizes{{"Lq", Lq}, {"Lk", Lk}};
    std::map<std::string, int64_t> params{{"p", p}};
    Pred f = [&](int64_t i, int64_t j) { return pred.eval({i, j, Lq, Lk, p}); };
    std::vector<TileClass> got = classifyTiles(c->kernel, sizes, params, tq, tk, Lq, Lk);
    std::vector<TileClass> want = bruteForce(f, Lq, Lk, tq, tk);
    ASSERT_EQ(got.size(), want.size());
    for (size_t t = 0; t < got.size(); ++t) {
      ++tiles;
      exactTiles += got[t] == want[t];
      if (got[t] != TileClass::Partial) {
        ASSERT_EQ(got[t], want[t]) << "tile " << t << " of " << pred.text << " Lq=" << Lq
                                   << " Lk=" << Lk << " p=" << p << " tile " << tq << "x" << tk;
      }
    }
    MaskEvaluator eval(c->kernel, sizes, params);
    ASSERT_TRUE(eval.ok()) << eval.error() << " in " << pred.text;
    for (int64_t i = 0; i < Lq; ++i)
      for (int64_t j = 0; j < Lk; ++j)
        ASSERT_EQ(eval.eval(0, 0, i, j), std::optional<bool>(f(i, j)))
            << pred.text << " at i=" << i << " j=" << j << " p=" << p;
    ++cases;
  }
  EXPECT_EQ(cases, 2500);
  RecordProperty("tiles", tiles);
  RecordProperty("exact_tiles", exactTiles);
  // Not a requirement, a sanity check that the analysis is not trivially
  // conservative: most tiles of random predicates are classified exactly.
  EXPECT_GT(exactTiles, tiles / 2);
}

/// The same without canonicalization: the analysis must be sound on the IR
/// exactly as MLIRGen emits it too.
TEST(MaskAnalysisProperty, SoundWithoutCanonicalization) {
  Gen gen(7);
  for (int n = 0; n < 500; ++n) {
    Gen::BoolE pred = gen.boolExpr(2);
    int64_t L = gen.range(1, 16), p = gen.range(-4, 8);
    int tq = static_cast<int>(gen.range(1, 6)), tk = static_cast<int>(gen.range(1, 6));
    auto c = compile(kernelText(pred.text, /*cross=*/true), /*optimize=*/false);
    ASSERT_TRUE(c);
    Pred f = [&](int64_t i, int64_t j) { return pred.eval({i, j, L, L, p}); };
    std::vector<TileClass> got =
        classifyTiles(c->kernel, {{"Lq", L}, {"Lk", L}}, {{"p", p}}, tq, tk, L, L);
    std::vector<TileClass> want = bruteForce(f, L, L, tq, tk);
    for (size_t t = 0; t < got.size(); ++t)
      if (got[t] != TileClass::Partial) {
        ASSERT_EQ(got[t], want[t]) << pred.text;
      }
  }
}

//===----------------------------------------------------------------------===//
// Exactness on the affine examples
//===----------------------------------------------------------------------===//

struct Example {
  const char *name, *mask;
  Pred pred;
  std::map<std::string, int64_t> params;
  bool cross = false;
};

std::vector<Example> affineExamples() {
  return {
      {"causal", "j <= i", [](int64_t i, int64_t j) { return j <= i; }, {}},
      {"window", "j <= i && i - j < w", [](int64_t i, int64_t j) { return j <= i && i - j < 5; }, {{"w", 5}}},
      {"prefix", "j <= i || j < w", [](int64_t i, int64_t j) { return j <= i || j < 6; }, {{"w", 6}}},
      {"dilated", "(i - j) % 4 == 0", [](int64_t i, int64_t j) { return floorMod(i - j, 4) == 0; }, {}},
      {"dilated_window", "j <= i && (i - j) % w == 0 && i - j < 3 * w",
       [](int64_t i, int64_t j) { return j <= i && floorMod(i - j, 3) == 0 && i - j < 9; }, {{"w", 3}}},
      {"neighborhood", "abs(i / w - j / w) <= 1 && abs(i % w - j % w) <= 1",
       [](int64_t i, int64_t j) {
         return std::abs(floorDiv(i, 5) - floorDiv(j, 5)) <= 1 && std::abs(floorMod(i, 5) - floorMod(j, 5)) <= 1;
       },
       {{"w", 5}}},
      {"cross", "j * Lq < (i + 1) * Lk", [](int64_t i, int64_t j) { return j * 24 < (i + 1) * 40; }, {}, true},
  };
}

std::string withParam(const Example &e) {
  std::string decls;
  for (auto &[name, v] : e.params)
    decls += "  param " + name + ": i32\n";
  return kernelText(e.mask, e.cross, decls);
}

/// 1x1 tiles are points: every affine example is classified exactly.
TEST(MaskAnalysisExact, PointTilesAreExact) {
  for (const Example &e : affineExamples()) {
    auto c = compile(withParam(e));
    ASSERT_TRUE(c);
    EXPECT_STREQ(toString(maskKind(c->kernel)), "affine") << e.name;
    int64_t Lq = e.cross ? 24 : 40, Lk = 40;
    std::map<std::string, int64_t> sizes{{"L", 40}, {"Lq", 24}, {"Lk", 40}};
    EXPECT_EQ(classifyTiles(c->kernel, sizes, e.params, 1, 1, Lq, Lk), bruteForce(e.pred, Lq, Lk, 1, 1))
        << e.name;
  }
}

/// Tiles larger than a point: exact for the examples whose conjuncts are
/// single comparisons of interval images (causal, window, prefix, cross).
TEST(MaskAnalysisExact, BandMasksAreExactForEveryTileShape) {
  for (const Example &e : affineExamples()) {
    std::string n = e.name;
    if (n != "causal" && n != "window" && n != "prefix" && n != "cross")
      continue;
    auto c = compile(withParam(e));
    ASSERT_TRUE(c);
    int64_t Lq = e.cross ? 24 : 40, Lk = 40;
    std::map<std::string, int64_t> sizes{{"L", 40}, {"Lq", 24}, {"Lk", 40}};
    for (int tq : {2, 3, 4, 7, 8, 16})
      for (int tk : {1, 4, 5, 8, 13})
        EXPECT_EQ(classifyTiles(c->kernel, sizes, e.params, tq, tk, Lq, Lk),
                  bruteForce(e.pred, Lq, Lk, tq, tk))
            << e.name << " " << tq << "x" << tk;
  }
}

TEST(MaskAnalysisExact, CausalTilesAboveTheDiagonalAreEmptyBelowFull) {
  auto c = compile(kernelText("j <= i"));
  ASSERT_TRUE(c);
  const int64_t L = 1024;
  const int T = 64;
  std::vector<TileClass> tiles = classifyTiles(c->kernel, {{"L", L}}, {}, T, T, L, L);
  ASSERT_EQ(tiles.size(), 16u * 16u);
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k)
      EXPECT_EQ(tiles[r * 16 + k],
                k > r ? TileClass::Empty : k < r ? TileClass::Full : TileClass::Partial);
  EXPECT_EQ(formatTileMap(std::vector<TileClass>(tiles.begin(), tiles.begin() + 32), 16),
            "PEEEEEEEEEEEEEEE/FPEEEEEEEEEEEEEE");
}

TEST(MaskAnalysisExact, ModuloOverATileIsTheExactImage) {
  // i % 8 < 4 over query tiles of 4 rows: rows [0, 3] -> [0, 3], [4, 7] -> [4, 7].
  auto c = compile(kernelText("i % 8 < 4"));
  ASSERT_TRUE(c);
  EXPECT_EQ(formatTileMap(classifyTiles(c->kernel, {{"L", 16}}, {}, 4, 16, 16, 16), 1),
            "F/E/F/E");
  // (i + 6) % 8 over the same rows: [6, 9] wraps past 8 (-> [0, 7]) and
  // [10, 13] -> [2, 5] straddles 4: partial either way.
  auto d = compile(kernelText("(i + 6) % 8 < 4"));
  ASSERT_TRUE(d);
  EXPECT_EQ(formatTileMap(classifyTiles(d->kernel, {{"L", 16}}, {}, 4, 16, 16, 16), 1),
            "P/P/P/P");
}

//===----------------------------------------------------------------------===//
// Interval corner cases
//===----------------------------------------------------------------------===//

/// Classifies a mask of i alone over i in [lo, hi] (j irrelevant).
TileClass classifyI(const std::string &mask, int64_t lo, int64_t hi) {
  auto c = compile(kernelText(mask), /*optimize=*/false);
  if (!c)
    return TileClass::Partial;
  MaskRangeEvaluator eval(c->kernel, {}, {});
  return eval.classify({0, 0}, {0, 0}, {lo, hi}, {0, 0});
}

TEST(MaskAnalysisIntervals, FloorDivisionOfNegatives) {
  // floor(-9 / 4) = -3, floor(-1 / 4) = -1.
  EXPECT_EQ(classifyI("i / 4 >= -3 && i / 4 <= -1", -9, -1), TileClass::Full);
  EXPECT_EQ(classifyI("i / 4 == -3", -9, -9), TileClass::Full);
  EXPECT_EQ(classifyI("i / 4 == -2", -9, -9), TileClass::Empty);
  EXPECT_EQ(classifyI("i / 4 == -1", -4, -1), TileClass::Full);
  // Negative divisor: floor(5 / -4) = -2, floor(9 / -4) = -3.
  EXPECT_EQ(classifyI("i / (-4) >= -3 && i / (-4) <= -2", 5, 9), TileClass::Full);
  EXPECT_EQ(classifyI("i / (-4) == -1", 5, 9), TileClass::Empty);
  EXPECT_EQ(classifyI("i / (-4) == -2", 5, 5), TileClass::Full);
  // A divisor range that holds only positive values.
  EXPECT_EQ(classifyI("i / (i + 1) >= 0 && i / (i + 1) <= 50", 1, 100), TileClass::Full);
}

TEST(MaskAnalysisIntervals, FloorModuloOfNegatives) {
  // -1 mod 4 = 3; [-3, -1] mod 4 = [1, 3] without wrapping.
  EXPECT_EQ(classifyI("i % 4 == 3", -1, -1), TileClass::Full);
  EXPECT_EQ(classifyI("i % 4 >= 1", -3, -1), TileClass::Full);
  EXPECT_EQ(classifyI("i % 4 == 0", -3, -1), TileClass::Empty);
  // [-5, -2] spans 4 values: [0, 3].
  EXPECT_EQ(classifyI("i % 4 == 0", -5, -2), TileClass::Partial);
  EXPECT_EQ(classifyI("i % 4 >= 0 && i % 4 < 4", -1000, 1000), TileClass::Full);
  // [-6, -5] -> {2, 3}; [-5, -4] wraps -> {3, 0}.
  EXPECT_EQ(classifyI("i % 4 >= 2", -6, -5), TileClass::Full);
  EXPECT_EQ(classifyI("i % 4 >= 2", -5, -4), TileClass::Partial);
  // A negative divisor: the result takes its sign: 5 mod -4 = -3.
  EXPECT_EQ(classifyI("i % (-4) == -3", 5, 5), TileClass::Full);
  EXPECT_NE(classifyI("i % (-4) <= 0", 5, 9), TileClass::Empty);
  // Far from zero.
  EXPECT_EQ(classifyI("i % 7 == 2", -2147483648LL + 3, -2147483648LL + 3),
            floorMod(-2147483648LL + 3, 7) == 2 ? TileClass::Full : TileClass::Empty);
}

TEST(MaskAnalysisIntervals, AbsMinMax) {
  EXPECT_EQ(classifyI("abs(i) <= 5", -5, 5), TileClass::Full);
  EXPECT_EQ(classifyI("abs(i) >= 3", -9, -3), TileClass::Full);
  EXPECT_EQ(classifyI("abs(i) == 0", -9, -3), TileClass::Empty);
  EXPECT_EQ(classifyI("min(i, 3) <= 3 && max(i, 3) >= 3", -100, 100), TileClass::Full);
  EXPECT_EQ(classifyI("max(i, 3) == 3", -100, 3), TileClass::Full);
}

TEST(MaskAnalysisIntervals, OverflowIsConservative) {
  // No overflow below 2^31 - 1: exact.
  EXPECT_EQ(classifyI("i + 2147483600 > 0", 0, 47), TileClass::Full);
  // i + 2147483600 wraps for i >= 48: neither full nor empty, whatever the
  // wrapped values say.
  EXPECT_EQ(classifyI("i + 2147483600 > 0", 0, 100), TileClass::Partial);
  EXPECT_EQ(classifyI("i + 2147483600 > 0", 48, 100), TileClass::Partial);
  EXPECT_EQ(classifyI("i * 65536 * 65536 == 0", 1, 3), TileClass::Partial);
  EXPECT_EQ(classifyI("0 - i > 0", -2147483648LL, -2147483648LL), TileClass::Partial);
  EXPECT_EQ(classifyI("abs(i) >= 0", -2147483648LL, -2147483647LL), TileClass::Partial);
  EXPECT_EQ(classifyI("i / (-1) > 0", -2147483648LL, -2147483648LL), TileClass::Partial);
  EXPECT_EQ(classifyI("i - 1 < i", -2147483648LL, 0), TileClass::Partial);
  // Unbound sizes are [1, 2^31 - 1]; L + L may overflow.
  auto c = compile(kernelText("L + L > 0"));
  ASSERT_TRUE(c);
  EXPECT_EQ(MaskRangeEvaluator(c->kernel, {}, {}).classify({0, 0}, {0, 0}, {0, 0}, {0, 0}),
            TileClass::Partial);
  EXPECT_EQ(MaskRangeEvaluator(c->kernel, {{"L", 1000}}, {}).classify({0, 0}, {0, 0}, {0, 0}, {0, 0}),
            TileClass::Full);
}

TEST(MaskAnalysisIntervals, BooleanOperatorsOnConstants) {
  EXPECT_EQ(classifyI("!(i < 0)", 0, 10), TileClass::Full);
  EXPECT_EQ(classifyI("!(i < 0) && i > 20", 0, 10), TileClass::Empty);
  EXPECT_EQ(classifyI("i < 0 || i <= 10", 0, 10), TileClass::Full);
  EXPECT_EQ(classifyI("(i < 5) == (i < 20)", 0, 4), TileClass::Full);
  EXPECT_EQ(classifyI("(i < 5) == (i < 20)", 5, 10), TileClass::Empty);
  EXPECT_EQ(classifyI("(i < 5) != (i > 20)", 0, 4), TileClass::Full);
  EXPECT_EQ(classifyI("select(i < 0, i, 3) == 3", 0, 10), TileClass::Full);
}

//===----------------------------------------------------------------------===//
// Mask kinds, load summaries, data-dependent tile maps
//===----------------------------------------------------------------------===//

TEST(MaskAnalysisKinds, KindsAndSummaries) {
  auto all = compile(kernelText("true"));
  auto affine = compile(kernelText("j <= i && i - j < p"));
  auto nonAffine = compile(kernelText("i * 0.5 <= j"));
  auto docs = compile(kernelText("doc[b, i] == doc[b, j] && gate[h] > 0 && t[b, h, i / 4, j / 4]",
                                 false, "  doc: i32[B, L]\n  gate: i32[H]\n  t: bool[B, H, M, N]\n"));
  ASSERT_TRUE(all && affine && nonAffine && docs);
  EXPECT_EQ(maskKind(all->kernel), MaskKind::All);
  EXPECT_EQ(maskKind(affine->kernel), MaskKind::Affine);
  EXPECT_EQ(maskKind(nonAffine->kernel), MaskKind::NonAffine);
  EXPECT_EQ(maskKind(docs->kernel), MaskKind::DataDependent);
  std::vector<std::string> summaries;
  docs->kernel.getMask().walk([&](LoadOp load) {
    summaries.push_back(load.getTensor().str() + ":" + toString(loadSummary(load)));
    auto attr = load->getAttrOfType<mlir::StringAttr>("attn.summary");
    ASSERT_TRUE(attr) << "the default pipeline records attn.summary";
    EXPECT_EQ(attr.getValue(), toString(loadSummary(load)));
  });
  EXPECT_EQ(summaries, (std::vector<std::string>{"doc:query-tile", "doc:key-block", "gate:uniform", "t:pair"}));
  EXPECT_EQ(docs->kernel->getAttrOfType<mlir::StringAttr>("mask_kind").getValue(), "data-dependent");
}

/// Packed documents with per-tile min/max summaries of `doc`: tiles whose
/// query tile and key block hold one and the same document are decided.
TEST(MaskAnalysisKinds, DocumentMaskWithTileSummaries) {
  auto c = compile(kernelText("doc[b, i] == doc[b, j] && j <= i", false, "  doc: i32[B, L]\n"));
  ASSERT_TRUE(c);
  const std::vector<int64_t> doc = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2};
  const int T = 4;
  auto summary = [&](int64_t tile) {
    auto first = doc.begin() + tile * T, last = doc.begin() + std::min<int64_t>(doc.size(), (tile + 1) * T);
    return IntRange{*std::min_element(first, last), *std::max_element(first, last)};
  };
  TileMapOptions options;
  options.loadRange = [&](LoadOp load, int64_t qt, int64_t kb) -> std::optional<IntRange> {
    switch (loadSummary(load)) {
    case LoadSummary::QueryTile: return summary(qt);
    case LoadSummary::KeyBlock: return summary(kb);
    default: return std::nullopt;
    }
  };
  std::vector<TileClass> tiles = classifyTiles(c->kernel, {{"L", 16}}, {}, T, T, 16, 16, options);
  std::vector<TileClass> want = bruteForce(
      [&](int64_t i, int64_t j) { return doc[i] == doc[j] && j <= i; }, 16, 16, T, T);
  for (size_t t = 0; t < tiles.size(); ++t)
    if (tiles[t] != TileClass::Partial) {
      EXPECT_EQ(tiles[t], want[t]) << t;
    }
  EXPECT_EQ(formatTileMap(tiles, 4), "PEEE/PPEE/EPPE/EEEP");
  // Without summaries only the causal part decides.
  EXPECT_EQ(formatTileMap(classifyTiles(c->kernel, {{"L", 16}}, {}, T, T, 16, 16), 4),
            "PEEE/PPEE/PPPE/PPPP");
}

TEST(MaskAnalysisKinds, HeadDependentMaskHoldsForEveryHead) {
  auto c = compile(kernelText("j <= i && i - j < (h + 1) * 4"));
  ASSERT_TRUE(c);
  std::map<std::string, int64_t> sizes{{"L", 16}, {"H", 2}};
  EXPECT_EQ(formatTileMap(classifyTiles(c->kernel, sizes, {}, 4, 4, 16, 16), 4),
            "PEEE/PPEE/PPPE/EPPP");
  TileMapOptions head0;
  head0.h = 0;
  EXPECT_EQ(formatTileMap(classifyTiles(c->kernel, sizes, {}, 4, 4, 16, 16, head0), 4),
            "PEEE/PPEE/EPPE/EEPP");
}

TEST(MaskEvaluator, RejectsMasksThatNeedInputs) {
  auto c = compile(kernelText("doc[b, i] == 0", false, "  doc: i32[B, L]\n"));
  ASSERT_TRUE(c);
  MaskEvaluator eval(c->kernel, {{"L", 4}}, {});
  EXPECT_FALSE(eval.ok());
  auto d = compile(kernelText("i / (j - 2) >= 0"));
  ASSERT_TRUE(d);
  MaskEvaluator div(d->kernel, {{"L", 4}}, {});
  ASSERT_TRUE(div.ok());
  EXPECT_EQ(div.eval(0, 0, 1, 2), std::nullopt); // division by zero
  EXPECT_EQ(div.eval(0, 0, 1, 3), std::optional<bool>(true));
  EXPECT_EQ(div.eval(0, 0, 1, 1), std::optional<bool>(false)); // floor(1 / -1) = -1
}

} // namespace
