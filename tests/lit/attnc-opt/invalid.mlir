// RUN: attnc-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{mask region must yield 'i1', got 'f32'}}
attn.kernel @mask_not_bool attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
}

// -----

// expected-error @+1 {{tensor 1 must be 'k'}}
attn.kernel @order attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

attn.kernel @load_rank attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}, {dims = ["B", "L"], name = "doc", type = i32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  // expected-error @+1 {{'doc' has rank 2 but 1 indices were given}}
  %d = attn.load "doc"[%i] : (i32) -> i32
  %m = arith.cmpi sle, %d, %j : i32
  attn.yield %m : i1
}

// -----

attn.kernel @unknown_size attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  // expected-error @+1 {{'N' is not a size of the kernel}}
  %n = attn.size "N"
  %m = arith.cmpi slt, %j, %n : i32
  attn.yield %m : i1
}

// -----

// expected-error @+1 {{output lse is only defined for softmax, hardmax and topk}}
attn.kernel @lse_sigmoid attributes {compute_type = f32, normalize = "sigmoid", output_lse, params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  attn.yield %0 : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

attn.kernel @param_type attributes {compute_type = f32, normalize = "softmax", params = [{name = "w", type = i32}], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %0 = attn.dot : f32
  // expected-error @+1 {{param 'w' reads as 'i32'}}
  %w = attn.param "w" : f32
  %s = arith.addf %0, %w : f32
  attn.yield %s : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}
