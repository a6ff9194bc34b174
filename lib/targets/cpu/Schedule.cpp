// CPU schedule of the attention algorithm (see Schedule.h).
//
// Loop structure, per (b, h, query tile qt) in parallel:
//   qT   = the query tile, transposed so queries are contiguous
//   for each key block kb that the mask does not empty (acc.update, rk):
//     score    [tileQ x tileK]  QKᵀ in 32x8 register tiles (dotAcc), then the
//                               score expression and mask
//     blockMax, weight = exp(score - blockMax), blockSum   (softmax)
//     acc     <- acc * exp(m - m') + (weight · V) * exp(blockMax - m'), the
//                PV product accumulated in 32x8 register tiles (pvAcc)
//   out = O / l
// Nothing of size Lq x Lk is ever stored.
#include "attn/targets/cpu/Schedule.h"

#include <cstdio>
#include <cstdlib>

using namespace Halide;

namespace attn::cpu {

Target parseTarget(const std::string &spec) {
  if (spec.empty() || spec == "host")
    return get_host_target();
  return Target(spec);
}

TileSizes chooseTiles(const Target &target, const std::string &strategy, Type computeType) {
  TileSizes t;
  t.q = 64;
  t.k = 128;
  t.regQ = 2 * target.natural_vector_size(computeType);
  t.regK = 8;
  if (const char *env = std::getenv("ATTNC_TILES")) {
    int q = 0, k = 0;
    if (std::sscanf(env, "%dx%d", &q, &k) == 2 && q >= 32 && k >= 8 && q % 32 == 0 && k % 8 == 0)
      t.q = q, t.k = k;
  }
  return t;
}

namespace {

/// What runs once per call before the kernel: index-map rows, channel
/// vectors, helpers, tile summaries, the tile map.
void scheduleHelpers(AttentionAlgorithm &alg) {
  for (Func &f : alg.rowMaps)
    f.compute_root();
  // Channel vectors: every row's once per call, rows in parallel.
  for (Func &f : alg.vectors) {
    f.compute_root();
    if (f.dimensions() == 4) {
      Var x = f.args()[1], xo("xo"), xi("xi");
      f.split(x, xo, xi, 16, TailStrategy::GuardWithIf).parallel(xo);
    }
  }
  for (Func &f : alg.extra)
    f.compute_root();
  for (Func &f : alg.tileSummaries)
    f.compute_root();
  if (alg.tileMap.defined())
    alg.tileMap.parallel(alg.b);
}

/// Linear attention (LinearAttention.h): one parallel task per (h, b); the
/// non-causal state once per call, the causal scan per task, chunk by chunk.
void scheduleLinear(AttentionAlgorithm &alg, const Target &target) {
  LinearAttention &la = *alg.linear;
  const int vec = target.natural_vector_size(alg.computeType);
  Var t("t");
  alg.out.reorder(alg.dv, alg.i, alg.h, alg.b)
      .fuse(alg.h, alg.b, t)
      .parallel(t)
      .vectorize(alg.dv, vec, TailStrategy::GuardWithIf);
  if (!la.causal) {
    la.state.compute_root().vectorize(la.dv, vec, TailStrategy::GuardWithIf);
    la.state.update()
        .reorder(la.dv, la.n, la.rj, la.hk, la.b)
        .vectorize(la.dv, vec, TailStrategy::GuardWithIf)
        .parallel(la.hk);
    la.norm.compute_root().vectorize(la.n, vec, TailStrategy::GuardWithIf);
    la.norm.update().reorder(la.n, la.rj, la.hk, la.b).vectorize(la.n, vec, TailStrategy::GuardWithIf);
  } else {
    la.state.compute_at(alg.out, t).vectorize(la.dv, vec, TailStrategy::GuardWithIf);
    la.state.update().reorder(la.dv, la.n, la.rc).vectorize(la.dv, vec, TailStrategy::GuardWithIf);
    la.chunkState.compute_at(la.state, la.rc).vectorize(la.dv, vec, TailStrategy::GuardWithIf);
    la.chunkState.update()
        .reorder(la.dv, la.n, la.rr)
        .vectorize(la.dv, vec, TailStrategy::GuardWithIf);
    la.norm.compute_at(alg.out, t).vectorize(la.n, vec, TailStrategy::GuardWithIf);
    la.norm.update().reorder(la.n, la.rc).vectorize(la.n, vec, TailStrategy::GuardWithIf);
    la.chunkNorm.compute_at(la.norm, la.rc).vectorize(la.n, vec, TailStrategy::GuardWithIf);
    la.chunkNorm.update().reorder(la.n, la.rr).vectorize(la.n, vec, TailStrategy::GuardWithIf);
    la.scores.compute_at(alg.out, alg.i).vectorize(la.r, vec, TailStrategy::GuardWithIf);
    if (la.powers.defined()) { // a decay: g^e per head, and per query
      la.powers.compute_at(alg.out, t);
      la.queryDecay.compute_at(alg.out, alg.i);
    }
  }
  if (la.normalized)
    la.denominator.compute_at(alg.out, alg.i);
  scheduleHelpers(alg);
}

} // namespace

void schedule(AttentionAlgorithm &alg, const Target &target) {
  if (alg.linear) {
    scheduleLinear(alg, target);
    return;
  }
  const int vec = target.natural_vector_size(alg.computeType);
  const int regQ = alg.regQ; // queries per register tile of QKᵀ (chooseTiles)
  const int regK = alg.regK; // keys per register tile of QKᵀ
  const int regV = 2 * vec; // value channels per register tile of PV
  const int regI = 8;       // queries per register tile of PV
  Var qto("qto"), iin("iin"), t("t");
  Var ji("ji"), jo("jo");
  Var &ii = alg.ii, &jj = alg.jj, &dv = alg.dv, &qt = alg.qt, &h = alg.h, &b = alg.b;
  bool blockStats = alg.normalize != "sigmoid" && alg.normalize != "relu" &&
                    alg.normalize != "none";

  // Output: one parallel task per (b, h, query tile).
  alg.out.split(alg.i, qto, iin, alg.tileQ, TailStrategy::GuardWithIf)
      .reorder(dv, iin, qto, h, b)
      .fuse(qto, h, t)
      .fuse(t, b, t)
      .parallel(t)
      .vectorize(dv, vec, TailStrategy::GuardWithIf);
  if (alg.outputLse) {
    // Two outputs read the accumulator: keep it whole.
    alg.acc.compute_root();
    // Parallel over query tiles; h and b stay loops of their own (fusing
    // them trips Halide on masks that read h, e.g. `i < h + 3`).
    for (const KeySource &src : alg.sources)
      alg.acc.update(src.accStage - 1).parallel(qt);
    alg.lse.vectorize(alg.i, vec, TailStrategy::GuardWithIf).parallel(b);
  } else {
    alg.acc.compute_at(alg.out, t);
  }
  alg.acc.vectorize(dv, vec, TailStrategy::GuardWithIf);
  // Each source updates the accumulator over its own key blocks (update
  // accStage - 1); its stages are computed per block of that update.
  for (KeySource &src : alg.sources) {
    const int stage = src.accStage; // stage 0 is the pure definition
    // Loop levels are found by name: each source's update has loops of its
    // own names (rk_SOURCE, dvo_SOURCE, ...). One source's stages are at the
    // query tile of its update; with several, qt names a loop of each update,
    // so their query tiles are computed per key block.
    auto own = [&src](const char *n) { return Var(src.name.empty() ? n : std::string(n) + "_" + src.name); };
    Var dvo = own("dvo"), dvi = own("dvi"), io = own("io"), iii = own("iii");
    LoopLevel perBlock(alg.acc, src.rk);
    LoopLevel queryTile = alg.sources.size() == 1 ? LoopLevel(alg.acc, qt) : perBlock;
    // Several sources with top-k: both passes read the query tile, so it is
    // computed where they meet (per output tile; whole when lse keeps acc).
    if (alg.sources.size() > 1 && alg.topkState.defined())
      queryTile = alg.outputLse ? LoopLevel::root() : LoopLevel(alg.out, t);
    alg.acc.update(stage - 1)
        .split(dv, dvo, dvi, regV, TailStrategy::RoundUp)
        .split(ii, io, iii, regI)
        .reorder(dvi, iii, dvo, io, src.rk)
        .vectorize(dvi, vec)
        .unroll(dvi)
        .unroll(iii)
        // Partitioning the key-block loop would copy the whole block body
        // (q.k, softmax, PV) for the first/last blocks: twice the code and
        // compile time for a boundary test that costs nothing at run time.
        .partition(src.rk, Partition::Never);

    if (src.bf16Pairs) {
      Var di = src.qT.args()[0];
      src.qT.compute_at(queryTile).vectorize(di).vectorize(ii, vec);
    } else {
      src.qT.compute_at(queryTile).vectorize(ii, vec);
    }

    // The dot products of one register tile, accumulated in registers with
    // the reduction over d outside the unrolled tile.
    auto scheduleDots = [&](Func dots, LoopLevel at) {
      dots.compute_at(at).vectorize(ii, vec).unroll(ii).unroll(jj);
      if (src.bf16Pairs) {
        // Pairs of bf16 products summed into one f32 lane: the VectorReduce
        // Halide maps to vdpbf16ps on targets that have it.
        dots.update()
            .reorder(src.rd, ii, jj, src.rdPair)
            .atomic()
            .vectorize(src.rd)
            .vectorize(ii, vec)
            .unroll(ii)
            .unroll(jj);
      } else {
        dots.update().reorder(ii, jj, src.rd).vectorize(ii, vec).unroll(ii).unroll(jj);
      }
    };

    // QKᵀ: the score block in register tiles, the dot product accumulated in
    // registers; computed at `at`.
    // The mask of a register tile, computed beside its dot products.
    auto scheduleMask = [&](Func mask, LoopLevel at) {
      if (mask.defined())
        mask.compute_at(at).vectorize(ii, vec).unroll(ii).unroll(jj);
    };
    auto scheduleScores = [&](Func scores, Func dots, Func mask, LoopLevel at) {
      scores.compute_at(at)
          .split(ii, io, iii, regQ)
          .split(jj, jo, ji, regK)
          .reorder(iii, ji, io, jo)
          .vectorize(iii, vec)
          .unroll(iii)
          .unroll(ji);
      scheduleDots(dots, LoopLevel(scores, io));
      scheduleMask(mask, LoopLevel(scores, io));
    };
    if (src.scoreRegisterTiles) {
      // The same register tiles, as an update over the tiles the mask does not
      // empty; q.k is computed per visited tile.
      // Every point of an update domain writes its own element and reads no
      // other: vectorizing the tile's queries cannot race, which Halide cannot
      // prove through the where clause.
      auto registerTiles = [&](Func f, const KeySource::TileUpdate &t, Func dots) {
        const RVar &q = t.q, &k = t.k, &qo = t.qo, &ko = t.ko;
        f.compute_at(perBlock).vectorize(ii, vec);
        f.update()
            .allow_race_conditions()
            .reorder(q, k, qo, ko)
            .vectorize(q, vec)
            .unroll(q)
            .unroll(k);
        scheduleDots(dots, LoopLevel(f, qo));
      };
      registerTiles(src.scoreFull, src.fullTiles, src.dotAccFull);
      registerTiles(src.score, src.partialTiles, src.dotAcc);
      scheduleMask(src.maskTile, LoopLevel(src.score, src.partialTiles.qo));
    } else {
      scheduleScores(src.score, src.dotAcc, src.maskTile, perBlock);
    }

    if (alg.topkState.defined()) {
      const int ts = stage - 1; // this source's update of topkState
      // Pass 1 of top-k computes its own copy of the scores, block by block,
      // before the accumulator's loop over key blocks.
      Func raw = src.rawScore.clone_in(alg.topkState);
      Func mask = src.maskTile.defined() ? src.maskTile.clone_in(raw) : Func();
      std::vector<Func> dotCallers;
      if (src.scoreUsesDot)
        dotCallers.push_back(raw);
      if (src.maskUsesDot && mask.defined())
        dotCallers.push_back(mask);
      // One source: computed per query tile; several: every source's update
      // reads it, so per output tile (or once, when lse keeps acc whole).
      if (alg.sources.size() == 1)
        alg.topkState.compute_at(alg.acc, qt);
      else if (alg.outputLse)
        alg.topkState.compute_root();
      else
        alg.topkState.compute_at(alg.out, t);
      alg.topkState.vectorize(ii, vec);
      alg.topkState.update(ts).reorder(ii, src.rtSlot, src.rtKey, src.rtBlock).vectorize(ii, vec);
      LoopLevel topkBlock(alg.topkState, src.rtBlock);
      if (dotCallers.empty()) {
        raw.compute_at(topkBlock).vectorize(ii, vec);
        scheduleMask(mask, topkBlock);
      } else {
        Func dots = src.dotAcc.clone_in(dotCallers);
        // Keys in another element type, or gathered through an index map, are
        // converted per block in each pass.
        if ((alg.tensors[src.kTensor].type() != alg.computeType || src.kGathered) && !src.bf16Pairs)
          src.kf.clone_in(dots)
              .compute_at(topkBlock)
              .vectorize(src.kf.args()[0], vec, TailStrategy::GuardWithIf);
        scheduleScores(raw, dots, mask, topkBlock);
      }
    }

    if (src.blockSum.defined()) {
      src.blockSum.compute_at(perBlock).vectorize(ii, vec);
      src.blockSum.update().reorder(ii, src.rj).vectorize(ii, vec);
    }
    if (blockStats && src.blockMax.defined()) {
      src.blockMax.compute_at(perBlock).vectorize(ii, vec);
      src.blockMax.update().reorder(ii, src.rj).vectorize(ii, vec);
    }
    if (src.blockArg.defined()) {
      src.blockArg.compute_at(perBlock).vectorize(ii, vec);
      src.blockArg.update().reorder(ii, src.rj).vectorize(ii, vec);
    }
    src.weight.compute_at(perBlock).vectorize(ii, vec);

    // PV: accumulated in registers at the accumulator's register tile.
    src.pvAcc.compute_at(alg.acc, dvo).vectorize(dv, vec).unroll(dv).unroll(ii);
    src.pvAcc.update().reorder(dv, ii, src.rj).vectorize(dv, vec).unroll(dv).unroll(ii);

    // Keys and values in another element type are converted once per block;
    // rows found through an index map are gathered once per block.
    if (alg.tensors[src.kTensor].type() != alg.computeType || src.kGathered)
      src.kf.compute_at(perBlock).vectorize(src.kf.args()[0], vec, TailStrategy::GuardWithIf);
    if (alg.tensors[src.vTensor].type() != alg.computeType || src.vGathered)
      src.vf.compute_at(perBlock).vectorize(src.vf.args()[0], vec, TailStrategy::GuardWithIf);
  }

  scheduleHelpers(alg);
}

} // namespace attn::cpu

