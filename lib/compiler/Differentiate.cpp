// attn-differentiate: the partial derivatives of a kernel's score with
// respect to everything it reads, in a `grad` region the backward kernels
// evaluate at each (b, h, i, j).
//
// The score region is a scalar DAG with one output, so the pass runs reverse
// mode over it: the region is cloned into `grad`, then walked backwards from
// the yielded score with an adjoint (∂score/∂value) per float value. The
// leaves are attn.dot, attn.sqnorm q / k, each float attn.load (one entry
// per load op: a backward kernel scatters it to the indices the load read)
// and each float attn.param. Derivative rules at kinks follow PyTorch
// (docs/language.md, "Gradients"); integer ops, comparisons, floor, ceil and
// int have zero derivative and stop the walk.
#include "attn/compiler/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <map>

namespace attn {
#define GEN_PASS_DEF_DIFFERENTIATE
#include "attn/compiler/Passes.h.inc"
} // namespace attn

using namespace mlir;

namespace {

/// Builds adjoint arithmetic at the end of the grad block, folding the
/// multiplications by one that the seed (∂score/∂score = 1) would create.
class Adjoints {
public:
  Adjoints(OpBuilder &b, Location loc) : b_(b), loc_(loc) {}

  Value constant(Type t, double v) {
    return b_.create<arith::ConstantOp>(loc_, FloatAttr::get(t, v));
  }
  static bool isOne(Value v) {
    auto c = v.getDefiningOp<arith::ConstantOp>();
    auto f = c ? llvm::dyn_cast<FloatAttr>(c.getValue()) : nullptr;
    return f && f.getValueAsDouble() == 1.0;
  }
  Value mul(Value x, Value y) {
    if (isOne(x)) return y;
    if (isOne(y)) return x;
    return b_.create<arith::MulFOp>(loc_, x, y);
  }
  Value div(Value x, Value y) { return b_.create<arith::DivFOp>(loc_, x, y); }
  Value neg(Value x) { return b_.create<arith::NegFOp>(loc_, x); }
  Value sub(Value x, Value y) { return b_.create<arith::SubFOp>(loc_, x, y); }
  /// select(c, g, 0) / select(c, 0, g): the adjoint where c holds / fails.
  Value where(Value c, Value g, bool taken = true) {
    Value zero = constant(g.getType(), 0.0);
    return b_.create<arith::SelectOp>(loc_, c, taken ? g : zero, taken ? zero : g);
  }
  Value cmp(arith::CmpFPredicate p, Value x, Value y) {
    return b_.create<arith::CmpFOp>(loc_, p, x, y);
  }

