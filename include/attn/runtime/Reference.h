// The float64 reference implementation of attention: the oracle the
// conformance tests and the demo compare compiled kernels against. It
// interprets a checked kernel's AST directly (LANGUAGE.md §2-§5), independent
// of MLIR and Halide.
#pragma once

#include "attn/dsl/AST.h"
#include "attn/runtime/Bind.h"
#include "attn/runtime/Tensor.h"

#include <map>
#include <string>

namespace attn::runtime {

/// Computes out (F64 [B, H, Lq, Dv]) and, when `lse` is given, the per-row
/// log-sum-exp (F64 [B, H, Lq]) of kernel `k` (after Sema) on `inputs`
/// (already checked by bindArguments into `bind`).
///
/// Semantics: floats are evaluated in double over the stored input values
/// (f16/bf16 inputs as their already-rounded values), integers in int64 with
/// `/` rounding toward -inf and `%` taking the divisor's sign; an integer
/// division by zero or an out-of-range aux index is an error naming the
/// expression and (b, h, i, j). `&&`, `||` and `select` evaluate only the
/// operand they need, lets are evaluated when first used, and the score is
/// evaluated only for pairs the mask admits. A pair with score -inf counts as
/// masked; a fully masked row gives out = 0 and lse = -inf. Ties in hardmax
/// and topk are exact equality of the double scores. An lse is defined for
/// softmax, hardmax and topk only; asking for it with another normalization
/// is an error.
Status referenceAttention(const dsl::Kernel &k,
                          const std::map<std::string, HostTensor> &inputs,
                          const Bindings &bind, HostTensor &out,
                          HostTensor *lse);

/// Counts exactly the (b, h, i, j) with a true mask (scores are not
/// evaluated, so pairs masked only by a -inf score are counted). Index
/// variables the mask does not depend on are not iterated over, so e.g. a
/// head-independent mask costs B·Lq·Lk evaluations.
Status countParticipatingPairs(const dsl::Kernel &k,
                               const std::map<std::string, HostTensor> &inputs,
                               const Bindings &bind, int64_t &pairs);

/// DESIGN.md's work measure: (2·D + 2·Dv) flops per participating pair
/// (= 4·B·H·Σ_i|S_i|·D when Dv == D). NaN when the mask cannot be evaluated
/// (see countParticipatingPairs for the error).
double attentionFlops(const dsl::Kernel &k, const Bindings &bind,
                      const std::map<std::string, HostTensor> &inputs);

/// The FP32 peak GFLOP/s that "% of peak" figures are reported against:
/// $ATTNC_PEAK_GFLOPS, else DESIGN.md's 466 (two Zen 5 cores). Measure a
/// machine's own with attnc-fp32-peak.
double peakGflops();

} // namespace attn::runtime
