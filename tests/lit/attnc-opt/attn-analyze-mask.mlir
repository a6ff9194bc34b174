// RUN: attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-analyze-mask{sizes=L:16,T:8,N:16,H:2 params=window:4,prefix:4,width:4,radius:1 tile=4x4}))' | FileCheck %s
// RUN: attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-analyze-mask{sizes=L:8,T:8,N:16 params=window:4,prefix:4,width:4,radius:1 tile=1x1}))' | FileCheck %s --check-prefix=EXACT
// RUN: attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-analyze-mask))' | FileCheck %s --check-prefix=KIND

// attn-analyze-mask records `mask_kind` and, per load of the mask,
// `attn.summary`; with `tile=QxK` it classifies the tiles of the (i, j)
// plane (E empty, P partial, F full; rows of query tiles separated by '/').
// The default run uses L = 16 and 4x4 tiles; EXACT uses L = 8 and 1x1 tiles,
// where the classification of affine masks is exact pair by pair; KIND runs
// without sizes (no tile map).

// The constant-true mask: every tile full.
// CHECK-LABEL: attn.kernel @all_pairs
// CHECK-SAME: mask_kind = "all"
// CHECK-SAME: tile_classes = "FFFF/FFFF/FFFF/FFFF"
// CHECK-SAME: tile_counts = [0, 0, 16]
// KIND-LABEL: attn.kernel @all_pairs
// KIND-SAME: mask_kind = "all"
// KIND-NOT: tile_classes
attn.kernel @all_pairs attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %true = arith.constant true
  attn.yield %true : i1
}

// -----

// `j <= i`, L = 16, 4x4 tiles: tiles on the diagonal partial, above it empty,
// below it full (exact).
// CHECK-LABEL: attn.kernel @causal
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "PEEE/FPEE/FFPE/FFFP"
// CHECK-SAME: tile_counts = [6, 4, 6]
// EXACT-LABEL: attn.kernel @causal
// EXACT-SAME: tile_classes = "FEEEEEEE/FFEEEEEE/FFFEEEEE/FFFFEEEE/FFFFFEEE/FFFFFFEE/FFFFFFFE/FFFFFFFF"
// KIND-LABEL: attn.kernel @causal
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @causal attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = arith.cmpi sle, %j, %i : i32
  attn.yield %0 : i1
}

// -----

// Sliding window `j <= i && i - j < window` with the param bound to 4: a band
// two tiles wide (exact).
// CHECK-LABEL: attn.kernel @sliding_window
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "PEEE/PPEE/EPPE/EEPP"
// EXACT-LABEL: attn.kernel @sliding_window
// EXACT-SAME: tile_classes = "FEEEEEEE/FFEEEEEE/FFFEEEEE/FFFFEEEE/EFFFFEEE/EEFFFFEE/EEEFFFFE/EEEEFFFF"
// KIND-LABEL: attn.kernel @sliding_window
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @sliding_window attributes {compute_type = f32, normalize = "softmax", params = [{default = 256 : i32, name = "window", type = i32}], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = arith.cmpi sle, %j, %i : i32
  %1 = arith.subi %i, %j : i32
  %2 = attn.param "window" : i32
  %3 = arith.cmpi slt, %1, %2 : i32
  %4 = arith.andi %0, %3 : i1
  attn.yield %4 : i1
}

// -----

// Prefix LM `j <= i || j < prefix`, prefix 4: the prefix column is full.
// CHECK-LABEL: attn.kernel @prefix_lm
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "FEEE/FPEE/FFPE/FFFP"
// EXACT-LABEL: attn.kernel @prefix_lm
// EXACT-SAME: tile_classes = "FFFFEEEE/FFFFEEEE/FFFFEEEE/FFFFEEEE/FFFFFEEE/FFFFFFEE/FFFFFFFE/FFFFFFFF"
// KIND-LABEL: attn.kernel @prefix_lm
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @prefix_lm attributes {compute_type = f32, normalize = "softmax", params = [{default = 128 : i32, name = "prefix", type = i32}], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = arith.cmpi sle, %j, %i : i32
  %1 = attn.param "prefix" : i32
  %2 = arith.cmpi slt, %j, %1 : i32
  %3 = arith.ori %0, %2 : i1
  attn.yield %3 : i1
}

