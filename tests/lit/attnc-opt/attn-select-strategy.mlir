// RUN: attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-select-strategy))' | FileCheck %s

// A mask that is the constant true needs neither per-pair masking nor tile
// skipping.
// CHECK-LABEL: attn.kernel @dense
// CHECK-SAME: strategy = "dense"
attn.kernel @dense attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// CHECK-LABEL: attn.kernel @causal
// CHECK-SAME: strategy = "masked"
attn.kernel @causal attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %m = arith.cmpi sle, %j, %i : i32
  attn.yield %m : i1
}

// -----

// A mask that only canonicalizes to true is still "masked" when the pass
// runs alone; the default pipeline canonicalizes first.
// CHECK-LABEL: attn.kernel @folds_to_true
// CHECK-SAME: strategy = "masked"
attn.kernel @folds_to_true attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %m = arith.cmpi eq, %j, %j : i32
  attn.yield %m : i1
}

// -----

// Hard-max, 2-D heads, scaled dot score, causal mask: hull decoding.
// CHECK-LABEL: attn.kernel @hull
// CHECK-SAME: decode = "hull"
attn.kernel @hull attributes {compute_type = f64, normalize = "hardmax", ties = "latest", params = [], tensors = [{dims = ["B", "H", "L", 2], name = "q", type = f64}, {dims = ["B", "H", "L", 2], name = "k", type = f64}, {dims = ["B", "H", "L", 2], name = "v", type = f64}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f64
  %c = arith.constant 0.5 : f64
  %s = arith.mulf %c, %0 : f64
  attn.yield %s : f64
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %m = arith.cmpi sle, %j, %i : i32
  attn.yield %m : i1
}

// -----

// A negative scale turns the maximum into a minimum: no hull.
// CHECK-LABEL: attn.kernel @negative_scale
// CHECK-SAME: decode = "scan"
attn.kernel @negative_scale attributes {compute_type = f64, normalize = "hardmax", ties = "latest", params = [], tensors = [{dims = ["B", "H", "L", 2], name = "q", type = f64}, {dims = ["B", "H", "L", 2], name = "k", type = f64}, {dims = ["B", "H", "L", 2], name = "v", type = f64}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f64
  %c = arith.constant -0.5 : f64
  %s = arith.mulf %c, %0 : f64
  attn.yield %s : f64
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %m = arith.cmpi sle, %j, %i : i32
  attn.yield %m : i1
}

// -----

// Heads of 3 dimensions: no hull.
// CHECK-LABEL: attn.kernel @three_d
// CHECK-SAME: decode = "scan"
attn.kernel @three_d attributes {compute_type = f32, normalize = "hardmax", ties = "average", params = [], tensors = [{dims = ["B", "H", "L", 3], name = "q", type = f32}, {dims = ["B", "H", "L", 3], name = "k", type = f32}, {dims = ["B", "H", "L", 3], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}
