// MLIRGen: the checked AST of a `.attn` module -> `attn` dialect IR.
#pragma once

#include "attn/dsl/AST.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

namespace attn {

/// Loads the dialects attnc uses into `ctx`.
void registerDialects(mlir::MLIRContext &ctx);

/// Builds one `attn.kernel` per kernel of a module that passed Sema. The
/// result is verified; a null result means an internal error (reported to
/// the context's diagnostic handler).
mlir::OwningOpRef<mlir::ModuleOp> mlirGen(mlir::MLIRContext &ctx,
                                          const dsl::Module &module);

} // namespace attn
