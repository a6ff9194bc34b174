// Unit tests of host tensors: aligned storage, element access and the
// bf16 / f16 conversions (checked against an independent nearest-value
// search over every representable value).
#include "attn/runtime/Tensor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

using namespace attn::runtime;

namespace {

float fromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Round-to-nearest-even by search: `table[n]` is the value of the
/// non-negative finite 16-bit pattern n (ascending), `overflow` the smallest
/// magnitude that rounds to infinity.
uint16_t nearestRef(double x, const std::vector<double> &table,
                    double overflow, uint16_t infBits) {
  uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  double a = std::fabs(x);
  if (a >= overflow)
    return sign | infBits;
  size_t lo = std::upper_bound(table.begin(), table.end(), a) - table.begin() - 1;
  if (lo + 1 == table.size())
    return static_cast<uint16_t>(sign | lo);
  double dlo = a - table[lo], dhi = table[lo + 1] - a;
  size_t pick = dlo < dhi ? lo : dhi < dlo ? lo + 1 : (lo % 2 == 0 ? lo : lo + 1);
  return static_cast<uint16_t>(sign | pick);
}

std::vector<double> bf16Table() {
  std::vector<double> t;
  for (uint32_t n = 0; n <= 0x7f7f; ++n)
    t.push_back(bf16ToFloat(static_cast<uint16_t>(n)));
  return t;
}

std::vector<double> f16Table() {
  std::vector<double> t;
  for (uint32_t n = 0; n <= 0x7bff; ++n) {
    int e = n >> 10, m = n & 0x3ff;
    t.push_back(e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25));
  }
  return t;
}

const double kBf16Overflow = std::ldexp(2.0 - std::ldexp(1, -7), 127) +
                             std::ldexp(1, 119);
const double kF16Overflow = 65520.0;

} // namespace

TEST(Tensor, ElemSizes) {
  EXPECT_EQ(elemSize(ElemType::F32), 4u);
  EXPECT_EQ(elemSize(ElemType::F64), 8u);
  EXPECT_EQ(elemSize(ElemType::F16), 2u);
  EXPECT_EQ(elemSize(ElemType::BF16), 2u);
  EXPECT_EQ(elemSize(ElemType::I32), 4u);
  EXPECT_EQ(elemSize(ElemType::I64), 8u);
  EXPECT_EQ(elemSize(ElemType::Bool), 1u);
}

TEST(Tensor, StorageIs64ByteAlignedAndZeroed) {
  for (int64_t n : {1, 3, 17, 1000, 4097}) {
    HostTensor t(ElemType::F32, {n});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
    EXPECT_EQ(t.bytes.size(), static_cast<size_t>(n) * 4);
    for (int64_t e = 0; e < n; ++e)
      EXPECT_EQ(t.as<float>()[e], 0.0f);
    HostTensor copy = t;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % 64, 0u);
    copy.bytes.resize(copy.bytes.size() + 100);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % 64, 0u);
  }
}

TEST(Tensor, ShapeNumelDescribe) {
  HostTensor t(ElemType::F32, {1, 8, 2048, 128});
  EXPECT_EQ(t.numel(), 8 * 2048 * 128);
  EXPECT_EQ(t.rank(), 4);
  EXPECT_EQ(t.describe(), "f32[1, 8, 2048, 128]");
  HostTensor scalar(ElemType::I64, {});
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.describe(), "i64[]");
  HostTensor empty(ElemType::Bool, {0, 5});
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.bytes.size(), 0u);
  EXPECT_EQ(HostTensor(ElemType::BF16, {2, 3}).describe(), "bf16[2, 3]");
}

