// Tests of the `.attn` parser: the language's examples, operator precedence,
// statement forms, syntax errors with recovery, and robustness on arbitrary
// input.
#include "DslTestUtil.h"

#include <cmath>
#include <random>

namespace attn::dsl {
namespace {

using test::kernel;
using test::parseOnly;
using test::shownFirstError;

// LANGUAGE.md §1.
const char *kSlidingWindow = R"(# Mistral-style causal sliding window, grouped-query heads.
attention sliding_window {
  q: f32[B, H, L, 128]
  k: f32[B, G, L, 128]
  v: f32[B, G, L, 128]
  param window: i32 = 4096

  mask = j <= i && i - j < window
}
)";

// LANGUAGE.md §6.
const char *kExamples = R"(attention alibi_causal {
  q: bf16[B, H, L, 128]; k: bf16[B, H, L, 128]; v: bf16[B, H, L, 128]
  let slope = exp2(-8.0 * (h + 1) / H)
  score = dot(q, k) * rsqrt(128) + slope * (j - i)
  mask = j <= i
}

attention packed_documents {
  q: f32[B, H, L, 64]; k: f32[B, H, L, 64]; v: f32[B, H, L, 64]
  doc: i32[B, L]                      # document id of every token
  mask = doc[b, i] == doc[b, j] && j <= i
  output lse
}

attention image_text_cross {          # text queries, image keys/values
  q: f32[B, H, T, 64]
  k: f32[B, H, N, 64]
  v: f32[B, H, N, 96]
  text_image: i32[B, T]               # image each text token may see, -1: none
  token_image: i32[B, N]              # image each image token belongs to
  mask = text_image[b, i] == token_image[b, j]
}

attention lookup_2d {                 # hard-max retrieval with 2-D heads
  q: f64[B, H, L, 2]; k: f64[B, H, L, 2]; v: f64[B, H, L, 2]
  score = dot(q, k)
  mask = j <= i
  normalize = hardmax(ties = latest)
}
)";

TEST(Parser, SlidingWindowExample) {
  auto r = parseOnly(kSlidingWindow);
  ASSERT_TRUE(r.module) << r.rendered;
  ASSERT_EQ(r.module->kernels.size(), 1u);
  const Kernel &k = r.kernel();
  EXPECT_EQ(k.name, "sliding_window");
  EXPECT_EQ(k.range.begin.line, 2);
  EXPECT_EQ(k.range.begin.col, 11);
  ASSERT_EQ(k.tensors.size(), 3u);
  EXPECT_EQ(k.tensors[1].name, "k");
  EXPECT_EQ(k.tensors[1].type, ElemType::F32);
  ASSERT_EQ(k.tensors[1].dims.size(), 4u);
  EXPECT_EQ(k.tensors[1].dims[1].name, "G");
  EXPECT_TRUE(k.tensors[1].dims[3].isLiteral());
  EXPECT_EQ(k.tensors[1].dims[3].value, 128);
  ASSERT_EQ(k.params.size(), 1u);
  EXPECT_EQ(k.params[0].name, "window");
  EXPECT_EQ(k.params[0].type, ElemType::I32);
  ASSERT_TRUE(k.params[0].defaultValue);
  EXPECT_EQ(k.params[0].defaultValue->kind, Literal::Kind::Int);
  EXPECT_EQ(k.params[0].defaultValue->i, 4096);
  EXPECT_EQ(k.score, nullptr);
  ASSERT_NE(k.mask, nullptr);
  EXPECT_EQ(printExpr(*k.mask), "((j <= i) && ((i - j) < window))");
  EXPECT_EQ(k.normalize.kind, NormKind::Softmax);
  EXPECT_FALSE(k.outputLse);
}

