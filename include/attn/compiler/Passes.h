// Passes over the `attn` dialect (declared in Passes.td) and the standard
// pipeline `attnc emit --stage mlir-opt` prints.
#pragma once

#include "attn/compiler/Dialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

#include <memory>

namespace attn {

std::unique_ptr<mlir::Pass> createSelectStrategyPass();
std::unique_ptr<mlir::Pass> createAnalyzeMaskPass();

#define GEN_PASS_DECL
#define GEN_PASS_REGISTRATION
#include "attn/compiler/Passes.h.inc"

/// canonicalize, cse, then the attn analyses; what every compile runs.
void buildDefaultPipeline(mlir::OpPassManager &pm);

} // namespace attn
