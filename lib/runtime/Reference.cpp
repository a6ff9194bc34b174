// The float64 reference implementation of attention (see Reference.h): the
// kernel's expressions are translated once into a flat node array with names
// resolved, then interpreted for every (b, h, i, j).
#include "attn/runtime/Reference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace attn::runtime {

using dsl::Builtin;
using dsl::BinaryOp;
using dsl::Expr;
using dsl::ExprKind;
using dsl::IdentKind;
using dsl::NormKind;
using dsl::ScalarType;
using dsl::TieRule;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool isFloatType(ScalarType t) {
  return t == ScalarType::F32 || t == ScalarType::F64;
}

/// A value; the node's static type says which member is meaningful (bools
/// and integers live in `i`).
struct Value {
  double f = 0;
  int64_t i = 0;
};

double toDouble(Value v, ScalarType t) {
  return isFloatType(t) ? v.f : static_cast<double>(v.i);
}

int64_t toInt(Value v, ScalarType t) {
  if (!isFloatType(t))
    return v.i;
  if (std::isnan(v.f))
    return 0;
  if (v.f >= 9223372036854775807.0)
    return std::numeric_limits<int64_t>::max();
  if (v.f <= -9223372036854775808.0)
    return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(v.f);
}

Value makeFloat(double f) {
  Value v;
  v.f = f;
  return v;
}

Value makeInt(int64_t i) {
  Value v;
  v.i = i;
  return v;
}

int64_t floorDiv(int64_t a, int64_t b) {
  if (b == -1)
    return static_cast<int64_t>(0 - static_cast<uint64_t>(a));
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    --q;
  return q;
}

int64_t floorMod(int64_t a, int64_t b) {
  if (b == -1)
    return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0)))
    r += b;
  return r;
}

double floorModF(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0)))
    r += b;
  return r;
}

enum IndexVar { VarB = 1, VarH = 2, VarI = 4, VarJ = 8, VarHk = 16 };

/// One translated expression node.
struct Node {
  const Expr *src = nullptr;
  ExprKind kind = ExprKind::IntLit;
  ScalarType type = ScalarType::Unknown;
  Value constant;   // literals, sizes and params
  int var = 0;      // IndexVar of an index-variable identifier
  int let = -1;     // let number
  int tensor = -1;  // aux tensor number of an Index
  int vec = -1;     // Element / DotVec / SqnormVec: the vector let (or kHeadQ, kHeadK)
  int channel = -1; // a channel variable's slot (Ident), the slot a Sum binds
  std::vector<int> args;
  unsigned deps = 0; // IndexVar bits this node depends on
};

constexpr int kHeadQ = -2, kHeadK = -3; // Node::vec of q[c] and k[c]

struct AuxTensor {
  std::string name;
  const HostTensor *tensor = nullptr;
};

/// Shared state of one evaluation: the translated kernel plus the current
/// (b, h, i, j) and per-pair memos.
class Interpreter {
public:
  Interpreter(const dsl::Kernel &k,
              const std::map<std::string, HostTensor> &inputs,
              const Bindings &bind)
      : k_(k), inputs_(inputs), bind_(bind) {}

  /// Translates the kernel; must succeed before anything else is called.
  Status prepare(bool needHeadVectors) {
    if (!k_.q || !k_.k || !k_.v || !k_.score || !k_.mask)
      return Status::error("kernel '" + k_.name +
                           "' has not been checked (run Sema first)");
    for (const dsl::LetDecl &l : k_.lets) {
      letIndex_[l.name] = static_cast<int>(letRoots_.size());
      letRoots_.push_back(-1);
    }
    for (size_t n = 0; n < k_.lets.size(); ++n) {
      const dsl::LetDecl &l = k_.lets[n];
      vecSlot_.push_back(-1);
      if (l.isVector()) {
        vecSlot_.back() = newSlot();
        channelScope_.push_back({l.var, vecSlot_.back()});
      }
      int root = translate(*l.value);
      if (l.isVector())
        channelScope_.pop_back();
      if (!error_.empty())
        return Status::error(error_);
      letRoots_[n] = root;
    }
    maskRoot_ = translate(*k_.mask);
    scoreRoot_ = translate(*k_.score);
    const dsl::TensorDecl *heads[3] = {k_.q, k_.k, k_.v};
    for (int t = 0; t < 3; ++t)
      for (const auto &e : heads[t]->at)
        atRoots_[t].push_back(translate(*e));
    maskReadsHeads_ = usesHeadVectors_ && readsHeads(maskRoot_);
    if (!error_.empty())
      return Status::error(error_);
    letDeps_.assign(letRoots_.size(), 0);
    letDepsDone_.assign(letRoots_.size(), false);
    depsDone_.assign(nodes_.size(), false);
    for (size_t n = 0; n < nodes_.size(); ++n)
      computeDeps(static_cast<int>(n));
    letValue_.assign(letRoots_.size(), Value());
    letEpoch_.assign(letRoots_.size(), 0);

    if (bind_.H <= 0 || bind_.Hk <= 0 || bind_.H % bind_.Hk != 0)
      return Status::error("invalid bindings: H must be a positive multiple "
                           "of Hk (run bindArguments first)");
    setShapes();
    if (needHeadVectors || usesHeadVectors_) {
      Status s = loadHeadVectors(needHeadVectors);
      if (!s)
        return s;
    }
    return Status::ok();
  }

  unsigned maskDeps() const { return nodes_[maskRoot_].deps; }
  /// Whether the mask reads dot or sqnorm: then every pair counts as taking
  /// part for the index checks (docs/language.md).
  bool maskReadsHeads() const { return maskReadsHeads_; }

  /// Finds the rows of q, k and v for the current pair (LANGUAGE.md §8.1),
  /// checking `at` indices: called for every pair that takes part.
  bool touchRows() {
    if (!(qRow() && kRow() && vRowOffset() >= 0))
      return false;
    // Channel vectors are computed whole for every row and key that takes
    // part, as the kernels compute them (their indices count there).
    for (size_t l = 0; l < k_.lets.size(); ++l)
      if (k_.lets[l].isVector() && !vectorOf(static_cast<int>(l)))
        return false;
    return true;
  }
  /// The offset of the current pair's value row in vData(), or -1 on error.
  int64_t vRowOffset() { return rowOffset(2); }
  const double *vData() const { return v_.data(); }

  void setPair(int64_t b, int64_t h, int64_t i, int64_t j) {
    b_ = b;
    h_ = h;
    hk_ = h / (bind_.H / bind_.Hk);
    i_ = i;
    j_ = j;
    ++epoch_;
  }

