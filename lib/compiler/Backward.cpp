// The backward pass of an attention kernel as Halide pipelines
// (BackwardAlgorithm in AttnToHalide.h): FlashAttention-2's structure, with
// the score's derivatives from the `grad` region of attn-differentiate.
//
// For a pair (i, j) that takes part, with s its score and p its weight:
//   softmax   p = exp(s - lse_i),    ds = p (dP_ij - Δ_i), Δ_i = Σ dout_i ∘ out_i
//                                    (- dlse_i, when the loss reads lse too)
//   sigmoid   p = σ(s),              ds = dP_ij σ(s) (1 - σ(s))
//   relu      p = max(s, 0),         ds = dP_ij [s > 0]
//   none      p = s,                 ds = dP_ij
// with dP_ij = dout_i · v_j. Then dv_j = Σ_i p dout_i, and each leaf x the
// score reads gets ds · ∂s/∂x: dq_i = Σ_j ds ∂s/∂dot k_j (+ 2 q_i Σ_j ds
// ∂s/∂sqnorm(q)), dk_j likewise over i and the query heads of its group,
// float params summed over every pair, float aux tensors scattered to the
// indices each load read. Pairs that do not take part contribute exactly 0
// (selects, not products, so an infinite derivative never makes a NaN).
//
// dk and dv are one loop nest parallel over key blocks, dq another parallel
// over query tiles; each recomputes q.k and dout.v per tile (nothing of size
// Lq x Lk is stored). Tiles the mask provably empties are skipped in both,
// by the forward's tile test. The schedule is in targets/cpu.
#include "Translator.h"

#include <cmath>
#include <limits>

