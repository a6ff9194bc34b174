// Mask analysis (see MaskAnalysis.h): dependency slices of mask loads, range
// inference over the mask region per tile, and a concrete mask evaluator.
#include "attn/compiler/MaskAnalysis.h"

#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/InferIntRangeInterface.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <algorithm>

using namespace mlir;

namespace attn {

const char *toString(MaskKind kind) {
  switch (kind) {
  case MaskKind::All: return "all";
  case MaskKind::Affine: return "affine";
  case MaskKind::NonAffine: return "non-affine";
  case MaskKind::DataDependent: return "data-dependent";
  }
  return "?";
}

const char *toString(LoadSummary kind) {
  switch (kind) {
  case LoadSummary::Uniform: return "uniform";
  case LoadSummary::QueryTile: return "query-tile";
  case LoadSummary::KeyBlock: return "key-block";
  case LoadSummary::Pair: return "pair";
  }
  return "?";
}

namespace {

Block &maskBlock(KernelOp kernel) { return kernel.getMask().front(); }

Value maskResult(KernelOp kernel) {
  return llvm::cast<YieldOp>(maskBlock(kernel).getTerminator()).getValue();
}

bool isIntegerLike(Type t) { return llvm::isa<IntegerType>(t); }

/// Ops whose integer semantics the range rules and MaskEvaluator cover.
bool isAffineOp(Operation *op) {
  if (llvm::isa<SizeOp, ParamOp, YieldOp>(op))
    return llvm::all_of(op->getResultTypes(), isIntegerLike);
  if (auto c = llvm::dyn_cast<arith::ConstantOp>(op))
    return isIntegerLike(c.getType());
  return llvm::isa<arith::AddIOp, arith::SubIOp, arith::MulIOp, arith::FloorDivSIOp,
                   arith::DivSIOp, arith::RemSIOp, arith::CmpIOp, arith::AndIOp,
                   arith::OrIOp, arith::XOrIOp, arith::MinSIOp, arith::MaxSIOp,
                   arith::SelectOp, arith::ExtSIOp, arith::ExtUIOp, arith::TruncIOp,
                   math::AbsIOp>(op) &&
         llvm::all_of(op->getResultTypes(), isIntegerLike) &&
         llvm::all_of(op->getOperandTypes(), isIntegerLike);
}

APInt apInt(unsigned width, int64_t v) {
  if (width == 1)
    return APInt(1, v != 0 ? 1 : 0);
  return APInt(width, static_cast<uint64_t>(v), /*isSigned=*/true);
}

ConstantIntRanges signedRange(unsigned width, int64_t lo, int64_t hi) {
  if (width == 1)
    return ConstantIntRanges::fromUnsigned(apInt(1, lo), apInt(1, hi));
  return ConstantIntRanges::fromSigned(apInt(width, lo), apInt(width, hi));
}

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    --q;
  return q;
}

int64_t floorMod(int64_t a, int64_t b) { return a - floorDiv(a, b) * b; }

/// The signed range of a value of width <= 64 as int64.
IntRange toInt(const ConstantIntRanges &r) {
  if (r.smin().getBitWidth() == 1) // i1: 0 / 1 (unsigned view)
    return {static_cast<int64_t>(r.umin().getZExtValue()),
            static_cast<int64_t>(r.umax().getZExtValue())};
  return {r.smin().getSExtValue(), r.smax().getSExtValue()};
}

/// The operands of a floor division or modulo whose divisor is positive
/// everywhere, as int64 ranges, with their bit width; nullopt otherwise.
struct DivOperands {
  unsigned w;
  IntRange a, d;
};
std::optional<DivOperands> positiveDivision(const ConstantIntRanges &a,
                                            const ConstantIntRanges &d) {
  unsigned w = a.smin().getBitWidth();
  if (w < 2 || w > 64)
    return std::nullopt;
  DivOperands o{w, toInt(a), toInt(d)};
  if (o.d.lo <= 0)
    return std::nullopt;
  return o;
}

/// Exact range of floordivsi(a, d) for d > 0 everywhere: floor(a / d) is
/// monotone in a and in d, so its extremes are at the corners.
std::optional<ConstantIntRanges> floorDivRange(const ConstantIntRanges &a,
                                               const ConstantIntRanges &d) {
  auto ops = positiveDivision(a, d);
  if (!ops)
    return std::nullopt;
  auto [w, ar, dr] = *ops;
  int64_t c[4] = {floorDiv(ar.lo, dr.lo), floorDiv(ar.lo, dr.hi), floorDiv(ar.hi, dr.lo),
                  floorDiv(ar.hi, dr.hi)};
  return signedRange(w, *std::min_element(c, c + 4), *std::max_element(c, c + 4));
}

/// Exact (for a constant divisor) range of a - floordivsi(a, d) * d with
/// d > 0: the floor modulo, in [0, d - 1]. The ops wrap modulo 2^w but the
/// true result fits, so wrapping does not change it.
std::optional<ConstantIntRanges> floorModRange(const ConstantIntRanges &a,
                                               const ConstantIntRanges &d) {
  auto ops = positiveDivision(a, d);
  if (!ops)
    return std::nullopt;
  auto [w, ar, dr] = *ops;
  if (dr.lo == dr.hi) {
    int64_t c = dr.lo;
    // a spans fewer than c values: its image under mod c is an interval
    // unless it wraps past a multiple of c.
    if (static_cast<uint64_t>(ar.hi) - static_cast<uint64_t>(ar.lo) < static_cast<uint64_t>(c)) {
      int64_t lo = floorMod(ar.lo, c), hi = floorMod(ar.hi, c);
      if (lo <= hi)
        return signedRange(w, lo, hi);
    }
    return signedRange(w, 0, c - 1);
  }
  if (ar.lo >= 0 && ar.hi < dr.lo)
    return a; // a < d for every d: the identity
  return signedRange(w, 0, std::max<int64_t>(0, dr.hi - 1));
}

/// Exact range of absi(a); the full range when a may be INT_MIN (abs wraps).
ConstantIntRanges absRange(const ConstantIntRanges &a) {
  unsigned w = a.smin().getBitWidth();
  if (w < 2 || w > 64 || a.smin().isMinSignedValue())
    return ConstantIntRanges::maxRange(w);
  IntRange r = toInt(a);
  if (r.lo >= 0)
    return a;
  if (r.hi <= 0)
    return signedRange(w, -r.hi, -r.lo);
  return signedRange(w, 0, std::max(-r.lo, r.hi));
}

/// True when addi/subi/muli over these signed ranges may leave the range of
/// the type: the language leaves i32 overflow undefined (the IR wraps, the
/// float64 reference does not), so such results are unknown.
bool mayOverflow(Operation *op, const ConstantIntRanges &x, const ConstantIntRanges &y) {
  unsigned w = x.smin().getBitWidth();
  if (w < 2 || w > 64)
    return false;
  using I = __int128;
  I a[2] = {x.smin().getSExtValue(), x.smax().getSExtValue()};
  I b[2] = {y.smin().getSExtValue(), y.smax().getSExtValue()};
  I lo = 0, hi = 0;
  bool first = true;
  for (I u : a)
    for (I v : b) {
      I r = llvm::isa<arith::AddIOp>(op) ? u + v : llvm::isa<arith::SubIOp>(op) ? u - v : u * v;
      lo = first || r < lo ? r : lo;
      hi = first || r > hi ? r : hi;
      first = false;
    }
  I tmin = -(I(1) << (w - 1)), tmax = (I(1) << (w - 1)) - 1;
  return lo < tmin || hi > tmax;
}

/// Matches `a - floordivsi(a, d) * d` (either operand order of the multiply)
/// and returns (a, d).
std::optional<std::pair<Value, Value>> matchFloorMod(arith::SubIOp sub) {
  auto mul = sub.getRhs().getDefiningOp<arith::MulIOp>();
  if (!mul)
    return std::nullopt;
  Value a = sub.getLhs();
  for (auto [q, d] : {std::pair(mul.getLhs(), mul.getRhs()), std::pair(mul.getRhs(), mul.getLhs())}) {
    auto div = q.getDefiningOp<arith::FloorDivSIOp>();
    if (div && div.getLhs() == a && div.getRhs() == d)
      return std::pair(a, d);
  }
  return std::nullopt;
}

} // namespace

