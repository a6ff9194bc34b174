// Argument checking and size / param binding for one kernel (see Bind.h).
#include "attn/runtime/Bind.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace attn::runtime {

using dsl::ElemType;
using dsl::Literal;
using dsl::ParamDecl;
using dsl::TensorDecl;

namespace {

std::string joinLines(const std::vector<std::string> &errors) {
  std::string s;
  for (size_t e = 0; e < errors.size(); ++e)
    s += (e ? "\n" : "") + errors[e];
  return s;
}

std::string describeParam(const ParamDecl &p) {
  return p.name + ": " + dsl::toString(p.type);
}

std::string lineText(const dsl::SourceRange &r) {
  return r.begin.line > 0 ? " at line " + std::to_string(r.begin.line) : "";
}

/// Rounds a float param to the precision of its declared type.
double roundToType(double v, ElemType t) {
  switch (t) {
  case ElemType::F32:
    return static_cast<float>(v);
  case ElemType::F16:
    return f16ToFloat(floatToF16(static_cast<float>(v)));
  case ElemType::BF16:
    return bf16ToFloat(floatToBf16(static_cast<float>(v)));
  default:
    return v;
  }
}

/// Converts a typed literal to the declared type of `p`; an empty result
/// means success.
std::string coerceLiteral(const ParamDecl &p, const Literal &in,
                          Literal &out) {
  out = Literal();
  const char *ty = dsl::toString(p.type);
  switch (p.type) {
  case ElemType::I32:
  case ElemType::I64:
    if (in.kind != Literal::Kind::Int)
      return std::string("param '") + p.name + "' is declared " + ty +
             " but was given a " +
             (in.kind == Literal::Kind::Bool ? "bool" : "float") + " value";
    if (p.type == ElemType::I32 &&
        (in.i < std::numeric_limits<int32_t>::min() ||
         in.i > std::numeric_limits<int32_t>::max()))
      return "param '" + p.name + "': " + std::to_string(in.i) +
             " is out of range for i32";
    out.kind = Literal::Kind::Int;
    out.i = in.i;
    return "";
  case ElemType::Bool:
    if (in.kind == Literal::Kind::Bool) {
      out.kind = Literal::Kind::Bool;
      out.b = in.b;
      return "";
    }
    if (in.kind == Literal::Kind::Int && (in.i == 0 || in.i == 1)) {
      out.kind = Literal::Kind::Bool;
      out.b = in.i == 1;
      return "";
    }
    return "param '" + p.name + "' is declared bool but was given a " +
           (in.kind == Literal::Kind::Int ? "number other than 0 or 1"
                                          : "float value");
  default: {
    double v;
    if (in.kind == Literal::Kind::Float)
      v = in.f;
    else if (in.kind == Literal::Kind::Int)
      v = static_cast<double>(in.i);
    else
      return std::string("param '") + p.name + "' is declared " + ty +
             " but was given a bool value";
    double r = roundToType(v, p.type);
    if (std::isinf(r) && !std::isinf(v)) {
      std::ostringstream os;
      os << v;
      return "param '" + p.name + "': " + os.str() + " is out of range for " +
             ty;
    }
    out.kind = Literal::Kind::Float;
    out.f = r;
    return "";
  }
  }
}

/// Checks the tensors (HostTensor or TensorRef: their type and shape) and
/// fills the size part of `out`.
template <typename Tensor>
void bindTensors(const dsl::Kernel &k,
                 const std::map<std::string, Tensor> &inputs,
                 Bindings &out, std::vector<std::string> &errors) {
  struct Origin {
    std::string tensor;
    size_t dim;
  };
  std::map<std::string, Origin> origin;

  for (const auto &[name, tensor] : inputs) {
    if (k.findInput(name))
      continue;
    std::string declared;
    for (const TensorDecl &t : k.tensors)
      declared += (declared.empty() ? "" : ", ") + t.callName();
    errors.push_back("unknown input tensor '" + name + "': kernel '" + k.name +
                     "' declares only " + declared);
  }

  bool shapesOk = true;
  for (const TensorDecl &decl : k.tensors) {
    const std::string &name = decl.callName();
    auto it = inputs.find(name);
    if (it == inputs.end()) {
      errors.push_back("missing input tensor '" + name + "' (declared " +
                       describeDecl(decl) + lineText(decl.range) + ")");
      shapesOk = false;
      continue;
    }
    const Tensor &t = it->second;
    if (t.type != decl.type)
      errors.push_back("tensor '" + name + "' has dtype " +
                       dsl::toString(t.type) + " but is declared " +
                       dsl::toString(decl.type) + " (" + describeDecl(decl) +
                       ")");
    if (t.shape.size() != decl.dims.size()) {
      errors.push_back("tensor '" + name + "' has rank " +
                       std::to_string(t.shape.size()) + " (" + t.describe() +
                       ") but is declared with rank " +
                       std::to_string(decl.dims.size()) + " (" +
                       describeDecl(decl) + ")");
      shapesOk = false;
      continue;
    }
    bool isQkv = decl.role != dsl::TensorRole::Aux;
    for (size_t d = 0; d < decl.dims.size(); ++d) {
      const dsl::Dim &dim = decl.dims[d];
      int64_t size = t.shape[d];
      std::string where = " of tensor '" + name + "' (dim " +
                          std::to_string(d) + ")";
      if (size < 0 || (isQkv && size == 0)) {
        errors.push_back(
            "dimension " +
            (dim.isLiteral() ? std::to_string(d) : "'" + dim.name + "'") +
            where + " is " + std::to_string(size) +
            "; every dimension of q, k and v must be positive");
        shapesOk = false;
        continue;
      }
      if (dim.isLiteral()) {
        if (size != dim.value) {
          errors.push_back("dimension " + std::to_string(d) + " of tensor '" +
                           name + "' is " + std::to_string(size) +
                           " but is declared " + std::to_string(dim.value) +
                           " (" + describeDecl(decl) + ")");
          shapesOk = false;
        }
        continue;
      }
      auto bound = out.sizes.find(dim.name);
      if (bound == out.sizes.end()) {
        out.sizes[dim.name] = size;
        origin[dim.name] = {name, d};
      } else if (bound->second != size) {
        const Origin &o = origin[dim.name];
        errors.push_back("dimension '" + dim.name + "'" + where + " is " +
                         std::to_string(size) + " but '" + dim.name +
                         "' was bound to " + std::to_string(bound->second) +
                         " by tensor '" + o.tensor + "' (dim " +
                         std::to_string(o.dim) + ")");
        shapesOk = false;
      }
    }
  }
  if (!shapesOk || !k.q || !k.k || !k.v)
    return;
  if (k.hasIndexMaps() || k.hasSources()) {
    // The extents come from the ranges (bindExtents, once params are
    // bound); here only what the maps do not change: D and Dv.
    const Tensor &q = inputs.at(k.q->name);
    out.D = q.shape.back();
    out.Dv = inputs.at(k.v->callName()).shape.back();
    std::vector<const dsl::Kernel *> sources{&k};
    if (k.hasSources()) {
      sources.clear();
      for (const dsl::Kernel &s : k.sources)
        sources.push_back(&s);
    }
    for (const dsl::Kernel *s : sources) {
      const Tensor &kt = inputs.at(s->k->callName());
      const Tensor &v = inputs.at(s->v->callName());
      if (kt.shape.back() != out.D)
        errors.push_back("the last dimension of tensor '" + s->k->callName() + "' is " +
                         std::to_string(kt.shape.back()) +
                         " but must equal the last dimension of tensor 'q' (" +
                         std::to_string(out.D) + "): the head dimension D");
      if (v.shape.back() != out.Dv)
        errors.push_back("the last dimension of tensor '" + s->v->callName() + "' is " +
                         std::to_string(v.shape.back()) + " but that of '" + k.v->callName() +
                         "' is " + std::to_string(out.Dv) + ": every source has the same Dv");
    }
    out.B = -1; // bindExtents fills B, H, Hk, Lq, Lk
    return;
  }

  const Tensor &q = inputs.at(k.q->name);
  const Tensor &kt = inputs.at(k.k->name);
  const Tensor &v = inputs.at(k.v->name);
  if (q.rank() != 4 || kt.rank() != 4 || v.rank() != 4) {
    errors.push_back("q, k and v must have rank 4");
    return;
  }
  // Relations the declarations may not spell out with shared names.
  auto same = [&](const Tensor &a, const char *an, int ad,
                  const Tensor &b, const char *bn, int bd,
                  const char *what) {
    if (a.shape[ad] == b.shape[bd])
      return;
    errors.push_back("dimension " + std::to_string(ad) + " of tensor '" + an +
                     "' is " + std::to_string(a.shape[ad]) +
                     " but must equal dimension " + std::to_string(bd) +
                     " of tensor '" + bn + "' (" +
                     std::to_string(b.shape[bd]) + "): " + what);
  };
  same(kt, "k", 0, q, "q", 0, "the batch size");
  same(v, "v", 0, q, "q", 0, "the batch size");
  same(v, "v", 1, kt, "k", 1, "the number of key/value heads");
  same(v, "v", 2, kt, "k", 2, "the number of keys");
  same(kt, "k", 3, q, "q", 3, "the head dimension D");

  out.B = q.shape[0];
  out.H = q.shape[1];
  out.Lq = q.shape[2];
  out.D = q.shape[3];
  out.Hk = kt.shape[1];
  out.Lk = kt.shape[2];
  out.Dv = v.shape[3];
  if (out.H % out.Hk != 0)
    errors.push_back("the number of query heads H = " + std::to_string(out.H) +
                     " (dim 1 of tensor 'q') must be a multiple of the number "
                     "of key/value heads Hk = " +
                     std::to_string(out.Hk) + " (dim 1 of tensor 'k')");
}

} // namespace

