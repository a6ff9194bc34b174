// `attnc viz`: lowers a kernel, classifies the tiles of its mask with
// MaskAnalysis and renders them as a PNG with libspng (see Viz.h).
#include "attn/compiler/Viz.h"

#include "attn/compiler/MLIRGen.h"
#include "attn/compiler/Passes.h"
#include "attn/dsl/Sema.h"
#include "attn/runtime/Npy.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <spng.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

namespace attn {

VizColor vizColor(TileClass c) {
  switch (c) {
  case TileClass::Empty: return {235, 235, 235};  // light gray
  case TileClass::Partial: return {240, 160, 48}; // orange
  case TileClass::Full: return {48, 112, 192};    // blue
  }
  return {0, 0, 0};
}

static const char *colorName(TileClass c) {
  switch (c) {
  case TileClass::Empty: return "light gray #ebebeb";
  case TileClass::Partial: return "orange #f0a030";
  case TileClass::Full: return "blue #3070c0";
  }
  return "";
}

namespace {

/// Encodes 8-bit RGB as PNG with libspng and writes it; nothing is left
/// behind on failure.
bool writePngRgb(const std::string &path, const std::vector<uint8_t> &img, int64_t width,
                 int64_t height, std::string &err) {
  spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  if (!ctx) {
    err += "attnc: error: cannot create a PNG encoder\n";
    return false;
  }
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(width);
  ihdr.height = static_cast<uint32_t>(height);
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
  int rc = spng_set_ihdr(ctx, &ihdr);
  if (!rc)
    rc = spng_encode_image(ctx, img.data(), img.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  size_t len = 0;
  void *png = rc ? nullptr : spng_get_png_buffer(ctx, &len, &rc);
  spng_ctx_free(ctx);
  if (!png) {
    err += std::string("attnc: error: PNG encoding failed: ") + spng_strerror(rc) + "\n";
    return false;
  }
  std::FILE *f = std::fopen(path.c_str(), "wb");
  bool ok = f && std::fwrite(png, 1, len, f) == len;
  if (f && std::fclose(f) != 0)
    ok = false;
  std::free(png);
  if (!ok) {
    err += "attnc: error: cannot write '" + path + "'\n";
    std::remove(path.c_str());
    return false;
  }
  return true;
}

} // namespace

bool writeTileMapPng(const std::string &path, const std::vector<TileClass> &tiles,
                     int64_t rows, int64_t cols, int cell, std::string &err) {
  if (rows <= 0 || cols <= 0 || static_cast<int64_t>(tiles.size()) != rows * cols) {
    err += "attnc: error: internal: tile map of the wrong size\n";
    return false;
  }
  if (cell <= 0)
    cell = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(64, 1024 / std::max(rows, cols))));
  const int64_t margin = 8, swatch = 16, gap = 8;
  const bool grid = cell >= 6; // 1-pixel lines between tiles
  int64_t mapW = cols * cell, mapH = rows * cell;
  int64_t legendW = 3 * swatch + 2 * gap;
  int64_t width = 2 * margin + std::max(mapW, legendW);
  int64_t height = margin + mapH + gap + swatch + margin;
  if (width > 32768 || height > 32768) {
    err += "attnc: error: the tile grid is " + std::to_string(rows) + " x " + std::to_string(cols) +
           " tiles; too large for a picture (use a larger --tile)\n";
    return false;
  }
  std::vector<uint8_t> img(static_cast<size_t>(width * height * 3), 255);
  auto put = [&](int64_t x, int64_t y, VizColor c) {
    uint8_t *p = &img[static_cast<size_t>((y * width + x) * 3)];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  };
  auto fill = [&](int64_t x0, int64_t y0, int64_t w, int64_t h, VizColor c) {
    for (int64_t y = y0; y < y0 + h; ++y)
      for (int64_t x = x0; x < x0 + w; ++x)
        put(x, y, c);
  };
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      VizColor col = vizColor(tiles[r * cols + c]);
      int64_t x0 = margin + c * cell, y0 = margin + r * cell;
      fill(x0, y0, cell, cell, col);
      if (grid) {
        VizColor line{255, 255, 255};
        fill(x0 + cell - 1, y0, 1, cell, line);
        fill(x0, y0 + cell - 1, cell, 1, line);
      }
    }
  // Legend: empty, partial, full swatches (outlined) below the map.
  int64_t ly = margin + mapH + gap;
  TileClass order[3] = {TileClass::Empty, TileClass::Partial, TileClass::Full};
  for (int k = 0; k < 3; ++k) {
    int64_t lx = margin + k * (swatch + gap);
    fill(lx, ly, swatch, swatch, {96, 96, 96});
    fill(lx + 1, ly + 1, swatch - 2, swatch - 2, vizColor(order[k]));
  }

  return writePngRgb(path, img, width, height, err);
}

