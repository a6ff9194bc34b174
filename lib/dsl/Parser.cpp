// Recursive-descent parser of `.attn` files (see Parser.h). Statement-level
// error recovery: a statement with a syntax error is skipped up to the next
// line break outside brackets, so several errors are reported per run.
#include "attn/dsl/Parser.h"

#include "Suggest.h"
#include "attn/dsl/Lexer.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <unordered_map>

namespace attn::dsl {

namespace {

/// Errors reported before the parser gives up on a file.
constexpr int kMaxErrors = 20;
/// Bracket and prefix-operator nesting the parser follows (its own
/// recursion), and the depth of the expression trees it builds, which guards
/// every later recursive pass. A flat chain `a + b + c ...` is one level of
/// nesting but a tree as deep as it has operands, hence the larger bound.
constexpr int kMaxNesting = 200;
constexpr int kMaxTreeDepth = 1000;
constexpr const char *kNestingHint =
    "the limit is 200 levels; split the expression with `let`";
constexpr const char *kTreeDepthHint =
    "the limit is 1000 operands in a chain or levels of nesting; split the expression "
    "with `let`";

const std::vector<std::string> kElemTypeNames = {"f32", "f16", "bf16", "f64",
                                                 "i32", "i64", "bool"};
const std::vector<std::string> kNormNames = {"softmax", "sigmoid", "relu",
                                             "none",    "hardmax", "topk", "linear"};

bool parseElemTypeName(const std::string &s, ElemType &t) {
  static const std::pair<const char *, ElemType> table[] = {
      {"f32", ElemType::F32}, {"f16", ElemType::F16}, {"bf16", ElemType::BF16},
      {"f64", ElemType::F64}, {"i32", ElemType::I32}, {"i64", ElemType::I64},
      {"bool", ElemType::Bool}};
  for (const auto &[name, type] : table)
    if (s == name) {
      t = type;
      return true;
    }
  return false;
}

/// Spellings from other languages, mapped to ours.
const char *elemTypeAlias(const std::string &s) {
  static const std::pair<const char *, const char *> table[] = {
      {"float", "f32"},   {"float32", "f32"}, {"double", "f64"},
      {"float64", "f64"}, {"half", "f16"},    {"float16", "f16"},
      {"bfloat16", "bf16"}, {"int", "i32"},   {"int32", "i32"},
      {"long", "i64"},    {"int64", "i64"},   {"boolean", "bool"}};
  for (const auto &[alias, name] : table)
    if (s == alias)
      return name;
  return nullptr;
}

bool isKeyword(TokenKind k) {
  return k >= TokenKind::KwAttention && k <= TokenKind::KwInf;
}

bool isStatementKeyword(TokenKind k) {
  return k == TokenKind::KwParam || k == TokenKind::KwLet ||
         k == TokenKind::KwScore || k == TokenKind::KwMask ||
         k == TokenKind::KwNormalize || k == TokenKind::KwOutput ||
         k == TokenKind::KwAttention;
}

class Parser {
public:
  Parser(const std::string &fileName, const std::string &source,
         DiagnosticEngine &diag)
      : fileName_(fileName), src_(source), diag_(diag),
        lexed_(lex(source)), toks_(lexed_.tokens),
        lexReported_(lexed_.errors.size(), false),
        errorsAtStart_(diag.numErrors()) {}

  std::optional<Module> run() {
    Module m;
    m.fileName = fileName_;
    while (!fatal_) {
      skipSeparators();
      if (at(TokenKind::Eof))
        break;
      if (at(TokenKind::KwAttention)) {
        parseKernel(m);
        continue;
      }
      const Token &t = cur();
      if (t.kind == TokenKind::Error)
        error(t, "");
      else if (isStatementKeyword(t.kind) ||
               (t.kind == TokenKind::Ident &&
                peekRaw(1).kind == TokenKind::Colon))
        error(t, "expected 'attention'",
              "declarations and statements go inside an "
              "`attention NAME { ... }` block");
      else
        error(t, "expected 'attention'",
              "a file holds one or more `attention NAME { ... }` blocks");
      skipToNextKernel();
    }
    if (diag_.numErrors() > errorsAtStart_)
      return std::nullopt;
    return m;
  }

private:
  const std::string &fileName_;
  const std::string &src_;
  DiagnosticEngine &diag_;
  LexResult lexed_;
  const std::vector<Token> &toks_;
  std::vector<bool> lexReported_;
  int errorsAtStart_;
  size_t pos_ = 0;
  /// Open '(' and '[' around the current token: line breaks inside them do
  /// not end a statement.
  int brackets_ = 0;
  int recursion_ = 0;
  bool fatal_ = false;
  size_t stmtStart_ = 0;
  /// Depth of every expression node built in the current statement.
  std::unordered_map<const Expr *, int> depth_;

