// MLIRGen: builds `attn.kernel` ops from the checked AST (see MLIRGen.h).
#include "attn/compiler/MLIRGen.h"

#include "attn/compiler/Dialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

#include <cmath>
#include <map>

using namespace mlir;
using namespace attn::dsl;

void attn::registerDialects(MLIRContext &ctx) {
  ctx.loadDialect<attn::AttnDialect, arith::ArithDialect, math::MathDialect>();
}

namespace {

Type elemToMlir(MLIRContext *ctx, ElemType t) {
  Builder b(ctx);
  switch (t) {
  case ElemType::F32: return b.getF32Type();
  case ElemType::F16: return b.getF16Type();
  case ElemType::BF16: return b.getBF16Type();
  case ElemType::F64: return b.getF64Type();
  case ElemType::I32: return b.getI32Type();
  case ElemType::I64: return b.getI64Type();
  case ElemType::Bool: return b.getI1Type();
  }
  return {};
}

class KernelGen {
public:
  KernelGen(MLIRContext *ctx, const Module &module, const Kernel &kernel)
      : ctx_(ctx), b_(ctx), module_(module), kernel_(kernel) {}

  attn::KernelOp build(OpBuilder &outer) {
    Location loc = locOf(kernel_.range);
    Type ct = scalarType(kernel_.computeType);

    SmallVector<Attribute> tensors;
    // ABI order: q, k, v, then aux tensors in declaration order.
    for (const TensorDecl *t : {kernel_.q, kernel_.k, kernel_.v})
      tensors.push_back(tensorAttr(*t));
    for (const TensorDecl &t : kernel_.tensors)
      if (t.role == TensorRole::Aux)
        tensors.push_back(tensorAttr(t));

    SmallVector<Attribute> params;
    for (const ParamDecl &p : kernel_.params) {
      SmallVector<NamedAttribute> fields{
          b_.getNamedAttr("name", b_.getStringAttr(p.name)),
          b_.getNamedAttr("type", TypeAttr::get(elemToMlir(ctx_, p.type)))};
      if (p.defaultValue)
        fields.push_back(b_.getNamedAttr("default", literalAttr(p.type, *p.defaultValue)));
      params.push_back(b_.getDictionaryAttr(fields));
    }

    const Normalize &n = kernel_.normalize;
    // A source of a kernel with `source` blocks (LANGUAGE.md §8.5) is a
    // kernel op of its own, @NAME.SOURCE, with attribute source = "SOURCE".
    std::string symbol = kernel_.name;
    if (!kernel_.sourceName.empty())
      symbol += "." + kernel_.sourceName;
    auto op = outer.create<attn::KernelOp>(
        loc, b_.getStringAttr(symbol), b_.getArrayAttr(tensors),
        b_.getArrayAttr(params), TypeAttr::get(ct), b_.getStringAttr(toString(n.kind)),
        n.kind == NormKind::Hardmax ? b_.getStringAttr(toString(n.ties)) : StringAttr(),
        n.kind == NormKind::TopK ? b_.getI64IntegerAttr(n.k) : IntegerAttr(),
        kernel_.outputLse ? b_.getUnitAttr() : UnitAttr());

    if (!kernel_.sourceName.empty())
      op->setAttr("source", b_.getStringAttr(kernel_.sourceName));
    genVectors(op.getVectors(), loc);
    genRegion(op.getScore(), *kernel_.score);
    genRegion(op.getMask(), *kernel_.mask);
    // Sources always carry their ranges: the kernel checks that they agree.
    if (kernel_.hasIndexMaps() || !kernel_.sourceName.empty()) {
      genRanges(op.getRanges(), loc);
      Region *maps[3] = {&op.getQAt(), &op.getKAt(), &op.getVAt()};
      const TensorDecl *decls[3] = {kernel_.q, kernel_.k, kernel_.v};
      for (int t = 0; t < 3; ++t)
        if (!decls[t]->at.empty())
          genIndexMap(*maps[t], *decls[t], t > 0);
    }
    return op;
  }

private:
  Location locOf(const SourceRange &r) {
    return FileLineColLoc::get(ctx_, module_.fileName, r.begin.line, r.begin.col);
  }

  Type scalarType(ScalarType t) {
    switch (t) {
    case ScalarType::Bool: return b_.getI1Type();
    case ScalarType::I32: return b_.getI32Type();
    case ScalarType::I64: return b_.getI64Type();
    case ScalarType::F32: return b_.getF32Type();
    case ScalarType::F64: return b_.getF64Type();
    case ScalarType::Unknown: break;
    }
    return b_.getNoneType();
  }

