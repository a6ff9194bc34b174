// AttnToHalide: the algorithm of an `attn.kernel` as a Halide pipeline.
//
// The algorithm (what is computed) is built here, once per kernel; the
// schedule (how: tiling, vectorization, parallelism) is applied by a target
// in targets/ (e.g. attn::cpu::schedule). The Funcs below are the stages a
// schedule may place; see docs/design.md for the loop structure.
//
// This header includes no MLIR: the translation takes the kernel op through
// an opaque pointer so that only AttnToHalide.cpp sees both MLIR and Halide.
#pragma once

#include "Halide.h"
#include "attn/compiler/LinearAttention.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir {
class Operation;
}

namespace attn {

/// An auxiliary-tensor read whose indices the runtime must range-check.
struct IndexCheck {
  std::string tensor; // an aux tensor, or q / k / v for an `at` index
  int dim = 0; // dimension of the tensor in declaration order (0 = outermost)
};

/// The stages of one key/value source (LANGUAGE.md §8.5; a kernel without
/// `source` blocks has one). Every source has its own keys, values, score,
/// mask and tile analysis; all of them update one accumulator, so there is
/// one normalization over the union of their keys.
struct KeySource {
  std::string name;      // the source's NAME; empty for a kernel without sources
  std::string strategy;  // dense, masked, linear
  bool skipsTiles = true; // masked sources: tiles the mask empties are skipped
  int accStage = 1;      // the update of `acc` (and `topkState`) this source drives
  int kTensor = 1, vTensor = 2; // its k and v in AttentionAlgorithm::tensors
  Halide::Expr Lk;       // its number of keys
  Halide::Expr blockOffset; // its first key block in the tile map and key order
  Halide::Expr keyOffset;   // its first key in the order of ties (sources, then j)

  Halide::RVar rd, rj, rk; // reductions over d, over jj, over key blocks
  /// bf16 q and k with an even literal head dim: q.k is a reduction over
  /// pairs (rd = d % 2, rdPair = d / 2) and qT is stored (d % 2, ii, d / 2).
  bool bf16Pairs = false;
  /// Whether the score / the mask read dot(q, k).
  bool scoreUsesDot = true, maskUsesDot = false;
  Halide::RVar rdPair;
  bool kGathered = false, vGathered = false; // k / v have an index map

  // Stages, in dependency order.
  Halide::Func qT;    // (ii, d, qt, h, b): the query tile, transposed, compute type
                      // (di, ii, dp, qt, h, b) in q's type when bf16Pairs
  Halide::Func kf;    // (d, j, hk, b): keys in compute type (wraps the input)
  Halide::Func vf;    // (dv, j, hk, b): values in compute type
  Halide::Func dotAcc; // (ii, jj, qt, kb, h, b): q.k, reduction over rd
  Halide::Func score; // (ii, jj, qt, kb, h, b): masked score (-inf when out)
  /// Masked kernels: scoreFull is -inf but for an update over the register
  /// tiles the mask makes full (fullTiles; q.k from dotAccFull, no mask
  /// evaluated); score starts from it and updates the partial tiles
  /// (partialTiles; the mask is evaluated per pair). Empty tiles compute
  /// nothing.
  bool scoreRegisterTiles = false;
  /// The variables of one such update: inside a register tile (q, k) and
  /// which tile (qo, ko).
  struct TileUpdate {
    Halide::RVar q, k, qo, ko;
  };
  TileUpdate partialTiles, fullTiles;
  Halide::Func dotAccFull, scoreFull;
  /// Masked kernels: the mask of one pair of a block, uint8 (ii, jj, qt, kb, h, b).
  Halide::Func maskTile;
  Halide::Func rawScore;  // topk only: the score before top-k selection
  Halide::RVar rtBlock, rtKey, rtSlot; // its topkState update: key block, key, slot
  Halide::Func blockMax;  // (ii, qt, kb, h, b) softmax and hardmax
  Halide::Func weight;    // (ii, jj, qt, kb, h, b): exp(s - blockMax) or w(s)
  Halide::Func blockSum;  // (ii, qt, kb, h, b) softmax: sum of weights; hardmax: tie count
  Halide::Func blockArg;  // (ii, qt, kb, h, b) hardmax latest/first: jj of the chosen key
  Halide::Func pvAcc; // (dv, ii, qt, kb, h, b): sum_jj weight * v, reduction over rj
  /// Data-dependent masks: this source's key blocks are tested against the
  /// run-time tile map (AttentionAlgorithm::tileMapInput).
  bool usesTileMap = false;
  /// The number of key blocks, and whether block `blockVar` of query tile
  /// qt may take part (undefined: every block does): the test of rk's
  /// where clause, for other reductions over the blocks (split decoding).
  Halide::Expr nBlocks, blockTest;
  Halide::Var blockVar{"kb_tested"};

