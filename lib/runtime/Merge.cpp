// Merging two attention states (out, lse) of the same rows exactly: the
// argument checks and the per-row combination of Merge.h.
#include "attn/runtime/Merge.h"

#include <cmath>
#include <limits>
#include <new>
#include <stdexcept>

namespace attn::runtime {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const char *const kOutDims[] = {"B", "H", "L", "Dv"};

bool isFloatOut(ElemType t) {
  return t == ElemType::F32 || t == ElemType::F64 || t == ElemType::F16 ||
         t == ElemType::BF16;
}

std::string quoted(const char *name) { return std::string("'") + name + "'"; }

Status checkRank(const char *name, const TensorRef &t, int rank,
                 const char *form) {
  if (t.rank() != rank)
    return Status::error("tensor " + quoted(name) + " has rank " +
                         std::to_string(t.rank()) + " (" + t.describe() +
                         ") but a state's " + form + " (rank " +
                         std::to_string(rank) + ")");
  if (t.strides.size() != t.shape.size())
    return Status::error("tensor " + quoted(name) + " (" + t.describe() +
                         ") has " + std::to_string(t.strides.size()) +
                         " strides for its " + std::to_string(t.rank()) +
                         " dimensions");
  for (int d = 0; d < rank; ++d)
    if (t.shape[d] < 0)
      return Status::error("tensor " + quoted(name) + " (" + t.describe() +
                           "): dimension " + std::to_string(d) + " (" +
                           kOutDims[d] + ") is negative");
  return Status::ok();
}

/// `t`'s first `dims` dimensions against out_a's.
Status checkDims(const char *name, const TensorRef &t, const TensorRef &outA,
                 int dims, const char *why) {
  for (int d = 0; d < dims; ++d)
    if (t.shape[d] != outA.shape[d])
      return Status::error("tensor " + quoted(name) + " (" + t.describe() +
                           "): dimension " + std::to_string(d) + " (" +
                           kOutDims[d] + ") is " + std::to_string(t.shape[d]) +
                           " but out_a's (" + outA.describe() + ") is " +
                           std::to_string(outA.shape[d]) + "; " + why);
  return Status::ok();
}

/// Element `offset` (in elements from element [0, ..., 0]) of a view,
/// as a double.
double load(const TensorRef &t, int64_t offset) {
  const auto *p = static_cast<const uint8_t *>(t.data);
  switch (t.type) {
  case ElemType::F32:
    return reinterpret_cast<const float *>(p)[offset];
  case ElemType::F64:
    return reinterpret_cast<const double *>(p)[offset];
  case ElemType::F16:
    return f16ToFloat(reinterpret_cast<const uint16_t *>(p)[offset]);
  case ElemType::BF16:
    return bf16ToFloat(reinterpret_cast<const uint16_t *>(p)[offset]);
  default:
    return kNaN; // excluded by checkMergeTypes
  }
}

/// The weights (wA, wB) of one row and its lse. Returns false for a row
/// whose out is NaN whatever the states hold.
bool rowWeights(double lseA, double lseB, double &wA, double &wB,
                double &lse) {
  if (std::isnan(lseA) || std::isnan(lseB)) {
    lse = kNaN;
    return false;
  }
  const double m = std::max(lseA, lseB);
  if (m == -kInf) {
    wA = wB = 0;
    lse = -kInf;
    return true;
  }
  if (m == kInf) {
    lse = kInf;
    if (lseA == kInf && lseB == kInf)
      return false;
    wA = lseA == kInf ? 1 : 0;
    wB = lseB == kInf ? 1 : 0;
    return true;
  }
  wA = std::exp(lseA - m);
  wB = std::exp(lseB - m);
  lse = m + std::log(wA + wB);
  return true;
}

} // namespace

Status checkMergeTypes(const TensorRef &outA, const TensorRef &lseA,
                       const TensorRef &outB, const TensorRef &lseB) {
  if (!isFloatOut(outA.type))
    return Status::error("tensor 'out_a' has dtype " +
                         std::string(dsl::toString(outA.type)) +
                         "; a state's out is f32, f64, f16 or bf16");
  if (outB.type != outA.type)
    return Status::error("tensor 'out_b' has dtype " +
                         std::string(dsl::toString(outB.type)) +
                         " but out_a has " + dsl::toString(outA.type) +
                         ": the two states' outs must have one dtype");
  if (lseA.type != ElemType::F32 && lseA.type != ElemType::F64)
    return Status::error("tensor 'lse_a' has dtype " +
                         std::string(dsl::toString(lseA.type)) +
                         "; a state's lse is f32 or f64");
  if (lseB.type != lseA.type)
    return Status::error("tensor 'lse_b' has dtype " +
                         std::string(dsl::toString(lseB.type)) +
                         " but lse_a has " + dsl::toString(lseA.type) +
                         ": the two states' lses must have one dtype");
  return Status::ok();
}

