// `attnc viz`: lowers a kernel, classifies the tiles of its mask with
// MaskAnalysis and renders them as a PNG with libspng (see Viz.h).
#include "attn/compiler/Viz.h"

#include "attn/compiler/MLIRGen.h"
#include "attn/compiler/Passes.h"
#include "attn/dsl/Sema.h"

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

} // namespace

bool runViz(const VizRequest &req, std::string &out, std::string &err) {
  dsl::DiagnosticEngine diag(req.fileName, req.source);
  std::optional<dsl::Module> ast = dsl::parseAndCheck(req.fileName, req.source, diag);
  err += diag.render();
  if (!ast)
    return false;
  const dsl::Kernel *kernel = nullptr;
  if (!req.kernel.empty()) {
    kernel = ast->findKernel(req.kernel);
    if (!kernel) {
      std::vector<std::string> names;
      for (const auto &k : ast->kernels)
        names.push_back(k.name);
      err += "attnc: error: " + req.fileName + " has no kernel named '" + req.kernel +
             "' (it has: " + join(names) + ")\n";
      return false;
    }
  } else if (ast->kernels.size() == 1) {
    kernel = &ast->kernels[0];
  } else {
    std::vector<std::string> names;
    for (const auto &k : ast->kernels)
      names.push_back(k.name);
    err += "attnc: error: " + req.fileName + " has " + std::to_string(ast->kernels.size()) +
           " kernels; choose one with --kernel (" + join(names) + ")\n";
    return false;
  }

  // Sizes: every given name must be a size of the kernel, a positive i32.
  const std::map<std::string, std::string> &sizeText = req.sizes, &paramText = req.params;
  std::vector<std::string> sizeNames = kernel->sizeNames();
  std::map<std::string, int64_t> sizes;
  for (auto &[name, text] : sizeText) {
    if (std::find(sizeNames.begin(), sizeNames.end(), name) == sizeNames.end()) {
      err += "attnc: error: --size " + name + ": kernel '" + kernel->name +
             "' has no size named '" + name + "' (sizes: " + join(sizeNames) + ")\n";
      return false;
    }
    int64_t v = 0;
    if (!parseInt(text, v) || v < 1 || v > INT32_MAX) {
      err += "attnc: error: --size " + name + "=" + text +
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
      err += "attnc: error: --param " + name + ": kernel '" + kernel->name +
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
        err += "attnc: error: --param " + p.name + "=" + text + ": expected true or false\n";
        return false;
      }
    } else if (isInt) {
      bool in32 = p.type == dsl::ElemType::I32;
      if (!parseInt(text, v) || (in32 && (v < INT32_MIN || v > INT32_MAX))) {
        err += "attnc: error: --param " + p.name + "=" + text + ": expected an " +
               (in32 ? "i32" : "i64") + " integer\n";
        return false;
      }
    } else {
      char *end = nullptr;
      std::strtod(text.c_str(), &end);
      if (text.empty() || *end) {
        err += "attnc: error: --param " + p.name + "=" + text + ": expected a number\n";
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
      err += "attnc: error: --tile expects QxK with positive integers, got '" + req.tile + "'\n";
      return false;
    }
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
    err += "attnc: error: missing --size " + name + "=N (" + what + ")\n";
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
      err += "attnc: error: missing --param " + p.getName().str() +
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
    err += "attnc: error: --batch/--head out of range for the given sizes\n";
    return false;
  }

  int64_t rows = (Lq + tileQ - 1) / tileQ, cols = (Lk + tileK - 1) / tileK;
  if (rows * cols > (int64_t(1) << 26)) {
    err += "attnc: error: " + std::to_string(rows) + " x " + std::to_string(cols) +
           " tiles is too many to draw; use a larger --tile\n";
    return false;
  }
  TileMapOptions mapOptions;
  mapOptions.b = req.batch;
  mapOptions.h = req.head;
  std::vector<TileClass> tiles =
      classifyTiles(op, sizes, intParams, tileQ, tileK, Lq, Lk, mapOptions);
  if (!writeTileMapPng(req.output, tiles, rows, cols, 0, err))
    return false;

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
  const char *names[3] = {"empty", "partial", "full"};
  for (int k = 0; k < 3; ++k) {
    std::snprintf(buf, sizeof buf, "%-8s %lld tiles (%s)\n", (std::string(names[k]) + ":").c_str(),
                  (long long)count[k], percent(count[k], ntiles).c_str());
    out += buf;
  }

  MaskEvaluator eval(op, sizes, intParams);
  if (eval.ok()) {
    int64_t pairs = area[2];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        if (tiles[r * cols + c] != TileClass::Partial)
          continue;
        for (int64_t i = r * tileQ; i < std::min(Lq, (r + 1) * tileQ); ++i)
          for (int64_t j = c * tileK; j < std::min(Lk, (c + 1) * tileK); ++j) {
            std::optional<bool> m = eval.eval(req.batch, req.head, i, j);
            if (!m) {
              err += "attnc: error: the mask divides by zero at (b, h, i, j) = (" +
                     std::to_string(req.batch) + ", " + std::to_string(req.head) + ", " +
                     std::to_string(i) + ", " + std::to_string(j) + ")\n";
              std::remove(req.output.c_str());
              return false;
            }
            pairs += *m;
          }
      }
    std::snprintf(buf, sizeof buf, "pairs taking part: %lld of %.0f (%s)\n", (long long)pairs,
                  total, percent(double(pairs), total).c_str());
  } else {
    std::snprintf(buf, sizeof buf,
                  "pairs taking part: between %s and %s (the mask needs inputs to evaluate)\n",
                  percent(double(area[2]), total).c_str(),
                  percent(double(area[1] + area[2]), total).c_str());
  }
  out += buf;
  out += std::string("legend (swatches left to right): empty = ") + colorName(TileClass::Empty) +
         ", partial = " + colorName(TileClass::Partial) + ", full = " + colorName(TileClass::Full) +
         "\n";
  out += "wrote " + req.output + "\n";
  return true;
}

} // namespace attn
