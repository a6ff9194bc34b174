// Helpers of the `.attn` AST: names of enum values, lookups, deep copies and
// the stable textual dump used by `attnc emit --stage ast`.
#include "attn/dsl/AST.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace attn::dsl {

const char *toString(ElemType t) {
  switch (t) {
  case ElemType::F32: return "f32";
  case ElemType::F16: return "f16";
  case ElemType::BF16: return "bf16";
  case ElemType::F64: return "f64";
  case ElemType::I32: return "i32";
  case ElemType::I64: return "i64";
  case ElemType::Bool: return "bool";
  }
  return "?";
}

bool isFloat(ElemType t) {
  return t == ElemType::F32 || t == ElemType::F16 || t == ElemType::BF16 ||
         t == ElemType::F64;
}

const char *toString(ScalarType t) {
  switch (t) {
  case ScalarType::Unknown: return "unknown";
  case ScalarType::Bool: return "bool";
  case ScalarType::I32: return "i32";
  case ScalarType::I64: return "i64";
  case ScalarType::F32: return "f32";
  case ScalarType::F64: return "f64";
  }
  return "?";
}

const char *toString(UnaryOp op) { return op == UnaryOp::Neg ? "-" : "!"; }

const char *toString(BinaryOp op) {
  switch (op) {
  case BinaryOp::Or: return "||";
  case BinaryOp::And: return "&&";
  case BinaryOp::Eq: return "==";
  case BinaryOp::Ne: return "!=";
  case BinaryOp::Lt: return "<";
  case BinaryOp::Le: return "<=";
  case BinaryOp::Gt: return ">";
  case BinaryOp::Ge: return ">=";
  case BinaryOp::Add: return "+";
  case BinaryOp::Sub: return "-";
  case BinaryOp::Mul: return "*";
  case BinaryOp::Div: return "/";
  case BinaryOp::Mod: return "%";
  }
  return "?";
}

const char *toString(Builtin b) {
  switch (b) {
  case Builtin::None: return "none";
  case Builtin::Dot: return "dot";
  case Builtin::SqnormQ: return "sqnorm_q";
  case Builtin::SqnormK: return "sqnorm_k";
  case Builtin::Exp: return "exp";
  case Builtin::Exp2: return "exp2";
  case Builtin::Log: return "log";
  case Builtin::Log2: return "log2";
  case Builtin::Sqrt: return "sqrt";
  case Builtin::Rsqrt: return "rsqrt";
  case Builtin::Tanh: return "tanh";
  case Builtin::Sigmoid: return "sigmoid";
  case Builtin::Abs: return "abs";
  case Builtin::Floor: return "floor";
  case Builtin::Ceil: return "ceil";
  case Builtin::Sin: return "sin";
  case Builtin::Cos: return "cos";
  case Builtin::Int: return "int";
  case Builtin::Min: return "min";
  case Builtin::Max: return "max";
  case Builtin::Pow: return "pow";
  case Builtin::Clamp: return "clamp";
  case Builtin::Select: return "select";
  case Builtin::DotVec: return "dot";
  case Builtin::SqnormVec: return "sqnorm";
  }
  return "?";
}

const char *toString(IndexVar v) {
  switch (v) {
  case IndexVar::B: return "b";
  case IndexVar::H: return "h";
  case IndexVar::Hk: return "hk";
  case IndexVar::I: return "i";
  case IndexVar::J: return "j";
  }
  return "?";
}

const char *extentName(IndexVar v) {
  switch (v) {
  case IndexVar::B: return "B";
  case IndexVar::H: return "H";
  case IndexVar::Hk: return "Hk";
  case IndexVar::I: return "Lq";
  case IndexVar::J: return "Lk";
  }
  return "?";
}

bool Kernel::hasIndexMaps() const {
  for (const TensorDecl *t : {q, k, v})
    if (t && !t->at.empty())
      return true;
  return false;
}

