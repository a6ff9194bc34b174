// `attnc viz`: lowers a kernel, classifies the tiles of its mask with
// MaskAnalysis and renders them as a PNG with libspng; `--heatmap` draws the
// float64 reference's weights with text rasterised by FreeType (see Viz.h).
#include "attn/compiler/Viz.h"

#include "attn/compiler/MLIRGen.h"
#include "attn/compiler/Passes.h"
#include "attn/dsl/Sema.h"
#include "attn/runtime/Bind.h"
#include "attn/runtime/Npy.h"
#include "attn/runtime/Reference.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <spng.h>

#include <ft2build.h>
#include FT_FREETYPE_H

#include <algorithm>
#include <functional>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
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

// ---------------------------------------------------------------------------
// The heatmap of attention weights (writeHeatmapPng, `attnc viz --heatmap`).

namespace {

/// matplotlib's magma (CC0; van der Walt and Smith), 256 points in 8-bit sRGB.
const uint8_t kMagma[256][3] = {
    {0, 0, 4}, {1, 0, 5}, {1, 1, 6}, {1, 1, 8}, {2, 1, 9}, {2, 2, 11}, {2, 2, 13}, {3, 3, 15},
    {3, 3, 18}, {4, 4, 20}, {5, 4, 22}, {6, 5, 24}, {6, 5, 26}, {7, 6, 28}, {8, 7, 30}, {9, 7, 32},
    {10, 8, 34}, {11, 9, 36}, {12, 9, 38}, {13, 10, 41}, {14, 11, 43}, {16, 11, 45}, {17, 12, 47}, {18, 13, 49},
    {19, 13, 52}, {20, 14, 54}, {21, 14, 56}, {22, 15, 59}, {24, 15, 61}, {25, 16, 63}, {26, 16, 66}, {28, 16, 68},
    {29, 17, 71}, {30, 17, 73}, {32, 17, 75}, {33, 17, 78}, {34, 17, 80}, {36, 18, 83}, {37, 18, 85}, {39, 18, 88},
    {41, 17, 90}, {42, 17, 92}, {44, 17, 95}, {45, 17, 97}, {47, 17, 99}, {49, 17, 101}, {51, 16, 103}, {52, 16, 105},
    {54, 16, 107}, {56, 16, 108}, {57, 15, 110}, {59, 15, 112}, {61, 15, 113}, {63, 15, 114}, {64, 15, 116}, {66, 15, 117},
    {68, 15, 118}, {69, 16, 119}, {71, 16, 120}, {73, 16, 120}, {74, 16, 121}, {76, 17, 122}, {78, 17, 123}, {79, 18, 123},
    {81, 18, 124}, {82, 19, 124}, {84, 19, 125}, {86, 20, 125}, {87, 21, 126}, {89, 21, 126}, {90, 22, 126}, {92, 22, 127},
    {93, 23, 127}, {95, 24, 127}, {96, 24, 128}, {98, 25, 128}, {100, 26, 128}, {101, 26, 128}, {103, 27, 128}, {104, 28, 129},
    {106, 28, 129}, {107, 29, 129}, {109, 29, 129}, {110, 30, 129}, {112, 31, 129}, {114, 31, 129}, {115, 32, 129}, {117, 33, 129},
    {118, 33, 129}, {120, 34, 129}, {121, 34, 130}, {123, 35, 130}, {124, 35, 130}, {126, 36, 130}, {128, 37, 130}, {129, 37, 129},
    {131, 38, 129}, {132, 38, 129}, {134, 39, 129}, {136, 39, 129}, {137, 40, 129}, {139, 41, 129}, {140, 41, 129}, {142, 42, 129},
    {144, 42, 129}, {145, 43, 129}, {147, 43, 128}, {148, 44, 128}, {150, 44, 128}, {152, 45, 128}, {153, 45, 128}, {155, 46, 127},
    {156, 46, 127}, {158, 47, 127}, {160, 47, 127}, {161, 48, 126}, {163, 48, 126}, {165, 49, 126}, {166, 49, 125}, {168, 50, 125},
    {170, 51, 125}, {171, 51, 124}, {173, 52, 124}, {174, 52, 123}, {176, 53, 123}, {178, 53, 123}, {179, 54, 122}, {181, 54, 122},
    {183, 55, 121}, {184, 55, 121}, {186, 56, 120}, {188, 57, 120}, {189, 57, 119}, {191, 58, 119}, {192, 58, 118}, {194, 59, 117},
    {196, 60, 117}, {197, 60, 116}, {199, 61, 115}, {200, 62, 115}, {202, 62, 114}, {204, 63, 113}, {205, 64, 113}, {207, 64, 112},
    {208, 65, 111}, {210, 66, 111}, {211, 67, 110}, {213, 68, 109}, {214, 69, 108}, {216, 69, 108}, {217, 70, 107}, {219, 71, 106},
    {220, 72, 105}, {222, 73, 104}, {223, 74, 104}, {224, 76, 103}, {226, 77, 102}, {227, 78, 101}, {228, 79, 100}, {229, 80, 100},
    {231, 82, 99}, {232, 83, 98}, {233, 84, 98}, {234, 86, 97}, {235, 87, 96}, {236, 88, 96}, {237, 90, 95}, {238, 91, 94},
    {239, 93, 94}, {240, 95, 94}, {241, 96, 93}, {242, 98, 93}, {242, 100, 92}, {243, 101, 92}, {244, 103, 92}, {244, 105, 92},
    {245, 107, 92}, {246, 108, 92}, {246, 110, 92}, {247, 112, 92}, {247, 114, 92}, {248, 116, 92}, {248, 118, 92}, {249, 120, 93},
    {249, 121, 93}, {249, 123, 93}, {250, 125, 94}, {250, 127, 94}, {250, 129, 95}, {251, 131, 95}, {251, 133, 96}, {251, 135, 97},
    {252, 137, 97}, {252, 138, 98}, {252, 140, 99}, {252, 142, 100}, {252, 144, 101}, {253, 146, 102}, {253, 148, 103}, {253, 150, 104},
    {253, 152, 105}, {253, 154, 106}, {253, 155, 107}, {254, 157, 108}, {254, 159, 109}, {254, 161, 110}, {254, 163, 111}, {254, 165, 113},
    {254, 167, 114}, {254, 169, 115}, {254, 170, 116}, {254, 172, 118}, {254, 174, 119}, {254, 176, 120}, {254, 178, 122}, {254, 180, 123},
    {254, 182, 124}, {254, 183, 126}, {254, 185, 127}, {254, 187, 129}, {254, 189, 130}, {254, 191, 132}, {254, 193, 133}, {254, 194, 135},
    {254, 196, 136}, {254, 198, 138}, {254, 200, 140}, {254, 202, 141}, {254, 204, 143}, {254, 205, 144}, {254, 207, 146}, {254, 209, 148},
    {254, 211, 149}, {254, 213, 151}, {254, 215, 153}, {254, 216, 154}, {253, 218, 156}, {253, 220, 158}, {253, 222, 160}, {253, 224, 161},
    {253, 226, 163}, {253, 227, 165}, {253, 229, 167}, {253, 231, 169}, {253, 233, 170}, {253, 235, 172}, {252, 236, 174}, {252, 238, 176},
    {252, 240, 178}, {252, 242, 180}, {252, 244, 182}, {252, 246, 184}, {252, 247, 185}, {252, 249, 187}, {252, 251, 189}, {252, 253, 191},
};

/// An RGB picture, white to begin with.
struct Canvas {
  int64_t width, height;
  std::vector<uint8_t> rgb;
  Canvas(int64_t w, int64_t h) : width(w), height(h), rgb(static_cast<size_t>(w * h * 3), 255) {}
  void put(int64_t x, int64_t y, VizColor c) {
    if (x < 0 || y < 0 || x >= width || y >= height)
      return;
    uint8_t *p = &rgb[static_cast<size_t>((y * width + x) * 3)];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  /// Covers (x, y) with `c` at coverage a/255.
  void blend(int64_t x, int64_t y, VizColor c, unsigned a) {
    if (x < 0 || y < 0 || x >= width || y >= height || a == 0)
      return;
    uint8_t *p = &rgb[static_cast<size_t>((y * width + x) * 3)];
    auto mix = [a](uint8_t dst, uint8_t src) {
      return static_cast<uint8_t>((src * a + dst * (255 - a) + 127) / 255);
    };
    p[0] = mix(p[0], c.r), p[1] = mix(p[1], c.g), p[2] = mix(p[2], c.b);
  }
  void fill(int64_t x0, int64_t y0, int64_t w, int64_t h, VizColor c) {
    for (int64_t y = y0; y < y0 + h; ++y)
      for (int64_t x = x0; x < x0 + w; ++x)
        put(x, y, c);
  }
  /// A one-pixel outline just outside [x0, x0 + w) x [y0, y0 + h).
  void frame(int64_t x0, int64_t y0, int64_t w, int64_t h, VizColor c) {
    fill(x0 - 1, y0 - 1, w + 2, 1, c);
    fill(x0 - 1, y0 + h, w + 2, 1, c);
    fill(x0 - 1, y0, 1, h, c);
    fill(x0 + w, y0, 1, h, c);
  }
};

/// A line of text rasterised as coverage: `height` rows of `width`, the
/// baseline `ascent` rows from the top.
struct TextImage {
  int64_t width = 0, height = 0, ascent = 0;
  std::vector<uint8_t> alpha;
  uint8_t at(int64_t x, int64_t y) const { return alpha[static_cast<size_t>(y * width + x)]; }
};

/// Decodes UTF-8 (the titles' "·" and "×"); bad bytes become '?'.
std::vector<uint32_t> codePoints(const std::string &s) {
  std::vector<uint32_t> out;
  for (size_t k = 0; k < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[k]);
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0 || k + n >= s.size() + (n == 0 ? 1 : 0)) {
      out.push_back('?');
      ++k;
      continue;
    }
    uint32_t cp = n == 0 ? c : c & (0x3f >> n);
    bool ok = true;
    for (int m = 1; m <= n; ++m) {
      unsigned char d = static_cast<unsigned char>(s[k + m]);
      ok &= (d >> 6) == 2;
      cp = (cp << 6) | (d & 0x3f);
    }
    out.push_back(ok ? cp : '?');
    k += ok ? n + 1 : 1;
  }
  return out;
}

