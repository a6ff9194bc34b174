// The pass pipeline every compile runs (`attnc emit --stage mlir-opt`).
#include "attn/compiler/Passes.h"

#include "mlir/Transforms/Passes.h"

void attn::buildDefaultPipeline(mlir::OpPassManager &pm) {
  pm.addPass(mlir::createCanonicalizerPass());
  pm.addPass(mlir::createCSEPass());
  mlir::OpPassManager &kernels = pm.nest<KernelOp>();
  kernels.addPass(createSelectStrategyPass());
  kernels.addPass(createAnalyzeMaskPass());
  kernels.addPass(createDifferentiatePass());
  kernels.addPass(mlir::createCanonicalizerPass());
  kernels.addPass(mlir::createCSEPass());
}
