// The translation of attn regions to Halide expressions, shared by the
// forward algorithm (AttnToHalide.cpp) and the backward one (Backward.cpp).
// Internal to lib/compiler: it includes MLIR and Halide both, so only the
// attn_driver translation units include it.
#pragma once

#include "attn/compiler/AttnToHalide.h"
#include "attn/compiler/Dialect.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace attn::lower {

using namespace Halide;
using Halide::Internal::const_true;
using Halide::Internal::make_const;
using mlir::Operation;
using mlir::Value;

[[noreturn]] void unsupported(Operation *op, const std::string &what);

Type halideType(mlir::Type t);

/// Whether a score takes part: masked pairs (and user scores of -inf) are
/// -inf. Kernels use Halide's default float semantics, under which LLVM may
/// fold comparisons against infinities (is_inf included), so the test is a
/// comparison with a finite threshold no real score reaches.
Expr live(Expr score);

Expr floorDiv(Expr a, Expr b);

/// What a region needs from its surroundings to be evaluated at one point.
struct PointEnv {
  Expr b, h, i, j;
  Expr c; // a channel vector's element (block argument 4 of attn.vector)
  std::function<Expr()> dot, sqnormQ, sqnormK;
  /// Element `index` of q, k or a channel vector; sqnorm of a vector.
  std::function<Expr(const std::string &, Expr)> elem;
  std::function<Expr(const std::string &)> vsqnorm;
};

/// An integer interval [lo, hi] (Float(64) Exprs, ±2^100 for unknown) or, for
/// an i1 value, whether it may be true and whether it may be false.
struct Interval {
  Expr lo, hi;
  Expr mayTrue, mayFalse;
};

class Translator {
public:
  Translator(attn::KernelOp kernel, AttentionAlgorithm &alg) : kernel_(kernel), alg_(alg) {}

  /// Tensor `idx` of the kernel op as an input of the algorithm; a tensor
  /// another source declared already (q, shared aux tensors) is reused.
  /// `shared` holds the sizes bound so far, by name.
  void declareTensor(unsigned idx, std::map<std::string, Expr> &shared);
  void declareParams();
  Expr size(const std::string &name) const { return sizes_.at(name); }
  /// The query and key counts, under names no user size can have.
  void setExtents(Expr Lq, Expr Lk) {
    sizes_["__Lq"] = Lq;
    sizes_["__Lk"] = Lk;
  }
  Expr evalPoint(mlir::Region &region, const PointEnv &env);
  /// Every value a region yields at one point.
  std::vector<Expr> evalPointAll(mlir::Region &region, const PointEnv &env);
  /// The block arguments of a region's block (b, h, i, j[, c]) from `env`.
  static void bindArgs(mlir::Block &block, const PointEnv &env, std::map<void *, Expr> &vals);
  /// The ops of `block` into `vals` (its arguments already there); returns
  /// what it yields.
  std::vector<Expr> evalBlock(mlir::Block &block, std::map<void *, Expr> &vals,
                              const PointEnv &env);
  /// Where each op's value is used at that point (LANGUAGE.md §8.2), from
  /// the values evalBlock gave.
  std::map<void *, Expr> useConditions(mlir::Block &block, const std::map<void *, Expr> &vals);
  Interval evalInterval(mlir::Region &region, const std::map<unsigned, Interval> &args);
  /// Whether the mask may hold somewhere on query tile qt x key block kb
  /// of head h, batch b (tiles of the algorithm's tileQ x tileK, the
  /// extents of setExtents): the conservative test that lets a kernel skip
  /// the tile.
  Expr maskMayHoldOnTile(Expr qt, Expr kb, Expr b, Expr h);
  Expr evalSlice(Value value, const PointEnv &env);
  unsigned argsUsedBy(Value v);

  /// The tile that evalInterval reasons about: query tile qt, key block kb,
  /// batch b, head h. Aux reads are then bounded by per-tile summaries.
  struct TileContext {
    bool defined = false;
    Expr qt, kb, b, h;
  };
  void setTile(TileContext t) { tile_ = t; }

  Halide::ImageParam &tensor(const std::string &name) { return alg_.tensors[tensorIndex_.at(name)]; }
  int tensorIndex(const std::string &name) const { return tensorIndex_.at(name); }
  int rank(const std::string &name) const { return ranks_.at(name); }

private:
  Expr evalOp(Operation *op, std::map<void *, Expr> &vals, const PointEnv &env);
  Interval intervalOp(Operation *op, std::map<void *, Interval> &vals);
  Interval loadInterval(Operation *load);

  /// Binds a non-trivial interval endpoint to a fresh variable (a let
  /// around evalInterval's result), so an op that uses an operand's bound
  /// several times (a product's corners, a select) shares it instead of
  /// copying the tree: nested affine masks stay linear in size, where the
  /// copies grew as 4^depth through Halide's lowering.
  void share(Expr &e);
  Expr wrapLets(Expr e) const;
  std::vector<std::pair<std::string, Expr>> lets_;

  TileContext tile_;
  std::map<std::pair<Operation *, bool>, Func> summaries_;
  attn::KernelOp kernel_;
  AttentionAlgorithm &alg_;
  std::map<std::string, Expr> sizes_;
  std::map<std::string, int> tensorIndex_;
  std::map<std::string, int> ranks_;
  Expr param(const std::string &name) const {
    for (const Halide::Param<> &p : alg_.params)
      if (p.name() == name)
        return p;
    throw CompileError("attnc: unknown param " + name);
  }
};

/// The interval of one value.
Interval point(Expr e);

/// A tensor's kernel parameter name: its call name with '.' (a source's
/// SOURCE.k) as '_' (Sema keeps the two apart).
std::string paramName(const std::string &callName);

} // namespace attn::lower
