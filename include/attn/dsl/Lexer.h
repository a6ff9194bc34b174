// Tokens of `.attn` source text and the lexer that produces them.
//
// The lexer never fails: text it cannot read becomes an Error token that
// carries its own message, which the parser reports when it reaches it (so
// diagnostics come out in source order). Columns count bytes, as clang's do.
#pragma once

#include "attn/dsl/AST.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace attn::dsl {

enum class TokenKind {
  Eof,
  Newline, // a statement separator; one token for a run of line breaks
  Error,   // unreadable text; see LexResult::errors
  Ident,
  IntLit,
  FloatLit,
  // keywords
  KwAttention, KwParam, KwLet, KwScore, KwMask, KwNormalize, KwOutput, KwLse,
  KwTrue, KwFalse, KwInf,
  // punctuation
  LBrace, RBrace, LParen, RParen, LBracket, RBracket, Comma, Colon, Semicolon,
  Assign, EqEq, NotEq, Less, LessEq, Greater, GreaterEq,
  Plus, Minus, Star, Slash, Percent, Bang, AmpAmp, PipePipe,
};

/// How a token kind is named in diagnostics: "'{'", "identifier", ...
const char *describe(TokenKind kind);

struct Token {
  TokenKind kind = TokenKind::Eof;
  /// For Newline and Eof: an empty range just after the previous token on
  /// the same line, so "expected ..." carets land at the end of the text.
  SourceRange range;
  size_t offset = 0; // spelling: source.substr(offset, length)
  size_t length = 0;
  int64_t intValue = 0;  // IntLit
  double floatValue = 0; // FloatLit
  int error = -1;        // Error: index into LexResult::errors
};

struct LexError {
  std::string message;
  std::string hint;
};

struct LexResult {
  std::vector<Token> tokens; // always ends with Eof
  std::vector<LexError> errors;
};

LexResult lex(const std::string &source);

} // namespace attn::dsl
