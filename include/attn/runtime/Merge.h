// Merging attention states: two softmax results (out, lse) of the same query
// rows over disjoint sets of keys combined into the result over their union,
// as cascade attention does with a shared prefix and per-request suffixes
// computed apart (docs/cascade.md). Host code only; no compiler.
#pragma once

#include "attn/runtime/Tensor.h"

namespace attn::runtime {

/// Checks the element types of two states: out_a and out_b one of f32, f64,
/// f16, bf16 and the same; lse_a and lse_b f32 or f64 and the same. The
/// message names the tensor. (mergeAttentionStates checks this first; it is
/// separate so that callers can report a dtype error as one.)
Status checkMergeTypes(const TensorRef &outA, const TensorRef &lseA,
                       const TensorRef &outB, const TensorRef &lseB);

/// Merges state A (outA [B, H, L, Dv], lseA [B, H, L]) with state B of the
/// same shapes into the state over both key sets: per row, in double,
///   m = max(lseA, lseB), wA = exp(lseA - m), wB = exp(lseB - m),
///   out = (wA·outA + wB·outB) / (wA + wB),  lse = m + log(wA + wB),
/// rounded once to the output types: out has outA's type, lse lseA's (f32
/// or f64). Special rows:
///   - a state of weight 0 (lse = -inf: no key; or an lse so far below the
///     other's that its weight underflows) is not read: with one such state
///     the other is copied exactly; both -inf give out = 0, lse = -inf;
///   - a state with lse = +inf (an infinite score) takes all the weight;
///     both +inf give out = NaN (how the weight splits between the two
///     depends on counts the states do not hold), lse = +inf;
///   - a NaN lse on either side gives out = NaN, lse = NaN.
/// Inputs may be any strided views (TensorRef(hostTensor) for a dense one)
/// and may alias `out` and `lse`. Every mismatch (rank, dtype, a dimension
/// of out_b, or of lse_a / lse_b against out_a's [B, H, L]) is an error
/// naming the tensor and the dimension; on any error `out` and `lse` are
/// left as they were.
Status mergeAttentionStates(const TensorRef &outA, const TensorRef &lseA,
                            const TensorRef &outB, const TensorRef &lseB,
                            HostTensor &out, HostTensor &lse);

} // namespace attn::runtime
