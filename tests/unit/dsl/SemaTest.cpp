// Tests of Sema: name resolution, types and casts, dimension rules,
// defaults, the AST dump, and every semantic diagnostic.
#include "DslTestUtil.h"

#include <functional>

namespace attn::dsl {
namespace {

using test::check;
using test::kernel;
using test::shownFirstError;

/// The typed, printed form of `expr` used as the score (or mask) of a kernel
/// with f32 q/k/v [B, H, L, D], aux tensors and params of every type.
const char *kDecls = "  bias: f16[H, L, L]\n  ids: i32[B, L]\n  big: i64[L]\n"
                     "  flags: bool[L]\n  param w: i32 = 4\n  param n: i64\n"
                     "  param s: f32 = 2\n  param on: bool = true";

std::string typedScore(const std::string &expr, const std::string &type = "f32") {
  auto r = check(kernel(std::string(kDecls) + "\n  score = " + expr, type));
  if (!r.module)
    return "error: " + r.rendered;
  const Expr &e = *r.kernel().score;
  return std::string(toString(e.type)) + " " + printExpr(e);
}

std::string typedMask(const std::string &expr) {
  auto r = check(kernel(std::string(kDecls) + "\n  mask = " + expr));
  if (!r.module)
    return "error: " + r.rendered;
  return printExpr(*r.kernel().mask);
}

/// Calls f on every node of an expression.
void walk(const Expr &e, const std::function<void(const Expr &)> &f) {
  f(e);
  for (const auto &a : e.args)
    walk(*a, f);
}

/// The invariants documented on attn::dsl::Kernel.
void expectInvariants(const Kernel &k) {
  ASSERT_NE(k.q, nullptr);
  ASSERT_NE(k.k, nullptr);
  ASSERT_NE(k.v, nullptr);
  EXPECT_EQ(k.q->role, TensorRole::Q);
  EXPECT_EQ(k.k->role, TensorRole::K);
  EXPECT_EQ(k.v->role, TensorRole::V);
  ASSERT_NE(k.score, nullptr);
  ASSERT_NE(k.mask, nullptr);
  EXPECT_EQ(k.score->type, k.computeType);
  EXPECT_EQ(k.mask->type, ScalarType::Bool);
  auto each = [&](const Expr &e) {
    EXPECT_NE(e.type, ScalarType::Unknown) << printExpr(e);
    if (e.kind == ExprKind::Ident) {
      EXPECT_NE(e.ident, IdentKind::Unresolved) << e.name;
    }
    if (e.kind == ExprKind::Call) {
      EXPECT_NE(e.builtin, Builtin::None) << e.name;
      if (e.builtin == Builtin::Dot || e.builtin == Builtin::SqnormQ ||
          e.builtin == Builtin::SqnormK) {
        EXPECT_TRUE(e.args.empty());
      }
    }
    if (e.kind == ExprKind::Binary) {
      EXPECT_EQ(e.args[0]->type, e.args[1]->type) << printExpr(e);
    }
  };
  walk(*k.score, each);
  walk(*k.mask, each);
  for (const auto &l : k.lets)
    walk(*l.value, each);
}

TEST(Sema, LanguageExamplesCheck) {
  const char *src = R"(attention sliding_window {
  q: f32[B, H, L, 128]
  k: f32[B, G, L, 128]
  v: f32[B, G, L, 128]
  param window: i32 = 4096

  mask = j <= i && i - j < window
}
attention alibi_causal {
  q: bf16[B, H, L, 128]; k: bf16[B, H, L, 128]; v: bf16[B, H, L, 128]
  let slope = exp2(-8.0 * (h + 1) / H)
  score = dot(q, k) * rsqrt(128) + slope * (j - i)
  mask = j <= i
}
attention packed_documents {
  q: f32[B, H, L, 64]; k: f32[B, H, L, 64]; v: f32[B, H, L, 64]
  doc: i32[B, L]
  mask = doc[b, i] == doc[b, j] && j <= i
  output lse
}
attention image_text_cross {
  q: f32[B, H, T, 64]
  k: f32[B, H, N, 64]
  v: f32[B, H, N, 96]
  text_image: i32[B, T]
  token_image: i32[B, N]
  mask = text_image[b, i] == token_image[b, j]
}
attention lookup_2d {
  q: f64[B, H, L, 2]; k: f64[B, H, L, 2]; v: f64[B, H, L, 2]
  score = dot(q, k)
  mask = j <= i
  normalize = hardmax(ties = latest)
}
)";
  auto r = check(src);
  ASSERT_TRUE(r.module) << r.rendered;
  EXPECT_TRUE(r.diags.empty());
  for (const Kernel &k : r.module->kernels)
    expectInvariants(k);
  const Module &m = *r.module;
  EXPECT_EQ(m.kernels[0].computeType, ScalarType::F32);
  EXPECT_EQ(m.kernels[4].computeType, ScalarType::F64);
  EXPECT_EQ(printExpr(*m.kernels[1].lets[0].value),
            "exp2((((-8.0) * cast<f32>((h + 1))) / cast<f32>(H)))");
  EXPECT_EQ(printExpr(*m.kernels[1].score),
            "((dot(q, k) * rsqrt(cast<f32>(128))) + (slope * cast<f32>((j - "
            "i))))");
  EXPECT_EQ(m.kernels[0].sizeNames(), (std::vector<std::string>{"B", "H", "L", "G"}));
  EXPECT_EQ(m.kernels[3].sizeNames(), (std::vector<std::string>{"B", "H", "T", "N"}));
}