/// Evaluates an integer expression of sizes, params and literals (a range
/// or a dimension, after Sema). Empty string on success.
std::string evalExtent(const dsl::Expr &e, const Bindings &b, int64_t &out) {
  using dsl::ExprKind;
  int64_t x = 0, y = 0;
  auto arg = [&](size_t n, int64_t &v) {
    return n < e.args.size() && e.args[n] ? evalExtent(*e.args[n], b, v) : std::string("malformed");
  };
  switch (e.kind) {
  case ExprKind::IntLit: out = e.intValue; return "";
  case ExprKind::Ident: {
    if (e.ident == dsl::IdentKind::Size) {
      auto it = b.sizes.find(e.name);
      if (it == b.sizes.end())
        return "size '" + e.name + "' is not bound";
      out = it->second;
      return "";
    }
    if (e.ident == dsl::IdentKind::Param) {
      auto it = b.params.find(e.name);
      if (it == b.params.end() || it->second.kind != Literal::Kind::Int)
        return "param '" + e.name + "' has no integer value";
      out = it->second.i;
      return "";
    }
    return "'" + e.name + "' cannot be evaluated here";
  }
  case ExprKind::Cast: return arg(0, out);
  case ExprKind::Unary:
    if (std::string err = arg(0, x); !err.empty())
      return err;
    if (__builtin_sub_overflow(int64_t(0), x, &out))
      return "overflow";
    return "";
  case ExprKind::Binary: {
    if (std::string err = arg(0, x); !err.empty())
      return err;
    if (std::string err = arg(1, y); !err.empty())
      return err;
    bool overflow = false;
    switch (e.binaryOp) {
    case dsl::BinaryOp::Add: overflow = __builtin_add_overflow(x, y, &out); break;
    case dsl::BinaryOp::Sub: overflow = __builtin_sub_overflow(x, y, &out); break;
    case dsl::BinaryOp::Mul: overflow = __builtin_mul_overflow(x, y, &out); break;
    case dsl::BinaryOp::Div:
    case dsl::BinaryOp::Mod: {
      if (y == 0)
        return "division by zero";
      if (x == INT64_MIN && y == -1)
        return "overflow";
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0)))
        --q;
      out = e.binaryOp == dsl::BinaryOp::Div ? q : x - q * y;
      break;
    }
    default: return "'" + std::string(dsl::toString(e.binaryOp)) + "' is not an integer operation";
    }
    return overflow ? "overflow" : "";
  }
  case ExprKind::Call: {
    if (e.builtin == dsl::Builtin::Min || e.builtin == dsl::Builtin::Max) {
      if (std::string err = arg(0, x); !err.empty())
        return err;
      if (std::string err = arg(1, y); !err.empty())
        return err;
      out = e.builtin == dsl::Builtin::Min ? std::min(x, y) : std::max(x, y);
      return "";
    }
    if (e.builtin == dsl::Builtin::Abs) {
      if (std::string err = arg(0, x); !err.empty())
        return err;
      if (x == INT64_MIN)
        return "overflow";
      out = x < 0 ? -x : x;
      return "";
    }
    if (e.builtin == dsl::Builtin::Clamp) {
      int64_t z = 0;
      if (std::string err = arg(0, x); !err.empty())
        return err;
      if (std::string err = arg(1, y); !err.empty())
        return err;
      if (std::string err = arg(2, z); !err.empty())
        return err;
      out = std::min(std::max(x, y), z);
      return "";
    }
    break;
  }
  default: break;
  }
  return "`" + dsl::printExpr(e) + "` is not an integer expression of sizes and params";
}

