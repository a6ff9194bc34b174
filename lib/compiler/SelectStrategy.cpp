// attn-select-strategy: records on each kernel which algorithm lowers it.
#include "attn/compiler/Passes.h"

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

struct SelectStrategyPass : attn::impl::SelectStrategyBase<SelectStrategyPass> {
  void runOnOperation() override {
    attn::KernelOp kernel = getOperation();
    StringRef strategy = maskIsAlwaysTrue(kernel) ? "dense" : "masked";
    kernel->setAttr("strategy", StringAttr::get(&getContext(), strategy));
  }
};

} // namespace

std::unique_ptr<Pass> attn::createSelectStrategyPass() {
  return std::make_unique<SelectStrategyPass>();
}