TEST(Sema, PrintModuleIsStable) {
  auto r = check("attention sw {\n  q: f32[B, H, L, D]; k: f32[B, G, L, D]\n"
                 "  v: f32[B, G, L, 96]\n  doc: i32[B, L]\n"
                 "  param window: f32 = 4096\n  param on: bool\n"
                 "  let near = i - j < 8\n  mask = near && doc[b, i] == 2\n"
                 "  normalize = topk(4)\n  output lse\n}\n");
  ASSERT_TRUE(r.module) << r.rendered;
  EXPECT_EQ(printModule(*r.module),
            "module \"test.attn\"\n"
            "attention sw {\n"
            "  sizes B, H, L, D, G\n"
            "  compute f32\n"
            "  q: f32[B, H, L, D]\n"
            "  k: f32[B, G, L, D]\n"
            "  v: f32[B, G, L, 96]\n"
            "  doc: i32[B, L]\n"
            "  param window: f32 = 4096.0\n"
            "  param on: bool\n"
            "  let near: bool = ((i - j) < 8)\n"
            "  score: f32 = (dot(q, k) * rsqrt(cast<f32>(D)))\n"
            "  mask: bool = (near && (doc[b, i] == 2))\n"
            "  normalize = topk(4)\n"
            "  output lse\n"
            "}\n");
}

TEST(Sema, DefaultScoreAndMask) {
  auto r = check(kernel(""));
  ASSERT_TRUE(r.module) << r.rendered;
  const Kernel &k = r.kernel();
  expectInvariants(k);
  EXPECT_EQ(printExpr(*k.score), "(dot(q, k) * rsqrt(cast<f32>(D)))");
  const Expr &size = *k.score->args[1]->args[0]->args[0];
  EXPECT_EQ(size.kind, ExprKind::Ident);
  EXPECT_EQ(size.ident, IdentKind::Size);
  EXPECT_EQ(size.type, ScalarType::I32);
  EXPECT_EQ(k.score->args[0]->builtin, Builtin::Dot);
  EXPECT_EQ(k.score->args[1]->builtin, Builtin::Rsqrt);
  EXPECT_EQ(k.mask->kind, ExprKind::BoolLit);
  EXPECT_TRUE(k.mask->boolValue);

  auto lit = check("attention t {\n q: f64[B, H, L, 64]; k: f64[B, H, L, 64]; "
                   "v: f64[B, H, L, 64]\n}");
  ASSERT_TRUE(lit.module) << lit.rendered;
  EXPECT_EQ(printExpr(*lit.kernel().score), "(dot(q, k) * rsqrt(cast<f64>(64)))");
  EXPECT_EQ(lit.kernel().score->type, ScalarType::F64);
  EXPECT_EQ(lit.kernel().score->args[1]->args[0]->args[0]->kind, ExprKind::IntLit);
}

TEST(Sema, HeadTensorsAndLookups) {
  auto r = check(kernel("  doc: i32[B, L]\n  param p: f32\n  let x = p * 2"));
  ASSERT_TRUE(r.module) << r.rendered;
  const Kernel &k = r.kernel();
  EXPECT_EQ(k.q, &k.tensors[0]);
  EXPECT_EQ(k.k, &k.tensors[1]);
  EXPECT_EQ(k.v, &k.tensors[2]);
  EXPECT_EQ(k.findTensor("doc"), &k.tensors[3]);
  EXPECT_EQ(k.tensors[3].role, TensorRole::Aux);
  EXPECT_EQ(k.findParam("p"), &k.params[0]);
  EXPECT_EQ(k.findLet("x"), &k.lets[0]);
  EXPECT_EQ(k.findTensor("x"), nullptr);
  EXPECT_EQ(k.findParam("doc"), nullptr);
  EXPECT_EQ(k.findLet("p"), nullptr);
}

TEST(Sema, LiteralTypes) {
  EXPECT_EQ(typedScore("2147483647"), "f32 cast<f32>(2147483647)");
  auto r = check(kernel("  let a = 2147483647\n  let c = 2147483648\n  let d = 0.5\n"
                        "  let e = inf\n  let f = true"));
  ASSERT_TRUE(r.module) << r.rendered;
  const auto &l = r.kernel().lets;
  EXPECT_EQ(l[0].value->type, ScalarType::I32);
  EXPECT_EQ(l[1].value->type, ScalarType::I64);
  EXPECT_EQ(l[2].value->type, ScalarType::F32);
  EXPECT_EQ(l[3].value->type, ScalarType::F32);
  EXPECT_EQ(l[4].value->type, ScalarType::Bool);
  EXPECT_EQ(typedScore("-inf"), "f32 (-inf)");
  EXPECT_EQ(typedScore("0.5", "f64"), "f64 0.5");
}

TEST(Sema, IdentifierKindsAndTypes) {
  auto r = check(kernel(std::string(kDecls) +
                        "\n  let x = b + h + i + j + B + w + n + s\n  let y = x"));
  ASSERT_TRUE(r.module) << r.rendered;
  std::vector<std::pair<std::string, IdentKind>> seen;
  walk(*r.kernel().lets[0].value, [&](const Expr &e) {
    if (e.kind == ExprKind::Ident)
      seen.push_back({e.name, e.ident});
  });
  using I = IdentKind;
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, IdentKind>>{
                      {"b", I::IndexVar}, {"h", I::IndexVar}, {"i", I::IndexVar},
                      {"j", I::IndexVar}, {"B", I::Size}, {"w", I::Param},
                      {"n", I::Param}, {"s", I::Param}}));
  const Expr &y = *r.kernel().lets[1].value;
  EXPECT_EQ(y.ident, IdentKind::Let);
  EXPECT_EQ(y.type, ScalarType::F32);
  EXPECT_EQ(printExpr(*r.kernel().lets[0].value),
            "(cast<f32>((cast<i64>((((((b + h) + i) + j) + B) + w)) + n)) + s)");
}