/// FreeType faces: regular text and, where the font has a bold sibling, bold.
class Fonts {
public:
  ~Fonts() {
    if (bold_ && bold_ != regular_)
      FT_Done_Face(bold_);
    if (regular_)
      FT_Done_Face(regular_);
    if (lib_)
      FT_Done_FreeType(lib_);
  }
  bool open(const std::string &path, std::string &err) {
    if (std::FILE *f = std::fopen(path.c_str(), "rb")) {
      std::fclose(f);
    } else {
      err += "attnc: error: the heatmap's font " + path + " cannot be read (" +
             std::strerror(errno) +
             "); install Debian's fonts-dejavu-core or set ATTNC_FONT to a TrueType font\n";
      return false;
    }
    if (FT_Init_FreeType(&lib_) != 0) {
      lib_ = nullptr;
      err += "attnc: error: FreeType does not initialise\n";
      return false;
    }
    if (FT_New_Face(lib_, path.c_str(), 0, &regular_) != 0) {
      regular_ = nullptr;
      err += "attnc: error: FreeType cannot load the font " + path + "\n";
      return false;
    }
    bold_ = regular_;
    const std::string suffix = ".ttf";
    if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string boldPath = path.substr(0, path.size() - suffix.size()) + "-Bold.ttf";
      FT_Face b = nullptr;
      if (FT_New_Face(lib_, boldPath.c_str(), 0, &b) == 0)
        bold_ = b;
    }
    return true;
  }

  /// Rasterises `text` at `px` pixels per em (antialiased, kerned).
  TextImage render(const std::string &text, int px, bool bold = false) const {
    FT_Face face = bold ? bold_ : regular_;
    FT_Set_Pixel_Sizes(face, 0, static_cast<FT_UInt>(px));
    TextImage img;
    img.ascent = (face->size->metrics.ascender + 63) >> 6;
    int64_t descent = (-face->size->metrics.descender + 63) >> 6;
    img.height = img.ascent + descent;
    std::vector<uint32_t> cps = codePoints(text);
    // Two passes: the width, then the glyphs. Pen positions in 26.6 fixed
    // point so advances keep their fractions.
    for (int pass = 0; pass < 2; ++pass) {
      FT_Pos pen = 0;
      FT_UInt prev = 0;
      int64_t right = 0;
      for (uint32_t cp : cps) {
        FT_UInt glyph = FT_Get_Char_Index(face, cp);
        if (prev && glyph && FT_HAS_KERNING(face)) {
          FT_Vector k;
          if (FT_Get_Kerning(face, prev, glyph, FT_KERNING_DEFAULT, &k) == 0)
            pen += k.x;
        }
        if (FT_Load_Glyph(face, glyph, FT_LOAD_RENDER | FT_LOAD_TARGET_LIGHT) != 0)
          continue;
        FT_GlyphSlot slot = face->glyph;
        const FT_Bitmap &bm = slot->bitmap;
        int64_t x0 = ((pen + 32) >> 6) + slot->bitmap_left;
        right = std::max(right, x0 + static_cast<int64_t>(bm.width));
        if (pass == 1 && bm.pixel_mode == FT_PIXEL_MODE_GRAY)
          for (unsigned r = 0; r < bm.rows; ++r)
            for (unsigned c = 0; c < bm.width; ++c) {
              int64_t x = x0 + c, y = img.ascent - slot->bitmap_top + r;
              if (x < 0 || y < 0 || x >= img.width || y >= img.height)
                continue;
              uint8_t &dst = img.alpha[static_cast<size_t>(y * img.width + x)];
              dst = std::max(dst, bm.buffer[r * bm.pitch + c]);
            }
        pen += slot->advance.x;
        prev = glyph;
      }
      if (pass == 0) {
        img.width = std::max<int64_t>(right, (pen + 63) >> 6);
        img.alpha.assign(static_cast<size_t>(img.width * img.height), 0);
      }
    }
    return img;
  }