TEST(Parser, SectionSixExamples) {
  auto r = parseOnly(kExamples);
  ASSERT_TRUE(r.module) << r.rendered;
  const Module &m = *r.module;
  ASSERT_EQ(m.kernels.size(), 4u);
  EXPECT_EQ(m.kernels[0].tensors[0].type, ElemType::BF16);
  ASSERT_EQ(m.kernels[0].lets.size(), 1u);
  EXPECT_EQ(printExpr(*m.kernels[0].lets[0].value),
            "exp2((((-8.0) * (h + 1)) / H))");
  EXPECT_EQ(printExpr(*m.kernels[0].score),
            "((dot(q, k) * rsqrt(128)) + (slope * (j - i)))");
  EXPECT_TRUE(m.kernels[1].outputLse);
  EXPECT_EQ(m.kernels[1].tensors[3].name, "doc");
  EXPECT_EQ(printExpr(*m.kernels[1].mask),
            "((doc[b, i] == doc[b, j]) && (j <= i))");
  EXPECT_EQ(m.kernels[2].tensors[2].dims[3].value, 96);
  EXPECT_EQ(m.kernels[3].normalize.kind, NormKind::Hardmax);
  EXPECT_EQ(m.kernels[3].normalize.ties, TieRule::Latest);
  EXPECT_EQ(m.findKernel("image_text_cross"), &m.kernels[2]);
  EXPECT_EQ(m.findKernel("nope"), nullptr);
}

std::string parsedMask(const std::string &expr) {
  auto r = parseOnly(kernel("  mask = " + expr));
  if (!r.module)
    return "error: " + r.rendered;
  return printExpr(*r.kernel().mask);
}

TEST(Parser, Precedence) {
  const std::pair<const char *, const char *> cases[] = {
      {"a || b && c", "(a || (b && c))"},
      {"a && b || c", "((a && b) || c)"},
      {"a && b == c", "(a && (b == c))"},
      {"a == b && c != d", "((a == b) && (c != d))"},
      {"a == b < c", "(a == (b < c))"},
      {"a < b == c >= d", "((a < b) == (c >= d))"},
      {"a < b + c", "(a < (b + c))"},
      {"a + b <= c - d", "((a + b) <= (c - d))"},
      {"a > b * c", "(a > (b * c))"},
      {"a + b * c", "(a + (b * c))"},
      {"a * b + c", "((a * b) + c)"},
      {"a - b - c", "((a - b) - c)"},
      {"a / b % c * d", "(((a / b) % c) * d)"},
      {"-a * b", "((-a) * b)"},
      {"a * -b", "(a * (-b))"},
      {"- - a", "(-(-a))"},
      {"!a && b", "((!a) && b)"},
      {"!(a && b)", "(!(a && b))"},
      {"(a + b) * c", "((a + b) * c)"},
      {"a || b || c", "((a || b) || c)"},
      {"f(a, b + 1) * t[b, i / 64]", "(f(a, (b + 1)) * t[b, (i / 64)])"},
      {"g()", "g()"},
      {"1 + 2.5 - inf", "((1 + 2.5) - inf)"},
      {"true != false", "(true != false)"},
  };
  for (const auto &[src, want] : cases)
    EXPECT_EQ(parsedMask(src), want) << src;
}

TEST(Parser, OperatorKinds) {
  auto r = parseOnly(kernel("  mask = a > b"));
  ASSERT_TRUE(r.module);
  const Expr &e = *r.kernel().mask;
  EXPECT_EQ(e.kind, ExprKind::Binary);
  EXPECT_EQ(e.binaryOp, BinaryOp::Gt);
  EXPECT_EQ(e.args[0]->kind, ExprKind::Ident);
  EXPECT_EQ(e.range.begin.col, 10);
  EXPECT_EQ(e.range.end.col, 15);
}

TEST(Parser, LineBreaksInsideBracketsAreIgnored) {
  auto r = parseOnly("attention t {\n  q: f32[B,\n H, L,\n D]\n  k: f32[B, H, L, D]; "
                     "v: f32[B, H, L, D]\n  score = (dot(q, k) +\n    max(\n  1,\n 2))\n"
                     "  mask = t[b,\n i] == 0\n}\n");
  ASSERT_TRUE(r.module) << r.rendered;
  EXPECT_EQ(r.kernel().tensors[0].dims.size(), 4u);
  EXPECT_EQ(printExpr(*r.kernel().score), "(dot(q, k) + max(1, 2))");
}

TEST(Parser, LineBreakOutsideBracketsEndsTheStatement) {
  auto r = parseOnly(kernel("  score = 1 +\n 2"));
  ASSERT_FALSE(r.module);
  EXPECT_FIRST_ERROR(r, 5, 14, "expected an expression");
}

