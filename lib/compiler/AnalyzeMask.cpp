// attn-analyze-mask: records what a kernel's mask reads (`mask_kind`, and
// `attn.summary` on its loads) and, on request, its tile map for given sizes.
#include "attn/compiler/MaskAnalysis.h"
#include "attn/compiler/Passes.h"

#include "mlir/IR/Builders.h"

namespace attn {
#define GEN_PASS_DEF_ANALYZEMASK
#include "attn/compiler/Passes.h.inc"
} // namespace attn

using namespace mlir;

namespace {

/// Parses "NAME:VALUE" items into `out`; false (with `bad` set) on error.
bool parseBindings(ArrayRef<std::string> items, std::map<std::string, int64_t> &out,
                   std::string &bad) {
  for (const std::string &item : items) {
    size_t colon = item.find(':');
    int64_t v = 0;
    if (colon == std::string::npos || colon == 0 ||
        StringRef(item).substr(colon + 1).getAsInteger(10, v)) {
      bad = item;
      return false;
    }
    out[item.substr(0, colon)] = v;
  }
  return true;
}

struct AnalyzeMaskPass : attn::impl::AnalyzeMaskBase<AnalyzeMaskPass> {
  using AnalyzeMaskBase::AnalyzeMaskBase;

  void runOnOperation() override {
    attn::KernelOp kernel = getOperation();
    MLIRContext *ctx = &getContext();
    kernel->setAttr("mask_kind", StringAttr::get(ctx, attn::toString(attn::maskKind(kernel))));
    kernel.getMask().walk([&](attn::LoadOp load) {
      load->setAttr("attn.summary", StringAttr::get(ctx, attn::toString(attn::loadSummary(load))));
    });
    if (tile.empty())
      return;

    std::map<std::string, int64_t> sizeValues, paramValues;
    std::string bad;
    if (!parseBindings(sizes, sizeValues, bad) || !parseBindings(params, paramValues, bad)) {
      kernel.emitError("attn-analyze-mask: expected NAME:VALUE, got '") << bad << "'";
      return signalPassFailure();
    }
    int64_t tileQ = 0, tileK = 0;
    StringRef q, k;
    std::tie(q, k) = StringRef(tile).split('x');
    if (q.getAsInteger(10, tileQ) || k.getAsInteger(10, tileK) || tileQ <= 0 || tileK <= 0) {
      kernel.emitError("attn-analyze-mask: tile expects QxK, got '") << tile << "'";
      return signalPassFailure();
    }
    auto length = [&](StringRef tensor) -> int64_t {
      std::string name = attn::dimName(kernel, tensor, 2);
      auto it = sizeValues.find(name);
      if (it != sizeValues.end())
        return it->second;
      int64_t v = 0;
      if (!StringRef(name).getAsInteger(10, v))
        return v;
      kernel.emitError("attn-analyze-mask: no value for size '") << name << "'";
      return 0;
    };
    int64_t Lq = length("q"), Lk = length("k");
    if (Lq <= 0 || Lk <= 0)
      return signalPassFailure();

    std::vector<attn::TileClass> tiles =
        attn::classifyTiles(kernel, sizeValues, paramValues, tileQ, tileK, Lq, Lk);
    int64_t rows = (Lq + tileQ - 1) / tileQ, cols = (Lk + tileK - 1) / tileK;
    int64_t counts[3] = {0, 0, 0};
    for (attn::TileClass t : tiles)
      ++counts[static_cast<int>(t)];
    Builder b(ctx);
    kernel->setAttr("tile_counts", b.getI64ArrayAttr({counts[0], counts[1], counts[2]}));
    if (rows <= 64 && cols <= 64)
      kernel->setAttr("tile_classes", b.getStringAttr(attn::formatTileMap(tiles, cols)));
  }
};

} // namespace

std::unique_ptr<Pass> attn::createAnalyzeMaskPass() {
  return std::make_unique<AnalyzeMaskPass>();
}
