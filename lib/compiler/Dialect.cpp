// The `attn` dialect: registration, op verifiers and helpers.
#include "attn/compiler/Dialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"

#include <cmath>

using namespace mlir;
using namespace attn;

#include "attn/compiler/AttnDialect.cpp.inc"

void AttnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "attn/compiler/AttnOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "attn/compiler/AttnOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Dialect canonicalization
//===----------------------------------------------------------------------===//

namespace {

/// math.<fn>(constant) -> constant, for the unary functions the language
/// offers, inside attn.kernel regions.
template <typename MathOp>
struct FoldConstantMath : OpRewritePattern<MathOp> {
  FoldConstantMath(MLIRContext *ctx, double (*fn)(double))
      : OpRewritePattern<MathOp>(ctx), fn(fn) {}

  LogicalResult matchAndRewrite(MathOp op, PatternRewriter &rewriter) const override {
    if (!op->template getParentOfType<KernelOp>())
      return failure();
    FloatAttr c;
    if (!matchPattern(op->getOperand(0), m_Constant(&c)))
      return failure();
    double r = fn(c.getValueAsDouble());
    rewriter.replaceOpWithNewOp<arith::ConstantOp>(op, FloatAttr::get(c.getType(), r));
    return success();
  }
  double (*fn)(double);
};

} // namespace

void AttnDialect::getCanonicalizationPatterns(RewritePatternSet &results) const {
  MLIRContext *ctx = getContext();
  results.add<FoldConstantMath<math::RsqrtOp>>(ctx, [](double x) { return 1.0 / std::sqrt(x); });
  results.add<FoldConstantMath<math::SqrtOp>>(ctx, [](double x) { return std::sqrt(x); });
  results.add<FoldConstantMath<math::ExpOp>>(ctx, [](double x) { return std::exp(x); });
  results.add<FoldConstantMath<math::Exp2Op>>(ctx, [](double x) { return std::exp2(x); });
  results.add<FoldConstantMath<math::LogOp>>(ctx, [](double x) { return std::log(x); });
  results.add<FoldConstantMath<math::Log2Op>>(ctx, [](double x) { return std::log2(x); });
  results.add<FoldConstantMath<math::TanhOp>>(ctx, [](double x) { return std::tanh(x); });
}

//===----------------------------------------------------------------------===//
// KernelOp
//===----------------------------------------------------------------------===//

static DictionaryAttr findNamed(ArrayAttr list, StringRef name) {
  for (Attribute a : list) {
    auto dict = llvm::dyn_cast<DictionaryAttr>(a);
    if (!dict)
      continue;
    auto n = dict.getAs<StringAttr>("name");
    if (n && n.getValue() == name)
      return dict;
  }
  return {};
}

DictionaryAttr KernelOp::getTensor(StringRef name) {
  return findNamed(getTensors(), name);
}

DictionaryAttr KernelOp::getParam(StringRef name) {
  return findNamed(getParams(), name);
}

bool KernelOp::isSizeName(StringRef name) {
  for (Attribute a : getTensors()) {
    auto dims = llvm::cast<DictionaryAttr>(a).getAs<ArrayAttr>("dims");
    for (Attribute d : dims)
      if (auto s = llvm::dyn_cast<StringAttr>(d); s && s.getValue() == name)
        return true;
  }
  return false;
}

void KernelOp::getAsmBlockArgumentNames(Region &region, OpAsmSetValueNameFn setNameFn) {
  static const char *const names[] = {"b", "h", "i", "j"};
  bool kv = &region == &getKAt() || &region == &getVAt();
  for (BlockArgument arg : region.getArguments())
    if (arg.getArgNumber() < 4)
      setNameFn(arg, kv && arg.getArgNumber() == 1 ? "hk" : names[arg.getArgNumber()]);
}

void VectorOp::getAsmBlockArgumentNames(Region &region, OpAsmSetValueNameFn setNameFn) {
  static const char *const names[] = {"b", "h", "i", "j", "c"};
  for (BlockArgument arg : region.getArguments())
    if (arg.getArgNumber() < 5)
      setNameFn(arg, getSide() == "key" && arg.getArgNumber() == 1 ? "hk"
                                                                    : names[arg.getArgNumber()]);
}