const char *toString(NormKind k) {
  switch (k) {
  case NormKind::Softmax: return "softmax";
  case NormKind::Sigmoid: return "sigmoid";
  case NormKind::Relu: return "relu";
  case NormKind::None: return "none";
  case NormKind::Linear: return "linear";
  case NormKind::Hardmax: return "hardmax";
  case NormKind::TopK: return "topk";
  }
  return "?";
}

const char *toString(TieRule t) {
  switch (t) {
  case TieRule::Average: return "average";
  case TieRule::Latest: return "latest";
  case TieRule::First: return "first";
  }
  return "?";
}

std::unique_ptr<Expr> Expr::clone() const {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->range = range;
  e->type = type;
  e->intValue = intValue;
  e->floatValue = floatValue;
  e->boolValue = boolValue;
  e->name = name;
  e->unaryOp = unaryOp;
  e->binaryOp = binaryOp;
  e->builtin = builtin;
  e->ident = ident;
  e->args.reserve(args.size());
  for (const auto &a : args)
    e->args.push_back(a ? a->clone() : nullptr);
  return e;
}

TensorDecl TensorDecl::clone() const {
  TensorDecl t;
  t.name = name;
  t.role = role;
  t.type = type;
  t.dims = dims;
  t.range = range;
  t.typeRange = typeRange;
  for (const auto &e : at)
    t.at.push_back(e ? e->clone() : nullptr);
  t.atRange = atRange;
  t.abiName = abiName;
  return t;
}

LetDecl LetDecl::clone() const {
  LetDecl l;
  l.name = name;
  l.value = value ? value->clone() : nullptr;
  l.range = range;
  l.var = var;
  l.varRange = varRange;
  l.length = length;
  l.side = side;
  return l;
}

RangeDecl RangeDecl::clone() const {
  RangeDecl r;
  r.var = var;
  r.bound = bound ? bound->clone() : nullptr;
  r.range = range;
  return r;
}

const TensorDecl *Kernel::findInput(const std::string &n) const {
  for (const auto &t : tensors)
    if (t.callName() == n)
      return &t;
  return nullptr;
}

std::vector<const TensorDecl *> Kernel::inputs() const {
  std::vector<const TensorDecl *> out;
  if (q)
    out.push_back(q);
  if (hasSources()) {
    for (const Kernel &s : sources)
      for (const TensorDecl *t : {s.k, s.v})
        if (t)
          out.push_back(findInput(t->callName()));
  } else {
    for (const TensorDecl *t : {k, v})
      if (t)
        out.push_back(t);
  }
  for (const auto &t : tensors)
    if (t.role == TensorRole::Aux)
      out.push_back(&t);
  return out;
}

const TensorDecl *Kernel::findTensor(const std::string &n) const {
  for (const auto &t : tensors)
    if (t.name == n)
      return &t;
  return nullptr;
}

const ParamDecl *Kernel::findParam(const std::string &n) const {
  for (const auto &p : params)
    if (p.name == n)
      return &p;
  return nullptr;
}

const LetDecl *Kernel::findLet(const std::string &n) const {
  for (const auto &l : lets)
    if (l.name == n)
      return &l;
  return nullptr;
}

std::vector<std::string> Kernel::sizeNames() const {
  std::vector<std::string> names;
  for (const auto &t : tensors)
    for (const auto &d : t.dims) {
      if (d.isLiteral())
        continue;
      bool seen = false;
      for (const auto &n : names)
        seen = seen || n == d.name;
      if (!seen)
        names.push_back(d.name);
    }
  return names;
}

const Kernel *Module::findKernel(const std::string &n) const {
  for (const auto &k : kernels)
    if (k.name == n)
      return &k;
  return nullptr;
}

namespace {

/// Shortest decimal spelling that reads back as the same double, always
/// recognisable as a float ("8.0", "0.1", "1e+30", "inf").
std::string formatFloat(double v) {
  if (std::isnan(v))
    return "nan";
  if (std::isinf(v))
    return v < 0 ? "-inf" : "inf";
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos)
    s += ".0";
  return s;
}