unsigned indexDependencies(Value value) {
  unsigned deps = 0;
  SmallVector<Value> work{value};
  llvm::SmallPtrSet<Operation *, 16> seen;
  while (!work.empty()) {
    Value v = work.pop_back_val();
    if (auto arg = llvm::dyn_cast<BlockArgument>(v)) {
      if (arg.getArgNumber() < 4)
        deps |= 1u << arg.getArgNumber();
      continue;
    }
    Operation *op = v.getDefiningOp();
    if (!op || !seen.insert(op).second)
      continue;
    for (Value operand : op->getOperands())
      work.push_back(operand);
  }
  return deps;
}

LoadSummary loadSummary(LoadOp load) {
  unsigned deps = 0;
  for (Value index : load.getIndices())
    deps |= indexDependencies(index);
  bool i = deps & 4, j = deps & 8;
  if (i && j)
    return LoadSummary::Pair;
  if (i)
    return LoadSummary::QueryTile;
  if (j)
    return LoadSummary::KeyBlock;
  return LoadSummary::Uniform;
}

MaskKind maskKind(KernelOp kernel) {
  if (matchPattern(maskResult(kernel), m_One()))
    return MaskKind::All;
  bool affine = true;
  for (Operation &op : maskBlock(kernel)) {
    if (llvm::isa<LoadOp>(op))
      return MaskKind::DataDependent;
    if (!isAffineOp(&op))
      affine = false;
  }
  return affine ? MaskKind::Affine : MaskKind::NonAffine;
}