TEST(Sema, Promotions) {
  const std::pair<const char *, const char *> cases[] = {
      {"i + 0.5", "f32 (cast<f32>(i) + 0.5)"},
      {"0.5 * j", "f32 (0.5 * cast<f32>(j))"},
      {"i / 2", "f32 cast<f32>((i / 2))"},
      {"i % L", "f32 cast<f32>((i % L))"},
      {"n - i", "f32 cast<f32>((n - cast<i64>(i)))"},
      {"big[j] + 1", "f32 cast<f32>((big[j] + cast<i64>(1)))"},
      {"bias[h, i, j]", "f32 bias[h, i, j]"},
      {"ids[b, i] * s", "f32 (cast<f32>(ids[b, i]) * s)"},
      {"-i", "f32 cast<f32>((-i))"},
      {"w * 2", "f32 cast<f32>((w * 2))"},
  };
  for (const auto &[src, want] : cases)
    EXPECT_EQ(typedScore(src), want) << src;
  EXPECT_EQ(typedScore("s + i", "f64"), "f64 (s + cast<f64>(i))");
  EXPECT_EQ(typedScore("bias[h, i, j]", "f64"), "f64 bias[h, i, j]");
}

TEST(Sema, ComparisonsAndLogic) {
  const std::pair<const char *, const char *> cases[] = {
      {"i < 0.5", "(cast<f32>(i) < 0.5)"},
      {"n >= i", "(n >= cast<i64>(i))"},
      {"flags[j] == on", "(flags[j] == on)"},
      {"flags[i] != (j <= i)", "(flags[i] != (j <= i))"},
      {"!flags[j] || on && i > j", "((!flags[j]) || (on && (i > j)))"},
      {"i == j", "(i == j)"},
  };
  for (const auto &[src, want] : cases)
    EXPECT_EQ(typedMask(src), want) << src;
}

TEST(Sema, Builtins) {
  const std::pair<const char *, const char *> cases[] = {
      {"exp(i)", "f32 exp(cast<f32>(i))"},
      {"exp2(s)", "f32 exp2(s)"},
      {"log(1)", "f32 log(cast<f32>(1))"},
      {"log2(s)", "f32 log2(s)"},
      {"sqrt(L)", "f32 sqrt(cast<f32>(L))"},
      {"rsqrt(s)", "f32 rsqrt(s)"},
      {"tanh(s)", "f32 tanh(s)"},
      {"sigmoid(j)", "f32 sigmoid(cast<f32>(j))"},
      {"floor(s)", "f32 floor(s)"},
      {"ceil(i)", "f32 ceil(cast<f32>(i))"},
      {"abs(i - j)", "f32 cast<f32>(abs((i - j)))"},
      {"abs(s)", "f32 abs(s)"},
      {"min(i, j)", "f32 cast<f32>(min(i, j))"},
      {"max(i, 0.5)", "f32 max(cast<f32>(i), 0.5)"},
      {"max(i, n)", "f32 cast<f32>(max(cast<i64>(i), n))"},
      {"clamp(i - j, 0, w)", "f32 cast<f32>(clamp((i - j), 0, w))"},
      {"clamp(s, 0, 1)", "f32 clamp(s, cast<f32>(0), cast<f32>(1))"},
      {"pow(2, i)", "f32 pow(cast<f32>(2), cast<f32>(i))"},
      {"select(j <= i, 1, 2.5)", "f32 select((j <= i), cast<f32>(1), 2.5)"},
      {"select(on, i, j)", "f32 cast<f32>(select(on, i, j))"},
      {"dot(q, k)", "f32 dot(q, k)"},
      {"dot(k, q)", "f32 dot(q, k)"},
      {"sqnorm(q) + sqnorm(k)", "f32 (sqnorm(q) + sqnorm(k))"},
  };
  for (const auto &[src, want] : cases)
    EXPECT_EQ(typedScore(src), want) << src;
  EXPECT_EQ(typedMask("select(on, flags[i], j < i)"),
            "select(on, flags[i], (j < i))");

  auto r = check(kernel("  score = dot(k, q) - sqnorm(k)"));
  ASSERT_TRUE(r.module);
  const Expr &s = *r.kernel().score;
  EXPECT_EQ(s.args[0]->builtin, Builtin::Dot);
  EXPECT_TRUE(s.args[0]->args.empty());
  EXPECT_EQ(s.args[1]->builtin, Builtin::SqnormK);
  expectInvariants(r.kernel());
}

TEST(Sema, LetsMayUseEarlierLetsAndScoreMayUseAny) {
  auto r = check(kernel("  mask = near\n  let d = i - j\n  let near = d < 8 && d >= 0"));
  ASSERT_TRUE(r.module) << r.rendered;
  expectInvariants(r.kernel());
  EXPECT_EQ(r.kernel().lets[1].value->type, ScalarType::Bool);
}

TEST(Sema, ParamDefaultsFollowTheParamType) {
  auto r = check(kernel("  param a: f32 = 3\n  param c: f64 = -2\n  param d: i64 = -5"));
  ASSERT_TRUE(r.module) << r.rendered;
  const auto &p = r.kernel().params;
  EXPECT_EQ(p[0].defaultValue->kind, Literal::Kind::Float);
  EXPECT_DOUBLE_EQ(p[0].defaultValue->f, 3.0);
  EXPECT_EQ(p[1].defaultValue->kind, Literal::Kind::Float);
  EXPECT_DOUBLE_EQ(p[1].defaultValue->f, -2.0);
  EXPECT_EQ(p[2].defaultValue->kind, Literal::Kind::Int);
}

TEST(Sema, CloneIsDeepAndEqual) {
  auto r = check(kernel("  score = select(j <= i, exp(s * 2), -inf)\n  param s: f32"));
  ASSERT_TRUE(r.module);
  ExprPtr copy = r.kernel().score->clone();
  EXPECT_EQ(printExpr(*copy), printExpr(*r.kernel().score));
  EXPECT_EQ(copy->type, r.kernel().score->type);
  EXPECT_NE(copy->args[0].get(), r.kernel().score->args[0].get());
  copy->args[0]->binaryOp = BinaryOp::Lt;
  EXPECT_EQ(r.kernel().score->args[0]->binaryOp, BinaryOp::Le);
}

