// The float64 reference implementation of attention: the oracle the
// conformance tests and the demo compare compiled kernels against. It
// interprets a checked kernel's AST directly (LANGUAGE.md §2-§5), independent
// of MLIR and Halide.
#pragma once

#include "attn/dsl/AST.h"
#include "attn/runtime/Bind.h"
#include "attn/runtime/Tensor.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

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

/// The most elements referenceWeights and referenceWeightsOfHead produce:
/// 2^26 (512 MiB of f64). Weights are for looking at small problems.
constexpr int64_t kMaxReferenceWeights = int64_t(1) << 26;

/// The normalized attention weights (F64 [B, H, Lq, Lk]) of the reference
/// above: out[b, h, i, :] = Σ_j weights[b, h, i, j] · v[b, h / (H / Hk), j, :]
/// for every normalization. softmax and topk rows sum to 1 (topk: over its
/// K keys; infinite scores share the weight equally); hardmax gives 1 to the
/// key its tie rule picks, or 1/n to each of n tied keys with `average`;
/// sigmoid, relu and none give each key its own value. Masked pairs, pairs
/// with score -inf and fully masked rows are 0; a row with a NaN score is NaN
/// on its participating keys. With `participates`, also returns one byte per
/// pair (same order): 1 where the mask admits the pair and its score is not
/// -inf. An error when B·H·Lq·Lk exceeds kMaxReferenceWeights.
Status referenceWeights(const dsl::Kernel &k,
                        const std::map<std::string, HostTensor> &inputs,
                        const Bindings &bind, HostTensor &weights,
                        std::vector<uint8_t> *participates = nullptr);

/// The same for the one (b, h) plane: F64 [Lq, Lk] (and Lq·Lk bytes in
/// `participates`), evaluating only that plane. An error when b or h is out
/// of range or Lq·Lk exceeds kMaxReferenceWeights.
Status referenceWeightsOfHead(const dsl::Kernel &k,
                              const std::map<std::string, HostTensor> &inputs,
                              const Bindings &bind, int64_t b, int64_t h,
                              HostTensor &weights,
                              std::vector<uint8_t> *participates = nullptr);

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

} // namespace attn::runtime
