// Semantic checks of `.attn` modules (see Sema.h): declarations and their
// dimensions, name resolution, expression types with explicit Cast nodes,
// and the defaults of `score` and `mask`.
#include "attn/dsl/Sema.h"

#include "Suggest.h"
#include "attn/dsl/Parser.h"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

namespace attn::dsl {

namespace {
/// Head dims above this are refused (loop extents the schedule unrolls).
constexpr int64_t kMaxHeadDim = 1 << 16;
} // namespace

namespace {

constexpr int kMaxErrors = 20;
/// Depth of an expression with every let reference replaced by the let's
/// expression; bounds the recursion of passes that inline lets.
/// Twice the parser's tree depth: every operator may add a cast.
constexpr int kMaxExpandedDepth = 2000;

struct FunctionInfo {
  const char *name;
  Builtin builtin;
  size_t arity;
  const char *usage;
};

const FunctionInfo kFunctions[] = {
    {"dot", Builtin::Dot, 2, "dot(q, k)"},
    {"sqnorm", Builtin::SqnormQ, 1, "sqnorm(q) or sqnorm(k)"},
    {"exp", Builtin::Exp, 1, "exp(x)"},
    {"exp2", Builtin::Exp2, 1, "exp2(x)"},
    {"log", Builtin::Log, 1, "log(x)"},
    {"log2", Builtin::Log2, 1, "log2(x)"},
    {"sqrt", Builtin::Sqrt, 1, "sqrt(x)"},
    {"rsqrt", Builtin::Rsqrt, 1, "rsqrt(x)"},
    {"tanh", Builtin::Tanh, 1, "tanh(x)"},
    {"sigmoid", Builtin::Sigmoid, 1, "sigmoid(x)"},
    {"abs", Builtin::Abs, 1, "abs(x)"},
    {"floor", Builtin::Floor, 1, "floor(x)"},
    {"ceil", Builtin::Ceil, 1, "ceil(x)"},
    {"sin", Builtin::Sin, 1, "sin(x)"},
    {"cos", Builtin::Cos, 1, "cos(x)"},
    {"int", Builtin::Int, 1, "int(x)"},
    {"min", Builtin::Min, 2, "min(a, b)"},
    {"max", Builtin::Max, 2, "max(a, b)"},
    {"pow", Builtin::Pow, 2, "pow(base, exponent)"},
    {"clamp", Builtin::Clamp, 3, "clamp(x, lo, hi)"},
    {"select", Builtin::Select, 3, "select(cond, a, b)"},
};

const FunctionInfo *findFunction(const std::string &name) {
  for (const auto &f : kFunctions)
    if (name == f.name)
      return &f;
  return nullptr;
}

std::vector<std::string> functionNames() {
  std::vector<std::string> names;
  for (const auto &f : kFunctions)
    names.push_back(f.name);
  return names;
}

bool isIndexVar(const std::string &n) {
  return n == "b" || n == "h" || n == "hk" || n == "i" || n == "j";
}

IndexVar indexVarOf(const std::string &n) {
  return n == "b"    ? IndexVar::B
         : n == "h"  ? IndexVar::H
         : n == "hk" ? IndexVar::Hk
         : n == "i"  ? IndexVar::I
                     : IndexVar::J;
}
constexpr unsigned bit(IndexVar v) { return 1u << unsigned(v); }
constexpr unsigned kAllVars = (1u << kNumIndexVars) - 1;
bool isInt(ScalarType t) { return t == ScalarType::I32 || t == ScalarType::I64; }
bool isFloatType(ScalarType t) {
  return t == ScalarType::F32 || t == ScalarType::F64;
}
bool isNumeric(ScalarType t) { return isInt(t) || isFloatType(t); }

bool before(const SourceLoc &a, const SourceLoc &b) {
  return a.line != b.line ? a.line < b.line : a.col < b.col;
}

std::string dimText(const Dim &d) {
  return d.isLiteral() ? std::to_string(d.value) : d.name;
}

bool sameDim(const Dim &a, const Dim &b) {
  return a.isLiteral() == b.isLiteral() &&
         (a.isLiteral() ? a.value == b.value : a.name == b.name);
}

/// The range of the name at the start of a Call or Index expression.
SourceRange nameRange(const Expr &e) {
  SourceRange r = e.range;
  r.end = {r.begin.line, r.begin.col + static_cast<int>(e.name.size())};
  return r;
}

ExprPtr makeExpr(ExprKind kind, SourceRange range, ScalarType type) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->range = range;
  e->type = type;
  return e;
}

/// Shared by all kernels of a module: the error budget.
struct ErrorBudget {
  DiagnosticEngine &diag;
  int base;
  bool stopped = false;
  /// The kernels of `source` blocks share declarations (LANGUAGE.md §8.5)
  /// and are checked one by one: an error in a shared part is reported once,
  /// with its notes.
  std::set<std::tuple<int, int, std::string>> seen;
  bool repeated = false;

  void error(SourceRange r, std::string msg, std::string hint = "") {
    if (stopped)
      return;
    repeated = !seen.emplace(r.begin.line, r.begin.col, msg).second;
    if (repeated)
      return;
    diag.error(r, std::move(msg), std::move(hint));
    if (diag.numErrors() - base >= kMaxErrors) {
      stopped = true;
      diag.note({}, "too many errors; stopping here");
    }
  }
  void note(SourceRange r, std::string msg) {
    if (!stopped && !repeated)
      diag.note(r, std::move(msg));
  }
};

class KernelChecker {
public:
  KernelChecker(Kernel &k, ErrorBudget &errors) : k_(k), errors_(errors) {}

  void run() {
    declareNames();
    checkTensors();
    checkParams();
    checkLets();
    checkIndexMaps();
    checkRanges();
    checkScoreAndMask();
    checkNormalize();
  }

private:
  enum class SymKind { Tensor, Size, Param, Let };
  struct Symbol {
    SymKind kind;
    SourceRange range;
    size_t index; // into tensors, params or lets
  };

  Kernel &k_;
  ErrorBudget &errors_;
  std::map<std::string, Symbol> symbols_;
  /// Lets [0, visibleLets_) may be referenced by the expression being checked.
  size_t visibleLets_ = 0;
  std::vector<int> letDepth_;
  /// Where the expression being checked sits: the index variables it may
  /// use, whether it may use lets, aux tensors and the head vectors, and how
  /// to name the place in diagnostics. Score, mask and lets allow all.
  struct Context {
    unsigned vars = kAllVars;
    bool lets = true, tensors = true, heads = true;
    std::string where; // "the `at` of 'k'", "range j"
    std::string varsHint;
  } ctx_;
  /// Channel variables in scope (a vector's, then those of enclosing sums).
  std::vector<std::string> channels_;
  mutable std::map<std::string, bool> letReadsHeads_;
  std::map<std::string, unsigned> letSides_; // memo of sidesOf for scalar lets

  void error(SourceRange r, std::string msg, std::string hint = "") {
    errors_.error(r, std::move(msg), std::move(hint));
  }
  void note(SourceRange r, std::string msg) { errors_.note(r, std::move(msg)); }

  static const char *kindName(SymKind k) {
    switch (k) {
    case SymKind::Tensor: return "a tensor";
    case SymKind::Size: return "a size";
    case SymKind::Param: return "a param";
    case SymKind::Let: return "a let";
    }
    return "";
  }

  const Symbol *lookup(const std::string &name) const {
    auto it = symbols_.find(name);
    return it == symbols_.end() ? nullptr : &it->second;
  }

  // ---- declarations -------------------------------------------------------

