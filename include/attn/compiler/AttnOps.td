// Operations of the `attn` dialect.
#ifndef ATTN_OPS_TD
#define ATTN_OPS_TD

include "attn/compiler/AttnDialect.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferIntRangeInterface.td"

def Attn_KernelOp : Attn_Op<"kernel", [IsolatedFromAbove, Symbol,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "one attention kernel (an `attention NAME { ... }` block)";
  let description = [{
    `tensors` lists the inputs in ABI order (q, k, v, then aux tensors in
    declaration order), each a dictionary {name, type, dims} where dims holds
    a string (a size name) or an i64 (a literal) per dimension. `params` lists
    the run-time scalars as {name, type[, default]}. The `score` region yields
    the score (the compute float type), the `mask` region an i1; both have
    four i32 block arguments (b, h, i, j). `normalize` is one of softmax,
    sigmoid, relu, none, hardmax, topk; `ties` (hardmax) and `topk` qualify it.
    Analysis passes add attributes (e.g. `strategy`).

    Channel vectors (LANGUAGE.md §8.3), when any: the `vectors` region holds
    one attn.vector per `let NAME[c] = ...`, in order, and an empty attn.yield.

    Index maps (LANGUAGE.md §8.1), present only when q, k or v has `at`:
    `ranges` (no block arguments) yields the extents B, H, Hk, Lq, Lk as
    i32, then pairs of values that must be equal at run time (an index
    variable whose range two dimensions give). `q_at`, `k_at`, `v_at` yield
    the leading indices of the tensor's row; their block arguments are
    (b, h, i, j) for q_at and (b, hk, i, j) for k_at and v_at. A tensor
    without `at` has an empty region and is read [b, h, i, :] (q) or
    [b, hk, j, :] (k, v).

    `grad`, added by attn-differentiate, yields the score and its partial
    derivatives (the `grad_wrt` attribute names them; Passes.td).
  }];
  let arguments = (ins
    SymbolNameAttr:$sym_name,
    ArrayAttr:$tensors,
    ArrayAttr:$params,
    TypeAttr:$compute_type,
    StrAttr:$normalize,
    OptionalAttr<StrAttr>:$ties,
    OptionalAttr<I64Attr>:$topk,
    UnitAttr:$output_lse
  );
  let regions = (region SizedRegion<1>:$score, SizedRegion<1>:$mask,
                 AnyRegion:$ranges, AnyRegion:$q_at, AnyRegion:$k_at, AnyRegion:$v_at,
                 AnyRegion:$vectors, AnyRegion:$grad);
  let assemblyFormat = [{
    $sym_name attr-dict-with-keyword (`ranges` $ranges^)? (`q_at` $q_at^)? (`k_at` $k_at^)?
    (`v_at` $v_at^)? (`vectors` $vectors^)? `score` $score `mask` $mask (`grad` $grad^)?
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The dictionary of the named tensor, or null.
    ::mlir::DictionaryAttr getTensor(::llvm::StringRef name);
    /// The dictionary of the named param, or null.
    ::mlir::DictionaryAttr getParam(::llvm::StringRef name);
    /// Whether `name` is a size (a dimension name of some tensor).
    bool isSizeName(::llvm::StringRef name);
    /// Whether q, k or v has an index map (the ranges region is present).
    bool hasIndexMaps() { return !getRanges().empty(); }
  }];
}