void SumOp::getAsmBlockArgumentNames(Region &region, OpAsmSetValueNameFn setNameFn) {
  for (BlockArgument arg : region.getArguments())
    setNameFn(arg, "c");
}

static LogicalResult verifyRegion(KernelOp op, Region &region, StringRef what,
                                  Type expected) {
  Block &block = region.front();
  if (block.getNumArguments() != 4)
    return op.emitOpError() << what << " region must have 4 block arguments (b, h, i, j)";
  for (BlockArgument arg : block.getArguments())
    if (!arg.getType().isSignlessInteger(32))
      return op.emitOpError() << what << " region arguments must be i32";
  auto yield = llvm::dyn_cast<YieldOp>(block.getTerminator());
  if (!yield)
    return op.emitOpError() << what << " region must end in attn.yield";
  if (!expected) { // an index map: one integer per leading dimension
    for (Value v : yield.getValues())
      if (!v.getType().isSignlessInteger(32) && !v.getType().isSignlessInteger(64))
        return op.emitOpError() << what << " region must yield integers";
    return success();
  }
  if (yield.getValues().size() != 1)
    return op.emitOpError() << what << " region must yield one value";
  if (yield.getValue().getType() != expected)
    return op.emitOpError() << what << " region must yield " << expected
                            << ", got " << yield.getValue().getType();
  return success();
}

LogicalResult KernelOp::verify() {
  Type ct = getComputeType();
  if (!ct.isF32() && !ct.isF64())
    return emitOpError("compute_type must be f32 or f64");
  // Tensors: q, k, v first, each {name, type, dims}.
  static const char *const qkv[] = {"q", "k", "v"};
  ArrayAttr tensors = getTensors();
  if (tensors.size() < 3)
    return emitOpError("needs at least the q, k and v tensors");
  for (auto [idx, a] : llvm::enumerate(tensors)) {
    auto dict = llvm::dyn_cast<DictionaryAttr>(a);
    if (!dict || !dict.getAs<StringAttr>("name") || !dict.getAs<TypeAttr>("type") ||
        !dict.getAs<ArrayAttr>("dims"))
      return emitOpError("tensor entries must be {name, type, dims} dictionaries");
    StringRef name = dict.getAs<StringAttr>("name").getValue();
    // A source's k and v are SOURCE.k and SOURCE.v (LANGUAGE.md §8.5).
    std::string expected = qkv[idx < 3 ? idx : 0];
    if (auto src = (*this)->getAttrOfType<StringAttr>("source"); src && idx > 0)
      expected = src.str() + "." + expected;
    if (idx < 3 && name != expected)
      return emitOpError("tensor ") << idx << " must be '" << expected << "'";
    for (Attribute d : dict.getAs<ArrayAttr>("dims")) {
      auto lit = llvm::dyn_cast<IntegerAttr>(d);
      if (!llvm::isa<StringAttr>(d) && !(lit && lit.getInt() > 0))
        return emitOpError("dims of '") << name
                                        << "' must be size names or positive integers";
    }
  }
  Region *maps[3] = {&getQAt(), &getKAt(), &getVAt()};
  for (int t = 0; t < 3; ++t) {
    size_t rank = llvm::cast<DictionaryAttr>(tensors[t]).getAs<ArrayAttr>("dims").size();
    if (maps[t]->empty()) {
      if (rank != 4)
        return emitOpError("'") << qkv[t] << "' must have rank 4 or an index map";
      continue;
    }
    if (getRanges().empty())
      return emitOpError("index maps need the ranges region");
    if (failed(verifyRegion(*this, *maps[t], std::string(qkv[t]) + "_at", Type())))
      return failure();
    if (llvm::cast<YieldOp>(maps[t]->front().getTerminator()).getValues().size() + 1 != rank)
      return emitOpError() << qkv[t] << "_at must yield " << rank - 1 << " indices";
  }
  if (!getRanges().empty()) {
    Block &block = getRanges().front();
    auto yield = llvm::dyn_cast<YieldOp>(block.getTerminator());
    if (block.getNumArguments() != 0 || !yield || yield.getValues().size() < 5 ||
        yield.getValues().size() % 2 == 0)
      return emitOpError("ranges must yield B, H, Hk, Lq, Lk and pairs to compare");
    for (Value v : yield.getValues())
      if (!v.getType().isSignlessInteger(32))
        return emitOpError("ranges must be i32");
  }
  for (Attribute a : getParams()) {
    auto dict = llvm::dyn_cast<DictionaryAttr>(a);
    if (!dict || !dict.getAs<StringAttr>("name") || !dict.getAs<TypeAttr>("type"))
      return emitOpError("param entries must be {name, type[, default]} dictionaries");
  }
  StringRef norm = getNormalize();
  if (!llvm::is_contained({"softmax", "sigmoid", "relu", "none", "linear", "hardmax", "topk"},
                          norm))
    return emitOpError("unknown normalize '") << norm << "'";
  if (norm == "hardmax") {
    if (!getTies() || !llvm::is_contained({"average", "latest", "first"}, *getTies()))
      return emitOpError("hardmax needs ties = average, latest or first");
  }
  if (norm == "topk" && (!getTopk() || *getTopk() <= 0))
    return emitOpError("topk needs a positive topk attribute");
  if (getOutputLse() && !llvm::is_contained({"softmax", "hardmax", "topk"}, norm))
    return emitOpError("output lse is only defined for softmax, hardmax and topk");
  if (failed(verifyRegion(*this, getScore(), "score", ct)))
    return failure();
  if (!getGrad().empty()) {
    Block &block = getGrad().front();
    auto yield = llvm::dyn_cast<YieldOp>(block.getTerminator());
    auto wrt = (*this)->getAttrOfType<ArrayAttr>("grad_wrt");
    if (block.getNumArguments() != 4 || !yield || !wrt ||
        yield.getValues().size() < wrt.size() + 1 || yield.getValues().front().getType() != ct)
      return emitOpError("grad must take (b, h, i, j), yield the score and one derivative "
                         "per grad_wrt entry");
  }
  return verifyRegion(*this, getMask(), "mask", IntegerType::get(getContext(), 1));
}