  Attribute literalAttr(ElemType t, const Literal &lit) {
    Type ty = elemToMlir(ctx_, t);
    if (isFloat(t))
      return b_.getFloatAttr(ty, lit.kind == Literal::Kind::Float ? lit.f : double(lit.i));
    if (t == ElemType::Bool)
      return b_.getBoolAttr(lit.kind == Literal::Kind::Bool ? lit.b : lit.i != 0);
    return b_.getIntegerAttr(ty, lit.i);
  }

  Attribute tensorAttr(const TensorDecl &t) {
    SmallVector<Attribute> dims;
    for (const Dim &d : t.dims)
      dims.push_back(d.isLiteral() ? Attribute(b_.getI64IntegerAttr(d.value))
                                   : Attribute(b_.getStringAttr(d.name)));
    return b_.getDictionaryAttr({
        b_.getNamedAttr("name", b_.getStringAttr(t.callName())),
        b_.getNamedAttr("type", TypeAttr::get(elemToMlir(ctx_, t.type))),
        b_.getNamedAttr("dims", b_.getArrayAttr(dims)),
    });
  }

  /// Starts a region's block with the four index arguments (none for the
  /// ranges region); gen() then builds into it.
  OpBuilder startRegion(Region &region, Location loc, int args) {
    Block *block = new Block();
    region.push_back(block);
    for (int a = 0; a < args; ++a)
      block->addArgument(b_.getI32Type(), loc);
    block_ = block;
    lets_.clear();
    return OpBuilder::atBlockEnd(block);
  }

  void genRegion(Region &region, const Expr &body) {
    Location loc = locOf(body.range);
    OpBuilder builder = startRegion(region, loc, 4);
    builder_ = &builder;
    kvArgs_ = false;
    Value v = gen(body);
    builder.create<attn::YieldOp>(loc, ValueRange{v});
    builder_ = nullptr;
  }

  /// One attn.vector per channel vector let (LANGUAGE.md §8.3).
  void genVectors(Region &region, Location loc) {
    bool any = false;
    for (const LetDecl &l : kernel_.lets)
      any = any || l.isVector();
    if (!any)
      return;
    Block *outer = new Block();
    region.push_back(outer);
    OpBuilder ob = OpBuilder::atBlockEnd(outer);
    for (const LetDecl &l : kernel_.lets) {
      if (!l.isVector())
        continue;
      Location vloc = locOf(l.range);
      const char *side = l.side == VectorSide::Query ? "query"
                         : l.side == VectorSide::Key ? "key"
                                                     : "constant";
      Attribute length = l.length->isLiteral() ? Attribute(b_.getI64IntegerAttr(l.length->value))
                                               : Attribute(b_.getStringAttr(l.length->name));
      auto v = ob.create<attn::VectorOp>(vloc, b_.getStringAttr(l.name), b_.getStringAttr(side),
                                         length);
      OpBuilder builder = startRegion(v.getBody(), vloc, 5);
      builder_ = &builder;
      kvArgs_ = l.side == VectorSide::Key;
      channels_.clear();
      channels_.push_back({l.var, block_->getArgument(4)});
      Value x = gen(*l.value);
      builder.create<attn::YieldOp>(vloc, ValueRange{x});
      channels_.clear();
      builder_ = nullptr;
      kvArgs_ = false;
    }
    ob.create<attn::YieldOp>(loc, ValueRange{});
  }

  /// q_at / k_at / v_at: the leading indices of the tensor's row. In k_at and
  /// v_at, block argument 1 is hk.
  void genIndexMap(Region &region, const TensorDecl &t, bool kv) {
    Location loc = locOf(t.atRange);
    OpBuilder builder = startRegion(region, loc, 4);
    builder_ = &builder;
    kvArgs_ = kv;
    SmallVector<Value> indices;
    for (const ExprPtr &e : t.at)
      indices.push_back(gen(*e));
    builder.create<attn::YieldOp>(loc, indices);
    builder_ = nullptr;
    kvArgs_ = false;
  }

  /// The extents B, H, Hk, Lq, Lk, then every further definition of an
  /// extent beside the first one (they must agree at run time).
  void genRanges(Region &region, Location loc) {
    OpBuilder builder = startRegion(region, loc, 0);
    builder_ = &builder;
    static const IndexVar order[] = {IndexVar::B, IndexVar::H, IndexVar::Hk, IndexVar::I,
                                     IndexVar::J};
    SmallVector<Value> values;
    for (IndexVar v : order)
      values.push_back(gen(*kernel_.extents[int(v)].front().value));
    for (int o = 0; o < 5; ++o) {
      const auto &defs = kernel_.extents[int(order[o])];
      for (size_t n = 1; n < defs.size(); ++n) {
        values.push_back(values[o]);
        values.push_back(gen(*defs[n].value));
      }
    }
    builder.create<attn::YieldOp>(loc, values);
    builder_ = nullptr;
  }