  void declareNames() {
    struct Entry {
      SourceRange range;
      std::string name;
      SymKind kind;
      size_t index;
    };
    std::vector<Entry> entries;
    for (size_t t = 0; t < k_.tensors.size(); ++t) {
      const TensorDecl &decl = k_.tensors[t];
      entries.push_back({decl.range, decl.name, SymKind::Tensor, t});
      for (const Dim &d : decl.dims)
        if (!d.isLiteral())
          entries.push_back({d.range, d.name, SymKind::Size, t});
    }
    for (size_t p = 0; p < k_.params.size(); ++p)
      entries.push_back({k_.params[p].range, k_.params[p].name, SymKind::Param, p});
    for (size_t l = 0; l < k_.lets.size(); ++l)
      entries.push_back({k_.lets[l].range, k_.lets[l].name, SymKind::Let, l});
    std::stable_sort(entries.begin(), entries.end(),
                     [](const Entry &a, const Entry &b) {
                       return before(a.range.begin, b.range.begin);
                     });
    for (const Entry &e : entries) {
      if (isIndexVar(e.name)) {
        error(e.range, "'" + e.name + "' is reserved for an index variable",
              "b, h, hk, i and j are the batch, head, key/value head, "
              "query and key indices; choose another name");
        continue;
      }
      auto it = symbols_.find(e.name);
      if (it == symbols_.end()) {
        symbols_.emplace(e.name, Symbol{e.kind, e.range, e.index});
        continue;
      }
      if (it->second.kind == SymKind::Size && e.kind == SymKind::Size)
        continue;
      error(e.range, "redefinition of '" + e.name + "'");
      note(it->second.range, "'" + e.name + "' was first declared here as " +
                                 kindName(it->second.kind));
    }
  }

  const TensorDecl *headTensor(const char *name) {
    const Symbol *s = lookup(name);
    if (!s || s->kind != SymKind::Tensor)
      return nullptr;
    return &k_.tensors[s->index];
  }

  void checkTensors() {
    for (TensorDecl &t : k_.tensors) {
      t.role = t.name == "q"   ? TensorRole::Q
               : t.name == "k" ? TensorRole::K
               : t.name == "v" ? TensorRole::V
                               : TensorRole::Aux;
      for (const Dim &d : t.dims)
        if (d.isLiteral() && d.value <= 0)
          error(d.range,
                "dimension must be positive, got " + std::to_string(d.value));
        else if (d.isLiteral() && d.value > INT32_MAX)
          error(d.range,
                "dimension " + std::to_string(d.value) +
                    " does not fit in i32 (at most 2147483647)",
                "kernel buffers index every dimension with 32-bit extents");
    }
    k_.q = headTensor("q");
    k_.k = headTensor("k");
    k_.v = headTensor("v");
    k_.computeType =
        k_.q && k_.q->type == ElemType::F64 ? ScalarType::F64 : ScalarType::F32;

    bool rank4[3] = {false, false, false};
    const TensorDecl *heads[3] = {k_.q, k_.k, k_.v};
    const char *names[3] = {"q", "k", "v"};
    const char *shapes[3] = {"[B, H, Lq, D]", "[B, Hk, Lk, D]", "[B, Hk, Lk, Dv]"};
    for (int r = 0; r < 3; ++r) {
      const TensorDecl *t = heads[r];
      if (!t) {
        error(k_.range,
              (k_.sourceName.empty() ? "kernel '" + k_.name : "source '" + k_.sourceName) +
                  "' has no '" + names[r] + "' tensor",
              std::string("declare it, e.g. `") + names[r] + ": f32" +
                  shapes[r] + "`");
        continue;
      }
      if (!t->at.empty()) {
        // `at [...]` gives every dimension but the last (the head vector).
        if (t->at.size() + 1 != t->dims.size())
          error(t->atRange,
                std::string("'") + names[r] + "' has " + std::to_string(t->dims.size()) +
                    " dimensions, so its `at` needs " + std::to_string(t->dims.size() - 1) +
                    (t->dims.size() == 2 ? " index" : " indices") + ", got " +
                    std::to_string(t->at.size()),
                "the last dimension is the head vector; `at` gives the others");
      } else {
        rank4[r] = t->dims.size() == 4;
        if (!rank4[r])
          error(t->range,
                std::string("'") + names[r] + "' must have 4 dimensions " +
                    shapes[r] + ", got " + std::to_string(t->dims.size()),
                t->dims.size() >= 2
                    ? std::string("or say where its rows are with `at [...]`, e.g. `") +
                          names[r] + ": f32[B, L, H, D] at [b, " + (r ? "j, hk" : "i, h") + "]`"
                    : std::string());
      }
      if (!isFloat(t->type))
        error(t->typeRange,
              std::string("'") + names[r] +
                  "' must have a float element type (f32, f16, bf16 or "
                  "f64), got " + toString(t->type));
    }
    for (const TensorDecl &t : k_.tensors)
      if (t.role == TensorRole::Aux && t.dims.empty())
        error(t.range, "tensor '" + t.name + "' needs at least one dimension",
              "a scalar input is declared `param " + t.name + ": " +
                  toString(t.type) + "`");

    const TensorDecl *q = k_.q, *kk = k_.k, *v = k_.v;
    if (q && kk && !q->dims.empty() && !kk->dims.empty() &&
        (q->at.empty() || q->at.size() + 1 == q->dims.size()) &&
        (kk->at.empty() || kk->at.size() + 1 == kk->dims.size()))
      requireSame(*q, *kk, q->dims.size() - 1, kk->dims.size() - 1, "last dimension",
                  "use the same size name or the same literal in both");
    if (rank4[0] && rank4[1])
      requireSame(*q, *kk, 0, 0, "batch dimension",
                  "q, k and v share the batch dimension");
    if (rank4[1] && rank4[2]) {
      const char *labels[3] = {"batch dimension", "head dimension",
                               "length dimension"};
      for (int d = 0; d < 3; ++d)
        requireSame(*kk, *v, d, d, labels[d],
                    "k and v are [B, Hk, Lk, ...] with the same B, Hk and Lk");
    }
    if (rank4[0] && rank4[1] && q->dims[1].isLiteral() &&
        kk->dims[1].isLiteral() && q->dims[1].value > 0 &&
        kk->dims[1].value > 0 && q->dims[1].value % kk->dims[1].value != 0)
      error(q->dims[1].range,
            "the number of query heads (" + std::to_string(q->dims[1].value) +
                ") must be a multiple of the number of key/value heads (" +
                std::to_string(kk->dims[1].value) + ")");
    // The head dims are loop extents the schedule vectorizes and unrolls.
    for (const TensorDecl *t : {q, kk, v})
      if (t && !t->dims.empty() && t->dims.back().isLiteral() &&
          t->dims.back().value > kMaxHeadDim && t->dims.back().value <= INT32_MAX)
        error(t->dims.back().range,
              "head dimension " + std::to_string(t->dims.back().value) + " of '" + t->name +
                  "' is larger than attnc supports (" + std::to_string(kMaxHeadDim) + ")",
              "split the head into several heads");
  }

  /// Reports when dimension `db` of `second` differs from dimension `da` of
  /// `first`.
  void requireSame(const TensorDecl &first, const TensorDecl &second, size_t da, size_t db,
                   const char *label, const char *hint) {
    const Dim &a = first.dims[da], &b = second.dims[db];
    if (sameDim(a, b))
      return;
    error(b.range, std::string("the ") + label + " of '" + second.callName() + "' (" +
                       dimText(b) + ") must equal the " + label + " of '" +
                       first.callName() + "' (" + dimText(a) + ")",
          hint);
    note(a.range, "'" + first.callName() + "' declares it here");
  }

  void checkParams() {
    for (ParamDecl &p : k_.params) {
      if (p.type == ElemType::F16 || p.type == ElemType::BF16) {
        error(p.typeRange,
              "param '" + p.name + "' cannot be " + toString(p.type),
              "params are i32, i64, f32, f64 or bool");
        continue;
      }
      if (!p.defaultValue)
        continue;
      Literal &lit = *p.defaultValue;
      std::string what = std::string("the default of ") + toString(p.type) +
                         " param '" + p.name + "'";
      switch (p.type) {
      case ElemType::Bool:
        if (lit.kind != Literal::Kind::Bool)
          error(p.defaultRange, what + " must be true or false");
        break;
      case ElemType::I32:
      case ElemType::I64:
        if (lit.kind != Literal::Kind::Int) {
          error(p.defaultRange, what + " must be an integer");
        } else if (p.type == ElemType::I32 &&
                   (lit.i < INT32_MIN || lit.i > INT32_MAX)) {
          error(p.defaultRange,
                what + " does not fit in i32: " + std::to_string(lit.i),
                "declare the param as i64");
        }
        break;
      default: // f32, f64
        if (lit.kind == Literal::Kind::Bool) {
          error(p.defaultRange, what + " must be a number");
          break;
        }
        if (lit.kind == Literal::Kind::Int) {
          lit.kind = Literal::Kind::Float;
          lit.f = static_cast<double>(lit.i);
          lit.i = 0;
        }
        if (p.type == ElemType::F32 && std::isfinite(lit.f) &&
            std::fabs(lit.f) > FLT_MAX)
          error(p.defaultRange, what + " does not fit in f32",
                "declare the param as f64");
        break;
      }
    }
  }

