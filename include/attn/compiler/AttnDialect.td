// The `attn` dialect: attention kernels whose score and mask are regions of
// ordinary arith/math ops over the (b, h, i, j) index block arguments.
#ifndef ATTN_DIALECT_TD
#define ATTN_DIALECT_TD

include "mlir/IR/OpBase.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::attn";
  let summary = "Attention variants as declarative kernels";
  let description = [{
    One `attn.kernel` op per `.attn` attention block. Its `score` and `mask`
    regions compute, for one (b, h, i, j), the score of query i against key j
    and whether the pair takes part. Inside the regions, `attn.dot`,
    `attn.sqnorm`, `attn.size`, `attn.param` and `attn.load` read the head
    vectors, sizes, run-time params and auxiliary tensors; everything else is
    `arith` and `math`, so canonicalize, CSE and integer range analysis apply.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::math::MathDialect"];
  // Folds math functions of constants inside kernels (e.g. rsqrt(128)),
  // which MLIR's math dialect leaves to lowering.
  let hasCanonicalizer = 1;
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

#endif // ATTN_DIALECT_TD
