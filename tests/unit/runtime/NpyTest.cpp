// Unit tests of `.npy` I/O: files written by NumPy (NpyFixtures.h), round
// trips of every dtype, LANGUAGE.md §7 dtype matching, and corrupt input.
#include "attn/runtime/Npy.h"

#include "NpyFixtures.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <random>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace attn::runtime;

namespace {

class NpyTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "attn_npy_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    ASSERT_NE(mkdtemp(buf.data()), nullptr);
    dir_ = buf.data();
  }
  void TearDown() override {
    for (const std::string &f : listDir())
      std::remove((dir_ + "/" + f).c_str());
    rmdir(dir_.c_str());
  }

  std::string path(const std::string &name) const { return dir_ + "/" + name; }

  std::string writeBytes(const std::string &name, const void *data,
                         size_t n) {
    std::string p = path(name);
    std::ofstream f(p, std::ios::binary);
    f.write(static_cast<const char *>(data), static_cast<std::streamsize>(n));
    return p;
  }
  std::string writeBytes(const std::string &name, const std::string &bytes) {
    return writeBytes(name, bytes.data(), bytes.size());
  }
  template <size_t N>
  std::string writeFixture(const std::string &name,
                           const unsigned char (&bytes)[N]) {
    return writeBytes(name, bytes, N);
  }

  static std::string readBytes(const std::string &p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f),
                       std::istreambuf_iterator<char>());
  }

  std::vector<std::string> listDir() const {
    std::vector<std::string> names;
    if (DIR *d = opendir(dir_.c_str())) {
      while (dirent *e = readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
          names.push_back(e->d_name);
      closedir(d);
    }
    return names;
  }

  /// A version-1.0 file with the given header dict text and data.
  static std::string makeNpy(const std::string &dict, const std::string &data,
                             int major = 1) {
    std::string header = dict;
    size_t pre = major == 1 ? 10 : 12;
    while ((pre + header.size() + 1) % 64)
      header += ' ';
    header += '\n';
    std::string s("\x93NUMPY", 6);
    s += static_cast<char>(major);
    s += '\0';
    s += static_cast<char>(header.size() & 0xff);
    s += static_cast<char>(header.size() >> 8);
    if (major != 1)
      s += std::string(2, '\0');
    return s + header + data;
  }

  std::string expectError(const std::string &p, const std::string &fragment) {
    HostTensor t;
    Status s = readNpy(p, t);
    EXPECT_FALSE(s.isOk()) << p;
    EXPECT_NE(s.message().find(fragment), std::string::npos)
        << "message: " << s.message() << "\nexpected fragment: " << fragment;
    EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
    return s.message();
  }

  std::string dir_;
};

std::string f32Data(std::initializer_list<float> values) {
  std::string s;
  for (float v : values)
    s.append(reinterpret_cast<const char *>(&v), 4);
  return s;
}

} // namespace

TEST_F(NpyTest, ReadsNumpyF32) {
  HostTensor t;
  std::string descr;
  ASSERT_TRUE(readNpy(writeFixture("a.npy", npy_fixtures::kF32_2x3), t, &descr));
  EXPECT_EQ(descr, "<f4");
  EXPECT_EQ(t.type, ElemType::F32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
  const float want[] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-3f};
  for (int n = 0; n < 6; ++n)
    EXPECT_EQ(t.as<float>()[n], want[n]);
  EXPECT_TRUE(std::signbit(t.as<float>()[4]));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
}

