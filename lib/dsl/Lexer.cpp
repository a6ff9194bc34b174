// The lexer of `.attn` files: source text to tokens (see Lexer.h).
#include "attn/dsl/Lexer.h"

#include <charconv>
#include <cstdio>
#include <string_view>

namespace attn::dsl {

const char *describe(TokenKind kind) {
  switch (kind) {
  case TokenKind::Eof: return "end of file";
  case TokenKind::Newline: return "end of line";
  case TokenKind::Error: return "invalid text";
  case TokenKind::Ident: return "identifier";
  case TokenKind::IntLit: return "integer";
  case TokenKind::FloatLit: return "number";
  case TokenKind::KwAttention: return "'attention'";
  case TokenKind::KwParam: return "'param'";
  case TokenKind::KwLet: return "'let'";
  case TokenKind::KwScore: return "'score'";
  case TokenKind::KwMask: return "'mask'";
  case TokenKind::KwNormalize: return "'normalize'";
  case TokenKind::KwOutput: return "'output'";
  case TokenKind::KwLse: return "'lse'";
  case TokenKind::KwTrue: return "'true'";
  case TokenKind::KwFalse: return "'false'";
  case TokenKind::KwInf: return "'inf'";
  case TokenKind::LBrace: return "'{'";
  case TokenKind::RBrace: return "'}'";
  case TokenKind::LParen: return "'('";
  case TokenKind::RParen: return "')'";
  case TokenKind::LBracket: return "'['";
  case TokenKind::RBracket: return "']'";
  case TokenKind::Comma: return "','";
  case TokenKind::Colon: return "':'";
  case TokenKind::Semicolon: return "';'";
  case TokenKind::Assign: return "'='";
  case TokenKind::EqEq: return "'=='";
  case TokenKind::NotEq: return "'!='";
  case TokenKind::Less: return "'<'";
  case TokenKind::LessEq: return "'<='";
  case TokenKind::Greater: return "'>'";
  case TokenKind::GreaterEq: return "'>='";
  case TokenKind::Plus: return "'+'";
  case TokenKind::Minus: return "'-'";
  case TokenKind::Star: return "'*'";
  case TokenKind::Slash: return "'/'";
  case TokenKind::Percent: return "'%'";
  case TokenKind::Bang: return "'!'";
  case TokenKind::AmpAmp: return "'&&'";
  case TokenKind::PipePipe: return "'||'";
  }
  return "token";
}

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool isIdentChar(char c) { return isIdentStart(c) || isDigit(c); }

size_t utf8Length(const std::string &s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (c >= 0xF5 || n == 0 || i + n > s.size())
    return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
      return 0;
  return n;
}

TokenKind keyword(std::string_view s) {
  static const std::pair<const char *, TokenKind> table[] = {
      {"attention", TokenKind::KwAttention}, {"param", TokenKind::KwParam},
      {"let", TokenKind::KwLet},             {"score", TokenKind::KwScore},
      {"mask", TokenKind::KwMask},           {"normalize", TokenKind::KwNormalize},
      {"output", TokenKind::KwOutput},       {"lse", TokenKind::KwLse},
      {"true", TokenKind::KwTrue},           {"false", TokenKind::KwFalse},
      {"inf", TokenKind::KwInf},
  };
  for (const auto &[word, kind] : table)
    if (s == word)
      return kind;
  return TokenKind::Ident;
}

/// Hints for characters people type by habit or from papers.
const char *unicodeHint(std::string_view ch) {
  static const std::pair<const char *, const char *> table[] = {
      {"\u2264", "use '<='"},         {"\u2265", "use '>='"},
      {"\u2260", "use '!='"},         {"\u2212", "use '-' (ASCII minus)"},
      {"\u00d7", "use '*'"},          {"\u00b7", "use '*'"},
      {"\u2227", "use '&&'"},         {"\u2228", "use '||'"},
      {"\u00ac", "use '!'"},          {"\u221e", "use 'inf'"},
      {"\u2018", "quotes are not part of the language"},
      {"\u2019", "quotes are not part of the language"},
      {"\u201c", "quotes are not part of the language"},
      {"\u201d", "quotes are not part of the language"},
  };
  for (const auto &[c, hint] : table)
    if (ch == c)
      return hint;
  return "identifiers are ASCII letters, digits and '_'";
}

class Lexer {
public:
  explicit Lexer(const std::string &src) : src_(src) {}

