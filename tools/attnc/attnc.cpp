// attnc: the command line of LANGUAGE.md §7 — check, emit, compile, run, viz
// — and merge (two attention states into one, docs/cascade.md).
#include "attn/compiler/Driver.h"
#include "attn/compiler/Viz.h"
#include "attn/dsl/Sema.h"
#include "attn/jit/Jit.h"
#include "attn/runtime/Merge.h"
#include "attn/runtime/Npy.h"
#include "attn/runtime/Peak.h"
#include "attn/runtime/Reference.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using attn::runtime::HostTensor;
using attn::runtime::Status;

namespace {

int fail(const std::string &message) {
  std::string m = message;
  while (!m.empty() && m.back() == '\n')
    m.pop_back();
  if (m.rfind("attnc:", 0) != 0 && m.find(": error:") == std::string::npos)
    m = "attnc: error: " + m;
  fmt::print(stderr, "{}\n", m);
  return 1;
}

bool readSource(const std::string &path, attn::SourceFile &src, std::string &err) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    err = "attnc: error: '" + path + "' is a directory, not an .attn file";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = "attnc: error: cannot read '" + path + "'";
    return false;
  }
  std::stringstream s;
  s << in.rdbuf();
  src.fileName = path;
  src.text = s.str();
  return true;
}

/// Whether two paths name the same file: the same inode when both exist,
/// else the same path once links and `..` are resolved. Special files
/// (/dev/null) may be named twice.
bool sameFile(const std::string &a, const std::string &b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) {
    bool same = fs::equivalent(a, b, ec);
    return same && !ec && fs::is_regular_file(a, ec);
  }
  fs::path ca = fs::weakly_canonical(a, ec), cb = fs::weakly_canonical(b, ec);
  return !ec && ca == cb;
}

/// Splits NAME=VALUE options.
bool splitAssignments(const std::vector<std::string> &items, const char *flag,
                      std::map<std::string, std::string> &out, std::string &err) {
  for (const std::string &item : items) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      err = fmt::format("attnc: error: {} expects NAME=VALUE, got '{}'", flag, item);
      return false;
    }
    std::string name = item.substr(0, eq);
    if (out.count(name)) {
      err = fmt::format("attnc: error: {} {} given twice", flag, name);
      return false;
    }
    out[name] = item.substr(eq + 1);
  }
  return true;
}

int cmdCheck(const std::string &file) {
  attn::SourceFile src;
  std::string err;
  if (!readSource(file, src, err))
    return fail(err);
  attn::dsl::DiagnosticEngine diag(src.fileName, src.text);
  auto module = attn::dsl::parseAndCheck(src.fileName, src.text, diag);
  fmt::print(stderr, "{}", diag.render());
  if (!module)
    return 1;
  for (const auto &k : module->kernels)
    fmt::print("{}: kernel {} ok\n", file, k.name);
  return 0;
}

int cmdEmit(const std::string &file, const std::string &stageName, const std::string &kernel,
            const std::string &target) {
  attn::Stage stage;
  if (!attn::parseStage(stageName, stage))
    return fail("attnc: error: unknown stage '" + stageName +
                "' (expected ast, mlir, mlir-opt, halide or stmt)");
  attn::SourceFile src;
  std::string err, out;
  if (!readSource(file, src, err))
    return fail(err);
  bool ok = attn::emitStage(src, stage, {kernel, target}, out, err);
  fmt::print(stderr, "{}", err);
  if (!ok)
    return 1;
  fmt::print("{}", out);
  return 0;
}