private:
  FT_Library lib_ = nullptr;
  FT_Face regular_ = nullptr, bold_ = nullptr;
};

/// Draws `t` with its top-left at (x, y); `rotated`: turned a quarter turn
/// counter-clockwise (read bottom to top), `t.height` wide and `t.width` high.
void drawText(Canvas &canvas, const TextImage &t, int64_t x, int64_t y, VizColor c,
              bool rotated = false) {
  for (int64_t r = 0; r < t.height; ++r)
    for (int64_t k = 0; k < t.width; ++k) {
      uint8_t a = t.at(k, r);
      if (!a)
        continue;
      if (rotated)
        canvas.blend(x + r, y + (t.width - 1 - k), c, a);
      else
        canvas.blend(x + k, y + r, c, a);
    }
}

/// The smallest step of 1, 2 or 5 times a power of ten that is >= `least`.
double niceStep(double least) {
  if (!(least > 0))
    return 1;
  double p = std::pow(10.0, std::floor(std::log10(least)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= least * (1 - 1e-12))
      return m * p;
  return 10 * p;
}

/// A value label with as many decimals as the tick step needs.
std::string tickLabel(double v, double step) {
  int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, std::fabs(v) < step * 1e-9 ? 0.0 : v);
  std::string text = buf;
  if (!text.empty() && text[0] == '-')
    text = "\u2212" + text.substr(1); // a typographic minus, as wide as a digit
  return text;
}

} // namespace

VizColor heatmapColor(double t) {
  if (!(t > 0))
    t = 0;
  if (t > 1)
    t = 1;
  double x = t * 255;
  int k = std::min(254, static_cast<int>(x));
  double f = x - k;
  auto lerp = [&](int c) {
    return static_cast<uint8_t>(std::lround(kMagma[k][c] + f * (kMagma[k + 1][c] - kMagma[k][c])));
  };
  return {lerp(0), lerp(1), lerp(2)};
}

std::string heatmapFontPath() {
  if (const char *p = std::getenv("ATTNC_FONT"); p && *p)
    return p;
  return ATTNC_DEFAULT_FONT;
}