TEST_F(NpyTest, ReadsNumpyEveryDtype) {
  HostTensor t;
  ASSERT_TRUE(readNpy(writeFixture("f8.npy", npy_fixtures::kF64_3), t));
  EXPECT_EQ(t.type, ElemType::F64);
  EXPECT_EQ(t.as<double>()[2], M_PI);

  ASSERT_TRUE(readNpy(writeFixture("f2.npy", npy_fixtures::kF16_4), t));
  EXPECT_EQ(t.type, ElemType::F16);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(t.getDouble(1), -2.0);
  EXPECT_EQ(t.getDouble(2), 65504.0);
  EXPECT_EQ(t.as<uint16_t>()[3], 0x0001); // 6e-8 -> the smallest subnormal

  ASSERT_TRUE(readNpy(writeFixture("i4.npy", npy_fixtures::kI32_2x2), t));
  EXPECT_EQ(t.type, ElemType::I32);
  EXPECT_EQ(t.as<int32_t>()[1], -2);
  EXPECT_EQ(t.as<int32_t>()[3], INT32_MIN);

  ASSERT_TRUE(readNpy(writeFixture("i8.npy", npy_fixtures::kI64_2), t));
  EXPECT_EQ(t.type, ElemType::I64);
  EXPECT_EQ(t.as<int64_t>()[0], -(int64_t(1) << 40));

  std::string descr;
  ASSERT_TRUE(readNpy(writeFixture("b1.npy", npy_fixtures::kBool_3), t, &descr));
  EXPECT_EQ(descr, "|b1");
  EXPECT_EQ(t.type, ElemType::Bool);
  EXPECT_EQ(t.getInt(0), 1);
  EXPECT_EQ(t.getInt(1), 0);
  EXPECT_EQ(t.getInt(2), 1);

  ASSERT_TRUE(readNpy(writeFixture("s.npy", npy_fixtures::kF32_scalar), t));
  EXPECT_TRUE(t.shape.empty());
  EXPECT_EQ(t.numel(), 1);
  EXPECT_EQ(t.as<float>()[0], 4.0f);

  ASSERT_TRUE(readNpy(writeFixture("e.npy", npy_fixtures::kI32_empty), t));
  EXPECT_EQ(t.shape, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(t.numel(), 0);
}

TEST_F(NpyTest, ReadsFormatVersions2And3) {
  for (auto *name : {"v2.npy", "v3.npy"}) {
    HostTensor t;
    std::string p = std::string(name) == "v2.npy"
                        ? writeFixture(name, npy_fixtures::kF32_v2)
                        : writeFixture(name, npy_fixtures::kF32_v3);
    ASSERT_TRUE(readNpy(p, t)) << name;
    EXPECT_EQ(t.shape, (std::vector<int64_t>{2}));
    EXPECT_EQ(t.as<float>()[0], 1.0f);
    EXPECT_EQ(t.as<float>()[1], 2.0f);
  }
}

TEST_F(NpyTest, WriterMatchesNumpyByteForByte) {
  auto check = [&](const std::string &name, const unsigned char *bytes,
                   size_t n) {
    std::string src = writeBytes(name + ".in.npy", bytes, n);
    HostTensor t;
    ASSERT_TRUE(readNpy(src, t)) << name;
    std::string dst = path(name + ".out.npy");
    ASSERT_TRUE(writeNpy(dst, t)) << name;
    EXPECT_EQ(readBytes(dst), std::string(reinterpret_cast<const char *>(bytes), n))
        << name;
  };
#define CHECK_FIXTURE(F) check(#F, npy_fixtures::F, sizeof(npy_fixtures::F))
  CHECK_FIXTURE(kF32_2x3);
  CHECK_FIXTURE(kF64_3);
  CHECK_FIXTURE(kF16_4);
  CHECK_FIXTURE(kI32_2x2);
  CHECK_FIXTURE(kI64_2);
  CHECK_FIXTURE(kBool_3);
  CHECK_FIXTURE(kF32_scalar);
  CHECK_FIXTURE(kI32_empty);
#undef CHECK_FIXTURE
}

TEST_F(NpyTest, RoundTripsEveryDtype) {
  for (ElemType type : {ElemType::F32, ElemType::F64, ElemType::F16,
                        ElemType::I32, ElemType::I64, ElemType::Bool}) {
    HostTensor t(type, {2, 3, 5});
    for (int64_t n = 0; n < t.numel(); ++n)
      t.setDouble(n, type == ElemType::Bool ? n % 3 == 0 : (n - 7) * 1.5);
    std::string p = path(std::string("rt_") + attn::dsl::toString(type));
    ASSERT_TRUE(writeNpy(p, t));
    HostTensor back;
    std::string descr;
    ASSERT_TRUE(readNpy(p, back, &descr));
    EXPECT_EQ(descr, npyDescr(type));
    EXPECT_EQ(back.type, type);
    EXPECT_EQ(back.shape, t.shape);
    EXPECT_EQ(back.bytes, t.bytes) << attn::dsl::toString(type);
  }
}

TEST_F(NpyTest, Bf16IsWrittenAsF32AndReadBackExactly) {
  HostTensor t(ElemType::BF16, {4});
  for (int64_t n = 0; n < 4; ++n)
    t.setDouble(n, 0.1 * (n + 1));
  std::string p = path("bf.npy");
  ASSERT_TRUE(writeNpy(p, t));
  HostTensor raw;
  std::string descr;
  ASSERT_TRUE(readNpy(p, raw, &descr));
  EXPECT_EQ(descr, "<f4");
  for (int64_t n = 0; n < 4; ++n)
    EXPECT_EQ(raw.as<float>()[n], bf16ToFloat(t.as<uint16_t>()[n]));
  HostTensor back;
  ASSERT_TRUE(readNpyAs(p, "q", ElemType::BF16, back));
  EXPECT_EQ(back.type, ElemType::BF16);
  EXPECT_EQ(back.bytes, t.bytes);
}

TEST_F(NpyTest, ReadAsRoundsF32ToBf16NearestEven) {
  // 1 + 2^-8 ties to 1.0 (even); 1 + 3 * 2^-8 ties up to 1 + 2^-6.
  std::string p = writeBytes(
      "q.npy", makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                       f32Data({1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -3.0f})));
  HostTensor t;
  ASSERT_TRUE(readNpyAs(p, "q", ElemType::BF16, t));
  EXPECT_EQ(t.as<uint16_t>()[0], 0x3f80);
  EXPECT_EQ(t.as<uint16_t>()[1], 0x3f82);
  EXPECT_EQ(t.as<uint16_t>()[2], 0xc040);
}