  /// adj[v] += g, for float values only.
  void add(Value v, Value g) {
    if (!llvm::isa<FloatType>(v.getType()) || !g)
      return;
    if (g.getType() != v.getType()) // through extf / truncf
      g = g.getType().getIntOrFloatBitWidth() < v.getType().getIntOrFloatBitWidth()
              ? Value(b_.create<arith::ExtFOp>(loc_, v.getType(), g))
              : Value(b_.create<arith::TruncFOp>(loc_, v.getType(), g));
    Value &slot = adj_[v];
    slot = slot ? Value(b_.create<arith::AddFOp>(loc_, slot, g)) : g;
  }
  Value of(Value v) const { return adj_.lookup(v); }
  OpBuilder &builder() { return b_; }

private:
  OpBuilder &b_;
  Location loc_;
  DenseMap<Value, Value> adj_;
};

/// One step of the reverse walk: the adjoints of op's operands from g, the
/// adjoint of its result. Returns false for a float op without a rule.
/// When op is the min of clamp = min(max(x, lo), hi), the max is handled
/// here too and put in `skip`, which the walk then passes over.
bool propagate(Operation *op, Value g, Adjoints &a, llvm::SmallPtrSetImpl<Operation *> &skip) {
  using P = arith::CmpFPredicate;
  Value r = op->getResult(0);
  Type t = r.getType();
  auto in = [&](unsigned n) { return op->getOperand(n); };
  llvm::StringRef name = op->getName().getStringRef();

  if (name == "arith.addf") {
    a.add(in(0), g);
    a.add(in(1), g);
  } else if (name == "arith.subf") {
    a.add(in(0), g);
    a.add(in(1), a.neg(g));
  } else if (name == "arith.mulf") {
    a.add(in(0), a.mul(g, in(1)));
    a.add(in(1), a.mul(g, in(0)));
  } else if (name == "arith.divf") {
    a.add(in(0), a.div(g, in(1)));
    a.add(in(1), a.neg(a.div(a.mul(g, r), in(1)))); // -g·(x/y)/y
  } else if (name == "arith.negf") {
    a.add(in(0), a.neg(g));
  } else if (name == "arith.extf" || name == "arith.truncf") {
    a.add(in(0), g);
  } else if (name == "arith.select") {
    a.add(in(1), a.where(in(0), g));
    a.add(in(2), a.where(in(0), g, /*taken=*/false));
  } else if (auto mn = llvm::dyn_cast<arith::MinimumFOp>(op);
             mn && mn.getLhs().getDefiningOp<arith::MaximumFOp>() &&
             mn.getLhs().hasOneUse()) {
    // clamp(x, lo, hi) = min(max(x, lo), hi), as torch.clamp: x gets the
    // gradient on [lo, hi] inclusive, lo below it, hi above it (and where
    // lo > hi, when the result is hi).
    auto mx = mn.getLhs().getDefiningOp<arith::MaximumFOp>();
    Value x = mx.getLhs(), lo = mx.getRhs(), hi = mn.getRhs();
    Value takesHi = a.cmp(P::OGT, mx.getResult(), hi);
    Value rest = a.where(takesHi, g, /*taken=*/false);
    Value takesLo = a.cmp(P::OLT, x, lo);
    a.add(hi, a.where(takesHi, g));
    a.add(lo, a.where(takesLo, rest));
    a.add(x, a.where(takesLo, rest, /*taken=*/false));
    skip.insert(mx);
  } else if (name == "arith.maximumf" || name == "arith.minimumf") {
    // torch.maximum / torch.minimum: the operand that is the result gets
    // the gradient; on a tie each gets half.
    bool isMax = name == "arith.maximumf";
    Value first = a.cmp(isMax ? P::OGT : P::OLT, in(0), in(1));
    Value tie = a.cmp(P::OEQ, in(0), in(1));
    Value half = a.mul(g, a.constant(t, 0.5));
    Value zero = a.constant(t, 0.0);
    OpBuilder &b = a.builder();
    Location loc = op->getLoc();
    Value g0 = b.create<arith::SelectOp>(loc, first, g, b.create<arith::SelectOp>(loc, tie, half, zero));
    a.add(in(0), g0);
    a.add(in(1), a.sub(g, g0));
  } else if (name == "math.absf") {
    // sign(x)·g, 0 at 0 (torch.abs).
    Value zero = a.constant(t, 0.0);
    OpBuilder &b = a.builder();
    Location loc = op->getLoc();
    Value sign = b.create<arith::SelectOp>(
        loc, a.cmp(P::OGT, in(0), zero), a.constant(t, 1.0),
        b.create<arith::SelectOp>(loc, a.cmp(P::OLT, in(0), zero), a.constant(t, -1.0), zero));
    a.add(in(0), a.mul(g, sign));
  } else if (name == "math.exp") {
    a.add(in(0), a.mul(g, r));
  } else if (name == "math.exp2") {
    a.add(in(0), a.mul(g, a.mul(r, a.constant(t, M_LN2))));
  } else if (name == "math.log") {
    a.add(in(0), a.div(g, in(0)));
  } else if (name == "math.log2") {
    a.add(in(0), a.div(g, a.mul(in(0), a.constant(t, M_LN2))));
  } else if (name == "math.sqrt") {
    a.add(in(0), a.div(g, a.mul(r, a.constant(t, 2.0))));
  } else if (name == "math.rsqrt") {
    a.add(in(0), a.mul(g, a.mul(a.constant(t, -0.5), a.mul(r, a.mul(r, r)))));
  } else if (name == "math.tanh") {
    a.add(in(0), a.mul(g, a.sub(a.constant(t, 1.0), a.mul(r, r))));
  } else if (name == "math.sin") {
    a.add(in(0), a.mul(g, a.builder().create<math::CosOp>(op->getLoc(), in(0))));
  } else if (name == "math.cos") {
    a.add(in(0), a.neg(a.mul(g, a.builder().create<math::SinOp>(op->getLoc(), in(0)))));
  } else if (name == "math.powf") {
    // torch.pow: ∂/∂x = y·x^(y-1), 0 where y = 0; ∂/∂y = x^y·log(x), 0
    // where x = 0 and y >= 0.
    Value x = in(0), y = in(1), zero = a.constant(t, 0.0);
    OpBuilder &b = a.builder();
    Location loc = op->getLoc();
    Value dx = a.mul(g, a.mul(y, b.create<math::PowFOp>(loc, x, a.sub(y, a.constant(t, 1.0)))));
    a.add(x, a.where(a.cmp(P::OEQ, y, zero), dx, /*taken=*/false));
    Value baseZero = b.create<arith::AndIOp>(loc, a.cmp(P::OEQ, x, zero), a.cmp(P::OGE, y, zero));
    Value dy = a.mul(g, a.mul(r, b.create<math::LogOp>(loc, x)));
    a.add(y, a.where(baseZero, dy, /*taken=*/false));
  } else if (name == "math.floor" || name == "math.ceil" || name == "arith.sitofp" ||
             name == "arith.uitofp" || name == "arith.constant" ||
             llvm::isa<attn::DotOp, attn::SqnormOp, attn::LoadOp, attn::ParamOp>(op)) {
    // Zero almost everywhere (floor, ceil, integer sources) or a leaf.
  } else {
    return false;
  }
  return true;
}

struct DifferentiatePass : attn::impl::DifferentiateBase<DifferentiatePass> {
  void runOnOperation() override {
    attn::KernelOp kernel = getOperation();
    MLIRContext *ctx = &getContext();
    if (!kernel.getGrad().empty())
      return; // differentiated already
    Block &score = kernel.getScore().front();
    auto fail = [&](const std::string &why) {
      kernel->setAttr("grad_why_not", StringAttr::get(ctx, why));
    };
    for (Operation &op : score) {
      if (llvm::isa<attn::ElemOp, attn::VectorDotOp, attn::VectorSqnormOp>(op))
        return fail("the score reads channel vectors");
      if (llvm::isa<attn::SumOp>(op))
        return fail("the score has a sum(...)");
    }

    // The clone of the score, in a region with the same block arguments.
    Block *block = new Block();
    kernel.getGrad().push_back(block);
    IRMapping map;
    for (BlockArgument arg : score.getArguments())
      map.map(arg, block->addArgument(arg.getType(), arg.getLoc()));
    OpBuilder b = OpBuilder::atBlockEnd(block);
    for (Operation &op : score.without_terminator())
      b.clone(op, map);
    Value s = map.lookup(llvm::cast<attn::YieldOp>(score.getTerminator()).getValue());

    // The reverse walk, in the clone's order backwards: every user of a
    // value comes before it, so its adjoint is complete when reached.
    Adjoints adj(b, kernel.getLoc());
    adj.add(s, adj.constant(s.getType(), 1.0));
    std::vector<Operation *> ops;
    for (Operation &op : *block)
      ops.push_back(&op);
    llvm::SmallPtrSet<Operation *, 8> skip;
    for (Operation *op : llvm::reverse(ops)) {
      if (op->getNumResults() != 1 || skip.contains(op))
        continue;
      Value g = adj.of(op->getResult(0));
      if (!g)
        continue;
      if (!propagate(op, g, adj, skip)) {
        kernel.getGrad().getBlocks().clear();
        return fail("no derivative of '" + op->getName().getStringRef().str() + "'");
      }
    }

    // What the grad region yields: the score, then one derivative per leaf
    // (a float load's followed by its indices), named by grad_wrt.
    SmallVector<Value> yielded{s};
    SmallVector<Attribute> wrt;
    std::map<std::string, size_t> slot; // dot, sqnorm and params: one entry each
    auto leaf = [&](const std::string &key, Value g) {
      if (!g)
        g = adj.constant(s.getType(), 0.0);
      auto it = slot.find(key);
      if (it != slot.end()) {
        yielded[it->second] = b.create<arith::AddFOp>(kernel.getLoc(), yielded[it->second], g);
        return;
      }
      slot[key] = yielded.size();
      yielded.push_back(g);
      wrt.push_back(StringAttr::get(ctx, key));
    };
    for (Operation *op : ops) {
      Value g = op->getNumResults() == 1 ? adj.of(op->getResult(0)) : Value();
      if (llvm::isa<attn::DotOp>(op))
        leaf("dot", g);
      else if (auto sq = llvm::dyn_cast<attn::SqnormOp>(op))
        leaf("sqnorm " + sq.getOf().str(), g);
      else if (auto p = llvm::dyn_cast<attn::ParamOp>(op);
               p && llvm::isa<FloatType>(p.getType()))
        leaf("param " + p.getName().str(), g);
      else if (auto l = llvm::dyn_cast<attn::LoadOp>(op);
               l && llvm::isa<FloatType>(l.getType())) {
        // One entry per load op (distinct indices), its indices after it.
        yielded.push_back(g ? g : adj.constant(s.getType(), 0.0));
        wrt.push_back(StringAttr::get(ctx, "load " + l.getTensor().str()));
        for (Value idx : l.getIndices())
          yielded.push_back(idx);
      }
    }
    b.create<attn::YieldOp>(kernel.getLoc(), yielded);
    kernel->setAttr("grad_wrt", ArrayAttr::get(ctx, wrt));
  }
};

} // namespace

std::unique_ptr<Pass> attn::createDifferentiatePass() {
  return std::make_unique<DifferentiatePass>();
}