namespace {

bool parseInt(const std::string &text, int64_t &v) {
  if (text.empty())
    return false;
  errno = 0;
  char *end = nullptr;
  long long x = std::strtoll(text.c_str(), &end, 10);
  if (errno || *end)
    return false;
  v = x;
  return true;
}

std::string join(const std::vector<std::string> &v) {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k)
    s += (k ? ", " : "") + v[k];
  return s;
}

std::string percent(double num, double den) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", den > 0 ? 100.0 * num / den : 0.0);
  return buf;
}

/// The kernel `name` of the file, or its only kernel when `name` is empty.
const dsl::Kernel *chooseKernel(const dsl::Module &ast, const std::string &fileName,
                                const std::string &name, std::string &err) {
  std::vector<std::string> names;
  for (const auto &k : ast.kernels)
    names.push_back(k.name);
  if (!name.empty()) {
    if (const dsl::Kernel *k = ast.findKernel(name))
      return k;
    err += "attnc: error: " + fileName + " has no kernel named '" + name + "' (it has: " +
           join(names) + ")\n";
    return nullptr;
  }
  if (ast.kernels.size() == 1)
    return &ast.kernels[0];
  err += "attnc: error: " + fileName + " has " + std::to_string(ast.kernels.size()) +
         " kernels; choose one with --kernel (" + join(names) + ")\n";
  return nullptr;
}

std::string trimmed(std::string m) {
  while (!m.empty() && m.back() == '\n')
    m.pop_back();
  return m;
}

// ---------------------------------------------------------------------------
// Aux inputs (--in): exact per-tile summaries of the mask's aux reads.

/// An aux tensor given with --in, with its declared dimension names.
struct AuxInput {
  runtime::HostTensor tensor;
  std::vector<std::string> dimNames;
};

/// The --in tensors as the evaluator's aux source, bounds checked.
class InputSource : public AuxSource {
public:
  explicit InputSource(const std::map<std::string, AuxInput> &aux) : aux_(aux) {}
  bool has(llvm::StringRef tensor) const override { return aux_.count(tensor.str()); }
  std::optional<int64_t> read(llvm::StringRef tensor, llvm::ArrayRef<int64_t> indices,
                              std::string &err) const override {
    const AuxInput &in = aux_.at(tensor.str());
    const runtime::HostTensor &t = in.tensor;
    int64_t flat = 0;
    for (size_t d = 0; d < indices.size(); ++d) {
      int64_t idx = indices[d], extent = t.shape[d];
      if (idx < 0 || idx >= extent) {
        err = "index " + std::to_string(idx) + " of dimension " + std::to_string(d) + " (" +
              in.dimNames[d] + ") of '" + tensor.str() + "' is outside [0, " +
              std::to_string(extent) + ")";
        return std::nullopt;
      }
      flat = flat * extent + idx;
    }
    return t.getInt(flat);
  }

private:
  const std::map<std::string, AuxInput> &aux_;
};

/// The i1 value the mask region yields.
mlir::Value maskResultValue(KernelOp kernel) {
  return llvm::cast<YieldOp>(kernel.getMask().front().getTerminator()).getValue();
}

