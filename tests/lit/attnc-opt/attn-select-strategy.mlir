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