namespace attn {

using namespace lower;

namespace {

/// One entry of grad_wrt: where its derivative sits in the grad region's
/// yield, and for a load where its indices follow.
struct Leaf {
  std::string kind; // dot, sqnorm, param, load
  std::string name; // q / k for sqnorm; the param or tensor
  int value = 0;    // position of the derivative in the yield
  int rank = 0;     // loads: the number of indices after it
};

} // namespace

std::vector<Argument> BackwardAlgorithm::arguments() const {
  std::vector<Argument> args = inputArgumentsOf(tensors, params);
  args.push_back(out);
  args.push_back(dout);
  if (normalize == "softmax" || normalize == "topk") {
    args.push_back(lse);
    args.push_back(dlse);
  }
  return args;
}

BackwardAlgorithm buildBackward(const std::vector<Operation *> &ops, TileSizes tiles) {
  if (ops.size() != 1)
    throw CompileError("attnc: no backward for a kernel with several key/value sources yet");
  auto kernel = llvm::cast<attn::KernelOp>(ops.front());
  std::string name = kernel.getSymName().str();
  auto refuse = [&](const std::string &why) {
    throw CompileError("attnc: no backward for kernel '" + name + "': " + why);
  };
  if (auto why = kernel->getAttrOfType<mlir::StringAttr>("grad_why_not"))
    refuse(why.str());
  if (kernel.getGrad().empty())
    refuse("the score was not differentiated (attn-differentiate has not run)");
  if (kernel.hasIndexMaps())
    refuse("q, k or v has an index map (`at`); not supported yet");
  if (!kernel.getVectors().empty())
    refuse("the kernel has channel vectors; not supported yet");
  std::string norm = kernel.getNormalize().str();
  if (norm != "softmax" && norm != "sigmoid" && norm != "relu" && norm != "none" &&
      norm != "hardmax" && norm != "topk")
    refuse("normalize = " + norm + " has no backward yet");

  BackwardAlgorithm bw;
  bw.name = name;
  bw.normalize = norm;
  if (auto t = kernel.getTies())
    bw.ties = t->str();
  if (auto t = kernel.getTopk())
    bw.topk = int(*t);
  // softmax and topk (a softmax over the selected keys) read lse and Δ.
  const bool softmaxLike = norm == "softmax" || norm == "topk";
  bw.computeType = halideType(kernel.getComputeType());
  bw.tileQ = tiles.q;
  bw.tileK = tiles.k;
  const int TQ = tiles.q, TK = tiles.k;
  Type ct = bw.computeType;

  // The forward's inputs, declared by the forward's translator.
  AttentionAlgorithm fwd;
  fwd.computeType = ct;
  fwd.tileQ = TQ;
  fwd.tileK = TK;
  Translator tr(kernel, fwd);
  std::map<std::string, Expr> shared;
  for (unsigned t = 0; t < kernel.getTensors().size(); ++t)
    tr.declareTensor(t, shared);
  tr.declareParams();
  ImageParam &q = fwd.tensors[0], &k = fwd.tensors[1], &v = fwd.tensors[2];
  Expr D = q.dim(0).extent(), Lq = q.dim(1).extent(), H = q.dim(2).extent(),
       B = q.dim(3).extent();
  Expr Lk = k.dim(1).extent(), Hk = k.dim(2).extent(), Dv = v.dim(0).extent();
  Expr G = H / Hk; // query heads per key head (the runtime checks H % Hk == 0)
  tr.setExtents(Lq, Lk);

  // NAME_lse's output is named before the backward's lse input, which would
  // otherwise take the name (NAME_lse's buffer argument is then `lse`).
  bw.lseRows = Func("lse");
  bw.out = ImageParam(q.type(), 4, "out");
  bw.dout = ImageParam(q.type(), 4, "dout");
  Expr extents[4] = {Dv, Lq, H, B};
  for (ImageParam *p : {&bw.out, &bw.dout})
    for (int d = 0; d < 4; ++d)
      p->dim(d).set_min(0).set_extent(extents[d]);
  bw.lse = ImageParam(Float(32), 3, "lse");
  bw.dlse = ImageParam(Float(32), 3, "dlse");
  for (ImageParam *p : {&bw.lse, &bw.dlse})
    for (int d = 0; d < 3; ++d)
      p->dim(d).set_min(0).set_extent(extents[d + 1]);

  // grad_wrt: the leaves, in the grad region's yield order.
  std::vector<Leaf> leaves;
  {
    int pos = 1;
    for (mlir::Attribute a : kernel->getAttrOfType<mlir::ArrayAttr>("grad_wrt")) {
      std::string w = llvm::cast<mlir::StringAttr>(a).str();
      size_t sp = w.find(' ');
      Leaf l{w.substr(0, sp), sp == std::string::npos ? "" : w.substr(sp + 1), pos, 0};
      if (l.kind == "load")
        l.rank = tr.rank(l.name);
      pos += 1 + l.rank;
      leaves.push_back(l);
    }
  }
  auto findLeaf = [&](const std::string &kind, const std::string &nm) -> const Leaf * {
    for (const Leaf &l : leaves)
      if (l.kind == kind && l.name == nm)
        return &l;
    return nullptr;
  };
  // sqnorm helpers for the score's and the mask's reads.
  bool usesQn = false, usesKn = false;
  for (mlir::Region *r : {&kernel.getGrad(), &kernel.getMask()})
    for (Operation &o : r->front())
      if (auto s = llvm::dyn_cast<attn::SqnormOp>(o))
        (s.getOf() == "q" ? usesQn : usesKn) = true;
  Var i = bw.i, j = bw.j, h = bw.h, b = bw.b, c = bw.c, ii = bw.ii, jj = bw.jj, qt = bw.qt,
      kb = bw.kb;
  Var hkv("hk");
  Expr zero = make_const(ct, 0.0);
  Expr negInf = make_const(ct, -std::numeric_limits<double>::infinity());
  Func qnorm("bw_qnorm"), knorm("bw_knorm");
  if (usesQn) {
    RDom r(0, D, "rqn");
    qnorm(i, h, b) = zero;
    qnorm(i, h, b) += cast(ct, q(r, i, h, b)) * cast(ct, q(r, i, h, b));
    bw.extra.push_back(qnorm);
  }
  if (usesKn) {
    RDom r(0, D, "rkn");
    knorm(j, hkv, b) = zero;
    knorm(j, hkv, b) += cast(ct, k(r, j, hkv, b)) * cast(ct, k(r, j, hkv, b));
    bw.extra.push_back(knorm);
  }
  if (softmaxLike) {
    RDom r(0, Dv, "rdelta");
    bw.deltaChannels = RVar(r.x);
    // Δ_i = Σ dout∘out - dL/dlse_i: ∂lse_i/∂s_ij = p_ij, so a loss that
    // reads lse adds p·dlse to ds.
    bw.delta = Func("delta");
    bw.delta(i, h, b) = -cast(ct, bw.dlse(i, h, b));
    bw.delta(i, h, b) += cast(ct, bw.dout(r, i, h, b)) * cast(ct, bw.out(r, i, h, b));
  }

  bool skip = kernelStrategy(kernel) != "dense";
  // Whether tile (qtE, kbE) of head hE, batch bE may have a pair that takes
  // part (undefined: every tile may): the forward's test.
  auto mayTake = [&](Expr qtE, Expr kbE, Expr hE, Expr bE) -> Expr {
    return skip ? tr.maskMayHoldOnTile(qtE, kbE, bE, hE) : Expr();
  };

  // The per-pair stages, all (jj, ii, qt, kb, h, b). `extra` lists the
  // leaves whose ds·∂s/∂x the pair Tuple carries after its first four
  // entries (a load's indices after its value); scoreOnly: the masked score
  // alone (for NAME_lse).
  auto makePairs = [&](const std::string &pre, const std::vector<const Leaf *> &extra,
                       bool scoreOnly, std::vector<int> *slots) {
    BackwardAlgorithm::PairStages st;
    Expr iE = qt * TQ + ii, jE = kb * TK + jj;
    Expr iC = min(iE, Lq - 1), jC = min(jE, Lk - 1);
    // One product over the tile, Σ_d rows[i, d] · keys[j, d] (q·k, dout·v):
    // both sides as transposed tile stages, (ii, d, qt, h, b) and (jj, d,
    // kb, hk, b), so that a schedule keeps whichever side it vectorizes
    // over contiguous.
    auto product = [&](const char *rowsName, ImageParam &rows, Func &rowsT, const char *keysName,
                       ImageParam &keys, Func &keysT, const char *name, Func &out, RVar &r) {
      rowsT = Func(pre + rowsName);
      rowsT(ii, c, qt, h, b) = cast(ct, rows(c, min(qt * TQ + ii, Lq - 1), h, b));
      keysT = Func(pre + keysName);
      keysT(jj, c, kb, hkv, b) = cast(ct, keys(c, min(kb * TK + jj, Lk - 1), hkv, b));
      RDom rd(0, rows.dim(0).extent(), pre + "r" + name);
      r = RVar(rd.x);
      out = Func(pre + name);
      out(jj, ii, qt, kb, h, b) = zero;
      out(jj, ii, qt, kb, h, b) += rowsT(ii, rd, qt, h, b) * keysT(jj, rd, kb, h / G, b);
    };
    product("qT", q, st.qT, "kT", k, st.kT, "dot", st.dot, st.rd);
    PointEnv env;
    env.b = b;
    env.h = h;
    env.i = iE;
    env.j = jE;
    Func dot = st.dot;
    env.dot = [=] { return dot(jj, ii, qt, kb, h, b); };
    env.sqnormQ = [=] { return qnorm(iC, h, b); };
    env.sqnormK = [=] { return knorm(jC, h / G, b); };
    Expr valid = iE < Lq && jE < Lk;
    if (skip) {
      st.mask = Func(pre + "mask");
      st.mask(jj, ii, qt, kb, h, b) = cast(UInt(8), tr.evalPoint(kernel.getMask(), env));
      valid = valid && st.mask(jj, ii, qt, kb, h, b) != 0;
    }
    std::vector<Expr> y = tr.evalPointAll(kernel.getGrad(), env);
    Expr sv = select(valid, y[0], negInf);
    st.pair = Func(pre + "pair");
    if (scoreOnly) {
      st.pair(jj, ii, qt, kb, h, b) = sv;
      return st;
    }
    product("doutT", bw.dout, st.doutT, "vT", v, st.vT, "dpv", st.dpv, st.rdv);
    Expr dP = st.dpv(jj, ii, qt, kb, h, b);
    Expr take = live(sv), s = y[0], p, ds;
    Expr one = make_const(ct, 1.0);
    if (norm == "softmax") {
      p = select(take, exp(sv - cast(ct, bw.lse(iC, h, b))), zero);
      ds = p * (dP - bw.delta(iC, h, b));
    } else if (norm == "sigmoid") {
      Expr w = one / (one + exp(-s));
      p = select(take, w, zero);
      ds = dP * w * (one - w);
    } else if (norm == "relu") {
      p = select(take, max(s, zero), zero);
      ds = select(s > zero, dP, zero);
    } else if (norm == "topk") {
      // The softmax over the keys the forward kept: those ranking at least
      // as high as the K-th (score, j) pair (a later key wins a tie), all
      // of them when the row has fewer than K.
      Tuple kth(bw.topkState(bw.topk - 1, ii, qt, h, b));
      Expr kept = !live(kth[0]) || sv > kth[0] || (sv == kth[0] && jE >= kth[1]);
      p = select(take && kept, exp(sv - cast(ct, bw.lse(iC, h, b))), zero);
      ds = p * (dP - bw.delta(iC, h, b));
    } else if (norm == "hardmax") {
      // The value(s) the forward returned get the gradient; the score none
      // (piecewise constant in it): dq, dk, aux and params are 0.
      Tuple st(bw.rowStats(ii, qt, h, b));
      Expr w = bw.ties == "average" ? one / cast(ct, max(st[1], 1))
               : bw.ties == "latest" ? select(jE == st[3], one, zero)
                                     : select(jE == st[2], one, zero);
      p = select(take && sv == st[0], w, zero);
      ds = zero;
    } else {
      p = select(take, s, zero);
      ds = dP;
    }
    auto grad = [&](const Leaf *l) {
      return l ? select(take, ds * y[l->value], zero) : zero;
    };
    std::vector<Expr> values{p, grad(findLeaf("dot", "")), grad(findLeaf("sqnorm", "q")),
                             grad(findLeaf("sqnorm", "k"))};
    for (const Leaf *l : extra) {
      if (slots)
        slots->push_back((int)values.size());
      values.push_back(grad(l));
      for (int n = 0; n < l->rank; ++n)
        values.push_back(cast(Int(32), y[l->value + 1 + n]));
    }
    st.pair(jj, ii, qt, kb, h, b) = Tuple(values);
    return st;
  };

  Expr nQT = (Lq + TQ - 1) / TQ, nKB = (Lk + TK - 1) / TK;
  Expr two = make_const(ct, 2.0);
  // (jj, kb) over the key blocks that may take part for query tile qt.
  auto keysOfTile = [&](const char *nm) {
    RDom r(0, TK, 0, nKB, nm);
    if (Expr m = mayTake(qt, r.y, h, b); m.defined())
      r.where(m);
    return r;
  };

  // Hardmax: per row the maximum score, the number of keys that reach it
  // and the first and last of them (keys in the order of j).
  if (norm == "hardmax") {
    bw.statsPairs = makePairs("stats_", {}, true, nullptr);
    RDom r = keysOfTile("rh");
    bw.statsKeys = RVar(r.x);
    bw.statsBlocks = RVar(r.y);
    bw.rowStats = Func("rowStats");
    Expr none = make_const(Int(32), -1);
    bw.rowStats(ii, qt, h, b) = Tuple(negInf, make_const(Int(32), 0), none, none);
    Expr s = bw.statsPairs.pair(r.x, ii, qt, r.y, h, b), jR = r.y * TK + r.x;
    Tuple o(bw.rowStats(ii, qt, h, b));
    Expr gt = live(s) && s > o[0], eq = live(s) && s == o[0];
    bw.rowStats(ii, qt, h, b) = Tuple(select(gt, s, o[0]), select(gt, 1, eq, o[1] + 1, o[1]),
                                      select(gt, jR, o[2]), select(gt || eq, jR, o[3]));
  }

  // Top-k: per row the K best (score, j) pairs, as the forward keeps them
  // (sorted by score then j, descending; every key inserted from the last
  // slot to the first).
  if (norm == "topk") {
    bw.statsPairs = makePairs("stats_", {}, true, nullptr);
    RDom r(0, bw.topk, 0, TK, 0, nKB, "rt");
    if (Expr m = mayTake(qt, r.z, h, b); m.defined())
      r.where(m);
    bw.topkSlots = RVar(r.x);
    bw.statsKeys = RVar(r.y);
    bw.statsBlocks = RVar(r.z);
    Var slot("slot");
    bw.topkState = Func("topkState");
    bw.topkState(slot, ii, qt, h, b) = Tuple(negInf, make_const(Int(32), -1));
    Expr x = bw.statsPairs.pair(r.y, ii, qt, r.z, h, b), jx = r.z * TK + r.y;
    Expr sl = bw.topk - 1 - r.x;
    Tuple old(bw.topkState(sl, ii, qt, h, b));
    Tuple prev(bw.topkState(max(sl - 1, 0), ii, qt, h, b));
    Expr insert = live(x) && x >= old[0];
    Expr shift = sl > 0 && x >= prev[0];
    bw.topkState(sl, ii, qt, h, b) = Tuple(select(insert, select(shift, prev[0], x), old[0]),
                                           select(insert, select(shift, prev[1], jx), old[1]));
  }

  // dk, dv: per key block, over the query heads of its group and the query
  // tiles that may take part; per such tile, dkvTile sums its rows (a
  // matrix product the schedule blocks in registers). c runs over
  // max(D, Dv) with clamped reads.
  {
    bw.dkvPairs = makePairs("dkv_", {}, false, nullptr);
    RDom ri(0, TQ, "ri");
    bw.dkvRows = RVar(ri.x);
    Expr iR = min(qt * TQ + ri.x, Lq - 1), jC = min(kb * TK + jj, Lk - 1);
    Expr cD = min(c, D - 1), cV = min(c, Dv - 1);
    Tuple pr(bw.dkvPairs.pair(jj, ri.x, qt, kb, h, b));
    Expr dk = pr[1] * cast(ct, q(cD, iR, h, b));
    if (usesKn)
      dk = dk + pr[3] * two * cast(ct, k(cD, jC, h / G, b));
    Expr dvTerm = pr[0] * cast(ct, bw.dout(cV, iR, h, b));
    bw.dkvTile = Func("dkvTile");
    bw.dkvTile(c, jj, qt, kb, h, b) = Tuple(zero, zero);
    bw.dkvTile(c, jj, qt, kb, h, b) = Tuple(bw.dkvTile(c, jj, qt, kb, h, b)[0] + dk,
                                            bw.dkvTile(c, jj, qt, kb, h, b)[1] + dvTerm);
    RDom r(0, G, 0, nQT, "rq");
    Expr hq = hkv * G + r.x;
    if (Expr m = mayTake(r.y, kb, hq, b); m.defined())
      r.where(m);
    bw.dkvHeads = RVar(r.x);
    bw.dkvTiles = RVar(r.y);
    bw.dkv = Func("dkv");
    bw.dkv(c, jj, kb, hkv, b) = Tuple(zero, zero);
    Tuple t(bw.dkvTile(c, jj, r.y, kb, hq, b));
    bw.dkv(c, jj, kb, hkv, b) = Tuple(bw.dkv(c, jj, kb, hkv, b)[0] + t[0],
                                      bw.dkv(c, jj, kb, hkv, b)[1] + t[1]);
  }
  // dq: per query tile, over the key blocks that may take part; per block,
  // dqTile sums its keys (hardmax: dq = 0, no loop).
  if (norm == "hardmax") {
    bw.dq = Func("dqAcc");
    bw.dq(c, ii, qt, h, b) = zero;
  } else {
    bw.dqPairs = makePairs("dq_", {}, false, nullptr);
    RDom rj(0, TK, "rj");
    bw.dqKeys = RVar(rj.x);
    Tuple pr(bw.dqPairs.pair(rj.x, ii, qt, kb, h, b));
    Expr jR = min(kb * TK + rj.x, Lk - 1), cD = min(c, D - 1); // c may overhang D by a vector
    Expr term = pr[1] * cast(ct, k(cD, jR, h / G, b));
    if (usesQn)
      term = term + pr[2] * two * cast(ct, q(cD, min(qt * TQ + ii, Lq - 1), h, b));
    bw.dqTile = Func("dqTile");
    bw.dqTile(c, ii, qt, kb, h, b) = zero;
    bw.dqTile(c, ii, qt, kb, h, b) += term;
    RDom r(0, nKB, "rk");
    if (Expr m = mayTake(qt, r.x, h, b); m.defined())
      r.where(m);
    bw.dqBlocks = RVar(r.x);
    bw.dq = Func("dqAcc");
    bw.dq(c, ii, qt, h, b) = zero;
    bw.dq(c, ii, qt, h, b) += bw.dqTile(c, ii, qt, r.x, h, b);
  }
  Func dqOut("dq"), dkOut("dk"), dvOut("dv");
  dqOut(c, i, h, b) = cast(q.type(), bw.dq(c, i % TQ, i / TQ, h, b));
  dkOut(c, j, hkv, b) = cast(k.type(), bw.dkv(c, j % TK, j / TK, hkv, b)[0]);
  dvOut(c, j, hkv, b) = cast(v.type(), bw.dkv(c, j % TK, j / TK, hkv, b)[1]);
  bw.outputs = {dqOut, dkOut, dvOut};
  bw.gradNames = {"q", "k", "v"};

  // Hardmax's ds is 0: its aux tensors and params get 0 with no loop over
  // the pairs.
  const bool scoreHasGradient = norm != "hardmax";
  // Every pair, for the gradients of float aux tensors and params: an RDom
  // over (ii, jj, kb, qt, h, b), tiles that may take part only.
  auto everyPair = [&](const std::string &nm) {
    RDom r({{0, TQ}, {0, TK}, {0, nKB}, {0, nQT}, {0, H}, {0, B}}, nm);
    if (Expr m = mayTake(r[3], r[2], r[4], r[5]); m.defined())
      r.where(m);
    return r;
  };
  // Float aux tensors the score reads: each load's derivative, scattered.
  for (unsigned t = 3; t < kernel.getTensors().size(); ++t) {
    auto dict = llvm::cast<mlir::DictionaryAttr>(kernel.getTensors()[t]);
    std::string tname = dict.getAs<mlir::StringAttr>("name").str();
    std::vector<const Leaf *> loads;
    for (const Leaf &l : leaves)
      if (l.kind == "load" && l.name == tname)
        loads.push_back(&l);
    if (loads.empty())
      continue;
    BackwardAlgorithm::AuxGrad ag;
    ag.tensor = tname;
    ImageParam &in = tr.tensor(tname);
    int n = in.dimensions();
    std::vector<Var> vars;
    for (int d = 0; d < n; ++d)
      vars.push_back(Var("x" + std::to_string(d)));
    ag.grad = Func("grad_" + paramName(tname));
    ag.grad(vars) = zero;
    if (scoreHasGradient) {
      std::vector<int> slots;
      ag.pairs = makePairs("d" + paramName(tname) + "_", loads, false, &slots);
      RDom r = everyPair("r" + paramName(tname));
      ag.blocks = RVar(r[2]);
      Tuple pr(ag.pairs.pair(r[1], r[0], r[3], r[2], r[4], r[5]));
      for (size_t m = 0; m < loads.size(); ++m) {
        std::vector<Expr> at(n);
        for (int d = 0; d < n; ++d) // declared index d is Halide dimension n-1-d
          at[n - 1 - d] = clamp(pr[slots[m] + 1 + d], 0, in.dim(n - 1 - d).extent() - 1);
        ag.grad(at) += pr[slots[m]];
      }
      bw.auxGrads.push_back(ag);
    }
    Func gout("d" + paramName(tname));
    gout(vars) = cast(in.type(), ag.grad(vars));
    bw.outputs.push_back(gout);
    bw.gradNames.push_back(tname);
  }
  // Float params: their gradients summed over every pair, 0-d outputs.
  std::vector<const Leaf *> paramLeaves;
  for (mlir::Attribute a : kernel.getParams()) {
    auto dict = llvm::cast<mlir::DictionaryAttr>(a);
    std::string pname = dict.getAs<mlir::StringAttr>("name").str();
    if (const Leaf *l = findLeaf("param", pname))
      paramLeaves.push_back(l);
  }
  if (!paramLeaves.empty()) {
    bw.dparams = Func("dparams");
    std::vector<Expr> init(paramLeaves.size() + 1, zero), upd;
    bw.dparams() = Tuple(init); // one spare element: a Tuple of one is no Tuple
    if (scoreHasGradient) {
      std::vector<int> slots;
      bw.paramPairs = makePairs("dparam_", paramLeaves, false, &slots);
      RDom r = everyPair("rparam");
      bw.extraBlocks = RVar(r[2]);
      Tuple pr(bw.paramPairs.pair(r[1], r[0], r[3], r[2], r[4], r[5]));
      for (size_t m = 0; m < paramLeaves.size(); ++m)
        upd.push_back(bw.dparams()[m] + pr[slots[m]]);
      upd.push_back(bw.dparams()[paramLeaves.size()]);
      bw.dparams() = Tuple(upd);
    }
    for (size_t m = 0; m < paramLeaves.size(); ++m) {
      const std::string &pname = paramLeaves[m]->name;
      Type pt;
      for (const Param<> &p : fwd.params)
        if (p.name() == pname)
          pt = p.type();
      Func g("d_" + pname);
      g() = cast(pt, bw.dparams()[m]);
      bw.outputs.push_back(g);
      bw.gradNames.push_back(pname);
    }
  }

  // NAME_lse for top-k kernels without `output lse`: the log-sum-exp of
  // the K kept scores.
  if (norm == "topk" && !kernel.getOutputLse()) {
    RDom rs(0, bw.topk, "rts");
    Func best("topkMax");
    best(ii, qt, h, b) = bw.topkState(0, ii, qt, h, b)[0];
    Expr m = best(i % TQ, i / TQ, h, b);
    Expr s = bw.topkState(rs.x, i % TQ, i / TQ, h, b)[0];
    Expr l = sum(select(live(s), exp(s - m), zero));
    bw.lseRows(i, h, b) = cast(Float(32), select(live(m), m + log(l), negInf));
    bw.extra.push_back(best);
  }
  // NAME_lse for softmax kernels without `output lse`: log Σ exp(s) per row.
  if (norm == "softmax" && !kernel.getOutputLse()) {
    // Per key block: its maximum and Σ exp(s - max) per row (one exp per
    // pair, vectorized over keys), then an online merge over the blocks
    // (one exp per row and block), as the forward's softmax.
    bw.statsPairs = makePairs("lse_", {}, true, nullptr);
    Func &s = bw.statsPairs.pair;
    RDom rj(0, TK, "rlj");
    bw.statsKeys = RVar(rj.x);
    bw.lseBlockMax = Func("lseBlockMax");
    bw.lseBlockMax(ii, qt, kb, h, b) = negInf;
    bw.lseBlockMax(ii, qt, kb, h, b) = max(bw.lseBlockMax(ii, qt, kb, h, b), s(rj.x, ii, qt, kb, h, b));
    bw.lseWeight = Func("lseWeight");
    Expr sp = s(jj, ii, qt, kb, h, b), bm = bw.lseBlockMax(ii, qt, kb, h, b);
    bw.lseWeight(jj, ii, qt, kb, h, b) = select(live(sp), exp(sp - bm), zero);
    bw.lseBlockSum = Func("lseBlockSum");
    bw.lseBlockSum(ii, qt, kb, h, b) = zero;
    bw.lseBlockSum(ii, qt, kb, h, b) += bw.lseWeight(rj.x, ii, qt, kb, h, b);
    RDom r(0, nKB, "rl");
    if (Expr m = mayTake(qt, r.x, h, b); m.defined())
      r.where(m);
    bw.statsBlocks = RVar(r.x);
    bw.rowStats = Func("rowStats");
    bw.rowStats(ii, qt, h, b) = Tuple(negInf, zero);
    Expr m0 = bw.rowStats(ii, qt, h, b)[0], l0 = bw.rowStats(ii, qt, h, b)[1];
    Expr bmax = bw.lseBlockMax(ii, qt, r.x, h, b), bsum = bw.lseBlockSum(ii, qt, r.x, h, b);
    Expr m1 = max(m0, bmax);
    Expr l1 = select(live(bmax),
                     select(live(m0), l0 * exp(m0 - m1), zero) + bsum * exp(bmax - m1), l0);
    bw.rowStats(ii, qt, h, b) = Tuple(m1, l1);
    Tuple st(bw.rowStats(i % TQ, i / TQ, h, b));
    bw.lseRows(i, h, b) = cast(Float(32), select(st[1] > zero, st[0] + log(st[1]), negInf));
  }

  for (const Func &f : fwd.tileSummaries)
    bw.extra.push_back(f);
  bw.tensors = fwd.tensors;
  bw.params = fwd.params;
  return bw;
}

} // namespace attn