std::string dimName(KernelOp kernel, llvm::StringRef tensor, unsigned dim) {
  // q, k and v are tensors 0, 1, 2 (a source's k is called SOURCE.k).
  DictionaryAttr t = tensor == "q" || tensor == "k" || tensor == "v"
                         ? llvm::cast<DictionaryAttr>(
                               kernel.getTensors()[tensor == "q" ? 0 : tensor == "k" ? 1 : 2])
                         : kernel.getTensor(tensor);
  if (!t)
    return "";
  auto dims = t.getAs<ArrayAttr>("dims");
  if (!dims || dim >= dims.size())
    return "";
  if (auto s = llvm::dyn_cast<StringAttr>(dims[dim]))
    return s.str();
  if (auto n = llvm::dyn_cast<IntegerAttr>(dims[dim]))
    return std::to_string(n.getInt());
  return "";
}

//===----------------------------------------------------------------------===//
// MaskRangeEvaluator
//===----------------------------------------------------------------------===//

MaskRangeEvaluator::MaskRangeEvaluator(KernelOp kernel,
                                       const std::map<std::string, int64_t> &sizes,
                                       const std::map<std::string, int64_t> &intParams)
    : kernel_(kernel), sizes_(sizes), intParams_(intParams) {}

void MaskRangeEvaluator::run(IntRange b, IntRange h, IntRange i, IntRange j,
                             const LoadRangeFn &loadRange,
                             llvm::DenseMap<Value, ConstantIntRanges> &ranges) const {
  Block &block = maskBlock(kernel_);
  IntRange args[4] = {b, h, i, j};
  for (unsigned a = 0; a < 4 && a < block.getNumArguments(); ++a) {
    Value arg = block.getArgument(a);
    unsigned w = arg.getType().getIntOrFloatBitWidth();
    int64_t lo = std::max<int64_t>(args[a].lo, APInt::getSignedMinValue(w).getSExtValue());
    int64_t hi = std::min<int64_t>(args[a].hi, APInt::getSignedMaxValue(w).getSExtValue());
    ranges.try_emplace(arg, signedRange(w, lo, hi));
  }

  auto set = [&](Value v, const ConstantIntRanges &r) {
    ranges.erase(v);
    ranges.try_emplace(v, r);
  };
  auto rangeOf = [&](Value v) -> const ConstantIntRanges * {
    auto it = ranges.find(v);
    return it == ranges.end() ? nullptr : &it->second;
  };
  auto setFull = [&](Operation *op) {
    for (Value r : op->getResults())
      if (auto t = llvm::dyn_cast<IntegerType>(r.getType()))
        set(r, ConstantIntRanges::maxRange(t.getWidth()));
  };

  for (Operation &op : block) {
    if (op.getNumResults() == 0)
      continue;
    if (auto size = llvm::dyn_cast<SizeOp>(op)) {
      auto it = sizes_.find(size.getName().str());
      if (it != sizes_.end()) {
        set(size.getResult(), ConstantIntRanges::constant(apInt(32, it->second)));
        continue;
      }
    } else if (auto param = llvm::dyn_cast<ParamOp>(op)) {
      auto t = llvm::dyn_cast<IntegerType>(param.getType());
      auto it = intParams_.find(param.getName().str());
      if (t && it != intParams_.end())
        set(param.getResult(), ConstantIntRanges::constant(apInt(t.getWidth(), it->second)));
      else
        setFull(&op);
      continue;
    } else if (auto load = llvm::dyn_cast<LoadOp>(op)) {
      auto t = llvm::dyn_cast<IntegerType>(load.getType());
      if (!t)
        continue;
      std::optional<IntRange> r = loadRange ? loadRange(load) : std::nullopt;
      if (r && t.getWidth() <= 64)
        set(load.getResult(), signedRange(t.getWidth(), r->lo, r->hi));
      else
        setFull(&op);
      continue;
    } else if (auto div = llvm::dyn_cast<arith::FloorDivSIOp>(op)) {
      const ConstantIntRanges *a = rangeOf(div.getLhs()), *d = rangeOf(div.getRhs());
      if (a && d)
        if (auto r = floorDivRange(*a, *d)) {
          set(div.getResult(), *r);
          continue;
        }
      // INT_MIN / -1 overflows: unknown, like the other overflows.
      bool dMayBeMinusOne =
          d && d->smin().isNegative() && (d->smax().isNonNegative() || d->smax().isAllOnes());
      if (!a || !d || (a->smin().isMinSignedValue() && dMayBeMinusOne)) {
        setFull(&op);
        continue;
      }
    } else if (auto sub = llvm::dyn_cast<arith::SubIOp>(op)) {
      if (auto m = matchFloorMod(sub)) {
        const ConstantIntRanges *a = rangeOf(m->first), *d = rangeOf(m->second);
        if (a && d)
          if (auto r = floorModRange(*a, *d)) {
            set(sub.getResult(), *r);
            continue;
          }
      }
    } else if (auto abs = llvm::dyn_cast<math::AbsIOp>(op)) {
      if (const ConstantIntRanges *a = rangeOf(abs.getOperand()))
        set(abs.getResult(), absRange(*a));
      else
        setFull(&op);
      continue;
    }
    if (llvm::isa<arith::AddIOp, arith::SubIOp, arith::MulIOp>(op)) {
      const ConstantIntRanges *x = rangeOf(op.getOperand(0)), *y = rangeOf(op.getOperand(1));
      if (!x || !y || mayOverflow(&op, *x, *y)) {
        setFull(&op);
        continue;
      }
    }

    // Everything else: MLIR's own range rules, when the op has them and all
    // operands have ranges (integers); otherwise the full range.
    auto iface = llvm::dyn_cast<InferIntRangeInterface>(op);
    SmallVector<ConstantIntRanges> operandRanges;
    bool known = iface != nullptr;
    for (Value operand : op.getOperands()) {
      if (!known)
        break;
      if (const ConstantIntRanges *r = rangeOf(operand))
        operandRanges.push_back(*r);
      else
        known = false;
    }
    if (!known || !llvm::all_of(op.getResultTypes(), isIntegerLike)) {
      setFull(&op);
      continue;
    }
    setFull(&op); // results the interface leaves unset stay conservative
    iface.inferResultRanges(operandRanges, [&](Value v, const ConstantIntRanges &r) {
      set(v, r);
    });
  }
}