bool writeHeatmapPng(const std::string &path, const double *w, int64_t rows, int64_t cols,
                     const std::vector<uint8_t> *participates, const std::string &title,
                     std::string &err, HeatmapLayout *layoutOut) {
  if (rows <= 0 || cols <= 0 || !w) {
    err += "attnc: error: the weights to draw are empty (" + std::to_string(rows) + " x " +
           std::to_string(cols) + ")\n";
    return false;
  }
  if (participates && static_cast<int64_t>(participates->size()) != rows * cols) {
    err += "attnc: error: the participation map has " + std::to_string(participates->size()) +
           " entries for " + std::to_string(rows) + " x " + std::to_string(cols) + " weights\n";
    return false;
  }
  Fonts fonts;
  if (!fonts.open(heatmapFontPath(), err))
    return false;
  auto takesPart = [&](int64_t n) { return !participates || (*participates)[n] != 0; };

  // The colour scale: [min(0, smallest), largest] over the pairs taking part.
  double lo = 0, hi = -std::numeric_limits<double>::infinity();
  bool anyMasked = false;
  for (int64_t n = 0; n < rows * cols; ++n) {
    if (!takesPart(n)) {
      anyMasked = true;
      continue;
    }
    if (std::isnan(w[n]))
      continue;
    lo = std::min(lo, w[n]);
    hi = std::max(hi, w[n]);
  }
  if (!(hi > lo))
    hi = lo + 1; // nothing but zeros (or nothing at all) to tell apart
  if (std::isinf(lo) || std::isinf(hi)) {
    err += "attnc: error: the weights are infinite; nothing to draw on a colour scale\n";
    return false;
  }
  // A few large weights (the first rows of causal attention, where a query
  // sees one key) would leave everything else at the bottom of a linear
  // scale: with at least 256 pairs taking part, when the 99th percentile is
  // under a quarter of the largest weight, the colours saturate there
  // (rounded up to two digits), the colour bar gets a triangle on top and
  // the title says so.
  const double largest = hi;
  bool clipped = false;
  {
    const int bins = 4096;
    std::vector<int64_t> hist(bins, 0);
    int64_t count = 0;
    for (int64_t n = 0; n < rows * cols; ++n)
      if (takesPart(n) && !std::isnan(w[n])) {
        int b = static_cast<int>((w[n] - lo) / (largest - lo) * bins);
        ++hist[std::min(bins - 1, std::max(0, b))];
        ++count;
      }
    int64_t want = (count * 99 + 99) / 100, seen = 0;
    int b = 0;
    for (; b < bins && seen + hist[b] < want; ++b)
      seen += hist[b];
    double q = lo + (largest - lo) * (b + 1) / bins;
    if (count >= 256 && q - lo < 0.25 * (largest - lo) && q > 0) {
      double p = std::pow(10.0, std::floor(std::log10(q)) - 1);
      double top = std::ceil(q / p - 1e-9) * p;
      if (top < largest && top > lo)
        hi = top, clipped = true;
    }
  }

  // Map scale: up to 48 pixels per pair (square cells) while the map stays
  // within ~640 pixels; beyond 640 pairs along an axis, one pixel per block
  // of pairs (the same block size along both axes when both are large).
  const int64_t target = 640, maxCell = 48;
  HeatmapLayout L;
  auto axis = [&](int64_t n, int64_t &cell, int64_t &block) {
    if (n <= target)
      cell = std::max<int64_t>(1, std::min(maxCell, target / n)), block = 1;
    else
      cell = 1, block = (n + target - 1) / target;
  };
  axis(rows, L.cellH, L.blockH);
  axis(cols, L.cellW, L.blockW);
  if (L.blockH == 1 && L.blockW == 1)
    L.cellH = L.cellW = std::min(L.cellH, L.cellW);
  else if (L.blockH > 1 && L.blockW > 1)
    L.blockH = L.blockW = std::max(L.blockH, L.blockW);
  // A few queries (decoding) or keys: taller (wider) cells, so the map is
  // never thinner than its axis title.
  const int64_t minExtent = 120;
  if (L.blockH == 1 && rows * L.cellH < minExtent)
    L.cellH = (minExtent + rows - 1) / rows;
  if (L.blockW == 1 && cols * L.cellW < minExtent)
    L.cellW = (minExtent + cols - 1) / cols;
  L.mapWidth = (cols + L.blockW - 1) / L.blockW * L.cellW;
  L.mapHeight = (rows + L.blockH - 1) / L.blockH * L.cellH;
  L.vmin = lo, L.vmax = hi;
  L.clipped = clipped, L.largest = largest;

  const VizColor ink{34, 34, 34}, gray{96, 96, 96}, axisColor{64, 64, 64};
  const int titlePx = 16, subtitlePx = 12, tickPx = 11, labelPx = 12;
  const int64_t pad = 16, tickLen = 4, tickGap = 3;

  // Title lines: the first bold, the rest smaller in gray.
  std::vector<TextImage> titleLines;
  {
    size_t start = 0;
    for (bool first = true; start <= title.size(); first = false) {
      size_t nl = title.find('\n', start);
      std::string line = title.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (!line.empty())
        titleLines.push_back(fonts.render(line, first ? titlePx : subtitlePx, first));
      if (nl == std::string::npos)
        break;
      start = nl + 1;
    }
    if (clipped) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "colours saturate at %g, the 99th percentile (largest weight %.3g)", hi,
                    largest);
      titleLines.push_back(fonts.render(buf, subtitlePx));
    }
  }

  // Axis ticks: index positions every 1, 2 or 5 x 10^k pairs, at least
  // ~the label's width (x) or 24 pixels (y) apart.
  auto indexTicks = [&](int64_t n, double pxPerPair, double minGap) {
    double step = std::max(1.0, niceStep(minGap / pxPerPair));
    std::vector<int64_t> t;
    for (double v = 0; v < n; v += step)
      t.push_back(static_cast<int64_t>(v));
    return t;
  };
  double pxPerCol = double(L.cellW) / double(L.blockW), pxPerRow = double(L.cellH) / double(L.blockH);
  int64_t widestX = fonts.render(std::to_string(cols - 1), tickPx).width;
  std::vector<int64_t> xTicks = indexTicks(cols, pxPerCol, std::max<double>(widestX + 14, 28));
  std::vector<int64_t> yTicks = indexTicks(rows, pxPerRow, 24);
  std::vector<TextImage> xLabels, yLabels;
  int64_t yLabelWidth = 0;
  for (int64_t t : xTicks)
    xLabels.push_back(fonts.render(std::to_string(t), tickPx));
  for (int64_t t : yTicks) {
    yLabels.push_back(fonts.render(std::to_string(t), tickPx));
    yLabelWidth = std::max(yLabelWidth, yLabels.back().width);
  }
  TextImage xTitle = fonts.render("key position j", labelPx);
  TextImage yTitle = fonts.render("query position i", labelPx);

  // Colour bar ticks.
  double cStep = niceStep((hi - lo) / 5);
  std::vector<double> cTicks;
  for (double v = std::ceil(lo / cStep - 1e-9) * cStep; v <= hi + cStep * 1e-9; v += cStep)
    cTicks.push_back(v);
  std::vector<TextImage> cLabels;
  int64_t cLabelWidth = 0;
  for (double v : cTicks) {
    cLabels.push_back(fonts.render(tickLabel(v, cStep), tickPx));
    cLabelWidth = std::max(cLabelWidth, cLabels.back().width);
  }
  TextImage cTitle = fonts.render("weight", labelPx);
  TextImage maskedText = fonts.render("masked", tickPx);

  // Layout, left to right: y title, tick labels, map, colour bar, labels.
  int64_t titleHeight = 0;
  for (const TextImage &t : titleLines)
    titleHeight += t.height + 2;
  L.left = pad + yTitle.height + 8 + yLabelWidth + tickGap + tickLen + 1;
  L.top = pad + titleHeight + 14;
  const int64_t barGap = 22, barWidth = 14;
  int64_t barLeft = L.left + L.mapWidth + barGap;
  int64_t barHeight = std::max<int64_t>(L.mapHeight, minExtent);
  int64_t swatch = 12;
  int64_t legendHeight = anyMasked ? 12 + swatch : 0;
  int64_t rightEdge = barLeft + barWidth + tickLen + tickGap + cLabelWidth + 8 + cTitle.height;
  if (anyMasked)
    rightEdge = std::max(rightEdge, barLeft + swatch + 6 + maskedText.width);
  int64_t width = rightEdge + pad;
  int64_t xAxisBottom = L.top + L.mapHeight + 1 + tickLen + tickGap + xLabels[0].height + 6 + xTitle.height;
  int64_t height = std::max(xAxisBottom, L.top + barHeight + legendHeight) + pad;
  int64_t titleWidth = 0;
  for (const TextImage &t : titleLines)
    titleWidth = std::max(titleWidth, t.width);
  width = std::max(width, titleWidth + 2 * pad);
  if (width > 32768 || height > 32768) {
    err += "attnc: error: internal: heatmap of " + std::to_string(width) + " x " +
           std::to_string(height) + " pixels\n";
    return false;
  }
  L.width = width, L.height = height;
  Canvas canvas(width, height);

  // The map: one value per pixel block; the largest weight of the pairs
  // taking part in a downsampled block (so single strong pairs stay visible).
  auto colorOf = [&](double v) { return heatmapColor((v - lo) / (hi - lo)); };
  for (int64_t by = 0; by * L.blockH < rows; ++by)
    for (int64_t bx = 0; bx * L.blockW < cols; ++bx) {
      bool any = false, nan = false;
      double best = -std::numeric_limits<double>::infinity();
      for (int64_t i = by * L.blockH; i < std::min(rows, (by + 1) * L.blockH); ++i)
        for (int64_t j = bx * L.blockW; j < std::min(cols, (bx + 1) * L.blockW); ++j) {
          int64_t n = i * cols + j;
          if (!takesPart(n))
            continue;
          any = true;
          if (std::isnan(w[n]))
            nan = true;
          else
            best = std::max(best, w[n]);
        }
      VizColor c = !any ? kHeatmapMasked : nan ? kHeatmapNaN : colorOf(best);
      canvas.fill(L.left + bx * L.cellW, L.top + by * L.cellH, L.cellW, L.cellH, c);
    }
  // Large cells get a faint white line between them, so equal neighbours
  // (hardmax's tied keys) still read as separate pairs.
  const int64_t gridFrom = 14;
  if (L.cellW >= gridFrom && L.blockW == 1)
    for (int64_t j = 1; j < cols; ++j)
      for (int64_t y = 0; y < L.mapHeight; ++y)
        canvas.blend(L.left + j * L.cellW, L.top + y, {255, 255, 255}, 110);
  if (L.cellH >= gridFrom && L.blockH == 1)
    for (int64_t i = 1; i < rows; ++i)
      for (int64_t x = 0; x < L.mapWidth; ++x)
        if (L.cellW < gridFrom || x % L.cellW != 0)
          canvas.blend(L.left + x, L.top + i * L.cellH, {255, 255, 255}, 110);
  canvas.frame(L.left, L.top, L.mapWidth, L.mapHeight, axisColor);

  // Title, centred over the map (kept inside the picture).
  int64_t ty = pad;
  for (const TextImage &t : titleLines) {
    int64_t tx = L.left + L.mapWidth / 2 - t.width / 2;
    tx = std::max(pad, std::min(tx, width - pad - t.width));
    drawText(canvas, t, tx, ty, &t == &titleLines[0] ? ink : gray);
    ty += t.height + 2;
  }

  // x axis (keys) along the bottom, y axis (queries) down the left; a tick
  // sits at the centre of its pair's cell.
  int64_t axisY = L.top + L.mapHeight + 1;
  for (size_t n = 0; n < xTicks.size(); ++n) {
    int64_t x = L.left + static_cast<int64_t>(std::floor((xTicks[n] + 0.5) * pxPerCol));
    canvas.fill(x, axisY, 1, tickLen, axisColor);
    drawText(canvas, xLabels[n], x - xLabels[n].width / 2, axisY + tickLen + tickGap, ink);
  }
  drawText(canvas, xTitle, L.left + L.mapWidth / 2 - xTitle.width / 2,
           axisY + tickLen + tickGap + xLabels[0].height + 6, ink);
  int64_t axisX = L.left - 1;
  for (size_t n = 0; n < yTicks.size(); ++n) {
    int64_t y = L.top + static_cast<int64_t>(std::floor((yTicks[n] + 0.5) * pxPerRow));
    canvas.fill(axisX - tickLen, y, tickLen, 1, axisColor);
    const TextImage &t = yLabels[n];
    drawText(canvas, t, axisX - tickLen - tickGap - t.width, y - t.ascent + (t.ascent * 3) / 8 + 1, ink);
  }
  drawText(canvas, yTitle, pad, L.top + L.mapHeight / 2 - yTitle.width / 2, ink, true);

  // Colour bar: vmax at the top, vmin at the bottom, ticks on the right,
  // "weight" along it; the masked swatch below.
  // Saturated colours: a triangle above the gradient in the top colour.
  const int64_t tri = clipped ? barWidth : 0;
  const int64_t gradTop = L.top + tri, gradHeight = barHeight - tri;
  for (int64_t y = 0; y < gradHeight; ++y) {
    double t = gradHeight > 1 ? 1.0 - double(y) / double(gradHeight - 1) : 1.0;
    canvas.fill(barLeft, gradTop + y, barWidth, 1, heatmapColor(t));
  }
  canvas.frame(barLeft, gradTop, barWidth, gradHeight, axisColor);
  for (int64_t r = 0; r < tri; ++r) {
    // Row r of the triangle spans [centre - half, centre + half]; edge
    // pixels are covered in part (antialiased) and get the frame's colour.
    double centre = barLeft + (barWidth - 1) / 2.0, half = (r + 0.5) / tri * (barWidth / 2.0);
    for (int64_t x = barLeft - 1; x <= barLeft + barWidth; ++x) {
      double d = std::fabs(x - centre);
      double cover = std::max(0.0, std::min(1.0, half - d + 0.5));
      if (cover <= 0)
        continue;
      canvas.blend(x, L.top + r, heatmapColor(1), static_cast<unsigned>(255 * cover));
      if (cover < 1)
        canvas.blend(x, L.top + r, axisColor, static_cast<unsigned>(160 * cover));
    }
  }
  for (size_t n = 0; n < cTicks.size(); ++n) {
    double t = (cTicks[n] - lo) / (hi - lo);
    int64_t y = gradTop + static_cast<int64_t>(std::lround((1 - t) * (gradHeight - 1)));
    canvas.fill(barLeft + barWidth + 1, y, tickLen, 1, axisColor);
    const TextImage &c = cLabels[n];
    drawText(canvas, c, barLeft + barWidth + 1 + tickLen + tickGap,
             y - c.ascent + (c.ascent * 3) / 8 + 1, ink);
  }
  drawText(canvas, cTitle, barLeft + barWidth + 1 + tickLen + tickGap + cLabelWidth + 8,
           L.top + barHeight / 2 - cTitle.width / 2, ink, true);
  if (anyMasked) {
    int64_t sy = L.top + barHeight + 12;
    canvas.fill(barLeft, sy, swatch, swatch, kHeatmapMasked);
    canvas.frame(barLeft, sy, swatch, swatch, axisColor);
    drawText(canvas, maskedText, barLeft + swatch + 6, sy + swatch / 2 - maskedText.height / 2, ink);
  }

  if (!writePngRgb(path, canvas.rgb, width, height, err))
    return false;
  if (layoutOut)
    *layoutOut = L;
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