TEST(Tensor, GetSetEveryType) {
  for (ElemType t : {ElemType::F32, ElemType::F64, ElemType::F16,
                     ElemType::BF16, ElemType::I32, ElemType::I64}) {
    HostTensor x(t, {3});
    x.setDouble(0, -3.0);
    x.setDouble(1, 0.0);
    x.setDouble(2, 5.0);
    EXPECT_EQ(x.getDouble(0), -3.0) << attn::dsl::toString(t);
    EXPECT_EQ(x.getDouble(2), 5.0) << attn::dsl::toString(t);
    EXPECT_EQ(x.getInt(0), -3) << attn::dsl::toString(t);
    EXPECT_EQ(x.getInt(2), 5) << attn::dsl::toString(t);
  }
  HostTensor f(ElemType::F32, {2});
  f.setDouble(0, -2.75);
  f.setDouble(1, std::nan(""));
  EXPECT_EQ(f.getInt(0), -2); // truncated
  EXPECT_EQ(f.getInt(1), 0);
  HostTensor b(ElemType::Bool, {3});
  b.setDouble(0, 2.5);
  b.setDouble(1, 0.0);
  b.setDouble(2, -1.0);
  EXPECT_EQ(b.as<uint8_t>()[0], 1);
  EXPECT_EQ(b.as<uint8_t>()[1], 0);
  EXPECT_EQ(b.getDouble(2), 1.0);
  EXPECT_EQ(b.getInt(0), 1);
  HostTensor i64(ElemType::I64, {1});
  i64.as<int64_t>()[0] = (int64_t(1) << 53) + 1;
  EXPECT_EQ(i64.getInt(0), (int64_t(1) << 53) + 1);
  HostTensor i32(ElemType::I32, {2});
  i32.setDouble(0, 1e12);
  i32.setDouble(1, -1e12);
  EXPECT_EQ(i32.getInt(0), 2147483647);
  EXPECT_EQ(i32.getInt(1), -2147483648LL);
}

TEST(Bf16, SpecificValues) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(floatToBf16(-2.0f), 0xc000);
  EXPECT_EQ(floatToBf16(0.0f), 0x0000);
  EXPECT_EQ(floatToBf16(-0.0f), 0x8000);
  // Ties to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(floatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(floatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(floatToBf16(fromBits(0x3f808001)), 0x3f81);
  // Overflow rounds to infinity; the largest bf16 stays.
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(floatToBf16(fromBits(0x7f7f8000)), 0x7f80);
  EXPECT_EQ(floatToBf16(fromBits(0x7f7f7fff)), 0x7f7f);
  EXPECT_EQ(floatToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  // Subnormals.
  EXPECT_EQ(floatToBf16(fromBits(0x00008000)), 0x0000);
  EXPECT_EQ(floatToBf16(fromBits(0x00018000)), 0x0002);
  EXPECT_EQ(floatToBf16(fromBits(0x00010000)), 0x0001);
  EXPECT_EQ(bf16ToFloat(0x0001), fromBits(0x00010000));
  // NaNs stay NaN (including ones whose payload lives only in low bits).
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(fromBits(0x7f800001)))));
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(fromBits(0xff800001)))));
  EXPECT_TRUE(std::signbit(bf16ToFloat(floatToBf16(fromBits(0xffc00000)))));
}

TEST(Bf16, EveryValueRoundTrips) {
  for (uint32_t n = 0; n <= 0xffff; ++n) {
    uint16_t b = static_cast<uint16_t>(n);
    float f = bf16ToFloat(b);
    if (std::isnan(f))
      EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(f))));
    else
      ASSERT_EQ(floatToBf16(f), b) << std::hex << n;
  }
}

TEST(Bf16, MatchesNearestEvenSearch) {
  std::vector<double> table = bf16Table();
  std::mt19937 rng(1234);
  for (int n = 0; n < 2000000; ++n) {
    uint32_t u = rng();
    if ((u & 0x7f800000u) == 0x7f800000u)
      continue;
    float f = fromBits(u);
    ASSERT_EQ(floatToBf16(f), nearestRef(f, table, kBf16Overflow, 0x7f80))
        << std::hex << u;
  }
  // Every midpoint and its neighbours.
  for (uint32_t n = 0; n < 0x7f80; n += 7) {
    uint32_t mid = (n << 16) | 0x8000;
    for (uint32_t u : {mid - 1, mid, mid + 1, mid | 0x80000000u})
      ASSERT_EQ(floatToBf16(fromBits(u)),
                nearestRef(fromBits(u), table, kBf16Overflow, 0x7f80))
          << std::hex << u;
  }
}

