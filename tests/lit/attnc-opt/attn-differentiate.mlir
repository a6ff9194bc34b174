// RUN: attnc-opt %s -split-input-file --pass-pipeline='builtin.module(attn.kernel(attn-differentiate))' | FileCheck %s

// ALiBi: score = dot(q, k) * 0.125 + slopes[h] * float(j - i). The grad
// region clones the score, then yields the score, ∂/∂dot (the constant) and
// ∂/∂slopes[h] (float(j - i)) followed by the index the load read (h). The
// integer j - i and its conversion stop the sweep.
// CHECK-LABEL: attn.kernel @alibi
// CHECK-SAME: grad_wrt = ["dot", "load slopes"]
// CHECK: grad {
// CHECK-NEXT: ^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
// CHECK-NEXT: %[[DOT:.*]] = attn.dot : f32
// CHECK-NEXT: %[[C:.*]] = arith.constant 1.250000e-01 : f32
// CHECK-NEXT: %[[S:.*]] = arith.mulf %[[DOT]], %[[C]] : f32
// CHECK-NEXT: %[[SL:.*]] = attn.load "slopes"[%h] : (i32) -> f32
// CHECK-NEXT: %[[D:.*]] = arith.subi %j, %i : i32
// CHECK-NEXT: %[[DF:.*]] = arith.sitofp %[[D]] : i32 to f32
// CHECK-NEXT: %[[B:.*]] = arith.mulf %[[SL]], %[[DF]] : f32
// CHECK-NEXT: %[[R:.*]] = arith.addf %[[S]], %[[B]] : f32
// CHECK-NEXT: arith.constant 1.000000e+00 : f32
// CHECK-NEXT: attn.yield %[[R]], %[[C]], %[[DF]], %h : f32, f32, f32, i32
attn.kernel @alibi attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}, {dims = ["H"], name = "slopes", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %d = attn.dot : f32
  %c = arith.constant 0.125 : f32
  %s = arith.mulf %d, %c : f32
  %sl = attn.load "slopes"[%h] : (i32) -> f32
  %dj = arith.subi %j, %i : i32
  %df = arith.sitofp %dj : i32 to f32
  %bias = arith.mulf %sl, %df : f32
  %r = arith.addf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Softcap with a float param: cap * tanh(dot / cap). ∂/∂dot is
// (1 - t²)·cap / cap; ∂/∂cap collects both uses (the product's t and the
// quotient's -x/cap·(1 - t²)·cap), added into one entry.
// CHECK-LABEL: attn.kernel @softcap
// CHECK-SAME: grad_wrt = ["dot", "param cap"]
// CHECK: grad {
// CHECK: %[[X:.*]] = arith.divf %[[DOT:.*]], %[[CAP:.*]] : f32
// CHECK: %[[T:.*]] = math.tanh %[[X]] : f32
// CHECK: %[[T2:.*]] = arith.mulf %[[T]], %[[T]] : f32
// CHECK: %[[OMT:.*]] = arith.subf %{{.*}}, %[[T2]] : f32
// CHECK-NEXT: %[[GX:.*]] = arith.mulf %[[CAP]], %[[OMT]] : f32
// CHECK-NEXT: %[[GD:.*]] = arith.divf %[[GX]], %[[CAP]] : f32
// CHECK: %[[GC:.*]] = arith.addf %[[T]], %{{.*}} : f32
// CHECK-NEXT: attn.yield %{{.*}}, %[[GD]], %[[GC]] : f32, f32, f32
attn.kernel @softcap attributes {compute_type = f32, normalize = "softmax", params = [{name = "cap", type = f32}], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %d = attn.dot : f32
  %cap = attn.param "cap" : f32
  %x = arith.divf %d, %cap : f32
  %t = math.tanh %x : f32
  %r = arith.mulf %t, %cap : f32
  attn.yield %r : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// clamp(dot, lo, hi) = min(max(dot, lo), hi) as torch.clamp: the dot gets
// the gradient where lo <= dot <= hi (neither max(dot, lo) > hi nor
// dot < lo), with no halving at the bounds.
// CHECK-LABEL: attn.kernel @clamp
// CHECK: grad {
// CHECK: %[[MX:.*]] = arith.maximumf %[[DOT:.*]], %[[LO:.*]] : f32
// CHECK-NEXT: %[[MN:.*]] = arith.minimumf %[[MX]], %[[HI:.*]] : f32
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT: %[[ABOVE:.*]] = arith.cmpf ogt, %[[MX]], %[[HI]] : f32
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[REST:.*]] = arith.select %[[ABOVE]], %[[Z]], %[[ONE]] : f32
// CHECK-NEXT: %[[BELOW:.*]] = arith.cmpf olt, %[[DOT]], %[[LO]] : f32
// CHECK-NOT: 5.000000e-01
// CHECK: %[[GD:.*]] = arith.select %[[BELOW]], %{{.*}}, %[[REST]] : f32
// CHECK-NEXT: attn.yield %[[MN]], %[[GD]] : f32, f32
attn.kernel @clamp attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %d = attn.dot : f32
  %lo = arith.constant -5.0 : f32
  %hi = arith.constant 5.0 : f32
  %mx = arith.maximumf %d, %lo : f32
  %mn = arith.minimumf %mx, %hi : f32
  attn.yield %mn : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// max(a, b) as torch.maximum: a tie gives each operand half. Here a is the
// dot and b the query's squared norm; a float param read only through
// floor has derivative zero but still gets its entry.
// CHECK-LABEL: attn.kernel @max_tie
// CHECK-SAME: grad_wrt = ["dot", "sqnorm q", "param p"]
// CHECK: grad {
// CHECK: %[[GT:.*]] = arith.cmpf ogt, %[[DOT:.*]], %[[NQ:.*]] : f32
// CHECK-NEXT: %[[EQ:.*]] = arith.cmpf oeq, %[[DOT]], %[[NQ]] : f32
// CHECK-NEXT: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK: %[[TIE:.*]] = arith.select %[[EQ]], %[[HALF]], %{{.*}} : f32
// CHECK-NEXT: %[[G0:.*]] = arith.select %[[GT]], %{{.*}}, %[[TIE]] : f32
// CHECK-NEXT: %[[G1:.*]] = arith.subf %{{.*}}, %[[G0]] : f32
// CHECK: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: attn.yield %{{.*}}, %[[G0]], %[[G1]], %[[ZERO]] : f32, f32, f32, f32
attn.kernel @max_tie attributes {compute_type = f32, normalize = "softmax", params = [{name = "p", type = f32}], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %d = attn.dot : f32
  %nq = attn.sqnorm "q" : f32
  %m = arith.maximumf %d, %nq : f32
  %p = attn.param "p" : f32
  %fp = math.floor %p : f32
  %r = arith.addf %m, %fp : f32
  attn.yield %r : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// A score with a sum(...) is not differentiated (yet): the kernel says why
// and has no grad region.
// CHECK-LABEL: attn.kernel @with_sum
// CHECK-SAME: grad_why_not = "the score has a sum(...)"
// CHECK-NOT: grad {
attn.kernel @with_sum attributes {compute_type = f32, normalize = "softmax", params = [], tensors = [{dims = ["B", "H", "L", 64], name = "q", type = f32}, {dims = ["B", "H", "L", 64], name = "k", type = f32}, {dims = ["B", "H", "L", 64], name = "v", type = f32}]} score {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %n = arith.constant 4 : i32
  %s = attn.sum %n : f32 {
  ^bb0(%c: i32):
    %one = arith.constant 1.0 : f32
    attn.yield %one : f32
  }
  attn.yield %s : f32
} mask {
^bb0(%b: i32, %h: i32, %i: i32, %j: i32):
  %t = arith.constant true
  attn.yield %t : i1
}