std::string formatLiteral(const Literal &l) {
  switch (l.kind) {
  case Literal::Kind::Int: return std::to_string(l.i);
  case Literal::Kind::Float: return formatFloat(l.f);
  case Literal::Kind::Bool: return l.b ? "true" : "false";
  }
  return "?";
}

void printDims(std::string &out, const TensorDecl &t) {
  out += '[';
  for (size_t i = 0; i < t.dims.size(); ++i) {
    if (i)
      out += ", ";
    const Dim &d = t.dims[i];
    out += d.isLiteral() ? std::to_string(d.value) : d.name;
  }
  out += ']';
}

void printTyped(std::string &out, const char *head, const Expr &e) {
  out += head;
  if (e.type != ScalarType::Unknown) {
    out += ": ";
    out += toString(e.type);
  }
  out += " = ";
  out += printExpr(e);
  out += '\n';
}

void printCallArgs(std::string &out, const Expr &e) {
  out += '(';
  for (size_t i = 0; i < e.args.size(); ++i) {
    if (i)
      out += ", ";
    out += e.args[i] ? printExpr(*e.args[i]) : "<null>";
  }
  out += ')';
}

} // namespace

std::string printExpr(const Expr &e) {
  std::string out;
  auto arg = [&](size_t i) {
    return i < e.args.size() && e.args[i] ? printExpr(*e.args[i])
                                          : std::string("<null>");
  };
  switch (e.kind) {
  case ExprKind::IntLit: return std::to_string(e.intValue);
  case ExprKind::FloatLit: return formatFloat(e.floatValue);
  case ExprKind::BoolLit: return e.boolValue ? "true" : "false";
  case ExprKind::Inf: return "inf";
  case ExprKind::Ident: return e.name;
  case ExprKind::Unary:
    return std::string("(") + toString(e.unaryOp) + arg(0) + ")";
  case ExprKind::Binary:
    return "(" + arg(0) + " " + toString(e.binaryOp) + " " + arg(1) + ")";
  case ExprKind::Call:
    if (e.args.empty() && e.builtin == Builtin::Dot)
      return "dot(q, k)";
    if (e.args.empty() && e.builtin == Builtin::SqnormQ)
      return "sqnorm(q)";
    if (e.args.empty() && e.builtin == Builtin::SqnormK)
      return "sqnorm(k)";
    out = e.name;
    printCallArgs(out, e);
    return out;
  case ExprKind::Sum:
    return "sum(" + e.name + " < " + arg(0) + ": " + arg(1) + ")";
  case ExprKind::Element:
  case ExprKind::Index:
    out = e.name + "[";
    for (size_t i = 0; i < e.args.size(); ++i) {
      if (i)
        out += ", ";
      out += arg(i);
    }
    return out + "]";
  case ExprKind::Cast:
    return std::string("cast<") + toString(e.type) + ">(" + arg(0) + ")";
  }
  return "?";
}

bool insideRange(const SourceRange &r, const SourceRange &block) {
  auto le = [](const SourceLoc &a, const SourceLoc &b) {
    return a.line < b.line || (a.line == b.line && a.col <= b.col);
  };
  return le(block.begin, r.begin) && le(r.begin, block.end);
}