TEST_F(NpyTest, ReadAsChecksTheDeclaredDtype) {
  std::string f8 = writeFixture("q.npy", npy_fixtures::kF64_3);
  HostTensor t;
  Status s = readNpyAs(f8, "q", ElemType::F32, t);
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "tensor 'q': file " + f8 +
                             " has dtype <f8 but q is declared f32 (expects <f4)");
  s = readNpyAs(f8, "k", ElemType::BF16, t);
  EXPECT_EQ(s.message(), "tensor 'k': file " + f8 +
                             " has dtype <f8 but k is declared bf16 (expects <f4)");
  EXPECT_TRUE(readNpyAs(f8, "v", ElemType::F64, t));

  std::string u1 = writeFixture("doc.npy", npy_fixtures::kU8_2);
  s = readNpyAs(u1, "doc", ElemType::Bool, t);
  EXPECT_EQ(s.message(), "tensor 'doc': file " + u1 +
                             " has dtype |u1 but doc is declared bool (expects |b1)");
  std::string i8 = writeFixture("ids.npy", npy_fixtures::kI64_2);
  s = readNpyAs(i8, "ids", ElemType::I32, t);
  EXPECT_EQ(s.message(), "tensor 'ids': file " + i8 +
                             " has dtype <i8 but ids is declared i32 (expects <i4)");
  std::string be = writeFixture("be.npy", npy_fixtures::kF32BE_2);
  s = readNpyAs(be, "q", ElemType::F32, t);
  EXPECT_EQ(s.message(), "tensor 'q': file " + be +
                             " has dtype >f4 but q is declared f32 (expects <f4)");
  s = readNpyAs(path("absent.npy"), "q", ElemType::F32, t);
  EXPECT_NE(s.message().find("tensor 'q'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("absent.npy"), std::string::npos) << s.message();
}

TEST_F(NpyTest, RejectsUnsupportedDtypes) {
  std::string msg = expectError(writeFixture("u1.npy", npy_fixtures::kU8_2),
                                "unsupported dtype '|u1'");
  EXPECT_NE(msg.find("|b1"), std::string::npos);
  msg = expectError(writeFixture("be.npy", npy_fixtures::kF32BE_2),
                    "unsupported dtype '>f4'");
  EXPECT_NE(msg.find("big-endian"), std::string::npos);
  expectError(writeBytes("c8.npy",
                         makeNpy("{'descr': '<c8', 'fortran_order': False, "
                                 "'shape': (1,), }",
                                 std::string(8, '\0'))),
              "unsupported dtype '<c8'");
  expectError(writeBytes("rec.npy",
                         makeNpy("{'descr': [('a', '<f4')], 'fortran_order': "
                                 "False, 'shape': (1,), }",
                                 std::string(4, '\0'))),
              "structured dtypes");
}

TEST_F(NpyTest, RejectsFortranOrder) {
  expectError(writeFixture("f.npy", npy_fixtures::kF32Fortran_2x2),
              "Fortran-order");
}

TEST_F(NpyTest, RejectsBadMagicAndVersion) {
  expectError(writeBytes("m.npy", std::string("\x93NUMPX\x01\x00\x10\x00", 10) +
                                      std::string(16, ' ')),
              "bad magic");
  expectError(writeBytes("txt.npy", std::string("hello world, not numpy")),
              "bad magic");
  expectError(writeBytes("empty.npy", std::string()), "too short");
  std::string v4 = makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                           f32Data({1}));
  v4[6] = 4;
  expectError(writeBytes("v4.npy", v4), "version 4.0");
}

