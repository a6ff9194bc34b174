// attn-select-strategy: records on each kernel which algorithm lowers it.
#include "attn/compiler/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Matchers.h"

#include <optional>

namespace attn {
#define GEN_PASS_DEF_SELECTSTRATEGY
#include "attn/compiler/Passes.h.inc"
} // namespace attn

using namespace mlir;

namespace {

/// True when the mask region yields the constant `true`.
bool maskIsAlwaysTrue(attn::KernelOp kernel) {
  auto yield = llvm::cast<attn::YieldOp>(kernel.getMask().front().getTerminator());
  return matchPattern(yield.getValue(), m_One());
}

/// True when the mask is causal: `j <= i` (or `i >= j`).
bool maskIsCausal(attn::KernelOp kernel) {
  Block &block = kernel.getMask().front();
  auto yield = llvm::cast<attn::YieldOp>(block.getTerminator());
  auto cmp = yield.getValue().getDefiningOp<arith::CmpIOp>();
  if (!cmp)
    return false;
  Value i = block.getArgument(2), j = block.getArgument(3);
  using P = arith::CmpIPredicate;
  return (cmp.getPredicate() == P::sle && cmp.getLhs() == j && cmp.getRhs() == i) ||
         (cmp.getPredicate() == P::sge && cmp.getLhs() == i && cmp.getRhs() == j);
}

/// The constant c when the score is `dot(q, k)` or `dot(q, k) * c`.
std::optional<double> dotScale(attn::KernelOp kernel) {
  auto yield = llvm::cast<attn::YieldOp>(kernel.getScore().front().getTerminator());
  Value s = yield.getValue();
  if (s.getDefiningOp<attn::DotOp>())
    return 1.0;
  auto mul = s.getDefiningOp<arith::MulFOp>();
  if (!mul)
    return std::nullopt;
  for (auto [dot, scale] : {std::pair(mul.getLhs(), mul.getRhs()), std::pair(mul.getRhs(), mul.getLhs())}) {
    FloatAttr c;
    if (dot.getDefiningOp<attn::DotOp>() && matchPattern(scale, m_Constant(&c)))
      return c.getValueAsDouble();
  }
  return std::nullopt;
}

/// How a kernel can be decoded one position at a time (jit/Decoder.h):
/// `hull` for hard-max attention with 2-D heads, a score of dot(q, k) times
/// a positive constant and no mask or a causal one (the maximizing key is a
/// vertex of the keys' convex hull); `scan` for other kernels whose score is
/// a constant times dot(q, k), with no mask or a causal one and no aux
/// tensors; `none` otherwise.
StringRef decodeStrategy(attn::KernelOp kernel, std::optional<double> scale) {
  if (!scale || !(maskIsAlwaysTrue(kernel) || maskIsCausal(kernel)))
    return "none";
  if (kernel.getTensors().size() > 3)
    return "none"; // aux tensors have no meaning for one decoded stream
  if (kernel.hasIndexMaps())
    return "none"; // the decoders keep [B, H, L, D] streams
  auto d = llvm::dyn_cast<IntegerAttr>(kernel.getTensor("q").getAs<ArrayAttr>("dims")[3]);
  if (kernel.getNormalize() == "hardmax" && d && d.getInt() == 2 && *scale > 0)
    return "hull";
  return "scan";
}

/// True when `base` depends on the head only: constants, sizes, params and
/// aux reads whose indices depend on h alone (no b, i, j, dot or vectors).
bool isPerHead(Value base) {
  std::vector<Value> stack{base};
  llvm::SmallPtrSet<void *, 16> seen;
  while (!stack.empty()) {
    Value v = stack.back();
    stack.pop_back();
    if (!seen.insert(v.getAsOpaquePointer()).second)
      continue;
    if (auto arg = llvm::dyn_cast<BlockArgument>(v)) {
      if (arg.getArgNumber() != 1) // (b, h, i, j): only h
        return false;
      continue;
    }
    Operation *def = v.getDefiningOp();
    StringRef dialect = def->getName().getDialectNamespace();
    bool allowed = dialect == "arith" || dialect == "math" ||
                   llvm::isa<attn::SizeOp, attn::ParamOp, attn::LoadOp, attn::IntOp>(def);
    if (!allowed || def->getNumRegions())
      return false;
    for (Value in : def->getOperands())
      stack.push_back(in);
  }
  return true;
}

/// True when `v` is computed from h and constants only (no sizes, params or
/// loads).
bool dependsOnHeadAlone(Value v) {
  if (llvm::isa<BlockArgument>(v))
    return true; // isPerHead checked it is h
  Operation *def = v.getDefiningOp();
  if (llvm::isa<attn::SizeOp, attn::ParamOp, attn::LoadOp>(def))
    return false;
  return llvm::all_of(def->getOperands(), dependsOnHeadAlone);
}

/// Whether `name` is a dimension of q, k or v other than the last: a size a
/// decoder's one-row stream does not have.
bool isStreamSize(attn::KernelOp kernel, StringRef name) {
  for (const char *t : {"q", "k", "v"}) {
    auto dims = kernel.getTensor(t).getAs<ArrayAttr>("dims");
    for (unsigned d = 0; d + 1 < dims.size(); ++d)
      if (auto s = llvm::dyn_cast<StringAttr>(dims[d]); s && s.getValue() == name)
        return true;
  }
  return false;
}

/// Whether channel vector `name` (q and k included) is a function of its
/// own row's channels alone: constants, aux tensors, sizes other than the
/// stream's, other such vectors; not b, h, i, j, params, stream sizes or
/// int() (an aux index computed from the data). The decoder then computes
/// it one row at a time through the kernel's NAME_features entry point.
bool isRowFeature(attn::KernelOp kernel, StringRef name, int depth = 0) {
  if (name == "q" || name == "k")
    return true;
  if (depth > 16 || kernel.getVectors().empty())
    return false;
  attn::VectorOp vec;
  for (Operation &o : kernel.getVectors().front())
    if (auto v = llvm::dyn_cast<attn::VectorOp>(o); v && v.getName() == name)
      vec = v;
  if (!vec)
    return false;
  if (auto len = llvm::dyn_cast<StringAttr>(vec.getLength()); len && isStreamSize(kernel, len))
    return false;
  Block *body = &vec.getBody().front();
  bool ok = true;
  vec.getBody().walk([&](Operation *op) {
    if (llvm::isa<attn::IntOp, attn::ParamOp, attn::DotOp, attn::VectorDotOp>(op))
      ok = false;
    if (auto s = llvm::dyn_cast<attn::SizeOp>(op); s && isStreamSize(kernel, s.getName()))
      ok = false;
    if (auto e = llvm::dyn_cast<attn::ElemOp>(op))
      ok = ok && isRowFeature(kernel, e.getVector(), depth + 1);
    if (auto e = llvm::dyn_cast<attn::VectorSqnormOp>(op))
      ok = ok && isRowFeature(kernel, e.getX(), depth + 1);
    for (Value in : op->getOperands())
      if (auto arg = llvm::dyn_cast<BlockArgument>(in);
          arg && arg.getOwner() == body && arg.getArgNumber() < 4)
        ok = false; // b, h, i or j
  });
  return ok;
}

/// True when `e` is `i - j` (as the float pow() takes it).
bool isQueryMinusKey(Value e) {
  if (auto cast = e.getDefiningOp<arith::SIToFPOp>())
    e = cast.getIn();
  auto sub = e.getDefiningOp<arith::SubIOp>();
  if (!sub)
    return false;
  auto i = llvm::dyn_cast<BlockArgument>(sub.getLhs());
  auto j = llvm::dyn_cast<BlockArgument>(sub.getRhs());
  return i && j && i.getArgNumber() == 2 && j.getArgNumber() == 3;
}

} // namespace