/// Text of an index expression of a load, for the printed summary lines.
std::string indexText(mlir::Value v, int depth = 0) {
  static const char *args[4] = {"b", "h", "i", "j"};
  if (auto arg = llvm::dyn_cast<mlir::BlockArgument>(v))
    return arg.getArgNumber() < 4 ? args[arg.getArgNumber()] : "?";
  mlir::Operation *op = v.getDefiningOp();
  if (!op || depth > 6)
    return "...";
  if (auto c = llvm::dyn_cast<mlir::arith::ConstantOp>(op))
    if (auto attr = llvm::dyn_cast<mlir::IntegerAttr>(c.getValue()))
      return std::to_string(attr.getValue().getSExtValue());
  if (auto s = llvm::dyn_cast<SizeOp>(op))
    return s.getName().str();
  if (auto p = llvm::dyn_cast<ParamOp>(op))
    return p.getName().str();
  if (llvm::isa<mlir::arith::ExtSIOp, mlir::arith::ExtUIOp, mlir::arith::TruncIOp>(op))
    return indexText(op->getOperand(0), depth);
  if (auto load = llvm::dyn_cast<LoadOp>(op)) {
    std::string s = load.getTensor().str() + "[";
    for (size_t k = 0; k < load.getIndices().size(); ++k)
      s += (k ? ", " : "") + indexText(load.getIndices()[k], depth + 1);
    return s + "]";
  }
  const char *sym = llvm::isa<mlir::arith::AddIOp>(op)        ? " + "
                    : llvm::isa<mlir::arith::SubIOp>(op)      ? " - "
                    : llvm::isa<mlir::arith::MulIOp>(op)      ? " * "
                    : llvm::isa<mlir::arith::FloorDivSIOp>(op) ? " / "
                                                               : nullptr;
  if (sym && op->getNumOperands() == 2)
    return "(" + indexText(op->getOperand(0), depth + 1) + sym +
           indexText(op->getOperand(1), depth + 1) + ")";
  if (auto mn = llvm::dyn_cast<mlir::arith::MinSIOp>(op))
    return "min(" + indexText(mn.getLhs(), depth + 1) + ", " + indexText(mn.getRhs(), depth + 1) + ")";
  if (auto mx = llvm::dyn_cast<mlir::arith::MaxSIOp>(op))
    return "max(" + indexText(mx.getLhs(), depth + 1) + ", " + indexText(mx.getRhs(), depth + 1) + ")";
  return "...";
}

} // namespace

