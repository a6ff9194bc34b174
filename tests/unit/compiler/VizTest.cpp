// Unit tests of the programmatic viz API (Viz.h): tile maps built from
// in-memory sources and aux tensors, and heatmap PNGs decoded back with
// libspng and checked pixel by pixel.
#include "attn/compiler/Viz.h"

#include <gtest/gtest.h>

#include <spng.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace attn;

namespace {

const char *kCausal = "attention causal {\n  q: f32[B, H, L, D]\n  k: f32[B, H, L, D]\n"
                      "  v: f32[B, H, L, D]\n  mask = j <= i\n}\n";
const char *kDocs = "attention docs {\n  q: f32[B, H, L, D]\n  k: f32[B, H, L, D]\n"
                    "  v: f32[B, H, L, D]\n  doc: i32[B, L]\n"
                    "  mask = doc[b, i] == doc[b, j] && j <= i && doc[b, i] >= 0\n}\n";

/// doc ids [1, L]: 4 documents of L / 4 tokens.
runtime::HostTensor docIds(int64_t L) {
  runtime::HostTensor t(dsl::ElemType::I32, {1, L});
  for (int64_t n = 0; n < L; ++n)
    t.setDouble(n, static_cast<double>(n / (L / 4)));
  return t;
}

std::string tempPath(const char *name) {
  return testing::TempDir() + "attnc-viz-" + std::to_string(getpid()) + "-" + name;
}

bool exists(const std::string &path) { return std::ifstream(path).good(); }

/// A decoded PNG as 8-bit RGB.
struct Png {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
  VizColor at(int64_t x, int64_t y) const {
    const uint8_t *p = &rgb[static_cast<size_t>((y * width + x) * 3)];
    return {p[0], p[1], p[2]};
  }
};

bool decodePng(const std::string &path, Png &png) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  spng_ctx *ctx = spng_ctx_new(0);
  bool ok = ctx && spng_set_png_buffer(ctx, bytes.data(), bytes.size()) == 0;
  spng_ihdr ihdr{};
  size_t size = 0;
  ok = ok && spng_get_ihdr(ctx, &ihdr) == 0 &&
       spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size) == 0;
  if (ok) {
    png.width = ihdr.width, png.height = ihdr.height;
    png.rgb.resize(size);
    ok = spng_decode_image(ctx, png.rgb.data(), size, SPNG_FMT_RGB8, 0) == 0;
  }
  spng_ctx_free(ctx);
  return ok;
}

bool same(VizColor a, VizColor b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

std::string text(VizColor c) {
  return "(" + std::to_string(c.r) + ", " + std::to_string(c.g) + ", " + std::to_string(c.b) + ")";
}

} // namespace

TEST(TileMapApi, CausalTilesFromSourceText) {
  TileMapRequest req;
  req.source = kCausal;
  req.sizes = {{"L", "256"}};
  req.tile = "64x64";
  TileMapResult r;
  std::string err;
  ASSERT_TRUE(buildTileMap(req, r, err)) << err;
  EXPECT_EQ(r.kernel, "causal");
  EXPECT_EQ(r.rows, 4);
  EXPECT_EQ(r.cols, 4);
  EXPECT_EQ(r.Lq, 256);
  ASSERT_EQ(r.tiles.size(), 16u);
  for (int64_t q = 0; q < 4; ++q)
    for (int64_t k = 0; k < 4; ++k) {
      TileClass want = k < q ? TileClass::Full : k == q ? TileClass::Partial : TileClass::Empty;
      EXPECT_EQ(r.tiles[q * 4 + k], want) << q << " " << k;
    }
  EXPECT_NE(r.summary.find("pairs taking part: 32896 of 65536"), std::string::npos) << r.summary;
  EXPECT_EQ(r.summary.find("wrote"), std::string::npos) << "nothing is written";
}