  void checkLets() {
    letDepth_.assign(k_.lets.size(), 1);
    for (size_t l = 0; l < k_.lets.size() && !errors_.stopped; ++l) {
      visibleLets_ = l;
      LetDecl &let = k_.lets[l];
      if (!let.value)
        continue;
      if (let.isVector())
        checkVectorHeader(let);
      if (let.isVector())
        channels_.push_back(let.var);
      int depth = check(let.value);
      if (let.isVector()) {
        channels_.pop_back();
        checkVectorBody(let);
      }
      checkExpandedDepth(*let.value, depth);
      letDepth_[l] = std::min(depth, kMaxExpandedDepth + 1);
    }
    visibleLets_ = k_.lets.size();
  }

  // ---- index maps and ranges (LANGUAGE.md §8.1) ---------------------------

  /// Checks `e` in the restricted context `c` (an `at` index or a range).
  int checkIn(ExprPtr &e, Context c) {
    std::swap(ctx_, c);
    int depth = check(e);
    std::swap(ctx_, c);
    return depth;
  }

  void checkIndexMaps() {
    if (errors_.stopped)
      return;
    for (const TensorDecl *decl : {k_.q, k_.k, k_.v}) {
      if (!decl || decl->at.empty())
        continue;
      TensorDecl &t = const_cast<TensorDecl &>(*decl);
      bool isQ = t.role == TensorRole::Q;
      Context c;
      c.vars = isQ ? bit(IndexVar::B) | bit(IndexVar::H) | bit(IndexVar::I)
                   : bit(IndexVar::B) | bit(IndexVar::Hk) | bit(IndexVar::J);
      c.lets = false;
      c.heads = false;
      c.where = "the `at` of '" + t.callName() + "'";
      c.varsHint = isQ ? "a query row is found from b, h and i (with sizes, params and aux tensors)"
                       : "a key or value row is found from b, hk and j (with sizes, params and aux "
                         "tensors)";
      for (ExprPtr &e : t.at) {
        int depth = checkIn(e, c);
        checkExpandedDepth(*e, depth);
        if (e->type != ScalarType::Unknown && !isInt(e->type))
          error(e->range,
                "index of '" + t.name + "' must be an integer, got " + toString(e->type),
                "int(x) turns a float into an integer");
      }
    }
  }

  /// The extent of dimension `d` of `t` as an expression.
  ExprPtr dimExpr(const Dim &d) {
    ExprPtr e;
    if (d.isLiteral()) {
      e = makeExpr(ExprKind::IntLit, d.range, ScalarType::I32);
      e->intValue = d.value;
    } else {
      e = makeExpr(ExprKind::Ident, d.range, ScalarType::I32);
      e->name = d.name;
      e->ident = IdentKind::Size;
    }
    return e;
  }

  void defineExtent(IndexVar v, ExprPtr value, SourceRange range, std::string what) {
    k_.extents[int(v)].push_back(Extent{std::move(value), range, std::move(what)});
  }

  /// Which dimension defines which index variable's range: q's dims give b,
  /// h, i and k's (and v's) give b, hk, j; with `at`, only dimensions
  /// indexed by a bare index variable do. Then `range` statements.
  void checkRanges() {
    if (errors_.stopped || !k_.q || !k_.k || !k_.v)
      return;
    for (auto &e : k_.extents)
      e.clear();
    for (const TensorDecl *t : {k_.q, k_.k, k_.v})
      if (t->at.empty() ? t->dims.size() != 4 : t->at.size() + 1 != t->dims.size())
        return; // reported by checkTensors
    struct Role {
      const TensorDecl *t;
      IndexVar vars[3]; // of dims 0, 1, 2 without `at`
    };
    Role roles[] = {{k_.q, {IndexVar::B, IndexVar::H, IndexVar::I}},
                    {k_.k, {IndexVar::B, IndexVar::Hk, IndexVar::J}},
                    {k_.v, {IndexVar::B, IndexVar::Hk, IndexVar::J}}};
    for (const Role &r : roles) {
      const TensorDecl &t = *r.t;
      if (t.at.empty()) {
        if (t.dims.size() != 4)
          continue;
        for (int d = 0; d < 3; ++d)
          defineExtent(r.vars[d], dimExpr(t.dims[d]), t.dims[d].range,
                       "dimension " + std::to_string(d) + " of '" + t.callName() + "'");
        continue;
      }
      if (t.at.size() + 1 != t.dims.size())
        continue;
      for (size_t d = 0; d < t.at.size(); ++d) {
        const Expr &e = *t.at[d];
        if (e.kind == ExprKind::Ident && e.ident == IdentKind::IndexVar)
          defineExtent(indexVarOf(e.name), dimExpr(t.dims[d]), t.dims[d].range,
                       "dimension " + std::to_string(d) + " of '" + t.callName() + "'");
      }
    }
    Context c;
    c.vars = 0;
    c.lets = false;
    c.tensors = false;
    c.heads = false;
    for (RangeDecl &r : k_.ranges) {
      std::string name = toString(r.var);
      c.where = "range " + name;
      c.varsHint = "a range is an expression of sizes, params and literals";
      int depth = checkIn(r.bound, c);
      checkExpandedDepth(*r.bound, depth);
      if (r.bound->type != ScalarType::Unknown && !isInt(r.bound->type)) {
        error(r.bound->range,
              "range " + name + " must be an integer, got " + toString(r.bound->type));
        continue;
      }
      std::vector<Extent> &defs = k_.extents[int(r.var)];
      if (!defs.empty()) {
        bool byRange = defs.front().what.rfind("range", 0) == 0;
        error(r.range,
              std::string(byRange ? "range " : "the range of ") + name + " is given twice",
              byRange ? "give each index variable one range"
                      : name + " already ranges over " + defs.front().what +
                            "; a range is needed only where no dimension gives one");
        note(defs.front().range, byRange ? "the first range is here" : "that dimension is here");
        continue;
      }
      coerce(r.bound, ScalarType::I32);
      defineExtent(r.var, r.bound->clone(), r.range, "range " + name);
    }
    for (IndexVar v : {IndexVar::B, IndexVar::H, IndexVar::I, IndexVar::J})
      if (k_.extents[int(v)].empty())
        error(k_.range,
              std::string("nothing gives the range of ") + toString(v) + " in kernel '" +
                  k_.name + "'",
              std::string("no dimension is indexed by a bare '") + toString(v) +
                  "' in an `at`; add `range " + toString(v) + " < SIZE`");
    if (k_.extents[int(IndexVar::Hk)].empty() && !k_.extents[int(IndexVar::H)].empty()) {
      const Extent &h = k_.extents[int(IndexVar::H)].front();
      defineExtent(IndexVar::Hk, h.value->clone(), h.range, h.what);
    }
  }

  // ---- channel vectors (LANGUAGE.md §8.3) ---------------------------------

  /// The length of a vector let or a sum: a size or a literal.
  bool checkLength(const Dim &d, const std::string &what) {
    if (d.isLiteral()) {
      if (d.value <= 0 || d.value > kMaxHeadDim) {
        error(d.range, "the length of " + what + " must be in [1, " +
                           std::to_string(kMaxHeadDim) + "], got " + std::to_string(d.value));
        return false;
      }
      return true;
    }
    const Symbol *s = lookup(d.name);
    if (!s || s->kind != SymKind::Size) {
      error(d.range, "the length of " + what + " must be a size or an integer, got '" + d.name + "'",
            "sizes are the dimension names of the tensor declarations");
      return false;
    }
    return true;
  }