TEST(F16, SpecificValues) {
  EXPECT_EQ(floatToF16(1.0f), 0x3c00);
  EXPECT_EQ(floatToF16(-2.0f), 0xc000);
  EXPECT_EQ(floatToF16(65504.0f), 0x7bff);
  EXPECT_EQ(floatToF16(65519.99f), 0x7bff);
  EXPECT_EQ(floatToF16(65520.0f), 0x7c00);
  EXPECT_EQ(floatToF16(1e10f), 0x7c00);
  EXPECT_EQ(floatToF16(-1e10f), 0xfc00);
  EXPECT_EQ(floatToF16(std::numeric_limits<float>::infinity()), 0x7c00);
  // Ties to even at 1 + 2^-11 and 1 + 3 * 2^-11.
  EXPECT_EQ(floatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(floatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  // Subnormals: 2^-24 is the smallest; 2^-25 ties to 0, 3 * 2^-25 to 2.
  EXPECT_EQ(floatToF16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(floatToF16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(floatToF16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(floatToF16(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(floatToF16(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(floatToF16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)), 0x0400);
  EXPECT_EQ(f16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16ToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16ToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16ToFloat(floatToF16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(f16ToFloat(floatToF16(fromBits(0x7f800001)))));
  EXPECT_TRUE(std::signbit(f16ToFloat(floatToF16(fromBits(0xffc00000)))));
}

TEST(F16, EveryValueRoundTrips) {
  std::vector<double> table = f16Table();
  for (uint32_t n = 0; n <= 0xffff; ++n) {
    uint16_t h = static_cast<uint16_t>(n);
    float f = f16ToFloat(h);
    if ((n & 0x7fff) <= 0x7bff) {
      ASSERT_EQ(std::fabs(f), table[n & 0x7fff]) << std::hex << n;
    }
    if (std::isnan(f))
      EXPECT_TRUE(std::isnan(f16ToFloat(floatToF16(f))));
    else
      ASSERT_EQ(floatToF16(f), h) << std::hex << n;
  }
}

TEST(F16, MatchesNearestEvenSearch) {
  std::vector<double> table = f16Table();
  std::mt19937 rng(99);
  std::uniform_int_distribution<uint32_t> inRange(0x32000000u, 0x47900000u);
  for (int n = 0; n < 2000000; ++n) {
    uint32_t u = inRange(rng) | (rng() & 0x80000000u);
    float f = fromBits(u);
    ASSERT_EQ(floatToF16(f), nearestRef(f, table, kF16Overflow, 0x7c00))
        << std::hex << u;
  }
  for (uint32_t n = 0; n < 0x7c00; n += 3) {
    // Midpoints between consecutive halves, and their float neighbours.
    float lo = f16ToFloat(static_cast<uint16_t>(n));
    float hi = n + 1 < 0x7c00 ? f16ToFloat(static_cast<uint16_t>(n + 1))
                              : 65536.0f;
    float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f),
                    -mid})
      ASSERT_EQ(floatToF16(f), nearestRef(f, table, kF16Overflow, 0x7c00))
          << n;
  }
#ifdef __FLT16_MAX__
  for (int n = 0; n < 1000000; ++n) {
    float f = fromBits(rng());
    if (std::isnan(f))
      continue;
    _Float16 h = static_cast<_Float16>(f);
    uint16_t bits;
    std::memcpy(&bits, &h, 2);
    ASSERT_EQ(floatToF16(f), bits) << f;
  }
#endif
}

TEST(Tensor, SetDoubleRoundsOnceForHalfTypes) {
  // 1 + 2^-8 + 2^-30 rounds to the float midpoint 1 + 2^-8; converting that
  // float would tie to 1.0, but the nearest bf16 of the double is 1 + 2^-7.
  HostTensor bf(ElemType::BF16, {2});
  bf.setDouble(0, 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30));
  bf.setDouble(1, -(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30)));
  EXPECT_EQ(bf.as<uint16_t>()[0], 0x3f81);
  EXPECT_EQ(bf.as<uint16_t>()[1], 0xbf81);
  HostTensor h(ElemType::F16, {3});
  h.setDouble(0, 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40));
  h.setDouble(1, 1.0 + std::ldexp(1.0, -11));
  h.setDouble(2, 1e300);
  EXPECT_EQ(h.as<uint16_t>()[0], 0x3c01);
  EXPECT_EQ(h.as<uint16_t>()[1], 0x3c00);
  EXPECT_EQ(h.as<uint16_t>()[2], 0x7c00);
  HostTensor tiny(ElemType::BF16, {2});
  tiny.setDouble(0, 1e-300);
  tiny.setDouble(1, -1e-300);
  EXPECT_EQ(tiny.as<uint16_t>()[0], 0x0000);
  EXPECT_EQ(tiny.as<uint16_t>()[1], 0x8000);
  std::vector<double> table = f16Table();
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> dist(-70000, 70000);
  for (int n = 0; n < 200000; ++n) {
    double x = dist(rng);
    h.setDouble(0, x);
    ASSERT_EQ(h.as<uint16_t>()[0], nearestRef(x, table, kF16Overflow, 0x7c00))
        << x;
  }
}

TEST(TensorRef, DenseViewOfAHostTensor) {
  HostTensor t(ElemType::F32, {2, 3, 4});
  attn::runtime::TensorRef r(t);
  EXPECT_EQ(r.type, ElemType::F32);
  EXPECT_EQ(r.shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(r.strides, (std::vector<int64_t>{12, 4, 1}));
  EXPECT_EQ(r.data, t.data());
  EXPECT_EQ(r.numel(), 24);
  EXPECT_EQ(r.describe(), "f32[2, 3, 4]");
}

TEST(TensorRef, CopyToHostFollowsStrides) {
  // A [2, 3, 4] tensor viewed as its [3, 2, 4] transpose, and a broadcast
  // (stride 0) and a reversed (negative stride) view of one row.
  HostTensor t(ElemType::I32, {2, 3, 4});
  for (int64_t e = 0; e < t.numel(); ++e)
    t.as<int32_t>()[e] = static_cast<int32_t>(e);
  attn::runtime::TensorRef transposed;
  transposed.type = ElemType::I32;
  transposed.shape = {3, 2, 4};
  transposed.strides = {4, 12, 1};
  transposed.data = t.data();
  HostTensor c = attn::runtime::copyToHost(transposed);
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t d = 0; d < 4; ++d)
        EXPECT_EQ(c.as<int32_t>()[(a * 2 + b) * 4 + d], (b * 3 + a) * 4 + d);
  attn::runtime::TensorRef broadcast{transposed};
  broadcast.shape = {5, 4};
  broadcast.strides = {0, 1};
  HostTensor bc = attn::runtime::copyToHost(broadcast);
  for (int64_t e = 0; e < 20; ++e)
    EXPECT_EQ(bc.as<int32_t>()[e], e % 4);
  attn::runtime::TensorRef reversed{transposed};
  reversed.shape = {4};
  reversed.strides = {-1};
  reversed.data = t.as<int32_t>() + 3;
  HostTensor rv = attn::runtime::copyToHost(reversed);
  for (int64_t e = 0; e < 4; ++e)
    EXPECT_EQ(rv.as<int32_t>()[e], 3 - e);
}

TEST(CheckBufferShape, RefusesExtentsAndStridesBeyondInt32) {
  using attn::runtime::checkBufferShape;
  EXPECT_TRUE(checkBufferShape("t", {2, 8, 1024, 128}));
  EXPECT_TRUE(checkBufferShape("t", {1, 2147483647}));
  // An aux tensor of 2^32 + 8 entries used to pass as 8 (extents truncated).
  auto aux = checkBufferShape("tensor 'doc'", {4294967304});
  ASSERT_FALSE(aux);
  EXPECT_EQ(aux.message().substr(0, aux.message().find('\n')),
            "attnc: error: tensor 'doc': dimension 0 has extent 4294967304, beyond the 2^31 - 1 "
            "a kernel buffer can address");
  // Each extent fits, the stride of dimension 0 (65536 * 32768) does not.
  auto stride = checkBufferShape("out", {2, 65536, 32768});
  ASSERT_FALSE(stride);
  EXPECT_NE(stride.message().find("dimension 0 has stride 2147483648"), std::string::npos)
      << stride.message();
}