TEST(Sema, AuxTensorsMayHaveAnyRankAndType) {
  auto r = check(kernel("  a: bf16[L]\n  c: f64[B, H, L, L, 2]\n  d: bool[L, L]\n"
                        "  score = a[j] + c[b, h, i, j, 1]\n  mask = d[i, j]"));
  ASSERT_TRUE(r.module) << r.rendered;
  expectInvariants(r.kernel());
}

// ---- diagnostics ------------------------------------------------------------

TEST(SemaErrors, MissingHeadTensors) {
  auto r = check("attention foo {\n  q: f32[B, H, L, D]\n  v: f32[B, H, L, D]\n}");
  ASSERT_FALSE(r.module);
  EXPECT_FIRST_ERROR(r, 1, 11, "kernel 'foo' has no 'k' tensor");
  EXPECT_EQ(shownFirstError(r).caret, "          ^~~");
  EXPECT_EQ(shownFirstError(r).hint, "declare it, e.g. `k: f32[B, Hk, Lk, D]`");
  auto r2 = check("attention foo {\n}");
  EXPECT_EQ(r2.errors(), 3) << r2.rendered;
  EXPECT_EQ(r2.firstError().message, "kernel 'foo' has no 'q' tensor");
}

TEST(SemaErrors, HeadTensorShapesAndTypes) {
  auto r = check("attention t {\n  q: f32[B, L, D]\n  k: i32[B, H, L, D]\n"
                 "  v: f32[B, H, L, D]\n}");
  ASSERT_FALSE(r.module);
  ASSERT_EQ(r.errors(), 2);
  EXPECT_FIRST_ERROR(r, 2, 3, "'q' must have 4 dimensions [B, H, Lq, D], got 3");
  EXPECT_EQ(r.diags[1].message,
            "'k' must have a float element type (f32, f16, bf16 or f64), got i32");
  EXPECT_EQ(r.diags[1].range.begin.col, 6);
}

TEST(SemaErrors, KeyDimensionMustMatchQuery) {
  auto r = check("attention t {\n  q: f32[B, H, L, 64]\n  k: f32[B, H, L, 128]\n"
                 "  v: f32[B, H, L, 64]\n}");
  ASSERT_FALSE(r.module);
  EXPECT_FIRST_ERROR(r, 3, 19,
                     "the last dimension of 'k' (128) must equal the last "
                     "dimension of 'q' (64)");
  EXPECT_EQ(shownFirstError(r).caret, "                  ^~~");
  ASSERT_GE(r.diags.size(), 2u);
  EXPECT_EQ(r.diags[1].severity, Severity::Note);
  EXPECT_EQ(r.diags[1].message, "'q' declares it here");
  EXPECT_EQ(r.diags[1].range.begin.line, 2);
  // A name and a literal do not match either.
  auto r2 = check("attention t {\n  q: f32[B, H, L, D]\n  k: f32[B, H, L, 64]\n"
                  "  v: f32[B, H, L, D]\n}");
  EXPECT_FIRST_ERROR(r2, 3, 19,
                     "the last dimension of 'k' (64) must equal the last "
                     "dimension of 'q' (D)");
  // Dv may differ.
  EXPECT_TRUE(check("attention t {\n  q: f32[B, H, L, D]\n  k: f32[B, H, L, D]\n"
                    "  v: f32[B, H, L, 7]\n}")
                  .module);
}

TEST(SemaErrors, KeysAndValuesShareBatchHeadsAndLength) {
  const std::tuple<const char *, int, const char *> cases[] = {
      {"  q: f32[B, H, L, D]\n  k: f32[B, G, S, D]\n  v: f32[C, G, S, D]", 10,
       "the batch dimension of 'v' (C) must equal the batch dimension of 'k' (B)"},
      {"  q: f32[B, H, L, D]\n  k: f32[B, G, S, D]\n  v: f32[B, H, S, D]", 13,
       "the head dimension of 'v' (H) must equal the head dimension of 'k' (G)"},
      {"  q: f32[B, H, L, D]\n  k: f32[B, G, S, D]\n  v: f32[B, G, L, D]", 16,
       "the length dimension of 'v' (L) must equal the length dimension of 'k' (S)"},
  };
  for (const auto &[decls, col, msg] : cases) {
    auto r = check(std::string("attention t {\n") + decls + "\n}");
    EXPECT_FIRST_ERROR(r, 4, col, msg);
  }
  auto r = check("attention t {\n  q: f32[B, H, L, D]\n  k: f32[A, H, L, D]\n"
                 "  v: f32[A, H, L, D]\n}");
  EXPECT_FIRST_ERROR(r, 3, 10,
                     "the batch dimension of 'k' (A) must equal the batch "
                     "dimension of 'q' (B)");
}

TEST(SemaErrors, LiteralHeadCountsMustDivide) {
  auto r = check("attention t {\n  q: f32[B, 6, L, D]\n  k: f32[B, 4, L, D]\n"
                 "  v: f32[B, 4, L, D]\n}");
  EXPECT_FIRST_ERROR(r, 2, 13,
                     "the number of query heads (6) must be a multiple of the "
                     "number of key/value heads (4)");
  EXPECT_TRUE(check("attention t {\n  q: f32[B, 8, L, D]\n  k: f32[B, 1, L, D]\n"
                    "  v: f32[B, 1, L, D]\n}")
                  .module);
}