  bool evalMask() { return eval(maskRoot_).i != 0; }
  double evalScore() {
    return toDouble(eval(scoreRoot_), nodes_[scoreRoot_].type);
  }
  bool failed() const { return !error_.empty(); }
  const std::string &error() const { return error_; }


private:
  Status loadHeadVectors(bool needV) {
    auto load = [&](const dsl::TensorDecl *decl, std::vector<double> &dst,
                    std::vector<int64_t> shape) -> Status {
      auto it = inputs_.find(decl->callName());
      if (it == inputs_.end())
        return Status::error("missing input tensor '" + decl->callName() + "'");
      const HostTensor &t = it->second;
      if (t.shape != shape)
        return Status::error("tensor '" + decl->callName() + "' has shape " +
                             t.describe() +
                             " which does not match the bindings");
      int64_t n = t.numel();
      if (t.bytes.size() != static_cast<size_t>(n) * elemSize(t.type))
        return Status::error("tensor '" + decl->callName() +
                             "' holds the wrong number of bytes");
      dst.resize(static_cast<size_t>(n));
      for (int64_t e = 0; e < n; ++e)
        dst[e] = t.getDouble(e);
      return Status::ok();
    };
    const dsl::TensorDecl *heads[3] = {k_.q, k_.k, k_.v};
    std::vector<double> *dst[3] = {&q_, &kk_, &v_};
    for (int t = 0; t < (needV ? 3 : 2); ++t)
      if (Status s = load(heads[t], *dst[t], shapes_[t]); !s)
        return s;
    return Status::ok();
  }

  /// q, k and v each in its own shape: with `at`, rows are found by the
  /// index map; without, [B, H, Lq, D] / [B, Hk, Lk, D] / [B, Hk, Lk, Dv].
  void setShapes() {
    auto shapeOf = [&](const dsl::TensorDecl *decl, std::vector<int64_t> positional) {
      if (decl->at.empty())
        return positional;
      auto it = inputs_.find(decl->callName());
      return it == inputs_.end() ? positional : it->second.shape;
    };
    shapes_[0] = shapeOf(k_.q, {bind_.B, bind_.H, bind_.Lq, bind_.D});
    shapes_[1] = shapeOf(k_.k, {bind_.B, bind_.Hk, bind_.Lk, bind_.D});
    shapes_[2] = shapeOf(k_.v, {bind_.B, bind_.Hk, bind_.Lk, bind_.Dv});
  }