// -----

// Dilated `(i - j) % 4 == 0 && j <= i`: the floor-modulo pattern
// `a - floordivsi(a, 4) * 4` gets its exact range, so 4x4 tiles below the
// diagonal are partial (never full), and 1x1 tiles are exact.
// CHECK-LABEL: attn.kernel @dilated
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "PEEE/PPEE/PPPE/PPPP"
// EXACT-LABEL: attn.kernel @dilated
// EXACT-SAME: tile_classes = "FEEEEEEE/EFEEEEEE/EEFEEEEE/EEEFEEEE/FEEEFEEE/EFEEEFEE/EEFEEEFE/EEEFEEEF"
// KIND-LABEL: attn.kernel @dilated
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @dilated attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = arith.subi %i, %j : i32
  %c4_i32 = arith.constant 4 : i32
  %1 = arith.floordivsi %0, %c4_i32 : i32
  %2 = arith.muli %1, %c4_i32 : i32
  %3 = arith.subi %0, %2 : i32
  %c0_i32 = arith.constant 0 : i32
  %4 = arith.cmpi eq, %3, %c0_i32 : i32
  %5 = arith.cmpi sle, %j, %i : i32
  %6 = arith.andi %4, %5 : i1
  attn.yield %6 : i1
}

// -----

// `i % 8 < 4`: over a query tile of 4 rows the modulo is the exact image of
// the interval ([0, 3] or [4, 7]), so whole rows of tiles are full or empty.
// CHECK-LABEL: attn.kernel @stripes
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "FFFF/EEEE/FFFF/EEEE"
// EXACT-LABEL: attn.kernel @stripes
// EXACT-SAME: tile_classes = "FFFFFFFF/FFFFFFFF/FFFFFFFF/FFFFFFFF/EEEEEEEE/EEEEEEEE/EEEEEEEE/EEEEEEEE"
// KIND-LABEL: attn.kernel @stripes
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @stripes attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %c8_i32 = arith.constant 8 : i32
  %0 = arith.floordivsi %i, %c8_i32 : i32
  %1 = arith.muli %0, %c8_i32 : i32
  %2 = arith.subi %i, %1 : i32
  %c4_i32 = arith.constant 4 : i32
  %3 = arith.cmpi slt, %2, %c4_i32 : i32
  attn.yield %3 : i1
}

// -----

// 2-D neighbourhood with `/` and `%` (width 4, radius 1, params) over a 4x4
// image: a query tile is one image row, so `i / width` is a point.
// CHECK-LABEL: attn.kernel @neighborhood_2d
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "PPEE/PPPE/EPPP/EEPP"
// EXACT-LABEL: attn.kernel @neighborhood_2d
// EXACT-SAME: tile_classes = "FFEEFFEE/FFFEFFFE/EFFFEFFF/EEFFEEFF/FFEEFFEE/FFFEFFFE/EFFFEFFF/EEFFEEFF"
// KIND-LABEL: attn.kernel @neighborhood_2d
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @neighborhood_2d attributes {compute_type = f32, normalize = "softmax", params = [{default = 32 : i32, name = "width", type = i32}, {default = 3 : i32, name = "radius", type = i32}], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.param "width" : i32
  %1 = arith.floordivsi %i, %0 : i32
  %2 = attn.param "width" : i32
  %3 = arith.floordivsi %j, %2 : i32
  %4 = arith.subi %1, %3 : i32
  %5 = math.absi %4 : i32
  %6 = attn.param "radius" : i32
  %7 = arith.cmpi sle, %5, %6 : i32
  %8 = attn.param "width" : i32
  %9 = arith.floordivsi %i, %8 : i32
  %10 = arith.muli %9, %8 : i32
  %11 = arith.subi %i, %10 : i32
  %12 = attn.param "width" : i32
  %13 = arith.floordivsi %j, %12 : i32
  %14 = arith.muli %13, %12 : i32
  %15 = arith.subi %j, %14 : i32
  %16 = arith.subi %11, %15 : i32
  %17 = math.absi %16 : i32
  %18 = attn.param "radius" : i32
  %19 = arith.cmpi sle, %17, %18 : i32
  %20 = arith.andi %7, %19 : i1
  attn.yield %20 : i1
}