int cmdCompile(const std::string &file, const std::string &dir, const std::string &kernel,
               const std::string &target, bool noBackward) {
  attn::SourceFile src;
  std::string err;
  if (!readSource(file, src, err))
    return fail(err);
  attn::KernelManifest manifest;
  attn::CompileOptions opts;
  opts.kernel = kernel;
  opts.target = target;
  opts.backward = !noBackward;
  opts.backwardIfDifferentiable = true;
  bool ok = attn::compileStaticLibrary(src, opts, dir, manifest, err);
  fmt::print(stderr, "{}", err);
  if (!ok)
    return 1;
  if (manifest.hasGpu)
    fmt::print("wrote {0}/{1}.a, {0}/{1}.h and {0}/{1}{4}.{3} (target {2}; the GPU kernel falls "
               "back to its CPU twin)\n",
               dir, manifest.name, manifest.target,
               manifest.target.find("cuda") != std::string::npos ? "ptx" : "cl",
               manifest.hasGpuDecode ? "{,_decode}" : "");
  else
    fmt::print("wrote {0}/{1}.a and {0}/{1}.h (target {2})\n", dir, manifest.name, manifest.target);
  return 0;
}

struct RunArgs {
  std::string file, kernel, target = "host", out, lse, dout, dlse;
  std::vector<std::string> ins, params, grads;
  int bench = 0;
  bool noCache = false;
};