Status mergeAttentionStates(const TensorRef &outA, const TensorRef &lseA,
                            const TensorRef &outB, const TensorRef &lseB,
                            HostTensor &out, HostTensor &lse) {
  const char *outForm = "out is [B, H, L, Dv]";
  const char *lseForm = "lse is [B, H, L]";
  if (Status s = checkRank("out_a", outA, 4, outForm); !s)
    return s;
  if (Status s = checkRank("lse_a", lseA, 3, lseForm); !s)
    return s;
  if (Status s = checkRank("out_b", outB, 4, outForm); !s)
    return s;
  if (Status s = checkRank("lse_b", lseB, 3, lseForm); !s)
    return s;
  if (Status s = checkMergeTypes(outA, lseA, outB, lseB); !s)
    return s;
  if (Status s = checkDims("out_b", outB, outA, 4,
                           "both states must hold the same rows and Dv");
      !s)
    return s;
  if (Status s = checkDims("lse_a", lseA, outA, 3,
                           "lse_a must be [B, H, L] of out_a");
      !s)
    return s;
  if (Status s = checkDims("lse_b", lseB, outA, 3,
                           "lse_b must be [B, H, L] of out_a");
      !s)
    return s;

  const int64_t B = outA.shape[0], H = outA.shape[1], L = outA.shape[2],
                Dv = outA.shape[3];
  int64_t rows = 0, numel = 0;
  if (__builtin_mul_overflow(B, H, &rows) ||
      __builtin_mul_overflow(rows, L, &rows) ||
      __builtin_mul_overflow(rows, Dv, &numel) ||
      numel > std::numeric_limits<int64_t>::max() / 8)
    return Status::error("the merged out " + outA.describe() +
                         " has more elements than memory can hold");
  if (rows > 0) {
    const char *names[] = {"out_a", "lse_a", "out_b", "lse_b"};
    const TensorRef *refs[] = {&outA, &lseA, &outB, &lseB};
    for (int n = 0; n < 4; ++n)
      if (!refs[n]->data && (n % 2 || Dv > 0))
        return Status::error("tensor " + quoted(names[n]) + " (" +
                             refs[n]->describe() + ") has no data");
  }

  HostTensor o, l;
  try {
    o = HostTensor(outA.type, outA.shape);
    l = HostTensor(lseA.type, {B, H, L});
  } catch (const std::bad_alloc &) {
    return Status::error("out of memory allocating the merged out " +
                         outA.describe());
  } catch (const std::length_error &) {
    return Status::error("out of memory allocating the merged out " +
                         outA.describe());
  }

  int64_t row = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i, ++row) {
        const double la = load(lseA, b * lseA.strides[0] +
                                         h * lseA.strides[1] +
                                         i * lseA.strides[2]);
        const double lb = load(lseB, b * lseB.strides[0] +
                                         h * lseB.strides[1] +
                                         i * lseB.strides[2]);
        double wA = 0, wB = 0, rowLse = 0;
        const bool defined = rowWeights(la, lb, wA, wB, rowLse);
        l.setDouble(row, rowLse);
        const int64_t a0 = b * outA.strides[0] + h * outA.strides[1] +
                           i * outA.strides[2];
        const int64_t b0 = b * outB.strides[0] + h * outB.strides[1] +
                           i * outB.strides[2];
        const double sum = wA + wB;
        for (int64_t d = 0; d < Dv; ++d) {
          double value;
          if (!defined)
            value = kNaN;
          else if (sum == 0)
            value = 0;
          else {
            // A state of weight 0 is not read: whatever out holds under
            // lse = -inf never reaches the result.
            double acc = 0;
            if (wA != 0)
              acc += wA * load(outA, a0 + d * outA.strides[3]);
            if (wB != 0)
              acc += wB * load(outB, b0 + d * outB.strides[3]);
            value = acc / sum;
          }
          o.setDouble(row * Dv + d, value);
        }
      }
  out = std::move(o);
  lse = std::move(l);
  return Status::ok();
}

} // namespace attn::runtime