  void checkVectorHeader(LetDecl &let) {
    if (isIndexVar(let.var) || lookup(let.var))
      error(let.varRange, "channel variable '" + let.var + "' hides another name",
            "choose a name that is not an index variable, tensor, size, param or let");
    if (!let.length && k_.q && !k_.q->dims.empty())
      let.length = k_.q->dims.back(); // length D
    if (let.length)
      checkLength(*let.length, "vector '" + let.name + "'");
  }

  /// Bits of the head sides an expression reads: 1 query, 2 key.
  unsigned sidesOf(const Expr &e) {
    unsigned s = 0;
    if (e.kind == ExprKind::Element && (e.name == "q" || e.name == "k"))
      s |= e.name == "q" ? 1 : 2;
    if (e.kind == ExprKind::Element || (e.kind == ExprKind::Call && e.builtin == Builtin::SqnormVec)) {
      const LetDecl *l = k_.findLet(e.kind == ExprKind::Element ? e.name : e.args[0]->name);
      if (l && l->isVector())
        s |= l->side == VectorSide::Query ? 1 : l->side == VectorSide::Key ? 2 : 0;
    }
    if (e.kind == ExprKind::Ident && e.ident == IdentKind::IndexVar)
      s |= e.name == "i" || e.name == "h" ? 1 : e.name == "j" || e.name == "hk" ? 2 : 0;
    if (e.kind == ExprKind::Ident && e.ident == IdentKind::Let) {
      const LetDecl *l = k_.findLet(e.name);
      // Each let once (lets used before their definition, an error, may be
      // cyclic: the memo entry exists before the recursion).
      if (l && l->value && !l->isVector()) {
        auto [it, fresh] = letSides_.try_emplace(e.name, 0u);
        if (fresh) {
          unsigned sides = sidesOf(*l->value);
          letSides_[e.name] = sides;
          s |= sides;
        } else {
          s |= it->second;
        }
      }
    }
    if (e.kind == ExprKind::Call)
      switch (e.builtin) {
      case Builtin::Dot:
      case Builtin::DotVec: s |= 3; break;
      case Builtin::SqnormQ: s |= 1; break;
      case Builtin::SqnormK: s |= 2; break;
      default: break;
      }
    for (const auto &a : e.args)
      if (a)
        s |= sidesOf(*a);
    return s;
  }

  void checkVectorBody(LetDecl &let) {
    if (isNumeric(let.value->type))
      coerce(let.value, k_.computeType);
    else if (let.value->type == ScalarType::Bool)
      error(let.value->range, "vector '" + let.name + "' must be a number, got bool",
            "select(cond, 1.0, 0.0) turns a bool into a number");
    unsigned sides = sidesOf(*let.value);
    if (sides == 3)
      error(let.range, "vector '" + let.name + "' reads both the query and the key side",
            "a channel vector is computed once per query row (from q, b, h, i) or once "
            "per key row (from k, b, hk, j); combine the two with dot(x, y) in the score");
    let.side = sides == 1 ? VectorSide::Query : sides == 2 ? VectorSide::Key : VectorSide::Constant;
  }

  /// The vector an Ident names (q, k or a vector let), for dot and sqnorm;
  /// reports an error and returns false when it is none.
  bool vectorArg(const Expr &a, const char *fn, Dim &length, unsigned &side) {
    if (a.kind == ExprKind::Ident && (a.name == "q" || a.name == "k") && k_.q && k_.k &&
        !k_.q->dims.empty()) {
      length = k_.q->dims.back();
      side = a.name == "q" ? 1 : 2;
      return true;
    }
    const LetDecl *l = a.kind == ExprKind::Ident ? k_.findLet(a.name) : nullptr;
    const Symbol *s = l ? lookup(a.name) : nullptr;
    if (!l || !l->isVector() || !l->length || (s && s->index >= visibleLets_)) {
      error(a.range, std::string(fn) + " takes head or channel vectors",
            std::string("write ") + fn + "(q, k), or " + fn +
                "(x, y) of vectors declared above with `let x[c] = ...`");
      return false;
    }
    length = *l->length;
    side = l->side == VectorSide::Query ? 1 : l->side == VectorSide::Key ? 2 : 0;
    return true;
  }

  int checkSum(Expr &e) {
    ExprPtr &len = e.args[0];
    Dim d;
    d.range = len->range;
    if (len->kind == ExprKind::IntLit)
      d.value = len->intValue;
    else
      d.name = len->name;
    bool ok = checkLength(d, "sum(" + e.name + " < ...)");
    if (ok && !d.isLiteral()) {
      len->ident = IdentKind::Size;
    }
    len->type = ScalarType::I32;
    if (isIndexVar(e.name) || lookup(e.name) ||
        std::find(channels_.begin(), channels_.end(), e.name) != channels_.end())
      error(nameRange(e), "channel variable '" + e.name + "' hides another name",
            "choose a name that is not an index variable, tensor, size, param, let or an "
            "enclosing channel variable");
    channels_.push_back(e.name);
    int depth = check(e.args[1]);
    channels_.pop_back();
    if (e.args[1]->type == ScalarType::Bool)
      error(e.args[1]->range, "the body of sum must be a number, got bool");
    else
      coerce(e.args[1], k_.computeType);
    e.type = k_.computeType;
    return depth + 2;
  }

  void checkExpandedDepth(const Expr &e, int depth) {
    if (depth > kMaxExpandedDepth)
      error(e.range, "expression is nested too deeply once lets are expanded",
            "the limit is " + std::to_string(kMaxExpandedDepth) + " levels");
  }

  void checkScoreAndMask() {
    if (errors_.stopped)
      return;
    ScalarType compute = k_.computeType;
    if (k_.score) {
      int depth = check(k_.score);
      checkExpandedDepth(*k_.score, depth);
      if (k_.score->type == ScalarType::Bool)
        error(k_.score->range, "score must be a number, got bool",
              "to leave pairs out use `mask = ...`");
      else
        coerce(k_.score, compute);
    } else if (k_.q && !k_.q->dims.empty()) {
      k_.score = defaultScore();
    }
    if (k_.mask) {
      int depth = check(k_.mask);
      checkExpandedDepth(*k_.mask, depth);
      ScalarType t = k_.mask->type;
      if (isNumeric(t))
        error(k_.mask->range,
              std::string("mask must be a bool, got ") + toString(t),
              "compare it, e.g. `mask = ... != 0`");
    } else {
      k_.mask = makeExpr(ExprKind::BoolLit, k_.range, ScalarType::Bool);
      k_.mask->boolValue = true;
    }
    std::string first;
    SourceRange firstRange;
    if (k_.score)
      checkOneDot(*k_.score, first, firstRange);
    checkOneDot(*k_.mask, first, firstRange);
  }

  /// The one q.k product a kernel computes per pair: dot(q, k) or dot(x, y)
  /// of one pair of vectors (the tiles of QKᵀ hold one product).
  void checkOneDot(const Expr &e, std::string &first, SourceRange &firstRange) {
    std::string sig;
    if (e.kind == ExprKind::Call && e.builtin == Builtin::Dot)
      sig = "dot(q, k)";
    if (e.kind == ExprKind::Call && e.builtin == Builtin::DotVec)
      sig = "dot(" + e.args[0]->name + ", " + e.args[1]->name + ")";
    if (!sig.empty()) {
      if (first.empty()) {
        first = sig;
        firstRange = e.range;
      } else if (sig != first) {
        error(e.range, "a kernel computes one dot product per pair; this is " + sig +
                           " beside " + first,
              "write the other as sum(c < N: x[c] * y[c])");
        note(firstRange, "the first dot product is here");
      }
      return;
    }
    if (e.kind == ExprKind::Ident && e.ident == IdentKind::Let) {
      const LetDecl *l = k_.findLet(e.name);
      if (l && l->value && !l->isVector() && checkedDots_.insert(e.name).second)
        checkOneDot(*l->value, first, firstRange);
      return;
    }
    for (const auto &a : e.args)
      if (a)
        checkOneDot(*a, first, firstRange);
  }
  std::set<std::string> checkedDots_;

