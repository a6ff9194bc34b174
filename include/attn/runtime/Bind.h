// Argument checking for one kernel (LANGUAGE.md §2, §7): binds the size names
// of the declarations to the shapes of the given tensors and the params to
// typed values, with an error naming the tensor and dimension for every
// mismatch. Runs before any kernel (compiled or reference) sees the inputs.
#pragma once

#include "attn/dsl/AST.h"
#include "attn/runtime/Tensor.h"

#include <map>
#include <string>
#include <vector>

namespace attn::runtime {

struct Bindings {
  /// Every size name of the kernel's declarations -> its value.
  std::map<std::string, int64_t> sizes;
  /// Every param of the kernel -> its value (given or default). The literal's
  /// kind follows the declared type: Int for i32/i64, Bool for bool, Float
  /// for float types (already rounded to the declared precision).
  std::map<std::string, dsl::Literal> params;
  /// Shapes of q [B, H, Lq, D], k [B, Hk, Lk, D] and v [B, Hk, Lk, Dv].
  /// With `source` blocks (LANGUAGE.md §8.5) Lk counts the keys of all
  /// sources and sourceLk holds each one's, in file order.
  int64_t B = 0, H = 0, Hk = 0, Lq = 0, Lk = 0, D = 0, Dv = 0;
  std::vector<int64_t> sourceLk;
  /// Key blocks of `tileK` keys: each source's blocks, one after the other.
  int64_t keyBlocks(int64_t tileK) const {
    if (sourceLk.empty())
      return (Lk + tileK - 1) / tileK;
    int64_t n = 0;
    for (int64_t lk : sourceLk)
      n += (lk + tileK - 1) / tileK;
    return n;
  }
};

/// Checks `inputs` (tensor name -> tensor; q, k, v and every aux tensor) and
/// the `--param NAME=VALUE` texts against the declarations of `k` and fills
/// `out`. On failure the message lists every problem found, one per line.
Status bindArguments(const dsl::Kernel &k,
                     const std::map<std::string, HostTensor> &inputs,
                     const std::map<std::string, std::string> &paramText,
                     Bindings &out);

/// As above with params already typed (a Float param also accepts an Int
/// literal; a Bool param also accepts Int 0 or 1).
Status bindArguments(const dsl::Kernel &k,
                     const std::map<std::string, HostTensor> &inputs,
                     const std::map<std::string, dsl::Literal> &params,
                     Bindings &out);

/// The same checks on tensors someone else owns (only type and shape are
/// read).
Status bindArguments(const dsl::Kernel &k,
                     const std::map<std::string, TensorRef> &inputs,
                     const std::map<std::string, std::string> &paramText,
                     Bindings &out);
Status bindArguments(const dsl::Kernel &k,
                     const std::map<std::string, TensorRef> &inputs,
                     const std::map<std::string, dsl::Literal> &params,
                     Bindings &out);

/// Parses the text of a param value as the param's declared type: integers
/// in decimal with their range checked, bools as true/false/1/0, floats as
/// C's strtod accepts them.
Status parseParamValue(const dsl::ParamDecl &param, const std::string &text,
                       dsl::Literal &out);

/// Params that have no default and are not in `given`, in declaration order.
std::vector<std::string>
missingParams(const dsl::Kernel &k, const std::vector<std::string> &given);

/// Evaluates a range (Kernel::extents, an integer expression of sizes,
/// params and literals) with the sizes and params of `b`. Returns an empty
/// string, or why it cannot be computed (an unbound size, division by zero,
/// overflow).
std::string evalExtent(const dsl::Expr &e, const Bindings &b, int64_t &out);

/// A declaration as written: "doc: i32[B, L]".
std::string describeDecl(const dsl::TensorDecl &t);

} // namespace attn::runtime