llvm::DenseMap<Value, ConstantIntRanges>
MaskRangeEvaluator::inferRanges(IntRange b, IntRange h, IntRange i, IntRange j,
                                const LoadRangeFn &loadRange) const {
  llvm::DenseMap<Value, ConstantIntRanges> ranges;
  run(b, h, i, j, loadRange, ranges);
  return ranges;
}

TileClass MaskRangeEvaluator::classify(IntRange b, IntRange h, IntRange i, IntRange j,
                                       const LoadRangeFn &loadRange) const {
  llvm::DenseMap<Value, ConstantIntRanges> ranges;
  run(b, h, i, j, loadRange, ranges);
  auto it = ranges.find(maskResult(kernel_));
  if (it == ranges.end() || it->second.umin().getBitWidth() != 1)
    return TileClass::Partial;
  const ConstantIntRanges &r = it->second;
  if (r.umin().isOne())
    return TileClass::Full;
  if (r.umax().isZero())
    return TileClass::Empty;
  return TileClass::Partial;
}

//===----------------------------------------------------------------------===//
// Tile maps
//===----------------------------------------------------------------------===//

std::vector<TileClass> classifyTiles(KernelOp kernel,
                                     const std::map<std::string, int64_t> &sizes,
                                     const std::map<std::string, int64_t> &intParams,
                                     int tileQ, int tileK, int64_t Lq, int64_t Lk,
                                     const TileMapOptions &options) {
  std::vector<TileClass> tiles;
  if (tileQ <= 0 || tileK <= 0 || Lq <= 0 || Lk <= 0)
    return tiles;
  int64_t rows = (Lq + tileQ - 1) / tileQ, cols = (Lk + tileK - 1) / tileK;
  tiles.reserve(rows * cols);

  // b and h: a point, or every value the sizes allow.
  auto indexRange = [&](const std::optional<int64_t> &point, unsigned dim) {
    if (point)
      return IntRange::point(*point);
    std::string name = dimName(kernel, "q", dim);
    auto it = sizes.find(name);
    int64_t n = it != sizes.end() ? it->second : 0;
    if (n == 0 && !name.empty() && std::isdigit(static_cast<unsigned char>(name[0])))
      n = std::stoll(name);
    return IntRange{0, n > 0 ? n - 1 : INT32_MAX};
  };
  IntRange b = indexRange(options.b, 0), h = indexRange(options.h, 1);

  MaskRangeEvaluator eval(kernel, sizes, intParams);
  MaskKind kind = maskKind(kernel);
  for (int64_t qt = 0; qt < rows; ++qt)
    for (int64_t kb = 0; kb < cols; ++kb) {
      if (kind == MaskKind::All) {
        tiles.push_back(TileClass::Full);
        continue;
      }
      IntRange i{qt * tileQ, std::min(Lq, (qt + 1) * tileQ) - 1};
      IntRange j{kb * tileK, std::min(Lk, (kb + 1) * tileK) - 1};
      MaskRangeEvaluator::LoadRangeFn loads;
      if (options.loadRange)
        loads = [&](LoadOp load) { return options.loadRange(load, qt, kb); };
      tiles.push_back(eval.classify(b, h, i, j, loads));
    }
  return tiles;
}

