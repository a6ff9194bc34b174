// Linear attention in O(L) (LANGUAGE.md §8.4, attn-select-strategy's
// `linear`): with a score s_ij = φ(q_i) · φ(k_j) and normalize = none or
// linear, out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ [/ φ(q_i) · Σ_j φ(k_j)], the sums
// over all keys (no mask) or over j <= i (causal). Pure Halide: the caller
// gives the feature maps as Funcs; targets/cpu schedules the stages.
#pragma once

#include "Halide.h"

namespace attn {

struct LinearAttention {
  bool causal = false;
  bool normalized = false; // normalize = linear: divide by the normalizer
  int chunk = 64;          // causal: keys per chunk of the scan
  Halide::Var n{"n"}, dv{"dv"}, i{"i"}, j{"j"}, c{"c"}, hk{"hk"}, h{"h"}, b{"b"}, r{"r"};
  /// Non-causal: state(n, dv, hk, b) = Σ_j φ(k_j)[n] v_j[dv] and
  /// norm(n, hk, b) = Σ_j φ(k_j)[n], reductions over `rj`.
  /// Causal: chunkState(n, dv, c, hk, b) and chunkNorm(n, c, hk, b) are the
  /// same sums over chunk c; state(n, dv, c, hk, b) and norm(n, c, hk, b)
  /// the sums over chunks before c (a scan over `rc`); scores(r, i, h, b)
  /// the scores of query i with key r of its own chunk (0 where j > i).
  Halide::Func state, norm, chunkState, chunkNorm, scores;
  /// With a decay: powers(e, h) = g(h)^e, e in [0, chunk], and
  /// queryDecay(i, h) = g(h)^(i + 1 - its chunk's start).
  Halide::Func powers, queryDecay;
  Halide::Var e{"e"};
  Halide::RVar rj, rc, rr;
  /// (dv, i, h, b) in the compute type: Σ s_ij v_j, and (i, h, b): Σ s_ij.
  Halide::Func numerator, denominator;
  /// (dv, i, h, b): numerator, or numerator / denominator (0 where it is 0).
  Halide::Func value;
};

/// fq(n, i, h, b): query features (the score's constant folded in);
/// fk(n, j, hk, b): key features; vv(dv, j, hk, b): values; all in the
/// compute type `ct`, defined for every index in range. N features, Lq
/// queries, Lk keys; query head h reads key head min(h / group, Hk - 1).
/// `decay` (causal only; undefined for none): g(h), each score times
/// g^(i - j) (retention) — the states are then per query head, decayed by
/// g^C per chunk, and `powers(e, h)` = g^e for e in [0, chunk].
LinearAttention buildLinearAttention(Halide::Func fq, Halide::Func fk, Halide::Func vv,
                                     Halide::Expr N, Halide::Expr Lq, Halide::Expr Lk,
                                     Halide::Expr group, Halide::Expr Hk, bool causal,
                                     bool normalized, Halide::Type ct,
                                     Halide::Func decay = Halide::Func());

} // namespace attn