int cmdRun(const RunArgs &a) {
  attn::SourceFile src;
  std::string err;
  if (!readSource(a.file, src, err))
    return fail(err);
  std::map<std::string, std::string> inPaths, params, gradPaths;
  if (!splitAssignments(a.ins, "--in", inPaths, err) ||
      !splitAssignments(a.params, "--param", params, err) ||
      !splitAssignments(a.grads, "--grad", gradPaths, err))
    return fail(err);
  if (a.dout.empty() != gradPaths.empty())
    return fail(a.dout.empty() ? "attnc: error: --grad needs --dout (the gradient of the loss "
                                 "with respect to out)"
                               : "attnc: error: --dout needs at least one --grad NAME=file.npy");
  if (!a.dlse.empty() && a.dout.empty())
    return fail("attnc: error: --dlse needs --dout and --grad");

  // An output must not overwrite another output, an input or the source.
  std::vector<std::pair<std::string, std::string>> outputs{{"--out", a.out}}, readFrom;
  if (!a.lse.empty())
    outputs.push_back({"--lse", a.lse});
  for (auto &[name, path] : gradPaths)
    outputs.push_back({"--grad " + name, path});
  for (auto &[name, path] : inPaths)
    readFrom.push_back({"the input " + name, path});
  if (!a.dout.empty())
    readFrom.push_back({"--dout", a.dout});
  if (!a.dlse.empty())
    readFrom.push_back({"--dlse", a.dlse});
  for (size_t n = 0; n < outputs.size(); ++n) {
    if (sameFile(outputs[n].second, a.file))
      return fail("attnc: error: an output names the source file '" + a.file + "'");
    for (size_t m = 0; m < n; ++m)
      if (sameFile(outputs[n].second, outputs[m].second))
        return fail("attnc: error: " + outputs[m].first + " and " + outputs[n].first +
                    " name the same file '" + outputs[n].second + "'; give each output its own file");
    for (auto &[what, path] : readFrom)
      if (sameFile(outputs[n].second, path))
        return fail("attnc: error: " + outputs[n].first + " '" + outputs[n].second + "' is " +
                    what + " ('" + path + "'); writing it would destroy the input");
  }

  attn::JitOptions opts;
  opts.kernel = a.kernel;
  opts.target = a.target;
  opts.useCache = !a.noCache;
  opts.backward = !a.dout.empty();
  std::string messages;
  auto kernel = attn::JitKernel::compile(src, opts, messages);
  fmt::print(stderr, "{}", messages);
  if (!kernel)
    return 1;
  const attn::dsl::Kernel &k = kernel->kernel();
  if (!a.lse.empty() && !k.outputLse)
    return fail("attnc: error: --lse given but kernel '" + k.name +
                "' does not declare `output lse`");
  if (!a.dlse.empty() && !k.outputLse)
    return fail("attnc: error: --dlse given but kernel '" + k.name +
                "' does not declare `output lse`");

  std::map<std::string, HostTensor> inputs;
  for (auto &[name, path] : inPaths) {
    const attn::dsl::TensorDecl *t = k.findInput(name);
    if (!t)
      return fail("attnc: error: --in " + name + ": kernel '" + k.name +
                  "' declares no tensor named '" + name + "'");
    HostTensor tensor;
    if (Status s = attn::runtime::readNpyAs(path, name, t->type, tensor); !s)
      return fail(s.message());
    inputs[name] = std::move(tensor);
  }

  for (auto &[name, path] : gradPaths)
    if (std::find(kernel->manifest().gradNames.begin(), kernel->manifest().gradNames.end(),
                  name) == kernel->manifest().gradNames.end()) {
      std::string names;
      for (const std::string &g : kernel->manifest().gradNames)
        names += (names.empty() ? "" : ", ") + g;
      return fail("attnc: error: --grad " + name + ": kernel '" + k.name +
                  "' has no gradient of '" + name + "' (it has: " + names + ")");
    }

  attn::JitKernel::Call call;
  if (Status s = kernel->prepare(inputs, params, call); !s)
    return fail(s.message());
  if (Status s = kernel->execute(call); !s)
    return fail(s.message());

  // The backward, from the forward's out (and lse) and the given dout.
  std::map<std::string, HostTensor> grads;
  HostTensor dout, dlse;
  auto backward = [&]() -> Status {
    return kernel->backward(inputs, params, call.out, dout, k.outputLse ? &call.lse : nullptr,
                            grads, a.dlse.empty() ? nullptr : &dlse);
  };
  if (!a.dout.empty()) {
    if (Status s = attn::runtime::readNpyAs(a.dout, "dout", k.q->type, dout); !s)
      return fail(s.message());
    if (!a.dlse.empty())
      if (Status s = attn::runtime::readNpyAs(a.dlse, "dlse", attn::dsl::ElemType::F32, dlse); !s)
        return fail(s.message());
    if (Status s = backward(); !s)
      return fail(s.message());
  }

  if (a.bench > 0) {
    std::vector<double> ms;
    for (int r = 0; r < a.bench; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      if (Status s = kernel->execute(call); !s)
        return fail(s.message());
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    double median = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
    double flops = attn::runtime::attentionFlops(k, call.bindings, inputs);
    double gflops = flops / (median * 1e-3) / 1e9;
    fmt::print("compile: {:.3f} s ({})\n", kernel->compileSeconds(),
               kernel->cacheHit() ? "cached" : "compiled");
    fmt::print("bench: median {:.3f} ms, {:.1f} GFLOP/s, {:.1f}% of FP32 peak\n", median, gflops,
               100.0 * gflops / attn::runtime::peakGflops());
    if (!a.dout.empty()) {
      // The backward's work per participating pair: q·k, dq and dk 2·D each,
      // dout·v and dv 2·Dv each (10·D when Dv = D), against the forward's
      // 2·D + 2·Dv.
      std::vector<double> bms;
      for (int r = 0; r < a.bench; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        if (Status s = backward(); !s)
          return fail(s.message());
        bms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(bms.begin(), bms.end());
      double bmedian = bms.size() % 2 ? bms[bms.size() / 2]
                                      : 0.5 * (bms[bms.size() / 2 - 1] + bms[bms.size() / 2]);
      double D = double(call.bindings.D), Dv = double(call.bindings.Dv);
      double bgflops = flops * (6 * D + 4 * Dv) / (2 * D + 2 * Dv) / (bmedian * 1e-3) / 1e9;
      fmt::print("backward: median {:.3f} ms ({:.2f}x the forward), {:.1f} GFLOP/s, {:.1f}% of "
                 "FP32 peak\n",
                 bmedian, bmedian / median, bgflops, 100.0 * bgflops / attn::runtime::peakGflops());
    }
  }

  // Outputs are written only after everything succeeded; a failed write
  // removes what was written before it.
  std::vector<std::pair<std::string, const HostTensor *>> writes{{a.out, &call.out}};
  if (!a.lse.empty())
    writes.push_back({a.lse, &call.lse});
  for (auto &[name, path] : gradPaths)
    writes.push_back({path, &grads.at(name)});
  for (size_t n = 0; n < writes.size(); ++n)
    if (Status s = attn::runtime::writeNpy(writes[n].first, *writes[n].second); !s) {
      std::error_code ec;
      for (size_t m = 0; m < n; ++m)
        fs::remove(writes[m].first, ec);
      return fail(s.message());
    }
  return 0;
}

struct MergeArgs {
  std::string outA, lseA, outB, lseB, out, lse;
};

int cmdMerge(const MergeArgs &a) {
  const std::pair<const char *, const std::string *> inputs[] = {
      {"out_a", &a.outA}, {"lse_a", &a.lseA}, {"out_b", &a.outB}, {"lse_b", &a.lseB}};
  if (!a.lse.empty() && sameFile(a.out, a.lse))
    return fail("attnc: error: --out and --lse name the same file '" + a.out +
                "'; give each output its own file");
  for (const auto &[name, path] : inputs)
    for (const std::string *o : {&a.out, &a.lse})
      if (!o->empty() && sameFile(*o, *path))
        return fail("attnc: error: " + std::string(o == &a.out ? "--out" : "--lse") + " '" + *o +
                    "' is the input " + name + " ('" + *path +
                    "'); writing it would destroy the input");

  HostTensor t[4];
  for (int n = 0; n < 4; ++n)
    if (Status s = attn::runtime::readNpy(*inputs[n].second, t[n]); !s)
      return fail("attnc: error: tensor '" + std::string(inputs[n].first) + "': " + s.message());
  HostTensor out, lse;
  if (Status s = attn::runtime::mergeAttentionStates(t[0], t[1], t[2], t[3], out, lse); !s)
    return fail(s.message());

  if (Status s = attn::runtime::writeNpy(a.out, out); !s)
    return fail(s.message());
  if (!a.lse.empty())
    if (Status s = attn::runtime::writeNpy(a.lse, lse); !s) {
      std::error_code ec;
      fs::remove(a.out, ec);
      return fail(s.message());
    }
  return 0;
}

int cmdViz(attn::VizRequest req, const std::vector<std::string> &sizes,
           const std::vector<std::string> &params, const std::vector<std::string> &ins) {
  attn::SourceFile src;
  std::string err, out;
  if (!readSource(req.fileName, src, err))
    return fail(err);
  if (!splitAssignments(sizes, "--size", req.sizes, err) ||
      !splitAssignments(params, "--param", req.params, err) ||
      !splitAssignments(ins, "--in", req.inputs, err))
    return fail(err);
  req.source = src.text;
  bool ok = attn::runViz(req, out, err);
  fmt::print(stderr, "{}", err);
  if (!ok)
    return 1;
  fmt::print("{}", out);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"attnc: a compiler for attention variants"};
  app.set_version_flag("--version", std::string("attnc ") + attn::version());
  app.require_subcommand(1);

  std::string file, stage, kernel, target = "host", outDir;
  auto *check = app.add_subcommand("check", "diagnostics only; exit 1 on error");
  check->add_option("FILE", file, ".attn file")->required();

  auto *emit = app.add_subcommand("emit", "print one stage of the pipeline");
  emit->add_option("FILE", file, ".attn file")->required();
  emit->add_option("--stage", stage, "ast|mlir|mlir-opt|halide|stmt")->required();
  emit->add_option("--kernel", kernel, "kernel name (when the file has several)");
  emit->add_option("--target", target, "Halide target (halide and stmt stages)");

  auto *compile = app.add_subcommand("compile", "write DIR/NAME.a and DIR/NAME.h");
  compile->add_option("FILE", file, ".attn file")->required();
  compile->add_option("-o", outDir, "output directory")->required();
  compile->add_option("--kernel", kernel, "kernel name");
  compile->add_option("--target", target, "Halide target, e.g. host, x86-64-linux-avx2");
  bool noBackward = false;
  compile->add_flag("--no-backward", noBackward,
                    "leave NAME_backward (and NAME_lse) out of the library");

  RunArgs run;
  auto *runCmd = app.add_subcommand("run", "compile (or load from the cache) and run on .npy tensors");
  runCmd->add_option("FILE", run.file, ".attn file")->required();
  runCmd->add_option("--kernel", run.kernel, "kernel name");
  runCmd->add_option("--target", run.target, "Halide target");
  runCmd->add_option("--in", run.ins, "NAME=file.npy, one per input tensor")->take_all();
  runCmd->add_option("--param", run.params, "NAME=VALUE")->take_all();
  runCmd->add_option("--out", run.out, "output .npy")->required();
  runCmd->add_option("--lse", run.lse, "log-sum-exp output .npy");
  runCmd->add_option("--dout", run.dout,
                     "dL/dout .npy (out's shape and dtype): also run the backward");
  runCmd->add_option("--dlse", run.dlse, "dL/dlse .npy (f32 [B, H, Lq]) when the loss reads lse");
  runCmd->add_option("--grad", run.grads,
                     "NAME=file.npy: write the gradient of q, k, v, a float aux tensor or a "
                     "float param (0-d)")
      ->take_all();
  runCmd->add_option("--bench", run.bench, "timed runs after a warm-up; prints the median")
      ->check(CLI::NonNegativeNumber);
  runCmd->add_flag("--no-cache", run.noCache,
                   "always compile, in a private temporary folder; the cache is neither read "
                   "nor written");

  MergeArgs merge;
  auto *mergeCmd = app.add_subcommand(
      "merge", "merge two attention states (out, lse) of the same rows over disjoint keys "
               "into the state over all of them (cascade attention)");
  mergeCmd->add_option("--out-a", merge.outA, "state A's out [B, H, L, Dv] .npy")->required();
  mergeCmd->add_option("--lse-a", merge.lseA, "state A's lse [B, H, L] .npy")->required();
  mergeCmd->add_option("--out-b", merge.outB, "state B's out .npy")->required();
  mergeCmd->add_option("--lse-b", merge.lseB, "state B's lse .npy")->required();
  mergeCmd->add_option("--out", merge.out, "merged out .npy (out-a's dtype)")->required();
  mergeCmd->add_option("--lse", merge.lse, "merged lse .npy (lse-a's dtype)");

  attn::VizRequest viz;
  std::vector<std::string> vizSizes, vizParams, vizIns;
  auto *vizCmd = app.add_subcommand(
      "viz", "PNG of the mask's empty / partial / full tiles, or with --heatmap of the "
             "attention weights of one (b, h)");
  vizCmd->add_option("FILE", viz.fileName, ".attn file")->required();
  vizCmd->add_option("--kernel", viz.kernel, "kernel name");
  vizCmd->add_option("--size", vizSizes, "NAME=N, the sizes the picture needs (Lq, Lk, ...)")
      ->take_all();
  vizCmd->add_option("--param", vizParams, "NAME=VALUE")->take_all();
  vizCmd->add_option("--in", vizIns,
                     "NAME=file.npy, an aux tensor the mask reads (--heatmap: q, k, v and "
                     "every aux tensor)")
      ->take_all();
  vizCmd->add_flag("--heatmap", viz.heatmap,
                   "draw the float64 reference's weights of (--batch, --head) instead");
  vizCmd->add_option("--tile", viz.tile, "tile shape QxK (default 64x128)");
  vizCmd->add_option("--batch", viz.batch, "the batch index b drawn (default 0)");
  vizCmd->add_option("--head", viz.head, "the head index h drawn (default 0)");
  vizCmd->add_option("-o", viz.output, "output .png")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  try {
    if (*check)
      return cmdCheck(file);
    if (*emit)
      return cmdEmit(file, stage, kernel, target);
    if (*compile)
      return cmdCompile(file, outDir, kernel, target, noBackward);
    if (*runCmd)
      return cmdRun(run);
    if (*vizCmd)
      return cmdViz(viz, vizSizes, vizParams, vizIns);
    if (*mergeCmd)
      return cmdMerge(merge);
  } catch (const std::bad_alloc &) {
    return fail("attnc: error: out of memory");
  }
  return 1;
}