  struct Counter {
    int &n;
    explicit Counter(int &n) : n(n) { ++n; }
    ~Counter() { --n; }
  };

  // ---- tokens -------------------------------------------------------------

  const Token &cur() {
    if (brackets_ > 0)
      while (toks_[pos_].kind == TokenKind::Newline)
        ++pos_;
    return toks_[pos_];
  }
  const Token &peekRaw(size_t n) const {
    return toks_[std::min(pos_ + n, toks_.size() - 1)];
  }
  bool at(TokenKind k) { return cur().kind == k; }
  const Token &advance() {
    const Token &t = cur();
    if (t.kind != TokenKind::Eof)
      ++pos_;
    return t;
  }
  bool accept(TokenKind k) {
    if (!at(k))
      return false;
    advance();
    return true;
  }
  std::string text(const Token &t) const {
    return src_.substr(t.offset, t.length);
  }
  void skipSeparators() {
    while (at(TokenKind::Newline) || at(TokenKind::Semicolon))
      advance();
  }

  // ---- diagnostics --------------------------------------------------------

  void error(SourceRange r, std::string msg, std::string hint = "") {
    if (fatal_)
      return;
    diag_.error(r, std::move(msg), std::move(hint));
    if (diag_.numErrors() - errorsAtStart_ >= kMaxErrors) {
      fatal_ = true;
      diag_.note({}, "too many errors; stopping here");
    }
  }
  /// Reports at token `t`; an Error token reports the lexer's own message.
  void error(const Token &t, std::string msg, std::string hint = "") {
    if (t.kind == TokenKind::Error) {
      if (lexReported_[t.error])
        return;
      lexReported_[t.error] = true;
      const LexError &e = lexed_.errors[t.error];
      error(t.range, e.message, e.hint);
      return;
    }
    error(t.range, std::move(msg), std::move(hint));
  }
  void note(SourceRange r, std::string msg) {
    if (!fatal_)
      diag_.note(r, std::move(msg));
  }
  /// For "expected X" messages: names a keyword that was found instead.
  std::string keywordHint(const Token &t) {
    if (isKeyword(t.kind))
      return "'" + text(t) + "' is a keyword and cannot be used as a name";
    return "";
  }
  bool expect(TokenKind k, const std::string &msg, const std::string &hint = "") {
    if (accept(k))
      return true;
    error(cur(), msg, hint);
    return false;
  }

  // ---- recovery -----------------------------------------------------------

  /// Skips the rest of a statement that had an error: up to a line break or
  /// ';' outside brackets, a '}', or a line that starts a new statement.
  void recover() {
    int open = 0;
    for (size_t p = stmtStart_; p < pos_ && p < toks_.size(); ++p) {
      TokenKind k = toks_[p].kind;
      open += k == TokenKind::LParen || k == TokenKind::LBracket;
      open -= k == TokenKind::RParen || k == TokenKind::RBracket;
    }
    brackets_ = 0;
    while (true) {
      const Token &t = toks_[pos_];
      if (t.kind == TokenKind::Eof || t.kind == TokenKind::RBrace ||
          t.kind == TokenKind::KwAttention)
        return;
      if (pos_ > stmtStart_ && toks_[pos_ - 1].kind == TokenKind::Newline &&
          startsStatement(pos_))
        return;
      if (t.kind == TokenKind::Newline || t.kind == TokenKind::Semicolon) {
        if (open <= 0 || startsStatement(pos_ + 1)) {
          ++pos_;
          return;
        }
      }
      open += t.kind == TokenKind::LParen || t.kind == TokenKind::LBracket;
      open -= t.kind == TokenKind::RParen || t.kind == TokenKind::RBracket;
      ++pos_;
    }
  }
  bool startsStatement(size_t p) const {
    if (p >= toks_.size())
      return false;
    TokenKind k = toks_[p].kind;
    return isStatementKeyword(k) || k == TokenKind::RBrace ||
           (k == TokenKind::Ident && p + 1 < toks_.size() &&
            toks_[p + 1].kind == TokenKind::Colon);
  }
  void skipToNextKernel() {
    brackets_ = 0;
    while (!at(TokenKind::Eof) && !at(TokenKind::KwAttention))
      ++pos_;
  }

  // ---- kernels and statements --------------------------------------------

