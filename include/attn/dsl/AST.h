// The abstract syntax tree of `.attn` files (LANGUAGE.md §1-§5).
//
// The parser builds it with source locations; Sema (Sema.h) resolves names,
// assigns types and fills in defaults, after which every consumer (MLIRGen,
// the float64 reference evaluator, `attnc emit --stage ast`) can rely on the
// invariants documented on each field. No MLIR dependency.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attn::dsl {

/// 1-based line and column of a character in the source text.
struct SourceLoc {
  int line = 0;
  int col = 0;
};

/// [begin, end) in the source text; `end` is one past the last character.
struct SourceRange {
  SourceLoc begin;
  SourceLoc end;
};

/// Element types of tensors and params (LANGUAGE.md §2).
enum class ElemType { F32, F16, BF16, F64, I32, I64, Bool };

const char *toString(ElemType t); // "f32", "bf16", ...
bool isFloat(ElemType t);

/// Types of expressions after Sema. Arithmetic in a kernel is done in the
/// kernel's compute float type (F32, or F64 when q is f64); f16/bf16 values
/// read from aux tensors are widened to it. Integers are I32 unless an I64
/// value takes part (then I64).
enum class ScalarType { Unknown, Bool, I32, I64, F32, F64 };

const char *toString(ScalarType t);

/// One dimension of a tensor declaration: a size name or an integer literal.
struct Dim {
  std::string name; // empty for a literal
  int64_t value = 0; // the literal, when name is empty
  SourceRange range;
  bool isLiteral() const { return name.empty(); }
};

enum class TensorRole { Q, K, V, Aux };

struct Expr;

struct TensorDecl {
  std::string name;
  TensorRole role = TensorRole::Aux;
  ElemType type = ElemType::F32;
  std::vector<Dim> dims;
  SourceRange range;     // the name
  SourceRange typeRange; // the element type
  /// `at [...]` of q, k or v (LANGUAGE.md §8.1): the leading indices of the
  /// row read for (b, h, i) (q) or (b, hk, j) (k, v), one per dimension but
  /// the last; empty without `at`. After Sema each is an integer expression.
  std::vector<std::unique_ptr<Expr>> at;
  SourceRange atRange; // the `at` keyword, when present
  /// The name callers bind it by (LANGUAGE.md §8.5): `name`, or
  /// `SOURCE.k` / `SOURCE.v` for the k and v of a `source` block.
  std::string abiName;
  const std::string &callName() const { return abiName.empty() ? name : abiName; }
  TensorDecl clone() const;
};

/// A literal value (param defaults).
struct Literal {
  enum class Kind { Int, Float, Bool } kind = Kind::Int;
  int64_t i = 0;
  double f = 0;
  bool b = false;
};

struct ParamDecl {
  std::string name;
  ElemType type = ElemType::I32;
  /// After Sema the literal's kind matches `type` (an integer default of a
  /// float param becomes a Float literal).
  std::optional<Literal> defaultValue;
  SourceRange range;        // the name
  SourceRange typeRange;    // the element type
  SourceRange defaultRange; // the default literal, sign included
};

enum class UnaryOp { Neg, Not };
enum class BinaryOp { Or, And, Eq, Ne, Lt, Le, Gt, Ge, Add, Sub, Mul, Div, Mod };

const char *toString(UnaryOp op);  // "-", "!"
const char *toString(BinaryOp op); // "||", "&&", "==", ...

/// Built-in functions (LANGUAGE.md §3). Resolved by Sema from Call names.
enum class Builtin {
  None,
  // head-vector built-ins: no arguments after Sema (the q/k args are checked
  // and dropped).
  Dot,     // dot(q, k)
  SqnormQ, // sqnorm(q)
  SqnormK, // sqnorm(k)
  // scalar functions, 1 argument
  Exp, Exp2, Log, Log2, Sqrt, Rsqrt, Tanh, Sigmoid, Abs, Floor, Ceil,
  Sin, Cos,
  Int, // int(x): x rounded toward -inf as i32, saturating; NaN gives 0
  // 2 arguments
  Min, Max, Pow,
  // 3 arguments
  Clamp,  // clamp(x, lo, hi)
  Select, // select(cond, a, b)
  // channel vectors (LANGUAGE.md §8.3); args are Idents naming q, k or a
  // vector let
  DotVec,    // dot(x, y)
  SqnormVec, // sqnorm(x)
};