namespace {

/// Index-map kernels: B, H, Hk, Lq, Lk from the ranges (LANGUAGE.md §8.1),
/// every second definition of a range checked against the first.
void bindExtents(const dsl::Kernel &k, Bindings &out, std::vector<std::string> &errors) {
  if (!(k.hasIndexMaps() || k.hasSources() || !k.sourceName.empty()) || out.B != -1 ||
      !errors.empty())
    return;
  if (k.hasSources()) {
    // Each source binds its ranges; B, H, Hk and Lq agree across them, and
    // the keys are the sources' together (LANGUAGE.md §8.5).
    Bindings first;
    out.sourceLk.clear();
    int64_t total = 0;
    for (const dsl::Kernel &s : k.sources) {
      Bindings b = out;
      b.B = -1;
      bindExtents(s, b, errors);
      if (!errors.empty())
        return;
      if (out.sourceLk.empty()) {
        first = b;
      } else {
        const char *names[4] = {"B", "H", "Hk", "Lq"};
        int64_t a[4] = {first.B, first.H, first.Hk, first.Lq}, c[4] = {b.B, b.H, b.Hk, b.Lq};
        for (int n = 0; n < 4; ++n)
          if (a[n] != c[n])
            errors.push_back(std::string("the range ") + names[n] + " is " + std::to_string(a[n]) +
                             " in source '" + k.sources.front().sourceName + "' but " +
                             std::to_string(c[n]) + " in source '" + s.sourceName +
                             "'; the sources share b, h, hk and i");
      }
      out.sourceLk.push_back(b.Lk);
      total += b.Lk;
    }
    out.B = first.B, out.H = first.H, out.Hk = first.Hk, out.Lq = first.Lq;
    out.Lk = total;
    if (total > INT32_MAX)
      errors.push_back("the sources have " + std::to_string(total) +
                       " keys together; at most 2147483647");
    return;
  }
  int64_t *fields[dsl::kNumIndexVars] = {&out.B, &out.H, &out.Hk, &out.Lq, &out.Lk};
  for (int v = 0; v < dsl::kNumIndexVars; ++v) {
    const auto &defs = k.extents[v];
    const char *var = dsl::toString(dsl::IndexVar(v));
    const char *name = dsl::extentName(dsl::IndexVar(v));
    for (size_t n = 0; n < defs.size(); ++n) {
      int64_t value = 0;
      std::string err = defs[n].value ? evalExtent(*defs[n].value, out, value) : "missing";
      if (!err.empty()) {
        errors.push_back("the range of " + std::string(var) + " (" + defs[n].what +
                         lineText(defs[n].range) + ") cannot be computed: " + err);
        return;
      }
      if (n == 0) {
        if (value < 1 || value > INT32_MAX) {
          errors.push_back("the range of " + std::string(var) + " (" + name + ", " +
                           defs[n].what + lineText(defs[n].range) + ") is " +
                           std::to_string(value) + "; it must be in [1, 2147483647]");
          return;
        }
        *fields[v] = value;
      } else if (value != *fields[v]) {
        errors.push_back("the range of " + std::string(var) + " is " + std::to_string(*fields[v]) +
                         " by " + defs[0].what + " but " + std::to_string(value) + " by " +
                         defs[n].what + "; both must be the same");
      }
    }
  }
  if (out.H % out.Hk != 0)
    errors.push_back("the number of query heads H = " + std::to_string(out.H) +
                     " must be a multiple of the number of key/value heads Hk = " +
                     std::to_string(out.Hk));
}

template <typename ParamMap, typename Convert>
void bindParams(const dsl::Kernel &k, const ParamMap &given, Convert convert,
                Bindings &out, std::vector<std::string> &errors) {
  for (const auto &entry : given) {
    if (k.findParam(entry.first))
      continue;
    std::string declared;
    for (const ParamDecl &p : k.params)
      declared += (declared.empty() ? "" : ", ") + p.name;
    errors.push_back("unknown param '" + entry.first + "': kernel '" + k.name +
                     "' " +
                     (declared.empty() ? std::string("has no params")
                                       : "declares only " + declared));
  }
  for (const ParamDecl &p : k.params) {
    auto it = given.find(p.name);
    Literal value;
    std::string err;
    if (it != given.end()) {
      err = convert(p, it->second, value);
    } else if (p.defaultValue) {
      err = coerceLiteral(p, *p.defaultValue, value);
    } else {
      errors.push_back("missing value for param '" + p.name + "' (declared " +
                       describeParam(p) + lineText(p.range) +
                       ", no default): pass --param " + p.name + "=VALUE");
      continue;
    }
    if (!err.empty())
      errors.push_back(err);
    else
      out.params[p.name] = value;
  }
}

Status finish(std::vector<std::string> &errors) {
  return errors.empty() ? Status::ok() : Status::error(joinLines(errors));
}

} // namespace