TEST(SemaErrors, KernelNamesThatClashWithCSymbolsAreRejected) {
  // Each becomes the C symbols NAME, NAME_argv and the header NAME.h: a
  // Halide runtime symbol crashed Halide's code generator, `malloc` failed
  // at link time without a location, `int.h` is no valid header.
  const std::pair<const char *, const char *> cases[] = {
      {"halide_do_par_for", "reserved for the Halide runtime linked into every kernel"},
      {"halide_anything", "reserved for the Halide runtime linked into every kernel"},
      {"malloc", "a C library function the kernel's runtime calls"},
      {"free", "a C library function the kernel's runtime calls"},
      {"memcpy", "a C library function the kernel's runtime calls"},
      {"int", "a C or C++ keyword"},
      {"class", "a C or C++ keyword"},
      {"_private", "reserved: names that start with '_' belong to the C implementation"},
  };
  const std::string heads =
      " {\n  q: f32[B, H, L, D]\n  k: f32[B, H, L, D]\n  v: f32[B, H, L, D]\n}\n";
  for (auto [name, why] : cases) {
    auto r = check("attention " + std::string(name) + heads);
    EXPECT_FIRST_ERROR(r, 1, 11, "kernel name '" + std::string(name) + "' is " + why);
    test::Shown shown = test::shownFirstError(r);
    EXPECT_EQ(shown.caret.find('^'), shown.source.find(name)) << r.rendered;
    EXPECT_NE(shown.hint.find("choose another"), std::string::npos) << r.rendered;
  }
  EXPECT_TRUE(check("attention my_malloc" + heads).module);
}

TEST(SemaErrors, DimensionLiteralsFitInI32) {
  // 4294967312 = 2^32 + 16 used to compile as 16.
  auto r = check(kernel("  t: i32[4294967312]"));
  EXPECT_FIRST_ERROR(r, 5, 10, "dimension 4294967312 does not fit in i32 (at most 2147483647)");
  auto head = check("attention t {\n  q: f32[B, H, L, 2147483647]\n"
                    "  k: f32[B, H, L, 2147483647]\n  v: f32[B, H, L, 2147483647]\n}\n");
  EXPECT_FIRST_ERROR(head, 2, 19,
                     "head dimension 2147483647 of 'q' is larger than attnc supports (65536)");
}

TEST(SemaErrors, DimensionsArePositive) {
  auto r = check(kernel("  t: i32[0, L]"));
  EXPECT_FIRST_ERROR(r, 5, 10, "dimension must be positive, got 0");
}

TEST(SemaErrors, AuxTensorNeedsADimension) {
  auto r = check(kernel("  t: f32[]"));
  EXPECT_FIRST_ERROR(r, 5, 3, "tensor 't' needs at least one dimension");
  EXPECT_EQ(shownFirstError(r).hint, "a scalar input is declared `param t: f32`");
}

TEST(SemaErrors, ReservedNames) {
  const std::tuple<const char *, int, const char *> cases[] = {
      {"  i: i32[L]", 3, "'i' is reserved for an index variable"},
      {"  param h: i32", 9, "'h' is reserved for an index variable"},
      {"  let j = 1", 7, "'j' is reserved for an index variable"},
      {"  t: i32[b]", 10, "'b' is reserved for an index variable"},
  };
  for (const auto &[body, col, msg] : cases) {
    auto r = check(kernel(body));
    EXPECT_FIRST_ERROR(r, 5, col, msg);
  }
}

TEST(SemaErrors, Redefinitions) {
  const std::tuple<const char *, int, int, const char *, const char *> cases[] = {
      {"  q: f32[B, H, L, D]", 5, 3, "redefinition of 'q'",
       "'q' was first declared here as a tensor"},
      {"  param w: i32\n  let w = 1", 6, 7, "redefinition of 'w'",
       "'w' was first declared here as a param"},
      {"  L: i32[B]", 5, 3, "redefinition of 'L'",
       "'L' was first declared here as a size"},
      {"  let x = 1\n  param x: f32", 6, 9, "redefinition of 'x'",
       "'x' was first declared here as a let"},
      {"  doc: i32[B, L]\n  t: i32[doc]", 6, 10, "redefinition of 'doc'",
       "'doc' was first declared here as a tensor"},
  };
  for (const auto &[body, line, col, msg, note] : cases) {
    auto r = check(kernel(body));
    EXPECT_FIRST_ERROR(r, line, col, msg);
    ASSERT_GE(r.diags.size(), 2u) << body;
    EXPECT_EQ(r.diags[1].severity, Severity::Note);
    EXPECT_EQ(r.diags[1].message, note);
  }
  // Sizes are shared, not redefined.
  EXPECT_TRUE(check(kernel("  t: i32[B, L, L, H]")).module);
}

TEST(SemaErrors, ParamTypesAndDefaults) {
  const std::tuple<const char *, int, const char *> cases[] = {
      {"  param p: f16", 12, "param 'p' cannot be f16"},
      {"  param p: bf16 = 1", 12, "param 'p' cannot be bf16"},
      {"  param p: i32 = 1.5", 18, "the default of i32 param 'p' must be an integer"},
      {"  param p: i64 = true", 18, "the default of i64 param 'p' must be an integer"},
      {"  param p: f32 = false", 18, "the default of f32 param 'p' must be a number"},
      {"  param p: bool = 1", 19, "the default of bool param 'p' must be true or false"},
      {"  param p: i32 = -3000000000", 18,
       "the default of i32 param 'p' does not fit in i32: -3000000000"},
      {"  param p: f32 = 1e300", 18, "the default of f32 param 'p' does not fit in f32"},
  };
  for (const auto &[body, col, msg] : cases) {
    auto r = check(kernel(body));
    EXPECT_FIRST_ERROR(r, 5, col, msg);
  }
  auto r = check(kernel("  param p: i32 = 1.5"));
  EXPECT_EQ(shownFirstError(r).caret, "                 ^~~");
}