TEST(TileMapApi, AuxTensorsInMemory) {
  TileMapRequest req;
  req.source = kDocs;
  req.aux.emplace("doc", docIds(256)); // L and B come from its shape
  req.tile = "64x64";
  TileMapResult r;
  std::string err;
  ASSERT_TRUE(buildTileMap(req, r, err)) << err;
  int count[3] = {0, 0, 0};
  for (TileClass t : r.tiles)
    ++count[static_cast<int>(t)];
  EXPECT_EQ(count[static_cast<int>(TileClass::Empty)], 12);
  EXPECT_EQ(count[static_cast<int>(TileClass::Partial)], 4);
  EXPECT_NE(r.summary.find("aux read doc[b, i]: summarised per query tile from the tensor given"),
            std::string::npos)
      << r.summary;
  EXPECT_NE(r.summary.find("pairs taking part: 8320 of 65536"), std::string::npos) << r.summary;

  // Without the tensor the tiles stay conservatively partial.
  TileMapRequest none = req;
  none.aux.clear();
  none.sizes = {{"L", "256"}};
  TileMapResult c;
  ASSERT_TRUE(buildTileMap(none, c, err)) << err;
  for (TileClass t : c.tiles)
    EXPECT_NE(t, TileClass::Full);
  EXPECT_NE(c.summary.find("no aux tensor doc given"), std::string::npos) << c.summary;
}

TEST(TileMapApi, ErrorsNameTheTensorAndDimension) {
  auto fails = [](TileMapRequest req, const std::string &want) {
    TileMapResult r;
    std::string err;
    EXPECT_FALSE(buildTileMap(req, r, err));
    EXPECT_NE(err.find(want), std::string::npos) << err;
    EXPECT_TRUE(r.tiles.empty());
  };
  TileMapRequest req;
  req.source = kDocs;
  req.sizes = {{"L", "256"}};
  req.aux.emplace("doc", docIds(200));
  fails(req, "attnc: error: aux tensor doc: dimension 1 (L) of 'doc' is 200 but L = 256 "
             "(size L=256)");
  req.aux.clear();
  req.aux.emplace("doc", runtime::HostTensor(dsl::ElemType::F32, {1, 256}));
  fails(req, "attnc: error: aux tensor doc: 'doc' is declared i32 but the tensor is f32[1, 256]");
  req.aux.clear();
  req.aux.emplace("doc", runtime::HostTensor(dsl::ElemType::I32, {256}));
  fails(req, "'doc' is declared [B, L] (rank 2) but the tensor holds i32[256] (rank 1)");
  req.aux.clear();
  req.aux.emplace("q", runtime::HostTensor(dsl::ElemType::F32, {1, 1, 256, 4}));
  fails(req, "aux tensor q: 'q' is q, k or v; viz reads only aux tensors");
  TileMapRequest causal;
  causal.source = kCausal;
  fails(causal, "attnc: error: missing size L=N (the number of queries)");
  causal.sizes = {{"L", "64"}};
  causal.kernel = "other";
  fails(causal, "has no kernel named 'other' (it has: causal)");
}