  int add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size()) - 1;
  }

  void fail(const std::string &msg) {
    if (error_.empty()) {
      error_ = msg;
      indexError_ = false;
    }
  }
  /// An index out of range (LANGUAGE.md §8.2), as opposed to other errors.
  void failIndex(const std::string &msg) {
    if (error_.empty()) {
      error_ = msg;
      indexError_ = true;
    }
  }

  /// Evaluates node `idx` only for the index checks it contains: a branch
  /// that a guard reading the head vectors skips. The compiled checks take
  /// such a guard as true (docs/language.md), so its indices count here too;
  /// any other failure (an integer division by zero) is not the guarded
  /// code's to report.
  void probe(int idx) {
    eval(idx);
    if (failed() && !indexError_)
      error_.clear();
  }
  bool guardReadsHeads(int idx) {
    if (nodeReadsHeads_.size() != nodes_.size())
      nodeReadsHeads_.assign(nodes_.size(), -1);
    if (nodeReadsHeads_[idx] < 0)
      nodeReadsHeads_[idx] = readsHeads(idx) ? 1 : 0;
    return nodeReadsHeads_[idx] == 1;
  }

  std::string where(const Expr &e) const {
    return "`" + dsl::printExpr(e) + "` (line " +
           std::to_string(e.range.begin.line) + ", col " +
           std::to_string(e.range.begin.col) + ")";
  }

  std::string pairText() const {
    return "b=" + std::to_string(b_) + ", h=" + std::to_string(h_) +
           ", i=" + std::to_string(i_) + ", j=" + std::to_string(j_);
  }

  int translate(const Expr &e) {
    Node n;
    n.src = &e;
    n.kind = e.kind;
    n.type = e.type;
    if (e.type == ScalarType::Unknown) {
      fail("expression " + where(e) + " has no type (run Sema first)");
      return add(n);
    }
    switch (e.kind) {
    case ExprKind::IntLit:
      n.constant = makeInt(e.intValue);
      if (isFloatType(e.type))
        n.constant = makeFloat(static_cast<double>(e.intValue));
      n.kind = ExprKind::IntLit;
      break;
    case ExprKind::FloatLit:
      n.constant = makeFloat(e.floatValue);
      break;
    case ExprKind::BoolLit:
      n.constant = makeInt(e.boolValue ? 1 : 0);
      break;
    case ExprKind::Inf:
      n.constant = makeFloat(kInf);
      break;
    case ExprKind::Ident:
      translateIdent(e, n);
      break;
    case ExprKind::Index: {
      auto it = inputs_.find(e.name);
      const dsl::TensorDecl *decl = k_.findTensor(e.name);
      if (it == inputs_.end() || !decl) {
        fail("tensor '" + e.name + "' read in " + where(e) +
             " is not an input");
        return add(n);
      }
      if (it->second.rank() != static_cast<int>(e.args.size())) {
        fail("tensor '" + e.name + "' has rank " +
             std::to_string(it->second.rank()) + " but " + where(e) +
             " uses " + std::to_string(e.args.size()) + " indices");
        return add(n);
      }
      n.tensor = static_cast<int>(aux_.size());
      aux_.push_back({e.name, &it->second});
      for (const auto &a : e.args)
        n.args.push_back(translate(*a));
      break;
    }
    case ExprKind::Element:
      n.vec = e.name == "q" ? kHeadQ : e.name == "k" ? kHeadK : letNumber(e.name);
      usesHeadVectors_ = usesHeadVectors_ || n.vec < 0;
      n.args.push_back(translate(*e.args[0]));
      break;
    case ExprKind::Sum: {
      n.args.push_back(translate(*e.args[0]));
      n.channel = newSlot();
      channelScope_.push_back({e.name, n.channel});
      n.args.push_back(translate(*e.args[1]));
      channelScope_.pop_back();
      break;
    }
    case ExprKind::Call:
      if (e.builtin == Builtin::Dot || e.builtin == Builtin::SqnormQ ||
          e.builtin == Builtin::SqnormK) {
        usesHeadVectors_ = true;
        break;
      }
      if (e.builtin == Builtin::DotVec || e.builtin == Builtin::SqnormVec) {
        // The vectors by number; q and k as kHeadQ / kHeadK.
        for (const auto &a : e.args)
          n.args.push_back(a->name == "q" ? kHeadQ : a->name == "k" ? kHeadK : letNumber(a->name));
        usesHeadVectors_ = true;
        break;
      }
      if (e.builtin == Builtin::None) {
        fail("call " + where(e) + " is not resolved (run Sema first)");
        return add(n);
      }
      [[fallthrough]];
    case ExprKind::Unary:
    case ExprKind::Binary:
    case ExprKind::Cast:
      for (const auto &a : e.args)
        n.args.push_back(translate(*a));
      break;
    }
    if (!checkArity(e, n))
      fail("malformed expression " + where(e));
    return add(n);
  }

  int newSlot() {
    channelValue_.push_back(0);
    return static_cast<int>(channelValue_.size()) - 1;
  }
  int letNumber(const std::string &name) {
    auto it = letIndex_.find(name);
    if (it == letIndex_.end()) {
      fail("unknown vector '" + name + "'");
      return 0;
    }
    return it->second;
  }

  bool checkArity(const Expr &e, const Node &n) {
    size_t want = n.args.size();
    switch (e.kind) {
    case ExprKind::Unary:
    case ExprKind::Cast:
      want = 1;
      break;
    case ExprKind::Binary:
      want = 2;
      break;
    case ExprKind::Call:
      switch (e.builtin) {
      case Builtin::Dot:
      case Builtin::SqnormQ:
      case Builtin::SqnormK:
      case Builtin::DotVec:
      case Builtin::SqnormVec:
        return true;
      case Builtin::Min:
      case Builtin::Max:
      case Builtin::Pow:
        want = 2;
        break;
      case Builtin::Clamp:
      case Builtin::Select:
        want = 3;
        break;
      default:
        want = 1;
        break;
      }
      break;
    default:
      break;
    }
    return n.args.size() == want;
  }

  void translateIdent(const Expr &e, Node &n) {
    switch (e.ident) {
    case IdentKind::IndexVar:
      n.var = e.name == "b"    ? VarB
              : e.name == "h"  ? VarH
              : e.name == "hk" ? VarHk
              : e.name == "i"  ? VarI
              : e.name == "j"  ? VarJ
                               : 0;
      if (!n.var)
        fail("unknown index variable in " + where(e));
      n.deps = n.var == VarHk ? VarH : static_cast<unsigned>(n.var);
      return;
    case IdentKind::Size: {
      auto it = bind_.sizes.find(e.name);
      if (it == bind_.sizes.end()) {
        fail("size '" + e.name + "' is not bound");
        return;
      }
      n.kind = ExprKind::IntLit;
      n.constant = isFloatType(e.type)
                       ? makeFloat(static_cast<double>(it->second))
                       : makeInt(it->second);
      return;
    }
    case IdentKind::Param: {
      auto it = bind_.params.find(e.name);
      if (it == bind_.params.end()) {
        fail("param '" + e.name + "' has no value");
        return;
      }
      const dsl::Literal &l = it->second;
      n.kind = ExprKind::IntLit;
      if (isFloatType(e.type))
        n.constant = makeFloat(l.kind == dsl::Literal::Kind::Float
                                   ? l.f
                                   : l.kind == dsl::Literal::Kind::Int
                                         ? static_cast<double>(l.i)
                                         : (l.b ? 1.0 : 0.0));
      else
        n.constant =
            makeInt(l.kind == dsl::Literal::Kind::Int    ? l.i
                    : l.kind == dsl::Literal::Kind::Bool ? (l.b ? 1 : 0)
                                                         : static_cast<int64_t>(l.f));
      return;
    }
    case IdentKind::Channel:
      for (auto it = channelScope_.rbegin(); it != channelScope_.rend(); ++it)
        if (it->first == e.name) {
          n.channel = it->second;
          return;
        }
      fail("channel variable '" + e.name + "' is not in scope");
      return;
    case IdentKind::Let: {
      auto it = letIndex_.find(e.name);
      if (it == letIndex_.end()) {
        fail("unknown let '" + e.name + "'");
        return;
      }
      n.let = it->second;
      return;
    }
    case IdentKind::Unresolved:
      fail("identifier " + where(e) + " is not resolved (run Sema first)");
      return;
    }
  }

  unsigned computeLetDeps(int let) {
    if (letDepsDone_[let])
      return letDeps_[let];
    letDepsDone_[let] = true; // lets cannot be recursive after Sema
    letDeps_[let] = letRoots_[let] >= 0 ? computeDeps(letRoots_[let]) : 0;
    return letDeps_[let];
  }

  unsigned computeDeps(int idx) {
    if (depsDone_[idx])
      return nodes_[idx].deps;
    depsDone_[idx] = true;
    unsigned d = nodes_[idx].deps;
    if (nodes_[idx].kind == ExprKind::Ident && nodes_[idx].let >= 0)
      d |= computeLetDeps(nodes_[idx].let);
    auto sideDeps = [&](int vec) -> unsigned {
      if (vec == kHeadQ)
        return VarB | VarH | VarI;
      if (vec == kHeadK)
        return VarB | VarH | VarJ;
      dsl::VectorSide s = k_.lets[vec].side;
      return s == dsl::VectorSide::Query ? VarB | VarH | VarI
             : s == dsl::VectorSide::Key ? VarB | VarH | VarJ
                                         : 0u;
    };
    if (nodes_[idx].kind == ExprKind::Element)
      d |= sideDeps(nodes_[idx].vec);
    if (nodes_[idx].kind == ExprKind::Call &&
        (nodes_[idx].src->builtin == Builtin::DotVec ||
         nodes_[idx].src->builtin == Builtin::SqnormVec)) {
      for (int a : nodes_[idx].args)
        d |= sideDeps(a);
      nodes_[idx].deps = d;
      return d;
    }
    if (nodes_[idx].kind == ExprKind::Call) {
      switch (nodes_[idx].src->builtin) {
      case Builtin::Dot:
        d |= VarB | VarH | VarI | VarJ;
        break;
      case Builtin::SqnormQ:
        d |= VarB | VarH | VarI;
        break;
      case Builtin::SqnormK:
        d |= VarB | VarH | VarJ;
        break;
      default:
        break;
      }
    }
    for (int a : nodes_[idx].args)
      d |= computeDeps(a);
    nodes_[idx].deps = d;
    return d;
  }

  /// The values of vector let `let` for the current row (query side), key
  /// (key side) or call (constant), computed once for each; null after a
  /// failure. q and k (kHeadQ, kHeadK) are the head vectors.
  const double *vectorOf(int let, int64_t *length = nullptr) {
    if (let == kHeadQ || let == kHeadK) {
      if (length)
        *length = bind_.D;
      return let == kHeadQ ? qRow() : kRow();
    }
    const dsl::LetDecl &decl = k_.lets[let];
    if (vecCache_.size() != k_.lets.size())
      vecCache_.resize(k_.lets.size());
    VecCache &c = vecCache_[let];
    int64_t key[3] = {0, 0, 0};
    if (decl.side == dsl::VectorSide::Query)
      key[0] = b_, key[1] = h_, key[2] = i_;
    else if (decl.side == dsl::VectorSide::Key)
      key[0] = b_, key[1] = hk_, key[2] = j_;
    if (!c.valid || c.key[0] != key[0] || c.key[1] != key[1] || c.key[2] != key[2]) {
      int64_t n = 0;
      const dsl::Dim &d = *decl.length;
      if (d.isLiteral())
        n = d.value;
      else if (auto it = bind_.sizes.find(d.name); it != bind_.sizes.end())
        n = it->second;
      c.values.assign(static_cast<size_t>(n), 0.0);
      int slot = vecSlot_[let];
      int root = letRoots_[let];
      for (int64_t e = 0; e < n; ++e) {
        channelValue_[slot] = e;
        c.values[e] = toDouble(eval(root), nodes_[root].type);
        if (failed())
          return nullptr;
      }
      c.valid = true;
      std::copy(key, key + 3, c.key);
    }
    if (length)
      *length = static_cast<int64_t>(c.values.size());
    return c.values.data();
  }

  /// Element `n.args[0]` of the vector of an Element node, range-checked.
  Value evalElement(const Node &n) {
    int64_t idx = toInt(eval(n.args[0]), nodes_[n.args[0]].type);
    if (failed())
      return Value();
    int64_t len = 0;
    const double *x = vectorOf(n.vec, &len);
    if (!x)
      return Value();
    if (idx < 0 || idx >= len) {
      failIndex("vector '" + n.src->name + "': channel index " + std::to_string(idx) +
           " is out of range (length " + std::to_string(len) + ") in " + where(*n.src) + " at " +
           pairText());
      return Value();
    }
    return makeFloat(x[idx]);
  }

  Value evalSum(const Node &n) {
    int64_t len = toInt(eval(n.args[0]), nodes_[n.args[0]].type);
    double s = 0;
    for (int64_t c = 0; c < len && !failed(); ++c) {
      channelValue_[n.channel] = c;
      s += toDouble(eval(n.args[1]), nodes_[n.args[1]].type);
    }
    return makeFloat(s);
  }

  /// Whether node `idx` (its lets expanded) reads dot or sqnorm.
  bool readsHeads(int idx) {
    const Node &n = nodes_[idx];
    if (n.kind == ExprKind::Call &&
        (n.src->builtin == Builtin::Dot || n.src->builtin == Builtin::SqnormQ ||
         n.src->builtin == Builtin::SqnormK || n.src->builtin == Builtin::DotVec ||
         n.src->builtin == Builtin::SqnormVec))
      return true;
    if (n.kind == ExprKind::Element &&
        (n.vec < 0 || k_.lets[n.vec].side != dsl::VectorSide::Constant))
      return true;
    if (n.kind == ExprKind::Ident && n.let >= 0) {
      if (letReadsHeads_.size() != letRoots_.size())
        letReadsHeads_.assign(letRoots_.size(), -1);
      if (letReadsHeads_[n.let] < 0) {
        letReadsHeads_[n.let] = 0;
        letReadsHeads_[n.let] = readsHeads(letRoots_[n.let]) ? 1 : 0;
      }
      return letReadsHeads_[n.let] == 1;
    }
    for (int a : n.args)
      if (readsHeads(a))
        return true;
    return false;
  }

  /// The row of tensor t (0 q, 1 k, 2 v) for the current pair, as an offset
  /// in elements of its head vector length; -1 after a failure (an `at`
  /// index out of range).
  int64_t rowOffset(int t) {
    if (rowEpoch_[t] == epoch_)
      return rowValue_[t];
    const std::vector<int64_t> &shape = shapes_[t];
    int64_t row = -1;
    if (atRoots_[t].empty()) {
      int64_t x = t == 0 ? i_ : j_, hh = t == 0 ? h_ : hk_;
      row = (b_ * shape[1] + hh) * shape[2] + x;
    } else {
      const dsl::TensorDecl *decl = t == 0 ? k_.q : t == 1 ? k_.k : k_.v;
      row = 0;
      for (size_t m = 0; m < atRoots_[t].size(); ++m) {
        int64_t idx = toInt(eval(atRoots_[t][m]), nodes_[atRoots_[t][m]].type);
        if (failed())
          return -1;
        if (idx < 0 || idx >= shape[m]) {
          failIndex("the `at` of '" + decl->callName() + "': index " + std::to_string(m) + " is " +
               std::to_string(idx) + ", out of range for dimension " + std::to_string(m) +
               " (extent " + std::to_string(shape[m]) + ") in " + where(*decl->at[m]) +
               " at " + pairText());
          return -1;
        }
        row = row * shape[m] + idx;
      }
    }
    rowEpoch_[t] = epoch_;
    rowValue_[t] = row;
    return row;
  }
  const double *qRow() {
    int64_t r = rowOffset(0);
    return r < 0 ? nullptr : &q_[r * bind_.D];
  }
  const double *kRow() {
    int64_t r = rowOffset(1);
    return r < 0 ? nullptr : &kk_[r * bind_.D];
  }

  static double dotD(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t d = 0; d < n; ++d)
      s += a[d] * b[d];
    return s;
  }

  Value evalIndex(const Node &n) {
    const AuxTensor &aux = aux_[n.tensor];
    const HostTensor &t = *aux.tensor;
    int64_t flat = 0;
    for (size_t a = 0; a < n.args.size(); ++a) {
      const Node &arg = nodes_[n.args[a]];
      int64_t idx = toInt(eval(n.args[a]), arg.type);
      if (failed())
        return Value();
      int64_t extent = t.shape[a];
      if (idx < 0 || idx >= extent) {
        failIndex("tensor '" + aux.name + "': index " + std::to_string(idx) +
             " is out of range for dimension " + std::to_string(a) +
             " (extent " + std::to_string(extent) + ") in " + where(*n.src) +
             " at " + pairText());
        return Value();
      }
      flat = flat * extent + idx;
    }
    if (isFloatType(n.type))
      return makeFloat(t.getDouble(flat));
    return makeInt(t.getInt(flat));
  }

  Value evalUnary(const Node &n) {
    const Node &a = nodes_[n.args[0]];
    Value v = eval(n.args[0]);
    if (n.src->unaryOp == dsl::UnaryOp::Not)
      return makeInt(v.i == 0 ? 1 : 0);
    if (isFloatType(n.type))
      return makeFloat(-toDouble(v, a.type));
    return makeInt(static_cast<int64_t>(0 - static_cast<uint64_t>(v.i)));
  }

  Value evalBinary(const Node &n) {
    BinaryOp op = n.src->binaryOp;
    const Node &an = nodes_[n.args[0]];
    const Node &bn = nodes_[n.args[1]];
    if (op == BinaryOp::And || op == BinaryOp::Or) {
      bool lhs = eval(n.args[0]).i != 0;
      if (op == BinaryOp::And ? !lhs : lhs) {
        if (!failed() && guardReadsHeads(n.args[0]))
          probe(n.args[1]);
        return makeInt(lhs ? 1 : 0);
      }
      return makeInt(eval(n.args[1]).i != 0 ? 1 : 0);
    }
    Value a = eval(n.args[0]);
    Value b = eval(n.args[1]);
    bool useFloat = isFloatType(an.type) || isFloatType(bn.type);
    switch (op) {
    case BinaryOp::Eq:
    case BinaryOp::Ne:
    case BinaryOp::Lt:
    case BinaryOp::Le:
    case BinaryOp::Gt:
    case BinaryOp::Ge: {
      int cmp;
      bool unordered = false;
      if (useFloat) {
        double x = toDouble(a, an.type), y = toDouble(b, bn.type);
        unordered = std::isnan(x) || std::isnan(y);
        cmp = x < y ? -1 : x > y ? 1 : 0;
      } else {
        cmp = a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
      }
      bool r = false;
      if (!unordered || op == BinaryOp::Ne) {
        switch (op) {
        case BinaryOp::Eq: r = cmp == 0; break;
        case BinaryOp::Ne: r = unordered || cmp != 0; break;
        case BinaryOp::Lt: r = cmp < 0; break;
        case BinaryOp::Le: r = cmp <= 0; break;
        case BinaryOp::Gt: r = cmp > 0; break;
        default: r = cmp >= 0; break;
        }
      }
      return makeInt(r ? 1 : 0);
    }
    default:
      break;
    }
    if (useFloat || isFloatType(n.type)) {
      double x = toDouble(a, an.type), y = toDouble(b, bn.type);
      double r = 0;
      switch (op) {
      case BinaryOp::Add: r = x + y; break;
      case BinaryOp::Sub: r = x - y; break;
      case BinaryOp::Mul: r = x * y; break;
      case BinaryOp::Div: r = x / y; break;
      case BinaryOp::Mod: r = floorModF(x, y); break;
      default: break;
      }
      return isFloatType(n.type) ? makeFloat(r) : makeInt(toInt(makeFloat(r), ScalarType::F64));
    }
    uint64_t x = static_cast<uint64_t>(a.i), y = static_cast<uint64_t>(b.i);
    switch (op) {
    case BinaryOp::Add: return makeInt(static_cast<int64_t>(x + y));
    case BinaryOp::Sub: return makeInt(static_cast<int64_t>(x - y));
    case BinaryOp::Mul: return makeInt(static_cast<int64_t>(x * y));
    case BinaryOp::Div:
    case BinaryOp::Mod:
      if (b.i == 0) {
        fail(std::string("integer ") +
             (op == BinaryOp::Div ? "division" : "remainder") +
             " by zero in " + where(*n.src) + " at " + pairText());
        return Value();
      }
      return makeInt(op == BinaryOp::Div ? floorDiv(a.i, b.i)
                                         : floorMod(a.i, b.i));
    default:
      return Value();
    }
  }

  Value evalCall(const Node &n) {
    Builtin fn = n.src->builtin;
    switch (fn) {
    case Builtin::Dot:
      if (dotEpoch_ != epoch_) {
        const double *q = qRow(), *k = kRow();
        if (!q || !k)
          return Value();
        dotValue_ = dotD(q, k, bind_.D);
        dotEpoch_ = epoch_;
      }
      return makeFloat(dotValue_);
    case Builtin::SqnormQ: {
      const double *q = qRow();
      return q ? makeFloat(dotD(q, q, bind_.D)) : Value();
    }
    case Builtin::SqnormK: {
      const double *k = kRow();
      return k ? makeFloat(dotD(k, k, bind_.D)) : Value();
    }
    case Builtin::DotVec: {
      int64_t na = 0, nb = 0;
      const double *a = vectorOf(n.args[0], &na);
      const double *b = a ? vectorOf(n.args[1], &nb) : nullptr;
      return b ? makeFloat(dotD(a, b, std::min(na, nb))) : Value();
    }
    case Builtin::SqnormVec: {
      int64_t na = 0;
      const double *a = vectorOf(n.args[0], &na);
      return a ? makeFloat(dotD(a, a, na)) : Value();
    }
    case Builtin::Select: {
      bool c = eval(n.args[0]).i != 0;
      int pick = n.args[c ? 1 : 2];
      if (!failed() && guardReadsHeads(n.args[0]))
        probe(n.args[c ? 2 : 1]);
      Value v = eval(pick);
      const Node &p = nodes_[pick];
      return isFloatType(n.type) ? makeFloat(toDouble(v, p.type))
                                 : makeInt(toInt(v, p.type));
    }
    default:
      break;
    }
    bool floatArgs = isFloatType(n.type);
    for (int a : n.args)
      floatArgs |= isFloatType(nodes_[a].type);
    if (!floatArgs) {
      int64_t x[3] = {0, 0, 0};
      for (size_t a = 0; a < n.args.size(); ++a)
        x[a] = eval(n.args[a]).i;
      switch (fn) {
      case Builtin::Abs:
        return makeInt(x[0] < 0 ? static_cast<int64_t>(0 - static_cast<uint64_t>(x[0])) : x[0]);
      case Builtin::Min: return makeInt(std::min(x[0], x[1]));
      case Builtin::Max: return makeInt(std::max(x[0], x[1]));
      case Builtin::Clamp: return makeInt(std::min(std::max(x[0], x[1]), x[2]));
      case Builtin::Floor:
      case Builtin::Ceil:
        return makeInt(x[0]);
      default:
        break; // float functions of integers: fall through to doubles
      }
    }
    double x[3] = {0, 0, 0};
    for (size_t a = 0; a < n.args.size(); ++a)
      x[a] = toDouble(eval(n.args[a]), nodes_[n.args[a]].type);
    double r = 0;
    switch (fn) {
    case Builtin::Exp: r = std::exp(x[0]); break;
    case Builtin::Exp2: r = std::exp2(x[0]); break;
    case Builtin::Log: r = std::log(x[0]); break;
    case Builtin::Log2: r = std::log2(x[0]); break;
    case Builtin::Sqrt: r = std::sqrt(x[0]); break;
    case Builtin::Rsqrt: r = 1.0 / std::sqrt(x[0]); break;
    case Builtin::Tanh: r = std::tanh(x[0]); break;
    case Builtin::Sigmoid: r = 1.0 / (1.0 + std::exp(-x[0])); break;
    case Builtin::Abs: r = std::fabs(x[0]); break;
    case Builtin::Floor: r = std::floor(x[0]); break;
    case Builtin::Ceil: r = std::ceil(x[0]); break;
    case Builtin::Sin: r = std::sin(x[0]); break;
    case Builtin::Cos: r = std::cos(x[0]); break;
    case Builtin::Int: // toward -inf, saturating at i32; NaN gives 0
      return makeInt(std::isnan(x[0]) ? 0
                                      : static_cast<int64_t>(std::min(
                                            std::max(std::floor(x[0]), -2147483648.0),
                                            2147483647.0)));
    case Builtin::Min: r = x[1] < x[0] ? x[1] : x[0]; break;
    case Builtin::Max: r = x[1] > x[0] ? x[1] : x[0]; break;
    case Builtin::Pow: r = std::pow(x[0], x[1]); break;
    case Builtin::Clamp: {
      double lo = x[0] < x[1] ? x[1] : x[0];
      r = x[2] < lo ? x[2] : lo;
      break;
    }
    default:
      fail("unsupported call in " + where(*n.src));
      break;
    }
    return isFloatType(n.type) ? makeFloat(r)
                               : makeInt(toInt(makeFloat(r), ScalarType::F64));
  }

  Value eval(int idx) {
    if (failed())
      return Value();
    const Node &n = nodes_[idx];
    switch (n.kind) {
    case ExprKind::IntLit:
    case ExprKind::FloatLit:
    case ExprKind::BoolLit:
    case ExprKind::Inf:
      return n.constant;
    case ExprKind::Ident:
      if (n.let >= 0) {
        if (letEpoch_[n.let] != epoch_) {
          letValue_[n.let] = eval(letRoots_[n.let]);
          letEpoch_[n.let] = epoch_;
        }
        const Node &root = nodes_[letRoots_[n.let]];
        if (root.type == n.type)
          return letValue_[n.let];
        return isFloatType(n.type)
                   ? makeFloat(toDouble(letValue_[n.let], root.type))
                   : makeInt(toInt(letValue_[n.let], root.type));
      }
      if (n.channel >= 0)
        return fromIndex(channelValue_[n.channel], n.type);
      switch (n.var) {
      case VarB: return fromIndex(b_, n.type);
      case VarH: return fromIndex(h_, n.type);
      case VarI: return fromIndex(i_, n.type);
      case VarJ: return fromIndex(j_, n.type);
      case VarHk: return fromIndex(hk_, n.type);
      default: return n.constant;
      }
    case ExprKind::Unary:
      return evalUnary(n);
    case ExprKind::Binary:
      return evalBinary(n);
    case ExprKind::Call:
      return evalCall(n);
    case ExprKind::Index:
      return evalIndex(n);
    case ExprKind::Element:
      return evalElement(n);
    case ExprKind::Sum:
      return evalSum(n);
    case ExprKind::Cast: {
      const Node &a = nodes_[n.args[0]];
      Value v = eval(n.args[0]);
      if (isFloatType(n.type))
        return makeFloat(toDouble(v, a.type));
      if (n.type == ScalarType::Bool)
        return makeInt(isFloatType(a.type) ? (v.f != 0) : (v.i != 0));
      return makeInt(toInt(v, a.type));
    }
    }
    return Value();
  }

  static Value fromIndex(int64_t v, ScalarType t) {
    return isFloatType(t) ? makeFloat(static_cast<double>(v)) : makeInt(v);
  }

  const dsl::Kernel &k_;
  const std::map<std::string, HostTensor> &inputs_;
  const Bindings &bind_;

  std::vector<Node> nodes_;
  std::vector<AuxTensor> aux_;
  std::map<std::string, int> letIndex_;
  std::vector<int> letRoots_;
  std::vector<unsigned> letDeps_;
  std::vector<bool> letDepsDone_;
  std::vector<bool> depsDone_;
  int maskRoot_ = -1, scoreRoot_ = -1;
  bool usesHeadVectors_ = false;
  std::string error_;

  std::vector<double> q_, kk_, v_;
  std::vector<int64_t> shapes_[3];
  /// Channel variables: each vector let and each sum has a slot.
  std::vector<int64_t> channelValue_;
  std::vector<std::pair<std::string, int>> channelScope_;
  std::vector<int> vecSlot_; // by let; -1 for scalar lets
  struct VecCache {
    bool valid = false;
    int64_t key[3] = {0, 0, 0};
    std::vector<double> values;
  };
  std::vector<VecCache> vecCache_;
  std::vector<int> atRoots_[3];
  bool maskReadsHeads_ = false;
  bool indexError_ = false;
  std::vector<int8_t> nodeReadsHeads_;
  std::vector<int> letReadsHeads_;
  uint64_t rowEpoch_[3] = {~uint64_t(0), ~uint64_t(0), ~uint64_t(0)};
  int64_t rowValue_[3] = {0, 0, 0};
  int64_t b_ = 0, h_ = 0, hk_ = 0, i_ = 0, j_ = 0;
  uint64_t epoch_ = 0;
  std::vector<Value> letValue_;
  std::vector<uint64_t> letEpoch_;
  uint64_t dotEpoch_ = ~uint64_t(0);
  double dotValue_ = 0;
};