  Value constInt(Location loc, Type ty, int64_t v) {
    return builder_->create<arith::ConstantOp>(loc, IntegerAttr::get(ty, v));
  }

  Value gen(const Expr &e) {
    Location loc = locOf(e.range);
    OpBuilder &b = *builder_;
    Type ty = scalarType(e.type);
    switch (e.kind) {
    case ExprKind::IntLit:
      return constInt(loc, ty, e.intValue);
    case ExprKind::FloatLit:
      return b.create<arith::ConstantOp>(loc, FloatAttr::get(ty, e.floatValue));
    case ExprKind::BoolLit:
      return b.create<arith::ConstantOp>(loc, b.getBoolAttr(e.boolValue));
    case ExprKind::Inf:
      return b.create<arith::ConstantOp>(loc, FloatAttr::get(ty, INFINITY));
    case ExprKind::Ident:
      return genIdent(e, loc, ty);
    case ExprKind::Unary: {
      Value x = gen(*e.args[0]);
      if (e.unaryOp == UnaryOp::Not)
        return b.create<arith::XOrIOp>(loc, x, constInt(loc, b.getI1Type(), 1));
      if (llvm::isa<FloatType>(ty))
        return b.create<arith::NegFOp>(loc, x);
      return b.create<arith::SubIOp>(loc, constInt(loc, ty, 0), x);
    }
    case ExprKind::Binary:
      return genBinary(e, loc);
    case ExprKind::Call:
      return genCall(e, loc, ty);
    case ExprKind::Index: {
      SmallVector<Value> indices;
      for (const auto &a : e.args)
        indices.push_back(gen(*a));
      return b.create<attn::LoadOp>(loc, ty, b.getStringAttr(e.name), indices);
    }
    case ExprKind::Cast:
      return genCast(gen(*e.args[0]), ty, loc);
    case ExprKind::Element:
      return b.create<attn::ElemOp>(loc, ty, b.getStringAttr(e.name), gen(*e.args[0]));
    case ExprKind::Sum: {
      Value length = gen(*e.args[0]);
      auto sum = b.create<attn::SumOp>(loc, ty, length);
      Block *body = new Block();
      sum.getBody().push_back(body);
      Value c = body->addArgument(b.getI32Type(), loc);
      // The body's values stay inside it: lets first generated there are
      // forgotten after (they would not dominate later uses).
      auto savedLets = lets_;
      OpBuilder *outer = builder_;
      OpBuilder inner = OpBuilder::atBlockEnd(body);
      builder_ = &inner;
      channels_.push_back({e.name, c});
      Value x = gen(*e.args[1]);
      inner.create<attn::YieldOp>(loc, ValueRange{x});
      channels_.pop_back();
      builder_ = outer;
      lets_ = savedLets;
      return sum.getResult();
    }
    }
    llvm_unreachable("unknown expression kind");
  }

  Value genIdent(const Expr &e, Location loc, Type ty) {
    switch (e.ident) {
    case IdentKind::IndexVar: {
      if (e.name == "hk") {
        if (kvArgs_)
          return block_->getArgument(1);
        // The key/value head of query head h: h / (H / Hk).
        OpBuilder &b = *builder_;
        Value H = gen(*kernel_.extents[int(IndexVar::H)].front().value);
        Value Hk = gen(*kernel_.extents[int(IndexVar::Hk)].front().value);
        Value group = b.create<arith::FloorDivSIOp>(loc, H, Hk);
        return b.create<arith::FloorDivSIOp>(loc, block_->getArgument(1), group);
      }
      static const char vars[] = {'b', 'h', 'i', 'j'};
      for (int a = 0; a < 4; ++a)
        if (e.name.size() == 1 && e.name[0] == vars[a])
          return block_->getArgument(a);
      break;
    }
    case IdentKind::Size:
      return builder_->create<attn::SizeOp>(loc, builder_->getI32Type(), builder_->getStringAttr(e.name));
    case IdentKind::Param:
      return builder_->create<attn::ParamOp>(loc, ty, builder_->getStringAttr(e.name));
    case IdentKind::Let: {
      // A let is computed once per region, where first used.
      auto it = lets_.find(e.name);
      if (it != lets_.end())
        return it->second;
      const LetDecl *let = kernel_.findLet(e.name);
      Value v = gen(*let->value);
      lets_[e.name] = v;
      return v;
    }
    case IdentKind::Channel:
      for (auto it = channels_.rbegin(); it != channels_.rend(); ++it)
        if (it->first == e.name)
          return it->second;
      break;
    case IdentKind::Unresolved:
      break;
    }
    llvm_unreachable("identifier not resolved by Sema");
  }