  void parseKernel(Module &m) {
    advance(); // 'attention'
    Kernel k;
    if (at(TokenKind::Ident)) {
      const Token &name = advance();
      k.name = text(name);
      k.range = name.range;
    } else {
      const Token &t = cur();
      error(t, "expected a kernel name after 'attention'",
            isKeyword(t.kind) ? keywordHint(t)
                              : "write `attention NAME { ... }`");
      k.range = t.range;
      if (!at(TokenKind::LBrace)) {
        skipToNextKernel();
        return;
      }
    }
    while (at(TokenKind::Newline))
      advance();
    if (!at(TokenKind::LBrace)) {
      error(cur(), "expected '{' after the kernel name");
      skipToNextKernel();
      return;
    }
    SourceRange open = advance().range;

    bool haveNormalize = false;
    while (!fatal_) {
      skipSeparators();
      if (accept(TokenKind::RBrace))
        break;
      if (at(TokenKind::Eof) || at(TokenKind::KwAttention)) {
        error(cur(), "expected '}' to end kernel '" + k.name + "'");
        note(open, "the kernel's '{' is here");
        break;
      }
      stmtStart_ = pos_;
      depth_.clear();
      bool ok = parseStatement(k, haveNormalize);
      if (ok && !at(TokenKind::Newline) && !at(TokenKind::Semicolon) &&
          !at(TokenKind::RBrace) && !at(TokenKind::Eof)) {
        if (at(TokenKind::Assign))
          error(cur(), "unexpected '='", "use '==' to compare");
        else
          error(cur(), "expected a line break or ';' after the statement");
        ok = false;
      }
      if (!ok)
        recover();
    }
    m.kernels.push_back(std::move(k));
  }

  bool parseStatement(Kernel &k, bool &haveNormalize) {
    const Token &t = cur();
    switch (t.kind) {
    case TokenKind::KwParam: return parseParam(k);
    case TokenKind::KwLet: return parseLet(k);
    case TokenKind::KwScore:
    case TokenKind::KwMask: return parseScoreOrMask(k);
    case TokenKind::KwNormalize: return parseNormalize(k, haveNormalize);
    case TokenKind::KwOutput: return parseOutput(k);
    case TokenKind::Ident: {
      TokenKind next = peekRaw(1).kind;
      if (next == TokenKind::Colon)
        return parseTensor(k);
      std::string name = text(t);
      if (name == "range" && next != TokenKind::Assign)
        return parseRange(k);
      if (name == "source" && next == TokenKind::Ident)
        return parseSource(k);
      if (next == TokenKind::Assign) {
        error(t, "unknown statement '" + name + " ='",
              didYouMean(name, {"score", "mask", "normalize"},
                         "to name a value write `let " + name + " = ...`"));
        return false;
      }
      error(t, "expected a declaration or statement",
            "to declare a tensor write `" + name + ": f32[...]`");
      return false;
    }
    default:
      error(t, "expected a declaration or statement",
            "a kernel holds tensor declarations (`q: f32[B, H, L, D]`), "
            "`param`, `let`, `score =`, `mask =`, `normalize =` and "
            "`output lse`");
      return false;
    }
  }

  /// `source NAME { statements }` (LANGUAGE.md §8.5): the statements go
  /// into a Kernel of their own; Sema says which of them a source may hold.
  bool parseSource(Kernel &k) {
    SourceRange kw = advance().range; // 'source'
    Kernel src;
    const Token &name = advance();
    src.name = k.name;
    src.sourceName = text(name);
    src.range = name.range;
    src.sourceRange = kw;
    if (!k.sourceName.empty()) {
      error(kw, "a source block inside source '" + k.sourceName + "'",
            "source blocks go directly inside the `attention` block");
      return false;
    }
    while (at(TokenKind::Newline))
      advance();
    if (!at(TokenKind::LBrace)) {
      error(cur(), "expected '{' after 'source " + src.sourceName + "'",
            "write `source " + src.sourceName + " { k: ...; v: ... }`");
      return false;
    }
    SourceRange open = advance().range;
    bool haveNormalize = false;
    while (!fatal_) {
      skipSeparators();
      if (at(TokenKind::RBrace)) {
        src.sourceRange.end = advance().range.end;
        break;
      }
      if (at(TokenKind::Eof) || at(TokenKind::KwAttention)) {
        error(cur(), "expected '}' to end source '" + src.sourceName + "'");
        note(open, "the source's '{' is here");
        return false;
      }
      stmtStart_ = pos_;
      depth_.clear();
      bool ok = parseStatement(src, haveNormalize);
      if (ok && !at(TokenKind::Newline) && !at(TokenKind::Semicolon) &&
          !at(TokenKind::RBrace) && !at(TokenKind::Eof)) {
        error(cur(), "expected a line break or ';' after the statement");
        ok = false;
      }
      if (!ok)
        recover();
    }
    k.sources.push_back(std::move(src));
    stmtStart_ = pos_;
    return true;
  }