  /// dot(q, k) * rsqrt(D), D being q's last dimension.
  ExprPtr defaultScore() {
    ScalarType compute = k_.computeType;
    const Dim &d = k_.q->dims.back();
    ExprPtr dot = makeExpr(ExprKind::Call, k_.range, compute);
    dot->name = "dot";
    dot->builtin = Builtin::Dot;
    ExprPtr size;
    if (d.isLiteral()) {
      size = makeExpr(ExprKind::IntLit, d.range,
                      d.value > INT32_MAX ? ScalarType::I64 : ScalarType::I32);
      size->intValue = d.value;
    } else {
      size = makeExpr(ExprKind::Ident, d.range, ScalarType::I32);
      size->name = d.name;
      size->ident = IdentKind::Size;
    }
    coerce(size, compute);
    ExprPtr rsqrt = makeExpr(ExprKind::Call, k_.range, compute);
    rsqrt->name = "rsqrt";
    rsqrt->builtin = Builtin::Rsqrt;
    rsqrt->args.push_back(std::move(size));
    ExprPtr mul = makeExpr(ExprKind::Binary, k_.range, compute);
    mul->binaryOp = BinaryOp::Mul;
    mul->args.push_back(std::move(dot));
    mul->args.push_back(std::move(rsqrt));
    return mul;
  }

  void checkNormalize() {
    NormKind n = k_.normalize.kind;
    if (k_.outputLse &&
        (n == NormKind::Sigmoid || n == NormKind::Relu || n == NormKind::None ||
         n == NormKind::Linear)) {
      error(k_.outputLseRange,
            std::string("'output lse' is not available with normalize = ") +
                toString(n),
            "lse is defined for softmax, hardmax and topk");
      note(k_.normalize.range, "the normalization is set here");
    }
  }

  // ---- expressions --------------------------------------------------------

  static void coerce(ExprPtr &e, ScalarType to) {
    if (!e || e->type == to || e->type == ScalarType::Unknown ||
        to == ScalarType::Unknown)
      return;
    ExprPtr cast = makeExpr(ExprKind::Cast, e->range, to);
    cast->args.push_back(std::move(e));
    e = std::move(cast);
  }

  /// The type both operands of a numeric operation are converted to.
  ScalarType common(ScalarType a, ScalarType b) const {
    if (isFloatType(a) || isFloatType(b))
      return k_.computeType;
    if (a == ScalarType::I64 || b == ScalarType::I64)
      return ScalarType::I64;
    return ScalarType::I32;
  }

  ScalarType elemScalar(ElemType t) const {
    switch (t) {
    case ElemType::I32: return ScalarType::I32;
    case ElemType::I64: return ScalarType::I64;
    case ElemType::Bool: return ScalarType::Bool;
    default: return k_.computeType;
    }
  }

  /// Types `e` in place; returns its depth with lets expanded (an upper
  /// bound: every operator counts a possible Cast of its operands).
  int check(ExprPtr &e) {
    switch (e->kind) {
    case ExprKind::IntLit:
      e->type = e->intValue > INT32_MAX ? ScalarType::I64 : ScalarType::I32;
      return 1;
    case ExprKind::FloatLit:
    case ExprKind::Inf:
      e->type = k_.computeType;
      return 1;
    case ExprKind::BoolLit:
      e->type = ScalarType::Bool;
      return 1;
    case ExprKind::Ident: return checkIdent(*e);
    case ExprKind::Unary: return checkUnary(*e);
    case ExprKind::Binary: return checkBinary(*e);
    case ExprKind::Call: return checkCall(*e);
    case ExprKind::Index: return checkIndex(*e);
    case ExprKind::Element: return 1; // checked already (a Sema product)
    case ExprKind::Sum: return checkSum(*e);
    case ExprKind::Cast: {
      int d = e->args.empty() ? 0 : check(e->args[0]);
      return d + 1;
    }
    }
    return 1;
  }

  int checkArgs(Expr &e) {
    int depth = 0;
    for (auto &a : e.args)
      depth = std::max(depth, check(a));
    return depth + 2;
  }

  int checkIdent(Expr &e) {
    if (std::find(channels_.begin(), channels_.end(), e.name) != channels_.end()) {
      e.ident = IdentKind::Channel;
      e.type = ScalarType::I32;
      return 1;
    }
    if (isIndexVar(e.name)) {
      e.ident = IdentKind::IndexVar;
      e.type = ScalarType::I32;
      if (!(ctx_.vars & bit(indexVarOf(e.name))))
        error(e.range, "'" + e.name + "' cannot be used in " + ctx_.where, ctx_.varsHint);
      return 1;
    }
    const Symbol *s = lookup(e.name);
    if (!s) {
      std::string hint;
      if (findFunction(e.name))
        hint = std::string("'") + e.name + "' is a function: " +
               findFunction(e.name)->usage;
      else
        hint = didYouMean(e.name, valueNames());
      error(e.range, "unknown name '" + e.name + "'", hint);
      return 1;
    }
    switch (s->kind) {
    case SymKind::Tensor:
      if (e.name == "q" || e.name == "k" || e.name == "v")
        error(e.range, "'" + e.name + "' cannot be used as a value",
              "combine the head vectors with dot(q, k), sqnorm(q) or "
              "sqnorm(k); v is weighted by the normalization");
      else
        error(e.range, "tensor '" + e.name + "' must be indexed",
              "read it with `" + e.name + "[...]` (" +
                  std::to_string(k_.tensors[s->index].dims.size()) +
                  " indices)");
      return 1;
    case SymKind::Size:
      e.ident = IdentKind::Size;
      e.type = ScalarType::I32;
      return 1;
    case SymKind::Param:
      e.ident = IdentKind::Param;
      e.type = elemScalar(k_.params[s->index].type);
      return 1;
    case SymKind::Let: {
      e.ident = IdentKind::Let;
      if (!ctx_.lets) {
        error(e.range, "let '" + e.name + "' cannot be used in " + ctx_.where,
              "write the expression out; lets belong to the score and the mask");
        return 1;
      }
      if (s->index >= visibleLets_) {
        error(e.range, "'" + e.name + "' is used before its definition",
              "a let can use only the lets defined above it");
        note(s->range, "'" + e.name + "' is defined here");
        return 1;
      }
      const LetDecl &l = k_.lets[s->index];
      if (l.isVector()) {
        error(e.range, "'" + e.name + "' is a channel vector",
              "read an element with " + e.name + "[c], or combine vectors with dot(x, y), "
              "sqnorm(x) or sum(c < N: ...)");
        return 1;
      }
      e.type = l.value ? l.value->type : ScalarType::Unknown;
      return letDepth_[s->index];
    }
    }
    return 1;
  }

  std::vector<std::string> valueNames() const {
    std::vector<std::string> names = {"b", "h", "hk", "i", "j"};
    for (const auto &[name, sym] : symbols_)
      if (sym.kind != SymKind::Tensor)
        names.push_back(name);
    return names;
  }

  int checkUnary(Expr &e) {
    int depth = checkArgs(e);
    ScalarType t = e.args[0]->type;
    if (e.unaryOp == UnaryOp::Not) {
      e.type = ScalarType::Bool;
      if (t != ScalarType::Bool && t != ScalarType::Unknown) {
        error(e.args[0]->range,
              std::string("operand of '!' must be bool, got ") + toString(t),
              "compare with != 0");
        e.type = ScalarType::Unknown;
      }
      return depth;
    }
    if (t == ScalarType::Bool) {
      error(e.args[0]->range, "operand of '-' must be a number, got bool",
            "use '!' for logical not");
      return depth;
    }
    e.type = t;
    return depth;
  }