TEST(HeatmapPng, SmallPlaneCellsMaskAndColourBar) {
  // 5 x 7 weights: row i has weight (j + 1) / 8 for j <= i + 1 and is
  // masked beyond; the largest weight 0.875 at (5 - 1, 6)... rows 0..4.
  const int64_t rows = 5, cols = 7;
  std::vector<double> w(rows * cols, 0);
  std::vector<uint8_t> part(rows * cols, 0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j <= std::min<int64_t>(i + 1, cols - 1); ++j) {
      part[i * cols + j] = 1;
      w[i * cols + j] = j == 0 ? 0.0 : double(j + 1) / 8;
    }
  std::string path = tempPath("small.png"), err;
  std::remove(path.c_str());
  HeatmapLayout L;
  ASSERT_TRUE(writeHeatmapPng(path, w.data(), rows, cols, &part, "title\nsubtitle", err, &L)) << err;
  Png png;
  ASSERT_TRUE(decodePng(path, png));
  EXPECT_EQ(png.width, L.width);
  EXPECT_EQ(png.height, L.height);
  // Square cells, nearest neighbour: 640 / 7 = 91 is capped at 48.
  EXPECT_EQ(L.cellW, 48);
  EXPECT_EQ(L.cellH, 48);
  EXPECT_EQ(L.blockW, 1);
  EXPECT_EQ(L.mapWidth, 7 * 48);
  EXPECT_EQ(L.mapHeight, 5 * 48);
  EXPECT_EQ(L.vmin, 0.0);
  EXPECT_EQ(L.vmax, 0.75); // row 4 reaches j = 5: 6 / 8
  EXPECT_FALSE(L.clipped) << "fewer than 256 pairs: never clipped";
  auto cell = [&](int64_t i, int64_t j, int64_t dx = 24, int64_t dy = 24) {
    return png.at(L.left + j * L.cellW + dx, L.top + i * L.cellH + dy);
  };
  VizColor top = heatmapColor(1), bottom = heatmapColor(0);
  EXPECT_TRUE(same(cell(4, 5), top)) << text(cell(4, 5));
  EXPECT_TRUE(same(cell(4, 5, 1, 1), top)) << "every pixel of the cell";
  EXPECT_TRUE(same(cell(4, 5, 47, 47), top));
  EXPECT_TRUE(same(cell(4, 5, 47, 1), top));
  // 48-pixel cells: a faint white line on each cell's first row and column.
  VizColor line = cell(4, 5, 0, 10);
  EXPECT_GT(line.b, top.b) << text(line);
  EXPECT_LT(line.r + line.g + line.b, 3 * 255);
  EXPECT_TRUE(same(cell(4, 5, 10, 0), line));
  EXPECT_TRUE(same(cell(2, 0), bottom)) << "weight 0 taking part: the scale's bottom";
  EXPECT_TRUE(same(cell(0, 6), kHeatmapMasked)) << "masked: light gray, not the scale's 0";
  EXPECT_FALSE(same(kHeatmapMasked, bottom));
  EXPECT_TRUE(same(cell(2, 2), heatmapColor(0.375 / 0.75)));
  // The map is framed; the colour bar's top and bottom ends are the scale's.
  EXPECT_FALSE(same(png.at(L.left - 1, L.top + 10), VizColor{255, 255, 255}));
  int64_t barX = L.left + L.mapWidth + 22 + 7;
  EXPECT_TRUE(same(png.at(barX, L.top), top)) << text(png.at(barX, L.top));
  int64_t barBottom = L.top + std::max<int64_t>(L.mapHeight, 120) - 1;
  EXPECT_TRUE(same(png.at(barX, barBottom), bottom)) << text(png.at(barX, barBottom));
  // Text: the title area above the map is not blank.
  int64_t inked = 0;
  for (int64_t y = 0; y < L.top - 4; ++y)
    for (int64_t x = 0; x < L.width; ++x)
      inked += png.at(x, y).r < 128;
  EXPECT_GT(inked, 40) << "the title is drawn";
  std::remove(path.c_str());
}

TEST(HeatmapPng, LargePlanesShowEachBlocksLargestWeight) {
  const int64_t rows = 2000, cols = 1500;
  std::vector<double> w(rows * cols, 0.001);
  w[1001 * cols + 777] = 0.5;
  std::string path = tempPath("large.png"), err;
  HeatmapLayout L;
  ASSERT_TRUE(writeHeatmapPng(path, w.data(), rows, cols, nullptr, "large", err, &L)) << err;
  EXPECT_EQ(L.blockH, 4); // ceil(2000 / 640), also used along the keys
  EXPECT_EQ(L.blockW, 4);
  EXPECT_EQ(L.cellW, 1);
  EXPECT_EQ(L.mapWidth, 375);
  EXPECT_EQ(L.mapHeight, 500);
  Png png;
  ASSERT_TRUE(decodePng(path, png));
  EXPECT_EQ(png.width, L.width);
  EXPECT_TRUE(same(png.at(L.left + 777 / 4, L.top + 1001 / 4), heatmapColor(1)));
  // One weight dwarfs the 3 million others: the colours saturate at their
  // level (the 99th percentile, 0.001 to within the histogram's 0.5 / 4096,
  // rounded up to two digits), so they are not all black.
  EXPECT_TRUE(L.clipped);
  EXPECT_EQ(L.largest, 0.5);
  EXPECT_GE(L.vmax, 0.001);
  EXPECT_LE(L.vmax, 0.001 + 0.5 / 4096 + 1e-4);
  VizColor rest = png.at(L.left + 777 / 4 + 1, L.top + 1001 / 4);
  EXPECT_TRUE(same(rest, heatmapColor(0.001 / L.vmax))) << text(rest);
  EXPECT_GT(rest.r, 150) << "a light colour, not the scale's black";
  std::remove(path.c_str());
}