TEST(SemaErrors, LetUsedBeforeItsDefinition) {
  auto r = check(kernel("  let a = c + 1\n  let c = 2"));
  EXPECT_FIRST_ERROR(r, 5, 11, "'c' is used before its definition");
  ASSERT_GE(r.diags.size(), 2u);
  EXPECT_EQ(r.diags[1].message, "'c' is defined here");
  EXPECT_EQ(r.diags[1].range.begin.line, 6);
  auto self = check(kernel("  let a = a + 1"));
  EXPECT_FIRST_ERROR(self, 5, 11, "'a' is used before its definition");
  EXPECT_EQ(self.errors(), 1);
}

TEST(SemaErrors, UnknownNames) {
  auto r = check(kernel("  param window: i32\n  mask = i - j < windw"));
  EXPECT_FIRST_ERROR(r, 6, 18, "unknown name 'windw'");
  EXPECT_EQ(shownFirstError(r).hint, "did you mean 'window'?");
  EXPECT_EQ(shownFirstError(r).caret, "                 ^~~~~");
  auto r2 = check(kernel("  mask = l > 0"));
  EXPECT_EQ(shownFirstError(r2).hint, "did you mean 'L'?");
  auto r3 = check(kernel("  mask = zzz > 0"));
  EXPECT_EQ(shownFirstError(r3).hint, "");
  auto r4 = check(kernel("  score = exp"));
  EXPECT_EQ(shownFirstError(r4).hint, "'exp' is a function: exp(x)");
}

TEST(SemaErrors, UnknownFunctions) {
  auto r = check(kernel("  score = exq(1.0)"));
  EXPECT_FIRST_ERROR(r, 5, 11, "unknown function 'exq'");
  EXPECT_EQ(shownFirstError(r).caret, "          ^~~");
  EXPECT_EQ(shownFirstError(r).hint, "did you mean 'exp'?");
  auto r2 = check(kernel("  score = softplus(1.0)"));
  EXPECT_NE(shownFirstError(r2).hint.find("the functions are exp"), std::string::npos);
  auto r3 = check(kernel("  doc: i32[L]\n  mask = doc(i) > 0"));
  EXPECT_FIRST_ERROR(r3, 6, 10, "'doc' is a tensor, not a function");
}

TEST(SemaErrors, WrongArity) {
  const std::tuple<const char *, const char *, const char *> cases[] = {
      {"exp(1, 2)", "'exp' takes 1 argument, got 2", "write exp(x)"},
      {"max(1)", "'max' takes 2 arguments, got 1", "write max(a, b)"},
      {"clamp(1, 2)", "'clamp' takes 3 arguments, got 2", "write clamp(x, lo, hi)"},
      {"select(true, 1)", "'select' takes 3 arguments, got 2",
       "write select(cond, a, b)"},
      {"pow(2)", "'pow' takes 2 arguments, got 1", "write pow(base, exponent)"},
      {"dot(q)", "'dot' takes 2 arguments, got 1", "write dot(q, k)"},
      {"sqnorm()", "'sqnorm' takes 1 argument, got 0",
       "write sqnorm(q) or sqnorm(k)"},
  };
  for (const auto &[expr, msg, hint] : cases) {
    auto r = check(kernel(std::string("  score = ") + expr));
    EXPECT_FIRST_ERROR(r, 5, 11, msg);
    EXPECT_EQ(shownFirstError(r).hint, hint);
  }
}

TEST(SemaErrors, HeadVectorBuiltins) {
  auto r = check(kernel("  score = dot(q, v)"));
  EXPECT_FIRST_ERROR(r, 5, 11, "dot takes the head vectors q and k: dot(q, k)");
  EXPECT_EQ(shownFirstError(r).caret, "          ^~~~~~~~~");
  EXPECT_FIRST_ERROR(check(kernel("  score = dot(q, q)")), 5, 11,
                     "dot takes the head vectors q and k: dot(q, k)");
  EXPECT_FIRST_ERROR(check(kernel("  score = sqnorm(v)")), 5, 11,
                     "sqnorm takes a head vector: sqnorm(q) or sqnorm(k)");
  EXPECT_FIRST_ERROR(check(kernel("  score = sqnorm(i)")), 5, 11,
                     "sqnorm takes a head vector: sqnorm(q) or sqnorm(k)");
}

TEST(SemaErrors, HeadTensorsAreNotValues) {
  auto r = check(kernel("  score = q * 2"));
  EXPECT_FIRST_ERROR(r, 5, 11, "'q' cannot be used as a value");
  EXPECT_NE(shownFirstError(r).hint.find("dot(q, k), sqnorm(q) or sqnorm(k)"),
            std::string::npos);
  auto r2 = check(kernel("  score = q[b, h, i, 0]"));
  // v2: q[c] is element c of the current query; the row is implicit.
  EXPECT_FIRST_ERROR(r2, 5, 11, "'q' is a vector and takes one index, got 4");
  EXPECT_EQ(shownFirstError(r2).caret, "          ^");
  EXPECT_EQ(shownFirstError(r2).hint,
            "the row is the current one: write q[c] for element c, or combine the head "
            "vectors with dot(q, k), sqnorm(q) or sqnorm(k)");
  EXPECT_FIRST_ERROR(check(kernel("  score = v[b, h, j, 0]")), 5, 11,
                     "'v' cannot be indexed");
}

