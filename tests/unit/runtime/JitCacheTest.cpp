// The JIT cache under concurrency and the manifest's validation: threads
// compiling one uncached kernel all succeed (unique temporary names, atomic
// publication), and a manifest from disk is checked field by field.
#include "attn/jit/Jit.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

const char *kTiny = R"(attention tiny {
  q: f32[B, H, L, 4]
  k: f32[B, H, L, 4]
  v: f32[B, H, L, 4]
  mask = j <= i
}
)";

fs::path freshDir(const std::string &name) {
  fs::path d = fs::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

TEST(JitCache, ThreadsCompilingOneUncachedKernelAllSucceed) {
  fs::path dir = freshDir("attnc-jit-threads");
  attn::JitOptions opts;
  opts.cacheDir = dir.string();
  constexpr int kThreads = 4;
  std::vector<std::string> messages(kThreads);
  std::vector<bool> ok(kThreads, false);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      auto k = attn::JitKernel::compile({"tiny.attn", kTiny}, opts, messages[t]);
      if (!k)
        return;
      attn::runtime::HostTensor q(attn::dsl::ElemType::F32, {1, 1, 8, 4});
      for (int64_t e = 0; e < q.numel(); ++e)
        q.as<float>()[e] = float(e % 5) - 2;
      attn::runtime::HostTensor out;
      ok[t] = (bool)k->run({{"q", q}, {"k", q}, {"v", q}}, {}, out, nullptr);
    });
  for (auto &th : threads)
    th.join();
  for (int t = 0; t < kThreads; ++t)
    EXPECT_TRUE(ok[t]) << "thread " << t << ": " << messages[t];
  // One published entry, no temporary left behind.
  int entries = 0;
  for (auto &e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
    ++entries;
  }
  EXPECT_EQ(entries, 2); // NAME-HASH.so and NAME-HASH.json
  fs::remove_all(dir);
}

TEST(KernelManifest, RoundTripsWithSizeAndHash) {
  attn::KernelManifest m, back;
  m.name = "k";
  m.hasTileMap = true;
  m.tileQ = 32;
  m.soSize = 12345;
  m.soHash = "00112233445566ff";
  ASSERT_TRUE(attn::KernelManifest::fromJson(m.toJson(), back));
  EXPECT_EQ(back.tileQ, 32);
  EXPECT_EQ(back.soSize, 12345u);
  EXPECT_EQ(back.soHash, "00112233445566ff");
}

TEST(KernelManifest, RejectsOutOfRangeAndMistypedFields) {
  attn::KernelManifest m;
  for (const char *bad : {
           R"({"name": "k", "tile_q": 0})",
           R"({"name": "k", "tile_k": -128})",
           R"({"name": "k", "tile_q": 1e12})",
           R"({"name": "k", "tile_q": 64.5})",
           R"({"name": "k", "tile_k": 18446744073709551615})",
           R"({"name": "k", "so_size": -1})",
           R"({"name": "k", "index_checks": [{"tensor": "t", "dim": 1e30}]})",
           R"({"name": "k", "tile_q": "64"})",
           R"({"name": "k", "has_tile_map": "yes"})",
           R"({"name": "k", "decode": "shell"})",
           R"({"name": "k", "has_index_check": true, "index_checks": []})",
           R"({"name": "k", "has_index_check": true, "index_checks": [{"tensor": "t", "dim": -1}]})",
           R"({"name": "k", "index_checks": 3})",
           R"({"name": 7})",
           R"({"tile_q": 64})",
           R"([1, 2])",
           "not json",
       })
    EXPECT_FALSE(attn::KernelManifest::fromJson(bad, m)) << bad;
}

} // namespace
