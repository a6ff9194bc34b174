// AttnToHalide: builds the Halide algorithm of an `attn.kernel` (see
// AttnToHalide.h). The only translation unit where MLIR and Halide meet.
//
// Halide calls may throw; MLIR is built without exceptions, so ops are
// visited with plain loops in this file (never from an MLIR callback such as
// Operation::walk) and nothing here is called from MLIR code.
#include "attn/compiler/AttnToHalide.h"
#include "Translator.h"

#include "attn/compiler/Dialect.h"
#include "attn/compiler/LinearAttention.h"
#include "attn/compiler/Passes.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>

using namespace Halide;
using Halide::Internal::const_false;
using Halide::Internal::const_true;
using Halide::Internal::make_bool;
using Halide::Internal::make_const;
using mlir::Operation;
using mlir::Value;

namespace attn {

namespace lower {

[[noreturn]] void unsupported(Operation *op, const std::string &what) {
  std::string loc;
  llvm::raw_string_ostream os(loc);
  op->getLoc().print(os);
  throw CompileError("attnc: cannot lower " + what + " (" + os.str() + ")");
}

Type halideType(mlir::Type t) {
  if (t.isF32()) return Float(32);
  if (t.isF64()) return Float(64);
  if (t.isF16()) return Float(16);
  if (t.isBF16()) return BFloat(16);
  if (t.isInteger(1)) return Bool();
  if (t.isInteger(32)) return Int(32);
  if (t.isInteger(64)) return Int(64);
  return Handle();
}

/// Whether a score takes part: masked pairs (and user scores of -inf) are
/// -inf. Kernels use Halide's default float semantics, under which LLVM may
/// fold comparisons against infinities (is_inf included), so the test is a
/// comparison with a finite threshold no real score reaches.
Expr live(Expr score) {
  return score > make_const(score.type(), score.type().bits() == 64 ? -1e307 : -1e38);
}

Expr floorDiv(Expr a, Expr b) {
  // Halide's integer division is Euclidean: floor for b > 0.
  return select(b < 0, (-a) / (-b), a / b);
}

/// A tensor's kernel parameter name: its call name with '.' (a source's
/// SOURCE.k) as '_' (Sema keeps the two apart).
std::string paramName(const std::string &callName) {
  std::string n = callName;
  std::replace(n.begin(), n.end(), '.', '_');
  return n;
}

void Translator::declareTensor(unsigned idx, std::map<std::string, Expr> &shared) {
  auto dict = llvm::cast<mlir::DictionaryAttr>(kernel_.getTensors()[idx]);
  std::string name = dict.getAs<mlir::StringAttr>("name").str();
  auto dims = dict.getAs<mlir::ArrayAttr>("dims");
  int n = dims.size();
  ranks_[name] = n;
  for (size_t t = 0; t < alg_.tensors.size(); ++t)
    if (alg_.tensors[t].name() == paramName(name)) { // shared by several sources
      tensorIndex_[name] = (int)t;
      for (int k = 0; k < n; ++k)
        if (auto s = llvm::dyn_cast<mlir::StringAttr>(dims[k]))
          sizes_[s.str()] = shared.at(s.str());
      return;
    }
  ImageParam p(halideType(dict.getAs<mlir::TypeAttr>("type").getValue()), n, paramName(name));
  for (int k = 0; k < n; ++k) {
    // Declared dim k (C order) is Halide dimension n-1-k.
    auto dim = p.dim(n - 1 - k);
    dim.set_min(0);
    if (auto lit = llvm::dyn_cast<mlir::IntegerAttr>(dims[k])) {
      dim.set_extent((int)lit.getInt());
      continue;
    }
    std::string sname = llvm::cast<mlir::StringAttr>(dims[k]).str();
    auto it = shared.find(sname);
    if (it == shared.end())
      shared[sname] = dim.extent();
    else
      dim.set_extent(it->second); // checked by the generated code
    sizes_[sname] = shared[sname];
  }
  tensorIndex_[name] = (int)alg_.tensors.size();
  alg_.tensors.push_back(p);
}

void Translator::declareParams() {
  for (auto [idx, a] : llvm::enumerate(kernel_.getParams())) {
    auto dict = llvm::cast<mlir::DictionaryAttr>(a);
    std::string name = dict.getAs<mlir::StringAttr>("name").str();
    bool known = false;
    for (const Halide::Param<> &p : alg_.params)
      known = known || p.name() == name;
    if (!known)
      alg_.params.emplace_back(halideType(dict.getAs<mlir::TypeAttr>("type").getValue()), name);
  }
}

unsigned Translator::argsUsedBy(Value v) {
  if (auto arg = llvm::dyn_cast<mlir::BlockArgument>(v))
    return 1u << arg.getArgNumber();
  unsigned mask = 0;
  Operation *op = v.getDefiningOp();
  if (llvm::isa<attn::DotOp>(op))
    return 0xF;
  if (auto s = llvm::dyn_cast<attn::SqnormOp>(op))
    return s.getOf() == "q" ? 0x7 : 0xB; // (b, h, i) or (b, h, j)
  for (Value operand : op->getOperands())
    mask |= argsUsedBy(operand);
  return mask;
}

Expr Translator::evalPoint(mlir::Region &region, const PointEnv &env) {
  return evalPointAll(region, env).front();
}

std::vector<Expr> Translator::evalPointAll(mlir::Region &region, const PointEnv &env) {
  std::map<void *, Expr> vals;
  bindArgs(region.front(), env, vals);
  return evalBlock(region.front(), vals, env);
}

void Translator::bindArgs(mlir::Block &block, const PointEnv &env, std::map<void *, Expr> &vals) {
  Expr args[5] = {env.b, env.h, env.i, env.j, env.c};
  for (unsigned a = 0; a < block.getNumArguments() && a < 5; ++a)
    vals[block.getArgument(a).getAsOpaquePointer()] = args[a];
}

std::vector<Expr> Translator::evalBlock(mlir::Block &block, std::map<void *, Expr> &vals,
                                        const PointEnv &env) {
  for (Operation &op : block) {
    if (auto y = llvm::dyn_cast<attn::YieldOp>(op)) {
      std::vector<Expr> out;
      for (Value v : y.getValues())
        out.push_back(vals.at(v.getAsOpaquePointer()));
      return out;
    }
    vals[op.getResult(0).getAsOpaquePointer()] = evalOp(&op, vals, env);
  }
  unsupported(block.getParentOp(), "a region without attn.yield");
}

std::map<void *, Expr> Translator::useConditions(mlir::Block &block,
                                                 const std::map<void *, Expr> &vals) {
  // LANGUAGE.md §8.2: `a && b` uses b only where a holds, `a || b` only
  // where a does not, select(c, x, y) x where c and y where !c. A value is
  // used where any of its users is (and uses it). Ops come in definition
  // order, so walking backwards visits every user before its operands.
  std::map<void *, Expr> cond;
  auto addUse = [&](Value v, Expr c) {
    Expr &e = cond[v.getAsOpaquePointer()];
    e = e.defined() ? (e || c) : c;
  };
  for (Operation &op : llvm::reverse(block)) {
    if (auto y = llvm::dyn_cast<attn::YieldOp>(op)) {
      for (Value v : y.getValues())
        addUse(v, const_true());
      continue;
    }
    auto it = cond.find(op.getResult(0).getAsOpaquePointer());
    if (it == cond.end())
      continue; // never used
    Expr c = it->second;
    llvm::StringRef name = op.getName().getStringRef();
    bool isBool = op.getResult(0).getType().isInteger(1);
    auto value = [&](unsigned n) { return vals.at(op.getOperand(n).getAsOpaquePointer()); };
    for (unsigned n = 0; n < op.getNumOperands(); ++n) {
      Expr edge = c;
      if (isBool && name == "arith.andi" && n == 1)
        edge = c && value(0);
      else if (isBool && name == "arith.ori" && n == 1)
        edge = c && !value(0);
      else if (name == "arith.select" && n == 1)
        edge = c && value(0);
      else if (name == "arith.select" && n == 2)
        edge = c && !value(0);
      addUse(op.getOperand(n), edge);
    }
  }
  return cond;
}

Expr Translator::evalOp(Operation *op, std::map<void *, Expr> &vals, const PointEnv &env) {
  auto in = [&](unsigned n) { return vals.at(op->getOperand(n).getAsOpaquePointer()); };
  Type rt = op->getNumResults() ? halideType(op->getResult(0).getType()) : Type();
  Type ct = alg_.computeType;
  llvm::StringRef name = op->getName().getStringRef();

  if (auto c = llvm::dyn_cast<mlir::arith::ConstantOp>(op)) {
    mlir::Attribute v = c.getValue();
    if (auto f = llvm::dyn_cast<mlir::FloatAttr>(v))
      return rt.bits() == 64 ? Expr(f.getValueAsDouble()) : Expr((float)f.getValueAsDouble());
    if (auto i = llvm::dyn_cast<mlir::IntegerAttr>(v)) {
      if (rt.is_bool())
        return make_const(Bool(), i.getValue().getBoolValue());
      return make_const(rt, i.getValue().getSExtValue());
    }
    unsupported(op, "a non-scalar constant");
  }
  if (name == "arith.addi" || name == "arith.addf") return in(0) + in(1);
  if (name == "arith.subi" || name == "arith.subf") return in(0) - in(1);
  if (name == "arith.muli" || name == "arith.mulf") return in(0) * in(1);
  if (name == "arith.divf") return in(0) / in(1);
  if (name == "arith.floordivsi") return floorDiv(in(0), in(1));
  if (name == "arith.negf") return -in(0);
  if (name == "arith.andi") return rt.is_bool() ? (in(0) && in(1)) : (in(0) & in(1));
  if (name == "arith.ori") return rt.is_bool() ? (in(0) || in(1)) : (in(0) | in(1));
  if (name == "arith.xori") return rt.is_bool() ? (in(0) != in(1)) : (in(0) ^ in(1));
  if (name == "arith.select") return select(in(0), in(1), in(2));
  if (name == "arith.minsi" || name == "arith.minimumf" || name == "arith.minnumf")
    return min(in(0), in(1));
  if (name == "arith.maxsi" || name == "arith.maximumf" || name == "arith.maxnumf")
    return max(in(0), in(1));
  if (name == "arith.extsi" || name == "arith.extui" || name == "arith.trunci" ||
      name == "arith.sitofp" || name == "arith.uitofp" || name == "arith.fptosi" ||
      name == "arith.extf" || name == "arith.truncf")
    return cast(rt, in(0));
  if (auto cmp = llvm::dyn_cast<mlir::arith::CmpIOp>(op)) {
    using P = mlir::arith::CmpIPredicate;
    Expr a = in(0), b = in(1);
    switch (cmp.getPredicate()) {
    case P::eq: return a == b;
    case P::ne: return a != b;
    case P::slt: return a < b;
    case P::sle: return a <= b;
    case P::sgt: return a > b;
    case P::sge: return a >= b;
    default: unsupported(op, "an unsigned integer comparison");
    }
  }
  if (auto cmp = llvm::dyn_cast<mlir::arith::CmpFOp>(op)) {
    using P = mlir::arith::CmpFPredicate;
    Expr a = in(0), b = in(1);
    switch (cmp.getPredicate()) {
    case P::OEQ: case P::UEQ: return a == b;
    case P::ONE: case P::UNE: return a != b;
    case P::OLT: case P::ULT: return a < b;
    case P::OLE: case P::ULE: return a <= b;
    case P::OGT: case P::UGT: return a > b;
    case P::OGE: case P::UGE: return a >= b;
    case P::AlwaysTrue: return const_true();
    case P::AlwaysFalse: return const_false();
    default: unsupported(op, "this float comparison");
    }
  }
  if (name == "math.exp") return exp(in(0));
  if (name == "math.exp2") return exp(in(0) * make_const(rt, M_LN2));
  if (name == "math.log") return log(in(0));
  if (name == "math.log2") return log(in(0)) * make_const(rt, 1.0 / M_LN2);
  if (name == "math.sqrt") return sqrt(in(0));
  if (name == "math.rsqrt") return make_const(rt, 1.0) / sqrt(in(0));
  if (name == "math.tanh") return tanh(in(0));
  if (name == "math.absf") return abs(in(0));
  if (name == "math.absi") return cast(rt, abs(in(0)));
  if (name == "math.floor") return floor(in(0));
  if (name == "math.ceil") return ceil(in(0));
  if (name == "math.powf") return pow(in(0), in(1));
  if (name == "math.sin") return sin(in(0));
  if (name == "math.cos") return cos(in(0));
  if (llvm::isa<attn::IntOp>(op)) {
    // Rounded toward -inf in f64 (exact for every f32), saturated to i32.
    // NaN gives 0. The test is on the bits: under fast-math a float
    // comparison may assume NaN away.
    Expr x = cast(Float(64), in(0));
    Expr r = cast(Int(32), clamp(floor(x), Expr(-2147483648.0), Expr(2147483647.0)));
    Expr bits = reinterpret(UInt(64), x) & Expr(uint64_t(0x7FFFFFFFFFFFFFFFull));
    return select(bits > Expr(uint64_t(0x7FF0000000000000ull)), make_const(Int(32), 0), r);
  }
  if (llvm::isa<attn::DotOp, attn::VectorDotOp>(op)) return cast(rt, env.dot());
  if (auto e = llvm::dyn_cast<attn::ElemOp>(op))
    return cast(rt, env.elem(e.getVector().str(), in(0)));
  if (auto s = llvm::dyn_cast<attn::VectorSqnormOp>(op))
    return cast(rt, env.vsqnorm(s.getX().str()));
  if (auto s = llvm::dyn_cast<attn::SumOp>(op)) {
    // An inline reduction over the body, c = r in [0, N).
    RDom r(0, in(0), Halide::Internal::unique_name("rsum"));
    std::map<void *, Expr> inner = vals;
    mlir::Block &body = s.getBody().front();
    inner[body.getArgument(0).getAsOpaquePointer()] = r.x;
    return cast(rt, sum(r, evalBlock(body, inner, env).front()));
  }
  if (auto s = llvm::dyn_cast<attn::SqnormOp>(op))
    return cast(rt, s.getOf() == "q" ? env.sqnormQ() : env.sqnormK());
  if (auto s = llvm::dyn_cast<attn::SizeOp>(op)) return cast(Int(32), size(s.getName().str()));
  if (auto p = llvm::dyn_cast<attn::ParamOp>(op))
    return cast(rt, param(p.getName().str()));
  if (auto l = llvm::dyn_cast<attn::LoadOp>(op)) {
    std::string t = l.getTensor().str();
    ImageParam &p = tensor(t);
    int n = rank(t);
    std::vector<Expr> idx(n);
    for (int k = 0; k < n; ++k) {
      // Never read out of bounds; the runtime reports out-of-range indices.
      Expr e = cast(Int(32), in(k));
      idx[n - 1 - k] = clamp(e, 0, p.dim(n - 1 - k).extent() - 1);
    }
    return cast(rt, p(idx));
  }
  (void)ct;
  unsupported(op, "operation '" + name.str() + "'");
}

//===----------------------------------------------------------------------===//
// Interval evaluation: bounds of a region's values over a tile
//===----------------------------------------------------------------------===//

// "Unbounded" as a large finite value: kernels are compiled with Halide's
// default float semantics, which may assume values are finite.
Expr inf64() { return Expr(std::ldexp(1.0, 100)); }
Interval unknownInt() { return {-inf64(), inf64(), Expr(), Expr()}; }
Interval unknownBool() { return {Expr(), Expr(), const_true(), const_true()}; }
Interval point(Expr e) {
  Expr d = cast(Float(64), e);
  return {d, d, Expr(), Expr()};
}
Expr safeMul(Expr a, Expr b) { return select(a == Expr(0.0) || b == Expr(0.0), Expr(0.0), a * b); }

void Translator::share(Expr &e) {
  using namespace Halide::Internal;
  if (!e.defined() || e.as<Variable>() || is_const(e))
    return;
  std::string name = unique_name("iv");
  lets_.emplace_back(name, e);
  e = Variable::make(e.type(), name);
}

Expr Translator::wrapLets(Expr e) const {
  if (!e.defined())
    return e;
  for (auto it = lets_.rbegin(); it != lets_.rend(); ++it)
    e = Halide::Internal::Let::make(it->first, it->second, e);
  return e;
}

Expr Translator::maskMayHoldOnTile(Expr qt, Expr kb, Expr b, Expr h) {
  auto range = [](Expr t, int T, Expr extent) {
    return Interval{cast(Float(64), t * T), cast(Float(64), min(t * T + T, extent) - 1), Expr(),
                    Expr()};
  };
  std::map<unsigned, Interval> args{{0, point(b)},
                                    {1, point(h)},
                                    {2, range(qt, alg_.tileQ, size("__Lq"))},
                                    {3, range(kb, alg_.tileK, size("__Lk"))}};
  setTile({true, qt, kb, b, h});
  return evalInterval(kernel_.getMask(), args).mayTrue;
}

Interval Translator::evalInterval(mlir::Region &region, const std::map<unsigned, Interval> &args) {
  std::map<void *, Interval> vals;
  mlir::Block &block = region.front();
  for (auto &[n, iv] : args)
    vals[block.getArgument(n).getAsOpaquePointer()] = iv;
  lets_.clear();
  for (Operation &op : block) {
    if (auto y = llvm::dyn_cast<attn::YieldOp>(op)) {
      Interval r = vals.at(y.getValue().getAsOpaquePointer());
      r = {wrapLets(r.lo), wrapLets(r.hi), wrapLets(r.mayTrue), wrapLets(r.mayFalse)};
      lets_.clear();
      return r;
    }
    vals[op.getResult(0).getAsOpaquePointer()] = intervalOp(&op, vals);
  }
  unsupported(region.getParentOp(), "a region without attn.yield");
}

Interval Translator::intervalOp(Operation *op, std::map<void *, Interval> &vals) {
  // Every operand's bounds are shared (see share()) before an op combines
  // them; the bound vals entry is updated so later users share it too.
  auto in = [&](unsigned n) {
    Interval &v = vals.at(op->getOperand(n).getAsOpaquePointer());
    share(v.lo);
    share(v.hi);
    share(v.mayTrue);
    share(v.mayFalse);
    return v;
  };
  mlir::Type rt = op->getResult(0).getType();
  bool isBool = rt.isInteger(1);
  bool isInt = !isBool && rt.isSignlessInteger();
  llvm::StringRef name = op->getName().getStringRef();
  Interval unknown = isBool ? unknownBool() : unknownInt();
  if (!isBool && !isInt)
    return unknown; // floats are not tracked
  if (llvm::isa<attn::LoadOp>(op))
    return loadInterval(op);

  if (auto c = llvm::dyn_cast<mlir::arith::ConstantOp>(op)) {
    auto i = llvm::cast<mlir::IntegerAttr>(c.getValue());
    if (isBool) {
      bool v = i.getValue().getBoolValue();
      return {Expr(), Expr(), make_bool(v), make_bool(!v)};
    }
    return point(Expr((double)i.getValue().getSExtValue()));
  }
  if (auto s = llvm::dyn_cast<attn::SizeOp>(op)) return point(size(s.getName().str()));
  if (auto p = llvm::dyn_cast<attn::ParamOp>(op)) {
    Expr e = param(p.getName().str());
    if (isBool) return {Expr(), Expr(), e, !e};
    return point(e);
  }
  if (isBool) {
    if (name == "arith.andi") {
      Interval a = in(0), b = in(1);
      return {Expr(), Expr(), a.mayTrue && b.mayTrue, a.mayFalse || b.mayFalse};
    }
    if (name == "arith.ori") {
      Interval a = in(0), b = in(1);
      return {Expr(), Expr(), a.mayTrue || b.mayTrue, a.mayFalse && b.mayFalse};
    }
    if (name == "arith.xori") {
      Interval a = in(0), b = in(1);
      return {Expr(), Expr(), (a.mayTrue && b.mayFalse) || (a.mayFalse && b.mayTrue),
              (a.mayTrue && b.mayTrue) || (a.mayFalse && b.mayFalse)};
    }
    if (auto cmp = llvm::dyn_cast<mlir::arith::CmpIOp>(op)) {
      using P = mlir::arith::CmpIPredicate;
      Interval a = in(0), b = in(1);
      if (!a.lo.defined() || !b.lo.defined()) return unknownBool(); // bool operands
      switch (cmp.getPredicate()) {
      case P::slt: return {Expr(), Expr(), a.lo < b.hi, a.hi >= b.lo};
      case P::sle: return {Expr(), Expr(), a.lo <= b.hi, a.hi > b.lo};
      case P::sgt: return {Expr(), Expr(), a.hi > b.lo, a.lo <= b.hi};
      case P::sge: return {Expr(), Expr(), a.hi >= b.lo, a.lo < b.hi};
      case P::eq:
        return {Expr(), Expr(), a.lo <= b.hi && b.lo <= a.hi,
                !(a.lo == a.hi && b.lo == b.hi && a.lo == b.lo)};
      case P::ne:
        return {Expr(), Expr(), !(a.lo == a.hi && b.lo == b.hi && a.lo == b.lo),
                a.lo <= b.hi && b.lo <= a.hi};
      default: return unknownBool();
      }
    }
    if (name == "arith.select") {
      Interval c = in(0), x = in(1), y = in(2);
      return {Expr(), Expr(), (c.mayTrue && x.mayTrue) || (c.mayFalse && y.mayTrue),
              (c.mayTrue && x.mayFalse) || (c.mayFalse && y.mayFalse)};
    }
    return unknownBool();
  }
  // Integers.
  if (name == "arith.extsi" || name == "arith.trunci") return in(0);
  if (name == "arith.addi") {
    Interval a = in(0), b = in(1);
    return {a.lo + b.lo, a.hi + b.hi, Expr(), Expr()};
  }
  if (name == "arith.subi") {
    Interval a = in(0), b = in(1);
    return {a.lo - b.hi, a.hi - b.lo, Expr(), Expr()};
  }
  if (name == "arith.muli") {
    Interval a = in(0), b = in(1);
    Expr p1 = safeMul(a.lo, b.lo), p2 = safeMul(a.lo, b.hi), p3 = safeMul(a.hi, b.lo),
         p4 = safeMul(a.hi, b.hi);
    return {min(min(p1, p2), min(p3, p4)), max(max(p1, p2), max(p3, p4)), Expr(), Expr()};
  }
  if (name == "arith.floordivsi") {
    Interval a = in(0), b = in(1);
    // A divisor interval that excludes 0: floor(a / b) is monotone in each
    // argument on it, so the extremes are at the corners.
    Expr q1 = floor(a.lo / b.lo), q2 = floor(a.lo / b.hi), q3 = floor(a.hi / b.lo),
         q4 = floor(a.hi / b.hi);
    Expr ok = b.lo > Expr(0.0) || b.hi < Expr(0.0);
    Expr lo = min(min(q1, q2), min(q3, q4)), hi = max(max(q1, q2), max(q3, q4));
    // Corners at ±inf give NaN (inf / inf): treat as unknown.
    lo = select(ok && !is_nan(lo), lo, -inf64());
    hi = select(ok && !is_nan(hi), hi, inf64());
    return {lo, hi, Expr(), Expr()};
  }
  if (name == "arith.minsi") {
    Interval a = in(0), b = in(1);
    return {min(a.lo, b.lo), min(a.hi, b.hi), Expr(), Expr()};
  }
  if (name == "arith.maxsi") {
    Interval a = in(0), b = in(1);
    return {max(a.lo, b.lo), max(a.hi, b.hi), Expr(), Expr()};
  }
  if (name == "math.absi") {
    Interval a = in(0);
    return {select(a.lo >= Expr(0.0), a.lo, select(a.hi <= Expr(0.0), -a.hi, Expr(0.0))), max(-a.lo, a.hi),
            Expr(), Expr()};
  }
  if (name == "arith.select") {
    Interval c = in(0), x = in(1), y = in(2);
    Expr lo = select(c.mayTrue, select(c.mayFalse, min(x.lo, y.lo), x.lo), y.lo);
    Expr hi = select(c.mayTrue, select(c.mayFalse, max(x.hi, y.hi), x.hi), y.hi);
    return {lo, hi, Expr(), Expr()};
  }
  return unknownInt(); // anything else: no knowledge
}

//===----------------------------------------------------------------------===//
// Index checks
//===----------------------------------------------------------------------===//

Expr Translator::evalSlice(Value value, const PointEnv &env) {
  // Evaluate only the backward slice of `value`: the values it depends on.
  std::map<void *, Expr> vals;
  mlir::Block &block = *value.getParentBlock();
  Expr args[4] = {env.b, env.h, env.i, env.j};
  for (int a = 0; a < 4; ++a)
    vals[block.getArgument(a).getAsOpaquePointer()] = args[a];
  std::vector<Value> stack{value};
  while (!stack.empty()) {
    Value v = stack.back();
    if (vals.count(v.getAsOpaquePointer())) {
      stack.pop_back();
      continue;
    }
    Operation *def = v.getDefiningOp();
    bool ready = true;
    for (Value in : def->getOperands())
      if (!vals.count(in.getAsOpaquePointer())) {
        stack.push_back(in);
        ready = false;
      }
    if (ready) {
      vals[v.getAsOpaquePointer()] = evalOp(def, vals, env);
      stack.pop_back();
    }
  }
  return vals.at(value.getAsOpaquePointer());
}

Interval Translator::loadInterval(Operation *load) {
  // An aux read whose indices depend on i but not j (or j but not i) is
  // bounded over a tile by the minimum and maximum of the values it reads
  // for the tile's rows (or the block's keys): per-tile summaries computed
  // once per call in O(number of tokens). A read depending on b and h only
  // is exact. Other reads are unknown.
  Value result = load->getResult(0);
  bool isBool = result.getType().isInteger(1);
  // attn-analyze-mask says which tile index a read's summary follows;
  // without it (the pass did not run), find out from the read's slice.
  unsigned used = argsUsedBy(result);
  bool onI = used & 4, onJ = used & 8;
  if (auto kind = load->getAttrOfType<mlir::StringAttr>("attn.summary")) {
    onI = kind == "query-tile" || kind == "pair";
    onJ = kind == "key-block" || kind == "pair";
  }
  if ((onI && onJ) || !tile_.defined)
    return isBool ? unknownBool() : unknownInt();
  auto asInterval = [&](Expr lo, Expr hi) {
    if (isBool)
      return Interval{Expr(), Expr(), hi != 0, lo == 0};
    return Interval{cast(Float(64), lo), cast(Float(64), hi), Expr(), Expr()};
  };
  Var t("t"), hv("h"), bv("b");
  if (!onI && !onJ) {
    PointEnv env;
    env.b = tile_.b;
    env.h = tile_.h;
    env.i = env.j = Expr(0);
    Expr v = cast(Int(64), evalSlice(result, env));
    return asInterval(v, v);
  }
  auto [it, fresh] = summaries_.try_emplace(std::make_pair(load, onI), Func());
  Func &summary = it->second;
  if (fresh) {
    // summary(t, h, b) = {min, max} of the read over tile t of i (or j).
    int T = onI ? alg_.tileQ : alg_.tileK;
    Expr extent = onI ? size("__Lq") : size("__Lk");
    RDom r(0, T, "rsum");
    Expr pos = min(t * T + r, extent - 1);
    PointEnv env;
    env.b = bv;
    env.h = hv;
    env.i = onI ? pos : Expr(0);
    env.j = onI ? Expr(0) : pos;
    Expr v = cast(Int(64), evalSlice(result, env));
    summary = Func(std::string("summary_") + (onI ? "q" : "k") + std::to_string(summaries_.size()));
    summary(t, hv, bv) = Tuple(Int(64).max(), Int(64).min());
    summary(t, hv, bv) = Tuple(min(summary(t, hv, bv)[0], v), max(summary(t, hv, bv)[1], v));
    alg_.tileSummaries.push_back(summary);
  }
  Expr tileIndex = onI ? tile_.qt : tile_.kb;
  return asInterval(summary(tileIndex, tile_.h, tile_.b)[0], summary(tileIndex, tile_.h, tile_.b)[1]);
}

} // namespace lower

using namespace lower;

//===----------------------------------------------------------------------===//
// The algorithm
//===----------------------------------------------------------------------===//

std::vector<Argument> AttentionAlgorithm::arguments() const {
  std::vector<Argument> args;
  for (const ImageParam &p : tensors)
    args.push_back(p);
  if (hasTileMap)
    args.push_back(tileMapInput);
  for (const Param<> &p : params)
    args.push_back(p);
  return args;
}

std::vector<Argument> inputArgumentsOf(const std::vector<ImageParam> &tensors,
                                       const std::vector<Param<>> &params) {
  std::vector<Argument> args(tensors.begin(), tensors.end());
  args.insert(args.end(), params.begin(), params.end());
  return args;
}

std::vector<Argument> AttentionAlgorithm::inputArguments() const {
  return inputArgumentsOf(tensors, params);
}

std::vector<Func> AttentionAlgorithm::outputs() const {
  if (outputLse)
    return {out, lse};
  return {out};
}

Pipeline AttentionAlgorithm::pipeline() const {
  Pipeline p(outputs());
  for (const auto &[cond, message] : requirements)
    p.add_requirement(cond, message);
  return p;
}

/// The literal extent of dimension `dim` of tensor number `tensor`, if any.
std::optional<int64_t> literalDim(attn::KernelOp kernel, int tensor, int dim) {
  auto dict = llvm::cast<mlir::DictionaryAttr>(kernel.getTensors()[tensor]);
  auto dims = dict.getAs<mlir::ArrayAttr>("dims");
  if (dim < 0 || dim >= (int)dims.size())
    return std::nullopt;
  if (auto lit = llvm::dyn_cast<mlir::IntegerAttr>(dims[dim]))
    return lit.getInt();
  return std::nullopt;
}

std::string kernelStrategy(Operation *op) {
  if (auto s = op->getAttrOfType<mlir::StringAttr>("strategy"))
    return s.str();
  return "masked";
}

Type kernelComputeType(Operation *op) {
  return halideType(llvm::cast<attn::KernelOp>(op).getComputeType());
}

int literalValueDim(Operation *op) {
  auto kernel = llvm::cast<attn::KernelOp>(op);
  auto dims = llvm::cast<mlir::DictionaryAttr>(kernel.getTensors()[2]).getAs<mlir::ArrayAttr>("dims");
  std::optional<int64_t> d = literalDim(kernel, 2, dims ? int(dims.size()) - 1 : -1);
  return d ? int(*d) : 0;
}

std::vector<Operation *> kernelOps(Operation *module, const std::string &name) {
  std::vector<Operation *> ops;
  for (mlir::Region &r : module->getRegions())
    for (mlir::Block &blk : r)
      for (Operation &op : blk)
        if (auto k = llvm::dyn_cast<attn::KernelOp>(op)) {
          llvm::StringRef sym = k.getSymName();
          bool source = k->getAttrOfType<mlir::StringAttr>("source") != nullptr;
          if (source ? sym.starts_with(name + ".") && sym.size() > name.size() + 1 &&
                           !sym.drop_front(name.size() + 1).contains('.')
                     : sym == name)
            ops.push_back(&op);
        }
  return ops;
}

namespace {
/// The name of tensor `idx` of a kernel op (its call name).
std::string opTensorName(attn::KernelOp kernel, unsigned idx) {
  return llvm::cast<mlir::DictionaryAttr>(kernel.getTensors()[idx])
      .getAs<mlir::StringAttr>("name")
      .str();
}
} // namespace

std::vector<Func> KeySource::stages() const {
  std::vector<Func> all;
  for (const Func *f : {&qT, &kf, &vf, &dotAcc, &dotAccFull, &scoreFull, &maskTile, &rawScore,
                        &score, &blockMax, &blockArg, &weight, &blockSum, &pvAcc})
    if (f->defined())
      all.push_back(*f);
  return all;
}

AttentionAlgorithm buildAlgorithm(const std::vector<Operation *> &ops, TileSizes tiles,
                                  bool skipTiles) {
  if (ops.empty())
    throw CompileError("attnc: no kernel to build");
  std::vector<attn::KernelOp> kops;
  for (Operation *o : ops)
    kops.push_back(llvm::cast<attn::KernelOp>(o));
  attn::KernelOp first = kops.front();
  bool grouped = first->getAttrOfType<mlir::StringAttr>("source") != nullptr;
  AttentionAlgorithm alg;
  alg.name = first.getSymName().str();
  if (grouped)
    alg.name = alg.name.substr(0, alg.name.rfind('.'));
  alg.normalize = first.getNormalize().str();
  alg.outputLse = first.getOutputLse();
  alg.computeType = halideType(first.getComputeType());
  for (size_t s = 0; s < ops.size(); ++s) {
    std::string st = kernelStrategy(ops[s]);
    if (st == "linear" && !skipTiles)
      st = ops[s]->getAttrOfType<mlir::BoolAttr>("linear_causal").getValue() ? "masked" : "dense";
    alg.strategy += (s ? "+" : "") + st;
  }
  alg.tileQ = tiles.q;
  alg.tileK = tiles.k;
  alg.regQ = tiles.regQ;
  alg.regK = tiles.regK;
  if (tiles.q % tiles.regQ || tiles.k % tiles.regK)
    throw CompileError("attnc: tile sizes must be multiples of the register tile sizes");
  if (auto t = first.getTies())
    alg.ties = t->str();
  if (auto d = first->getAttrOfType<mlir::StringAttr>("decode"); d && !grouped)
    alg.decode = d.str();
  if (auto c = first->getAttrOfType<mlir::FloatAttr>("decode_scale"); c && !grouped)
    alg.decodeScale = c.getValueAsDouble();
  if (auto g = first->getAttrOfType<mlir::FloatAttr>("decode_decay"); g && !grouped)
    alg.decodeDecay = g.getValueAsDouble();

  // One translator per source, over inputs declared in call order: q, each
  // source's k and v, then the aux tensors.
  std::vector<std::unique_ptr<Translator>> trs;
  for (attn::KernelOp k : kops)
    trs.push_back(std::make_unique<Translator>(k, alg));
  std::map<std::string, Expr> sharedSizes;
  trs[0]->declareTensor(0, sharedSizes);
  for (size_t s = 0; s < kops.size(); ++s) {
    trs[s]->declareTensor(0, sharedSizes);
    trs[s]->declareTensor(1, sharedSizes);
    trs[s]->declareTensor(2, sharedSizes);
  }
  for (size_t s = 0; s < kops.size(); ++s)
    for (unsigned t = 3; t < kops[s].getTensors().size(); ++t)
      trs[s]->declareTensor(t, sharedSizes);
  for (auto &tr : trs)
    tr->declareParams();

  const int TQ = alg.tileQ, TK = alg.tileK;
  Type ct = alg.computeType;
  ImageParam &q = alg.tensors[0];
  Expr D = q.dim(0).extent();
  // The ranges of b, h, hk, i, j: q's and k's dimensions, or with index maps
  // (and always with sources) the ranges region (LANGUAGE.md §8.1); every
  // source's B, H, Hk and Lq agree with the first's.
  Expr B, H, Hk, Lq;
  std::vector<Expr> Lks;
  std::vector<Expr> rangeChecks; // extents that must agree at run time
  for (size_t s = 0; s < kops.size(); ++s) {
    attn::KernelOp kernel = kops[s];
    if (kernel.hasIndexMaps()) {
      PointEnv none;
      std::vector<Expr> r = trs[s]->evalPointAll(kernel.getRanges(), none);
      if (s == 0)
        B = r[0], H = r[1], Hk = r[2], Lq = r[3];
      else
        for (auto [a, b] : {std::pair{B, r[0]}, {H, r[1]}, {Hk, r[2]}, {Lq, r[3]}})
          rangeChecks.push_back(a == b);
      Lks.push_back(r[4]);
      for (size_t n = 5; n + 1 < r.size(); n += 2)
        rangeChecks.push_back(r[n] == r[n + 1]);
    } else {
      ImageParam &k = trs[s]->tensor(opTensorName(kernel, 1));
      ImageParam &v = trs[s]->tensor(opTensorName(kernel, 2));
      Lq = q.dim(1).extent(), H = q.dim(2).extent(), B = q.dim(3).extent();
      Lks.push_back(k.dim(1).extent());
      Hk = k.dim(2).extent();
      // Key/value heads must match across k and v, batch across all three.
      v.dim(1).set_extent(Lks.back());
      v.dim(2).set_extent(Hk);
      k.dim(3).set_extent(B);
      v.dim(3).set_extent(B);
    }
    trs[s]->setExtents(Lq, Lks.back());
  }

  Var &d = alg.d, &dv = alg.dv, &ii = alg.ii, &jj = alg.jj, &qt = alg.qt, &kb = alg.kb,
      &h = alg.h, &b = alg.b, &i = alg.i;
  Var j("j"), hkv("hk");
  Expr group = max(H / Hk, 1);
  // Heads and batches are clamped where q, k, v are read: bounds inference
  // may narrow h or b to a value a select excludes (select(h == 16, ...)),
  // and reading out of bounds there would be an error.
  Expr hk = min(h / group, Hk - 1);
  Expr iq = qt * TQ + ii, jk = kb * TK + jj;
  Expr iClamped = min(iq, Lq - 1);
  Expr negInf = make_const(ct, -std::numeric_limits<double>::infinity());
  Expr zero = make_const(ct, 0.0);

  Expr hc = min(h, H - 1), bc = min(b, B - 1);
  // top-k is a softmax over the keys pass 1 selected.
  bool softmax = alg.normalize == "softmax" || alg.normalize == "topk";
  bool hardmax = alg.normalize == "hardmax";
  bool linear = alg.normalize == "linear";
  bool skipAnyTiles = skipTiles;
  Expr LkAll = Lks[0];
  for (size_t s = 1; s < Lks.size(); ++s)
    LkAll = LkAll + Lks[s];
  // top-k: K slots, or the number of keys when there are fewer (the same
  // result: every key is kept), so a K far above it costs O(keys), not
  // O(K), per key. A small K stays a constant, as the schedule's slot loop
  // is then of known size.
  Expr slots;
  if (alg.normalize == "topk") {
    int64_t K = *first.getTopk();
    slots = K <= 64 ? Expr((int)K) : min((int)K, LkAll);
  }
  // Data-dependent masks: each source's block test for the tile map.
  std::vector<Expr> tileTests(kops.size());
  // Index checks (LANGUAGE.md §8.2): every aux read and every `at` index
  // with the condition under which it is used, over symbolic (b, h, i, j);
  // each source collects its own sites.
  Var cb("cb"), ch("ch"), ci("ci"), cj("cj");
  // An index never depends on the head vectors (Sema); a condition that
  // reads them (the mask, a guard) counts as true here (docs/language.md).
  Var headValue("head_value");
  struct Site {
    IndexCheck check;
    Expr index, cond;
    /// Channel variables the index may read (a vector's c, a sum's), with
    /// their extents: more dimensions of the check's domain.
    std::vector<std::pair<std::string, Expr>> channels;
    Expr Lk, limit; // the source's key count; the extent the index stays below
  };
  std::vector<Site> sites;

  // The block stages of a source from its score: blockMax, weight,
  // blockSum, blockArg and pvAcc (LANGUAGE.md §5).
  auto defineBlockStages = [&](KeySource &src) {
    auto N = [&src](const std::string &n) { return src.name.empty() ? n : n + "_" + src.name; };
    Expr Lk = src.Lk;
    RVar rj = src.rj;
    src.weight = Func(N("weight"));
    src.pvAcc = Func(N("pvAcc"));
    Expr jr = min(kb * TK + rj, Lk - 1);
    if (softmax || hardmax) {
      src.blockMax = Func(N("blockMax"));
      src.blockMax(ii, qt, kb, h, b) = negInf;
      src.blockMax(ii, qt, kb, h, b) = max(src.blockMax(ii, qt, kb, h, b),
                                           src.score(ii, rj, qt, kb, h, b));
    }
    Expr sc = src.score(ii, jj, qt, kb, h, b);
    if (softmax) {
      Expr bm = src.blockMax(ii, qt, kb, h, b);
      src.weight(ii, jj, qt, kb, h, b) = select(live(sc), exp(sc - select(live(bm), bm, zero)), zero);
    } else if (hardmax) {
      // The keys of the block whose score equals the block's maximum exactly:
      // all of them (average), or the last / first of them (latest / first).
      Expr bm = src.blockMax(ii, qt, kb, h, b);
      Expr tied = live(sc) && sc == bm;
      if (alg.ties == "average") {
        src.weight(ii, jj, qt, kb, h, b) = select(tied, make_const(ct, 1.0), zero);
      } else {
        bool latest = alg.ties == "latest";
        src.blockArg = Func(N("blockArg"));
        src.blockArg(ii, qt, kb, h, b) = latest ? -1 : TK;
        Expr scj = src.score(ii, rj, qt, kb, h, b);
        Expr candidate = select(live(scj) && scj == bm, rj, latest ? -1 : TK);
        Expr current = src.blockArg(ii, qt, kb, h, b);
        src.blockArg(ii, qt, kb, h, b) = latest ? max(current, candidate) : min(current, candidate);
        src.weight(ii, jj, qt, kb, h, b) =
            select(jj == src.blockArg(ii, qt, kb, h, b), make_const(ct, 1.0), zero);
      }
    } else {
      Expr w;
      if (alg.normalize == "sigmoid")
        w = make_const(ct, 1.0) / (make_const(ct, 1.0) + exp(-sc));
      else if (alg.normalize == "relu")
        w = max(sc, zero);
      else
        w = sc;
      src.weight(ii, jj, qt, kb, h, b) = select(live(sc), w, zero);
    }
    if (softmax || hardmax || linear) {
      src.blockSum = Func(N("blockSum"));
      src.blockSum(ii, qt, kb, h, b) = zero;
      src.blockSum(ii, qt, kb, h, b) += src.weight(ii, rj, qt, kb, h, b);
    }
    src.pvAcc(dv, ii, qt, kb, h, b) = zero;
    src.pvAcc(dv, ii, qt, kb, h, b) +=
        src.weight(ii, rj, qt, kb, h, b) * src.vf(dv, jr, hk, b);
  };

  // The stages of each source, in file order (one for a kernel without
  // `source` blocks): its keys' positions in the order of ties and in the
  // tile map follow the previous sources'.
  Expr keyOffset = Expr(0), blockOffset = Expr(0);
  for (size_t s = 0; s < kops.size(); ++s) {
    attn::KernelOp kernel = kops[s];
    Translator &tr = *trs[s];
    alg.sources.emplace_back();
    KeySource &src = alg.sources.back();
    if (auto n = kernel->getAttrOfType<mlir::StringAttr>("source"))
      src.name = n.str();
    src.strategy = kernelStrategy(ops[s]);
    // The unanalysed kernel (skipTiles false) is the quadratic one, also for
    // what attn-select-strategy made linear.
    if (src.strategy == "linear" && !skipAnyTiles)
      src.strategy = kernel->getAttrOfType<mlir::BoolAttr>("linear_causal").getValue() ? "masked"
                                                                                      : "dense";
    src.accStage = (int)s + 1;
    src.kTensor = tr.tensorIndex(opTensorName(kernel, 1));
    src.vTensor = tr.tensorIndex(opTensorName(kernel, 2));
    Expr Lk = Lks[s];
    src.Lk = Lk;
    src.keyOffset = keyOffset;
    src.blockOffset = blockOffset;
    // Func and RDom names: those of a kernel without sources, or NAME_SOURCE.
    auto N = [&src](const std::string &n) { return src.name.empty() ? n : n + "_" + src.name; };
    ImageParam &k = alg.tensors[src.kTensor], &v = alg.tensors[src.vTensor];
    (void)v;
    // Where the rows of q, k and v are: [b, h, i, :] / [b, hk, j, :], or the
    // tensor's index map. A map is evaluated once per row into rowsOf(t)
    // (the indices, clamped into the tensor), which the schedule places with
    // the tile or block that gathers the rows.
    Func rowFuncs[3];
    const int tensorOf[3] = {0, src.kTensor, src.vTensor};
    auto rowIndices = [&](int t, Expr b0, Expr h0, Expr x) -> std::vector<Expr> {
      ImageParam &p = alg.tensors[tensorOf[t]];
      int n = p.dimensions();
      mlir::Region *map[3] = {&kernel.getQAt(), &kernel.getKAt(), &kernel.getVAt()};
      if (map[t]->empty())
        return {x, h0, b0}; // Halide order: innermost first
      if (!rowFuncs[t].defined()) {
        Var rx("rx"), rh("rh"), rb("rb");
        PointEnv env;
        env.b = rb;
        env.h = rh;
        env.i = t == 0 ? Expr(rx) : Expr(0);
        env.j = t == 0 ? Expr(0) : Expr(rx);
        std::vector<Expr> idx = tr.evalPointAll(*map[t], env);
        std::vector<Expr> clamped;
        for (int m = 0; m + 1 < n; ++m) // declared dim m is Halide dim n-1-m
          clamped.push_back(clamp(cast(Int(32), idx[m]), 0, p.dim(n - 1 - m).extent() - 1));
        rowFuncs[t] = Func(N(std::string("rows_") + "qkv"[t]));
        if (clamped.size() == 1)
          rowFuncs[t](rx, rh, rb) = clamped[0];
        else
          rowFuncs[t](rx, rh, rb) = Tuple(clamped);
        alg.rowMaps.push_back(rowFuncs[t]);
      }
      std::vector<Expr> out(n - 1);
      FuncRef ref = rowFuncs[t](x, h0, b0);
      for (int m = 0; m + 1 < n; ++m)
        out[n - 2 - m] = n == 2 ? Expr(ref) : Expr(ref[m]);
      return out;
    };
    // Element c of the row of tensor t (0 q, 1 k, 2 v) for (b0, h0 or hk, x).
    auto readRow = [&](int t, Expr c, Expr x, Expr h0, Expr b0) {
      std::vector<Expr> at{c};
      for (Expr e : rowIndices(t, b0, h0, x))
        at.push_back(e);
      return alg.tensors[tensorOf[t]](at);
    };
    // An element in the compute type. On GPU targets bf16 is widened by its
    // bits (Halide's bf16 -> f32 cast aborts LLVM's GPU back ends).
    auto widen = [&](Expr x) {
      if (tiles.gpu && x.type().is_bfloat() && ct == Float(32))
        return reinterpret(Float(32), cast(UInt(32), reinterpret(UInt(16), x)) << 16);
      return cast(ct, x);
    };
    src.kGathered = !kernel.getKAt().empty();
    src.vGathered = !kernel.getVAt().empty();
    src.kf = Func(N("kf"));
    src.kf(d, j, hkv, b) = widen(readRow(1, d, j, min(hkv, Hk - 1), bc));
    // Value channels are clamped so register tiles may overhang Dv.
    src.vf = Func(N("vf"));
    src.vf(dv, j, hkv, b) =
        widen(readRow(2, min(dv, v.dim(0).extent() - 1), j, min(hkv, Hk - 1), bc));

    // Every op of the kernel's regions, nested ones (sums, vectors) included.
    std::vector<Operation *> allOps;
    {
      std::vector<mlir::Region *> todo;
      for (mlir::Region *r : {&kernel.getScore(), &kernel.getMask(), &kernel.getVectors()})
        todo.push_back(r);
      while (!todo.empty()) {
        mlir::Region *r = todo.back();
        todo.pop_back();
        for (mlir::Block &blk : *r)
          for (Operation &o : blk) {
            allOps.push_back(&o);
            for (mlir::Region &nested : o.getRegions())
              todo.push_back(&nested);
          }
      }
    }

    // sqnorm(q) / sqnorm(k), when used: small compute_root helpers.
    Func qnorm(N("qnorm")), knorm(N("knorm"));
    bool usesQnorm = false, usesKnorm = false;
    for (Operation *o : allOps)
      if (auto s = llvm::dyn_cast<attn::SqnormOp>(o))
        (s.getOf() == "q" ? usesQnorm : usesKnorm) = true;
    if (usesQnorm) {
      RDom r(0, D, N("rqn"));
      qnorm(i, h, b) = zero;
      Expr x = widen(readRow(0, r, min(i, Lq - 1), hc, bc));
      qnorm(i, h, b) += x * x;
      alg.extra.push_back(qnorm);
    }
    if (usesKnorm) {
      RDom r(0, D, N("rkn"));
      knorm(j, hkv, b) = zero;
      Expr x = widen(readRow(1, r, min(j, Lk - 1), min(hkv, Hk - 1), bc));
      knorm(j, hkv, b) += x * x;
      alg.extra.push_back(knorm);
    }

    // Channel vectors (LANGUAGE.md §8.3): vec_NAME(c, x, h, b) with x = i (query
    // side, h the head) or j (key side, h = hk); vec_NAME(c) for constants.
    // Each is computed once per call for every row (compute_root), never per
    // pair; vsq_NAME(x, h, b) is its sqnorm.
    struct Vector {
      std::string side;
      Expr length;
      Func f, sq;
    };
    std::map<std::string, Vector> vectors;
    // Element `idx` of vector `name` (q, k or a channel vector) for row x of
    // head hh (h or hk) and batch bb.
    auto vectorElem = [&](const std::string &name, Expr idx, Expr x, Expr hh, Expr bb) -> Expr {
      if (name == "q")
        return widen(readRow(0, clamp(idx, 0, D - 1), x, hh, bb));
      if (name == "k")
        return widen(readRow(1, clamp(idx, 0, D - 1), x, min(hh, Hk - 1), bb));
      Vector &vec = vectors.at(name);
      Expr c = clamp(idx, 0, vec.length - 1);
      return vec.side == "constant" ? vec.f(c) : vec.f(c, x, hh, bb);
    };
    auto vectorSqnorm = [&](const std::string &name, Expr x, Expr hh, Expr bb) -> Expr {
      Vector &vec = vectors.at(name);
      if (!vec.sq.defined()) {
        RDom r(0, vec.length, "rvsq");
        Var vx("x"), vh("h"), vb("b");
        vec.sq = Func(N("vsq_" + name));
        Expr e = vec.side == "constant" ? vec.f(r) : vec.f(r, vx, vh, vb);
        if (vec.side == "constant")
          vec.sq() = sum(r, e * e);
        else
          vec.sq(vx, vh, vb) = sum(r, e * e);
        alg.extra.push_back(vec.sq);
      }
      return vec.side == "constant" ? vec.sq() : vec.sq(x, hh, bb);
    };
    if (!kernel.getVectors().empty()) {
      for (Operation &o : kernel.getVectors().front()) {
        auto vop = llvm::dyn_cast<attn::VectorOp>(o);
        if (!vop)
          continue;
        std::string name = vop.getName().str(), side = vop.getSide().str();
        Vector vec;
        vec.side = side;
        if (auto lit = llvm::dyn_cast<mlir::IntegerAttr>(vop.getLength()))
          vec.length = Expr((int)lit.getInt());
        else
          vec.length = tr.size(llvm::cast<mlir::StringAttr>(vop.getLength()).str());
        Var vc("c"), vx("x"), vh("h"), vb("b");
        PointEnv env;
        bool query = side == "query", key = side == "key";
        env.b = key || query ? Expr(vb) : Expr(0);
        env.h = key || query ? Expr(vh) : Expr(0);
        env.i = query ? Expr(vx) : Expr(0);
        env.j = key ? Expr(vx) : Expr(0);
        env.c = vc;
        env.elem = [&, query, key, vx, vh, vb](const std::string &n, Expr idx) {
          return vectorElem(n, idx, query || key ? Expr(vx) : Expr(0),
                            query || key ? Expr(vh) : Expr(0), query || key ? Expr(vb) : Expr(0));
        };
        env.vsqnorm = [&, vx, vh, vb](const std::string &n) { return vectorSqnorm(n, vx, vh, vb); };
        env.sqnormQ = [&, vx, vh, vb] { return qnorm(vx, vh, vb); };
        env.sqnormK = [&, vx, vh, vb] { return knorm(vx, vh, vb); };
        env.dot = [&] { return make_const(ct, 0.0); }; // Sema: no dot inside a vector
        Expr value = cast(ct, tr.evalPoint(vop.getBody(), env));
        vec.f = Func(N("vec_" + name));
        if (side == "constant")
          vec.f(vc) = value;
        else
          vec.f(vc, vx, vh, vb) = value;
        alg.vectors.push_back(vec.f);
        vectors.emplace(name, vec);
      }
    }

    // What q.k multiplies: q and k, or the two vectors of dot(x, y).
    std::string dotQ = "q", dotK = "k";
    for (Operation *o : allOps)
      if (auto d = llvm::dyn_cast<attn::VectorDotOp>(o)) {
        dotQ = d.getX().str();
        dotK = d.getY().str();
      }
    Expr dotLength = dotQ == "q" ? D : vectors.at(dotQ).length;

    if (src.strategy == "linear") {
      // LANGUAGE.md §8.4 in O(L) (LinearAttention.h): the features are the two
      // vectors of dot(x, y) (q and k for dot(q, k)), the score's constant
      // folded into the query's.
      double scale = kernel->getAttrOfType<mlir::FloatAttr>("linear_scale").getValueAsDouble();
      bool causal = kernel->getAttrOfType<mlir::BoolAttr>("linear_causal").getValue();
      Var n("n"), x("x"), hh("hh"), bb("bb");
      Func fq(N("linFq")), fk(N("linFk")), vals(N("linV"));
      fq(n, x, hh, bb) = vectorElem(dotQ, n, min(x, Lq - 1), min(hh, H - 1), min(bb, B - 1)) *
                         make_const(ct, scale);
      fk(n, x, hh, bb) = vectorElem(dotK, n, min(x, Lk - 1), min(hh, Hk - 1), min(bb, B - 1));
      vals(dv, x, hh, bb) = widen(readRow(2, min(dv, v.dim(0).extent() - 1), min(x, Lk - 1),
                                             min(hh, Hk - 1), min(bb, B - 1)));
      // A decay pow(g, i - j): g per query head, from the score's slice.
      Func decay;
      if (mlir::Value g = attn::matchLinearScore(kernel).decayBase) {
        PointEnv genv;
        genv.b = 0;
        genv.h = min(hh, H - 1);
        genv.i = 0;
        genv.j = 0;
        decay = Func(N("linDecay"));
        decay(hh) = cast(ct, tr.evalSlice(g, genv));
        if (kernel->getAttr("decode_decay_per_head")) {
          // For the decoder: g of every head, from h alone (no inputs).
          genv.h = hh;
          alg.decayTable = Func(N("decayTable"));
          alg.decayTable(hh) = cast(Float(64), cast(ct, tr.evalSlice(g, genv)));
        }
      }
      alg.linear = buildLinearAttention(fq, fk, vals, dotLength, Lq, Lk, group, Hk, causal,
                                        alg.normalize == "linear", ct, decay);
      if (kernel->getAttr("decode_features")) {
        // For the decoder: the features of the rows it is given (f64).
        alg.featureQ = Func(N("featureQ"));
        alg.featureQ(n, x, hh, bb) = cast(Float(64), fq(n, x, hh, bb));
        alg.featureK = Func(N("featureK"));
        alg.featureK(n, x, hh, bb) = cast(Float(64), fk(n, x, hh, bb));
        for (Operation &o : kernel.getVectors().front())
          if (auto vop = llvm::dyn_cast<attn::VectorOp>(o); vop && vop.getName() == dotQ) {
            if (auto lit = llvm::dyn_cast<mlir::IntegerAttr>(vop.getLength()))
              alg.featureLength = std::to_string(lit.getInt());
            else
              alg.featureLength = llvm::cast<mlir::StringAttr>(vop.getLength()).str();
          }
      }
      alg.linearInputs = {fq, fk, vals};
    } else {

      src.qT = Func(N("qT"));
      std::optional<int64_t> literalD = literalDim(kernel, 0, q.dimensions() - 1); // q's last dim
      src.bf16Pairs = !tiles.gpu && q.type() == BFloat(16) && k.type() == BFloat(16) && ct == Float(32) &&
                      literalD && *literalD % 2 == 0 && dotQ == "q";
      Expr dotTerm; // the summand of q.k over the reduction domain
      if (src.bf16Pairs) {
        // bf16 q.k as a sum of products of adjacent pairs, so that a target with
        // BF16 dot-product instructions (vdpbf16ps) can use them: the query tile
        // is stored as (d % 2, ii, d / 2).
        Var di("di"), dp("dp");
        src.qT(di, ii, dp, qt, h, b) = readRow(0, dp * 2 + di, min(qt * TQ + ii, Lq - 1), hc, bc);
        RDom rd(0, 2, 0, int(*literalD / 2), N("rd"));
        src.rd = RVar(rd.x);
        src.rdPair = RVar(rd.y);
        dotTerm = cast(ct, src.qT(rd.x, ii, rd.y, qt, h, b)) *
                  widen(readRow(1, rd.y * 2 + rd.x, min(jk, Lk - 1), hk, bc));
      } else {
        src.qT(ii, d, qt, h, b) = vectorElem(dotQ, d, min(qt * TQ + ii, Lq - 1), hc, bc);
        RDom rd(0, dotLength, N("rd"));
        src.rd = RVar(rd.x);
        Func keys = src.kf;
        if (dotK != "k") { // the key vector of dot(x, y)
          keys = Func(N("kvec"));
          keys(d, j, hkv, b) = vectorElem(dotK, d, j, hkv, bc);
        }
        dotTerm = src.qT(ii, rd, qt, h, b) * keys(rd, min(jk, Lk - 1), hk, b);
      }
      // q.k for a block: dotAcc; its twin dotAccFull serves the register tiles
      // that a mask makes full (computed in their own loop).
      auto defineDot = [&](Func &f, const char *name) {
        f = Func(N(name));
        f(ii, jj, qt, kb, h, b) = zero;
        f(ii, jj, qt, kb, h, b) += dotTerm;
      };
      defineDot(src.dotAcc, "dotAcc");

      auto usesDot = [](mlir::Region &r) {
        for (Operation &o : r.front())
          if (llvm::isa<attn::DotOp, attn::VectorDotOp>(o))
            return true;
        return false;
      };
      src.scoreUsesDot = usesDot(kernel.getScore());
      src.maskUsesDot = usesDot(kernel.getMask());

      // The masked score (-inf for pairs that do not take part) at position
      // (iiE, jjE) of the tile (qt, kb).
      auto pointEnv = [&](Expr iiE, Expr jjE, Func dot) {
        Expr iE = qt * TQ + iiE, jE = kb * TK + jjE;
        PointEnv env;
        env.b = b;
        env.h = h;
        env.i = iE;
        env.j = jE;
        env.dot = [=] { return dot(iiE, jjE, qt, kb, h, b); };
        env.sqnormQ = [=] { return qnorm(min(iE, Lq - 1), h, b); };
        env.sqnormK = [=] { return knorm(min(jE, Lk - 1), hk, b); };
        // Elements of the query side read row i (head h), of the key side row j
        // (head hk); constants ignore both.
        auto sideOf = [&vectors](const std::string &n) {
          return n == "q" ? std::string("query") : n == "k" ? std::string("key") : vectors.at(n).side;
        };
        env.elem = [=, &vectorElem](const std::string &n, Expr idx) {
          bool key = sideOf(n) == "key";
          return vectorElem(n, idx, key ? min(jE, Lk - 1) : min(iE, Lq - 1), key ? hk : Expr(h), b);
        };
        env.vsqnorm = [=, &vectorSqnorm](const std::string &n) {
          bool key = sideOf(n) == "key";
          return vectorSqnorm(n, key ? min(jE, Lk - 1) : min(iE, Lq - 1), key ? hk : Expr(h), b);
        };
        return env;
      };
      // The mask is its own Func (uint8 per pair of a block) rather than an
      // expression inside the score's select: Halide derives the condition under
      // which a producer (the q.k register tile) is needed from select conditions
      // around its calls, and gets it wrong for some (e.g. `(i - j) % 4 == 0`
      // became `qt == 0`), skipping tiles that take part.
      if (src.strategy != "dense") {
        src.maskTile = Func(N("maskTile"));
        src.maskTile(ii, jj, qt, kb, h, b) =
            cast(UInt(8), tr.evalPoint(kernel.getMask(), pointEnv(ii, jj, src.dotAcc)));
      }
      auto maskedScore = [&](Expr iiE, Expr jjE, Func dot, bool evalMask) {
        PointEnv env = pointEnv(iiE, jjE, dot);
        Expr valid = env.j < Lk && env.i < Lq;
        if (evalMask && src.strategy != "dense")
          valid = valid && src.maskTile(iiE, jjE, qt, kb, h, b) != 0;
        return select(valid, tr.evalPoint(kernel.getScore(), env), negInf);
      };

      // Key blocks the mask provably empties for a query tile are skipped: a
      // conservative test of block `kbE` for the tile qt.
      Expr nKB = (Lk + TK - 1) / TK;
      // Without skipping (the unanalysed kernel), every pair is evaluated.
      bool skipTiles = skipAnyTiles && src.strategy != "dense";
      src.skipsTiles = skipTiles;
      auto blockMayTakePart = [&](Expr kbE) -> Expr {
        if (!skipTiles)
          return Expr();
        return tr.maskMayHoldOnTile(qt, kbE, b, h);
      };
      auto maskKind = kernel->getAttrOfType<mlir::StringAttr>("mask_kind");
      RDom rk(0, nKB, N("rk"));
      src.nBlocks = nKB;
      // The key-block test as a function of the block (split decoding visits
      // blocks through its own reduction).
      auto keyBlockTest = [&](Expr kbE) -> Expr {
        Expr p = blockMayTakePart(kbE);
        if (!p.defined())
          return p;
        if (!(maskKind && maskKind.getValue() == "data-dependent"))
          return p;
        if (tiles.mapQ && kops.size() == 1) // the map's tiles hold whole blocks of ours
          return alg.tileMapInput(kbE * TK / tiles.mapK, qt * TQ / tiles.mapQ, h, b) != 0;
        return alg.tileMapInput(s ? src.blockOffset + kbE : kbE, qt, h, b) != 0;
      };
      if (Expr p = blockMayTakePart(rk.x); p.defined()) {
        if (maskKind && maskKind.getValue() == "data-dependent") {
          // The source's blocks in the tile map start at its block offset.
          if (!alg.hasTileMap) {
            alg.hasTileMap = true;
            alg.tileMapInput = ImageParam(UInt(8), 4, "tilemap");
          }
          src.usesTileMap = true;
          tileTests[s] = kops.size() == 1 ? blockMayTakePart(kb)
                                          : blockMayTakePart(clamp(kb - src.blockOffset, 0, nKB - 1));
          rk.where(keyBlockTest(rk.x));
        } else {
          rk.where(p);
        }
      }
      src.rk = RVar(rk.x);
      src.blockTest = keyBlockTest(src.blockVar);
      RDom rj(0, TK, N("rj"));
      src.rj = RVar(rj.x);

      src.score = Func(N("score"));
      if (alg.normalize == "topk") {
        // Pass 1 keeps, per query row, the K best (score, j) pairs seen so far,
        // sorted by score then j (descending; a later key wins a tie), in K
        // slots updated from the last to the first for every key. Pass 2 is the
        // softmax over the keys that rank at least as high as the K-th pair.
        // Keys are ordered by source, then j: the key stored is keyOffset + j.
        src.rawScore = Func(N("rawScore"));
        src.rawScore(ii, jj, qt, kb, h, b) = maskedScore(ii, jj, src.dotAcc, true);
        if (!alg.topkState.defined()) {
          Var slot("slot");
          alg.topkState = Func("topkState");
          alg.topkState(slot, ii, qt, h, b) = Tuple(negInf, make_const(Int(32), -1));
        }
        // Innermost first: slot (reversed), key of the block, key block.
        RDom rt(0, slots, 0, TK, 0, nKB, N("rt"));
        if (Expr p = blockMayTakePart(rt.z); p.defined())
          rt.where(p);
        src.rtSlot = RVar(rt.x);
        src.rtKey = RVar(rt.y);
        src.rtBlock = RVar(rt.z);
        Expr x = src.rawScore(ii, rt.y, qt, rt.z, h, b);
        Expr jx = s ? src.keyOffset + rt.z * TK + rt.y : rt.z * TK + rt.y;
        Expr sl = slots - 1 - rt.x;
        Tuple old = alg.topkState(sl, ii, qt, h, b);
        Tuple prev = alg.topkState(max(sl - 1, 0), ii, qt, h, b);
        Expr insert = live(x) && x >= old[0];
        Expr shift = sl > 0 && x >= prev[0];
        alg.topkState(sl, ii, qt, h, b) =
            Tuple(select(insert, select(shift, prev[0], x), old[0]),
                  select(insert, select(shift, prev[1], jx), old[1]));
      } else if (!skipTiles) {
        src.score(ii, jj, qt, kb, h, b) = maskedScore(ii, jj, src.dotAcc, true);
      } else {
        // Register tiles (tiles.regQ x tiles.regK) of a block that the mask
        // provably empties are skipped, q.k included: the score is -inf, then
        // one update over the register tiles that are partial (the mask is
        // evaluated per pair) and one over those that are full (it is not).
        const int RQ = tiles.regQ, RK = tiles.regK;
        auto registerTiles = [&](const char *name, bool full) {
          RDom r(0, RQ, 0, RK, 0, TQ / RQ, 0, TK / RK, name);
          Expr tq = qt * TQ + r.z * RQ, tk = kb * TK + r.w * RK;
          std::map<unsigned, Interval> args{
              {0, point(b)},
              {1, point(h)},
              {2, Interval{cast(Float(64), tq), cast(Float(64), min(tq + RQ, Lq) - 1), Expr(), Expr()}},
              {3, Interval{cast(Float(64), tk), cast(Float(64), min(tk + RK, Lk) - 1), Expr(), Expr()}}};
          tr.setTile({true, qt, kb, b, h});
          Interval m = tr.evalInterval(kernel.getMask(), args);
          r.where(full ? !m.mayFalse : m.mayTrue && m.mayFalse);
          return r;
        };
        // One update of f over the full or the partial register tiles.
        auto updateTiles = [&](Func &f, Func &dot, bool full, const char *name) {
          RDom r = registerTiles(name, full);
          Expr iiR = r.z * RQ + r.x, jjR = r.w * RK + r.y;
          f(iiR, jjR, qt, kb, h, b) = maskedScore(iiR, jjR, dot, !full);
          return KeySource::TileUpdate{RVar(r.x), RVar(r.y), RVar(r.z), RVar(r.w)};
        };
        // Full register tiles first, into scoreFull (-inf elsewhere)...
        defineDot(src.dotAccFull, "dotAccFull");
        src.scoreFull = Func(N("scoreFull"));
        src.scoreFull(ii, jj, qt, kb, h, b) = negInf;
        src.fullTiles = updateTiles(src.scoreFull, src.dotAccFull, true, N("rf").c_str());
        // ...then the partial ones on top of them.
        src.score(ii, jj, qt, kb, h, b) = src.scoreFull(ii, jj, qt, kb, h, b);
        src.partialTiles = updateTiles(src.score, src.dotAcc, false, N("rs").c_str());
        src.scoreRegisterTiles = true;
      }

      // Top-k's scores read topkState, whose updates (one per source) must all
      // be defined first: its block stages follow the loop.
      if (alg.normalize != "topk")
        defineBlockStages(src);

    } // the quadratic stages

    // This source's index-check sites.
    PointEnv cenv;
    cenv.b = cb;
    cenv.h = ch;
    cenv.i = ci;
    cenv.j = cj;
    Expr head = cast(ct, Expr(headValue));
    cenv.dot = cenv.sqnormQ = cenv.sqnormK = [&] { return head; };
    cenv.elem = [&](const std::string &, Expr) { return head; };
    cenv.vsqnorm = [&](const std::string &) { return head; };
    auto headless = [&](Expr cond) {
      return Halide::Internal::expr_uses_var(cond, headValue.name()) ? const_true() : cond;
    };
    Expr takesPart = headless(tr.evalPoint(kernel.getMask(), cenv));
    size_t firstSite = sites.size();
    int qRank = alg.tensors[0].dimensions();
    // Sites of one block: aux reads, element reads (q[c], x[c]) and, inside
    // sums, the same with the sum's variable as one more dimension.
    std::function<std::vector<Expr>(mlir::Block &, std::map<void *, Expr> &, const PointEnv &, Expr,
                                    std::vector<std::pair<std::string, Expr>>)>
        collectBlock = [&](mlir::Block &blk, std::map<void *, Expr> &vals, const PointEnv &env,
                           Expr base, std::vector<std::pair<std::string, Expr>> chans) {
          std::vector<Expr> yielded = tr.evalBlock(blk, vals, env);
          std::map<void *, Expr> uses = tr.useConditions(blk, vals);
          for (Operation &op : blk) {
            auto u = uses.find(op.getNumResults() ? op.getResult(0).getAsOpaquePointer() : nullptr);
            if (u == uses.end())
              continue; // never used
            Expr cond = headless(base.defined() ? (base && u->second) : u->second);
            auto index = [&](unsigned n) { return vals.at(op.getOperand(n).getAsOpaquePointer()); };
            if (auto l = llvm::dyn_cast<attn::LoadOp>(op))
              for (unsigned n = 0; n < l.getIndices().size(); ++n)
                sites.push_back({IndexCheck{l.getTensor().str(), (int)n}, index(n), cond, chans});
            if (auto e = llvm::dyn_cast<attn::ElemOp>(op)) {
              std::string name = e.getVector().str();
              int dim = name == "q" ? qRank - 1 : name == "k" ? k.dimensions() - 1 : 0;
              if (name == "k")
                name = opTensorName(kernel, 1);
              sites.push_back({IndexCheck{name, dim}, index(0), cond, chans});
            }
            if (auto s = llvm::dyn_cast<attn::SumOp>(op)) {
              Var c(Halide::Internal::unique_name("csum"));
              std::map<void *, Expr> inner = vals;
              inner[s.getBody().front().getArgument(0).getAsOpaquePointer()] = c;
              auto more = chans;
              more.push_back({c.name(), index(0)});
              collectBlock(s.getBody().front(), inner, env, cond, more);
            }
          }
          return yielded;
        };
    auto collect = [&](mlir::Region &region, Expr base, Expr hArg, const char *mapOf,
                       std::vector<std::pair<std::string, Expr>> chans = {}, Expr c = Expr()) {
      if (region.empty())
        return;
      PointEnv env = cenv;
      env.h = hArg;
      env.c = c;
      std::map<void *, Expr> vals;
      mlir::Block &blk = region.front();
      Translator::bindArgs(blk, env, vals);
      std::vector<Expr> yielded = collectBlock(blk, vals, env, base, chans);
      if (mapOf)
        for (size_t n = 0; n < yielded.size(); ++n)
          sites.push_back({IndexCheck{mapOf, (int)n}, yielded[n], base.defined() ? base : const_true(),
                           chans});
    };
    Expr hkOf = ch / max(H / Hk, 1);
    collect(kernel.getMask(), Expr(), ch, nullptr);
    collect(kernel.getScore(), takesPart, ch, nullptr);
    std::string kName = opTensorName(kernel, 1), vName = opTensorName(kernel, 2);
    collect(kernel.getQAt(), takesPart, ch, "q");
    collect(kernel.getKAt(), takesPart, hkOf, kName.c_str());
    collect(kernel.getVAt(), takesPart, hkOf, vName.c_str());
    // Channel vectors: computed for the rows (keys) of pairs that take part,
    // every element (docs/language.md).
    if (!kernel.getVectors().empty())
      for (Operation &o : kernel.getVectors().front())
        if (auto vop = llvm::dyn_cast<attn::VectorOp>(o)) {
          Var c(Halide::Internal::unique_name("cvec"));
          Expr length;
          if (auto lit = llvm::dyn_cast<mlir::IntegerAttr>(vop.getLength()))
            length = Expr((int)lit.getInt());
          else
            length = tr.size(llvm::cast<mlir::StringAttr>(vop.getLength()).str());
          bool key = vop.getSide() == "key", constant = vop.getSide() == "constant";
          collect(vop.getBody(), constant ? const_true() : takesPart, key ? hkOf : Expr(ch), nullptr,
                  {{c.name(), length}}, c);
        }
    // The extent each of this source's indices must stay below: a tensor's
    // dimension or a channel vector's length.
    for (size_t n = firstSite; n < sites.size(); ++n) {
      Site &site = sites[n];
      site.Lk = Lk;
      if (auto vec = vectors.find(site.check.tensor); vec != vectors.end())
        site.limit = vec->second.length;
      else
        site.limit = tr.tensor(site.check.tensor)
                         .dim(tr.rank(site.check.tensor) - 1 - site.check.dim)
                         .extent();
    }

    keyOffset = keyOffset + Lk;
    blockOffset = blockOffset + (Lk + TK - 1) / TK;
  }

  if (alg.normalize == "topk") {
    // Pass 2: the keys that rank at least as high as the K-th of all
    // sources' (ties: the later key, sources in file order, then j).
    Expr t = alg.topkState(slots - 1, ii, qt, h, b)[0];
    Expr tj = alg.topkState(slots - 1, ii, qt, h, b)[1];
    for (size_t s = 0; s < alg.sources.size(); ++s) {
      KeySource &src = alg.sources[s];
      Expr raw = src.rawScore(ii, jj, qt, kb, h, b);
      Expr key = s ? src.keyOffset + jk : jk;
      src.score(ii, jj, qt, kb, h, b) = select(raw > t || (raw == t && key >= tj), raw, negInf);
      defineBlockStages(src);
    }
  }

  if (alg.hasTileMap) {
    // One tile map over every source's key blocks, one source after the
    // other; a source without a data-dependent mask has all its blocks.
    alg.tileMap = Func("tileMap");
    Expr test = tileTests.back().defined() ? tileTests.back() : const_true();
    for (int s = (int)kops.size() - 2; s >= 0; --s)
      test = select(kb < alg.sources[s + 1].blockOffset,
                    tileTests[s].defined() ? tileTests[s] : const_true(), test);
    alg.tileMap(kb, qt, h, b) = cast(UInt(8), select(test, 1, 0));
  }

  Expr qtOf = i / TQ, iiOf = i % TQ;
  // Grouped heads: H must be a multiple of Hk. The condition is loop
  // invariant; Halide checks it once, before any work.
  // GPU kernels check them before the pipeline (AttentionAlgorithm::
  // requirements): device code cannot report an error.
  auto headsGroupCheck = [&](Expr value) {
    auto check = [&](Expr cond, std::vector<Expr> message) {
      if (tiles.gpu) {
        alg.requirements.push_back({cond, message});
        return value;
      }
      std::vector<Expr> values{value};
      values.insert(values.end(), message.begin(), message.end());
      return require(cond, values);
    };
    for (Expr agree : rangeChecks)
      value = check(agree, {Expr("attnc: the dimensions that give one index variable's "
                                 "range differ (see the kernel's `range` in emit --stage ast)")});
    return check(H % Hk == 0, {Expr("attnc: query heads ("), H,
                               Expr(") must be a multiple of key/value heads ("), Hk, Expr(")")});
  };
  Type outType = q.type();
  // The output in q's type. GPU targets narrow f32 to bf16 by its bits,
  // rounding to nearest even (Halide's cast aborts LLVM's GPU back ends).
  auto toOut = [&](Expr x) {
    if (!tiles.gpu || !outType.is_bfloat())
      return cast(outType, x);
    Expr u = reinterpret(UInt(32), cast(Float(32), x));
    Expr rounded = (u + (make_const(UInt(32), 0x7FFF) + ((u >> 16) & 1))) >> 16;
    Expr bits = select(is_nan(cast(Float(32), x)), make_const(UInt(32), 0x7FC0), rounded);
    return reinterpret(BFloat(16), cast(UInt(16), bits));
  };
  alg.out = Func("out");
  alg.acc = Func("acc");
  // Split decoding (TileSizes::splitKeys): each split of the key blocks
  // has its own state, and acc merges them exactly (as flash-decoding).
  const bool plainSum = alg.normalize == "sigmoid" || alg.normalize == "relu" ||
                        alg.normalize == "none";
  alg.splitDecode = tiles.splitKeys > 0 && alg.sources.size() == 1 && !alg.linear &&
                    (softmax || plainSum);
  if (alg.splitDecode) {
    KeySource &src = alg.sources[0];
    Var &sp = alg.split;
    alg.splits = clamp(src.nBlocks, 1, tiles.splitKeys);
    Expr chunk = (src.nBlocks + alg.splits - 1) / alg.splits;
    RDom rs(0, chunk, "rsplit");
    Expr kbE = sp * chunk + rs.x;
    Expr test = kbE < src.nBlocks;
    if (src.blockTest.defined())
      test = test && Halide::Internal::substitute(src.blockVar.name(), kbE, src.blockTest);
    rs.where(test);
    alg.splitBlocks = RVar(rs.x);
    RDom rm(0, alg.splits, "rmerge");
    alg.mergeSplits = RVar(rm.x);
    alg.accSplit = Func("accSplit");
    Expr pv = src.pvAcc(dv, ii, qt, kbE, h, b);
    if (softmax) {
      alg.accSplit(dv, ii, qt, sp, h, b) = Tuple(zero, negInf, zero);
      FuncRef st = alg.accSplit(dv, ii, qt, sp, h, b);
      Expr O = st[0], m = st[1], l = st[2];
      Expr mb = src.blockMax(ii, qt, kbE, h, b), bs = src.blockSum(ii, qt, kbE, h, b);
      Expr mNew = max(m, mb);
      Expr a = select(live(m), exp(m - mNew), zero), c = select(live(mb), exp(mb - mNew), zero);
      alg.accSplit(dv, ii, qt, sp, h, b) = Tuple(O * a + pv * c, mNew, l * a + bs * c);
      // The merge: every split's state rescaled to the largest maximum.
      alg.splitMax = Func("splitMax");
      alg.splitMax(ii, qt, h, b) = negInf;
      alg.splitMax(ii, qt, h, b) = max(alg.splitMax(ii, qt, h, b), alg.accSplit(0, ii, qt, rm.x, h, b)[1]);
      Expr M = alg.splitMax(ii, qt, h, b);
      alg.acc(dv, ii, qt, h, b) = Tuple(zero, M, zero);
      FuncRef part = alg.accSplit(dv, ii, qt, rm.x, h, b);
      Expr w = select(live(Expr(part[1])), exp(Expr(part[1]) - M), zero);
      FuncRef cur = alg.acc(dv, ii, qt, h, b);
      alg.acc(dv, ii, qt, h, b) = Tuple(Expr(cur[0]) + Expr(part[0]) * w, M, Expr(cur[2]) + Expr(part[2]) * w);
      Expr Of = alg.acc(dv, iiOf, qtOf, h, b)[0], lf = alg.acc(dv, iiOf, qtOf, h, b)[2];
      alg.out(dv, i, h, b) = headsGroupCheck(toOut(select(lf > zero, Of / lf, zero)));
      if (alg.outputLse) {
        Expr mf = alg.acc(0, iiOf, qtOf, h, b)[1], l0 = alg.acc(0, iiOf, qtOf, h, b)[2];
        alg.lse = Func("lse");
        alg.lse(i, h, b) = cast(Float(32), select(l0 > zero, mf + log(l0), negInf));
      }
    } else {
      alg.accSplit(dv, ii, qt, sp, h, b) = zero;
      alg.accSplit(dv, ii, qt, sp, h, b) += pv;
      alg.acc(dv, ii, qt, h, b) = zero;
      alg.acc(dv, ii, qt, h, b) += alg.accSplit(dv, ii, qt, rm.x, h, b);
      alg.out(dv, i, h, b) = headsGroupCheck(toOut(alg.acc(dv, iiOf, qtOf, h, b)));
    }
  } else if (alg.linear) {
    alg.out(dv, i, h, b) = headsGroupCheck(toOut(alg.linear->value(dv, i, h, b)));
  } else if (softmax || hardmax) {
    // {O, m, l}: the running output numerator, maximum score and
    // denominator (softmax: sum of exp; hardmax: number of tied keys).
    alg.acc(dv, ii, qt, h, b) = Tuple(zero, negInf, zero);
    for (KeySource &src : alg.sources) {
    Expr O = alg.acc(dv, ii, qt, h, b)[0], m = alg.acc(dv, ii, qt, h, b)[1],
         l = alg.acc(dv, ii, qt, h, b)[2];
    RVar rk = src.rk;
    Expr mb = src.blockMax(ii, qt, rk, h, b);
    Expr pv = src.pvAcc(dv, ii, qt, rk, h, b), bs = src.blockSum(ii, qt, rk, h, b);
    Expr mNew = max(m, mb);
    if (softmax) {
      Expr a = select(live(m), exp(m - mNew), zero);
      Expr c = select(live(mb), exp(mb - mNew), zero);
      alg.acc(dv, ii, qt, h, b) = Tuple(O * a + pv * c, mNew, l * a + bs * c);
    } else if (alg.ties == "average") {
      // Keys tied at the maximum across blocks all count.
      Expr keepOld = live(m) && m == mNew, takeNew = live(mb) && mb == mNew;
      alg.acc(dv, ii, qt, h, b) =
          Tuple(select(keepOld, O, zero) + select(takeNew, pv, zero), mNew,
                select(keepOld, l, zero) + select(takeNew, bs, zero));
    } else {
      // Blocks come in increasing j, sources in file order: on a tie the
      // new block holds the later key (latest) and the old state the
      // earlier one (first).
      Expr better = alg.ties == "latest" ? mb >= m : mb > m;
      Expr takeNew = live(mb) && (!live(m) || better);
      alg.acc(dv, ii, qt, h, b) =
          Tuple(select(takeNew, pv, O), mNew, select(takeNew, bs, l));
    }
    }
    Expr Of = alg.acc(dv, iiOf, qtOf, h, b)[0], lf = alg.acc(dv, iiOf, qtOf, h, b)[2];
    alg.out(dv, i, h, b) = headsGroupCheck(toOut(select(lf > zero, Of / lf, zero)));
    if (alg.outputLse) {
      // softmax: log-sum-exp; hardmax: the maximum score.
      Expr mf = alg.acc(0, iiOf, qtOf, h, b)[1], l0 = alg.acc(0, iiOf, qtOf, h, b)[2];
      alg.lse = Func("lse");
      alg.lse(i, h, b) =
          cast(Float(32), select(l0 > zero, softmax ? mf + log(l0) : mf, negInf));
    }
  } else if (linear) {
    // {O, l}: Σ s·v and Σ s; out = O / l, 0 where l is 0 (LANGUAGE.md §8.4).
    alg.acc(dv, ii, qt, h, b) = Tuple(zero, zero);
    for (KeySource &src : alg.sources) {
      Expr O = alg.acc(dv, ii, qt, h, b)[0], l = alg.acc(dv, ii, qt, h, b)[1];
      alg.acc(dv, ii, qt, h, b) = Tuple(O + src.pvAcc(dv, ii, qt, src.rk, h, b),
                                        l + src.blockSum(ii, qt, src.rk, h, b));
    }
    Expr Of = alg.acc(dv, iiOf, qtOf, h, b)[0], lf = alg.acc(dv, iiOf, qtOf, h, b)[1];
    alg.out(dv, i, h, b) = headsGroupCheck(toOut(select(lf != zero, Of / lf, zero)));
  } else {
    alg.acc(dv, ii, qt, h, b) = zero;
    for (KeySource &src : alg.sources)
      alg.acc(dv, ii, qt, h, b) += src.pvAcc(dv, ii, qt, src.rk, h, b);
    alg.out(dv, i, h, b) = headsGroupCheck(toOut(alg.acc(dv, iiOf, qtOf, h, b)));
  }

  // Output shapes are checked by the generated code (AOT callers pass them).
  alg.out.output_buffer().dim(0).set_bounds(0, alg.tensors[alg.sources[0].vTensor].dim(0).extent());
  alg.out.output_buffer().dim(1).set_bounds(0, Lq);
  alg.out.output_buffer().dim(2).set_bounds(0, H);
  alg.out.output_buffer().dim(3).set_bounds(0, B);
  if (alg.outputLse) {
    alg.lse.output_buffer().dim(0).set_bounds(0, Lq);
    alg.lse.output_buffer().dim(1).set_bounds(0, H);
    alg.lse.output_buffer().dim(2).set_bounds(0, B);
  }

  if (!sites.empty()) {
    // Two modes (the runtime runs the second only when the first finds an
    // index out of range): each index over the whole domain of the index
    // variables it reads, cheap, a superset of the used ones; then exact,
    // over its values out of range where it is used, giving an offending
    // point.
    Var c("c"), e("e"), f("f");
    Expr result = make_const(Int(64), 0);
    const std::string names[4] = {cb.name(), ch.name(), ci.name(), cj.name()};
    for (int n = (int)sites.size() - 1; n >= 0; --n) {
      Site &site = sites[n];
      Expr idx = cast(Int(64), site.index);
      const Expr extents[4] = {B, H, Lq, site.Lk};
      Expr limit = site.limit;
      bool trivial = Halide::Internal::is_const_one(site.cond);
      // The index's variables (outer) are the check's domain; the variables
      // only the condition reads (inner) are searched by used_n.
      struct Dimension {
        std::string name;
        Expr extent;
        int var; // 0..3: b, h, i, j; -1: a channel variable
      };
      std::vector<Dimension> inner, outer;
      for (int a = 0; a < 4; ++a) {
        bool inIndex = Halide::Internal::expr_uses_var(idx, names[a]);
        bool inCond = !trivial && Halide::Internal::expr_uses_var(site.cond, names[a]);
        if (inIndex)
          outer.push_back({names[a], extents[a], a});
        else if (inCond)
          inner.push_back({names[a], extents[a], a});
      }
      for (auto &[name, extent] : site.channels)
        outer.push_back({name, extent, -1});
      Expr outsideAt = idx < make_const(Int(64), 0) || idx >= cast(Int(64), limit);
      // used_n(outer vars) = {1, where} when the index's value at that point
      // is used for some value of the condition's other variables: a search
      // over those only where the index is out of range in the exact mode
      // (empty elsewhere), computed once per check.
      Func used;
      if (!inner.empty()) {
        std::vector<Var> pure;
        for (const Dimension &d : outer)
          pure.push_back(Var(d.name));
        Region innerRanges;
        for (const Dimension &d : inner)
          innerRanges.push_back(Range(0, d.extent));
        RDom ri(innerRanges, "ruse" + std::to_string(n));
        Expr cond = site.cond;
        for (size_t p = 0; p < inner.size(); ++p)
          cond = Halide::Internal::substitute(inner[p].name, Expr(ri[p]), cond);
        // The first predicate reads no RVar: Halide tests it once per point
        // of used_n, outside the search.
        ri.where(alg.exactChecks && outsideAt);
        ri.where(cond);
        used = Func("used" + std::to_string(n));
        std::vector<Expr> init(inner.size() + 1, Expr(0));
        used(pure) = Tuple(init);
        std::vector<Expr> upd{Expr(1)};
        for (size_t p = 0; p < inner.size(); ++p)
          upd.push_back(select(used(pure)[0] == 1, used(pure)[p + 1], Expr(ri[p])));
        used(pure) = Tuple(upd);
        alg.extra.push_back(used);
      }
      Region ranges;
      for (const Dimension &d : outer)
        ranges.push_back(Range(0, d.extent));
      if (outer.empty())
        ranges.push_back(Range(0, 1)); // an index of no variable: one value
      RDom r(ranges, "rchk" + std::to_string(n));
      auto bind = [&](Expr x) {
        for (size_t p = 0; p < outer.size(); ++p)
          x = Halide::Internal::substitute(outer[p].name, Expr(r[p]), x);
        return x;
      };
      Expr ridx = bind(idx);
      Expr outside = bind(outsideAt);
      std::vector<Expr> at;
      for (size_t p = 0; p < outer.size(); ++p)
        at.push_back(r[p]);
      r.where(!alg.exactChecks || outside);
      if (used.defined())
        r.where(!alg.exactChecks || used(at)[0] == 1);
      else if (!trivial)
        r.where(!alg.exactChecks || bind(site.cond));
      Func lo("idxmin" + std::to_string(n)), hi("idxmax" + std::to_string(n));
      lo() = argmin(r, ridx);
      hi() = argmax(r, ridx);
      alg.extra.push_back(lo);
      alg.extra.push_back(hi);
      // (f, e): f = 0 the value, 1..4 its (b, h, i, j); e = 0 min, 1 max.
      // Outer variables are where the extreme is; the condition's others
      // where used_n found the use (0 in the cheap mode).
      int valueAt = (int)ranges.size();
      auto field = [&](Func t) {
        Expr v = cast(Int(64), t()[valueAt]);
        std::vector<Expr> where;
        for (size_t p = 0; p < outer.size(); ++p) // bounded for Halide
          where.push_back(clamp(t()[p], 0, max(outer[p].extent - 1, 0)));
        for (int a = 3; a >= 0; --a) {
          Expr coord = Expr(0);
          for (size_t p = 0; p < outer.size(); ++p)
            if (outer[p].var == a)
              coord = t()[p];
          for (size_t p = 0; p < inner.size(); ++p)
            if (inner[p].var == a)
              coord = used(where)[p + 1];
          v = select(f == a + 1, cast(Int(64), coord), v);
        }
        return v;
      };
      result = select(c == n, select(e == 0, field(lo), field(hi)), result);
      alg.indexChecks.push_back(site.check);
    }
    std::reverse(alg.indexChecks.begin(), alg.indexChecks.end());
    alg.indexBounds = Func("indexBounds");
    alg.indexBounds(f, e, c) = result;
  }
  return alg;
}

} // namespace attn
