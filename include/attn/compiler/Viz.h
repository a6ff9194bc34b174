// `attnc viz` (LANGUAGE.md §7): the tile classes of a kernel's mask over the
// (i, j) plane for given sizes, as a PNG and a printed summary. The tile
// map is also callable without files (buildTileMap), for the Python binding.
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
/// On error appends a message to `err` and returns false; no
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

} // namespace attn