const char *toString(Builtin b);

/// What an identifier refers to, filled in by Sema.
enum class IdentKind {
  Unresolved,
  IndexVar, // b, h, hk, i, j (`name` tells which)
  Size,     // a dimension name bound by a tensor declaration
  Param,    // a `param`
  Let,      // a `let`
  Channel,  // a channel variable: of a vector's let or of a sum
};

enum class ExprKind {
  IntLit,   // intValue
  FloatLit, // floatValue
  BoolLit,  // boolValue (`true` / `false`)
  Inf,      // `inf`, positive infinity (a float)
  Ident,    // name; ident says what it refers to after Sema
  Unary,    // unaryOp, args[0]
  Binary,   // binaryOp, args[0], args[1]
  Call,     // name, args; builtin after Sema
  Index,    // name[args...]: read of an aux tensor (name), args are indices
  Element,  // name[args[0]]: element of q, k (the current head vector) or of a
            // channel vector (a let), by Sema from an Index (LANGUAGE.md §8.3)
  Sum,      // sum(name < args[0]: args[1]): a sum over a channel variable
  Cast,     // inserted by Sema only: args[0] converted to `type`
};

struct Expr {
  ExprKind kind = ExprKind::IntLit;
  SourceRange range;
  /// Filled by Sema: the type of the value this node yields.
  ScalarType type = ScalarType::Unknown;

  int64_t intValue = 0;
  double floatValue = 0;
  bool boolValue = false;
  std::string name;
  UnaryOp unaryOp = UnaryOp::Neg;
  BinaryOp binaryOp = BinaryOp::Add;
  Builtin builtin = Builtin::None;
  IdentKind ident = IdentKind::Unresolved;
  std::vector<std::unique_ptr<Expr>> args;

  std::unique_ptr<Expr> clone() const;
};

using ExprPtr = std::unique_ptr<Expr>;

/// Which head vector a channel vector is computed from (LANGUAGE.md §8.3):
/// once per query row, once per key row, or once per call.
enum class VectorSide { Query, Key, Constant };

struct LetDecl {
  std::string name;
  ExprPtr value;
  SourceRange range; // the name
  /// A channel vector `let NAME[var] = ...` / `let NAME[var < N] = ...`:
  /// `var` is its channel variable (empty for a scalar let) and `length` N
  /// (a size or literal; D, q's last dimension, when not written).
  std::string var;
  SourceRange varRange;
  std::optional<Dim> length;
  VectorSide side = VectorSide::Constant; // filled by Sema
  bool isVector() const { return !var.empty(); }
  LetDecl clone() const;
};

/// The index variables (LANGUAGE.md §3, §8.1) and the names of their
/// extents: b < B, h < H, hk < Hk, i < Lq, j < Lk.
enum class IndexVar { B, H, Hk, I, J };
constexpr int kNumIndexVars = 5;
const char *toString(IndexVar v);    // "b", "h", "hk", "i", "j"
const char *extentName(IndexVar v);  // "B", "H", "Hk", "Lq", "Lk"

/// `range NAME < expr` (LANGUAGE.md §8.1).
struct RangeDecl {
  IndexVar var = IndexVar::B;
  ExprPtr bound;
  SourceRange range; // the variable's name
  RangeDecl clone() const;
};

/// One definition of an index variable's extent, after Sema: a tensor
/// dimension (`what` = "dimension 1 of 'q'") or a `range` ("range i").
struct Extent {
  ExprPtr value; // an I32 expression of sizes, params and literals
  SourceRange range;
  std::string what;
};

enum class NormKind { Softmax, Sigmoid, Relu, None, Hardmax, TopK, Linear };
enum class TieRule { Average, Latest, First };

const char *toString(NormKind k);
const char *toString(TieRule t);

struct Normalize {
  NormKind kind = NormKind::Softmax;
  TieRule ties = TieRule::Average; // hardmax only
  int64_t k = 0;                   // topk only, > 0
  SourceRange range;
};

