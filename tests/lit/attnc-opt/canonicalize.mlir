// RUN: attnc-opt %s -split-input-file -canonicalize -cse | FileCheck %s

// Standard folding applies inside score and mask regions.
// CHECK-LABEL: attn.kernel @k
// CHECK: score
// CHECK: %[[C:.*]] = arith.constant 1.250000e-01 : f32
// CHECK: %[[D:.*]] = attn.dot : f32
// CHECK: arith.mulf %[[D]], %[[C]]
// CHECK: mask
// CHECK-NEXT: ^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
// CHECK-NEXT: %[[M:.*]] = arith.cmpi sle, %j, %i : i32
// CHECK-NEXT: attn.yield %[[M]] : i1
attn.kernel @k attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  %c8 = arith.constant 8.0 : f32
  %one = arith.constant 1.0 : f32
  %r = arith.divf %one, %c8 : f32
  %s = arith.mulf %0, %r : f32
  attn.yield %s : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  %f = arith.cmpi sle, %j, %i : i32
  %m = arith.andi %t, %f : i1
  %n = arith.andi %m, %m : i1
  attn.yield %n : i1
}

// -----

// The attn dialect folds math functions of constants in kernels.
// CHECK-LABEL: attn.kernel @scale
// CHECK: %[[C:.*]] = arith.constant 0.0883883461 : f32
// CHECK-NOT: math.rsqrt
// CHECK: arith.mulf %{{.*}}, %[[C]]
attn.kernel @scale attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 128], name = "q", type = f32}, {dims = ["B", "H", "L", 128], name = "k", type = f32}, {dims = ["B", "H", "L", 128], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  %c = arith.constant 128.0 : f32
  %r = math.rsqrt %c : f32
  %s = arith.mulf %0, %r : f32
  attn.yield %s : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}