struct Scored {
  double s;
  int64_t j;        // with sources: the key's place in all of them (source, then j)
  int64_t vrow = 0; // the key's value row in Interpreter::vData()
  int source = 0;   // whose interpreter
};

/// The normalized weights of one row: key keys[n] gets weight
/// weight[n] / divisor (every other key 0), so out = Σ weight[n]·v[keys[n].j]
/// / divisor. Dividing once at the end keeps softmax's rounding that of a
/// sum of exp(s - m)·v divided by the sum of exp(s - m).
struct RowWeights {
  std::vector<double> weight;
  double divisor = 1;
  bool nan = false; // a NaN score: the whole row is NaN
};

/// Softmax weights of `keys`; returns the log-sum-exp.
double softmaxWeights(std::vector<Scored> &keys, RowWeights &w) {
  double m = -kInf;
  for (const Scored &k : keys)
    m = std::max(m, k.s);
  if (m == kInf) {
    // Infinite scores take all the weight, shared equally.
    keys.erase(std::remove_if(keys.begin(), keys.end(),
                              [](const Scored &k) { return k.s != kInf; }),
               keys.end());
    w.weight.assign(keys.size(), 1.0);
    w.divisor = static_cast<double>(keys.size());
    return kInf;
  }
  double sum = 0;
  for (const Scored &k : keys) {
    double e = std::exp(k.s - m);
    sum += e;
    w.weight.push_back(e);
  }
  w.divisor = sum;
  return m + std::log(sum);
}

