// attn-select-strategy: records on each kernel which algorithm lowers it.
#include "attn/compiler/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
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

/// LANGUAGE.md §8.4: with normalize = linear or none, no mask or a causal
/// one and a score c * dot(x, y) of a query and a key vector (c > 0 a
/// constant), attention factorises: out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ (over
/// j <= i when causal), O(L) instead of O(L²). Empty when it applies (with
/// the constant in `scale`), else why not.
std::string linearWhyNot(attn::KernelOp kernel, double &scale) {
  StringRef norm = kernel.getNormalize();
  if (norm != "linear" && norm != "none")
    return "normalize is " + norm.str() + ", not linear or none";
  if (!(maskIsAlwaysTrue(kernel) || maskIsCausal(kernel)))
    return "the mask is neither absent nor causal (j <= i)";
  if (kernel->getAttr("source"))
    return "a kernel of several key/value sources";
  if (kernel.hasIndexMaps())
    return "index maps (`at`): the linear kernels read [B, H, L, D] rows";
  auto yield = llvm::cast<attn::YieldOp>(kernel.getScore().front().getTerminator());
  Value s = yield.getValue();
  scale = 1;
  for (int peel = 0; peel < 4; ++peel) {
    auto mul = s.getDefiningOp<arith::MulFOp>();
    if (!mul)
      break;
    FloatAttr c;
    if (matchPattern(mul.getRhs(), m_Constant(&c)))
      s = mul.getLhs();
    else if (matchPattern(mul.getLhs(), m_Constant(&c)))
      s = mul.getRhs();
    else
      break;
    scale *= c.getValueAsDouble();
  }
  if (!s.getDefiningOp<attn::DotOp>() && !s.getDefiningOp<attn::VectorDotOp>()) {
    for (Operation &op : kernel.getScore().front())
      if (op.getName().getStringRef() == "math.powf")
        return "the score has a pow() decay, which the linear kernels do not take yet";
    return "the score is not a constant times dot(x, y) of a query and a key vector";
  }
  if (!(scale > 0))
    return "the score's constant factor is not positive";
  return "";
}

struct SelectStrategyPass : attn::impl::SelectStrategyBase<SelectStrategyPass> {
  void runOnOperation() override {
    attn::KernelOp kernel = getOperation();
    StringRef strategy = maskIsAlwaysTrue(kernel) ? "dense" : "masked";
    double linearScale = 1;
    std::string whyNot = linearWhyNot(kernel, linearScale);
    if (whyNot.empty()) {
      strategy = "linear";
      kernel->setAttr("linear_scale", FloatAttr::get(Float64Type::get(&getContext()), linearScale));
      kernel->setAttr("linear_causal", BoolAttr::get(&getContext(), maskIsCausal(kernel)));
    } else if (kernel.getNormalize() == "linear" || kernel.getNormalize() == "none") {
      kernel->setAttr("linear_why_not", StringAttr::get(&getContext(), whyNot));
    }
    kernel->setAttr("strategy", StringAttr::get(&getContext(), strategy));
    std::optional<double> scale = dotScale(kernel);
    StringRef decode = decodeStrategy(kernel, scale);
    // A linear kernel of c·dot(q, k) decodes through a constant-size state.
    if (strategy == "linear" && decode == "scan")
      decode = "linear";
    kernel->setAttr("decode", StringAttr::get(&getContext(), decode));
    if (decode != "none")
      kernel->setAttr("decode_scale", FloatAttr::get(Float64Type::get(&getContext()), *scale));
  }
};

} // namespace

std::unique_ptr<Pass> attn::createSelectStrategyPass() {
  return std::make_unique<SelectStrategyPass>();
}