  int checkBinary(Expr &e) {
    int depth = checkArgs(e);
    ExprPtr &l = e.args[0], &r = e.args[1];
    ScalarType lt = l->type, rt = r->type;
    const std::string op = toString(e.binaryOp);
    bool unknown = lt == ScalarType::Unknown || rt == ScalarType::Unknown;
    switch (e.binaryOp) {
    case BinaryOp::Or:
    case BinaryOp::And:
      e.type = ScalarType::Bool;
      for (ExprPtr *a : {&l, &r})
        if (isNumeric((*a)->type)) {
          error((*a)->range,
                "operand of '" + op + "' must be bool, got " +
                    toString((*a)->type),
                "compare with != 0");
          e.type = ScalarType::Unknown;
        }
      return depth;
    case BinaryOp::Eq:
    case BinaryOp::Ne:
      e.type = ScalarType::Bool;
      if (unknown || (lt == ScalarType::Bool && rt == ScalarType::Bool))
        return depth;
      if (lt == ScalarType::Bool || rt == ScalarType::Bool) {
        error(e.range,
              std::string("cannot compare ") + toString(lt) + " with " +
                  toString(rt) + " using '" + op + "'",
              "a bool can only be compared with another bool");
        e.type = ScalarType::Unknown;
        return depth;
      }
      break;
    case BinaryOp::Lt:
    case BinaryOp::Le:
    case BinaryOp::Gt:
    case BinaryOp::Ge:
      e.type = ScalarType::Bool;
      for (ExprPtr *a : {&l, &r})
        if ((*a)->type == ScalarType::Bool) {
          error((*a)->range, "operand of '" + op + "' must be a number, got bool",
                "only == and != compare bools");
          e.type = ScalarType::Unknown;
          return depth;
        }
      if (unknown)
        return depth;
      break;
    default: // arithmetic
      for (ExprPtr *a : {&l, &r})
        if ((*a)->type == ScalarType::Bool) {
          error((*a)->range, "operand of '" + op + "' must be a number, got bool",
                "select(cond, 1, 0) turns a bool into a number");
          return depth;
        }
      if (unknown)
        return depth;
      e.type = common(lt, rt);
      break;
    }
    ScalarType t = common(lt, rt);
    coerce(l, t);
    coerce(r, t);
    return depth;
  }

  /// Whether `e` (its lets expanded) reads dot or sqnorm.
  bool readsHeadVectors(const Expr &e) const {
    if (e.kind == ExprKind::Call &&
        (e.builtin == Builtin::Dot || e.builtin == Builtin::SqnormQ ||
         e.builtin == Builtin::SqnormK || e.builtin == Builtin::DotVec ||
         e.builtin == Builtin::SqnormVec))
      return true;
    if (e.kind == ExprKind::Element) {
      const LetDecl *l = k_.findLet(e.name);
      if (!l || l->side != VectorSide::Constant)
        return true;
    }
    if (e.kind == ExprKind::Ident && e.ident == IdentKind::Let) {
      auto it = letReadsHeads_.find(e.name);
      if (it != letReadsHeads_.end())
        return it->second;
      letReadsHeads_[e.name] = false; // a let used before its definition may be cyclic
      const LetDecl *l = k_.findLet(e.name);
      bool r = l && l->value && readsHeadVectors(*l->value);
      letReadsHeads_[e.name] = r;
      return r;
    }
    for (const auto &a : e.args)
      if (a && readsHeadVectors(*a))
        return true;
    return false;
  }

  /// 'q', 'k' or 'v' when `a` is a bare head-tensor name, else 0.
  static char headName(const Expr &a) {
    if (a.kind == ExprKind::Ident &&
        (a.name == "q" || a.name == "k" || a.name == "v"))
      return a.name[0];
    return 0;
  }

  int checkCall(Expr &e) {
    const FunctionInfo *f = findFunction(e.name);
    if (!f) {
      const Symbol *s = lookup(e.name);
      if (s && s->kind == SymKind::Tensor)
        error(nameRange(e), "'" + e.name + "' is a tensor, not a function",
              "read it with square brackets: " + e.name + "[...]");
      else
        error(nameRange(e), "unknown function '" + e.name + "'",
              didYouMean(e.name, functionNames(),
                         "the functions are exp, exp2, log, log2, sqrt, "
                         "rsqrt, tanh, sigmoid, abs, floor, ceil, sin, cos, "
                         "int, min, max, pow, clamp, select, dot and sqnorm"));
      return checkArgs(e);
    }
    if (e.args.size() != f->arity) {
      error(e.range,
            "'" + e.name + "' takes " + std::to_string(f->arity) +
                (f->arity == 1 ? " argument" : " arguments") + ", got " +
                std::to_string(e.args.size()),
            std::string("write ") + f->usage);
      if (f->builtin != Builtin::Dot && f->builtin != Builtin::SqnormQ)
        return checkArgs(e);
      return 1;
    }
    ScalarType compute = k_.computeType;
    if ((f->builtin == Builtin::Dot || f->builtin == Builtin::SqnormQ) && !ctx_.heads) {
      error(e.range, "'" + e.name + "' cannot be used in " + ctx_.where,
            "rows are found before the head vectors are read");
      return 1;
    }
    auto isVectorLet = [&](const Expr &a) {
      const LetDecl *l = a.kind == ExprKind::Ident ? k_.findLet(a.name) : nullptr;
      return l && l->isVector();
    };
    if (f->builtin == Builtin::Dot && (isVectorLet(*e.args[0]) || isVectorLet(*e.args[1]))) {
      // dot(x, y) of a query vector and a key vector (LANGUAGE.md §8.3).
      Dim la, lb;
      unsigned sa = 0, sb = 0;
      if (!vectorArg(*e.args[0], "dot", la, sa) || !vectorArg(*e.args[1], "dot", lb, sb))
        return 1;
      if (sa == 2 && sb == 1) {
        std::swap(e.args[0], e.args[1]);
        std::swap(la, lb);
        std::swap(sa, sb);
      }
      if (sa != 1 || sb != 2) {
        error(e.range, "dot(x, y) takes a query vector and a key vector",
              "one of them must be computed from q (or b, h, i) and the other from k "
              "(or b, hk, j); a product of two vectors of one side is sum(c < N: x[c] * y[c])");
        return 1;
      }
      if (!sameDim(la, lb)) {
        error(e.range, "dot(x, y) of vectors of different lengths (" + dimText(la) + " and " +
                           dimText(lb) + ")");
        return 1;
      }
      for (auto &a : e.args) {
        a->ident = IdentKind::Let;
        a->type = compute;
      }
      e.builtin = Builtin::DotVec;
      e.type = compute;
      return 1;
    }
    if (f->builtin == Builtin::SqnormQ && isVectorLet(*e.args[0])) {
      Dim l;
      unsigned side = 0;
      if (!vectorArg(*e.args[0], "sqnorm", l, side))
        return 1;
      e.args[0]->ident = IdentKind::Let;
      e.args[0]->type = compute;
      e.builtin = Builtin::SqnormVec;
      e.type = compute;
      return 1;
    }
    if (f->builtin == Builtin::Dot) {
      char a = headName(*e.args[0]), b = headName(*e.args[1]);
      if (!((a == 'q' && b == 'k') || (a == 'k' && b == 'q'))) {
        error(e.range, "dot takes the head vectors q and k: dot(q, k)",
              a == 'v' || b == 'v'
                  ? "v is weighted by the normalization and cannot be in "
                    "the score"
                  : "for other products write the arithmetic out");
        return 1;
      }
      e.builtin = Builtin::Dot;
      e.args.clear();
      e.type = compute;
      return 1;
    }
    if (f->builtin == Builtin::SqnormQ) {
      char a = headName(*e.args[0]);
      if (a != 'q' && a != 'k') {
        error(e.range, "sqnorm takes a head vector: sqnorm(q) or sqnorm(k)");
        return 1;
      }
      e.builtin = a == 'q' ? Builtin::SqnormQ : Builtin::SqnormK;
      e.args.clear();
      e.type = compute;
      return 1;
    }

    int depth = checkArgs(e);
    e.builtin = f->builtin;
    bool unknown = false, ok = true;
    size_t first = f->builtin == Builtin::Select ? 1 : 0;
    for (size_t i = 0; i < e.args.size(); ++i) {
      ScalarType t = e.args[i]->type;
      unknown = unknown || t == ScalarType::Unknown;
      if (i >= first && t == ScalarType::Bool && f->builtin != Builtin::Select) {
        error(e.args[i]->range,
              "argument of '" + e.name + "' must be a number, got bool");
        ok = false;
      }
    }
    if (!ok)
      return depth;

    switch (f->builtin) {
    case Builtin::Abs:
      e.type = e.args[0]->type;
      return depth;
    case Builtin::Int:
      coerce(e.args[0], compute);
      e.type = ScalarType::I32;
      return depth;
    case Builtin::Min:
    case Builtin::Max:
    case Builtin::Clamp: {
      if (unknown)
        return depth;
      ScalarType t = e.args[0]->type;
      for (auto &a : e.args)
        t = common(t, a->type);
      for (auto &a : e.args)
        coerce(a, t);
      e.type = t;
      return depth;
    }
    case Builtin::Select: {
      ScalarType c = e.args[0]->type, a = e.args[1]->type,
                 b = e.args[2]->type;
      if (isNumeric(c))
        error(e.args[0]->range,
              std::string("the condition of 'select' must be bool, got ") +
                  toString(c),
              "compare with != 0");
      if (a == ScalarType::Unknown || b == ScalarType::Unknown)
        return depth;
      if (a == ScalarType::Bool && b == ScalarType::Bool) {
        e.type = ScalarType::Bool;
        return depth;
      }
      if (a == ScalarType::Bool || b == ScalarType::Bool) {
        error(e.range,
              std::string("the branches of 'select' must both be numbers or "
                          "both be bool, got ") +
                  toString(a) + " and " + toString(b));
        return depth;
      }
      ScalarType t = common(a, b);
      coerce(e.args[1], t);
      coerce(e.args[2], t);
      e.type = t;
      return depth;
    }
    default: // exp ... ceil, pow: float results
      for (auto &a : e.args)
        coerce(a, compute);
      e.type = compute;
      return depth;
    }
  }