/// Normalizes one row: `keys` holds the participating keys in increasing j
/// and is reduced to those with a nonzero weight where the normalization
/// selects some (hardmax, topk, infinite softmax scores); returns the lse
/// (NaN where none is defined, -inf for an empty row).
double normalizeRow(const dsl::Normalize &norm, std::vector<Scored> &keys,
                    RowWeights &w) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  w.weight.clear();
  w.divisor = 1;
  w.nan = false;
  if (keys.empty())
    return -kInf;
  for (const Scored &k : keys)
    if (std::isnan(k.s)) {
      w.nan = true;
      w.weight.assign(keys.size(), kNaN);
      return kNaN;
    }
  switch (norm.kind) {
  case NormKind::Softmax:
    return softmaxWeights(keys, w);
  case NormKind::Sigmoid:
    for (const Scored &k : keys)
      w.weight.push_back(1.0 / (1.0 + std::exp(-k.s)));
    return kNaN;
  case NormKind::Relu:
    for (const Scored &k : keys)
      w.weight.push_back(std::max(k.s, 0.0));
    return kNaN;
  case NormKind::None:
    for (const Scored &k : keys)
      w.weight.push_back(k.s);
    return kNaN;
  case NormKind::Linear: { // s / Σ s, 0 where the sum is 0 (LANGUAGE.md §8.4)
    double sum = 0;
    for (const Scored &k : keys) {
      w.weight.push_back(k.s);
      sum += k.s;
    }
    if (sum == 0)
      std::fill(w.weight.begin(), w.weight.end(), 0.0);
    else
      w.divisor = sum;
    return kNaN;
  }
  case NormKind::Hardmax: {
    double m = -kInf;
    for (const Scored &k : keys)
      m = std::max(m, k.s);
    std::vector<Scored> top;
    for (const Scored &k : keys)
      if (k.s == m)
        top.push_back(k);
    if (norm.ties == TieRule::First)
      top.resize(1);
    else if (norm.ties == TieRule::Latest)
      top.erase(top.begin(), top.end() - 1);
    keys = std::move(top);
    w.weight.assign(keys.size(), 1.0);
    w.divisor = static_cast<double>(keys.size()); // average: an even split
    return m;
  }
  case NormKind::TopK: {
    size_t K = static_cast<size_t>(std::max<int64_t>(norm.k, 1));
    if (keys.size() > K) {
      std::nth_element(keys.begin(), keys.begin() + (K - 1), keys.end(),
                       [](const Scored &x, const Scored &y) {
                         return x.s != y.s ? x.s > y.s : x.j > y.j;
                       });
      keys.resize(K);
      std::sort(keys.begin(), keys.end(),
                [](const Scored &x, const Scored &y) { return x.j < y.j; });
    }
    return softmaxWeights(keys, w);
  }
  }
  return kNaN;
}

