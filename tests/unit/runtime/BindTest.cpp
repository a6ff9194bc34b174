// Unit tests of argument checking (bindArguments): every mismatch of
// LANGUAGE.md §7 gives an error naming the tensor, dimension or param.
#include "attn/runtime/Bind.h"

#include "attn/dsl/Sema.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>

using namespace attn;
using namespace attn::runtime;

namespace {

std::unique_ptr<dsl::Module> check(const std::string &src) {
  dsl::DiagnosticEngine diag("test.attn", src);
  auto m = dsl::parseAndCheck("test.attn", src, diag);
  EXPECT_TRUE(m.has_value()) << diag.render();
  if (!m)
    return nullptr;
  return std::make_unique<dsl::Module>(std::move(*m));
}

const char *kPacked = R"(attention packed {
  q: f32[B, H, L, 64]
  k: f32[B, H, L, 64]
  v: f32[B, H, L, 64]
  doc: i32[B, L]
  mask = doc[b, i] == doc[b, j] && j <= i
}
)";

const char *kGqa = R"(attention gqa {
  q: f32[B, H, Lq, D]
  k: f32[B, G, Lk, D]
  v: f32[B, G, Lk, Dv]
  param window: i32 = 4
  param big: i64
  param causal: bool = true
  mask = !causal || (j <= i && i - j < window + big)
}
)";

std::map<std::string, HostTensor> packedInputs(int64_t B = 2, int64_t H = 3,
                                               int64_t L = 16) {
  std::map<std::string, HostTensor> in;
  in["q"] = HostTensor(ElemType::F32, {B, H, L, 64});
  in["k"] = HostTensor(ElemType::F32, {B, H, L, 64});
  in["v"] = HostTensor(ElemType::F32, {B, H, L, 64});
  in["doc"] = HostTensor(ElemType::I32, {B, L});
  return in;
}

std::map<std::string, HostTensor> gqaInputs(int64_t H, int64_t G) {
  std::map<std::string, HostTensor> in;
  in["q"] = HostTensor(ElemType::F32, {1, H, 5, 8});
  in["k"] = HostTensor(ElemType::F32, {1, G, 7, 8});
  in["v"] = HostTensor(ElemType::F32, {1, G, 7, 3});
  return in;
}

using Params = std::map<std::string, std::string>;

} // namespace

TEST(Bind, BindsSizesAndShapes) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  Bindings b;
  Status s = bindArguments(m->kernels[0], packedInputs(), Params{}, b);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(b.sizes, (std::map<std::string, int64_t>{{"B", 2}, {"H", 3}, {"L", 16}}));
  EXPECT_EQ(b.B, 2);
  EXPECT_EQ(b.H, 3);
  EXPECT_EQ(b.Hk, 3);
  EXPECT_EQ(b.Lq, 16);
  EXPECT_EQ(b.Lk, 16);
  EXPECT_EQ(b.D, 64);
  EXPECT_EQ(b.Dv, 64);
  EXPECT_TRUE(b.params.empty());
}

TEST(Bind, GroupedHeadsAndCrossShapes) {
  auto m = check(kGqa);
  ASSERT_TRUE(m);
  Bindings b;
  Status s = bindArguments(m->kernels[0], gqaInputs(8, 2), Params{{"big", "5"}}, b);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(b.H, 8);
  EXPECT_EQ(b.Hk, 2);
  EXPECT_EQ(b.Lq, 5);
  EXPECT_EQ(b.Lk, 7);
  EXPECT_EQ(b.D, 8);
  EXPECT_EQ(b.Dv, 3);
  EXPECT_EQ(b.sizes.at("G"), 2);
  EXPECT_EQ(b.sizes.at("Dv"), 3);

  s = bindArguments(m->kernels[0], gqaInputs(6, 4), Params{{"big", "5"}}, b);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("H = 6"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("multiple"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("Hk = 4"), std::string::npos) << s.message();
}

TEST(Bind, MissingTensor) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs();
  in.erase("doc");
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{}, b);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(),
            "missing input tensor 'doc' (declared doc: i32[B, L] at line 5)");
}

TEST(Bind, UnknownExtraTensor) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs();
  in["bias"] = HostTensor(ElemType::F32, {3});
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{}, b);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "unknown input tensor 'bias': kernel 'packed' "
                         "declares only q, k, v, doc");
}