namespace {

/// Tensors, ranges, lets, score and mask of `k`; for a source's kernel
/// (`block` set) only those written inside the block.
void printBody(std::string &out, const Kernel &k, const std::string &pad,
               const SourceRange *block) {
  auto own = [&](const SourceRange &r) { return !block || insideRange(r, *block); };
  for (const TensorDecl &t : k.tensors) {
    if (!own(t.range))
      continue;
    out += pad + t.callName() + ": " + toString(t.type);
    printDims(out, t);
    if (!t.at.empty()) {
      out += " at [";
      for (size_t n = 0; n < t.at.size(); ++n)
        out += (n ? ", " : "") + (t.at[n] ? printExpr(*t.at[n]) : std::string("?"));
      out += "]";
    }
    out += '\n';
  }
  // Index-map kernels: where each index variable's range comes from.
  bool ranges = k.hasIndexMaps() || (block && k.q);
  for (int v = 0; v < kNumIndexVars && ranges; ++v) {
    if (block && v != int(IndexVar::J))
      continue;
    for (const Extent &e : k.extents[v])
      if (e.value)
        out += pad + "range " + toString(IndexVar(v)) + " < " + printExpr(*e.value) + "  # " +
               e.what + "\n";
  }
  if (!block)
    for (const ParamDecl &p : k.params) {
      out += pad + "param " + p.name + ": " + toString(p.type);
      if (p.defaultValue)
        out += " = " + formatLiteral(*p.defaultValue);
      out += '\n';
    }
  for (const LetDecl &l : k.lets) {
    if (!l.value || !own(l.range))
      continue;
    std::string head = pad + "let " + l.name;
    if (l.isVector()) {
      head += "[" + l.var;
      if (l.length)
        head += " < " + (l.length->isLiteral() ? std::to_string(l.length->value) : l.length->name);
      head += "]";
      head += l.side == VectorSide::Query ? " (per query row)"
              : l.side == VectorSide::Key ? " (per key row)"
                                          : " (per call)";
    }
    printTyped(out, head.c_str(), *l.value);
  }
  if (k.score)
    printTyped(out, (pad + "score").c_str(), *k.score);
  if (k.mask)
    printTyped(out, (pad + "mask").c_str(), *k.mask);
}

} // namespace

std::string printModule(const Module &module) {
  std::string out = "module \"" + module.fileName + "\"\n";
  for (const Kernel &k : module.kernels) {
    out += "attention " + k.name + " {\n";
    std::vector<std::string> sizes = k.sizeNames();
    out += "  sizes";
    for (size_t i = 0; i < sizes.size(); ++i)
      out += (i ? ", " : " ") + sizes[i];
    out += '\n';
    if (k.q) {
      out += "  compute ";
      out += toString(k.computeType);
      out += '\n';
    }
    if (!k.hasSources()) {
      printBody(out, k, "  ", nullptr);
    } else {
      // The shared declarations, then each source's own (LANGUAGE.md §8.5).
      for (const TensorDecl &t : k.tensors)
        if (t.role == TensorRole::Q || (t.role == TensorRole::Aux && ![&] {
              for (const Kernel &s : k.sources)
                if (insideRange(t.range, s.sourceRange))
                  return true;
              return false;
            }())) {
          out += "  " + t.name + ": " + toString(t.type);
          printDims(out, t);
          out += '\n';
        }
      for (const ParamDecl &p : k.params) {
        out += "  param " + p.name + ": " + toString(p.type);
        if (p.defaultValue)
          out += " = " + formatLiteral(*p.defaultValue);
        out += '\n';
      }
      // Shared lets and ranges, as Sema typed them in the first source.
      const Kernel &first = k.sources.front();
      for (int v = 0; v < kNumIndexVars; ++v)
        for (const Extent &e : first.extents[v])
          if (e.value && v != int(IndexVar::J))
            out += std::string("  range ") + toString(IndexVar(v)) + " < " +
                   printExpr(*e.value) + "  # " + e.what + "\n";
      for (const LetDecl &l : first.lets)
        if (l.value && !insideRange(l.range, first.sourceRange) && !l.isVector())
          printTyped(out, ("  let " + l.name).c_str(), *l.value);
      for (const Kernel &s : k.sources) {
        out += "  source " + s.sourceName + " {\n";
        printBody(out, s, "    ", &s.sourceRange);
        out += "  }\n";
      }
    }
    out += "  normalize = ";
    out += toString(k.normalize.kind);
    if (k.normalize.kind == NormKind::Hardmax)
      out += std::string("(ties = ") + toString(k.normalize.ties) + ")";
    if (k.normalize.kind == NormKind::TopK)
      out += "(" + std::to_string(k.normalize.k) + ")";
    out += '\n';
    if (k.outputLse)
      out += "  output lse\n";
    out += "}\n";
  }
  return out;
}

} // namespace attn::dsl
