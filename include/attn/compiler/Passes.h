// Passes over the `attn` dialect (declared in Passes.td) and the standard
// pipeline `attnc emit --stage mlir-opt` prints.
#pragma once

#include "attn/compiler/Dialect.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

#include <memory>
#include <string>

namespace attn {

std::unique_ptr<mlir::Pass> createSelectStrategyPass();
std::unique_ptr<mlir::Pass> createAnalyzeMaskPass();
std::unique_ptr<mlir::Pass> createDifferentiatePass();

#define GEN_PASS_DECL
#define GEN_PASS_REGISTRATION
#include "attn/compiler/Passes.h.inc"

/// How attn-select-strategy reads a kernel for its `linear` strategy
/// (LANGUAGE.md §8.4): normalize = linear or none, no mask or a causal one,
/// and a score that is a product of positive constants, one dot(x, y) of a
/// query and a key vector, and at most one decay pow(g, i - j) (causal only)
/// with g per head. The lowering reads the decay's g from here.
struct LinearScore {
  std::string whyNot; // empty when the kernel is linear
  double scale = 1;   // the product of the constants
  mlir::Value decayBase; // g, or null without a decay
  bool qkDot = false;    // the dot is dot(q, k) rather than of channel vectors
  std::string dotX, dotY; // otherwise the query and the key vector
};
LinearScore matchLinearScore(attn::KernelOp kernel);

/// canonicalize, cse, the attn analyses, then attn-differentiate (and a
/// canonicalize and cse of what it built); what every compile runs.
void buildDefaultPipeline(mlir::OpPassManager &pm);

} // namespace attn