  Value genCast(Value x, Type to, Location loc) {
    OpBuilder &b = *builder_;
    Type from = x.getType();
    if (from == to)
      return x;
    bool fromF = llvm::isa<FloatType>(from), toF = llvm::isa<FloatType>(to);
    if (!fromF && toF) {
      if (from.isInteger(1))
        return b.create<arith::UIToFPOp>(loc, to, x);
      return b.create<arith::SIToFPOp>(loc, to, x);
    }
    if (fromF && !toF)
      return b.create<arith::FPToSIOp>(loc, to, x);
    if (fromF && toF)
      return from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth()
                 ? Value(b.create<arith::ExtFOp>(loc, to, x))
                 : Value(b.create<arith::TruncFOp>(loc, to, x));
    if (from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth())
      return from.isInteger(1) ? Value(b.create<arith::ExtUIOp>(loc, to, x))
                               : Value(b.create<arith::ExtSIOp>(loc, to, x));
    return b.create<arith::TruncIOp>(loc, to, x);
  }

  /// Floor division and floor modulo (LANGUAGE.md §3), in plain arith ops.
  Value floorMod(Value a, Value bv, Location loc) {
    OpBuilder &b = *builder_;
    if (llvm::isa<FloatType>(a.getType())) {
      Value q = b.create<math::FloorOp>(loc, b.create<arith::DivFOp>(loc, a, bv));
      return b.create<arith::SubFOp>(loc, a, b.create<arith::MulFOp>(loc, q, bv));
    }
    Value q = b.create<arith::FloorDivSIOp>(loc, a, bv);
    return b.create<arith::SubIOp>(loc, a, b.create<arith::MulIOp>(loc, q, bv));
  }

  Value genBinary(const Expr &e, Location loc) {
    OpBuilder &b = *builder_;
    Value l = gen(*e.args[0]);
    Value r = gen(*e.args[1]);
    bool f = llvm::isa<FloatType>(l.getType());
    using P = arith::CmpIPredicate;
    using FP = arith::CmpFPredicate;
    auto cmp = [&](P ip, FP fp) -> Value {
      if (f)
        return b.create<arith::CmpFOp>(loc, fp, l, r);
      return b.create<arith::CmpIOp>(loc, ip, l, r);
    };
    switch (e.binaryOp) {
    case BinaryOp::Or: return b.create<arith::OrIOp>(loc, l, r);
    case BinaryOp::And: return b.create<arith::AndIOp>(loc, l, r);
    case BinaryOp::Eq: return cmp(P::eq, FP::OEQ);
    case BinaryOp::Ne: return cmp(P::ne, FP::UNE);
    case BinaryOp::Lt: return cmp(P::slt, FP::OLT);
    case BinaryOp::Le: return cmp(P::sle, FP::OLE);
    case BinaryOp::Gt: return cmp(P::sgt, FP::OGT);
    case BinaryOp::Ge: return cmp(P::sge, FP::OGE);
    case BinaryOp::Add:
      return f ? Value(b.create<arith::AddFOp>(loc, l, r)) : Value(b.create<arith::AddIOp>(loc, l, r));
    case BinaryOp::Sub:
      return f ? Value(b.create<arith::SubFOp>(loc, l, r)) : Value(b.create<arith::SubIOp>(loc, l, r));
    case BinaryOp::Mul:
      return f ? Value(b.create<arith::MulFOp>(loc, l, r)) : Value(b.create<arith::MulIOp>(loc, l, r));
    case BinaryOp::Div:
      return f ? Value(b.create<arith::DivFOp>(loc, l, r))
               : Value(b.create<arith::FloorDivSIOp>(loc, l, r));
    case BinaryOp::Mod:
      return floorMod(l, r, loc);
    }
    llvm_unreachable("unknown binary op");
  }