TEST(Bind, WrongDtype) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs();
  in["doc"] = HostTensor(ElemType::I64, {2, 16});
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{}, b);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "tensor 'doc' has dtype i64 but is declared i32 "
                         "(doc: i32[B, L])");
}

TEST(Bind, WrongRank) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs();
  in["doc"] = HostTensor(ElemType::I32, {2, 16, 1});
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{}, b);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "tensor 'doc' has rank 3 (i32[2, 16, 1]) but is "
                         "declared with rank 2 (doc: i32[B, L])");
}

TEST(Bind, LiteralDimension) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs();
  in["v"] = HostTensor(ElemType::F32, {2, 3, 16, 32});
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{}, b);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "dimension 3 of tensor 'v' is 32 but is declared 64 "
                         "(v: f32[B, H, L, 64])");
}

TEST(Bind, SizeNameBoundTwice) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs(1, 2, 256);
  in["k"] = HostTensor(ElemType::F32, {1, 2, 300, 64});
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{}, b);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "dimension 'L' of tensor 'k' (dim 2) is 300 but 'L' "
                         "was bound to 256 by tensor 'q' (dim 2)");
}

TEST(Bind, EmptyHeadTensors) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs(1, 2, 0);
  in["doc"] = HostTensor(ElemType::I32, {1, 0});
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{}, b);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("dimension 'L' of tensor 'q' (dim 2) is 0"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("must be positive"), std::string::npos);
}

TEST(Bind, ReportsEveryProblemAtOnce) {
  auto m = check(kPacked);
  ASSERT_TRUE(m);
  auto in = packedInputs();
  in.erase("doc");
  in["v"] = HostTensor(ElemType::F64, {2, 3, 16, 64});
  in["x"] = HostTensor(ElemType::F64, {1});
  Bindings b;
  Status s = bindArguments(m->kernels[0], in, Params{{"nope", "1"}}, b);
  ASSERT_FALSE(s);
  for (const char *fragment :
       {"unknown input tensor 'x'", "tensor 'v' has dtype f64",
        "missing input tensor 'doc'", "unknown param 'nope'"})
    EXPECT_NE(s.message().find(fragment), std::string::npos)
        << fragment << "\n" << s.message();
}

TEST(Bind, ParamsFromText) {
  auto m = check(kGqa);
  ASSERT_TRUE(m);
  const dsl::Kernel &k = m->kernels[0];
  Bindings b;
  Status s = bindArguments(k, gqaInputs(4, 4), Params{{"big", "-9000000000"}}, b);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(b.params.at("window").kind, dsl::Literal::Kind::Int);
  EXPECT_EQ(b.params.at("window").i, 4); // the default
  EXPECT_EQ(b.params.at("big").i, -9000000000LL);
  EXPECT_EQ(b.params.at("causal").kind, dsl::Literal::Kind::Bool);
  EXPECT_TRUE(b.params.at("causal").b);

  for (auto [text, value] : std::vector<std::pair<std::string, bool>>{
           {"true", true}, {"false", false}, {"1", true}, {"0", false}}) {
    s = bindArguments(k, gqaInputs(4, 4),
                      Params{{"big", "1"}, {"causal", text}}, b);
    ASSERT_TRUE(s) << s.message();
    EXPECT_EQ(b.params.at("causal").b, value) << text;
  }
  s = bindArguments(k, gqaInputs(4, 4), Params{{"big", "1"}, {"window", "-7"}}, b);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(b.params.at("window").i, -7);
}