  bool parseElemType(ElemType &type, SourceRange &range, const char *what) {
    const Token &t = cur();
    if (t.kind != TokenKind::Ident) {
      error(t, std::string("expected an element type for ") + what,
            "element types are f32, f16, bf16, f64, i32, i64 and bool");
      return false;
    }
    std::string s = text(t);
    if (!parseElemTypeName(s, type)) {
      const char *alias = elemTypeAlias(s);
      error(t, "unknown element type '" + s + "'",
            alias ? std::string("did you mean '") + alias + "'?"
                  : didYouMean(s, kElemTypeNames,
                               "element types are f32, f16, bf16, f64, i32, "
                               "i64 and bool"));
      return false;
    }
    range = advance().range;
    return true;
  }

  bool parseTensor(Kernel &k) {
    TensorDecl t;
    const Token &name = advance();
    t.name = text(name);
    t.range = name.range;
    if (t.name == "q")
      t.role = TensorRole::Q;
    else if (t.name == "k")
      t.role = TensorRole::K;
    else if (t.name == "v")
      t.role = TensorRole::V;
    advance(); // ':'
    std::string what = "'" + t.name + "'";
    if (!parseElemType(t.type, t.typeRange, what.c_str()))
      return false;
    if (!at(TokenKind::LBracket)) {
      error(cur(), "expected '[' and the dimensions of '" + t.name + "'",
            "tensors are declared `NAME: T[dims]`; a scalar is a "
            "`param " + t.name + ": T`");
      return false;
    }
    {
    Counter inBrackets(brackets_);
    advance();
    if (!accept(TokenKind::RBracket)) {
      while (true) {
        const Token &d = cur();
        Dim dim;
        dim.range = d.range;
        if (d.kind == TokenKind::Ident) {
          dim.name = text(d);
        } else if (d.kind == TokenKind::IntLit) {
          dim.value = d.intValue;
        } else {
          error(d, "expected a dimension: a size name or an integer",
                keywordHint(d));
          return false;
        }
        advance();
        t.dims.push_back(dim);
        if (accept(TokenKind::RBracket))
          break;
        if (!expect(TokenKind::Comma,
                    "expected ',' or ']' in the dimensions of '" + t.name +
                        "'"))
          return false;
      }
    }
    }
    // `at [...]`: where the row of q, k or v lives (LANGUAGE.md §8.1).
    if (at(TokenKind::Ident) && text(cur()) == "at") {
      t.atRange = advance().range;
      if (!at(TokenKind::LBracket)) {
        error(cur(), "expected '[' and the row's indices after 'at'",
              "write `" + t.name + ": ... at [b, i, h]`");
        return false;
      }
      Expr list;
      if (!parseArgs(list, TokenKind::RBracket, "]"))
        return false;
      if (list.args.empty()) {
        error(t.atRange, "'at' needs at least one index");
        return false;
      }
      t.at = std::move(list.args);
    }
    k.tensors.push_back(std::move(t));
    return true;
  }

  /// `range NAME < expr, ...` (LANGUAGE.md §8.1).
  bool parseRange(Kernel &k) {
    advance(); // 'range'
    while (true) {
      const Token &v = cur();
      std::string name = v.kind == TokenKind::Ident ? text(v) : "";
      RangeDecl r;
      static const std::pair<const char *, IndexVar> vars[] = {
          {"b", IndexVar::B}, {"h", IndexVar::H}, {"hk", IndexVar::Hk},
          {"i", IndexVar::I}, {"j", IndexVar::J}};
      bool found = false;
      for (const auto &[n, var] : vars)
        if (name == n) {
          r.var = var;
          found = true;
        }
      if (!found) {
        error(v, "expected an index variable after 'range'",
              "a range bounds b, h, hk, i or j: `range j < NP * S`");
        return false;
      }
      r.range = advance().range;
      if (!expect(TokenKind::Less, "expected '<' after 'range " + name + "'",
                  "write `range " + name + " < SIZE`"))
        return false;
      r.bound = parseExpr();
      if (!r.bound)
        return false;
      k.ranges.push_back(std::move(r));
      if (!accept(TokenKind::Comma))
        return true;
    }
  }

  bool parseName(std::string &name, SourceRange &range, const char *after) {
    const Token &t = cur();
    if (t.kind != TokenKind::Ident) {
      error(t, std::string("expected a name after '") + after + "'",
            keywordHint(t));
      return false;
    }
    name = text(t);
    range = advance().range;
    return true;
  }