TEST(Parser, NormalizeForms) {
  const std::pair<const char *, NormKind> kinds[] = {
      {"softmax", NormKind::Softmax}, {"sigmoid", NormKind::Sigmoid},
      {"relu", NormKind::Relu},       {"none", NormKind::None},
      {"hardmax", NormKind::Hardmax}, {"topk(8)", NormKind::TopK}};
  for (const auto &[src, kind] : kinds) {
    auto r = parseOnly(kernel(std::string("  normalize = ") + src));
    ASSERT_TRUE(r.module) << src << r.rendered;
    EXPECT_EQ(r.kernel().normalize.kind, kind) << src;
  }
  auto hard = parseOnly(kernel("  normalize = hardmax"));
  EXPECT_EQ(hard.kernel().normalize.ties, TieRule::Average);
  auto first = parseOnly(kernel("  normalize = hardmax(ties = first)"));
  EXPECT_EQ(first.kernel().normalize.ties, TieRule::First);
  auto avg = parseOnly(kernel("  normalize = hardmax( ties = average )"));
  EXPECT_EQ(avg.kernel().normalize.ties, TieRule::Average);
  auto topk = parseOnly(kernel("  normalize = topk(16)"));
  EXPECT_EQ(topk.kernel().normalize.k, 16);
}

TEST(Parser, ParamForms) {
  auto r = parseOnly(kernel("  param a: i32\n  param b2: f32 = -0.5\n"
                            "  param c: f64 = -inf\n  param d: bool = true\n"
                            "  param e: i64 = -3"));
  ASSERT_TRUE(r.module) << r.rendered;
  const auto &p = r.kernel().params;
  ASSERT_EQ(p.size(), 5u);
  EXPECT_FALSE(p[0].defaultValue);
  EXPECT_DOUBLE_EQ(p[1].defaultValue->f, -0.5);
  EXPECT_EQ(p[1].defaultRange.begin.col, 19);
  EXPECT_EQ(p[1].defaultRange.end.col, 23);
  EXPECT_TRUE(std::isinf(p[2].defaultValue->f) && p[2].defaultValue->f < 0);
  EXPECT_EQ(p[3].defaultValue->kind, Literal::Kind::Bool);
  EXPECT_TRUE(p[3].defaultValue->b);
  EXPECT_EQ(p[4].defaultValue->i, -3);
}

TEST(Parser, SemicolonsAndBlankLinesSeparateStatements) {
  auto r = parseOnly("\n\n;attention a { q: f32[B, H, L, D];; k: f32[B, H, L, D]\n\n"
                     "v: f32[B, H, L, D]; mask = j <= i; output lse }\n"
                     "attention b {\n}\n");
  ASSERT_TRUE(r.module) << r.rendered;
  ASSERT_EQ(r.module->kernels.size(), 2u);
  EXPECT_TRUE(r.kernel(0).outputLse);
  EXPECT_TRUE(r.kernel(1).tensors.empty());
}

// ---- syntax errors ----------------------------------------------------------

TEST(ParserErrors, ChainedComparison) {
  auto r = parseOnly(kernel("  mask = 0 <= i < L"));
  ASSERT_FALSE(r.module);
  EXPECT_FIRST_ERROR(r, 5, 17, "comparisons cannot be chained");
  auto shown = shownFirstError(r);
  EXPECT_EQ(shown.source, "  mask = 0 <= i < L");
  EXPECT_EQ(shown.caret, "                ^");
  EXPECT_EQ(shown.hint, "write `a < b && b < c` instead of `a < b < c`");
}

TEST(ParserErrors, ChainedEquality) {
  auto r = parseOnly(kernel("  mask = a == b != c"));
  EXPECT_FIRST_ERROR(r, 5, 17, "'!=' cannot be chained");
  EXPECT_EQ(shownFirstError(r).caret, "                ^~");
}

TEST(ParserErrors, MissingEquals) {
  auto r = parseOnly(kernel("  score dot(q, k)"));
  EXPECT_FIRST_ERROR(r, 5, 9, "expected '=' after 'score'");
  EXPECT_EQ(shownFirstError(r).caret, "        ^~~");
}