TEST_F(NpyTest, RejectsTruncatedHeader) {
  std::string full(reinterpret_cast<const char *>(npy_fixtures::kF32_2x3),
                   sizeof npy_fixtures::kF32_2x3);
  expectError(writeBytes("t1.npy", full.substr(0, 9)), "truncated header");
  expectError(writeBytes("t2.npy", full.substr(0, 60)), "truncated header");
  std::string huge = full.substr(0, 8) + std::string("\xff\xff\xff\xff", 4);
  huge[6] = 2;
  expectError(writeBytes("t3.npy", huge + "{}"), "truncated header");
}

TEST_F(NpyTest, RejectsMalformedHeaderDicts) {
  auto bad = [&](const std::string &name, const std::string &dict,
                 const std::string &fragment) {
    expectError(writeBytes(name, makeNpy(dict, f32Data({1, 2, 3, 4}))), fragment);
  };
  bad("list.npy", "[1, 2, 3]", "not a Python dict");
  bad("nokey.npy", "{'descr': '<f4', 'shape': (4,), }", "fortran_order");
  bad("noshape.npy", "{'descr': '<f4', 'fortran_order': False}", "no 'shape'");
  bad("unterminated.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)",
      "bad header");
  bad("neg.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }",
      "negative");
  bad("word.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (two,), }",
      "non-negative integers");
  bad("scalarshape.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': 4, }",
      "not a tuple");
  bad("order.npy", "{'descr': '<f4', 'fortran_order': 0, 'shape': (4,), }",
      "fortran_order");
  bad("garbage.npy",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), } xyz",
      "unexpected text");
  bad("bigdim.npy",
      "{'descr': '<f4', 'fortran_order': False, 'shape': "
      "(99999999999999999999999,), }",
      "too large");
}

TEST_F(NpyTest, AcceptsHeaderVariants) {
  HostTensor t;
  // Key order, double quotes, no trailing comma, Python 2 long suffixes and
  // unknown extra keys are all fine.
  std::string p = writeBytes(
      "v.npy", makeNpy("{\"shape\": (2L, 2L), 'fortran_order': False, "
                       "'descr': '<f4', 'extra': [1, (2, 3)]}",
                       f32Data({1, 2, 3, 4})));
  ASSERT_TRUE(readNpy(p, t));
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(t.as<float>()[3], 4.0f);
}