std::string formatTileMap(const std::vector<TileClass> &tiles, int64_t cols) {
  std::string s;
  for (size_t t = 0; t < tiles.size(); ++t) {
    if (t && cols > 0 && t % cols == 0)
      s += '/';
    s += tiles[t] == TileClass::Empty ? 'E' : tiles[t] == TileClass::Full ? 'F' : 'P';
  }
  return s;
}

//===----------------------------------------------------------------------===//
// MaskEvaluator
//===----------------------------------------------------------------------===//

namespace {

enum Opcode {
  OpConst, OpAdd, OpSub, OpMul, OpFloorDiv, OpDivS, OpRemS, OpCmp, OpAnd, OpOr,
  OpXor, OpMin, OpMax, OpSelect, OpExtS, OpExtU, OpTrunc, OpAbs, OpLoad,
};

/// v wrapped to a signed integer of `width` bits (i1: 0 or 1).
int64_t wrap(uint64_t v, unsigned width) {
  if (width == 1)
    return static_cast<int64_t>(v & 1);
  if (width >= 64)
    return static_cast<int64_t>(v);
  uint64_t m = (uint64_t(1) << width) - 1;
  v &= m;
  if (v >> (width - 1))
    v |= ~m;
  return static_cast<int64_t>(v);
}

uint64_t asUnsigned(int64_t v, unsigned width) {
  if (width >= 64)
    return static_cast<uint64_t>(v);
  return static_cast<uint64_t>(v) & ((uint64_t(1) << width) - 1);
}

} // namespace