// -----

// Cross attention with Lq = T = 8 and Lk = N = 16: a 2x4 grid.
// CHECK-LABEL: attn.kernel @cross
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "PPEE/FFPP"
// KIND-LABEL: attn.kernel @cross
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @cross attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "T", 64], name = "q", type = f32}, {dims = ["B", "H", "N", 64], name = "k", type = f32}, {dims = ["B", "H", "N", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.size "T"
  %1 = arith.muli %j, %0 : i32
  %c1_i32 = arith.constant 1 : i32
  %2 = arith.addi %i, %c1_i32 : i32
  %3 = attn.size "N"
  %4 = arith.muli %2, %3 : i32
  %5 = arith.cmpi slt, %1, %4 : i32
  attn.yield %5 : i1
}

// -----

// A mask that depends on h: the map holds for every h < H (H = 2 here).
// Without a bound on H, (h + 1) * 4 may overflow, so the range is unknown
// and every tile the causal part does not empty is partial.
// CHECK-LABEL: attn.kernel @per_head
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "PEEE/PPEE/PPPE/EPPP"
// EXACT-LABEL: attn.kernel @per_head
// EXACT-SAME: tile_classes = "PEEEEEEE/PPEEEEEE/PPPEEEEE/PPPPEEEE/PPPPPEEE/PPPPPPEE/PPPPPPPE/PPPPPPPP"
// KIND-LABEL: attn.kernel @per_head
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @per_head attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = arith.cmpi sle, %j, %i : i32
  %1 = arith.subi %i, %j : i32
  %c1_i32 = arith.constant 1 : i32
  %2 = arith.addi %h, %c1_i32 : i32
  %c4_i32 = arith.constant 4 : i32
  %3 = arith.muli %2, %c4_i32 : i32
  %4 = arith.cmpi slt, %1, %3 : i32
  %5 = arith.andi %0, %4 : i1
  attn.yield %5 : i1
}

// -----

// `i + 2147483640 >= j` overflows i32 from i = 8 on: those tiles are partial,
// never classified by wrapped values.
// CHECK-LABEL: attn.kernel @overflow
// CHECK-SAME: mask_kind = "affine"
// CHECK-SAME: tile_classes = "FFFF/FFFF/PPPP/PPPP"
// KIND-LABEL: attn.kernel @overflow
// KIND-SAME: mask_kind = "affine"
// KIND-NOT: tile_classes
attn.kernel @overflow attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %c2147483640_i32 = arith.constant 2147483640 : i32
  %0 = arith.addi %i, %c2147483640_i32 : i32
  %1 = arith.cmpi sge, %0, %j : i32
  attn.yield %1 : i1
}

// -----

// Document ids: the loads are summarised per query tile and per key block;
// without summaries the equality is unknown, so only the causal part
// empties tiles.
// CHECK-LABEL: attn.kernel @packed_documents
// CHECK-SAME: mask_kind = "data-dependent"
// CHECK-SAME: tile_classes = "PEEE/PPEE/PPPE/PPPP"
// CHECK: attn.load "doc"[%b, %i] {attn.summary = "query-tile"}
// CHECK: attn.load "doc"[%b, %j] {attn.summary = "key-block"}
// KIND-LABEL: attn.kernel @packed_documents
// KIND-SAME: mask_kind = "data-dependent"
// KIND-NOT: tile_classes
attn.kernel @packed_documents attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}, {dims = ["B", "L"], name = "doc", type = i32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.load "doc"[%b, %i] : (i32, i32) -> i32
  %1 = attn.load "doc"[%b, %j] : (i32, i32) -> i32
  %2 = arith.cmpi eq, %0, %1 : i32
  %3 = arith.cmpi sle, %j, %i : i32
  %4 = arith.andi %2, %3 : i1
  attn.yield %4 : i1
}

// -----

