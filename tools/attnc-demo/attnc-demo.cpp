// attnc-demo: compiles every .attn file of a folder, runs each kernel on
// random inputs, checks it against the float64 reference and prints a table
// (variant, shape, time, GFLOP/s, % of peak, max error). The README's demo.
//
// Sizes: B=1, H=8, head dims 64 and 512 for every other size, unless the
// file has a line `# demo-sizes: NAME=N ...`.
#include "attn/jit/Jit.h"
#include "attn/runtime/Peak.h"
#include "attn/runtime/Reference.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;
using attn::dsl::ElemType;
using attn::runtime::HostTensor;

namespace {

std::map<std::string, int64_t> demoSizes(const std::string &text) {
  std::map<std::string, int64_t> sizes;
  std::istringstream in(text);
  std::string line;
  const std::string tag = "# demo-sizes:";
  while (std::getline(in, line)) {
    if (line.rfind(tag, 0) != 0)
      continue;
    std::istringstream items(line.substr(tag.size()));
    std::string item;
    while (items >> item)
      if (size_t eq = item.find('='); eq != std::string::npos)
        sizes[item.substr(0, eq)] = std::stoll(item.substr(eq + 1));
  }
  return sizes;
}

int64_t sizeOf(const std::string &name, const attn::dsl::Kernel &k,
               const std::map<std::string, int64_t> &given) {
  if (auto it = given.find(name); it != given.end())
    return it->second;
  if (name == "B")
    return 1;
  if (name == "H")
    return 8;
  const attn::dsl::Dim &qd = k.q->dims.back(), &vd = k.v->dims.back();
  if (!qd.isLiteral() && qd.name == name)
    return 64;
  if (!vd.isLiteral() && vd.name == name)
    return 64;
  if (k.k->at.empty() && !k.k->dims[1].isLiteral() && k.k->dims[1].name == name && name != "L")
    return 2; // key/value heads
  return 512;
}

/// Random inputs: normal q/k/v; integer aux tensors as sorted runs of small
/// ids along their last dimension (documents, modalities); bools at p=1/2;
/// float aux tensors small normals.
std::map<std::string, HostTensor> randomInputs(const attn::dsl::Kernel &k,
                                               const std::map<std::string, int64_t> &given,
                                               std::mt19937 &rng) {
  std::map<std::string, HostTensor> inputs;
  std::normal_distribution<double> normal;
  for (const auto &t : k.tensors) {
    std::vector<int64_t> shape;
    for (const auto &d : t.dims)
      shape.push_back(d.isLiteral() ? d.value : sizeOf(d.name, k, given));
    HostTensor h(t.type, shape);
    int64_t n = h.numel(), last = shape.back();
    for (int64_t e = 0; e < n; ++e) {
      if (t.role != attn::dsl::TensorRole::Aux)
        h.setDouble(e, normal(rng));
      else if (t.type == ElemType::Bool)
        h.setDouble(e, rng() % 2);
      else if (t.type == ElemType::I32 || t.type == ElemType::I64)
        h.setDouble(e, (e % last) * 4 / last); // 4 sorted runs: 0,0,..,1,1,..
      else
        h.setDouble(e, 0.1 * normal(rng));
    }
    inputs[t.callName()] = std::move(h);
  }
  return inputs;
}

std::string shapeOf(const attn::runtime::Bindings &b) {
  return fmt::format("B={} H={} Hk={} Lq={} Lk={} D={} Dv={}", b.B, b.H, b.Hk, b.Lq, b.Lk, b.D,
                     b.Dv);
}

} // namespace

int main(int argc, char **argv) {
  fs::path dir = argc > 1 ? argv[1] : "examples/variants";
  std::vector<fs::path> files;
  for (const auto &e : fs::directory_iterator(dir))
    if (e.path().extension() == ".attn")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  const double peak = attn::runtime::peakGflops();
  fmt::print("{:<18} {:<44} {:>9} {:>9} {:>8} {:>7} {:>10}  {}\n", "variant", "shape", "compile",
             "time", "GFLOP/s", "% peak", "max error", "check");
  int failures = 0;
  for (const fs::path &file : files) {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    attn::SourceFile src{file.string(), ss.str()};
    std::string messages;
    auto kernel = attn::JitKernel::compile(src, {}, messages);
    std::string name = file.stem().string();
    if (!kernel) {
      fmt::print("{:<18} compile failed:\n{}\n", name, messages);
      ++failures;
      continue;
    }
    std::mt19937 rng(42);
    auto given = demoSizes(src.text);
    auto inputs = randomInputs(kernel->kernel(), given, rng);
    attn::JitKernel::Call call;
    if (auto s = kernel->prepare(inputs, {}, call); !s) {
      fmt::print("{:<18} {}\n", name, s.message());
      ++failures;
      continue;
    }
    std::vector<double> ms;
    for (int r = 0; r < 6; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      if (auto s = kernel->execute(call); !s) {
        fmt::print("{:<18} {}\n", name, s.message());
        ++failures;
        break;
      }
      if (r > 0) // the first run warms up
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    if (ms.size() != 5)
      continue;
    std::sort(ms.begin(), ms.end());
    double median = ms[2];
    double flops = attn::runtime::attentionFlops(kernel->kernel(), call.bindings, inputs);
    double gflops = flops / (median * 1e-3) / 1e9;

    HostTensor ref;
    double maxErr = NAN, scale = 0;
    if (auto s = attn::runtime::referenceAttention(kernel->kernel(), inputs, call.bindings, ref,
                                                   nullptr);
        s) {
      maxErr = 0;
      for (int64_t e = 0; e < ref.numel(); ++e) {
        double r = ref.getDouble(e), o = call.out.getDouble(e);
        maxErr = std::max(maxErr, std::isnan(o) ? INFINITY : std::abs(o - r));
        scale = std::max(scale, std::abs(r));
      }
    }
    bool bf = kernel->kernel().q->type == ElemType::BF16 || kernel->kernel().q->type == ElemType::F16;
    bool ok = maxErr <= (bf ? 2e-2 : 1e-4) * std::max(1.0, scale);
    failures += !ok;
    fmt::print("{:<18} {:<44} {:>7.2f} s {:>6.2f} ms {:>8.1f} {:>6.1f}% {:>10.2e}  {}\n", name,
               shapeOf(call.bindings), kernel->compileSeconds(), median, gflops,
               100 * gflops / peak, maxErr, ok ? "ok" : "MISMATCH");
  }
  fmt::print("\n{} variants, {} failed. Compile times are 0 when the kernel came from the cache.\n",
             files.size(), failures);
  return failures ? 1 : 0;
}