  /// Every stage above that is defined, for printing.
  std::vector<Halide::Func> stages() const;
};

struct AttentionAlgorithm {
  std::string name;
  std::string normalize; // softmax, sigmoid, relu, none, hardmax, topk, linear
  std::string strategy;  // dense, masked, linear (several sources: each one's, joined by '+')
  std::string ties;      // hardmax: average, latest, first
  std::string decode = "none"; // attn-select-strategy: hull, scan, linear, none
  double decodeScale = 1;      // the score is decodeScale * dot(q, k)
  double decodeDecay = 1;      // linear: ... * pow(decodeDecay, i - j)
  bool outputLse = false;
  Halide::Type computeType;
  int tileQ = 64;  // queries per tile (i)
  int tileK = 128; // keys per block (j)
  int regQ = 32;   // register tile of q.k: queries
  int regK = 8;    // register tile of q.k: keys

  // Inputs in call order: q, each source's k and v, aux tensors, then params.
  std::vector<Halide::ImageParam> tensors;
  std::vector<Halide::Param<>> params;

  // Pure vars. Head-vector elements d (q/k) and dv (v/out); ii, jj index a
  // tile, qt and kb the tile; h, b head and batch.
  Halide::Var d{"d"}, dv{"dv"}, ii{"ii"}, jj{"jj"}, qt{"qt"}, kb{"kb"}, h{"h"}, b{"b"};
  Halide::Var i{"i"};

  /// The key/value sources, in file order; their key blocks update `acc` one
  /// source after the other.
  std::vector<KeySource> sources;
  /// attn-select-strategy's `linear` (LANGUAGE.md §8.4): the O(L) stages
  /// replace the sources' and the accumulator; linearInputs are the query
  /// features, key features and values it reads.
  std::optional<LinearAttention> linear;
  std::vector<Halide::Func> linearInputs;
  Halide::Func topkState; // topk only: (slot, ii, qt, h, b) -> {score, key}, K best
  Halide::Func acc;   // (dv, ii, qt, h, b): {O, m, l} (softmax) or O, one update per source
  /// Split decoding (TileSizes::splitKeys; softmax, sigmoid, relu, none, one
  /// source): the key blocks cut into `splits` runs of consecutive blocks,
  /// each with its own state accSplit (dv, ii, qt, split, h, b) over
  /// splitBlocks; acc is then their exact merge over mergeSplits (softmax:
  /// rescaled to splitMax (ii, qt, h, b), the largest of their maxima).
  bool splitDecode = false;
  Halide::Var split{"sp"};
  Halide::Expr splits;
  Halide::Func accSplit, splitMax;
  Halide::RVar splitBlocks, mergeSplits;
  Halide::Func out;   // (dv, i, h, b), q's element type
  Halide::Func lse;   // (i, h, b), f32; defined when outputLse
  std::vector<Halide::Func> extra; // qnorm / knorm etc: compute_root helpers
  /// Index maps (LANGUAGE.md §8.1): rows_q (i, h, b), rows_k and rows_v
  /// (j, hk, b), the leading indices of each row (a Tuple for several).
  /// Only the tensors with `at` have one.
  std::vector<Halide::Func> rowMaps;
  /// Channel vectors (LANGUAGE.md §8.3): vec_NAME(c, x, h, b) or vec_NAME(c),
  /// computed once per call.
  std::vector<Halide::Func> vectors;
  /// (t, h, b) -> {min, max} of an aux read over query tile or key block t;
  /// bound the mask's aux reads in the tile tests. compute_root.
  std::vector<Halide::Func> tileSummaries;

  /// Index-range check pipeline, or empty (LANGUAGE.md §8.2):
  /// indexBounds(f, e, c) is, for check c, its minimum (e = 0) or maximum
  /// (e = 1) index (f = 0) and the (b, h, i, j) where it is taken (f = 1..4).
  /// With exactChecks false, over the whole domain of the index variables
  /// the index reads (cheap, a superset); true: only where it is used (an
  /// empty set gives INT64_MAX / INT64_MIN).
  Halide::Func indexBounds;
  Halide::Param<bool> exactChecks{"exact_checks"};
  std::vector<IndexCheck> indexChecks;

  /// Data-dependent masks: the run-time tile map, uint8 (kb, qt, h, b), 1
  /// where key block kb may take part for query tile qt (the key blocks of
  /// all sources, one source after the other). Computed by its own
  /// pipeline (tileMap) from the aux tensors, then passed to the kernel as
  /// an input, so the kernel's block test reads an input buffer: Halide
  /// lifts such a test out of the inner loops and skips the whole block,
  /// which it does not do for a test that reads a Func.
  bool hasTileMap = false;
  Halide::ImageParam tileMapInput;
  Halide::Func tileMap; // (kb, qt, h, b)
  /// Linear kernels with a per-head decay g(h) computed from h alone: g as
  /// f64 over h, the NAME_decay entry point the decoder reads.
  Halide::Func decayTable;
  /// Linear kernels whose features are channel vectors of their own row
  /// (decode_features): φ(q) with the score's constant, (n, i, h, b), and
  /// φ(k), (n, j, hk, b), as f64 — the NAME_features entry point (inputs and
  /// params as the kernel's) the decoder calls one row at a time.
  Halide::Func featureQ, featureK;
  std::string featureLength; // N: a literal or a size name