TEST(ParserErrors, AssignmentWhereComparisonMeant) {
  auto r = parseOnly(kernel("  mask = j = i"));
  EXPECT_FIRST_ERROR(r, 5, 12, "unexpected '='");
  EXPECT_EQ(shownFirstError(r).hint, "use '==' to compare");
  auto r2 = parseOnly(kernel("  mask = = i"));
  EXPECT_FIRST_ERROR(r2, 5, 10, "expected an expression");
  EXPECT_EQ(shownFirstError(r2).hint, "'=' assigns; use '==' to compare");
}

TEST(ParserErrors, ExpectedExpressionAtEndOfLine) {
  auto r = parseOnly(kernel("  mask = j <=   # nothing"));
  EXPECT_FIRST_ERROR(r, 5, 14, "expected an expression");
  EXPECT_EQ(shownFirstError(r).caret, "             ^");
}

TEST(ParserErrors, UnclosedParenthesisPointsAtTheOpening) {
  auto r = parseOnly(kernel("  score = (1 + 2\n  mask = j <= i"));
  ASSERT_FALSE(r.module);
  EXPECT_FIRST_ERROR(r, 6, 3, "expected ')'");
  ASSERT_GE(r.diags.size(), 2u);
  EXPECT_EQ(r.diags[1].severity, Severity::Note);
  EXPECT_EQ(r.diags[1].message, "to match this '('");
  EXPECT_EQ(r.diags[1].range.begin.line, 5);
  EXPECT_EQ(r.diags[1].range.begin.col, 11);
  EXPECT_EQ(r.errors(), 1) << r.rendered; // recovery resumes at `mask`
}

TEST(ParserErrors, BadArgumentList) {
  auto r = parseOnly(kernel("  score = max(1 2)"));
  EXPECT_FIRST_ERROR(r, 5, 17, "expected ',' or ')'");
  auto r2 = parseOnly(kernel("  mask = t[b i] == 0"));
  EXPECT_FIRST_ERROR(r2, 5, 14, "expected ',' or ']'");
}

TEST(ParserErrors, UnknownNormalization) {
  auto r = parseOnly(kernel("  normalize = sofmax"));
  EXPECT_FIRST_ERROR(r, 5, 15, "unknown normalization 'sofmax'");
  EXPECT_EQ(shownFirstError(r).caret, "              ^~~~~~");
  EXPECT_EQ(shownFirstError(r).hint, "did you mean 'softmax'?");
  auto r2 = parseOnly(kernel("  normalize = entmax"));
  EXPECT_FIRST_ERROR(r2, 5, 15, "unknown normalization 'entmax'");
  EXPECT_NE(shownFirstError(r2).hint.find("softmax, sigmoid, relu, none"),
            std::string::npos);
}

TEST(ParserErrors, NormalizationArguments) {
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = topk(0)")), 5, 20,
                     "the K of topk(K) must be positive");
  // 4294967297 = 2^32 + 1 used to run as topk(1).
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = topk(4294967297)")), 5, 20,
                     "the K of topk(K) does not fit in i32 (at most 2147483647)");
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = topk(2147483648)")), 5, 20,
                     "the K of topk(K) does not fit in i32 (at most 2147483647)");
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = topk(K)")), 5, 20,
                     "the K of topk(K) must be a positive integer literal");
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = topk(-1)")), 5, 20,
                     "the K of topk(K) must be a positive integer literal");
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = topk")), 5, 19,
                     "expected '(' after 'topk'");
  auto ties = parseOnly(kernel("  normalize = hardmax(ties = last)"));
  EXPECT_FIRST_ERROR(ties, 5, 30, "unknown tie rule 'last'");
  EXPECT_EQ(shownFirstError(ties).hint, "did you mean 'latest'?");
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = hardmax(latest)")), 5, 23,
                     "expected 'ties = average|latest|first'");
  EXPECT_FIRST_ERROR(parseOnly(kernel("  normalize = softmax(2)")), 5, 22,
                     "'softmax' takes no arguments");
}

TEST(ParserErrors, ElementTypes) {
  auto r = parseOnly("attention t {\n  q: float[B, H, L, D]\n}");
  EXPECT_FIRST_ERROR(r, 2, 6, "unknown element type 'float'");
  EXPECT_EQ(shownFirstError(r).hint, "did you mean 'f32'?");
  EXPECT_EQ(shownFirstError(r).caret, "     ^~~~~");
  auto r2 = parseOnly("attention t {\n  q: f31[B, H, L, D]\n}");
  EXPECT_EQ(shownFirstError(r2).hint, "did you mean 'f32'?");
  auto r3 = parseOnly("attention t {\n  param p: quux\n}");
  EXPECT_FIRST_ERROR(r3, 2, 12, "unknown element type 'quux'");
  EXPECT_EQ(shownFirstError(r3).hint,
            "element types are f32, f16, bf16, f64, i32, i64 and bool");
}

