// GPU schedule of the attention algorithm (see Schedule.h). CUDA and OpenCL
// share it; Halide writes the device code (PTX, OpenCL C).
//
// Loop structure, one GPU block per (query tile qt, head h, batch b):
//   acc {O, m, l}  [tileQ x Dv] in shared memory, threads over (dv, ii)
//   for each key block kb the mask does not empty (a serial loop of the
//   block; the tile test and the run-time tile map are read per block):
//     score    [tileQ x tileK] in shared memory, one thread per pair:
//              q.k in a register, then the score expression; key blocks the
//              mask makes full read no mask (scoreFull), partial ones
//              evaluate it per pair
//     blockMax, blockSum, blockArg: one thread per row
//     weight   [tileQ x tileK] in shared memory, one thread per pair
//     acc     <- the online softmax update, one thread per (dv, row), its
//                share of PV accumulated in a register (pvAcc)
//   out = O / l, threads over (dv, row)
// Halide inserts the barriers between the stages of a block. Nothing of size
// Lq x Lk is stored. Helpers (norms, channel vectors, tile summaries) are
// computed once per call, one thread per element.
#include "attn/targets/gpu/Schedule.h"

#include <algorithm>

using namespace Halide;

namespace attn::gpu {

TileSizes chooseTiles(const Target &, Type, int valueDim) {
  TileSizes t;
  t.q = valueDim > 128 ? 8 : 16;
  t.k = 32;
  t.regQ = t.q;
  t.regK = t.k;
  t.gpu = true;
  return t;
}

namespace {

/// Whether a definition of `funcs` calls Halide's f64 trigonometric
/// functions (sin_f64, cos_f64, ...).
bool callsF64Trigonometry(const std::vector<Func> &funcs) {
  struct Finder : Internal::IRGraphVisitor {
    bool found = false;
    using Internal::IRGraphVisitor::visit;
    void visit(const Internal::Call *op) override {
      for (const char *f : {"sin_f64", "cos_f64", "tan_f64", "asin_f64", "acos_f64", "atan_f64",
                            "atan2_f64", "sinh_f64", "cosh_f64", "tanh_f64"})
        found = found || (op->call_type == Internal::Call::PureExtern && op->name == f);
      Internal::IRGraphVisitor::visit(op);
    }
  } finder;
  for (const Func &f : funcs) {
    if (!f.defined())
      continue;
    std::vector<Tuple> defs{f.values()};
    for (int u = 0; u < f.num_update_definitions(); ++u)
      defs.push_back(f.update_values(u));
    for (const Tuple &t : defs)
      for (const Expr &e : t.as_vector())
        e.accept(&finder);
  }
  return finder.found;
}

} // namespace

std::string unsupported(const AttentionAlgorithm &alg, const Target &target) {
  if (target.has_feature(Target::OpenCL) && !target.has_feature(Target::CLHalf)) {
    for (const ImageParam &t : alg.tensors) {
      if (t.type() == Float(16))
        return "tensor '" + t.name() + "' is f16, which OpenCL runs only with cl_khr_fp16 "
               "(target feature cl_half; PoCL has none)";
      if (t.type() == BFloat(16))
        return "tensor '" + t.name() + "' is bf16, which Halide's OpenCL back end emits as half "
               "(it needs cl_half, which PoCL lacks)";
    }
  }
  if (alg.linear)
    return "linear attention (the O(L) scan) has no GPU schedule yet";
  // Top-k's second pass keeps the keys whose recomputed score ranks with
  // the first pass's K-th: that needs both passes' scores bit for bit, and
  // GPU compilers contract multiply-adds as they see fit (PoCL did: rows
  // lost their K-th key).
  if (alg.normalize == "topk")
    return "top-k selection has no GPU schedule yet (its two passes must compute the same "
           "scores bit for bit)";
  if (target.has_feature(Target::OpenCL) && alg.computeType == Float(64)) {
    // PoCL's f64 sin and cos were off by 2e-8 (f32 precision) in the
    // language-v2 tests; the CPU kernel keeps f64's. (Its f64 exp and log
    // pass the f64 conformance test.)
    std::vector<Func> funcs = alg.vectors;
    for (const KeySource &src : alg.sources)
      for (const Func &f : src.stages())
        funcs.push_back(f);
    if (callsF64Trigonometry(funcs))
      return "an f64 score with trigonometric functions (sin, cos, ...): OpenCL devices (PoCL) "
             "need not compute them to f64 precision";
  }
  if (alg.sources.size() > 1 && alg.hasTileMap)
    return "several key/value sources with a data-dependent mask have no GPU schedule yet";
  return "";
}

int sharedBytes(const AttentionAlgorithm &alg, int valueDim) {
  const int size = alg.computeType.bytes();
  const int dvRounded = (valueDim + kThreadsX - 1) / kThreadsX * kThreadsX;
  const int tile = alg.tileQ * alg.tileK;
  int bytes = 0;
  if (!alg.outputLse) // with lse the accumulator is in global memory
    bytes += alg.tileQ * dvRounded * int(alg.acc.outputs()) * size;
  for (const KeySource &src : alg.sources) {
    bytes += tile * size * (src.scoreFull.defined() ? 3 : 2); // score(, scoreFull), weight
    for (const Func *f : {&src.blockMax, &src.blockSum, &src.blockArg})
      if (f->defined())
        bytes += alg.tileQ * std::max(size, 4);
  }
  return bytes;
}

namespace {

/// A helper computed once per call: its pure dimensions fused and split
/// into blocks of 64 threads; updates the same, reductions serial in the
/// thread.
void elementwise(Func f) {
  f.compute_root();
  auto flat = [](Stage s, std::vector<Var> vars) {
    if (vars.empty())
      return; // a single value: computed on the host
    Var x = vars[0];
    for (size_t k = 1; k < vars.size(); ++k) {
      Var fused(x.name() + "_" + vars[k].name());
      s.fuse(x, vars[k], fused);
      x = fused;
    }
    Var xo(x.name() + "_o"), xi(x.name() + "_i");
    s.gpu_tile(x, xo, xi, 64, TailStrategy::GuardWithIf);
  };
  flat(f, f.args());
  for (int u = 0; u < f.num_update_definitions(); ++u) {
    std::vector<Var> pure;
    for (const Expr &a : f.update_args(u))
      if (const auto *v = a.as<Internal::Variable>(); v && !v->reduction_domain.defined())
        pure.push_back(Var(v->name));
    flat(f.update(u), pure); // (a reduction to a point stays on the host)
  }
}

} // namespace

void schedule(AttentionAlgorithm &alg, const Target &) {
  const int TX = kThreadsX;
  Var &ii = alg.ii, &jj = alg.jj, &dv = alg.dv, &qt = alg.qt, &h = alg.h, &b = alg.b;
  Var qto("qto"), iin("iin"), dvo("dvo"), dvi("dvi"), jo("jo"), ji("ji"), io("io"), iv("iv");

  // Output: a block per (query tile, head, batch), threads over (dv, row).
  alg.out.split(alg.i, qto, iin, alg.tileQ, TailStrategy::GuardWithIf)
      .split(dv, dvo, dvi, TX, TailStrategy::GuardWithIf)
      .reorder(dvo, dvi, iin, qto, alg.h, alg.b)
      .gpu_blocks(qto, alg.h, alg.b)
      .gpu_threads(dvi, iin);

  // The accumulator: in the output's block (shared memory), or, when a
  // second output (lse) reads it, whole in global memory with blocks of
  // its own.
  if (alg.outputLse) {
    alg.acc.compute_root()
        .split(dv, dvo, dvi, TX, TailStrategy::RoundUp)
        .reorder(dvo, dvi, ii, qt, h, b)
        .gpu_blocks(qt, h, b)
        .gpu_threads(dvi, ii);
    alg.lse.split(alg.i, io, iv, 64, TailStrategy::GuardWithIf)
        .gpu_blocks(io, alg.h, alg.b)
        .gpu_threads(iv);
  } else {
    alg.acc.compute_at(alg.out, qto)
        .split(dv, dvo, dvi, TX, TailStrategy::RoundUp)
        .reorder(dvo, dvi, ii)
        .gpu_threads(dvi, ii);
  }

  // The key blocks' stages of a source, computed per block of the loop at
  // `perBlock`; pvAcc per thread of `state` (the state it updates).
  auto blockStages = [&](KeySource &src, LoopLevel perBlock, Func state) {
    // One thread per pair of the tile (keys along x).
    auto pairs = [&](Func f) {
      f.compute_at(perBlock)
          .split(jj, jo, ji, TX, TailStrategy::RoundUp)
          .reorder(ji, ii, jo)
          .gpu_threads(ji, ii);
    };
    // One thread per row, the reduction over the block's keys serial.
    auto rows = [&](Func f) {
      if (!f.defined())
        return;
      f.compute_at(perBlock).gpu_threads(ii);
      f.update().reorder(src.rj, ii).gpu_threads(ii);
    };
    if (src.scoreRegisterTiles) {
      // The block's full / partial update: one thread per pair of the tile
      // (regQ x regK is the whole tile); every point writes its own element.
      auto tiles = [&](Func f, const KeySource::TileUpdate &t, Func dots) {
        pairs(f);
        f.update().allow_race_conditions().reorder(t.k, t.q, t.ko, t.qo).gpu_threads(t.k, t.q);
        dots.compute_at(f, t.k);
      };
      tiles(src.scoreFull, src.fullTiles, src.dotAccFull);
      tiles(src.score, src.partialTiles, src.dotAcc);
    } else {
      pairs(src.score);
      src.dotAcc.compute_at(src.score, ji);
    }
    rows(src.blockMax);
    rows(src.blockSum);
    rows(src.blockArg);
    pairs(src.weight);
    // Each thread's share of PV, for its (dv, row), in a register.
    src.pvAcc.compute_at(state, dvo);
  };

  if (alg.splitDecode) {
    // Split decoding: a block per (split, query tile, head, batch) for its
    // run of key blocks, its state in global memory; the merge (acc) in the
    // output's block, one thread per (dv, row) over the splits.
    Var qs("qs");
    KeySource &src = alg.sources[0];
    auto perSplit = [&](Stage st, bool update) {
      st.split(dv, dvo, dvi, TX, TailStrategy::RoundUp);
      if (update)
        st.reorder(dvo, dvi, ii, alg.splitBlocks, qt, alg.split, h, b);
      else
        st.reorder(dvo, dvi, ii, qt, alg.split, h, b);
      st.fuse(qt, alg.split, qs).gpu_blocks(qs, h, b).gpu_threads(dvi, ii);
    };
    alg.accSplit.compute_root();
    perSplit(alg.accSplit, false);
    perSplit(alg.accSplit.update(), true);
    blockStages(src, LoopLevel(alg.accSplit, alg.splitBlocks), alg.accSplit);
    alg.acc.update().split(dv, dvo, dvi, TX, TailStrategy::RoundUp)
        .reorder(dvo, dvi, ii, alg.mergeSplits);
    if (alg.outputLse)
      alg.acc.update().reorder(dvo, dvi, ii, alg.mergeSplits, qt, h, b).gpu_blocks(qt, h, b);
    alg.acc.update().gpu_threads(dvi, ii);
    if (alg.splitMax.defined()) {
      alg.splitMax.compute_at(alg.acc, qt).gpu_threads(ii);
      alg.splitMax.update().reorder(alg.mergeSplits, ii).gpu_threads(ii);
    }
  }

  for (KeySource &src : alg.sources) {
    if (alg.splitDecode)
      break;
    Stage update = alg.acc.update(src.accStage - 1);
    update.split(dv, dvo, dvi, TX, TailStrategy::RoundUp).reorder(dvo, dvi, ii, src.rk);
    if (alg.outputLse)
      update.reorder(dvo, dvi, ii, src.rk, qt, h, b).gpu_blocks(qt, h, b);
    update.gpu_threads(dvi, ii);
    blockStages(src, LoopLevel(alg.acc, src.rk), alg.acc);
  }

  for (Func &f : alg.rowMaps)
    elementwise(f);
  for (Func &f : alg.extra)
    elementwise(f);
  for (Func &f : alg.tileSummaries)
    elementwise(f);
}

} // namespace attn::gpu