/// One `attention NAME { ... }` block.
///
/// After Sema: `q`, `k`, `v` are set and point into `tensors`; `score` and
/// `mask` are always present (defaults synthesized: `dot(q, k) * rsqrt(D)`
/// and `true`); every Expr has a type, every Ident is resolved, implicit
/// conversions are explicit Cast nodes; `score` has the compute float type
/// and `mask` has type Bool. Lets keep their own expressions (typed) and are
/// referenced by Ident nodes with ident == Let; a let only references lets
/// declared before it. The only float type in a kernel is `computeType`.
/// After the Casts: both operands of a Binary node have the same type (for
/// && and || that is Bool), and so do the args of min, max, clamp and pow and
/// the two branches of select. An Index node of a float tensor has the
/// compute type whatever the element type: the read itself converts (f16 and
/// bf16 widen; f64 rounds to f32 when the compute type is f32).
/// Depth: the parser rejects expressions nested more than 200 levels (the
/// Casts of Sema can add some), and Sema rejects expressions deeper than 1000
/// levels once let references are expanded, so recursive passes are safe.
struct Kernel {
  std::string name;
  SourceRange range; // the name
  std::vector<TensorDecl> tensors; // in declaration order, q/k/v included
  std::vector<ParamDecl> params;
  std::vector<LetDecl> lets; // in declaration order
  std::vector<RangeDecl> ranges; // `range` statements, in order
  ExprPtr score;             // nullptr before Sema when not written
  ExprPtr mask;              // nullptr before Sema when not written
  Normalize normalize;
  bool outputLse = false;
  SourceRange outputLseRange; // the `output lse` statement, when present
  /// `source NAME { ... }` blocks (LANGUAGE.md §8.5), in file order. The
  /// parser puts each block's statements into a Kernel of its own
  /// (`sourceName` set). Sema completes each into a single-source kernel:
  /// the shared declarations (q, params, lets, ranges, aux tensors outside
  /// the blocks), then the block's own; normalize and output lse from here.
  /// This kernel then keeps only what is shared and, in `tensors`, the
  /// inputs in call order: q, each source's k and v (named SOURCE.k,
  /// SOURCE.v in `abiName`), then the aux tensors (shared ones, then each
  /// source's); `k` and `v` point to the first source's.
  std::vector<Kernel> sources;
  std::string sourceName; // a source's kernel: its NAME
  SourceRange sourceRange;
  bool hasSources() const { return !sources.empty(); }

  // Filled by Sema.
  const TensorDecl *q = nullptr;
  const TensorDecl *k = nullptr;
  const TensorDecl *v = nullptr;
  ScalarType computeType = ScalarType::F32;
  /// Every definition of each index variable's extent, by IndexVar: the
  /// first is the one kernels use; the others must agree with it at run
  /// time (ranges defined by both q and k). Hk without a definition gets H's.
  std::vector<Extent> extents[kNumIndexVars];
  /// Whether q, k or v has an `at` map.
  bool hasIndexMaps() const;

  const TensorDecl *findTensor(const std::string &name) const;
  /// The tensor callers bind as `name` (callName()).
  const TensorDecl *findInput(const std::string &name) const;
  /// The input tensors in call order: q, k, v (each source's k and v), aux.
  std::vector<const TensorDecl *> inputs() const;
  const ParamDecl *findParam(const std::string &name) const;
  const LetDecl *findLet(const std::string &name) const;
  /// Size names in order of first appearance in the tensor declarations.
  std::vector<std::string> sizeNames() const;
};

struct Module {
  std::string fileName;
  std::vector<Kernel> kernels;

  const Kernel *findKernel(const std::string &name) const;
};

/// Whether `r` starts inside `block` (a source block's declarations).
bool insideRange(const SourceRange &r, const SourceRange &block);

/// Prints the AST in a stable, indented, human-readable form; used by
/// `attnc emit --stage ast` and the lit tests of that stage.
std::string printModule(const Module &module);
/// Prints an expression in the surface syntax (fully parenthesised).
std::string printExpr(const Expr &expr);

} // namespace attn::dsl