TEST(ParserErrors, TensorWithoutDimensions) {
  auto r = parseOnly(kernel("  scale: f32"));
  EXPECT_FIRST_ERROR(r, 5, 13, "expected '[' and the dimensions of 'scale'");
  EXPECT_NE(shownFirstError(r).hint.find("`param scale: T`"), std::string::npos);
  auto r2 = parseOnly(kernel("  t: f32[B, ]"));
  EXPECT_FIRST_ERROR(r2, 5, 13, "expected a dimension: a size name or an integer");
  auto r3 = parseOnly(kernel("  t: f32[B, 1.5]"));
  EXPECT_FIRST_ERROR(r3, 5, 13, "expected a dimension: a size name or an integer");
}

TEST(ParserErrors, ParamDefaultMustBeALiteral) {
  auto r = parseOnly(kernel("  param w: i32 = 2 * 3"));
  EXPECT_FIRST_ERROR(r, 5, 20, "expected a line break or ';' after the statement");
  auto r2 = parseOnly(kernel("  param w: i32 = L"));
  EXPECT_FIRST_ERROR(r2, 5, 18, "expected a literal default value for param 'w'");
  auto r3 = parseOnly(kernel("  param w: bool = -true"));
  EXPECT_FIRST_ERROR(r3, 5, 19, "'-' cannot be applied to a bool");
  auto r4 = parseOnly(kernel("  param w i32"));
  EXPECT_FIRST_ERROR(r4, 5, 11, "expected ':' and a type after param 'w'");
}

TEST(ParserErrors, KeywordsAreNotNames) {
  auto r = parseOnly(kernel("  let score = 1"));
  EXPECT_FIRST_ERROR(r, 5, 7, "expected a name after 'let'");
  EXPECT_EQ(shownFirstError(r).hint,
            "'score' is a keyword and cannot be used as a name");
  auto r2 = parseOnly("attention mask {\n}");
  EXPECT_FIRST_ERROR(r2, 1, 11, "expected a kernel name after 'attention'");
}

TEST(ParserErrors, UnknownOutput) {
  auto r = parseOnly(kernel("  output attn"));
  EXPECT_FIRST_ERROR(r, 5, 10, "unknown output 'attn'");
  EXPECT_EQ(shownFirstError(r).hint,
            "only `output lse` can be requested; `out` is always returned");
}

TEST(ParserErrors, StatementsGivenTwice) {
  const std::tuple<const char *, int, const char *> cases[] = {
      {"  score = 1\n  score = 2", 6, "'score' is defined twice"},
      {"  mask = true\n  mask = false", 6, "'mask' is defined twice"},
      {"  normalize = relu\n  normalize = none", 6, "'normalize' is set twice"},
      {"  output lse\n  output lse", 6, "'output lse' is given twice"},
  };
  for (const auto &[body, line, msg] : cases) {
    auto r = parseOnly(kernel(body));
    ASSERT_FALSE(r.module) << body;
    EXPECT_FIRST_ERROR(r, line, 3, msg);
    ASSERT_EQ(r.diags.size(), 2u) << r.rendered;
    EXPECT_EQ(r.diags[1].severity, Severity::Note);
    EXPECT_EQ(r.diags[1].range.begin.line, 5) << body;
  }
}

TEST(ParserErrors, UnknownStatement) {
  auto r = parseOnly(kernel("  scor = dot(q, k)"));
  EXPECT_FIRST_ERROR(r, 5, 3, "unknown statement 'scor ='");
  EXPECT_EQ(shownFirstError(r).hint, "did you mean 'score'?");
  auto r2 = parseOnly(kernel("  bias = 1"));
  EXPECT_EQ(shownFirstError(r2).hint, "to name a value write `let bias = ...`");
  auto r3 = parseOnly(kernel("  + 1"));
  EXPECT_FIRST_ERROR(r3, 5, 3, "expected a declaration or statement");
}