  /// Preconditions the pipeline checks before any stage (pipeline()), with
  /// their error messages; GPU kernels only (the CPU's are require()s).
  std::vector<std::pair<Halide::Expr, std::vector<Halide::Expr>>> requirements;
  /// The kernel's pipeline (outputs() with the requirements).
  Halide::Pipeline pipeline() const;

  /// Kernel arguments: tensors, the tile map (when any), params.
  std::vector<Halide::Argument> arguments() const;
  /// Arguments of the helper pipelines (index check, tile map): tensors, params.
  std::vector<Halide::Argument> inputArguments() const;
  std::vector<Halide::Func> outputs() const;
};

/// The arguments of a pipeline over `tensors` then `params`, in that order.
std::vector<Halide::Argument> inputArgumentsOf(const std::vector<Halide::ImageParam> &tensors,
                                               const std::vector<Halide::Param<>> &params);

/// Tile sizes of the algorithm: queries per tile, keys per block. Chosen by
/// the target (e.g. attn::cpu::chooseTiles).
struct TileSizes {
  int q = 64;
  int k = 128;
  int regQ = 32; // queries per register tile of q.k (masked kernels skip
  int regK = 8;  // register tiles the mask empties)
  /// A GPU target (targets/gpu): no bf16 pair products (a CPU dot-product
  /// instruction), and bf16 widened to f32 by a shift of its bits (Halide's
  /// bf16 cast aborts its LLVM on GPU targets).
  bool gpu = false;
  /// Data-dependent masks: the tiles of the run-time tile map the kernel
  /// reads, when they are another kernel's (the CPU kernel's map serves its
  /// GPU twin); multiples of q and k. 0: the map has this kernel's tiles.
  int mapQ = 0, mapK = 0;
  /// > 0: split decoding with at most this many splits of the key blocks
  /// (AttentionAlgorithm::splitDecode), for short query sequences on GPUs.
  int splitKeys = 0;
};

/// The strategy attn-select-strategy recorded on `kernelOp` ("dense" or
/// "masked"; "masked" when the pass has not run).
std::string kernelStrategy(mlir::Operation *kernelOp);

/// The kernel ops of kernel `name` in `module` (a ModuleOp): the one
/// attn.kernel @name, or for a kernel with `source` blocks its sources'
/// @name.SOURCE in file order. Empty when there is none.
std::vector<mlir::Operation *> kernelOps(mlir::Operation *module, const std::string &name);

/// The value head's size (v's last dimension) when it is a literal, else 0.
int literalValueDim(mlir::Operation *kernelOp);

/// The kernel's compute type (f32 or f64) as a Halide type.
Halide::Type kernelComputeType(mlir::Operation *kernelOp);

/// Builds the algorithm of `kernelOps` (attn::KernelOps after the default
/// pipeline: one, or a kernel's sources, see kernelOps()). Halide may throw Halide::Error; an unsupported construct throws
/// Halide::CompileError. Never call it from inside an MLIR callback.
/// `skipTiles` false builds the unanalysed kernel: the mask is evaluated on
/// every pair and no tile is skipped (tests compare it with the analysed one).
AttentionAlgorithm buildAlgorithm(const std::vector<mlir::Operation *> &kernelOps, TileSizes tiles,
                                  bool skipTiles = true);

/// The backward pass of a kernel (FlashAttention-2's structure; nothing of
/// size Lq x Lk is stored): from the forward's inputs and params, out, dout
/// and (softmax) lse, the gradients of q, k, v, of every float aux tensor
/// the score reads and of every float param. The score's derivatives come
/// from the `grad` region attn-differentiate adds. Stages are tile-shaped
/// like the forward's: (ii, jj, qt, kb, h, b) with i = qt * tileQ + ii and
/// j = kb * tileK + jj.
struct BackwardAlgorithm {
  std::string name;      // the kernel's; the entry point is NAME_backward
  std::string normalize; // softmax, sigmoid, relu, none, hardmax, topk
  std::string ties;      // hardmax: average, latest, first
  int topk = 0;          // topk: K
  Halide::Type computeType;
  int tileQ = 64, tileK = 128;