  bool parseParam(Kernel &k) {
    advance(); // 'param'
    ParamDecl p;
    if (!parseName(p.name, p.range, "param"))
      return false;
    if (!expect(TokenKind::Colon,
                "expected ':' and a type after param '" + p.name + "'",
                "write `param " + p.name + ": i32 = 0`"))
      return false;
    std::string what = "param '" + p.name + "'";
    if (!parseElemType(p.type, p.typeRange, what.c_str()))
      return false;
    if (accept(TokenKind::Assign)) {
      const Token &first = cur();
      bool negative = accept(TokenKind::Minus);
      const Token &t = cur();
      Literal lit;
      switch (t.kind) {
      case TokenKind::IntLit:
        lit.kind = Literal::Kind::Int;
        lit.i = negative ? -t.intValue : t.intValue;
        break;
      case TokenKind::FloatLit:
        lit.kind = Literal::Kind::Float;
        lit.f = negative ? -t.floatValue : t.floatValue;
        break;
      case TokenKind::KwInf:
        lit.kind = Literal::Kind::Float;
        lit.f = negative ? -HUGE_VAL : HUGE_VAL;
        break;
      case TokenKind::KwTrue:
      case TokenKind::KwFalse:
        if (negative) {
          error(first, "'-' cannot be applied to a bool");
          return false;
        }
        lit.kind = Literal::Kind::Bool;
        lit.b = t.kind == TokenKind::KwTrue;
        break;
      default:
        error(t, "expected a literal default value for param '" + p.name + "'",
              "a default is a literal such as 4096, 0.5, -inf or true; "
              "use `let` for expressions");
        return false;
      }
      p.defaultRange = {first.range.begin, t.range.end};
      advance();
      p.defaultValue = lit;
    }
    k.params.push_back(std::move(p));
    return true;
  }

  bool parseLet(Kernel &k) {
    advance(); // 'let'
    LetDecl l;
    if (!parseName(l.name, l.range, "let"))
      return false;
    if (at(TokenKind::LBracket)) { // a channel vector: `let NAME[c < N] = ...`
      Counter inBrackets(brackets_);
      advance();
      if (!parseName(l.var, l.varRange, "["))
        return false;
      if (accept(TokenKind::Less)) {
        const Token &n = cur();
        Dim d;
        d.range = n.range;
        if (n.kind == TokenKind::Ident)
          d.name = text(n);
        else if (n.kind == TokenKind::IntLit)
          d.value = n.intValue;
        else {
          error(n, "expected the vector's length: a size name or an integer",
                "write `let " + l.name + "[" + l.var + " < 32] = ...`");
          return false;
        }
        advance();
        l.length = d;
      }
      if (!expect(TokenKind::RBracket, "expected ']' after the channel variable",
                  "write `let " + l.name + "[" + l.var + "] = ...` or `let " + l.name + "[" +
                      l.var + " < N] = ...`"))
        return false;
    }
    if (!expect(TokenKind::Assign, "expected '=' after let '" + l.name + "'"))
      return false;
    l.value = parseExpr();
    if (!l.value)
      return false;
    k.lets.push_back(std::move(l));
    return true;
  }

  bool parseScoreOrMask(Kernel &k) {
    const Token &kw = advance();
    bool isScore = kw.kind == TokenKind::KwScore;
    const char *what = isScore ? "score" : "mask";
    if (!expect(TokenKind::Assign, std::string("expected '=' after '") + what + "'"))
      return false;
    ExprPtr e = parseExpr();
    if (!e)
      return false;
    ExprPtr &slot = isScore ? k.score : k.mask;
    if (slot) {
      error(kw.range, std::string("'") + what + "' is defined twice",
            "a kernel has one " + std::string(what) +
                "; combine the expressions with " +
                (isScore ? "`+` or `select`" : "`&&`"));
      note(slot->range, "the first definition is here");
      return true; // the statement itself is well formed
    }
    slot = std::move(e);
    return true;
  }