TEST(ParserErrors, MissingClosingBrace) {
  auto r = parseOnly("attention t {\n  mask = j <= i\n");
  EXPECT_FIRST_ERROR(r, 2, 16, "expected '}' to end kernel 't'");
  ASSERT_EQ(r.diags.size(), 2u);
  EXPECT_EQ(r.diags[1].message, "the kernel's '{' is here");
  EXPECT_EQ(r.diags[1].range.begin.col, 13);
  auto r2 = parseOnly("attention a {\n  mask = true\nattention b {\n}\n");
  EXPECT_FIRST_ERROR(r2, 3, 1, "expected '}' to end kernel 'a'");
  ASSERT_EQ(r2.module, std::nullopt);
}

TEST(ParserErrors, StatementsOutsideAKernel) {
  auto r = parseOnly("mask = j <= i\n");
  EXPECT_FIRST_ERROR(r, 1, 1, "expected 'attention'");
  EXPECT_EQ(shownFirstError(r).hint,
            "declarations and statements go inside an `attention NAME { ... }` "
            "block");
  auto r2 = parseOnly("attention {\n}");
  EXPECT_FIRST_ERROR(r2, 1, 11, "expected a kernel name after 'attention'");
  auto r3 = parseOnly("attention t\nq: f32[B]");
  EXPECT_FIRST_ERROR(r3, 2, 1, "expected '{' after the kernel name");
}

TEST(ParserErrors, LexerErrorsAreReportedInPlace) {
  auto r = parseOnly(kernel("  mask = j \xe2\x89\xa4 i"));
  EXPECT_FIRST_ERROR(r, 5, 12, "unexpected character '\xe2\x89\xa4'");
  EXPECT_EQ(shownFirstError(r).hint, "use '<='");
  EXPECT_EQ(shownFirstError(r).caret, "           ^");
  EXPECT_EQ(r.errors(), 1);
  auto r2 = parseOnly(kernel("  score = 99999999999999999999"));
  EXPECT_FIRST_ERROR(r2, 5, 11, "integer literal is too large");
  EXPECT_EQ(shownFirstError(r2).caret, "          ^~~~~~~~~~~~~~~~~~~~");
}

TEST(ParserErrors, RecoveryReportsOneErrorPerBadStatement) {
  auto r = parseOnly(kernel("  score = (1 +\n  mask = )\n  param p: i32 = \n"
                            "  let ok = 1\n  normalize = bogus\n  output lse"));
  ASSERT_FALSE(r.module);
  std::vector<int> lines;
  for (const auto &d : r.diags)
    if (d.severity == Severity::Error)
      lines.push_back(d.range.begin.line);
  EXPECT_EQ(lines, (std::vector<int>{6, 6, 7, 9})) << r.rendered;
  EXPECT_EQ(r.firstError().message, "expected an expression");
  EXPECT_EQ(shownFirstError(r).hint, "a '(' or '[' before this is not closed");
}

TEST(ParserErrors, StopsAfterTwentyErrors) {
  std::string body;
  for (int n = 0; n < 50; ++n)
    body += "  score +\n";
  auto r = parseOnly(kernel(body));
  EXPECT_EQ(r.errors(), 20);
  EXPECT_EQ(r.diags.back().severity, Severity::Note);
  EXPECT_EQ(r.diags.back().message, "too many errors; stopping here");
}

TEST(ParserErrors, DeepNestingIsAnErrorNotACrash) {
  const std::string deep[] = {
      std::string(100000, '(') + "1" + std::string(100000, ')'),
      std::string(100000, '-') + "1",
      std::string(100000, '!') + "true",
      [] {
        std::string s;
        for (int n = 0; n < 100000; ++n)
          s += "1 + ";
        return s + "1";
      }(),
      [] {
        std::string s;
        for (int n = 0; n < 5000; ++n)
          s += "exp(";
        return s + "1" + std::string(5000, ')');
      }(),
  };
  for (const auto &expr : deep) {
    auto r = parseOnly(kernel("  score = " + expr));
    ASSERT_FALSE(r.module);
    EXPECT_EQ(r.errors(), 1) << r.rendered.substr(0, 300);
    // The flat chain is not nested, only too long for the tree depth bound.
    EXPECT_EQ(r.firstError().message, expr[0] == '1'
                                          ? "expression is too long or nested too deeply"
                                          : "expression is nested too deeply");
    EXPECT_EQ(r.firstError().range.begin.line, 5);
  }
  // Reasonable nesting is fine.
  auto ok = parseOnly(kernel("  score = " + std::string(150, '(') + "1" +
                             std::string(150, ')') + " + " +
                             std::string(150, '-') + "1"));
  EXPECT_TRUE(ok.module) << ok.rendered.substr(0, 300);
}