//===----------------------------------------------------------------------===//
// Leaf ops
//===----------------------------------------------------------------------===//

static KernelOp parentKernel(Operation *op) {
  return op->getParentOfType<KernelOp>();
}

LogicalResult SqnormOp::verify() {
  if (getOf() != "q" && getOf() != "k")
    return emitOpError("'of' must be \"q\" or \"k\"");
  return success();
}

LogicalResult SizeOp::verify() {
  KernelOp kernel = parentKernel(*this);
  if (kernel && !kernel.isSizeName(getName()))
    return emitOpError("'") << getName() << "' is not a size of the kernel";
  return success();
}

void SizeOp::inferResultRanges(ArrayRef<ConstantIntRanges>, SetIntRangeFn setResultRange) {
  // Sizes are positive i32 values.
  setResultRange(getResult(), ConstantIntRanges::fromSigned(
                                  APInt(32, 1), APInt::getSignedMaxValue(32)));
}

LogicalResult ParamOp::verify() {
  KernelOp kernel = parentKernel(*this);
  if (!kernel)
    return success();
  DictionaryAttr p = kernel.getParam(getName());
  if (!p)
    return emitOpError("'") << getName() << "' is not a param of the kernel";
  Type declared = p.getAs<TypeAttr>("type").getValue();
  Type expected = llvm::isa<FloatType>(declared) ? kernel.getComputeType() : declared;
  if (getType() != expected)
    return emitOpError("param '") << getName() << "' reads as " << expected;
  return success();
}

LogicalResult LoadOp::verify() {
  KernelOp kernel = parentKernel(*this);
  if (!kernel)
    return success();
  DictionaryAttr t = kernel.getTensor(getTensor());
  if (!t)
    return emitOpError("'") << getTensor() << "' is not a tensor of the kernel";
  if (llvm::is_contained({"q", "k", "v"}, getTensor()))
    return emitOpError("q, k and v are read through attn.dot / attn.sqnorm");
  size_t rank = t.getAs<ArrayAttr>("dims").size();
  if (getIndices().size() != rank)
    return emitOpError("'") << getTensor() << "' has rank " << rank << " but "
                            << getIndices().size() << " indices were given";
  Type declared = t.getAs<TypeAttr>("type").getValue();
  Type expected = llvm::isa<FloatType>(declared) ? kernel.getComputeType() : declared;
  if (getType() != expected)
    return emitOpError("'") << getTensor() << "' reads as " << expected;
  return success();
}