/// The participating keys of row (b, h, i) with their scores, in increasing
/// j: the mask admits them and their score is not -inf. With `admitted`,
/// also marks them there (Lk entries, the others left as they are). Keys
/// are numbered from `offset` (a source's first key among all sources').
Status scoreRow(Interpreter &in, int64_t b, int64_t h, int64_t i, int64_t Lk,
                std::vector<Scored> &keys, uint8_t *admitted = nullptr, int64_t offset = 0,
                int source = 0) {
  for (int64_t j = 0; j < Lk; ++j) {
    in.setPair(b, h, i, j);
    // LANGUAGE.md §8.2: rows and score indices count for the pairs that take
    // part; with a mask that reads the head vectors, for every pair.
    if (in.maskReadsHeads()) {
      in.touchRows();
      in.evalScore();
    }
    bool participates = !in.failed() && in.evalMask();
    if (in.failed())
      return Status::error(in.error());
    if (!participates)
      continue;
    in.touchRows();
    double score = in.failed() ? 0 : in.evalScore();
    if (in.failed())
      return Status::error(in.error());
    if (score == -kInf)
      continue;
    keys.push_back({score, offset + j, in.vRowOffset(), source});
    if (admitted)
      admitted[offset + j] = 1;
  }
  return Status::ok();
}