TEST(ParserErrors, AFlatChainIsNotNesting) {
  // 300 operands in one flat sum: one level of nesting (the old bound of 200
  // counted every operand).
  std::string sum = "j";
  for (int n = 0; n < 300; ++n)
    sum += " + " + std::to_string(n % 7) + " * i";
  auto r = parseOnly(kernel("  mask = " + sum + " > 0"));
  EXPECT_TRUE(r.module) << r.rendered.substr(0, 300);
}

// ---- robustness -------------------------------------------------------------

/// No crash, no hang, and success exactly when no error was reported.
void expectConsistent(const test::Run &r, const std::string &src) {
  if (r.module) {
    EXPECT_EQ(r.errors(), 0) << src;
    (void)printModule(*r.module);
  } else {
    EXPECT_GE(r.errors(), 1) << src;
    EXPECT_NE(r.rendered.find(": error: "), std::string::npos);
  }
}

TEST(ParserRobustness, RandomBytes) {
  std::mt19937 rng(1234);
  for (int n = 0; n < 2000; ++n) {
    std::string src(rng() % 200, '\0');
    for (char &c : src)
      c = static_cast<char>(rng() % 256);
    if (n % 2)
      src = "attention x {\n" + src; // get past the file header
    auto r = test::check(src);
    expectConsistent(r, src);
  }
}

TEST(ParserRobustness, RandomTokenSoup) {
  const char *vocab[] = {
      "attention", "t",    "{",      "}",       "(",      ")",     "[",
      "]",         ",",    ":",      ";",       "\n",     "=",     "==",
      "!=",        "<",    "<=",     ">",       ">=",     "+",     "-",
      "*",         "/",    "%",      "!",       "&&",     "||",    "q",
      "k",         "v",    "b",      "h",       "i",      "j",     "B",
      "f32",       "i32",  "bool",   "param",   "let",    "score", "mask",
      "normalize", "output", "lse",  "true",    "false",  "inf",   "1",
      "0",         "2.5",  "dot",    "sqnorm",  "exp",    "select",
      "hardmax",   "topk", "softmax", "ties",   "latest", "#",     "doc",
      "99999999999999999999", "1e999", "\xe2\x89\xa4", "&", "\x01"};
  const size_t n = sizeof(vocab) / sizeof(vocab[0]);
  std::mt19937 rng(99);
  const std::string header = "attention t {\n q: f32[B, H, L, D]\n k: f32[B, "
                             "H, L, D]\n v: f32[B, H, L, D]\n doc: i32[B, L]\n";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string src = iter % 3 ? header : "";
    int len = static_cast<int>(rng() % 40);
    for (int t = 0; t < len; ++t) {
      src += vocab[rng() % n];
      src += rng() % 4 ? " " : "";
    }
    if (iter % 3)
      src += "\n}\n";
    auto r = test::check(src);
    expectConsistent(r, src);
  }
}

TEST(ParserRobustness, TruncationsAndMutationsOfValidFiles) {
  std::string full = std::string(kSlidingWindow) + kExamples;
  ASSERT_TRUE(test::check(full).module);
  for (size_t cut = 0; cut < full.size(); ++cut) {
    std::string src = full.substr(0, cut);
    expectConsistent(test::check(src), src);
  }
  std::mt19937 rng(7);
  const char replacements[] = "(){}[],;:=<>!&|+-*/%#\n 0aZ_.\x80";
  for (int iter = 0; iter < 2000; ++iter) {
    std::string src = full;
    for (int m = 0; m < 3; ++m) {
      size_t at = rng() % src.size();
      if (rng() % 2)
        src.erase(at, 1 + rng() % 3);
      else
        src[at] = replacements[rng() % (sizeof(replacements) - 1)];
    }
    expectConsistent(test::check(src), src);
  }
}

} // namespace
} // namespace attn::dsl
