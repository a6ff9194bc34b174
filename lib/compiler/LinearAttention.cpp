// Linear attention in O(L) (see LinearAttention.h).
#include "attn/compiler/LinearAttention.h"

using namespace Halide;

namespace attn {

LinearAttention buildLinearAttention(Func fq, Func fk, Func vv, Expr N, Expr Lq, Expr Lk,
                                     Expr group, Expr Hk, bool causal, bool normalized, Type ct,
                                     Func decay) {
  LinearAttention la;
  la.causal = causal;
  la.normalized = normalized;
  Var &n = la.n, &dv = la.dv, &i = la.i, &c = la.c, &hk = la.hk, &h = la.h, &b = la.b, &r = la.r;
  Expr zero = Internal::make_const(ct, 0.0);
  Expr hkOf = min(h / group, Hk - 1);
  RDom rn(0, N, "rn");
  if (!causal) {
    // Two passes: the state over all keys, then one product per query.
    RDom rj(0, Lk, "rj");
    la.rj = RVar(rj.x);
    la.state = Func("linState");
    la.state(n, dv, hk, b) = zero;
    la.state(n, dv, hk, b) += fk(n, rj, hk, b) * vv(dv, rj, hk, b);
    la.norm = Func("linNorm");
    la.norm(n, hk, b) = zero;
    la.norm(n, hk, b) += fk(n, rj, hk, b);
    la.numerator = Func("linNumerator");
    la.numerator(dv, i, h, b) = sum(rn, fq(rn, i, h, b) * la.state(rn, dv, hkOf, b));
    la.denominator = Func("linDenominator");
    la.denominator(i, h, b) = sum(rn, fq(rn, i, h, b) * la.norm(rn, hkOf, b));
  } else {
    // A chunked scan: the state of the chunks before query i's, plus the
    // keys j <= i of its own chunk, quadratic within the chunk only. With a
    // decay g, chunk c's state holds Σ_{j < cC} g^(cC - 1 - j) φ(k_j) v_jᵀ
    // (so state(c + 1) = g^C state(c) + chunk c decayed to its last key),
    // query i takes it times g^(i + 1 - cC), and its own chunk's keys times
    // g^(i - j). The states are then per query head (g is).
    const int C = la.chunk;
    Expr nC = (Lk + C - 1) / C;
    RDom rr(0, C, "rr");
    la.rr = RVar(rr.x);
    Expr jr = c * C + rr;
    Expr live = jr < Lk;
    Expr jc = min(jr, Lk - 1);
    bool decays = decay.defined();
    // The head the states are kept for, and the key head it reads.
    Var sh = decays ? h : hk;
    Expr kh = decays ? hkOf : Expr(hk);
    Expr one = Internal::make_const(ct, 1.0);
    if (decays) {
      la.powers = Func("linPowers");
      la.powers(la.e, h) = pow(decay(h), cast(ct, la.e));
    }
    auto pw = [&](Expr exponent) { return decays ? la.powers(exponent, h) : one; };
    Expr toEnd = pw(C - 1 - rr);
    la.chunkState = Func("linChunkState");
    la.chunkState(n, dv, c, sh, b) = zero;
    la.chunkState(n, dv, c, sh, b) +=
        select(live, toEnd * fk(n, jc, kh, b) * vv(dv, jc, kh, b), zero);
    la.chunkNorm = Func("linChunkNorm");
    la.chunkNorm(n, c, sh, b) = zero;
    la.chunkNorm(n, c, sh, b) += select(live, toEnd * fk(n, jc, kh, b), zero);
    // state(c) = Σ_{c' < c} chunkState(c') (decayed), for c in [0, nC].
    RDom rc(1, nC, "rc");
    la.rc = RVar(rc.x);
    Expr perChunk = decays ? la.powers(C, h) : one;
    la.state = Func("linState");
    la.state(n, dv, c, sh, b) = zero;
    la.state(n, dv, rc, sh, b) =
        perChunk * la.state(n, dv, rc - 1, sh, b) + la.chunkState(n, dv, rc - 1, sh, b);
    la.norm = Func("linNorm");
    la.norm(n, c, sh, b) = zero;
    la.norm(n, rc, sh, b) = perChunk * la.norm(n, rc - 1, sh, b) + la.chunkNorm(n, rc - 1, sh, b);
    Expr ci = min(i / C, nC);
    Expr stateHead = decays ? Expr(h) : hkOf;
    Expr j = (i / C) * C + r;
    la.scores = Func("linScores");
    la.scores(r, i, h, b) =
        select(j <= i && j < Lk,
               pw(clamp(i - j, 0, C)) * sum(rn, fq(rn, i, h, b) * fk(rn, min(j, Lk - 1), hkOf, b)),
               zero);
    Expr inter = one;
    if (decays) {
      la.queryDecay = Func("linQueryDecay");
      la.queryDecay(i, h) = pow(decay(h), cast(ct, i + 1 - ci * C));
      inter = la.queryDecay(i, h);
    }
    Expr jj = min((i / C) * C + rr, Lk - 1);
    la.numerator = Func("linNumerator");
    la.numerator(dv, i, h, b) = inter * sum(rn, fq(rn, i, h, b) * la.state(rn, dv, ci, stateHead, b)) +
                                sum(rr, la.scores(rr, i, h, b) * vv(dv, jj, hkOf, b));
    la.denominator = Func("linDenominator");
    la.denominator(i, h, b) = inter * sum(rn, fq(rn, i, h, b) * la.norm(rn, ci, stateHead, b)) +
                              sum(rr, la.scores(rr, i, h, b));
  }
  la.value = Func("linValue");
  if (normalized) {
    Expr d = la.denominator(i, h, b);
    la.value(dv, i, h, b) = select(d != zero, la.numerator(dv, i, h, b) / d, zero);
  } else {
    la.value(dv, i, h, b) = la.numerator(dv, i, h, b);
  }
  (void)Lq;
  return la;
}

} // namespace attn
