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

    Also sets `decode`, how runtime/Decoder decodes the kernel one position
    at a time: `hull` for hard-max kernels with 2-D heads, a score of
    `dot(q, k)` times a positive constant and no mask or a causal one (the
    maximizer is a vertex of the keys' convex hull: O(log n) per step);
    `scan` for other kernels with a score of `dot(q, k)` times a constant,
    no mask or a causal one and no aux tensors (O(n) per step); `none`
    otherwise. `decode_scale` holds the constant.
  }];
  let constructor = "::attn::createSelectStrategyPass()";
}

#endif // ATTN_PASSES_TD