std::string describeDecl(const TensorDecl &t) {
  std::string s = t.callName() + ": " + dsl::toString(t.type) + "[";
  for (size_t d = 0; d < t.dims.size(); ++d) {
    s += d ? ", " : "";
    s += t.dims[d].isLiteral() ? std::to_string(t.dims[d].value)
                               : t.dims[d].name;
  }
  return s + "]";
}

Status parseParamValue(const ParamDecl &p, const std::string &text,
                       Literal &out) {
  const char *ty = dsl::toString(p.type);
  auto bad = [&](const std::string &why) {
    return Status::error("param '" + p.name + "': '" + text + "' is not " +
                         why);
  };
  Literal lit;
  switch (p.type) {
  case ElemType::Bool:
    if (text == "true" || text == "1") {
      lit.kind = Literal::Kind::Bool;
      lit.b = true;
    } else if (text == "false" || text == "0") {
      lit.kind = Literal::Kind::Bool;
      lit.b = false;
    } else {
      return bad("a bool (use true, false, 1 or 0)");
    }
    break;
  case ElemType::I32:
  case ElemType::I64: {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])))
      return bad(std::string("a valid ") + ty);
    errno = 0;
    char *end = nullptr;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (*end != '\0')
      return bad(std::string("a valid ") + ty + " (a decimal integer)");
    if (errno == ERANGE)
      return Status::error("param '" + p.name + "': " + text +
                           " is out of range for " + ty);
    lit.kind = Literal::Kind::Int;
    lit.i = v;
    break;
  }
  default: {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])))
      return bad(std::string("a valid ") + ty);
    errno = 0;
    char *end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (*end != '\0' || std::isnan(v))
      return bad(std::string("a valid ") + ty + " (a number)");
    if ((errno == ERANGE && std::isinf(v)) ||
        (std::isinf(roundToType(v, p.type)) && !std::isinf(v)))
      return Status::error("param '" + p.name + "': " + text +
                           " is out of range for " + ty);
    lit.kind = Literal::Kind::Float;
    lit.f = v;
    break;
  }
  }
  std::string err = coerceLiteral(p, lit, out);
  return err.empty() ? Status::ok() : Status::error(err);
}