  Value genCall(const Expr &e, Location loc, Type ty) {
    OpBuilder &b = *builder_;
    SmallVector<Value> a;
    if (e.builtin != Builtin::DotVec && e.builtin != Builtin::SqnormVec) // args name vectors
      for (const auto &arg : e.args)
        a.push_back(gen(*arg));
    bool f = llvm::isa<FloatType>(ty);
    switch (e.builtin) {
    case Builtin::Dot: return b.create<attn::DotOp>(loc, ty);
    case Builtin::SqnormQ: return b.create<attn::SqnormOp>(loc, ty, b.getStringAttr("q"));
    case Builtin::SqnormK: return b.create<attn::SqnormOp>(loc, ty, b.getStringAttr("k"));
    case Builtin::Exp: return b.create<math::ExpOp>(loc, a[0]);
    case Builtin::Exp2: return b.create<math::Exp2Op>(loc, a[0]);
    case Builtin::Log: return b.create<math::LogOp>(loc, a[0]);
    case Builtin::Log2: return b.create<math::Log2Op>(loc, a[0]);
    case Builtin::Sqrt: return b.create<math::SqrtOp>(loc, a[0]);
    case Builtin::Rsqrt: return b.create<math::RsqrtOp>(loc, a[0]);
    case Builtin::Tanh: return b.create<math::TanhOp>(loc, a[0]);
    case Builtin::Sigmoid: {
      // 1 / (1 + exp(-x))
      Value one = b.create<arith::ConstantOp>(loc, FloatAttr::get(ty, 1.0));
      Value ex = b.create<math::ExpOp>(loc, b.create<arith::NegFOp>(loc, a[0]));
      return b.create<arith::DivFOp>(loc, one, b.create<arith::AddFOp>(loc, one, ex));
    }
    case Builtin::Abs:
      return f ? Value(b.create<math::AbsFOp>(loc, a[0])) : Value(b.create<math::AbsIOp>(loc, a[0]));
    case Builtin::Floor: return b.create<math::FloorOp>(loc, a[0]);
    case Builtin::Ceil: return b.create<math::CeilOp>(loc, a[0]);
    case Builtin::Sin: return b.create<math::SinOp>(loc, a[0]);
    case Builtin::Cos: return b.create<math::CosOp>(loc, a[0]);
    case Builtin::Int: return b.create<attn::IntOp>(loc, b.getI32Type(), a[0]);
    case Builtin::Min:
      return f ? Value(b.create<arith::MinimumFOp>(loc, a[0], a[1]))
               : Value(b.create<arith::MinSIOp>(loc, a[0], a[1]));
    case Builtin::Max:
      return f ? Value(b.create<arith::MaximumFOp>(loc, a[0], a[1]))
               : Value(b.create<arith::MaxSIOp>(loc, a[0], a[1]));
    case Builtin::Pow: return b.create<math::PowFOp>(loc, a[0], a[1]);
    case Builtin::Clamp: {
      if (f)
        return b.create<arith::MinimumFOp>(loc, b.create<arith::MaximumFOp>(loc, a[0], a[1]), a[2]);
      return b.create<arith::MinSIOp>(loc, b.create<arith::MaxSIOp>(loc, a[0], a[1]), a[2]);
    }
    case Builtin::Select: return b.create<arith::SelectOp>(loc, a[0], a[1], a[2]);
    case Builtin::DotVec:
      return b.create<attn::VectorDotOp>(loc, ty, b.getStringAttr(e.args[0]->name),
                                         b.getStringAttr(e.args[1]->name));
    case Builtin::SqnormVec:
      return b.create<attn::VectorSqnormOp>(loc, ty, b.getStringAttr(e.args[0]->name));
    case Builtin::None: break;
    }
    llvm_unreachable("call not resolved by Sema");
  }

  MLIRContext *ctx_;
  Builder b_;
  const Module &module_;
  const Kernel &kernel_;
  OpBuilder *builder_ = nullptr;
  Block *block_ = nullptr;
  std::map<std::string, Value> lets_;
  bool kvArgs_ = false; // generating k_at / v_at: argument 1 is hk
  std::vector<std::pair<std::string, Value>> channels_; // channel variables in scope
};

} // namespace

OwningOpRef<ModuleOp> attn::mlirGen(MLIRContext &ctx, const Module &module) {
  registerDialects(ctx);
  OwningOpRef<ModuleOp> result =
      ModuleOp::create(FileLineColLoc::get(&ctx, module.fileName, 1, 1));
  OpBuilder outer = OpBuilder::atBlockEnd(result->getBody());
  for (const Kernel &kernel : module.kernels) {
    if (!kernel.hasSources())
      KernelGen(&ctx, module, kernel).build(outer);
    for (const Kernel &source : kernel.sources)
      KernelGen(&ctx, module, source).build(outer);
  }
  if (failed(verify(*result)))
    return nullptr;
  return result;
}
