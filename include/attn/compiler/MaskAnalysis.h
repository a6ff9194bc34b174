// Mask analysis: what a kernel's `mask` region reads, and which tiles of the
// (i, j) plane it provably empties or fills, by integer range inference over
// the region (MLIR's InferIntRangeInterface, plus exact rules for floor
// division and floor modulo). The `attn-analyze-mask` pass records the
// results as attributes; the lowering and `attnc viz` call the API directly.
#pragma once

#include "attn/compiler/Dialect.h"
#include "llvm/ADT/DenseMap.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace attn {

/// What the mask region is built from (the `mask_kind` attribute).
enum class MaskKind {
  All,           ///< the constant true
  Affine,        ///< only b, h, i, j, sizes, params and integer constants
  NonAffine,     ///< no aux loads, but float arithmetic or ops without range rules
  DataDependent, ///< reads aux tensors (attn.load)
};
const char *toString(MaskKind kind);
MaskKind maskKind(KernelOp kernel);

/// Which index variables an attn.load's indices depend on (the
/// `attn.summary` attribute): the granularity at which a per-tile min/max
/// summary of the loaded values can be built.
enum class LoadSummary {
  Uniform,   ///< b and h only: one value per (b, h)
  QueryTile, ///< i, not j: one summary per query tile
  KeyBlock,  ///< j, not i: one summary per key block
  Pair,      ///< both i and j: no per-tile summary short of the whole tile
};
const char *toString(LoadSummary kind);
LoadSummary loadSummary(LoadOp load);

/// Bit set of the block arguments (0 b, 1 h, 2 i, 3 j) a value depends on,
/// through the backward slice inside its region (loads included).
unsigned indexDependencies(mlir::Value value);

enum class TileClass { Empty, Partial, Full };

/// An inclusive range of integers.
struct IntRange {
  int64_t lo = 0, hi = 0;
  static IntRange point(int64_t v) { return {v, v}; }
};

/// Range inference over one kernel's mask region for a box of (b, h, i, j).
/// Built once per kernel; `classify` is cheap enough to call per tile.
class MaskRangeEvaluator {
public:
  /// `sizes` and `intParams` bind attn.size / attn.param (integer and bool
  /// params) to values; an unbound size is [1, 2^31 - 1], an unbound param
  /// the full range of its type. Float values are never given ranges.
  MaskRangeEvaluator(KernelOp kernel, const std::map<std::string, int64_t> &sizes,
                     const std::map<std::string, int64_t> &intParams);

  /// The class of the box: Full if the mask is true for every point of it,
  /// Empty if false for every point, else Partial (possibly conservatively).
  /// `loadRange` may give the range of an attn.load's value over the box
  /// (e.g. the min/max of an aux tensor over a query tile); otherwise loads
  /// are the full range of their type.
  using LoadRangeFn = std::function<std::optional<IntRange>(LoadOp)>;
  TileClass classify(IntRange b, IntRange h, IntRange i, IntRange j,
                     const LoadRangeFn &loadRange = {}) const;

  /// The inferred ranges of every integer value of the region for the box
  /// (unsigned/signed pairs as MLIR tracks them); for tests and debugging.
  llvm::DenseMap<mlir::Value, mlir::ConstantIntRanges>
  inferRanges(IntRange b, IntRange h, IntRange i, IntRange j,
              const LoadRangeFn &loadRange = {}) const;

private:
  KernelOp kernel_;
  std::map<std::string, int64_t> sizes_, intParams_;
  void run(IntRange b, IntRange h, IntRange i, IntRange j, const LoadRangeFn &loadRange,
           llvm::DenseMap<mlir::Value, mlir::ConstantIntRanges> &ranges) const;
};

/// Options of classifyTiles beyond the sizes and tile shape.
struct TileMapOptions {
  /// The batch and head the map is for. Unset (the default): the map holds
  /// for every b in [0, B) and h in [0, H) (the sizes of q's first two
  /// dimensions when bound, else all non-negative i32): a tile is Empty or
  /// Full only if it is so for all of them.
  std::optional<int64_t> b, h;
  /// Per-tile range of a load's value, for data-dependent masks: called with
  /// the load and the tile (query tile qt, key block kb).
  std::function<std::optional<IntRange>(LoadOp, int64_t qt, int64_t kb)> loadRange;
};

/// The tile classes of the (i, j) plane, row-major over
/// [ceil(Lq / tileQ), ceil(Lk / tileK)]; the last row/column covers only the
/// positions below Lq / Lk.
std::vector<TileClass> classifyTiles(KernelOp kernel,
                                     const std::map<std::string, int64_t> &sizes,
                                     const std::map<std::string, int64_t> &intParams,
                                     int tileQ, int tileK, int64_t Lq, int64_t Lk,
                                     const TileMapOptions &options = {});

/// "EPF/FFP/...": one letter per tile (Empty, Partial, Full), rows
/// separated by '/'.
std::string formatTileMap(const std::vector<TileClass> &tiles, int64_t cols);

/// The name (or literal) of dimension `dim` of tensor `tensor` of the kernel
/// ("L" or "64"), or "" when there is no such tensor/dimension.
std::string dimName(KernelOp kernel, llvm::StringRef tensor, unsigned dim);

/// Where a SliceEvaluator reads aux tensors.
class AuxSource {
public:
  virtual ~AuxSource() = default;
  virtual bool has(llvm::StringRef tensor) const = 0;
  /// The element of `tensor` at `indices` (declaration order); nullopt with
  /// `err` set when an index is outside its dimension.
  virtual std::optional<int64_t> read(llvm::StringRef tensor, llvm::ArrayRef<int64_t> indices,
                                      std::string &err) const = 0;
};

/// Evaluates one integer value of a mask region (the backward slice of
/// `target`: block arguments, sizes, params, constants, integer arith, and
/// aux reads through an AuxSource) on concrete (b, h, i, j) with the
/// language's integer semantics (i32 wrapping, floor division).
class SliceEvaluator {
public:
  /// False with `why` when a slice op has no rule or reads a tensor `aux`
  /// (may be null) does not have.
  bool compile(mlir::Value target, const std::map<std::string, int64_t> &sizes,
               const std::map<std::string, int64_t> &intParams, const AuxSource *aux,
               std::string &why);
  /// The value at one point; nullopt with `err` set on a division by zero or
  /// an aux index outside its dimension.
  std::optional<int64_t> eval(int64_t b, int64_t h, int64_t i, int64_t j, std::string &err) const;

private:
  struct Instr {
    int opcode = 0;
    int a = 0, b = 0, c = 0; // operand slots
    int64_t imm = 0;
    unsigned width = 32;
    std::string tensor;       // aux reads
    std::vector<int> indices; // aux reads: index slots
  };
  std::vector<Instr> code_;
  const AuxSource *aux_ = nullptr;
  int numSlots_ = 4;
  int result_ = 0;
};

/// The whole mask of a kernel without aux reads (MaskKind All/Affine), as a
/// SliceEvaluator of its result; `ok()` is false for other masks.
class MaskEvaluator {
public:
  MaskEvaluator(KernelOp kernel, const std::map<std::string, int64_t> &sizes,
                const std::map<std::string, int64_t> &intParams);
  bool ok() const { return ok_; }
  const std::string &error() const { return error_; }
  /// The mask at one point; nullopt on a division by zero.
  std::optional<bool> eval(int64_t b, int64_t h, int64_t i, int64_t j) const;

private:
  SliceEvaluator slice_;
  bool ok_ = true;
  std::string error_;
};

} // namespace attn