TEST(SemaErrors, TensorReads) {
  auto r = check(kernel("  doc: i32[B, L]\n  mask = doc[b, i, j] == 0"));
  EXPECT_FIRST_ERROR(r, 6, 10, "'doc' has 2 dimensions but is read with 3 indices");
  EXPECT_EQ(shownFirstError(r).caret, "         ^~~~~~~~~~~~");
  EXPECT_EQ(shownFirstError(r).hint, "it is declared `doc: i32[B, L]`");
  auto r2 = check(kernel("  doc: i32[B, L]\n  mask = doc[b, i / 2.0] == 0"));
  EXPECT_FIRST_ERROR(r2, 6, 17, "index of 'doc' must be an integer, got f32");
  auto r3 = check(kernel("  doc: i32[B, L]\n  mask = doc[b, j <= i] == 0"));
  EXPECT_FIRST_ERROR(r3, 6, 17, "index of 'doc' must be an integer, got bool");
  auto r4 = check(kernel("  doc: i32[B, L]\n  mask = doc == 0"));
  EXPECT_FIRST_ERROR(r4, 6, 10, "tensor 'doc' must be indexed");
  EXPECT_EQ(shownFirstError(r4).hint, "read it with `doc[...]` (2 indices)");
  auto r5 = check(kernel("  doc: i32[B, L]\n  mask = dok[b, i] == 0"));
  EXPECT_FIRST_ERROR(r5, 6, 10, "unknown tensor 'dok'");
  EXPECT_EQ(shownFirstError(r5).hint, "did you mean 'doc'?");
  auto r6 = check(kernel("  param w: i32\n  mask = w[0] == 0"));
  EXPECT_FIRST_ERROR(r6, 6, 10, "'w' is a param, not a tensor");
  // 64-bit indices are fine.
  EXPECT_TRUE(check(kernel("  doc: i32[L]\n  param n: i64\n  mask = doc[n] == 0")).module);
}

TEST(SemaErrors, OperandTypes) {
  const std::tuple<const char *, int, const char *, const char *> cases[] = {
      {"i && j < 2", 10, "operand of '&&' must be bool, got i32", "compare with != 0"},
      {"j < 2 || 1.5", 19, "operand of '||' must be bool, got f32", "compare with != 0"},
      {"!i", 11, "operand of '!' must be bool, got i32", "compare with != 0"},
      {"-(j < i)", 11, "operand of '-' must be a number, got bool",
       "use '!' for logical not"},
      {"(j < i) + 1 > 0", 10, "operand of '+' must be a number, got bool",
       "select(cond, 1, 0) turns a bool into a number"},
      {"(j < i) < true", 10, "operand of '<' must be a number, got bool",
       "only == and != compare bools"},
      {"(j < i) == 1", 10, "cannot compare bool with i32 using '=='",
       "a bool can only be compared with another bool"},
      {"select(i, true, false)", 17, "the condition of 'select' must be bool, got i32",
       "compare with != 0"},
      {"exp(j < i) > 0", 14, "argument of 'exp' must be a number, got bool", ""},
  };
  for (const auto &[expr, col, msg, hint] : cases) {
    auto r = check(kernel(std::string("  mask = ") + expr));
    EXPECT_FIRST_ERROR(r, 5, col, msg);
    EXPECT_EQ(shownFirstError(r).hint, hint) << expr;
    EXPECT_EQ(r.errors(), 1) << r.rendered; // no follow-on errors
  }
  auto r = check(kernel("  score = select(j < i, 1.0, j < 2)"));
  EXPECT_FIRST_ERROR(r, 5, 11,
                     "the branches of 'select' must both be numbers or both be "
                     "bool, got f32 and bool");
}

TEST(SemaErrors, ScoreAndMaskTypes) {
  auto r = check(kernel("  score = j <= i"));
  EXPECT_FIRST_ERROR(r, 5, 11, "score must be a number, got bool");
  EXPECT_EQ(shownFirstError(r).caret, "          ^~~~~~");
  EXPECT_EQ(shownFirstError(r).hint, "to leave pairs out use `mask = ...`");
  auto r2 = check(kernel("  doc: i32[B, L]\n  mask = doc[b, i]"));
  EXPECT_FIRST_ERROR(r2, 6, 10, "mask must be a bool, got i32");
  EXPECT_EQ(shownFirstError(r2).hint, "compare it, e.g. `mask = ... != 0`");
  // An integer score is converted to the compute type.
  auto r3 = check(kernel("  score = j - i", "f64"));
  ASSERT_TRUE(r3.module);
  EXPECT_EQ(printExpr(*r3.kernel().score), "cast<f64>((j - i))");
}

TEST(SemaErrors, OutputLseNeedsANormalizationWithAnLse) {
  for (const char *norm : {"sigmoid", "relu", "none"}) {
    auto r = check(kernel(std::string("  normalize = ") + norm + "\n  output lse"));
    EXPECT_FIRST_ERROR(r, 6, 3,
                       std::string("'output lse' is not available with "
                                   "normalize = ") + norm);
    EXPECT_EQ(shownFirstError(r).caret, "  ^~~~~~~~~~");
    EXPECT_EQ(shownFirstError(r).hint, "lse is defined for softmax, hardmax and topk");
  }
  for (const char *norm : {"softmax", "hardmax", "hardmax(ties = first)", "topk(3)"})
    EXPECT_TRUE(check(kernel(std::string("  normalize = ") + norm + "\n  output lse"))
                    .module)
        << norm;
}

TEST(SemaErrors, ModuleLevel) {
  auto empty = check("# nothing here\n");
  EXPECT_FIRST_ERROR(empty, 1, 1, "the file has no attention block");
  auto dup = check(kernel("") + kernel(""));
  EXPECT_FIRST_ERROR(dup, 7, 11, "redefinition of kernel 't'");
  ASSERT_GE(dup.diags.size(), 2u);
  EXPECT_EQ(dup.diags[1].message, "the first kernel 't' is here");
  EXPECT_EQ(dup.diags[1].range.begin.line, 1);
}

