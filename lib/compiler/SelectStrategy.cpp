// attn-select-strategy: records on each kernel which algorithm lowers it.
#include "attn/compiler/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Matchers.h"

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

/// True when the score is `dot(q, k)` times an optional positive constant.
bool scoreIsScaledDot(attn::KernelOp kernel) {
  auto yield = llvm::cast<attn::YieldOp>(kernel.getScore().front().getTerminator());
  Value s = yield.getValue();
  if (s.getDefiningOp<attn::DotOp>())
    return true;
  auto mul = s.getDefiningOp<arith::MulFOp>();
  if (!mul)
    return false;
  for (auto [dot, scale] : {std::pair(mul.getLhs(), mul.getRhs()), std::pair(mul.getRhs(), mul.getLhs())}) {
    FloatAttr c;
    if (dot.getDefiningOp<attn::DotOp>() && matchPattern(scale, m_Constant(&c)) &&
        c.getValueAsDouble() > 0)
      return true;
  }
  return false;
}

/// Hard-max attention with 2-D heads, a (positively scaled) dot-product
/// score and no mask or a causal one: the maximizing key is a vertex of the
/// keys' convex hull, so decoding can use the hull key cache.
bool hullDecodable(attn::KernelOp kernel) {
  if (kernel.getNormalize() != "hardmax")
    return false;
  auto q = kernel.getTensor("q");
  auto d = llvm::dyn_cast<IntegerAttr>(q.getAs<ArrayAttr>("dims")[3]);
  if (!d || d.getInt() != 2)
    return false;
  return scoreIsScaledDot(kernel) && (maskIsAlwaysTrue(kernel) || maskIsCausal(kernel));
}

struct SelectStrategyPass : attn::impl::SelectStrategyBase<SelectStrategyPass> {
  void runOnOperation() override {
    attn::KernelOp kernel = getOperation();
    StringRef strategy = maskIsAlwaysTrue(kernel) ? "dense" : "masked";
    kernel->setAttr("strategy", StringAttr::get(&getContext(), strategy));
    kernel->setAttr("decode",
                    StringAttr::get(&getContext(), hullDecodable(kernel) ? "hull" : "scan"));
  }
};

} // namespace

std::unique_ptr<Pass> attn::createSelectStrategyPass() {
  return std::make_unique<SelectStrategyPass>();
}
