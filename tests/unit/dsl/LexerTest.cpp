// Tests of the `.attn` lexer: token kinds, values, locations and the errors
// carried by Error tokens.
#include "attn/dsl/Lexer.h"

#include <gtest/gtest.h>

namespace attn::dsl {
namespace {

using K = TokenKind;

std::vector<TokenKind> kinds(const std::string &src) {
  std::vector<TokenKind> out;
  for (const Token &t : lex(src).tokens)
    out.push_back(t.kind);
  return out;
}

TEST(Lexer, KeywordsAndContextualNames) {
  EXPECT_EQ(kinds("attention param let score mask normalize output lse true "
                  "false inf"),
            (std::vector<K>{K::KwAttention, K::KwParam, K::KwLet, K::KwScore,
                            K::KwMask, K::KwNormalize, K::KwOutput, K::KwLse,
                            K::KwTrue, K::KwFalse, K::KwInf, K::Eof}));
  // Normalization names, element types, select and q/k/v are identifiers.
  EXPECT_EQ(kinds("softmax hardmax topk f32 bool select q _x1 scores"),
            (std::vector<K>{K::Ident, K::Ident, K::Ident, K::Ident, K::Ident,
                            K::Ident, K::Ident, K::Ident, K::Ident, K::Eof}));
}

TEST(Lexer, Operators) {
  EXPECT_EQ(kinds("{ } ( ) [ ] , : ; = == != < <= > >= + - * / % ! && ||"),
            (std::vector<K>{K::LBrace, K::RBrace, K::LParen, K::RParen,
                            K::LBracket, K::RBracket, K::Comma, K::Colon,
                            K::Semicolon, K::Assign, K::EqEq, K::NotEq,
                            K::Less, K::LessEq, K::Greater, K::GreaterEq,
                            K::Plus, K::Minus, K::Star, K::Slash, K::Percent,
                            K::Bang, K::AmpAmp, K::PipePipe, K::Eof}));
  // No spaces needed: maximal munch.
  EXPECT_EQ(kinds("j<=i&&!x"), (std::vector<K>{K::Ident, K::LessEq, K::Ident,
                                              K::AmpAmp, K::Bang, K::Ident,
                                              K::Eof}));
}

TEST(Lexer, CommentsAndLineBreaks) {
  EXPECT_EQ(kinds("a # comment ; ( \n\n\n  # more\nb;c"),
            (std::vector<K>{K::Ident, K::Newline, K::Ident, K::Semicolon,
                            K::Ident, K::Eof}));
  EXPECT_EQ(kinds(""), (std::vector<K>{K::Eof}));
  EXPECT_EQ(kinds("# only a comment"), (std::vector<K>{K::Eof}));
  EXPECT_EQ(kinds("a\r\nb"), (std::vector<K>{K::Ident, K::Newline, K::Ident, K::Eof}));
}

TEST(Lexer, IntegerLiterals) {
  LexResult r = lex("0 42 2147483648 9223372036854775807");
  ASSERT_EQ(r.tokens.size(), 5u);
  EXPECT_EQ(r.tokens[0].intValue, 0);
  EXPECT_EQ(r.tokens[1].intValue, 42);
  EXPECT_EQ(r.tokens[2].intValue, 2147483648LL);
  EXPECT_EQ(r.tokens[3].intValue, INT64_MAX);
  for (int n = 0; n < 4; ++n)
    EXPECT_EQ(r.tokens[n].kind, K::IntLit);
  EXPECT_TRUE(r.errors.empty());
}

TEST(Lexer, FloatLiterals) {
  LexResult r = lex("0.5 .25 1. 1e-3 2E+2 1.5e3 1e-400");
  std::vector<double> want = {0.5, 0.25, 1.0, 1e-3, 200.0, 1500.0, 0.0};
  ASSERT_EQ(r.tokens.size(), want.size() + 1);
  for (size_t n = 0; n < want.size(); ++n) {
    EXPECT_EQ(r.tokens[n].kind, K::FloatLit) << n;
    EXPECT_DOUBLE_EQ(r.tokens[n].floatValue, want[n]) << n;
  }
}

TEST(Lexer, IntegerOverflowIsAnError) {
  LexResult r = lex("x 9223372036854775808 y");
  ASSERT_EQ(r.tokens[1].kind, K::Error);
  EXPECT_EQ(r.errors.at(r.tokens[1].error).message,
            "integer literal is too large");
  EXPECT_EQ(r.tokens[1].range.begin.col, 3);
  EXPECT_EQ(r.tokens[1].range.end.col, 22);
  EXPECT_EQ(r.tokens[2].kind, K::Ident);
}

TEST(Lexer, FloatOverflowIsAnError) {
  LexResult r = lex("1e999");
  ASSERT_EQ(r.tokens[0].kind, K::Error);
  EXPECT_EQ(r.errors.at(r.tokens[0].error).message,
            "floating-point literal is out of range");
}

TEST(Lexer, InvalidSuffixOnNumber) {
  LexResult r = lex("12abc 1.5f");
  ASSERT_EQ(r.tokens[0].kind, K::Error);
  EXPECT_EQ(r.errors.at(r.tokens[0].error).message,
            "invalid suffix 'abc' on number");
  ASSERT_EQ(r.tokens[1].kind, K::Error);
  EXPECT_EQ(r.errors.at(r.tokens[1].error).message,
            "invalid suffix 'f' on number");
}

TEST(Lexer, SingleAmpersandAndPipeHaveHints) {
  LexResult r = lex("a & b | c");
  ASSERT_EQ(r.tokens[1].kind, K::Error);
  EXPECT_EQ(r.errors.at(r.tokens[1].error).message, "unexpected character '&'");
  EXPECT_EQ(r.errors.at(r.tokens[1].error).hint, "use '&&' for logical and");
  ASSERT_EQ(r.tokens[3].kind, K::Error);
  EXPECT_EQ(r.errors.at(r.tokens[3].error).hint, "use '||' for logical or");
}

TEST(Lexer, UnicodeOperatorsGetAsciiHints) {
  LexResult r = lex("j \xe2\x89\xa4 i");  // j ≤ i
  ASSERT_EQ(r.tokens.size(), 4u);
  ASSERT_EQ(r.tokens[1].kind, K::Error);
  EXPECT_EQ(r.errors[0].message, "unexpected character '\xe2\x89\xa4'");
  EXPECT_EQ(r.errors[0].hint, "use '<='");
  EXPECT_EQ(r.tokens[2].kind, K::Ident);
  EXPECT_EQ(r.tokens[2].range.begin.col, 7); // byte columns
}

TEST(Lexer, OtherPrintableCharactersAreErrors) {
  LexResult r = lex("a ^ b ? c @");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[0].hint, "use pow(a, b)");
  EXPECT_EQ(r.errors[1].hint, "use select(cond, a, b)");
  EXPECT_EQ(r.errors[2].message, "unexpected character '@'");
}

TEST(Lexer, RunsOfBinaryBytesAreOneError) {
  std::string src = std::string("a ") + '\0' + "\x01\xff\xfe" + " b";
  LexResult r = lex(src);
  ASSERT_EQ(r.tokens.size(), 4u);
  EXPECT_EQ(r.tokens[1].kind, K::Error);
  EXPECT_EQ(r.tokens[1].length, 4u);
  EXPECT_EQ(r.errors[0].message,
            "invalid bytes in the source (the first is 0x00)");
  EXPECT_EQ(r.tokens[2].kind, K::Ident);
}

TEST(Lexer, Locations) {
  LexResult r = lex("ab  cd\n\tef # x\n  gh");
  const auto &t = r.tokens;
  ASSERT_EQ(t.size(), 7u);
  EXPECT_EQ(t[0].range.begin.line, 1);
  EXPECT_EQ(t[0].range.begin.col, 1);
  EXPECT_EQ(t[0].range.end.col, 3);
  EXPECT_EQ(t[1].range.begin.col, 5);
  // A Newline token sits just after the last token of its line.
  EXPECT_EQ(t[2].kind, K::Newline);
  EXPECT_EQ(t[2].range.begin.line, 1);
  EXPECT_EQ(t[2].range.begin.col, 7);
  EXPECT_EQ(t[3].range.begin.line, 2);
  EXPECT_EQ(t[3].range.begin.col, 2); // a tab is one column
  EXPECT_EQ(t[4].kind, K::Newline);
  EXPECT_EQ(t[4].range.begin.col, 4); // the comment is not text
  EXPECT_EQ(t[5].range.begin.line, 3);
  EXPECT_EQ(t[5].range.begin.col, 3);
  EXPECT_EQ(t[6].kind, K::Eof);
  EXPECT_EQ(t[6].range.begin.line, 3);
  EXPECT_EQ(t[6].range.begin.col, 5);
  EXPECT_EQ(t[5].offset, 17u);
  EXPECT_EQ(t[5].length, 2u);
}

TEST(Lexer, DescribeNamesTokens) {
  EXPECT_STREQ(describe(K::LBrace), "'{'");
  EXPECT_STREQ(describe(K::Ident), "identifier");
  EXPECT_STREQ(describe(K::AmpAmp), "'&&'");
  EXPECT_STREQ(describe(K::KwScore), "'score'");
}

} // namespace
} // namespace attn::dsl