attn::LinearScore attn::matchLinearScore(attn::KernelOp kernel) {
  LinearScore ls;
  auto fail = [&](std::string why) {
    ls.whyNot = std::move(why);
    ls.decayBase = nullptr;
    return ls;
  };
  StringRef norm = kernel.getNormalize();
  if (norm != "linear" && norm != "none")
    return fail("normalize is " + norm.str() + ", not linear or none");
  bool causal = maskIsCausal(kernel);
  if (!(maskIsAlwaysTrue(kernel) || causal))
    return fail("the mask is neither absent nor causal (j <= i)");
  if (kernel->getAttr("source"))
    return fail("a kernel of several key/value sources");
  if (kernel.hasIndexMaps())
    return fail("index maps (`at`): the linear kernels read [B, H, L, D] rows");
  // The score as a product of factors: constants (or divisions by them),
  // one dot, at most one decay pow(g, i - j).
  auto yield = llvm::cast<attn::YieldOp>(kernel.getScore().front().getTerminator());
  std::vector<Value> factors{yield.getValue()};
  Value dot;
  Operation *decay = nullptr;
  while (!factors.empty()) {
    Value f = factors.back();
    factors.pop_back();
    FloatAttr c;
    if (auto mul = f.getDefiningOp<arith::MulFOp>()) {
      factors.push_back(mul.getLhs());
      factors.push_back(mul.getRhs());
    } else if (auto div = f.getDefiningOp<arith::DivFOp>();
               div && matchPattern(div.getRhs(), m_Constant(&c))) {
      factors.push_back(div.getLhs());
      ls.scale /= c.getValueAsDouble();
    } else if (matchPattern(f, m_Constant(&c))) {
      ls.scale *= c.getValueAsDouble();
    } else if ((f.getDefiningOp<attn::DotOp>() || f.getDefiningOp<attn::VectorDotOp>()) && !dot) {
      dot = f;
    } else if (auto pow = f.getDefiningOp<math::PowFOp>(); pow && !decay) {
      if (!isQueryMinusKey(pow.getRhs()))
        return fail("the score's pow() is not a decay pow(g, i - j)");
      if (!isPerHead(pow.getLhs()))
        return fail("the decay pow(g, i - j) has a g that is not per head (it may read h only)");
      if (matchPattern(pow.getLhs(), m_Constant(&c)) &&
          !(c.getValueAsDouble() > 0 && c.getValueAsDouble() <= 1))
        return fail("the decay pow(g, i - j) has g = " + std::to_string(c.getValueAsDouble()) +
                    ", not in (0, 1]");
      decay = pow;
      ls.decayBase = pow.getLhs();
    } else {
      return fail("the score is not a constant times dot(x, y) of a query and a key vector");
    }
  }
  if (!dot)
    return fail("the score is not a constant times dot(x, y) of a query and a key vector");
  if (!(ls.scale > 0))
    return fail("the score's constant factor is not positive");
  ls.qkDot = bool(dot.getDefiningOp<attn::DotOp>());
  if (auto vdot = dot.getDefiningOp<attn::VectorDotOp>()) {
    ls.dotX = vdot.getX().str();
    ls.dotY = vdot.getY().str();
  }
  if (decay && !causal)
    return fail("a decay pow(g, i - j) needs the causal mask (j <= i): g^(i - j) grows for j > i");
  return ls;
}