  bool parseNormalize(Kernel &k, bool &haveNormalize) {
    const Token &kw = advance();
    if (!expect(TokenKind::Assign, "expected '=' after 'normalize'"))
      return false;
    const Token &t = cur();
    const char *listHint =
        "normalize is one of softmax, sigmoid, relu, none, "
        "hardmax(ties = average|latest|first) and topk(K)";
    if (t.kind != TokenKind::Ident) {
      error(t, "expected a normalization", listHint);
      return false;
    }
    std::string name = text(t);
    Normalize n;
    n.range = t.range;
    advance();
    if (name == "softmax" || name == "sigmoid" || name == "relu" ||
        name == "none" || name == "linear") {
      n.kind = name == "softmax"   ? NormKind::Softmax
               : name == "sigmoid" ? NormKind::Sigmoid
               : name == "relu"    ? NormKind::Relu
               : name == "linear"  ? NormKind::Linear
                                   : NormKind::None;
      if (at(TokenKind::LParen)) {
        error(cur(), "'" + name + "' takes no arguments");
        return false;
      }
    } else if (name == "hardmax") {
      n.kind = NormKind::Hardmax;
      if (at(TokenKind::LParen)) {
        Counter inParens(brackets_);
        advance();
        const Token &ties = cur();
        if (ties.kind != TokenKind::Ident || text(ties) != "ties") {
          error(ties, "expected 'ties = average|latest|first'");
          return false;
        }
        advance();
        if (!expect(TokenKind::Assign, "expected '=' after 'ties'"))
          return false;
        const Token &rule = cur();
        std::string r = rule.kind == TokenKind::Ident ? text(rule) : "";
        if (r == "average")
          n.ties = TieRule::Average;
        else if (r == "latest")
          n.ties = TieRule::Latest;
        else if (r == "first")
          n.ties = TieRule::First;
        else {
          error(rule,
                r.empty() ? "expected a tie rule"
                          : "unknown tie rule '" + r + "'",
                didYouMean(r, {"average", "latest", "first"},
                           "ties is one of average, latest and first"));
          return false;
        }
        advance();
        n.range.end = cur().range.end;
        if (!expect(TokenKind::RParen, "expected ')' after the tie rule"))
          return false;
      }
    } else if (name == "topk") {
      n.kind = NormKind::TopK;
      if (!at(TokenKind::LParen)) {
        error(cur(), "expected '(' after 'topk'",
              "topk needs the number of keys kept, e.g. `topk(8)`");
        return false;
      }
      Counter inParens(brackets_);
      advance();
      const Token &count = cur();
      if (count.kind != TokenKind::IntLit) {
        error(count, "the K of topk(K) must be a positive integer literal");
        return false;
      }
      if (count.intValue <= 0) {
        error(count, "the K of topk(K) must be positive");
        return false;
      }
      if (count.intValue > INT32_MAX) {
        error(count, "the K of topk(K) does not fit in i32 (at most 2147483647)",
              "a K of at least the number of keys keeps every key");
        return false;
      }
      n.k = count.intValue;
      advance();
      n.range.end = cur().range.end;
      if (!expect(TokenKind::RParen, "expected ')' after the K of topk"))
        return false;
    } else {
      error(t, "unknown normalization '" + name + "'",
            didYouMean(name, kNormNames, listHint));
      return false;
    }
    if (haveNormalize) {
      error(kw.range, "'normalize' is set twice");
      note(k.normalize.range, "the first setting is here");
      return true;
    }
    haveNormalize = true;
    k.normalize = n;
    return true;
  }

  bool parseOutput(Kernel &k) {
    const Token &kw = advance();
    const Token &t = cur();
    if (t.kind != TokenKind::KwLse) {
      error(t,
            t.kind == TokenKind::Ident
                ? "unknown output '" + text(t) + "'"
                : std::string("expected 'lse' after 'output'"),
            "only `output lse` can be requested; `out` is always returned");
      return false;
    }
    advance();
    SourceRange range{kw.range.begin, t.range.end};
    if (k.outputLse) {
      error(range, "'output lse' is given twice");
      note(k.outputLseRange, "the first one is here");
      return true;
    }
    k.outputLse = true;
    k.outputLseRange = range;
    return true;
  }

  // ---- expressions --------------------------------------------------------

  int depthOf(const Expr *e) const {
    auto it = depth_.find(e);
    return it == depth_.end() ? 1 : it->second;
  }

  /// Records the depth of a new node; nullptr when the tree is too deep.
  ExprPtr finish(ExprPtr e) {
    int d = 0;
    for (const auto &a : e->args)
      d = std::max(d, depthOf(a.get()));
    if (d + 1 > kMaxTreeDepth) {
      error(e->range, "expression is too long or nested too deeply", kTreeDepthHint);
      return nullptr;
    }
    depth_[e.get()] = d + 1;
    return e;
  }

  ExprPtr leaf(ExprKind kind, const Token &t) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->range = t.range;
    depth_[e.get()] = 1;
    return e;
  }

  ExprPtr binary(BinaryOp op, ExprPtr l, ExprPtr r) {
    auto e = std::make_unique<Expr>();
    e->kind = ExprKind::Binary;
    e->binaryOp = op;
    e->range = {l->range.begin, r->range.end};
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return finish(std::move(e));
  }