TEST(Bind, BadParams) {
  auto m = check(kGqa);
  ASSERT_TRUE(m);
  const dsl::Kernel &k = m->kernels[0];
  Bindings b;
  auto error = [&](Params p) {
    Status s = bindArguments(k, gqaInputs(4, 4), p, b);
    EXPECT_FALSE(s);
    return s.message();
  };
  EXPECT_EQ(error({}), "missing value for param 'big' (declared big: i64 at "
                       "line 6, no default): pass --param big=VALUE");
  EXPECT_EQ(error({{"big", "1"}, {"windw", "3"}}),
            "unknown param 'windw': kernel 'gqa' declares only window, big, "
            "causal");
  EXPECT_EQ(error({{"big", "1"}, {"window", "3000000000"}}),
            "param 'window': 3000000000 is out of range for i32");
  EXPECT_EQ(error({{"big", "1"}, {"window", "-2147483649"}}),
            "param 'window': -2147483649 is out of range for i32");
  EXPECT_EQ(error({{"big", "99999999999999999999"}}),
            "param 'big': 99999999999999999999 is out of range for i64");
  EXPECT_EQ(error({{"big", "1"}, {"window", "4k"}}),
            "param 'window': '4k' is not a valid i32 (a decimal integer)");
  EXPECT_EQ(error({{"big", "1"}, {"window", "2.5"}}),
            "param 'window': '2.5' is not a valid i32 (a decimal integer)");
  EXPECT_EQ(error({{"big", "1"}, {"window", ""}}),
            "param 'window': '' is not a valid i32");
  EXPECT_EQ(error({{"big", "1"}, {"causal", "yes"}}),
            "param 'causal': 'yes' is not a bool (use true, false, 1 or 0)");
  EXPECT_EQ(error({{"big", "1"}, {"causal", "True"}}),
            "param 'causal': 'True' is not a bool (use true, false, 1 or 0)");
}

TEST(Bind, TypedParams) {
  auto m = check(kGqa);
  ASSERT_TRUE(m);
  const dsl::Kernel &k = m->kernels[0];
  Bindings b;
  dsl::Literal big;
  big.kind = dsl::Literal::Kind::Int;
  big.i = 12;
  dsl::Literal one;
  one.kind = dsl::Literal::Kind::Int;
  one.i = 0;
  std::map<std::string, dsl::Literal> p{{"big", big}, {"causal", one}};
  Status s = bindArguments(k, gqaInputs(4, 4), p, b);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(b.params.at("big").i, 12);
  EXPECT_FALSE(b.params.at("causal").b);
  EXPECT_EQ(b.params.at("window").i, 4);

  dsl::Literal f;
  f.kind = dsl::Literal::Kind::Float;
  f.f = 1.5;
  p["window"] = f;
  s = bindArguments(k, gqaInputs(4, 4), p, b);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "param 'window' is declared i32 but was given a "
                         "float value");
  p.erase("window");
  big.i = int64_t(1) << 40;
  p["big"] = big;
  p["zzz"] = big;
  s = bindArguments(k, gqaInputs(4, 4), p, b);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("unknown param 'zzz'"), std::string::npos);
}

TEST(Bind, FloatParamValues) {
  dsl::ParamDecl p;
  p.name = "scale";
  p.type = ElemType::F32;
  dsl::Literal v;
  ASSERT_TRUE(parseParamValue(p, "0.1", v));
  EXPECT_EQ(v.kind, dsl::Literal::Kind::Float);
  EXPECT_EQ(v.f, static_cast<double>(0.1f)); // rounded to f32
  ASSERT_TRUE(parseParamValue(p, "-3", v));
  EXPECT_EQ(v.f, -3.0);
  ASSERT_TRUE(parseParamValue(p, "-inf", v));
  EXPECT_TRUE(std::isinf(v.f));
  EXPECT_EQ(parseParamValue(p, "1e39", v).message(),
            "param 'scale': 1e39 is out of range for f32");
  EXPECT_EQ(parseParamValue(p, "nan", v).message(),
            "param 'scale': 'nan' is not a valid f32 (a number)");
  EXPECT_EQ(parseParamValue(p, "1.0x", v).message(),
            "param 'scale': '1.0x' is not a valid f32 (a number)");
  p.type = ElemType::F64;
  ASSERT_TRUE(parseParamValue(p, "0.1", v));
  EXPECT_EQ(v.f, 0.1);
  EXPECT_TRUE(parseParamValue(p, "1e39", v));
}

TEST(Bind, MissingParamsHelper) {
  auto m = check(kGqa);
  ASSERT_TRUE(m);
  EXPECT_EQ(missingParams(m->kernels[0], {}), std::vector<std::string>{"big"});
  EXPECT_TRUE(missingParams(m->kernels[0], {"big"}).empty());
  EXPECT_EQ(describeDecl(*m->kernels[0].v), "v: f32[B, G, Lk, Dv]");
}