  LexResult run() {
    while (pos_ < src_.size())
      lexOne();
    Token eof;
    eof.kind = TokenKind::Eof;
    eof.offset = src_.size();
    SourceLoc at = lastEnd_.line > 0 ? lastEnd_ : SourceLoc{1, 1};
    eof.range = {at, at};
    out_.tokens.push_back(eof);
    return std::move(out_);
  }

private:
  const std::string &src_;
  size_t pos_ = 0;
  int line_ = 1;
  int col_ = 1;
  SourceLoc lastEnd_;  // end of the last token other than Newline
  LexResult out_;

  char at(size_t k = 0) const {
    return pos_ + k < src_.size() ? src_[pos_ + k] : '\0';
  }
  void bump(size_t n = 1) { // never crosses a line break
    pos_ += n;
    col_ += static_cast<int>(n);
  }

  Token &push(TokenKind kind, size_t begin, SourceLoc beginLoc) {
    Token t;
    t.kind = kind;
    t.offset = begin;
    t.length = pos_ - begin;
    t.range = {beginLoc, {line_, col_}};
    lastEnd_ = {line_, col_};
    out_.tokens.push_back(t);
    return out_.tokens.back();
  }

  void pushError(size_t begin, SourceLoc beginLoc, std::string message,
                 std::string hint = "") {
    Token &t = push(TokenKind::Error, begin, beginLoc);
    t.error = static_cast<int>(out_.errors.size());
    out_.errors.push_back({std::move(message), std::move(hint)});
  }

  void newline() {
    if (out_.tokens.empty() || out_.tokens.back().kind != TokenKind::Newline) {
      Token t;
      t.kind = TokenKind::Newline;
      t.offset = pos_;
      t.length = 1;
      SourceLoc here = lastEnd_.line == line_ ? lastEnd_ : SourceLoc{line_, col_};
      t.range = {here, here};
      out_.tokens.push_back(t);
    }
    ++pos_;
    ++line_;
    col_ = 1;
  }

  void lexOne() {
    char c = at();
    size_t begin = pos_;
    SourceLoc loc{line_, col_};
    switch (c) {
    case '\n': newline(); return;
    case ' ': case '\t': case '\r': case '\f': case '\v': bump(); return;
    case '#':
      while (pos_ < src_.size() && at() != '\n')
        bump();
      return;
    case '{': bump(); push(TokenKind::LBrace, begin, loc); return;
    case '}': bump(); push(TokenKind::RBrace, begin, loc); return;
    case '(': bump(); push(TokenKind::LParen, begin, loc); return;
    case ')': bump(); push(TokenKind::RParen, begin, loc); return;
    case '[': bump(); push(TokenKind::LBracket, begin, loc); return;
    case ']': bump(); push(TokenKind::RBracket, begin, loc); return;
    case ',': bump(); push(TokenKind::Comma, begin, loc); return;
    case ':': bump(); push(TokenKind::Colon, begin, loc); return;
    case ';': bump(); push(TokenKind::Semicolon, begin, loc); return;
    case '+': bump(); push(TokenKind::Plus, begin, loc); return;
    case '-': bump(); push(TokenKind::Minus, begin, loc); return;
    case '*': bump(); push(TokenKind::Star, begin, loc); return;
    case '/': bump(); push(TokenKind::Slash, begin, loc); return;
    case '%': bump(); push(TokenKind::Percent, begin, loc); return;
    case '=': twoChar('=', TokenKind::EqEq, TokenKind::Assign); return;
    case '!': twoChar('=', TokenKind::NotEq, TokenKind::Bang); return;
    case '<': twoChar('=', TokenKind::LessEq, TokenKind::Less); return;
    case '>': twoChar('=', TokenKind::GreaterEq, TokenKind::Greater); return;
    case '&':
      if (at(1) == '&') {
        bump(2);
        push(TokenKind::AmpAmp, begin, loc);
      } else {
        bump();
        pushError(begin, loc, "unexpected character '&'",
                  "use '&&' for logical and");
      }
      return;
    case '|':
      if (at(1) == '|') {
        bump(2);
        push(TokenKind::PipePipe, begin, loc);
      } else {
        bump();
        pushError(begin, loc, "unexpected character '|'",
                  "use '||' for logical or");
      }
      return;
    default: break;
    }
    if (isIdentStart(c)) {
      while (isIdentChar(at()))
        bump();
      push(keyword(std::string_view(src_).substr(begin, pos_ - begin)), begin,
           loc);
      return;
    }
    if (isDigit(c) || (c == '.' && isDigit(at(1)))) {
      lexNumber();
      return;
    }
    auto uc = static_cast<unsigned char>(c);
    if (uc >= 0x80) {
      if (size_t n = utf8Length(src_, pos_)) {
        bump(n);
        std::string ch = src_.substr(begin, n);
        pushError(begin, loc, "unexpected character '" + ch + "'",
                  unicodeHint(ch));
        return;
      }
    } else if (uc >= 0x20 && uc < 0x7F) {
      bump();
      const char *hint = c == '^'   ? "use pow(a, b)"
                         : c == '?' ? "use select(cond, a, b)"
                         : c == '.' ? "there is no '.' operator; numbers are "
                                      "written like 0.5"
                                    : "";
      pushError(begin, loc, std::string("unexpected character '") + c + "'",
                hint);
      return;
    }
    // Bytes that are not text: report a whole run once.
    auto isJunk = [&]() {
      auto b = static_cast<unsigned char>(at());
      if (pos_ >= src_.size() || b == '\n' || b == '\t' || b == '\r' ||
          b == '\f' || b == '\v')
        return false;
      if (b >= 0x80)
        return utf8Length(src_, pos_) == 0;
      return b < 0x20 || b == 0x7F;
    };
    while (isJunk())
      bump();
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", uc);
    pushError(begin, loc,
              std::string(pos_ - begin > 1 ? "invalid bytes in the source "
                                             "(the first is "
                                           : "invalid byte in the source (") +
                  buf + ")",
              "an .attn file is UTF-8 text");
  }

