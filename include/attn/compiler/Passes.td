// Passes over the `attn` dialect.
#ifndef ATTN_PASSES_TD
#define ATTN_PASSES_TD

include "mlir/Pass/PassBase.td"

def SelectStrategy : Pass<"attn-select-strategy", "::attn::KernelOp"> {
  let summary = "choose the algorithm a kernel is lowered with";
  let description = [{
    Sets the `strategy` attribute of each `attn.kernel`:
    `dense` when the mask is the constant true (no per-pair mask, no tile
    skipping), `masked` otherwise (tiles of the (i, j) plane that the mask
    provably empties are skipped at run time and partial tiles evaluate the
    mask per pair). The lowering to Halide follows the attribute.
  }];
  let constructor = "::attn::createSelectStrategyPass()";
}

#endif // ATTN_PASSES_TD