bool buildTileMap(const TileMapRequest &req, TileMapResult &result, std::string &err) {
  // Option names in messages: the CLI's flags or the API's words.
  auto flag = [&](const char *cli, const char *api) { return std::string(req.cliNames ? cli : api); };
  const std::string sizeFlag = flag("--size ", "size "), paramFlag = flag("--param ", "param "),
                    inFlag = flag("--in ", "aux tensor ");
  auto origin = [&](const std::string &name) {
    auto it = req.auxOrigin.find(name);
    return it == req.auxOrigin.end() ? std::string() : it->second;
  };
  std::string out;
  dsl::DiagnosticEngine diag(req.fileName, req.source);
  std::optional<dsl::Module> ast = dsl::parseAndCheck(req.fileName, req.source, diag);
  err += diag.render();
  if (!ast)
    return false;
  const dsl::Kernel *kernel = chooseKernel(*ast, req.fileName, req.kernel, err);
  if (!kernel)
    return false;

  // Sizes: every given name must be a size of the kernel, a positive i32.
  const std::map<std::string, std::string> &sizeText = req.sizes, &paramText = req.params;
  std::vector<std::string> sizeNames = kernel->sizeNames();
  std::map<std::string, int64_t> sizes;
  for (auto &[name, text] : sizeText) {
    if (std::find(sizeNames.begin(), sizeNames.end(), name) == sizeNames.end()) {
      err += "attnc: error: " + sizeFlag + name + ": kernel '" + kernel->name +
             "' has no size named '" + name + "' (sizes: " + join(sizeNames) + ")\n";
      return false;
    }
    int64_t v = 0;
    if (!parseInt(text, v) || v < 1 || v > INT32_MAX) {
      err += "attnc: error: " + sizeFlag + name + "=" + text +
             ": expected an integer between 1 and 2147483647\n";
      return false;
    }
    sizes[name] = v;
  }
  // Params: given values or defaults; integer and bool ones feed the analysis.
  std::map<std::string, int64_t> intParams;
  std::set<std::string> unboundParams;
  for (auto &[name, text] : paramText)
    if (!kernel->findParam(name)) {
      err += "attnc: error: " + paramFlag + name + ": kernel '" + kernel->name +
             "' has no param named '" + name + "'\n";
      return false;
    }
  for (const dsl::ParamDecl &p : kernel->params) {
    auto it = paramText.find(p.name);
    bool isInt = p.type == dsl::ElemType::I32 || p.type == dsl::ElemType::I64;
    bool isBool = p.type == dsl::ElemType::Bool;
    if (it == paramText.end()) {
      if (!p.defaultValue) {
        unboundParams.insert(p.name);
        continue;
      }
      if (isInt)
        intParams[p.name] = p.defaultValue->i;
      else if (isBool)
        intParams[p.name] = p.defaultValue->b ? 1 : 0;
      continue;
    }
    int64_t v = 0;
    const std::string &text = it->second;
    if (isBool) {
      if (text == "true" || text == "1")
        v = 1;
      else if (text != "false" && text != "0") {
        err += "attnc: error: " + paramFlag + p.name + "=" + text + ": expected true or false\n";
        return false;
      }
    } else if (isInt) {
      bool in32 = p.type == dsl::ElemType::I32;
      if (!parseInt(text, v) || (in32 && (v < INT32_MIN || v > INT32_MAX))) {
        err += "attnc: error: " + paramFlag + p.name + "=" + text + ": expected an " +
               (in32 ? "i32" : "i64") + " integer\n";
        return false;
      }
    } else {
      char *end = nullptr;
      std::strtod(text.c_str(), &end);
      if (text.empty() || *end) {
        err += "attnc: error: " + paramFlag + p.name + "=" + text + ": expected a number\n";
        return false;
      }
      continue; // float params make a mask non-affine; not used by the analysis
    }
    intParams[p.name] = v;
  }
  int64_t tileQ = 0, tileK = 0;
  {
    size_t x = req.tile.find('x');
    if (x == std::string::npos || !parseInt(req.tile.substr(0, x), tileQ) ||
        !parseInt(req.tile.substr(x + 1), tileK) || tileQ < 1 || tileK < 1 ||
        tileQ > INT32_MAX || tileK > INT32_MAX) {
      err += "attnc: error: " + flag("--tile", "tile") + " expects QxK with positive integers, got '" + req.tile + "'\n";
      return false;
    }
  }

  // Aux inputs: each must be an aux tensor of the kernel whose shape matches
  // its declared dims; sizes not given with --size are taken from the files.
  std::map<std::string, AuxInput> aux;
  std::map<std::string, std::string> sizeFrom; // size -> the tensor that bound it
  for (auto &[name, given] : req.aux) {
    const dsl::TensorDecl *t = kernel->findTensor(name);
    if (!t || t->role != dsl::TensorRole::Aux) {
      std::vector<std::string> auxNames;
      for (const dsl::TensorDecl &d : kernel->tensors)
        if (d.role == dsl::TensorRole::Aux)
          auxNames.push_back(d.name);
      err += "attnc: error: " + inFlag + name + ": " +
             (t ? "'" + name + "' is q, k or v; viz reads only aux tensors"
                : "kernel '" + kernel->name + "' has no tensor named '" + name + "'") +
             " (aux tensors: " + (auxNames.empty() ? "none" : join(auxNames)) + ")\n";
      return false;
    }
    const std::string path = origin(name);
    const std::string inPath = path.empty() ? std::string() : " in " + path;
    if (given.type != t->type) {
      err += "attnc: error: " + inFlag + name + ": '" + name + "' is declared " +
             dsl::toString(t->type) + " but the tensor" + inPath + " is " + given.describe() + "\n";
      return false;
    }
    if (given.bytes.size() != static_cast<size_t>(given.numel()) * runtime::elemSize(given.type)) {
      err += "attnc: error: " + inFlag + name + ": the tensor" + inPath + " holds " +
             std::to_string(given.bytes.size()) + " bytes, not the " +
             std::to_string(given.numel() * runtime::elemSize(given.type)) + " of " +
             given.describe() + "\n";
      return false;
    }
    AuxInput in;
    in.tensor = given;
    std::string declared;
    for (size_t d = 0; d < t->dims.size(); ++d) {
      const dsl::Dim &dim = t->dims[d];
      in.dimNames.push_back(dim.isLiteral() ? std::to_string(dim.value) : dim.name);
      declared += (d ? ", " : "") + in.dimNames.back();
    }
    declared = "'" + name + "' is declared [" + declared + "]";
    if (in.tensor.rank() != static_cast<int>(t->dims.size())) {
      err += "attnc: error: " + inFlag + name + ": " + declared + " (rank " +
             std::to_string(t->dims.size()) + ") but " + (path.empty() ? "the tensor" : path) +
             " holds " +
             in.tensor.describe() + " (rank " + std::to_string(in.tensor.rank()) + ")\n";
      return false;
    }
    for (size_t d = 0; d < t->dims.size(); ++d) {
      const dsl::Dim &dim = t->dims[d];
      int64_t got = in.tensor.shape[d];
      std::string where = "dimension " + std::to_string(d) + " (" + in.dimNames[d] + ") of '" +
                          name + "' is " + std::to_string(got) + inPath;
      if (dim.isLiteral()) {
        if (got != dim.value) {
          err += "attnc: error: " + inFlag + name + ": " + where + " but is declared " +
                 std::to_string(dim.value) + "\n";
          return false;
        }
        continue;
      }
      auto it = sizes.find(dim.name);
      if (it == sizes.end()) {
        if (got < 1 || got > INT32_MAX) {
          err += "attnc: error: " + inFlag + name + ": " + where + "; sizes must be between 1 and "
                 "2147483647\n";
          return false;
        }
        sizes[dim.name] = got;
        sizeFrom[dim.name] = name;
      } else if (got != it->second) {
        auto from = sizeFrom.find(dim.name);
        err += "attnc: error: " + inFlag + name + ": " + where + " but " + dim.name + " = " +
               std::to_string(it->second) +
               (from != sizeFrom.end() ? " (from " + inFlag + from->second + ")"
                                       : " (" + sizeFlag + dim.name + "=" +
                                             std::to_string(it->second) + ")") +
               "\n";
        return false;
      }
    }
    aux.emplace(name, std::move(in));
  }

  // Lower through the default pipeline (canonicalize, cse, analyses).
  mlir::MLIRContext ctx;
  std::string diagText;
  llvm::raw_string_ostream os(diagText);
  mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
    os << "attnc: internal error: " << d << "\n";
    return mlir::success();
  });
  mlir::OwningOpRef<mlir::ModuleOp> module = mlirGen(ctx, *ast);
  if (module) {
    mlir::PassManager pm(&ctx);
    buildDefaultPipeline(pm);
    if (mlir::failed(pm.run(*module)))
      module = nullptr;
  }
  if (!module) {
    err += os.str();
    return false;
  }
  KernelOp op;
  module->walk([&](KernelOp k) {
    if (k.getSymName() == kernel->name)
      op = k;
  });
  if (!op) {
    err += "attnc: error: internal: kernel '" + kernel->name + "' missing after lowering\n";
    return false;
  }

  // The sizes the picture needs: Lq, Lk and those the mask reads; params
  // the mask reads need values.
  auto need = [&](const std::string &name, const char *what) -> bool {
    int64_t literal = 0;
    if (sizes.count(name) || parseInt(name, literal))
      return true;
    err += "attnc: error: missing " + sizeFlag + name + "=N (" + what + ")\n";
    return false;
  };
  std::string lqName = dimName(op, "q", 2), lkName = dimName(op, "k", 2);
  if (!need(lqName, "the number of queries") || !need(lkName, "the number of keys"))
    return false;
  bool missing = false;
  op.getMask().walk([&](mlir::Operation *o) {
    if (missing)
      return;
    if (auto s = llvm::dyn_cast<SizeOp>(o))
      missing = !need(s.getName().str(), "read by the mask");
    else if (auto p = llvm::dyn_cast<ParamOp>(o); p && unboundParams.count(p.getName().str())) {
      err += "attnc: error: missing " + paramFlag + p.getName().str() +
             "=VALUE (read by the mask; it has no default)\n";
      missing = true;
    }
  });
  if (missing)
    return false;
  auto value = [&](const std::string &name) {
    int64_t v = 0;
    return sizes.count(name) ? sizes[name] : (parseInt(name, v) ? v : 0);
  };
  int64_t Lq = value(lqName), Lk = value(lkName);
  std::string bName = dimName(op, "q", 0), hName = dimName(op, "q", 1);
  int64_t B = value(bName), H = value(hName);
  if (req.batch < 0 || (B > 0 && req.batch >= B) || req.head < 0 || (H > 0 && req.head >= H)) {
    err += "attnc: error: " + flag("--batch/--head", "batch/head") + " out of range for the given sizes\n";
    return false;
  }

  int64_t rows = (Lq + tileQ - 1) / tileQ, cols = (Lk + tileK - 1) / tileK;
  if (rows * cols > (int64_t(1) << 26)) {
    err += "attnc: error: " + std::to_string(rows) + " x " + std::to_string(cols) +
           " tiles is too many to draw; use a larger " + flag("--tile", "tile") + "\n";
    return false;
  }
  TileMapOptions mapOptions;
  mapOptions.b = req.batch;
  mapOptions.h = req.head;

  // Aux reads of the mask: with the tensor given, loads that follow the
  // query tile, the key block or only (b, h) get the exact [min, max] of the
  // values they read per tile (one evaluation per row i or key j, then one
  // reduction per tile); pair loads stay conservative.
  std::vector<std::string> auxLines;
  std::map<std::string, bool> auxRead; // tensor -> read by the mask
  llvm::DenseMap<mlir::Operation *, std::vector<IntRange>> loadTiles; // per tile index
  llvm::DenseMap<mlir::Operation *, LoadSummary> loadKinds;
  auto pointText = [&](const char *var, int64_t x) {
    return " at b = " + std::to_string(req.batch) + ", h = " + std::to_string(req.head) +
           (var ? std::string(", ") + var + " = " + std::to_string(x) : std::string());
  };
  std::string auxError;
  op.getMask().walk([&](LoadOp load) {
    if (!auxError.empty())
      return;
    std::string name = load.getTensor().str();
    auxRead[name] = true;
    std::string text = indexText(load.getResult());
    LoadSummary summary = loadSummary(load);
    const char *granularity = summary == LoadSummary::QueryTile  ? "per query tile"
                              : summary == LoadSummary::KeyBlock ? "per key block"
                              : summary == LoadSummary::Uniform  ? "one value for (b, h)"
                                                                 : nullptr;
    if (!llvm::isa<mlir::IntegerType>(load.getType())) {
      auxLines.push_back("aux read " + text + ": not summarised (float values)");
      return;
    }
    if (!granularity) {
      auxLines.push_back("aux read " + text +
                         ": not summarised (indices depend on both i and j; conservative)");
      return;
    }
    if (!aux.count(name)) {
      auxLines.push_back("aux read " + text + ": not summarised (" +
                         (req.cliNames ? "no --in " + name + "=FILE.npy"
                                       : "no aux tensor " + name + " given") +
                         "; conservative)");
      return;
    }
    SliceEvaluator slice;
    std::string why;
    InputSource source(aux);
    if (!slice.compile(load.getResult(), sizes, intParams, &source, why)) {
      auxLines.push_back("aux read " + text + ": not summarised (" + why + "; conservative)");
      return;
    }
    std::vector<IntRange> ranges;
    auto evalAt = [&](int64_t i, int64_t j, const char *var, int64_t x) -> std::optional<int64_t> {
      std::string e;
      std::optional<int64_t> r = slice.eval(req.batch, req.head, i, j, e);
      if (!r)
        auxError = "attnc: error: aux read " + text + ": " + e + pointText(var, x) + "\n";
      return r;
    };
    auto reduce = [&](int64_t n, int64_t tile, bool byRow) {
      int64_t count = (n + tile - 1) / tile;
      ranges.assign(count, IntRange{INT64_MAX, INT64_MIN});
      for (int64_t x = 0; x < n; ++x) {
        std::optional<int64_t> r =
            byRow ? evalAt(x, 0, "i", x) : evalAt(0, x, "j", x);
        if (!r)
          return false;
        IntRange &t = ranges[x / tile];
        t.lo = std::min(t.lo, *r), t.hi = std::max(t.hi, *r);
      }
      return true;
    };
    if (summary == LoadSummary::QueryTile) {
      if (!reduce(Lq, tileQ, true))
        return;
    } else if (summary == LoadSummary::KeyBlock) {
      if (!reduce(Lk, tileK, false))
        return;
    } else {
      std::optional<int64_t> r = evalAt(0, 0, nullptr, 0);
      if (!r)
        return;
      ranges.assign(1, IntRange::point(*r));
    }
    loadTiles[load.getOperation()] = std::move(ranges);
    loadKinds[load.getOperation()] = summary;
    auxLines.push_back("aux read " + text + ": summarised " + granularity + " from " +
                       (origin(name).empty() ? "the tensor given" : origin(name)));
  });
  if (!auxError.empty()) {
    err += auxError;
    return false;
  }
  for (auto &[name, in] : aux)
    if (!auxRead.count(name))
      auxLines.push_back("aux input " + name + ": not read by the mask; ignored");
  if (!loadTiles.empty())
    mapOptions.loadRange = [&](LoadOp load, int64_t qt, int64_t kb) -> std::optional<IntRange> {
      auto it = loadTiles.find(load.getOperation());
      if (it == loadTiles.end())
        return std::nullopt;
      LoadSummary k = loadKinds.lookup(load.getOperation());
      size_t idx = k == LoadSummary::QueryTile ? size_t(qt)
                   : k == LoadSummary::KeyBlock ? size_t(kb)
                                                : 0;
      return idx < it->second.size() ? std::optional<IntRange>(it->second[idx]) : std::nullopt;
    };
  std::vector<TileClass> tiles =
      classifyTiles(op, sizes, intParams, tileQ, tileK, Lq, Lk, mapOptions);

  // Counts, and the pairs that take part: exact when the mask can be
  // evaluated without inputs (per pair in partial tiles only), else bounds.
  int64_t count[3] = {0, 0, 0}, area[3] = {0, 0, 0};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      TileClass t = tiles[r * cols + c];
      ++count[static_cast<int>(t)];
      area[static_cast<int>(t)] +=
          (std::min(Lq, (r + 1) * tileQ) - r * tileQ) * (std::min(Lk, (c + 1) * tileK) - c * tileK);
    }
  double total = double(Lq) * double(Lk), ntiles = double(rows * cols);
  MaskKind kind = maskKind(op);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "kernel %s: mask %s, Lq = %lld, Lk = %lld, b = %lld, h = %lld\n"
                "grid: %lld x %lld tiles of %lld x %lld (query tiles x key blocks)\n",
                kernel->name.c_str(), toString(kind), (long long)Lq, (long long)Lk,
                (long long)req.batch, (long long)req.head, (long long)rows, (long long)cols,
                (long long)tileQ, (long long)tileK);
  out += buf;
  for (const std::string &line : auxLines)
    out += line + "\n";
  const char *names[3] = {"empty", "partial", "full"};
  for (int k = 0; k < 3; ++k) {
    std::snprintf(buf, sizeof buf, "%-8s %lld tiles (%s)\n", (std::string(names[k]) + ":").c_str(),
                  (long long)count[k], percent(count[k], ntiles).c_str());
    out += buf;
  }

  // The exact count when the mask can be evaluated per pair (every aux read
  // it makes given with --in): full tiles count whole, partial ones pair by
  // pair.
  InputSource source(aux);
  SliceEvaluator whole;
  std::string whyNot;
  if (whole.compile(maskResultValue(op), sizes, intParams, &source, whyNot)) {
    int64_t pairs = area[2];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        if (tiles[r * cols + c] != TileClass::Partial)
          continue;
        for (int64_t i = r * tileQ; i < std::min(Lq, (r + 1) * tileQ); ++i)
          for (int64_t j = c * tileK; j < std::min(Lk, (c + 1) * tileK); ++j) {
            std::string e;
            std::optional<int64_t> m = whole.eval(req.batch, req.head, i, j, e);
            if (!m) {
              err += "attnc: error: the mask: " + e + " at (b, h, i, j) = (" +
                     std::to_string(req.batch) + ", " + std::to_string(req.head) + ", " +
                     std::to_string(i) + ", " + std::to_string(j) + ")\n";
              return false;
            }
            pairs += *m != 0;
          }
      }
    std::snprintf(buf, sizeof buf, "pairs taking part: %lld of %.0f (%s)\n", (long long)pairs,
                  total, percent(double(pairs), total).c_str());
  } else {
    std::snprintf(buf, sizeof buf,
                  "pairs taking part: between %s and %s (%s)\n",
                  percent(double(area[2]), total).c_str(),
                  percent(double(area[1] + area[2]), total).c_str(),
                  aux.empty() ? "the mask needs inputs to evaluate"
                              : ("the mask cannot be evaluated: " + whyNot).c_str());
  }
  out += buf;
  out += std::string("legend (swatches left to right): empty = ") + colorName(TileClass::Empty) +
         ", partial = " + colorName(TileClass::Partial) + ", full = " + colorName(TileClass::Full) +
         "\n";
  result.kernel = kernel->name;
  result.Lq = Lq, result.Lk = Lk, result.tileQ = tileQ, result.tileK = tileK;
  result.rows = rows, result.cols = cols;
  result.tiles = std::move(tiles);
  result.summary = std::move(out);
  return true;
}

