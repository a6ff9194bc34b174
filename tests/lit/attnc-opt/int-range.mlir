// RUN: attnc-opt %s --int-range-optimizations | FileCheck %s

// attn.size implements InferIntRangeInterface (sizes are >= 1), so MLIR's
// integer range analysis proves facts about masks that use them.
// CHECK-LABEL: attn.kernel @k
// CHECK: mask
// CHECK: %[[T:.*]] = arith.constant true
// CHECK: attn.yield %[[T]] : i1
attn.kernel @k attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %l = attn.size "L"
  %z = arith.constant 0 : i32
  %m = arith.cmpi sgt, %l, %z : i32
  attn.yield %m : i1
}