TEST_F(NpyTest, RejectsDataShorterThanTheShape) {
  std::string full(reinterpret_cast<const char *>(npy_fixtures::kF32_2x3),
                   sizeof npy_fixtures::kF32_2x3);
  std::string msg =
      expectError(writeBytes("short.npy", full.substr(0, full.size() - 4)),
                  "truncated data");
  EXPECT_NE(msg.find("24 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("20 follow"), std::string::npos) << msg;
  // An enormous shape is rejected from the file size, without allocating.
  expectError(writeBytes("huge.npy",
                         makeNpy("{'descr': '<f8', 'fortran_order': False, "
                                 "'shape': (1000000000000, 1000000000000, "
                                 "1000000000000), }",
                                 f32Data({1, 2}))),
              "needs more data than the file holds");
  expectError(writeBytes("huge2.npy",
                         makeNpy("{'descr': '<f8', 'fortran_order': False, "
                                 "'shape': (100000, 100000), }",
                                 f32Data({1, 2}))),
              "needs more data than the file holds");
}

TEST_F(NpyTest, TrailingBytesAreIgnored) {
  std::string full(reinterpret_cast<const char *>(npy_fixtures::kF32_2x3),
                   sizeof npy_fixtures::kF32_2x3);
  HostTensor t;
  ASSERT_TRUE(readNpy(writeBytes("trail.npy", full + "garbage!"), t));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.as<float>()[5], 1e-3f);
}

TEST_F(NpyTest, MissingFileAndDirectory) {
  expectError(path("nope.npy"), "cannot open");
  HostTensor t;
  Status s = readNpy(dir_, t);
  EXPECT_FALSE(s.isOk());
}

TEST_F(NpyTest, FailedWriteLeavesNoFile) {
  HostTensor t(ElemType::F32, {3});
  Status s = writeNpy(path("no/such/dir/out.npy"), t);
  EXPECT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("out.npy"), std::string::npos);
  // Renaming over a non-empty directory fails after the data was written:
  // the temporary file must be gone.
  std::string sub = path("sub");
  ASSERT_EQ(mkdir(sub.c_str(), 0755), 0);
  std::string inner = sub + "/x";
  std::ofstream(inner) << "x";
  s = writeNpy(sub, t);
  EXPECT_FALSE(s.isOk());
  std::remove(inner.c_str());
  rmdir(sub.c_str());
  EXPECT_TRUE(listDir().empty());
  // A tensor whose bytes disagree with its shape is refused.
  HostTensor broken(ElemType::F32, {3});
  broken.bytes.resize(5);
  EXPECT_FALSE(writeNpy(path("broken.npy"), broken).isOk());
  EXPECT_TRUE(listDir().empty());
}

TEST_F(NpyTest, WriteReplacesAnExistingFile) {
  std::string p = path("o.npy");
  std::ofstream(p) << "old contents";
  HostTensor t(ElemType::I32, {2});
  t.as<int32_t>()[0] = 7;
  t.as<int32_t>()[1] = -7;
  ASSERT_TRUE(writeNpy(p, t));
  HostTensor back;
  ASSERT_TRUE(readNpy(p, back));
  EXPECT_EQ(back.bytes, t.bytes);
  EXPECT_EQ(listDir().size(), 1u);
}

TEST_F(NpyTest, MutatedFilesNeverCrash) {
  // Random byte changes, truncations and extensions of real files: every read
  // either succeeds with consistent sizes or fails with a message.
  std::vector<std::string> seeds;
  seeds.emplace_back(reinterpret_cast<const char *>(npy_fixtures::kF32_2x3),
                     sizeof npy_fixtures::kF32_2x3);
  seeds.emplace_back(reinterpret_cast<const char *>(npy_fixtures::kF32_v2),
                     sizeof npy_fixtures::kF32_v2);
  seeds.emplace_back(reinterpret_cast<const char *>(npy_fixtures::kBool_3),
                     sizeof npy_fixtures::kBool_3);
  std::mt19937 rng(42);
  std::string p = path("fuzz.npy");
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = seeds[iter % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
      case 0: // header bytes matter most: bias edits to the first 128
        bytes[rng() % std::min<size_t>(bytes.size(), 128)] =
            static_cast<char>(rng());
        break;
      case 1:
        bytes.resize(rng() % (bytes.size() + 1));
        break;
      case 2:
        bytes += std::string(rng() % 16, static_cast<char>(rng()));
        break;
      default:
        if (!bytes.empty())
          bytes[rng() % bytes.size()] = "0123456789(),'-: LTrue"[rng() % 22];
        break;
      }
      if (bytes.empty())
        break;
    }
    writeBytes("fuzz.npy", bytes);
    HostTensor t;
    Status s = readNpy(p, t);
    if (s.isOk())
      EXPECT_EQ(t.bytes.size(), static_cast<size_t>(t.numel()) * elemSize(t.type));
    else
      EXPECT_FALSE(s.message().empty());
  }
}