namespace {

struct SelectStrategyPass : attn::impl::SelectStrategyBase<SelectStrategyPass> {
  void runOnOperation() override {
    attn::KernelOp kernel = getOperation();
    StringRef strategy = maskIsAlwaysTrue(kernel) ? "dense" : "masked";
    attn::LinearScore linear = attn::matchLinearScore(kernel);
    if (linear.whyNot.empty()) {
      strategy = "linear";
      kernel->setAttr("linear_scale", FloatAttr::get(Float64Type::get(&getContext()), linear.scale));
      kernel->setAttr("linear_causal", BoolAttr::get(&getContext(), maskIsCausal(kernel)));
      if (linear.decayBase)
        kernel->setAttr("linear_decay", BoolAttr::get(&getContext(), true));
    } else if (kernel.getNormalize() == "linear" || kernel.getNormalize() == "none") {
      kernel->setAttr("linear_why_not", StringAttr::get(&getContext(), linear.whyNot));
    }
    kernel->setAttr("strategy", StringAttr::get(&getContext(), strategy));
    std::optional<double> scale = dotScale(kernel);
    StringRef decode = decodeStrategy(kernel, scale);
    // A linear kernel of c·dot(q, k) [· pow(g, i - j), g a constant] and no
    // aux tensors decodes through a constant-size state.
    FloatAttr g;
    bool constantDecay = !linear.decayBase || matchPattern(linear.decayBase, m_Constant(&g));
    // A g computed from h alone (no sizes or params, which a decoder cannot
    // know) is tabulated per head by the kernel's NAME_decay entry point.
    bool tabulated = linear.decayBase && !constantDecay && dependsOnHeadAlone(linear.decayBase);
    // Features that are channel vectors of their own row alone (elu+1,
    // Performer through an aux projection) are computed per row by the
    // kernel's NAME_features entry point; aux tensors can then only be
    // theirs (the score of a linear kernel reads none but a decay's).
    bool rowFeatures = !linear.qkDot && isRowFeature(kernel, linear.dotX) &&
                       isRowFeature(kernel, linear.dotY);
    if (strategy == "linear" && (constantDecay || tabulated) &&
        ((linear.qkDot && kernel.getTensors().size() == 3) || rowFeatures)) {
      decode = "linear";
      scale = linear.scale;
      if (tabulated)
        kernel->setAttr("decode_decay_per_head", BoolAttr::get(&getContext(), true));
      if (rowFeatures)
        kernel->setAttr("decode_features", BoolAttr::get(&getContext(), true));
    }
    kernel->setAttr("decode", StringAttr::get(&getContext(), decode));
    if (decode != "none")
      kernel->setAttr("decode_scale", FloatAttr::get(Float64Type::get(&getContext()), *scale));
    if (decode == "linear" && g)
      kernel->setAttr("decode_decay", FloatAttr::get(Float64Type::get(&getContext()), g.getValueAsDouble()));
  }
};

} // namespace

std::unique_ptr<Pass> attn::createSelectStrategyPass() {
  return std::make_unique<SelectStrategyPass>();
}