bool runViz(const VizRequest &req, std::string &out, std::string &err) {
  TileMapRequest map;
  map.fileName = req.fileName, map.source = req.source, map.kernel = req.kernel;
  map.sizes = req.sizes, map.params = req.params, map.tile = req.tile;
  map.batch = req.batch, map.head = req.head;
  map.cliNames = true;
  // The --in files: aux tensors only, each read as its declared type.
  if (!req.inputs.empty()) {
    dsl::DiagnosticEngine diag(req.fileName, req.source);
    std::optional<dsl::Module> ast = dsl::parseAndCheck(req.fileName, req.source, diag);
    const dsl::Kernel *kernel = ast ? chooseKernel(*ast, req.fileName, req.kernel, err) : nullptr;
    if (!ast)
      err += diag.render();
    if (!kernel)
      return false;
    for (auto &[name, path] : req.inputs) {
      const dsl::TensorDecl *t = kernel->findTensor(name);
      if (!t || t->role != dsl::TensorRole::Aux) {
        map.aux[name] = runtime::HostTensor(); // buildTileMap names the problem
        break;
      }
      runtime::HostTensor tensor;
      if (runtime::Status st = runtime::readNpyAs(path, name, t->type, tensor); !st) {
        err += "attnc: error: --in " + name + ": " + trimmed(st.message()) + "\n";
        return false;
      }
      map.aux[name] = std::move(tensor);
      map.auxOrigin[name] = path;
    }
  }
  TileMapResult result;
  if (!buildTileMap(map, result, err))
    return false;
  if (!writeTileMapPng(req.output, result.tiles, result.rows, result.cols, 0, err))
    return false;
  out += result.summary;
  out += "wrote " + req.output + "\n";
  return true;
}

} // namespace attn