TEST(HeatmapPng, OneQueryIsAStripOfTallCells) {
  std::vector<double> w(300, 1.0 / 300);
  w[147] = 0.5;
  std::string path = tempPath("strip.png"), err;
  HeatmapLayout L;
  ASSERT_TRUE(writeHeatmapPng(path, w.data(), 1, 300, nullptr, "decode", err, &L)) << err;
  EXPECT_EQ(L.cellW, 2);    // 640 / 300
  EXPECT_EQ(L.cellH, 120);  // not 2: at least 120 pixels high
  EXPECT_EQ(L.mapWidth, 600);
  EXPECT_EQ(L.mapHeight, 120);
  Png png;
  ASSERT_TRUE(decodePng(path, png));
  EXPECT_TRUE(same(png.at(L.left + 147 * 2 + 1, L.top + 100), heatmapColor(1)));
  EXPECT_EQ(L.vmin, 0.0);
  EXPECT_TRUE(L.clipped);
  EXPECT_TRUE(same(png.at(L.left + 146 * 2 + 1, L.top + 100), heatmapColor((1.0 / 300) / L.vmax)));
  std::remove(path.c_str());
}

TEST(HeatmapPng, ErrorsWriteNothing) {
  std::vector<double> w(4, 0.25);
  std::string path = tempPath("bad.png"), err;
  std::remove(path.c_str());
  std::vector<uint8_t> part(3, 1);
  EXPECT_FALSE(writeHeatmapPng(path, w.data(), 2, 2, &part, "t", err));
  EXPECT_NE(err.find("the participation map has 3 entries for 2 x 2 weights"), std::string::npos)
      << err;
  EXPECT_FALSE(exists(path));
  err.clear();
  EXPECT_FALSE(writeHeatmapPng(path, w.data(), 0, 2, nullptr, "t", err));
  EXPECT_FALSE(exists(path));

  const char *old = std::getenv("ATTNC_FONT");
  std::string saved = old ? old : "";
  setenv("ATTNC_FONT", "/nonexistent/NoSuchFont.ttf", 1);
  err.clear();
  EXPECT_FALSE(writeHeatmapPng(path, w.data(), 2, 2, nullptr, "t", err));
  EXPECT_NE(err.find("the heatmap's font /nonexistent/NoSuchFont.ttf cannot be read"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("fonts-dejavu-core"), std::string::npos) << err;
  EXPECT_FALSE(exists(path));
  if (old)
    setenv("ATTNC_FONT", saved.c_str(), 1);
  else
    unsetenv("ATTNC_FONT");
}

TEST(HeatmapPng, ColourMapIsMagmaFromDarkToLight) {
  VizColor lo = heatmapColor(0), mid = heatmapColor(0.5), hi = heatmapColor(1);
  EXPECT_TRUE(same(lo, VizColor{0, 0, 4})) << text(lo);
  EXPECT_TRUE(same(hi, VizColor{252, 253, 191})) << text(hi);
  EXPECT_TRUE(same(heatmapColor(-3), lo));
  EXPECT_TRUE(same(heatmapColor(7), hi));
  // Lightness grows along the map (perceptual order): check a luma proxy.
  double prev = -1;
  for (int k = 0; k <= 32; ++k) {
    VizColor c = heatmapColor(k / 32.0);
    double luma = 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;
    EXPECT_GT(luma, prev) << k;
    prev = luma;
  }
  (void)mid;
}