/// Parses and checks `source` into `ast` and chooses its kernel `name`
/// (or its only one); diagnostics go to `err`, null on failure.
const dsl::Kernel *parseKernel(const std::string &fileName, const std::string &source,
                               const std::string &name, std::optional<dsl::Module> &ast,
                               std::string &err) {
  dsl::DiagnosticEngine diag(fileName, source);
  ast = dsl::parseAndCheck(fileName, source, diag);
  err += diag.render();
  return ast ? chooseKernel(*ast, fileName, name, err) : nullptr;
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

/// The normalization as the source spells it: "softmax", "topk(8)", ...
std::string normalizeText(const dsl::Normalize &n) {
  std::string s = dsl::toString(n.kind);
  if (n.kind == dsl::NormKind::Hardmax)
    s += std::string("(ties = ") + dsl::toString(n.ties) + ")";
  else if (n.kind == dsl::NormKind::TopK)
    s += "(" + std::to_string(n.k) + ")";
  return s;
}

} // namespace

std::string heatmapTitle(const dsl::Kernel &kernel, int64_t b, int64_t h, int64_t Lq,
                         int64_t Lk) {
  return kernel.name + "\n" + "attention weights of b = " + std::to_string(b) +
         ", h = " + std::to_string(h) + "  \u00b7  normalize = " +
         normalizeText(kernel.normalize) + "  \u00b7  " + std::to_string(Lq) + " \u00d7 " +
         std::to_string(Lk);
}