/// The key sources of a kernel (LANGUAGE.md §8.5): one interpreter per
/// `source` block, each over its own keys, or one for a kernel without.
/// A row's keys are the sources' together, in file order then j, so that
/// ties and top-k see the order the language defines.
struct KeySources {
  std::vector<Bindings> binds;
  std::vector<std::unique_ptr<Interpreter>> in;
  std::vector<int64_t> offset;

  Status prepare(const dsl::Kernel &k, const std::map<std::string, HostTensor> &inputs,
                 const Bindings &bind, bool needHeadVectors) {
    std::vector<const dsl::Kernel *> kernels{&k};
    if (k.hasSources()) {
      kernels.clear();
      for (const dsl::Kernel &s : k.sources)
        kernels.push_back(&s);
    }
    binds.reserve(kernels.size());
    int64_t first = 0;
    for (size_t n = 0; n < kernels.size(); ++n) {
      binds.push_back(bind);
      if (k.hasSources())
        binds.back().Lk = n < bind.sourceLk.size() ? bind.sourceLk[n] : 0;
      offset.push_back(first);
      first += binds.back().Lk;
    }
    for (size_t n = 0; n < kernels.size(); ++n) {
      in.push_back(std::make_unique<Interpreter>(*kernels[n], inputs, binds[n]));
      if (Status s = in.back()->prepare(needHeadVectors); !s)
        return s;
    }
    return Status::ok();
  }
  Status scoreRow(int64_t b, int64_t h, int64_t i, std::vector<Scored> &keys,
                  uint8_t *admitted = nullptr) {
    keys.clear();
    for (size_t n = 0; n < in.size(); ++n)
      if (Status s = attn::runtime::scoreRow(*in[n], b, h, i, binds[n].Lk, keys, admitted,
                                             offset[n], (int)n);
          !s)
        return s;
    return Status::ok();
  }
  const double *vRow(const Scored &key, int64_t Dv) const {
    return in[key.source]->vData() + key.vrow * Dv;
  }
};

/// Weights of the (b, h) planes in [b0, b1) x [h0, h1), each Lq x Lk, into
/// `w` (and the participating pairs into `admitted` when given), plane after
/// plane.
Status weightsOfPlanes(const dsl::Kernel &k,
                       const std::map<std::string, HostTensor> &inputs,
                       const Bindings &bind, int64_t b0, int64_t b1,
                       int64_t h0, int64_t h1, double *w, uint8_t *admitted) {
  KeySources in;
  Status s = in.prepare(k, inputs, bind, /*needHeadVectors=*/false);
  if (!s)
    return s;
  const int64_t Lq = bind.Lq, Lk = bind.Lk;
  std::vector<Scored> keys;
  keys.reserve(static_cast<size_t>(Lk));
  RowWeights rw;
  int64_t row = 0;
  for (int64_t b = b0; b < b1; ++b)
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t i = 0; i < Lq; ++i, ++row) {
        s = in.scoreRow(b, h, i, keys, admitted ? admitted + row * Lk : nullptr);
        if (!s)
          return s;
        normalizeRow(k.normalize, keys, rw);
        double *dst = w + row * Lk;
        for (size_t n = 0; n < keys.size(); ++n)
          dst[keys[n].j] = rw.nan ? rw.weight[n] : rw.weight[n] / rw.divisor;
      }
  return Status::ok();
}

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", std::ceil(bytes / (1024.0 * 1024.0)));
  return buf;
}

