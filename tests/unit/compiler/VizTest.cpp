// Unit tests of the programmatic viz API (Viz.h): tile maps built from
// in-memory sources and aux tensors.
#include "attn/compiler/Viz.h"

#include <gtest/gtest.h>

#include <string>

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
