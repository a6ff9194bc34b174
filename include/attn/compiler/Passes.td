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
    no mask or a causal one and no aux tensors (O(n) per step); `linear`
    for linear kernels (below) of `dot(q, k)` with no aux tensors, or of
    `dot(x, y)` of channel vectors computed from their own row alone
    (`decode_features`), with a decay that is constant or computed from h
    alone (`decode_decay_per_head`) if any (a state of N x Dv + N, O(1) in n
    per step);
    `none` otherwise. `decode_scale` holds the constant, `decode_decay` g.

    `linear` (LANGUAGE.md §8.4) when normalize is linear or none, the mask
    is none or causal (`j <= i`), there is one source without index maps,
    and the score is a product of constants (> 0 together), one `dot(x, y)`
    of a query and a key vector, and at most one decay `pow(g, i - j)`
    (causal masks only) whose g reads nothing but h: the kernel is then
    computed in O(L). `linear_scale`, `linear_causal` and `linear_decay`
    record what the lowering needs; a kernel with normalize linear or none
    that misses gets `linear_why_not`.
  }];
  let constructor = "::attn::createSelectStrategyPass()";
}

def AnalyzeMask : Pass<"attn-analyze-mask", "::attn::KernelOp"> {
  let summary = "classify the mask: what it reads, and which tiles it empties or fills";
  let description = [{
    Records on each `attn.kernel`:
    - `mask_kind`: `"all"` (the constant true), `"affine"` (built only from
      b, h, i, j, sizes, params and integer constants with integer ops whose
      range rules are exact for the language's operators), `"non-affine"`
      (no aux loads, but float arithmetic or other ops the analysis treats
      as unknown), or `"data-dependent"` (reads aux tensors);
    and on each `attn.load` of the mask region `attn.summary`, from the
    backward slice of its indices: `"uniform"` (depends on b and h only),
    `"query-tile"` (on i, not j), `"key-block"` (on j, not i) or `"pair"`
    (on both). A per-tile min/max summary of a `query-tile` or `key-block`
    load can be built in O(tokens) at run time; `pair` loads stay unknown.

    With the `tile` option, also classifies the tiles of the (i, j) plane
    for the given sizes and params (include/attn/compiler/MaskAnalysis.h;
    loads unknown, so data-dependent tiles are conservatively partial) and
    records `tile_counts` = [empty, partial, full] and, for at most 64×64
    tiles, `tile_classes` = "EPF/..." (one letter per tile, rows separated
    by '/'). The map holds for every b and h (their sizes bound the range
    when given). Example:
    `attn-analyze-mask{sizes=L:256 params=window:64 tile=64x64}`.
  }];
  let constructor = "::attn::createAnalyzeMaskPass()";
  let options = [
    ListOption<"sizes", "sizes", "std::string",
               "size bindings NAME:VALUE for the tile map (e.g. L:256,B:1)">,
    ListOption<"params", "params", "std::string",
               "integer/bool param bindings NAME:VALUE for the tile map">,
    Option<"tile", "tile", "std::string", /*default=*/"\"\"",
           "tile shape QxK (rows of queries x keys); empty: no tile map">,
  ];
}

def Differentiate : Pass<"attn-differentiate", "::attn::KernelOp"> {
  let summary = "derive the partial derivatives of the score for the backward kernels";
  let description = [{
    Adds a `grad` region to each `attn.kernel` (block arguments b, h, i, j)
    that yields the score, then its partial derivative with respect to each
    thing the score reads, as `grad_wrt` names them in order:
    `"dot"` (dot(q, k)), `"sqnorm q"`, `"sqnorm k"`, `"param NAME"` (float
    params) and `"load NAME"` (each float attn.load op of the score region;
    the derivative is followed in the yield by the indices the load reads,
    so that a backward kernel can scatter it). The region is the score's
    ops followed by a reverse-mode sweep over them (adjoints of every float
    value, seeded with 1 at the score). Integer ops, comparisons, floor,
    ceil and int stop the sweep (zero almost everywhere); the kinks of abs,
    min, max, clamp and select follow PyTorch (docs/language.md,
    "Gradients"). A score the pass cannot differentiate (channel vectors,
    sum) gets `grad_why_not` instead of the region.
  }];
  let constructor = "::attn::createDifferentiatePass()";
}

#endif // ATTN_PASSES_TD