  void twoChar(char second, TokenKind both, TokenKind one) {
    size_t begin = pos_;
    SourceLoc loc{line_, col_};
    if (at(1) == second) {
      bump(2);
      push(both, begin, loc);
    } else {
      bump();
      push(one, begin, loc);
    }
  }

  void lexNumber() {
    size_t begin = pos_;
    SourceLoc loc{line_, col_};
    bool isFloat = false;
    while (isDigit(at()))
      bump();
    if (at() == '.') {
      isFloat = true;
      bump();
      while (isDigit(at()))
        bump();
    }
    bool negativeExponent = false;
    if ((at() == 'e' || at() == 'E') &&
        (isDigit(at(1)) || ((at(1) == '+' || at(1) == '-') && isDigit(at(2))))) {
      isFloat = true;
      negativeExponent = at(1) == '-';
      bump(isDigit(at(1)) ? 1 : 2);
      while (isDigit(at()))
        bump();
    }
    size_t numberEnd = pos_;
    if (isIdentChar(at()) || at() == '.') {
      size_t suffix = pos_;
      while (isIdentChar(at()) || at() == '.')
        bump();
      pushError(begin, loc,
                "invalid suffix '" + src_.substr(suffix, pos_ - suffix) +
                    "' on number",
                "numbers are written like 42, 0.5 or 1e-3");
      return;
    }
    if (!isFloat) {
      int64_t v = 0;
      for (size_t p = begin; p < numberEnd; ++p) {
        int d = src_[p] - '0';
        if (v > (INT64_MAX - d) / 10) {
          pushError(begin, loc, "integer literal is too large",
                    "the largest integer is 9223372036854775807");
          return;
        }
        v = v * 10 + d;
      }
      push(TokenKind::IntLit, begin, loc).intValue = v;
      return;
    }
    double v = 0;
    auto [ptr, ec] = std::from_chars(src_.data() + begin,
                                     src_.data() + numberEnd, v,
                                     std::chars_format::general);
    if (ec == std::errc::result_out_of_range && negativeExponent) {
      v = 0; // underflow
    } else if (ec != std::errc() || ptr != src_.data() + numberEnd) {
      pushError(begin, loc, "floating-point literal is out of range",
                "the largest finite f64 is about 1.8e308; write inf for "
                "infinity");
      return;
    }
    push(TokenKind::FloatLit, begin, loc).floatValue = v;
  }
};

} // namespace

LexResult lex(const std::string &source) { return Lexer(source).run(); }

} // namespace attn::dsl