bool SliceEvaluator::compile(Value target, const std::map<std::string, int64_t> &sizes,
                             const std::map<std::string, int64_t> &intParams,
                             const AuxSource *aux, std::string &why) {
  code_.clear();
  numSlots_ = 4;
  aux_ = aux;
  if (auto arg = llvm::dyn_cast<BlockArgument>(target)) {
    result_ = static_cast<int>(arg.getArgNumber());
    return true;
  }
  Block *block = target.getDefiningOp()->getBlock();
  // The backward slice of `target` inside the block.
  llvm::SmallPtrSet<Operation *, 32> slice;
  std::vector<Value> work{target};
  while (!work.empty()) {
    Value v = work.back();
    work.pop_back();
    Operation *op = v.getDefiningOp();
    if (!op || op->getBlock() != block || !slice.insert(op).second)
      continue;
    for (Value operand : op->getOperands())
      work.push_back(operand);
  }
  llvm::DenseMap<Value, int> slot;
  for (unsigned a = 0; a < 4 && a < block->getNumArguments(); ++a)
    slot[block->getArgument(a)] = static_cast<int>(a);
  for (Operation &op : *block) {
    if (!slice.count(&op))
      continue;
    auto intType = [](Type t) { return llvm::isa<IntegerType>(t); };
    if (op.getNumResults() != 1 || !intType(op.getResult(0).getType()) ||
        (!llvm::isa<LoadOp>(op) && !llvm::all_of(op.getOperandTypes(), intType))) {
      why = "'" + op.getName().getStringRef().str() + "' is not integer arithmetic";
      return false;
    }
    Instr in;
    in.width = op.getResult(0).getType().getIntOrFloatBitWidth();
    if (in.width > 64) {
      why = "integers wider than 64 bits";
      return false;
    }
    auto operand = [&](unsigned k) { return slot.lookup(op.getOperand(k)); };
    if (op.getNumOperands() > 0)
      in.a = operand(0);
    if (op.getNumOperands() > 1)
      in.b = operand(1);
    if (op.getNumOperands() > 2)
      in.c = operand(2);
    if (auto c = llvm::dyn_cast<arith::ConstantOp>(op)) {
      auto attr = llvm::dyn_cast<IntegerAttr>(c.getValue());
      if (!attr) {
        why = "a non-integer constant";
        return false;
      }
      in.imm = wrap(attr.getValue().getSExtValue(), in.width);
    } else if (auto s = llvm::dyn_cast<SizeOp>(op)) {
      auto it = sizes.find(s.getName().str());
      if (it == sizes.end()) {
        why = "size '" + s.getName().str() + "' not given";
        return false;
      }
      in.imm = it->second;
    } else if (auto p = llvm::dyn_cast<ParamOp>(op)) {
      auto it = intParams.find(p.getName().str());
      if (it == intParams.end()) {
        why = "param '" + p.getName().str() + "' not given";
        return false;
      }
      in.imm = wrap(it->second, in.width);
    } else if (auto load = llvm::dyn_cast<LoadOp>(op)) {
      std::string name = load.getTensor().str();
      if (!aux || !aux->has(name)) {
        why = "it reads '" + name + "', which was not given";
        return false;
      }
      in.opcode = OpLoad;
      in.tensor = name;
      for (Value index : load.getIndices())
        in.indices.push_back(slot.lookup(index));
    } else if (llvm::isa<arith::AddIOp>(op)) in.opcode = OpAdd;
    else if (llvm::isa<arith::SubIOp>(op)) in.opcode = OpSub;
    else if (llvm::isa<arith::MulIOp>(op)) in.opcode = OpMul;
    else if (llvm::isa<arith::FloorDivSIOp>(op)) in.opcode = OpFloorDiv;
    else if (llvm::isa<arith::DivSIOp>(op)) in.opcode = OpDivS;
    else if (llvm::isa<arith::RemSIOp>(op)) in.opcode = OpRemS;
    else if (auto cmp = llvm::dyn_cast<arith::CmpIOp>(op)) {
      in.opcode = OpCmp;
      in.imm = static_cast<int64_t>(cmp.getPredicate());
      in.width = cmp.getLhs().getType().getIntOrFloatBitWidth(); // operand width
    } else if (llvm::isa<arith::AndIOp>(op)) in.opcode = OpAnd;
    else if (llvm::isa<arith::OrIOp>(op)) in.opcode = OpOr;
    else if (llvm::isa<arith::XOrIOp>(op)) in.opcode = OpXor;
    else if (llvm::isa<arith::MinSIOp>(op)) in.opcode = OpMin;
    else if (llvm::isa<arith::MaxSIOp>(op)) in.opcode = OpMax;
    else if (llvm::isa<arith::SelectOp>(op)) in.opcode = OpSelect;
    else if (auto e = llvm::dyn_cast<arith::ExtSIOp>(op)) {
      in.opcode = OpExtS;
      in.imm = e.getIn().getType().getIntOrFloatBitWidth();
    } else if (llvm::isa<arith::ExtUIOp>(op)) {
      in.opcode = OpExtU;
      in.imm = op.getOperand(0).getType().getIntOrFloatBitWidth();
    } else if (llvm::isa<arith::TruncIOp>(op)) in.opcode = OpTrunc;
    else if (llvm::isa<math::AbsIOp>(op)) in.opcode = OpAbs;
    else {
      why = "no evaluation rule for '" + op.getName().getStringRef().str() + "'";
      return false;
    }
    slot[op.getResult(0)] = numSlots_++;
    code_.push_back(std::move(in));
  }
  result_ = slot.lookup(target);
  return true;
}