  int checkIndex(Expr &e) {
    int depth = checkArgs(e);
    const Symbol *s = lookup(e.name);
    if (!ctx_.tensors && s && s->kind == SymKind::Tensor) {
      error(nameRange(e), "tensor '" + e.name + "' cannot be read in " + ctx_.where,
            ctx_.varsHint);
      return depth;
    }
    const LetDecl *vec = s && s->kind == SymKind::Let ? &k_.lets[s->index] : nullptr;
    if (e.name == "q" || e.name == "k" || (vec && vec->isVector())) {
      // An element of a head vector or a channel vector (LANGUAGE.md §8.3).
      if (!ctx_.heads) {
        error(nameRange(e), "'" + e.name + "' cannot be read in " + ctx_.where, ctx_.varsHint);
        return depth;
      }
      if (vec && s->index >= visibleLets_) {
        error(nameRange(e), "'" + e.name + "' is used before its definition",
              "a let can use only the lets defined above it");
        return depth;
      }
      if (e.args.size() != 1) {
        error(nameRange(e),
              "'" + e.name + "' is a vector and takes one index, got " +
                  std::to_string(e.args.size()),
              "the row is the current one: write " + e.name +
                  "[c] for element c, or combine the head vectors with dot(q, k), "
                  "sqnorm(q) or sqnorm(k)");
        return depth;
      }
      if (e.args[0]->type != ScalarType::Unknown && !isInt(e.args[0]->type)) {
        error(e.args[0]->range, "channel index of '" + e.name + "' must be an integer, got " +
                                    toString(e.args[0]->type));
        return depth;
      }
      coerce(e.args[0], ScalarType::I32);
      e.kind = ExprKind::Element;
      e.type = k_.computeType;
      return depth;
    }
    if (e.name == "v") {
      error(nameRange(e), "'v' cannot be indexed",
            "v is weighted by the normalization; the score reads q and k");
      return depth;
    }
    if (vec) {
      error(nameRange(e), "'" + e.name + "' is a let, not a tensor or vector",
            "declare a channel vector with `let " + e.name + "[c] = ...`");
      return depth;
    }
    if (!s) {
      std::vector<std::string> tensors;
      for (const TensorDecl &t : k_.tensors)
        if (t.role == TensorRole::Aux)
          tensors.push_back(t.name);
      error(nameRange(e), "unknown tensor '" + e.name + "'",
            didYouMean(e.name, tensors));
      return depth;
    }
    if (s->kind != SymKind::Tensor) {
      error(nameRange(e),
            "'" + e.name + "' is " + kindName(s->kind) + ", not a tensor",
            "only tensors are read with [...]");
      return depth;
    }
    const TensorDecl &t = k_.tensors[s->index];
    if (e.args.size() != t.dims.size()) {
      std::string decl = std::string(toString(t.type)) + "[";
      for (size_t d = 0; d < t.dims.size(); ++d)
        decl += (d ? ", " : "") + dimText(t.dims[d]);
      decl += "]";
      error(e.range,
            "'" + e.name + "' has " + std::to_string(t.dims.size()) +
                (t.dims.size() == 1 ? " dimension" : " dimensions") +
                " but is read with " + std::to_string(e.args.size()) +
                (e.args.size() == 1 ? " index" : " indices"),
            "it is declared `" + e.name + ": " + decl + "`");
      return depth;
    }
    for (auto &a : e.args) {
      if (a->type != ScalarType::Unknown && !isInt(a->type))
        error(a->range,
              "index of '" + e.name + "' must be an integer, got " +
                  toString(a->type),
              "indices are integer expressions of b, h, hk, i, j, sizes, "
              "integer params and integer tensor reads");
      else if (readsHeadVectors(*a))
        error(a->range, "index of '" + e.name + "' depends on the head vectors",
              "indices are checked before any head vector is read; compute them from "
              "b, h, hk, i, j, sizes, params and aux tensors");
    }
    e.type = elemScalar(t.type);
    return depth;
  }
};

} // namespace

/// Whether a kernel name would clash with a C or C++ keyword, a Halide
/// runtime symbol or a C library function once it becomes the C symbols
/// NAME, NAME_argv, ... and the header NAME.h the AOT and JIT builds emit.
static const char *reservedKernelName(const std::string &n) {
  static const std::set<std::string> keywords = {
      "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break",
      "case", "catch", "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept",
      "const", "consteval", "constexpr", "constinit", "const_cast", "continue", "co_await",
      "co_return", "co_yield", "decltype", "default", "delete", "do", "double", "dynamic_cast",
      "else", "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto",
      "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
      "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register",
      "reinterpret_cast", "requires", "restrict", "return", "short", "signed", "sizeof",
      "static", "static_assert", "static_cast", "struct", "switch", "template", "this",
      "thread_local", "throw", "true", "try", "typedef", "typeid", "typename", "union",
      "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq",
      "main"};
  static const std::set<std::string> libc = {
      "malloc", "free", "calloc", "realloc", "aligned_alloc", "posix_memalign", "memalign",
      "memcpy", "memmove", "memset", "memcmp", "memchr", "strlen", "strcmp", "strncmp",
      "strcpy", "strncpy", "strchr", "strstr", "strdup", "abort", "exit", "_exit", "atexit",
      "getenv", "setenv", "printf", "fprintf", "snprintf", "sprintf", "vsnprintf", "puts",
      "fopen", "fclose", "fwrite", "fread", "fflush", "write", "read", "open", "close",
      "dlopen", "dlsym", "dlclose", "dlerror", "sched_yield", "usleep", "nanosleep",
      "clock_gettime", "gettimeofday", "sysconf", "qsort", "atoi", "strtol", "strtod",
      "errno", "signal", "raise", "sin", "cos", "tan", "asin", "acos", "atan", "atan2",
      "sinh", "cosh", "tanh", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
      "sqrt", "cbrt", "pow", "fabs", "abs", "floor", "ceil", "round", "trunc", "fmod",
      "fmin", "fmax", "fma", "hypot", "sinf", "cosf", "tanf", "expf", "logf", "sqrtf",
      "powf", "fabsf", "floorf", "ceilf", "roundf", "truncf", "fmodf", "fminf", "fmaxf",
      "fmaf", "tanhf", "atan2f", "nan", "nanf", "isnan", "isinf"};
  if (keywords.count(n))
    return "a C or C++ keyword";
  if (n.rfind("halide_", 0) == 0 || n.rfind("Halide", 0) == 0)
    return "reserved for the Halide runtime linked into every kernel";
  if (!n.empty() && n[0] == '_')
    return "reserved: names that start with '_' belong to the C implementation";
  if (n.rfind("pthread_", 0) == 0 || libc.count(n))
    return "a C library function the kernel's runtime calls";
  return nullptr;
}