std::vector<std::string> missingParams(const dsl::Kernel &k,
                                       const std::vector<std::string> &given) {
  std::vector<std::string> missing;
  for (const ParamDecl &p : k.params) {
    if (p.defaultValue)
      continue;
    bool found = false;
    for (const std::string &g : given)
      found |= g == p.name;
    if (!found)
      missing.push_back(p.name);
  }
  return missing;
}

namespace {

template <typename Tensor>
Status bindWithText(const dsl::Kernel &k, const std::map<std::string, Tensor> &inputs,
                    const std::map<std::string, std::string> &paramText, Bindings &out) {
  out = Bindings();
  std::vector<std::string> errors;
  bindTensors(k, inputs, out, errors);
  bindParams(
      k, paramText,
      [](const ParamDecl &p, const std::string &text, Literal &value) {
        Status s = parseParamValue(p, text, value);
        return s ? std::string() : s.message();
      },
      out, errors);
  bindExtents(k, out, errors);
  return finish(errors);
}

template <typename Tensor>
Status bindWithLiterals(const dsl::Kernel &k, const std::map<std::string, Tensor> &inputs,
                        const std::map<std::string, Literal> &params, Bindings &out) {
  out = Bindings();
  std::vector<std::string> errors;
  bindTensors(k, inputs, out, errors);
  bindParams(k, params, coerceLiteral, out, errors);
  bindExtents(k, out, errors);
  return finish(errors);
}

} // namespace

Status bindArguments(const dsl::Kernel &k, const std::map<std::string, HostTensor> &inputs,
                     const std::map<std::string, std::string> &paramText, Bindings &out) {
  return bindWithText(k, inputs, paramText, out);
}

Status bindArguments(const dsl::Kernel &k, const std::map<std::string, HostTensor> &inputs,
                     const std::map<std::string, Literal> &params, Bindings &out) {
  return bindWithLiterals(k, inputs, params, out);
}

Status bindArguments(const dsl::Kernel &k, const std::map<std::string, TensorRef> &inputs,
                     const std::map<std::string, std::string> &paramText, Bindings &out) {
  return bindWithText(k, inputs, paramText, out);
}

Status bindArguments(const dsl::Kernel &k, const std::map<std::string, TensorRef> &inputs,
                     const std::map<std::string, Literal> &params, Bindings &out) {
  return bindWithLiterals(k, inputs, params, out);
}

} // namespace attn::runtime