TEST(SemaErrors, KernelsAreCheckedIndependently) {
  // `w` of the first kernel is unknown in the second.
  auto r = check(kernel("  param w: i32\n  mask = j < w") +
                 "attention u {\n  q: f32[B, H, L, D]; k: f32[B, H, L, D]\n"
                 "  v: f32[B, H, L, D]\n  mask = j < w\n}\n");
  EXPECT_EQ(r.errors(), 1);
  EXPECT_FIRST_ERROR(r, 11, 14, "unknown name 'w'");
}

TEST(SemaErrors, LetChainsTooDeepOnceExpanded) {
  std::string body = "  let a0 = i";
  for (int n = 1; n <= 1100; ++n)
    body += "\n  let a" + std::to_string(n) + " = a" + std::to_string(n - 1) + " + 1";
  auto r = check(kernel(body));
  ASSERT_FALSE(r.module);
  EXPECT_EQ(r.firstError().message,
            "expression is nested too deeply once lets are expanded");
  std::string ok = "  let a0 = i";
  for (int n = 1; n <= 100; ++n)
    ok += "\n  let a" + std::to_string(n) + " = a" + std::to_string(n - 1) + " + 1";
  EXPECT_TRUE(check(kernel(ok)).module);
}

TEST(SemaErrors, StopsAfterTwentyErrors) {
  std::string body;
  for (int n = 0; n < 40; ++n)
    body += "  let x" + std::to_string(n) + " = nope\n";
  auto r = check(kernel(body));
  EXPECT_EQ(r.errors(), 20);
  EXPECT_EQ(r.diags.back().message, "too many errors; stopping here");
}

// Language v2 (LANGUAGE.md §8): diagnostics of index maps, ranges and
// channel expressions, with their carets.
TEST(SemaErrors, IndexMapsAndRanges) {
  auto r = check("attention t {\n  q: f32[B, L, H, 16] at [b, j, h]\n"
                 "  k: f32[B, G, L, 16]; v: f32[B, G, L, 16]\n}");
  EXPECT_FIRST_ERROR(r, 2, 30, "'j' cannot be used in the `at` of 'q'");
  EXPECT_EQ(shownFirstError(r).caret, "                             ^");
  EXPECT_EQ(shownFirstError(r).hint,
            "a query row is found from b, h and i (with sizes, params and aux tensors)");

  auto r2 = check("attention t {\n  q: f32[B, L, H, 16] at [b, i]\n"
                  "  k: f32[B, G, L, 16]; v: f32[B, G, L, 16]\n}");
  EXPECT_FIRST_ERROR(r2, 2, 23, "'q' has 4 dimensions, so its `at` needs 3 indices, got 2");
  EXPECT_EQ(shownFirstError(r2).caret, "                      ^~");

  auto r3 = check("attention t {\n  q: f32[B, L, H, 16] at [b, i, h]\n"
                  "  k: f32[B, G, L, 16]; v: f32[B, G, L, 16]\n  range i < L\n}");
  EXPECT_FIRST_ERROR(r3, 4, 9, "the range of i is given twice");
  EXPECT_EQ(shownFirstError(r3).hint,
            "i already ranges over dimension 1 of 'q'; a range is needed only where no "
            "dimension gives one");

  auto r4 = check("attention t {\n  q: f32[B, H, 1, 16]\n"
                  "  k: f32[P, G, S, 16] at [pages[b, j / S], hk, j % S]\n"
                  "  v: f32[P, G, S, 16] at [pages[b, j / S], hk, j % S]\n"
                  "  pages: i32[B, NP]\n}");
  EXPECT_FIRST_ERROR(r4, 1, 11, "nothing gives the range of j in kernel 't'");
  EXPECT_EQ(shownFirstError(r4).hint,
            "no dimension is indexed by a bare 'j' in an `at`; add `range j < SIZE`");

  auto r5 = check("attention t {\n  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]\n"
                  "  param n: i32\n  range j < n\n}");
  EXPECT_FIRST_ERROR(r5, 4, 9, "the range of j is given twice");
  EXPECT_TRUE(check("attention t {\n  at: i32[B]\n  range: i32[B]\n"
                    "  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]\n"
                    "  mask = at[b] == range[b]\n}")
                  .module)
      << "`at` and `range` are contextual keywords";
}

TEST(SemaErrors, ChannelExpressions) {
  auto r = check("attention t {\n  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]\n"
                 "  let x[c] = q[c] * k[c]\n}");
  EXPECT_FIRST_ERROR(r, 3, 7, "vector 'x' reads both the query and the key side");
  EXPECT_EQ(shownFirstError(r).caret, "      ^");

  auto r2 = check("attention t {\n  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]\n"
                  "  let x[c < 8] = q[c]\n  let y[c] = k[c]\n  score = dot(x, y)\n}");
  EXPECT_FIRST_ERROR(r2, 5, 11, "dot(x, y) of vectors of different lengths (8 and 16)");
  EXPECT_EQ(shownFirstError(r2).caret, "          ^~~~~~~~~");

  auto r3 = check("attention t {\n  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]\n"
                  "  let x[c] = q[c]\n  score = dot(x, k) + dot(q, k)\n}");
  EXPECT_FIRST_ERROR(r3, 4, 23, "a kernel computes one dot product per pair; this is dot(q, k) "
                                "beside dot(x, k)");
  EXPECT_EQ(shownFirstError(r3).hint, "write the other as sum(c < N: x[c] * y[c])");

  auto r4 = check("attention t {\n  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]\n"
                  "  score = sum(c < 4: c > 1)\n}");
  EXPECT_FIRST_ERROR(r4, 3, 22, "the body of sum must be a number, got bool");

  auto r5 = check("attention t {\n  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]\n"
                  "  doc: i32[B, L]\n  mask = doc[b, int(dot(q, k))] == 0\n}");
  EXPECT_FIRST_ERROR(r5, 4, 17, "index of 'doc' depends on the head vectors");
}

} // namespace
} // namespace attn::dsl