namespace {

/// `attnc viz --heatmap`: the float64 reference's weights of one (b, h).
bool runHeatmap(const VizRequest &req, std::string &out, std::string &err) {
  std::optional<dsl::Module> ast;
  const dsl::Kernel *kernel = parseKernel(req.fileName, req.source, req.kernel, ast, err);
  if (!kernel)
    return false;
  if (!req.sizes.empty()) {
    err += "attnc: error: --size " + req.sizes.begin()->first +
           ": --heatmap takes the sizes from the tensors given with --in\n";
    return false;
  }
  std::map<std::string, runtime::HostTensor> inputs;
  for (auto &[name, path] : req.inputs) {
    const dsl::TensorDecl *t = kernel->findTensor(name);
    if (!t) {
      std::vector<std::string> names;
      for (const dsl::TensorDecl &d : kernel->tensors)
        names.push_back(d.name);
      err += "attnc: error: --in " + name + ": kernel '" + kernel->name +
             "' has no tensor named '" + name + "' (tensors: " + join(names) + ")\n";
      return false;
    }
    runtime::HostTensor tensor;
    if (runtime::Status st = runtime::readNpyAs(path, name, t->type, tensor); !st) {
      err += "attnc: error: --in " + name + ": " + trimmed(st.message()) + "\n";
      return false;
    }
    inputs[name] = std::move(tensor);
  }
  runtime::Bindings bind;
  if (runtime::Status st = runtime::bindArguments(*kernel, inputs, req.params, bind); !st) {
    std::string m = trimmed(st.message());
    for (size_t start = 0; start <= m.size();) {
      size_t nl = m.find('\n', start);
      std::string line = m.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      err += (line.rfind("attnc:", 0) == 0 ? "" : "attnc: error: ") + line + "\n";
      if (nl == std::string::npos)
        break;
      start = nl + 1;
    }
    return false;
  }
  runtime::HostTensor weights;
  std::vector<uint8_t> part;
  if (runtime::Status st = runtime::referenceWeightsOfHead(*kernel, inputs, bind, req.batch,
                                                           req.head, weights, &part);
      !st) {
    err += "attnc: error: " + trimmed(st.message()) + "\n";
    return false;
  }
  const int64_t Lq = bind.Lq, Lk = bind.Lk;
  const double *w = weights.as<double>();
  int64_t pairs = 0, maxAt = -1;
  for (int64_t n = 0; n < Lq * Lk; ++n) {
    if (!part[n])
      continue;
    ++pairs;
    if (!std::isnan(w[n]) && (maxAt < 0 || w[n] > w[maxAt]))
      maxAt = n;
  }
  std::string title = heatmapTitle(*kernel, req.batch, req.head, Lq, Lk);
  HeatmapLayout layout;
  if (!writeHeatmapPng(req.output, w, Lq, Lk, &part, title, err, &layout))
    return false;

  char buf[512];
  std::snprintf(buf, sizeof buf,
                "kernel %s: %s weights of b = %lld, h = %lld, Lq = %lld, Lk = %lld\n"
                "pairs taking part: %lld of %lld (%s)\n",
                kernel->name.c_str(), normalizeText(kernel->normalize).c_str(), (long long)req.batch, (long long)req.head,
                (long long)Lq, (long long)Lk, (long long)pairs, (long long)(Lq * Lk),
                percent(double(pairs), double(Lq * Lk)).c_str());
  out += buf;
  if (maxAt >= 0) {
    std::snprintf(buf, sizeof buf, "largest weight: %.6g at (i, j) = (%lld, %lld)\n", w[maxAt],
                  (long long)(maxAt / Lk), (long long)(maxAt % Lk));
    out += buf;
  }
  if (layout.clipped)
    std::snprintf(buf, sizeof buf,
                  "colour scale: magma over [%.6g, %.6g], saturating above (the 99th percentile; "
                  "the largest weight is %.6g); masked pairs light gray\n",
                  layout.vmin, layout.vmax, layout.largest);
  else
    std::snprintf(buf, sizeof buf, "colour scale: magma over [%.6g, %.6g]; masked pairs light gray\n",
                  layout.vmin, layout.vmax);
  out += buf;
  if (layout.blockW == 1 && layout.blockH == 1)
    std::snprintf(buf, sizeof buf, "picture: %lld x %lld pixels, %lld x %lld pixels per pair\n",
                  (long long)layout.width, (long long)layout.height, (long long)layout.cellW,
                  (long long)layout.cellH);
  else
    std::snprintf(buf, sizeof buf,
                  "picture: %lld x %lld pixels, one pixel per %lld x %lld pairs (their largest "
                  "weight)\n",
                  (long long)layout.width, (long long)layout.height, (long long)layout.blockH,
                  (long long)layout.blockW);
  out += buf;
  out += "wrote " + req.output + "\n";
  return true;
}

} // namespace