namespace attn::cpu {

// The backward (BackwardAlgorithm): two loop nests, as FlashAttention-2.
//   dk, dv: per (b, hk, key block kb) in parallel over kb
//     kT, vT = the key and value block, transposed (keys contiguous)
//     for each query head of the group, for each query tile that may take
//     part: q.k and dout.v over the tile (vectorized over keys), the pair
//     stage (score, p, ds·∂s/∂x), then dk += ds·∂s/∂dot q, dv += p dout,
//     vectorized over channels
//   dq: per (b, h, query tile qt) in parallel over qt, the same per key block
//     that may take part, then dq += ds·∂s/∂dot k
// Gradients of float aux tensors and params scatter or sum over every pair,
// one serial loop nest each (a scatter's indices are data).
void scheduleBackward(BackwardAlgorithm &bw, const Target &target) {
  const int vec = target.natural_vector_size(bw.computeType);
  for (Func &f : bw.extra)
    f.compute_root();
  if (bw.delta.defined()) {
    // Rows of each head in parallel chunks, 16 rows in vector lanes.
    Var io("io"), iv("iv");
    bw.delta.compute_root().split(bw.i, io, iv, 256, TailStrategy::GuardWithIf).parallel(io);
    bw.delta.update()
        .split(bw.i, io, iv, 256, TailStrategy::GuardWithIf)
        .reorder(iv, bw.deltaChannels, io)
        .vectorize(iv, vec)
        .parallel(io);
  }
  // The pair stages of one consumer: the key block at `block`, the tile at
  // `tile`.
  //
  // `alongKeys`: the tile vectorized over keys, the key block transposed
  // once per block (kT, vT at `block`) and q, dout read in place; else
  // vectorized over query rows, the query tile transposed once per tile
  // (qT, doutT at `rowsAt`) and k, v read in place, so that a loop nest
  // over key blocks inside a query tile transposes nothing per block.
  auto pairs = [&](BackwardAlgorithm::PairStages &st, Func consumer, RVar block, RVar tile,
                   bool blockIsPure, Var pureBlock, bool alongKeys = true,
                   LoopLevel rowsAt = LoopLevel::inlined()) {
    LoopLevel atBlock = blockIsPure ? LoopLevel(consumer, pureBlock) : LoopLevel(consumer, block);
    LoopLevel atTile(consumer, tile);
    Var x = alongKeys ? bw.jj : bw.ii, y = alongKeys ? bw.ii : bw.jj;
    if (alongKeys) {
      st.kT.compute_at(atBlock).vectorize(bw.jj, vec);
      if (st.vT.defined())
        st.vT.compute_at(atBlock).vectorize(bw.jj, vec);
    } else {
      st.qT.compute_at(rowsAt).vectorize(bw.ii, vec);
      if (st.doutT.defined())
        st.doutT.compute_at(rowsAt).vectorize(bw.ii, vec);
      for (Func *f : {&st.dot, &st.dpv, &st.mask, &st.pair})
        if (f->defined())
          f->reorder_storage(bw.ii, bw.jj);
    }
    // The pair tile in register blocks of 2 vectors (along x) x 4 (along
    // y): q.k and dout.v of one block are accumulated over d in a
    // constant-size, fully unrolled buffer that LLVM keeps in registers (8
    // accumulators; each vector loaded is used by 4 FMAs).
    Var xo("xo"), xm("xm"), xv("xv"), yo("yo"), yv("yv");
    st.pair.compute_at(atTile)
        .split(x, xo, xm, 2 * vec)
        .split(xm, xm, xv, vec)
        .split(y, yo, yv, 4)
        .reorder(xv, xm, yv, xo, yo)
        .vectorize(xv)
        .unroll(xm)
        .unroll(yv);
    auto accumulate = [&](Func &f, RVar r) {
      f.compute_at(st.pair, xo).reorder(x, y).vectorize(x, vec).unroll(x).unroll(y);
      f.update().reorder(x, y, r).vectorize(x, vec).unroll(x).unroll(y);
    };
    accumulate(st.dot, st.rd);
    if (st.dpv.defined())
      accumulate(st.dpv, st.rdv);
    if (st.mask.defined())
      st.mask.compute_at(st.pair, xo).reorder(x, y).vectorize(x, vec).unroll(x).unroll(y);
  };

  // A tile's share of dk, dv or dq, in register blocks of 2 vectors of
  // channels x 4 keys (or rows): `tile` is computed per block of `sum`
  // (whose loops over the block are unrolled), accumulating over its
  // reduction `r` in a constant-size buffer that LLVM keeps in registers.
  Var co("co"), ci("ci"), xo("xo"), xi("xi");
  auto blocked = [&](Func &sum, Var x, std::vector<VarOrRVar> outer, Func &tile, RVar r,
                     Var parallelVar) {
    std::vector<VarOrRVar> order{ci, xi, co, xo};
    order.insert(order.end(), outer.begin(), outer.end());
    sum.compute_root().vectorize(bw.c, vec).parallel(parallelVar);
    sum.update()
        .split(bw.c, co, ci, 2 * vec)
        .split(x, xo, xi, 4)
        .reorder(order)
        .vectorize(ci, vec)
        .unroll(ci)
        .unroll(xi)
        .parallel(parallelVar);
    tile.compute_at(sum, co).vectorize(bw.c, vec).unroll(bw.c).unroll(x);
    tile.update().reorder(bw.c, x, r).vectorize(bw.c, vec).unroll(bw.c).unroll(x);
  };
  Var hk = bw.dkv.args()[3];
  blocked(bw.dkv, bw.jj, {bw.dkvHeads, bw.dkvTiles, bw.kb, hk, bw.b}, bw.dkvTile, bw.dkvRows,
          bw.kb);
  pairs(bw.dkvPairs, bw.dkv, bw.dkvTiles, bw.dkvHeads, true, bw.kb);
  if (bw.dq.num_update_definitions()) { // hardmax has none (dq = 0)
    blocked(bw.dq, bw.ii, {bw.dqBlocks, bw.qt, bw.h, bw.b}, bw.dqTile, bw.dqKeys, bw.qt);
    pairs(bw.dqPairs, bw.dq, bw.dqBlocks, bw.dqBlocks, false, Var(), false,
          LoopLevel(bw.dq, bw.qt));
  } else {
    bw.dq.compute_root().vectorize(bw.c, vec).parallel(bw.qt);
  }

  for (BackwardAlgorithm::AuxGrad &ag : bw.auxGrads) {
    ag.grad.compute_root();
    pairs(ag.pairs, ag.grad, ag.blocks, ag.blocks, false, Var());
  }
  if (bw.dparams.defined())
    bw.dparams.compute_root();
  if (bw.dparams.defined() && bw.dparams.num_update_definitions()) {
    pairs(bw.paramPairs, bw.dparams, bw.extraBlocks, bw.extraBlocks, false, Var());
  }
  // Top-k's selection, per (b, h, query tile) in parallel, rows in vector
  // lanes (each key inserted into every row's K slots), the score tile
  // vectorized over rows.
  if (bw.topkState.defined()) {
    bw.topkState.compute_root().vectorize(bw.ii, vec).parallel(bw.qt);
    bw.topkState.update()
        .reorder(bw.ii, bw.topkSlots, bw.statsKeys, bw.statsBlocks, bw.qt, bw.h, bw.b)
        .vectorize(bw.ii, vec)
        .parallel(bw.qt);
    pairs(bw.statsPairs, bw.topkState, bw.statsBlocks, bw.statsBlocks, false, Var(), false,
          LoopLevel(bw.topkState, bw.qt));
  }
  // Row statistics (softmax lse, hardmax's maximum), per (b, h, query
  // tile) in parallel, the score tile of every key block that may take
  // part computed as in the loop nests above.
  if (bw.rowStats.defined()) {
    bw.rowStats.compute_root().parallel(bw.qt);
    if (bw.lseBlockMax.defined()) {
      // Rows in vector lanes throughout: the score tile vectorized over
      // rows (q transposed once per query tile), each block's maximum and
      // sum of weights reduced over its keys for 16 rows at once.
      bw.rowStats.compute_root().vectorize(bw.ii, vec);
      bw.rowStats.update()
          .reorder(bw.ii, bw.statsBlocks, bw.qt, bw.h, bw.b)
          .vectorize(bw.ii, vec)
          .parallel(bw.qt);
      LoopLevel atBlock(bw.rowStats, bw.statsBlocks);
      bw.lseBlockMax.compute_at(atBlock).vectorize(bw.ii, vec);
      bw.lseBlockMax.update().reorder(bw.ii, bw.statsKeys).vectorize(bw.ii, vec);
      bw.lseWeight.compute_at(atBlock).reorder_storage(bw.ii, bw.jj).vectorize(bw.ii, vec);
      bw.lseBlockSum.compute_at(atBlock).vectorize(bw.ii, vec);
      bw.lseBlockSum.update().reorder(bw.ii, bw.statsKeys).vectorize(bw.ii, vec);
      pairs(bw.statsPairs, bw.rowStats, bw.statsBlocks, bw.statsBlocks, false, Var(), false,
            LoopLevel(bw.rowStats, bw.qt));
    } else {
      bw.rowStats.update()
          .reorder(bw.ii, bw.statsKeys, bw.statsBlocks, bw.qt, bw.h, bw.b)
          .parallel(bw.qt);
      pairs(bw.statsPairs, bw.rowStats, bw.statsBlocks, bw.statsBlocks, false, Var());
    }
  }
}

} // namespace attn::cpu