/// The size check of referenceWeights: `what` names the shape.
Status checkWeightsSize(const std::string &what,
                        const std::vector<int64_t> &shape) {
  double n = 1;
  std::string dims;
  for (size_t d = 0; d < shape.size(); ++d) {
    n *= static_cast<double>(shape[d]);
    dims += (d ? ", " : "") + std::to_string(shape[d]);
  }
  if (n <= static_cast<double>(kMaxReferenceWeights))
    return Status::ok();
  return Status::error(
      what + " [" + dims + "] needs " + mib(n * sizeof(double)) +
      " MiB; weights are for small problems, at most " +
      std::to_string(kMaxReferenceWeights) + " elements (" +
      mib(static_cast<double>(kMaxReferenceWeights) * sizeof(double)) +
      " MiB of f64)");
}

} // namespace

Status referenceAttention(const dsl::Kernel &k,
                          const std::map<std::string, HostTensor> &inputs,
                          const Bindings &bind, HostTensor &out,
                          HostTensor *lse) {
  NormKind nk = k.normalize.kind;
  if (lse && nk != NormKind::Softmax && nk != NormKind::Hardmax &&
      nk != NormKind::TopK)
    return Status::error(std::string("lse is not defined for normalize = ") +
                         dsl::toString(nk) +
                         " (only softmax, hardmax and topk have one)");
  KeySources in;
  Status s = in.prepare(k, inputs, bind, /*needHeadVectors=*/true);
  if (!s)
    return s;

  const int64_t B = bind.B, H = bind.H, Lq = bind.Lq, Lk = bind.Lk,
                Dv = bind.Dv;
  HostTensor o(ElemType::F64, {B, H, Lq, Dv});
  HostTensor l(ElemType::F64, {B, H, Lq});
  double *od = o.as<double>();
  double *ld = l.as<double>();
  std::vector<Scored> keys;
  keys.reserve(static_cast<size_t>(Lk));
  RowWeights w;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        s = in.scoreRow(b, h, i, keys);
        if (!s)
          return s;
        int64_t row = (b * H + h) * Lq + i;
        ld[row] = normalizeRow(k.normalize, keys, w);
        double *outRow = od + row * Dv;
        if (w.nan) {
          std::fill(outRow, outRow + Dv, w.weight[0]);
          continue;
        }
        for (size_t n = 0; n < keys.size(); ++n) {
          const double *v = in.vRow(keys[n], Dv);
          for (int64_t d = 0; d < Dv; ++d)
            outRow[d] += w.weight[n] * v[d];
        }
        if (w.divisor != 1)
          for (int64_t d = 0; d < Dv; ++d)
            outRow[d] /= w.divisor;
      }
  out = std::move(o);
  if (lse)
    *lse = std::move(l);
  return Status::ok();
}

Status countParticipatingPairs(const dsl::Kernel &k,
                               const std::map<std::string, HostTensor> &inputs,
                               const Bindings &bind, int64_t &pairs) {
  pairs = 0;
  KeySources sources;
  Status s = sources.prepare(k, inputs, bind, /*needHeadVectors=*/false);
  if (!s)
    return s;
  for (size_t n = 0; n < sources.in.size(); ++n) {
    Interpreter &in = *sources.in[n];
    const Bindings &bd = sources.binds[n];
    unsigned deps = in.maskDeps();
    int64_t nb = deps & VarB ? bd.B : 1, nh = deps & VarH ? bd.H : 1,
            ni = deps & VarI ? bd.Lq : 1, nj = deps & VarJ ? bd.Lk : 1;
    int64_t repeat = (deps & VarB ? 1 : bd.B) * (deps & VarH ? 1 : bd.H) *
                     (deps & VarI ? 1 : bd.Lq) * (deps & VarJ ? 1 : bd.Lk);
    int64_t count = 0;
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t h = 0; h < nh; ++h)
        for (int64_t i = 0; i < ni; ++i)
          for (int64_t j = 0; j < nj; ++j) {
            in.setPair(b, h, i, j);
            bool participates = in.evalMask();
            if (in.failed())
              return Status::error(in.error());
            count += participates ? 1 : 0;
          }
    pairs += count * repeat;
  }
  return Status::ok();
}

double attentionFlops(const dsl::Kernel &k, const Bindings &bind,
                      const std::map<std::string, HostTensor> &inputs) {
  int64_t pairs = 0;
  if (!countParticipatingPairs(k, inputs, bind, pairs))
    return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(pairs) *
         static_cast<double>(2 * bind.D + 2 * bind.Dv);
}

namespace {

/// The weights of the planes [b0, b1) x [h0, h1) into a new F64 tensor of
/// `shape` (checked against kMaxReferenceWeights).
Status weightsOf(const dsl::Kernel &k, const std::map<std::string, HostTensor> &inputs,
                 const Bindings &bind, const char *what, std::vector<int64_t> shape,
                 int64_t b0, int64_t b1, int64_t h0, int64_t h1, HostTensor &weights,
                 std::vector<uint8_t> *participates) {
  if (Status s = checkWeightsSize(what, shape); !s)
    return s;
  HostTensor w(ElemType::F64, shape);
  std::vector<uint8_t> admitted;
  if (participates)
    admitted.assign(static_cast<size_t>(w.numel()), 0);
  Status s = weightsOfPlanes(k, inputs, bind, b0, b1, h0, h1, w.as<double>(),
                             participates ? admitted.data() : nullptr);
  if (!s)
    return s;
  weights = std::move(w);
  if (participates)
    *participates = std::move(admitted);
  return Status::ok();
}

} // namespace

Status referenceWeights(const dsl::Kernel &k,
                        const std::map<std::string, HostTensor> &inputs,
                        const Bindings &bind, HostTensor &weights,
                        std::vector<uint8_t> *participates) {
  return weightsOf(k, inputs, bind, "the weights", {bind.B, bind.H, bind.Lq, bind.Lk}, 0,
                   bind.B, 0, bind.H, weights, participates);
}

Status referenceWeightsOfHead(const dsl::Kernel &k,
                              const std::map<std::string, HostTensor> &inputs,
                              const Bindings &bind, int64_t b, int64_t h,
                              HostTensor &weights,
                              std::vector<uint8_t> *participates) {
  if (b < 0 || b >= bind.B)
    return Status::error("batch index b = " + std::to_string(b) +
                         " is outside [0, " + std::to_string(bind.B) +
                         ") (dimension 0 (B) of 'q')");
  if (h < 0 || h >= bind.H)
    return Status::error("head index h = " + std::to_string(h) +
                         " is outside [0, " + std::to_string(bind.H) +
                         ") (dimension 1 (H) of 'q')");
  return weightsOf(k, inputs, bind, "the weights of one head", {bind.Lq, bind.Lk}, b, b + 1,
                   h, h + 1, weights, participates);
}

} // namespace attn::runtime