  bool tooDeep() {
    if (recursion_ <= kMaxNesting)
      return false;
    error(cur(), "expression is nested too deeply", kNestingHint);
    return true;
  }

  ExprPtr parseExpr() {
    Counter c(recursion_);
    if (tooDeep())
      return nullptr;
    return parseOr();
  }

  ExprPtr parseOr() {
    ExprPtr lhs = parseAnd();
    while (lhs && at(TokenKind::PipePipe)) {
      advance();
      ExprPtr rhs = parseAnd();
      if (!rhs)
        return nullptr;
      lhs = binary(BinaryOp::Or, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  ExprPtr parseAnd() {
    ExprPtr lhs = parseEquality();
    while (lhs && at(TokenKind::AmpAmp)) {
      advance();
      ExprPtr rhs = parseEquality();
      if (!rhs)
        return nullptr;
      lhs = binary(BinaryOp::And, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  static bool equalityOp(TokenKind k, BinaryOp &op) {
    if (k == TokenKind::EqEq)
      op = BinaryOp::Eq;
    else if (k == TokenKind::NotEq)
      op = BinaryOp::Ne;
    else
      return false;
    return true;
  }

  static bool relationalOp(TokenKind k, BinaryOp &op) {
    switch (k) {
    case TokenKind::Less: op = BinaryOp::Lt; return true;
    case TokenKind::LessEq: op = BinaryOp::Le; return true;
    case TokenKind::Greater: op = BinaryOp::Gt; return true;
    case TokenKind::GreaterEq: op = BinaryOp::Ge; return true;
    default: return false;
    }
  }

  ExprPtr parseEquality() {
    ExprPtr lhs = parseRelational();
    BinaryOp op;
    if (!lhs || !equalityOp(cur().kind, op))
      return lhs;
    advance();
    ExprPtr rhs = parseRelational();
    if (!rhs)
      return nullptr;
    lhs = binary(op, std::move(lhs), std::move(rhs));
    if (lhs && equalityOp(cur().kind, op)) {
      error(cur(), "'" + text(cur()) + "' cannot be chained",
            "write `a == b && b == c`, or add parentheses");
      return nullptr;
    }
    return lhs;
  }

  ExprPtr parseRelational() {
    ExprPtr lhs = parseAdditive();
    BinaryOp op;
    if (!lhs || !relationalOp(cur().kind, op))
      return lhs;
    advance();
    ExprPtr rhs = parseAdditive();
    if (!rhs)
      return nullptr;
    lhs = binary(op, std::move(lhs), std::move(rhs));
    if (lhs && relationalOp(cur().kind, op)) {
      error(cur(), "comparisons cannot be chained",
            "write `a < b && b < c` instead of `a < b < c`");
      return nullptr;
    }
    return lhs;
  }

  ExprPtr parseAdditive() {
    ExprPtr lhs = parseMultiplicative();
    while (lhs && (at(TokenKind::Plus) || at(TokenKind::Minus))) {
      BinaryOp op = advance().kind == TokenKind::Plus ? BinaryOp::Add
                                                       : BinaryOp::Sub;
      ExprPtr rhs = parseMultiplicative();
      if (!rhs)
        return nullptr;
      lhs = binary(op, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  ExprPtr parseMultiplicative() {
    ExprPtr lhs = parseUnary();
    while (lhs && (at(TokenKind::Star) || at(TokenKind::Slash) ||
                   at(TokenKind::Percent))) {
      TokenKind k = advance().kind;
      BinaryOp op = k == TokenKind::Star    ? BinaryOp::Mul
                    : k == TokenKind::Slash ? BinaryOp::Div
                                            : BinaryOp::Mod;
      ExprPtr rhs = parseUnary();
      if (!rhs)
        return nullptr;
      lhs = binary(op, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  ExprPtr parseUnary() {
    if (!at(TokenKind::Minus) && !at(TokenKind::Bang))
      return parsePrimary();
    Counter c(recursion_);
    if (tooDeep())
      return nullptr;
    const Token &op = advance();
    ExprPtr operand = parseUnary();
    if (!operand)
      return nullptr;
    auto e = std::make_unique<Expr>();
    e->kind = ExprKind::Unary;
    e->unaryOp = op.kind == TokenKind::Minus ? UnaryOp::Neg : UnaryOp::Not;
    e->range = {op.range.begin, operand->range.end};
    e->args.push_back(std::move(operand));
    return finish(std::move(e));
  }

  /// Parses `(args)` or `[args]` after a name into `e`, closing with `close`.
  bool parseArgs(Expr &e, TokenKind close, const char *closeText) {
    Counter inBrackets(brackets_);
    const Token &open = advance();
    if (!at(close)) {
      while (true) {
        ExprPtr a = parseExpr();
        if (!a)
          return false;
        e.args.push_back(std::move(a));
        if (at(close))
          break;
        if (!at(TokenKind::Comma)) {
          error(cur(), std::string("expected ',' or '") + closeText + "'");
          note(open.range, std::string("to match this '") + text(open) + "'");
          return false;
        }
        advance();
      }
    }
    e.range.end = advance().range.end;
    return true;
  }

  /// A ')' closing `open`, or an error pointing at both.
  bool expectCloseParen(const Token &open) {
    if (at(TokenKind::RParen))
      return true;
    error(cur(), "expected ')'");
    note(open.range, "to match this '('");
    return false;
  }

  /// `sum(c < N: expr)` (LANGUAGE.md §8.3), after the name.
  ExprPtr parseSum(ExprPtr e) {
    Counter inParens(brackets_);
    const Token &open = advance(); // '('
    e->kind = ExprKind::Sum;
    e->name = text(advance());
    advance(); // '<'
    const Token &n = cur();
    ExprPtr length;
    if (n.kind == TokenKind::IntLit) {
      length = leaf(ExprKind::IntLit, n);
      length->intValue = n.intValue;
    } else if (n.kind == TokenKind::Ident) {
      length = leaf(ExprKind::Ident, n);
      length->name = text(n);
    } else {
      error(n, "expected the sum's length: a size name or an integer",
            "write `sum(c < 64: ...)`");
      return nullptr;
    }
    advance();
    if (!expect(TokenKind::Colon, "expected ':' after the sum's length",
                "write `sum(" + e->name + " < N: expr)`"))
      return nullptr;
    ExprPtr body = parseExpr();
    if (!body || !expectCloseParen(open))
      return nullptr;
    e->range.end = advance().range.end;
    e->args.push_back(std::move(length));
    e->args.push_back(std::move(body));
    return finish(std::move(e));
  }

  ExprPtr parsePrimary() {
    const Token &t = cur();
    switch (t.kind) {
    case TokenKind::IntLit: {
      ExprPtr e = leaf(ExprKind::IntLit, t);
      e->intValue = t.intValue;
      advance();
      return e;
    }
    case TokenKind::FloatLit: {
      ExprPtr e = leaf(ExprKind::FloatLit, t);
      e->floatValue = t.floatValue;
      advance();
      return e;
    }
    case TokenKind::KwTrue:
    case TokenKind::KwFalse: {
      ExprPtr e = leaf(ExprKind::BoolLit, t);
      e->boolValue = t.kind == TokenKind::KwTrue;
      advance();
      return e;
    }
    case TokenKind::KwInf: {
      ExprPtr e = leaf(ExprKind::Inf, t);
      advance();
      return e;
    }
    case TokenKind::Ident: {
      ExprPtr e = leaf(ExprKind::Ident, t);
      e->name = text(t);
      advance();
      if (e->name == "sum" && at(TokenKind::LParen) && peekRaw(1).kind == TokenKind::Ident &&
          peekRaw(2).kind == TokenKind::Less)
        return parseSum(std::move(e));
      if (at(TokenKind::LParen)) {
        e->kind = ExprKind::Call;
        if (!parseArgs(*e, TokenKind::RParen, ")"))
          return nullptr;
        return finish(std::move(e));
      }
      if (at(TokenKind::LBracket)) {
        e->kind = ExprKind::Index;
        if (!parseArgs(*e, TokenKind::RBracket, "]"))
          return nullptr;
        return finish(std::move(e));
      }
      return e;
    }
    case TokenKind::LParen: {
      Counter inParens(brackets_);
      advance();
      ExprPtr e = parseExpr();
      if (!e || !expectCloseParen(t))
        return nullptr;
      e->range = {t.range.begin, advance().range.end};
      return e;
    }
    case TokenKind::Assign:
      error(t, "expected an expression",
            "'=' assigns; use '==' to compare");
      return nullptr;
    default:
      if (brackets_ > 0 && (isStatementKeyword(t.kind) ||
                            t.kind == TokenKind::RBrace ||
                            t.kind == TokenKind::Eof))
        error(t, "expected an expression",
              "a '(' or '[' before this is not closed");
      else
        error(t, "expected an expression", keywordHint(t));
      return nullptr;
    }
  }
};

} // namespace

std::optional<Module> parseModule(const std::string &fileName,
                                  const std::string &source,
                                  DiagnosticEngine &diag) {
  return Parser(fileName, source, diag).run();
}

} // namespace attn::dsl