namespace {

/// The tile map of kernel `req.kernel`, or with `sourceIndex` >= 0 of that
/// source of it (LANGUAGE.md §8.5).
bool buildTileMapOf(const TileMapRequest &req, int sourceIndex, TileMapResult &result,
                    std::string &err) {
  // Option names in messages: the CLI's flags or the API's words.
  auto flag = [&](const char *cli, const char *api) { return std::string(req.cliNames ? cli : api); };
  const std::string sizeFlag = flag("--size ", "size "), paramFlag = flag("--param ", "param "),
                    inFlag = flag("--in ", "aux tensor ");
  auto origin = [&](const std::string &name) {
    auto it = req.auxOrigin.find(name);
    return it == req.auxOrigin.end() ? std::string() : it->second;
  };
  std::string out;
  std::optional<dsl::Module> ast;
  const dsl::Kernel *kernel = parseKernel(req.fileName, req.source, req.kernel, ast, err);
  if (!kernel)
    return false;
  std::string symbol = kernel->name;
  if (sourceIndex >= 0) {
    kernel = &kernel->sources.at(sourceIndex);
    symbol += "." + kernel->sourceName;
  }

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
    if (k.getSymName() == symbol)
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
  // Index-map kernels take their extents from the ranges (LANGUAGE.md §8.1).
  std::map<dsl::IndexVar, int64_t> extents;
  if (kernel->hasIndexMaps()) {
    runtime::Bindings bind;
    bind.sizes = sizes;
    for (const auto &[name, v] : intParams) {
      dsl::Literal lit;
      lit.i = v;
      bind.params[name] = lit;
    }
    std::function<bool(const dsl::Expr &)> sizesKnown = [&](const dsl::Expr &e) {
      if (e.kind == dsl::ExprKind::Ident && e.ident == dsl::IdentKind::Size &&
          !need(e.name, "a range"))
        return false;
      for (const auto &a : e.args)
        if (a && !sizesKnown(*a))
          return false;
      return true;
    };
    for (dsl::IndexVar v : {dsl::IndexVar::B, dsl::IndexVar::H, dsl::IndexVar::I, dsl::IndexVar::J}) {
      const dsl::Extent &e = kernel->extents[int(v)].front();
      if (!sizesKnown(*e.value))
        return false;
      int64_t value = 0;
      std::string why = runtime::evalExtent(*e.value, bind, value);
      if (!why.empty() || value < 1) {
        err += "attnc: error: the range of " + std::string(dsl::toString(v)) + " (" + e.what +
               ") " + (why.empty() ? "is " + std::to_string(value) : "cannot be computed: " + why) +
               "\n";
        return false;
      }
      extents[v] = value;
    }
  }
  std::string lqName = dimName(op, "q", 2), lkName = dimName(op, "k", 2);
  if (extents.empty() &&
      (!need(lqName, "the number of queries") || !need(lkName, "the number of keys")))
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
  int64_t Lq = 0, Lk = 0, B = 0, H = 0;
  if (!extents.empty()) {
    Lq = extents[dsl::IndexVar::I], Lk = extents[dsl::IndexVar::J];
    B = extents[dsl::IndexVar::B], H = extents[dsl::IndexVar::H];
  } else {
    Lq = value(lqName), Lk = value(lkName);
    B = value(dimName(op, "q", 0)), H = value(dimName(op, "q", 1));
  }
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

} // namespace

bool buildTileMap(const TileMapRequest &req, TileMapResult &result, std::string &err) {
  std::optional<dsl::Module> ast;
  const dsl::Kernel *kernel = parseKernel(req.fileName, req.source, req.kernel, ast, err);
  if (!kernel)
    return false;
  if (!kernel->hasSources())
    return buildTileMapOf(req, -1, result, err);
  // Sources: each one's key blocks, one source after the other, as the
  // kernel visits them; each gets the sizes and aux tensors it declares.
  std::set<std::string> sizes, auxNames;
  for (const dsl::Kernel &s : kernel->sources) {
    for (const std::string &n : s.sizeNames())
      sizes.insert(n);
    for (const dsl::TensorDecl &t : s.tensors)
      if (t.role == dsl::TensorRole::Aux)
        auxNames.insert(t.name);
  }
  for (const auto &entry : req.sizes)
    if (!sizes.count(entry.first)) {
      err += "attnc: error: " + std::string(req.cliNames ? "--size " : "size ") + entry.first +
             ": kernel '" + kernel->name + "' has no size named '" + entry.first +
             "' (sizes: " + join(std::vector<std::string>(sizes.begin(), sizes.end())) + ")\n";
      return false;
    }
  for (const auto &entry : req.aux)
    if (!auxNames.count(entry.first)) {
      err += "attnc: error: " + std::string(req.cliNames ? "--in " : "aux tensor ") +
             entry.first + ": kernel '" + kernel->name + "' has no aux tensor named '" +
             entry.first + "'\n";
      return false;
    }
  // Sizes an aux tensor's shape gives hold for every source.
  std::map<std::string, std::string> allSizes = req.sizes;
  for (const auto &[name, tensor] : req.aux)
    for (const dsl::Kernel &s : kernel->sources)
      if (const dsl::TensorDecl *t = s.findTensor(name); t && t->dims.size() == tensor.shape.size())
        for (size_t d = 0; d < t->dims.size(); ++d)
          if (!t->dims[d].isLiteral())
            allSizes.emplace(t->dims[d].name, std::to_string(tensor.shape[d]));
  result = TileMapResult();
  result.kernel = kernel->name;
  std::vector<TileMapResult> parts;
  for (size_t n = 0; n < kernel->sources.size(); ++n) {
    const dsl::Kernel &s = kernel->sources[n];
    TileMapRequest one = req;
    one.sizes.clear();
    one.aux.clear();
    std::vector<std::string> own = s.sizeNames();
    for (const auto &[name, text] : allSizes)
      if (std::find(own.begin(), own.end(), name) != own.end())
        one.sizes[name] = text;
    for (const auto &[name, tensor] : req.aux)
      if (const dsl::TensorDecl *t = s.findTensor(name); t && t->role == dsl::TensorRole::Aux)
        one.aux.emplace(name, tensor);
    TileMapResult part;
    std::string partErr;
    if (!buildTileMapOf(one, (int)n, part, partErr)) {
      err += partErr.empty() ? "" : "attnc: in source '" + s.sourceName + "':\n" + partErr;
      return false;
    }
    result.summary += "source " + s.sourceName + ": " + part.summary;
    parts.push_back(std::move(part));
  }
  result.Lq = parts[0].Lq, result.tileQ = parts[0].tileQ, result.tileK = parts[0].tileK;
  result.rows = parts[0].rows;
  for (const TileMapResult &p : parts) {
    result.Lk += p.Lk;
    result.cols += p.cols;
  }
  if (result.rows * result.cols > (int64_t(1) << 26)) {
    err += "attnc: error: too many tiles to draw; use a larger tile\n";
    return false;
  }
  result.tiles.resize(size_t(result.rows * result.cols));
  for (int64_t r = 0; r < result.rows; ++r) {
    int64_t c0 = 0;
    for (const TileMapResult &p : parts) {
      for (int64_t c = 0; c < p.cols; ++c)
        result.tiles[size_t(r * result.cols + c0 + c)] = p.tiles[size_t(r * p.cols + c)];
      c0 += p.cols;
    }
  }
  return true;
}

bool runViz(const VizRequest &req, std::string &out, std::string &err) {
  if (req.heatmap)
    return runHeatmap(req, out, err);
  TileMapRequest map;
  map.fileName = req.fileName, map.source = req.source, map.kernel = req.kernel;
  map.sizes = req.sizes, map.params = req.params, map.tile = req.tile;
  map.batch = req.batch, map.head = req.head;
  map.cliNames = true;
  // The --in files: aux tensors only, each read as its declared type.
  if (!req.inputs.empty()) {
    std::optional<dsl::Module> ast;
    const dsl::Kernel *kernel = parseKernel(req.fileName, req.source, req.kernel, ast, err);
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