std::optional<int64_t> SliceEvaluator::eval(int64_t b, int64_t h, int64_t i, int64_t j,
                                            std::string &err) const {
  llvm::SmallVector<int64_t, 32> v(numSlots_);
  v[0] = b, v[1] = h, v[2] = i, v[3] = j;
  int out = 4;
  for (const Instr &in : code_) {
    int64_t x = v[in.a], y = v[in.b], r = 0;
    uint64_t ux = static_cast<uint64_t>(x), uy = static_cast<uint64_t>(y);
    switch (in.opcode) {
    case OpConst: r = in.imm; break;
    case OpAdd: r = wrap(ux + uy, in.width); break;
    case OpSub: r = wrap(ux - uy, in.width); break;
    case OpMul: r = wrap(ux * uy, in.width); break;
    case OpFloorDiv:
    case OpDivS:
    case OpRemS: {
      if (y == 0) {
        err = "division by zero";
        return std::nullopt;
      }
      if (y == -1) {
        r = in.opcode == OpRemS ? 0 : wrap(uint64_t(0) - ux, in.width);
        break;
      }
      r = in.opcode == OpFloorDiv ? floorDiv(x, y) : in.opcode == OpDivS ? x / y : x % y;
      r = wrap(static_cast<uint64_t>(r), in.width);
      break;
    }
    case OpCmp: {
      using P = arith::CmpIPredicate;
      uint64_t a = asUnsigned(x, in.width), c = asUnsigned(y, in.width);
      int64_t sa = in.width == 1 ? -x : x, sc = in.width == 1 ? -y : y; // i1 true is -1
      switch (static_cast<P>(in.imm)) {
      case P::eq: r = a == c; break;
      case P::ne: r = a != c; break;
      case P::slt: r = sa < sc; break;
      case P::sle: r = sa <= sc; break;
      case P::sgt: r = sa > sc; break;
      case P::sge: r = sa >= sc; break;
      case P::ult: r = a < c; break;
      case P::ule: r = a <= c; break;
      case P::ugt: r = a > c; break;
      case P::uge: r = a >= c; break;
      }
      break;
    }
    case OpAnd: r = wrap(ux & uy, in.width); break;
    case OpOr: r = wrap(ux | uy, in.width); break;
    case OpXor: r = wrap(ux ^ uy, in.width); break;
    case OpMin: r = in.width == 1 ? (x | y) : std::min(x, y); break; // i1: true (-1) is smaller
    case OpMax: r = in.width == 1 ? (x & y) : std::max(x, y); break;
    case OpSelect: r = x ? y : v[in.c]; break;
    case OpExtS: r = in.imm == 1 ? -x : x; break;
    case OpExtU: r = static_cast<int64_t>(asUnsigned(x, static_cast<unsigned>(in.imm))); break;
    case OpTrunc: r = wrap(ux, in.width); break;
    case OpAbs: r = wrap(x < 0 ? uint64_t(0) - ux : ux, in.width); break;
    case OpLoad: {
      llvm::SmallVector<int64_t, 4> idx;
      for (int slot : in.indices)
        idx.push_back(v[slot]);
      std::optional<int64_t> value = aux_->read(in.tensor, idx, err);
      if (!value)
        return std::nullopt;
      r = wrap(static_cast<uint64_t>(*value), in.width);
      break;
    }
    }
    v[out++] = r;
  }
  return v[result_];
}

MaskEvaluator::MaskEvaluator(KernelOp kernel, const std::map<std::string, int64_t> &sizes,
                             const std::map<std::string, int64_t> &intParams) {
  Value result = llvm::cast<YieldOp>(maskBlock(kernel).getTerminator()).getValue();
  ok_ = slice_.compile(result, sizes, intParams, nullptr, error_);
}

std::optional<bool> MaskEvaluator::eval(int64_t b, int64_t h, int64_t i, int64_t j) const {
  std::string err;
  std::optional<int64_t> r = ok_ ? slice_.eval(b, h, i, j, err) : std::nullopt;
  if (!r)
    return std::nullopt;
  return *r != 0;
}

} // namespace attn