// A user block table indexed by (i / 4, j / 4) depends on both i and j.
// CHECK-LABEL: attn.kernel @block_table
// CHECK-SAME: mask_kind = "data-dependent"
// CHECK-SAME: tile_classes = "PPPP/PPPP/PPPP/PPPP"
// CHECK: attn.load "blocks"[%b, %h, %{{.*}}, %{{.*}}] {attn.summary = "pair"}
// KIND-LABEL: attn.kernel @block_table
// KIND-SAME: mask_kind = "data-dependent"
// KIND-NOT: tile_classes
attn.kernel @block_table attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}, {dims = ["B", "H", "NQB", "NKB"], name = "blocks", type = i1}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %c4_i32 = arith.constant 4 : i32
  %0 = arith.floordivsi %i, %c4_i32 : i32
  %c4_i32_0 = arith.constant 4 : i32
  %1 = arith.floordivsi %j, %c4_i32_0 : i32
  %2 = attn.load "blocks"[%b, %h, %0, %1] : (i32, i32, i32, i32) -> i1
  attn.yield %2 : i1
}

// -----

// A per-head flag (uniform over the plane) and a per-key flag.
// CHECK-LABEL: attn.kernel @per_head_gate
// CHECK-SAME: mask_kind = "data-dependent"
// CHECK-SAME: tile_classes = "PPPP/PPPP/PPPP/PPPP"
// CHECK: attn.load "gate"[%h] {attn.summary = "uniform"}
// CHECK: attn.load "valid"[%b, %j] {attn.summary = "key-block"}
// KIND-LABEL: attn.kernel @per_head_gate
// KIND-SAME: mask_kind = "data-dependent"
// KIND-NOT: tile_classes
attn.kernel @per_head_gate attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}, {dims = ["H"], name = "gate", type = i32}, {dims = ["B", "L"], name = "valid", type = i1}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.load "gate"[%h] : (i32) -> i32
  %c0_i32 = arith.constant 0 : i32
  %1 = arith.cmpi sgt, %0, %c0_i32 : i32
  %2 = arith.cmpi sle, %j, %i : i32
  %3 = arith.ori %1, %2 : i1
  %4 = attn.load "valid"[%b, %j] : (i32, i32) -> i1
  %5 = arith.andi %3, %4 : i1
  attn.yield %5 : i1
}

// -----

// Float arithmetic has no ranges: `i * 0.5 <= j` is unknown, so the map is
// the causal part's (correct, not exact).
// CHECK-LABEL: attn.kernel @float_mask
// CHECK-SAME: mask_kind = "non-affine"
// CHECK-SAME: tile_classes = "PEEE/PPEE/PPPE/PPPP"
// KIND-LABEL: attn.kernel @float_mask
// KIND-SAME: mask_kind = "non-affine"
// KIND-NOT: tile_classes
attn.kernel @float_mask attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = arith.cmpi sle, %j, %i : i32
  %1 = arith.sitofp %i : i32 to f32
  %cst = arith.constant 5.000000e-01 : f32
  %2 = arith.mulf %1, %cst : f32
  %3 = arith.sitofp %j : i32 to f32
  %4 = arith.cmpf ole, %2, %3 : f32
  %5 = arith.andi %0, %4 : i1
  attn.yield %5 : i1
}

// -----

// Bad options: a tile map needs the sizes of the (i, j) plane and a QxK tile.
// RUN: not attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-analyze-mask{tile=4x4}))' 2>&1 | FileCheck %s --check-prefix=NOSIZE
// RUN: not attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-analyze-mask{sizes=L:16 tile=4by4}))' 2>&1 | FileCheck %s --check-prefix=BADTILE
// RUN: not attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-analyze-mask{sizes=L=16 tile=4x4}))' 2>&1 | FileCheck %s --check-prefix=BADSIZE
// NOSIZE: error: attn-analyze-mask: no value for size 'L'
// BADTILE: error: attn-analyze-mask: tile expects QxK, got '4by4'
// BADSIZE: error: attn-analyze-mask: expected NAME:VALUE, got 'L=16'
// CHECK-LABEL: attn.kernel @options
// KIND-LABEL: attn.kernel @options
attn.kernel @options attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = arith.cmpi sle, %j, %i : i32
  attn.yield %0 : i1
}