  std::vector<Halide::ImageParam> tensors; // the forward's inputs, in call order
  std::vector<Halide::Param<>> params;
  Halide::ImageParam out, dout; // [B, H, Lq, Dv], q's element type
  Halide::ImageParam lse;       // [B, H, Lq] f32, softmax only
  Halide::ImageParam dlse;      // [B, H, Lq] f32, softmax only: dL/dlse (zeros if unused)

  Halide::Var c{"c"}, ii{"ii"}, jj{"jj"}, qt{"qt"}, kb{"kb"}, h{"h"}, b{"b"}, i{"i"}, j{"j"};

  /// The per-pair stages, built once for each consumer loop nest that needs
  /// them (a Func has one schedule): the key tile transposed, (jj, d, kb,
  /// hk, b); q.k and dout.v over the tile; the mask (uint8); and `pair`, a
  /// Tuple {p, ds·∂s/∂dot, ds·∂s/∂sqnorm(q), ds·∂s/∂sqnorm(k), ds·∂s/∂x
  /// for every other leaf x, in gradOf order}.
  struct PairStages {
    Halide::Func kT, vT, dot, dpv, mask, pair;
    Halide::Func qT, doutT; // (ii, d, qt, h, b): the query tile's q and dout rows
    Halide::RVar rd, rdv; // the reductions of dot and dpv
  };
  /// dK and dV: Tuple {dk, dv} (c, jj, kb, hk, b) over c < max(D, Dv),
  /// the sum of dkvTile (c, jj, qt, kb, h, b), one query tile's share
  /// (over its rows, dkvRows), over the query heads of the group
  /// (dkvHeads) and the query tiles that may take part (dkvTiles).
  Halide::Func dkv, dkvTile;
  Halide::RVar dkvRows, dkvHeads, dkvTiles;
  PairStages dkvPairs;
  /// dQ (c, ii, qt, h, b): the sum of dqTile (c, ii, qt, kb, h, b), one key
  /// block's share (over its keys, dqKeys), over the key blocks that may
  /// take part (dqBlocks).
  Halide::Func dq, dqTile;
  Halide::RVar dqKeys, dqBlocks;
  PairStages dqPairs;
  /// Float params: one Tuple () of their gradients over every pair; float
  /// aux tensors: each load's derivative scattered to the indices it read.
  Halide::Func dparams;
  Halide::RVar extraBlocks; // the key blocks of their RDom
  PairStages paramPairs;
  struct AuxGrad {
    std::string tensor;
    Halide::Func grad; // the tensor's shape, compute type
    Halide::RVar blocks; // the key blocks of its RDom
    PairStages pairs;
  };
  std::vector<AuxGrad> auxGrads; // one per float aux tensor the score reads
  Halide::Func delta; // softmax: (i, h, b) sum of dout * out over deltaChannels
  Halide::RVar deltaChannels;
  std::vector<Halide::Func> extra; // sqnorm(q), sqnorm(k), mask tile summaries: compute_root

  /// What NAME_backward writes, in order: dq, dk, dv, then one per
  /// `gradNames` entry after them (aux tensors, then params as 0-d buffers).
  std::vector<Halide::Func> outputs;
  std::vector<std::string> gradNames; // "q", "k", "v", aux tensor names, params' names

  /// Softmax kernels without `output lse`: NAME_lse (inputs, params -> lse
  /// f32 [B, H, Lq]) gives the backward its lse, from rowStats {m, l}.
  /// Hardmax: rowStats is {max score, ties, first and last j of the
  /// maximum}, which choose the keys whose values get the gradient.
  Halide::Func lseRows;   // (i, h, b)
  Halide::Func rowStats;  // (ii, qt, h, b), over statsKeys, statsBlocks
  /// Softmax lse: per key block (ii, qt, kb, h, b) its maximum score and
  /// the sum of the weights exp(s - max) (jj, ii, qt, kb, h, b) over its
  /// keys (statsKeys); rowStats merges the blocks (statsBlocks).
  Halide::Func lseBlockMax, lseWeight, lseBlockSum;
  /// Top-k: (slot, ii, qt, h, b) -> {score, j} of the K best pairs of a row
  /// (the forward's selection), over topkSlots, statsKeys, statsBlocks.
  Halide::Func topkState;
  Halide::RVar topkSlots;
  Halide::RVar statsKeys, statsBlocks;
  PairStages statsPairs;

  /// NAME_backward's arguments: tensors, params, out, dout, lse and dlse
  /// (softmax).
  std::vector<Halide::Argument> arguments() const;
};

/// Builds the backward of `kernelOps` (one kernel op, after the default
/// pipeline). Throws Halide::CompileError naming what it does not
/// differentiate (sources, index maps, hardmax and topk for now, or the
/// kernel's grad_why_not).
BackwardAlgorithm buildBackward(const std::vector<mlir::Operation *> &kernelOps, TileSizes tiles);

} // namespace attn
