// `attnc viz` (LANGUAGE.md §7): the tile classes of a kernel's mask over the
// (i, j) plane for given sizes, as a PNG and a printed summary; with
// --heatmap, the float64 reference's attention weights of one (b, h) as a
// PNG heatmap. The tile map and the heatmap writer are also callable without
// files (buildTileMap, writeHeatmapPng), for the Python binding.
#pragma once

#include "attn/compiler/MaskAnalysis.h"
#include "attn/runtime/Tensor.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace attn {

struct VizRequest {
  std::string fileName, source; // the .attn file and its text
  std::string kernel;           // may be empty when the file has one kernel
  std::map<std::string, std::string> sizes, params; // --size / --param NAME -> VALUE text
  /// --in NAME -> .npy path: aux tensors the mask reads. Loads whose indices
  /// follow the query tile, the key block or only (b, h) get the exact
  /// per-tile [min, max] of the values read; unbound sizes are taken from
  /// the files' shapes.
  std::map<std::string, std::string> inputs;
  std::string tile = "64x128";  // QxK: the CPU kernels' query tile x key block
  int64_t batch = 0, head = 0;  // the (b, h) whose plane is drawn
  std::string output;           // the PNG path
  /// --heatmap: draw the reference's attention weights of (batch, head)
  /// instead of the tile classes; `inputs` then holds q, k, v and the aux
  /// tensors, the sizes come from their shapes (no `sizes`), `tile` is unused.
  bool heatmap = false;
};

/// A tile map of one (b, h) plane with every input in memory.
struct TileMapRequest {
  std::string fileName = "<source>", source; // names the source in diagnostics
  std::string kernel;                        // may be empty with one kernel
  std::map<std::string, std::string> sizes, params; // NAME -> VALUE text
  /// Aux tensors the mask reads, of their declared element types; sizes not
  /// in `sizes` are taken from their shapes (as VizRequest::inputs).
  std::map<std::string, runtime::HostTensor> aux;
  /// Optional: where an aux tensor came from (a path), quoted in messages.
  std::map<std::string, std::string> auxOrigin;
  std::string tile = "64x128"; // QxK
  int64_t batch = 0, head = 0;
  /// Messages name the CLI's options (`--size L=N`, `--in doc`) rather than
  /// `size L=N` and `aux tensor doc`.
  bool cliNames = false;
};

struct TileMapResult {
  std::string kernel;             // the kernel's name
  int64_t Lq = 0, Lk = 0, tileQ = 0, tileK = 0;
  int64_t rows = 0, cols = 0;     // query tiles x key blocks
  std::vector<TileClass> tiles;   // rows * cols, row-major (tile (r, c) at r * cols + c)
  std::string summary;            // runViz's printed summary, less the "wrote" line
};

/// Parses and lowers the source, classifies the tiles of one (b, h) plane
/// and fills `result`. On error appends a message to `err` and returns false.
bool buildTileMap(const TileMapRequest &request, TileMapResult &result, std::string &err);

/// Reads the --in files, builds the tile map (buildTileMap), writes the PNG
/// and appends the summary (grid, tile
/// counts and fractions, fraction of pairs taking part, legend) to `out`.
/// With `inputs`, prints one line per aux read of the mask saying how it was
/// summarised, and the exact pairs when the whole mask can be evaluated.
/// With `heatmap`, draws the weights instead (see writeHeatmapPng) and prints
/// what was drawn. On error appends a message to `err` and returns false; no
/// PNG is written.
bool runViz(const VizRequest &request, std::string &out, std::string &err);

/// Colors of the tile classes in the PNG (RGB).
struct VizColor {
  uint8_t r, g, b;
};
VizColor vizColor(TileClass c);

/// Writes a PNG with one `cell`×`cell` pixel square per tile (rows = query
/// tiles from the top, columns = key blocks from the left) and a legend strip
/// of the three class colors below the map. `cell` 0 picks a size that keeps
/// the map readable (at most ~1024 pixels a side when the grid allows).
bool writeTileMapPng(const std::string &path, const std::vector<TileClass> &tiles,
                     int64_t rows, int64_t cols, int cell, std::string &err);

/// How writeHeatmapPng laid the picture out. The weight of pair (i, j) is
/// drawn in the pixels [left + (j / blockW) * cellW, + cellW) x
/// [top + (i / blockH) * cellH, + cellH): small planes get cellW x cellH
/// pixels per pair (nearest neighbour, blockW = blockH = 1; square cells of
/// up to 48 pixels while the map stays within 640, taller or wider ones when
/// an axis would be under 120 pixels), large ones one pixel per blockW x
/// blockH pairs (cellW = cellH = 1; past 640 pairs along an axis) showing the
/// block's largest weight. Cells of 14 pixels or more are separated by a
/// faint white line on their first row and column.
struct HeatmapLayout {
  int64_t width = 0, height = 0;   // the PNG
  int64_t left = 0, top = 0;       // the map's top-left pixel
  int64_t mapWidth = 0, mapHeight = 0;
  int64_t cellW = 1, cellH = 1;    // pixels per pair
  int64_t blockW = 1, blockH = 1;  // pairs per pixel
  double vmin = 0, vmax = 1;       // the colour scale's ends
  /// vmax is under the largest weight: colours saturate at it (see
  /// writeHeatmapPng).
  bool clipped = false;
  double largest = 0;              // the largest weight taking part
};

/// The heatmap's colour of t in [0, 1] (clamped): matplotlib's magma, a
/// perceptually uniform map from black through purple to light yellow,
/// tabulated at 256 points and interpolated linearly.
VizColor heatmapColor(double t);
/// Pairs that do not take part (masked or score -inf): light gray.
inline constexpr VizColor kHeatmapMasked{224, 224, 224};
/// A NaN weight.
inline constexpr VizColor kHeatmapNaN{214, 39, 40};

/// The title `attnc viz --heatmap` gives the weights of (b, h): the
/// kernel's name, then "attention weights of b = .., h = .. · normalize =
/// .. · Lq × Lk".
std::string heatmapTitle(const dsl::Kernel &kernel, int64_t b, int64_t h, int64_t Lq, int64_t Lk);

/// The font the heatmap's text uses: $ATTNC_FONT, else DejaVu Sans from
/// Debian's fonts-dejavu-core.
std::string heatmapFontPath();

/// Writes `w` (rows x cols, row-major: rows are query positions i drawn top
/// to bottom, columns key positions j left to right) as a PNG heatmap: the
/// title (a first line in bold; further lines after '\n' smaller, in gray),
/// tick-labelled axes ("query position i" down the left, "key position j"
/// along the bottom), a colour bar over [vmin, vmax] = [min(0, smallest
/// weight), largest weight] of the pairs taking part, and pairs whose
/// `participates` byte is 0 (nullptr: all take part) in kHeatmapMasked with a
/// "masked" swatch under the colour bar. When a few weights dwarf the rest
/// (at least 256 pairs take part and their 99th percentile is under a
/// quarter of the largest weight), vmax is that percentile rounded up to two
/// digits: larger weights get the top colour, the colour bar a triangle on
/// top, and the title a line saying so. Text is rasterised with FreeType
/// from heatmapFontPath(); a missing font is an error. On error appends a
/// message to `err`, writes nothing and returns false.
bool writeHeatmapPng(const std::string &path, const double *w, int64_t rows, int64_t cols,
                     const std::vector<uint8_t> *participates, const std::string &title,
                     std::string &err, HeatmapLayout *layout = nullptr);

} // namespace attn