/// A kernel of `source` blocks (LANGUAGE.md §8.5): each block becomes a
/// single-source kernel of the shared declarations and its own, checked as
/// any kernel; then the kernel keeps the shared parts and the inputs in call
/// order (see Kernel::sources).
static void checkSources(Kernel &k, ErrorBudget &errors) {
  const std::string hintOuter = "with `source` blocks, k, v, score and mask go inside each "
                                "`source NAME { ... }`";
  for (const TensorDecl &t : k.tensors)
    if (t.name == "k" || t.name == "v")
      errors.error(t.range, "'" + t.name + "' is declared outside the source blocks", hintOuter);
  if (k.score)
    errors.error(k.score->range, "'score' outside the source blocks", hintOuter);
  if (k.mask)
    errors.error(k.mask->range, "'mask' outside the source blocks", hintOuter);
  std::map<std::string, const Kernel *> names;
  std::map<std::string, SourceRange> auxNames; // every aux tensor of the kernel
  for (const TensorDecl &t : k.tensors)
    if (t.name != "q" && t.name != "k" && t.name != "v")
      auxNames.emplace(t.name, t.range);
  for (Kernel &s : k.sources) {
    auto [it, fresh] = names.emplace(s.sourceName, &s);
    if (!fresh) {
      errors.error(s.range, "redefinition of source '" + s.sourceName + "'",
                   "each source needs its own name");
      errors.note(it->second->range, "the first source '" + s.sourceName + "' is here");
    }
    const std::string where = "inside source '" + s.sourceName + "'";
    const std::string hintShared = "q, params, normalize and output are shared: declare them "
                                   "outside the source blocks";
    for (const TensorDecl &t : s.tensors) {
      if (t.name == "q")
        errors.error(t.range, "'q' is declared " + where, hintShared);
      else if (t.name != "k" && t.name != "v") {
        auto [a, ok] = auxNames.emplace(t.name, t.range);
        if (!ok) {
          errors.error(t.range, "redefinition of '" + t.name + "'",
                       "aux tensor names are unique across a kernel's sources");
          errors.note(a->second, "'" + t.name + "' was first declared here");
        }
      }
    }
    for (const ParamDecl &p : s.params)
      errors.error(p.range, "'param " + p.name + "' " + where, hintShared);
    if (s.normalize.range.begin.line)
      errors.error(s.normalize.range, "'normalize' " + where,
                   "one normalization covers every source; set it outside the blocks");
    if (s.outputLse)
      errors.error(s.outputLseRange, "'output lse' " + where, hintShared);
    for (const RangeDecl &r : s.ranges)
      if (r.var != IndexVar::J)
        errors.error(r.range, std::string("'range ") + toString(r.var) + "' " + where,
                     "a source may give only `range j`, the length of its keys");
  }
  // Kernel parameters use '_' where the call names have '.': keep them apart.
  for (const Kernel &s : k.sources)
    for (const char *t : {"_k", "_v"})
      if (auto a = auxNames.find(s.sourceName + t); a != auxNames.end())
        errors.error(a->second, "aux tensor '" + a->first + "' clashes with source '" +
                                    s.sourceName + "'",
                     "its " + std::string(t + 1) + " is the kernel argument " + a->first +
                         "; rename the tensor");
  for (const auto &[name, range] : auxNames)
    if (names.count(name))
      errors.error(range, "'" + name + "' names both a source and a tensor", "rename one");
  int before = errors.diag.numErrors();
  if (before > errors.base)
    return;

  // Each source as a kernel: shared declarations first, then its own.
  for (Kernel &s : k.sources) {
    Kernel full;
    full.name = k.name;
    full.range = s.range;
    full.sourceName = s.sourceName;
    full.sourceRange = s.sourceRange;
    for (const TensorDecl &t : k.tensors)
      full.tensors.push_back(t.clone());
    for (TensorDecl &t : s.tensors) {
      if (t.name == "k" || t.name == "v")
        t.abiName = s.sourceName + "." + t.name;
      full.tensors.push_back(std::move(t));
    }
    full.params = k.params;
    for (const LetDecl &l : k.lets)
      full.lets.push_back(l.clone());
    for (LetDecl &l : s.lets)
      full.lets.push_back(std::move(l));
    for (const RangeDecl &r : k.ranges)
      full.ranges.push_back(r.clone());
    for (RangeDecl &r : s.ranges)
      full.ranges.push_back(std::move(r));
    full.score = std::move(s.score);
    full.mask = std::move(s.mask);
    full.normalize = k.normalize;
    full.outputLse = k.outputLse;
    full.outputLseRange = k.outputLseRange;
    s = std::move(full);
    if (errors.stopped)
      return;
    KernelChecker(s, errors).run();
  }
  if (errors.diag.numErrors() > before)
    return;
  // Dv is the same in every source.
  const Kernel &first = k.sources.front();
  for (const Kernel &s : k.sources) {
    const Dim &a = first.v->dims.back(), &b = s.v->dims.back();
    if (!sameDim(a, b)) {
      errors.error(b.range, "the value dimension of '" + s.v->callName() + "' (" + dimText(b) +
                                ") differs from that of '" + first.v->callName() + "' (" +
                                dimText(a) + ")",
                   "every source's v has the same last dimension Dv: use the same size name "
                   "or literal");
      return;
    }
  }

  // The kernel: q, every source's k and v, the aux tensors, in call order.
  std::vector<TensorDecl> tensors;
  tensors.push_back(first.q->clone());
  for (const Kernel &s : k.sources)
    for (const TensorDecl *t : {s.k, s.v})
      tensors.push_back(t->clone());
  for (const TensorDecl &t : first.tensors)
    if (t.role == TensorRole::Aux && !insideRange(t.range, first.sourceRange))
      tensors.push_back(t.clone());
  for (const Kernel &s : k.sources)
    for (const TensorDecl &t : s.tensors)
      if (t.role == TensorRole::Aux && insideRange(t.range, s.sourceRange))
        tensors.push_back(t.clone());
  k.tensors = std::move(tensors);
  k.q = &k.tensors[0];
  k.k = &k.tensors[1];
  k.v = &k.tensors[2];
  k.params = first.params;
  k.lets.clear();
  for (const LetDecl &l : first.lets)
    if (!insideRange(l.range, first.sourceRange))
      k.lets.push_back(l.clone());
  k.computeType = first.computeType;
  for (int v = 0; v < kNumIndexVars; ++v) {
    k.extents[v].clear();
    for (const Extent &e : first.extents[v])
      k.extents[v].push_back({e.value ? e.value->clone() : nullptr, e.range, e.what});
  }
}

bool checkModule(Module &module, DiagnosticEngine &diag) {
  ErrorBudget errors{diag, diag.numErrors()};
  for (const Kernel &k : module.kernels)
    if (const char *why = reservedKernelName(k.name))
      errors.error(k.range, "kernel name '" + k.name + "' is " + why,
                   "the name becomes the C symbols " + k.name + ", " + k.name +
                       "_argv, ... and the header " + k.name +
                       ".h; choose another, e.g. `" +
                       (k.name[0] == '_' ? "attn" : "") + k.name + "_attn`");
  if (module.kernels.empty())
    errors.error({{1, 1}, {1, 1}}, "the file has no attention block",
                 "a file holds one or more `attention NAME { ... }` blocks");
  std::map<std::string, const Kernel *> seen;
  for (const Kernel &k : module.kernels) {
    auto [it, inserted] = seen.emplace(k.name, &k);
    if (!inserted) {
      errors.error(k.range, "redefinition of kernel '" + k.name + "'",
                   "each attention block needs its own name");
      errors.note(it->second->range, "the first kernel '" + k.name + "' is here");
    }
  }
  for (Kernel &k : module.kernels) {
    if (errors.stopped)
      break;
    if (k.hasSources())
      checkSources(k, errors);
    else
      KernelChecker(k, errors).run();
  }
  return diag.numErrors() == errors.base;
}

std::optional<Module> parseAndCheck(const std::string &fileName,
                                    const std::string &source,
                                    DiagnosticEngine &diag) {
  std::optional<Module> module = parseModule(fileName, source, diag);
  if (!module || !checkModule(*module, diag))
    return std::nullopt;
  return module;
}

} // namespace attn::dsl