def Attn_YieldOp : Attn_Op<"yield", [Pure, Terminator,
    ParentOneOf<["KernelOp", "VectorOp", "SumOp"]>]> {
  let summary = "yields the value of a score or mask region (the values of an index map)";
  let arguments = (ins Variadic<AnyType>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
  let extraClassDeclaration = [{
    /// The value of a score or mask region.
    ::mlir::Value getValue() { return getValues().front(); }
  }];
}

def Attn_DotOp : Attn_Op<"dot", [Pure]> {
  let summary = "q[b, h, i, :] . k[b, h / (H / Hk), j, :] for the region's (b, h, i, j)";
  let results = (outs AnyFloat:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
}

def Attn_SqnormOp : Attn_Op<"sqnorm", [Pure]> {
  let summary = "squared L2 norm of the current query (`q`) or key (`k`) head vector";
  let arguments = (ins StrAttr:$of);
  let results = (outs AnyFloat:$result);
  let assemblyFormat = "$of attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_VectorOp : Attn_Op<"vector", [HasParent<"KernelOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "a channel vector: element c for one query row, key row or call";
  let description = [{
    `side` is "query" (computed once per (b, h, i)), "key" (once per
    (b, hk, j)) or "constant" (once per call); `length` a size name or an
    integer. The body has five i32 block arguments (b, h or hk, i, j, c) and
    yields element c in the compute type.
  }];
  let arguments = (ins StrAttr:$name, StrAttr:$side, AnyAttr:$length);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$name attr-dict-with-keyword $body";
}

def Attn_ElemOp : Attn_Op<"elem", [Pure]> {
  let summary = "element of q, k (the current head vectors) or a channel vector";
  let arguments = (ins StrAttr:$vector, I32:$index);
  let results = (outs AnyFloat:$result);
  let assemblyFormat = "$vector `[` $index `]` attr-dict `:` type($result)";
}

def Attn_VectorDotOp : Attn_Op<"vdot", [Pure]> {
  let summary = "dot(x, y) of a query vector and a key vector (q, k or channel vectors)";
  let arguments = (ins StrAttr:$x, StrAttr:$y);
  let results = (outs AnyFloat:$result);
  let assemblyFormat = "$x `,` $y attr-dict `:` type($result)";
}

def Attn_VectorSqnormOp : Attn_Op<"vsqnorm", [Pure]> {
  let summary = "sqnorm(x) of a channel vector";
  let arguments = (ins StrAttr:$x);
  let results = (outs AnyFloat:$result);
  let assemblyFormat = "$x attr-dict `:` type($result)";
}

def Attn_SumOp : Attn_Op<"sum", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "sum(c < N: expr): the body (one i32 block argument c) summed over c in [0, N)";
  let arguments = (ins I32:$length);
  let results = (outs AnyFloat:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$length attr-dict `:` type($result) $body";
}

def Attn_IntOp : Attn_Op<"int", [Pure]> {
  let summary = "int(x): x rounded toward -inf as i32, saturating; NaN gives 0";
  let arguments = (ins AnyFloat:$x);
  let results = (outs I32:$result);
  let assemblyFormat = "$x attr-dict `:` type($x)";
}

def Attn_SizeOp : Attn_Op<"size", [Pure, DeclareOpInterfaceMethods<InferIntRangeInterface, ["inferResultRanges"]>]> {
  let summary = "a size bound at run time from the tensor shapes (always >= 1)";
  let arguments = (ins StrAttr:$name);
  let results = (outs I32:$result);
  let assemblyFormat = "$name attr-dict";
  let hasVerifier = 1;
}

def Attn_ParamOp : Attn_Op<"param", [Pure]> {
  let summary = "a run-time scalar argument";
  let arguments = (ins StrAttr:$name);
  let results = (outs AnyType:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_LoadOp : Attn_Op<"load", [Pure]> {
  let summary = "reads an auxiliary tensor; indices are range-checked at run time";
  let description = [{
    Float tensors read as the kernel's compute type whatever their storage
    type; integer and bool tensors as their own type (i32, i64, i1).
  }];
  let arguments = (ins StrAttr:$tensor, Variadic<AnySignlessInteger>:$indices);
  let results = (outs AnyType:$result);
  let assemblyFormat = "$tensor `[` $indices `]` attr-dict `:` functional-type($indices, $result)";
  let hasVerifier = 1;
}

#endif // ATTN_OPS_TD
