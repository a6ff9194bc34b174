// The compiler driver (see Driver.h): parse, MLIRGen, the default pass
// pipeline, AttnToHalide, the target schedule, and Halide's code generation.
//
// MLIR code runs first and finishes; Halide (which throws) runs after, inside
// try/catch, on data the MLIR stage produced. No exception crosses MLIR.
#include "attn/compiler/Driver.h"

#include "attn/compiler/AttnToHalide.h"
#include "attn/compiler/MLIRGen.h"
#include "attn/compiler/Passes.h"
#include "attn/dsl/Sema.h"
#include "attn/targets/cpu/Schedule.h"
#include "attn/targets/gpu/Schedule.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <optional>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
extern char **environ;

namespace attn {

const char *version() { return "0.1.0"; }

bool parseStage(const std::string &text, Stage &stage) {
  static const std::pair<const char *, Stage> names[] = {
      {"ast", Stage::Ast}, {"mlir", Stage::Mlir}, {"mlir-opt", Stage::MlirOpt},
      {"halide", Stage::Halide}, {"stmt", Stage::Stmt}};
  for (auto &[n, s] : names)
    if (text == n) {
      stage = s;
      return true;
    }
  return false;
}

std::string KernelManifest::toJson() const {
  nlohmann::json j;
  j["name"] = name;
  j["target"] = target;
  j["strategy"] = strategy;
  j["decode"] = decode;
  j["decode_scale"] = decodeScale;
  j["decode_decay"] = decodeDecay;
  j["has_index_check"] = hasIndexCheck;
  j["has_tile_map"] = hasTileMap;
  j["has_decay_table"] = hasDecayTable;
  j["has_features"] = hasFeatures;
  j["feature_length"] = featureLength;
  j["tile_q"] = tileQ;
  j["tile_k"] = tileK;
  if (soSize) {
    j["so_size"] = soSize;
    j["so_fnv1a64"] = soHash;
  }
  j["has_gpu"] = hasGpu;
  j["has_gpu_decode"] = hasGpuDecode;
  if (!gpuWhyNot.empty())
    j["gpu_why_not"] = gpuWhyNot;
  j["has_backward"] = hasBackward;
  j["has_lse"] = hasLse;
  j["grad_names"] = gradNames;
  j["index_checks"] = nlohmann::json::array();
  for (const Check &c : indexChecks)
    j["index_checks"].push_back({{"tensor", c.tensor}, {"dim", c.dim}});
  return j.dump(2);
}

bool KernelManifest::fromJson(const std::string &text, KernelManifest &out) {
  // A manifest comes from disk (the cache, an AOT build folder): every field
  // is checked, nothing in it is trusted to be well formed.
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return false;
  // Integers are read only from JSON integers and range-checked: a value
  // like 1e12 converted to int is undefined behaviour (found by UBSan).
  auto integer = [](const nlohmann::json &o, const char *key, int64_t def, int64_t lo,
                    int64_t hi, int64_t &out) {
    if (!o.contains(key)) {
      out = def;
      return true;
    }
    const nlohmann::json &v = o[key];
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi)))
      return false;
    out = v.get<int64_t>();
    return out >= lo && out <= hi;
  };
  try {
    KernelManifest m;
    m.name = j.value("name", "");
    m.target = j.value("target", "");
    m.strategy = j.value("strategy", "");
    m.decode = j.value("decode", "none");
    m.decodeScale = j.value("decode_scale", 1.0);
    m.decodeDecay = j.value("decode_decay", 1.0);
    m.hasIndexCheck = j.value("has_index_check", false);
    m.hasTileMap = j.value("has_tile_map", false);
    m.hasDecayTable = j.value("has_decay_table", false);
    m.hasFeatures = j.value("has_features", false);
    m.featureLength = j.value("feature_length", "");
    m.hasGpu = j.value("has_gpu", false);
    m.hasGpuDecode = j.value("has_gpu_decode", false);
    m.gpuWhyNot = j.value("gpu_why_not", "");
    m.hasBackward = j.value("has_backward", false);
    m.hasLse = j.value("has_lse", false);
    m.gradNames = j.value("grad_names", std::vector<std::string>());
    int64_t tileQ, tileK, soSize;
    if (!integer(j, "tile_q", 64, 1, 1 << 16, tileQ) ||
        !integer(j, "tile_k", 128, 1, 1 << 16, tileK) ||
        !integer(j, "so_size", 0, 0, INT64_MAX, soSize))
      return false;
    m.tileQ = int(tileQ);
    m.tileK = int(tileK);
    m.soSize = uint64_t(soSize);
    m.soHash = j.value("so_fnv1a64", "");
    if (j.contains("index_checks")) {
      if (!j["index_checks"].is_array())
        return false;
      for (auto &c : j["index_checks"]) {
        int64_t dim;
        if (!c.is_object() || !integer(c, "dim", 0, 0, 63, dim))
          return false;
        m.indexChecks.push_back({c.value("tensor", ""), int(dim)});
        if (m.indexChecks.back().tensor.empty())
          return false;
      }
    }
    if (m.name.empty() || !(m.decode == "none" || m.decode == "hull" || m.decode == "scan" ||
                               m.decode == "linear") ||
        !std::isfinite(m.decodeScale) || !(m.decodeDecay > 0 && m.decodeDecay <= 1) ||
        (m.hasFeatures && m.featureLength.empty()) ||
        (m.hasIndexCheck && m.indexChecks.empty()) ||
        (m.hasBackward && (m.gradNames.size() < 3 || m.gradNames[0] != "q")))
      return false;
    out = std::move(m);
    return true;
  } catch (const nlohmann::json::exception &) {
    return false; // a field of the wrong type
  }
}

namespace {

/// A parsed, checked file lowered to the `attn` dialect (optionally after the
/// default pipeline), and the kernel selected by --kernel.
struct Lowered {
  std::optional<dsl::Module> ast;
  mlir::MLIRContext ctx;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  const dsl::Kernel *kernel = nullptr; // null when none was selected
  /// Its kernel op, or its sources' (LANGUAGE.md §8.5).
  std::vector<mlir::Operation *> kernelOps;
};

bool frontEnd(const SourceFile &src, const CompileOptions &opts, bool requireKernel,
              Lowered &low, std::string &err) {
  dsl::DiagnosticEngine diag(src.fileName, src.text);
  low.ast = dsl::parseAndCheck(src.fileName, src.text, diag);
  err += diag.render();
  if (!low.ast)
    return false;
  const dsl::Module &m = *low.ast;
  if (!opts.kernel.empty()) {
    low.kernel = m.findKernel(opts.kernel);
    if (!low.kernel) {
      err += "attnc: error: " + src.fileName + " has no kernel named '" + opts.kernel + "'";
      err += " (it has:";
      for (const auto &k : m.kernels)
        err += " " + k.name;
      err += ")\n";
      return false;
    }
  } else if (m.kernels.size() == 1) {
    low.kernel = &m.kernels[0];
  } else if (requireKernel) {
    err += "attnc: error: " + src.fileName + " has " + std::to_string(m.kernels.size()) +
           " kernels; choose one with --kernel (";
    for (size_t i = 0; i < m.kernels.size(); ++i)
      err += (i ? ", " : "") + m.kernels[i].name;
    err += ")\n";
    return false;
  }
  return true;
}

bool toMlir(const SourceFile &src, bool optimize, Lowered &low, std::string &err) {
  std::string diagText;
  llvm::raw_string_ostream os(diagText);
  mlir::ScopedDiagnosticHandler handler(&low.ctx, [&](mlir::Diagnostic &d) {
    os << "attnc: internal error: " << d << "\n";
    return mlir::success();
  });
  low.module = mlirGen(low.ctx, *low.ast);
  if (low.module && optimize) {
    mlir::PassManager pm(&low.ctx);
    buildDefaultPipeline(pm);
    if (mlir::failed(pm.run(*low.module)))
      low.module = nullptr;
  }
  err += os.str();
  if (!low.module)
    return false;
  if (low.kernel)
    low.kernelOps = kernelOps(*low.module, low.kernel->name);
  return true;
}

std::string printOp(mlir::Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  op->print(os);
  os << "\n";
  return os.str();
}

/// The GPU APIs attnc schedules for (targets/gpu).
bool gpuApiSupported(const Halide::Target &t) {
  return t.has_feature(Halide::Target::CUDA) || t.has_feature(Halide::Target::OpenCL);
}

Halide::Target resolveHalideTarget(const std::string &spec, std::string &err) {
  Halide::Target t = cpu::parseTarget(spec);
  if (t.has_gpu_feature() && !gpuApiSupported(t)) {
    err += "attnc: warning: target '" + spec +
           "' asks for a GPU API attnc has no schedule for (it has CUDA and OpenCL); "
           "compiling a CPU kernel for the host instead\n";
    return Halide::get_host_target();
  }
  // The mask's tile tests are computed in f64 (OpenCL needs cl_doubles);
  // CUDA without a capability would get sm_20 PTX, which no current ptxas
  // takes: sm_70 PTX runs on every GPU since Volta (the driver compiles it).
  if (t.has_feature(Halide::Target::OpenCL))
    t = t.with_feature(Halide::Target::CLDoubles);
  if (t.has_feature(Halide::Target::CUDA) && t.get_cuda_capability_lower_bound() < 50)
    t = t.with_feature(Halide::Target::CUDACapability70);
  return t;
}

struct Built {
  AttentionAlgorithm alg; // the CPU kernel (the failover of a GPU one)
  Halide::Target target;
  std::optional<BackwardAlgorithm> backward; // CompileOptions::backward
  /// GPU targets: the GPU kernel; the library's NAME runs it and falls
  /// back to `alg` when the device fails (buildModule).
  std::optional<AttentionAlgorithm> gpu;
  std::string gpuWhyNot; // a GPU target whose kernel has no GPU schedule: why
  /// Its split-key twin for short query sequences (gpu::kDecodeRows).
  std::optional<AttentionAlgorithm> gpuDecode;
  std::optional<Halide::Module> decodeModule; // its object's module (buildModule)
};

/// AttnToHalide + the target schedule. Throws Halide::Error.
Built buildHalide(Lowered &low, const CompileOptions &opts, std::string &err) {
  Built built{AttentionAlgorithm(), resolveHalideTarget(opts.target, err)};
  mlir::Operation *first = low.kernelOps.front();
  built.alg = buildAlgorithm(low.kernelOps,
                             cpu::chooseTiles(built.target, kernelStrategy(first),
                                              kernelComputeType(first)),
                             opts.skipTiles);
  cpu::schedule(built.alg, built.target);
  if (built.target.has_gpu_feature()) {
    const int valueDim = literalValueDim(first);
    TileSizes tiles = gpu::chooseTiles(built.target, kernelComputeType(first), valueDim);
    // One tile map (NAME_tile_map, the CPU kernel's tiles) serves both.
    tiles.mapQ = built.alg.tileQ;
    tiles.mapK = built.alg.tileK;
    AttentionAlgorithm g = buildAlgorithm(low.kernelOps, tiles, opts.skipTiles);
    std::string why = gpu::unsupported(g, built.target);
    if (why.empty() && g.hasTileMap && (tiles.mapQ % g.tileQ || tiles.mapK % g.tileK))
      why = "the tile map's tiles (" + std::to_string(tiles.mapQ) + " x " +
            std::to_string(tiles.mapK) + ", ATTNC_TILES) are not multiples of the GPU's (" +
            std::to_string(g.tileQ) + " x " + std::to_string(g.tileK) + ")";
    if (why.empty()) {
      if (valueDim > 0 && gpu::sharedBytes(g, valueDim) > gpu::kSharedLimit)
        throw Halide::CompileError(
            "kernel '" + g.name + "' does not fit a GPU block: tiles of " +
            std::to_string(g.tileQ) + " queries x " + std::to_string(g.tileK) +
            " keys with a value head of " + std::to_string(valueDim) + " need " +
            std::to_string(gpu::sharedBytes(g, valueDim)) + " bytes of shared memory, more than " +
            std::to_string(gpu::kSharedLimit));
      gpu::schedule(g, built.target);
      built.gpu = std::move(g);
      // Short query sequences (decoding): keys split across blocks.
      tiles.splitKeys = gpu::kMaxSplits;
      AttentionAlgorithm d = buildAlgorithm(low.kernelOps, tiles, opts.skipTiles);
      if (d.splitDecode) {
        gpu::schedule(d, built.target);
        built.gpuDecode = std::move(d);
      }
    } else {
      err += "attnc: warning: kernel '" + g.name + "' runs on the CPU only on target '" +
             opts.target + "': " + why + "\n";
      built.gpuWhyNot = why;
    }
  }
  if (opts.backward) {
    try {
      built.backward = buildBackward(low.kernelOps, TileSizes{built.alg.tileQ, built.alg.tileK,
                                                              built.alg.regQ, built.alg.regK});
    } catch (const Halide::CompileError &e) {
      if (!opts.backwardIfDifferentiable)
        throw;
      std::string why = e.what();
      if (why.rfind("attnc: ", 0) == 0)
        why = why.substr(7);
      err += "attnc: note: compiled without NAME_backward: " + why + "\n";
      return built;
    }
    cpu::scheduleBackward(*built.backward, built.target);
  }
  return built;
}

void printFunc(std::ostream &os, const Halide::Func &f) {
  if (!f.defined())
    return;
  auto argList = [](const std::vector<Halide::Expr> &args) {
    std::ostringstream s;
    for (size_t i = 0; i < args.size(); ++i)
      s << (i ? ", " : "") << args[i];
    return s.str();
  };
  std::vector<Halide::Expr> pure;
  for (const Halide::Var &v : f.args())
    pure.push_back(v);
  auto values = [](const Halide::Tuple &t) {
    std::ostringstream s;
    if (t.size() == 1)
      s << t[0];
    else {
      s << "{";
      for (size_t i = 0; i < t.size(); ++i)
        s << (i ? ", " : "") << t[i];
      s << "}";
    }
    return s.str();
  };
  os << f.name() << "(" << argList(pure) << ") = " << values(f.values()) << "\n";
  for (int u = 0; u < f.num_update_definitions(); ++u) {
    os << f.name() << "(" << argList(f.update_args(u)) << ") = " << values(f.update_values(u));
    const Halide::Internal::Definition &def = f.function().update(u);
    const auto &rvars = def.schedule().rvars();
    if (!rvars.empty()) {
      os << "   over ";
      for (size_t k = 0; k < rvars.size(); ++k)
        os << (k ? ", " : "") << rvars[k].var << " in [" << rvars[k].min << ", "
           << rvars[k].min + rvars[k].extent << ")";
    }
    if (def.predicate().defined() && !Halide::Internal::is_const_one(def.predicate()))
      os << " where " << def.predicate();
    os << "\n";
  }
}

std::string printAlgorithm(const AttentionAlgorithm &a) {
  std::ostringstream os;
  os << "// Halide algorithm of kernel '" << a.name << "': normalize=" << a.normalize
     << " strategy=" << a.strategy << " tile=" << a.tileQ << "x" << a.tileK << "\n";
  os << "// inputs:";
  for (const auto &p : a.tensors)
    os << " " << p.name() << ":" << p.type() << "[" << p.dimensions() << "d]";
  for (const auto &p : a.params)
    os << " " << p.name() << ":" << p.type();
  os << "\n";
  for (const auto &f : a.rowMaps)
    printFunc(os, f);
  for (const auto &f : a.vectors)
    printFunc(os, f);
  for (const KeySource &src : a.sources) {
    if (!src.name.empty())
      os << "// source " << src.name << ": strategy=" << src.strategy << "\n";
    for (const Halide::Func &f : src.stages()) {
      printFunc(os, f);
      if (a.sources.size() == 1 && src.rawScore.defined() && f.name() == src.rawScore.name())
        printFunc(os, a.topkState);
    }
  }
  if (a.sources.size() > 1)
    printFunc(os, a.topkState);
  if (a.linear) {
    os << "// linear attention in O(L) (" << (a.linear->causal ? "causal, chunked scan" : "two passes")
       << ")\n";
    for (const Halide::Func &f : a.linearInputs)
      printFunc(os, f);
    const LinearAttention &la = *a.linear;
    for (const Halide::Func *f : {&la.chunkState, &la.chunkNorm, &la.state, &la.norm, &la.scores,
                                  &la.numerator, &la.denominator, &la.value})
      printFunc(os, *f);
  }
  for (const Halide::Func *f : {&a.acc, &a.out, &a.lse})
    printFunc(os, *f);
  for (const auto &f : a.extra)
    printFunc(os, f);
  for (const auto &f : a.tileSummaries)
    printFunc(os, f);
  if (a.tileMap.defined())
    printFunc(os, a.tileMap);
  if (a.indexBounds.defined())
    printFunc(os, a.indexBounds);
  return os.str();
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The C type of a scalar argument of a Halide pipeline.
std::string cType(const Halide::Type &t) {
  if (t.is_bool())
    return "bool";
  if (t.is_float())
    return t.bits() == 64 ? "double" : "float";
  return std::string(t.is_uint() ? "uint" : "int") + std::to_string(t.bits()) + "_t";
}

/// The dispatcher of a GPU library, C++ that $CXX compiles beside the
/// Halide module: NAME(args) runs NAME_gpu and, when it or a copy back
/// fails, NAME_cpu. Callers pass host buffers: inputs are marked
/// host-dirty (Halide copies them to the device), outputs copied back, and
/// the device memory attnc allocated freed before returning; buffers that
/// arrive with a device allocation are the caller's. During NAME_gpu the
/// Halide error handler only records the message (the default one aborts),
/// then the caller's handler is restored; the first failure in a process
/// prints one warning through halide_print. NAME_gpu_error() is the last
/// call's failure on this thread ("" when the GPU ran it), and NAME_argv /
/// NAME_metadata are the usual Halide entry points.
std::string dispatcherSource(const std::string &name,
                             const std::vector<Halide::Internal::LoweredArgument> &args,
                             bool decode) {
  std::string params, call, argv, buffers, outputs;
  int nIn = 0, nOut = 0;
  for (size_t k = 0; k < args.size(); ++k) {
    const auto &a = args[k];
    std::string id = "a" + std::to_string(k);
    std::string type = a.is_buffer() ? "halide_buffer_t *" : cType(a.type) + " ";
    params += (k ? ", " : "") + type + id;
    call += (k ? ", " : "") + id;
    argv += std::string(k ? ", " : "") +
            (a.is_buffer() ? "(halide_buffer_t *)args[" + std::to_string(k) + "]"
                           : "*(" + cType(a.type) + " *)args[" + std::to_string(k) + "]");
    if (a.is_buffer()) {
      buffers += (nIn + nOut ? ", " : "") + id;
      if (a.is_output())
        outputs += std::string(nOut ? ", " : "") + std::to_string(nIn + nOut), ++nOut;
      else
        ++nIn;
    }
  }
  const int n = nIn + nOut;
  std::ostringstream os;
  os << "// The dispatcher of GPU kernel '" << name << "', written by attnc (docs/gpu.md).\n"
     << "#include \"HalideRuntime.h\"\n#include <atomic>\n#include <cstdint>\n#include <cstdio>\n"
     << "#include <cstring>\n\n"
     << "extern \"C\" int " << name << "_gpu(" << params << ");\n"
     << "extern \"C\" int " << name << "_cpu(" << params << ");\n"
     << (decode ? "extern \"C\" int " + name + "_gpu_decode(" + params + ");\n" : "")
     << "extern \"C\" const struct halide_filter_metadata_t *" << name << "_gpu_metadata();\n\n"
     << "namespace {\nthread_local char gpuError[1024];\nstd::atomic<bool> warned{false};\n"
     << "void recordError(void *, const char *msg) {\n"
     << "  std::snprintf(gpuError, sizeof gpuError, \"%s\", msg ? msg : \"\");\n"
     << "  size_t n = std::strlen(gpuError);\n"
     << "  while (n && gpuError[n - 1] == '\\n')\n    gpuError[--n] = 0;\n}\n} // namespace\n\n"
     << "extern \"C\" const char *" << name << "_gpu_error() { return gpuError; }\n\n"
     << "extern \"C\" int " << name << "(" << params << ") {\n"
     << "  halide_buffer_t *buffers[] = {" << buffers << "};\n"
     << "  const int outputs[] = {" << outputs << "};\n"
     << "  for (halide_buffer_t *b : buffers)\n"
     << "    if (!b) // the CPU kernel reports it, as Halide reports a null buffer\n"
     << "      return " << name << "_cpu(" << call << ");\n"
     << "  bool ours[" << n << "];\n"
     << "  for (int b = 0; b < " << n << "; ++b) {\n"
     << "    ours[b] = buffers[b]->device == 0;\n"
     << "    if (ours[b] && b < " << nIn << ")\n      buffers[b]->set_host_dirty(true);\n  }\n"
     << "  gpuError[0] = 0;\n"
     << "  halide_error_handler_t callers = halide_set_error_handler(recordError);\n"
     << "  // q is [B, H, Lq, D]: Halide's dim[1] is Lq.\n"
     << (decode ? "  int r = a0->dim[1].extent <= " + std::to_string(gpu::kDecodeRows) + " ? " + name +
                      "_gpu_decode(" + call + ") : " + name + "_gpu(" + call + ");\n"
                : "  int r = " + name + "_gpu(" + call + ");\n")
     << "  for (int o : outputs)\n"
     << "    if (r == 0 && ours[o])\n      r = halide_copy_to_host(nullptr, buffers[o]);\n"
     << "  halide_set_error_handler(callers);\n"
     << "  for (int b = 0; b < " << n << "; ++b)\n"
     << "    if (ours[b])\n      halide_device_free(nullptr, buffers[b]);\n"
     << "  if (r == 0)\n    return 0;\n"
     << "  char text[1200];\n"
     << "  std::snprintf(text, sizeof text, \"attnc: warning: kernel '" << name
     << "': the GPU failed (Halide error %d: %s); computing it on the CPU (" << name
     << "_cpu)\\n\", r, gpuError[0] ? gpuError : \"no message\");\n"
     << "  std::snprintf(gpuError, sizeof gpuError, \"%s\", text);\n"
     << "  if (!warned.exchange(true))\n    halide_print(nullptr, text);\n"
     << "  return " << name << "_cpu(" << call << ");\n}\n\n"
     << "extern \"C\" int " << name << "_argv(void **args) {\n  return " << name << "(" << argv
     << ");\n}\n\n"
     << "extern \"C\" const struct halide_filter_metadata_t *" << name << "_metadata() {\n"
     << "  return " << name << "_gpu_metadata();\n}\n";
  return os.str();
}

/// NAME's declaration (for the header): NAME_gpu's arguments, named as the
/// source names them (Halide numbers a second Func "out" out$1).
std::vector<Halide::Internal::LoweredArgument> dispatchArguments(const Halide::Module &m,
                                                                 const std::string &name) {
  std::vector<Halide::Internal::LoweredArgument> args = m.get_function_by_name(name + "_gpu").args;
  for (auto &a : args)
    a.name = a.name.substr(0, a.name.find('$'));
  return args;
}

/// Compiles a GPU library's dispatcher (dispatcherSource) to an object.
/// Throws std::runtime_error with the compiler's output when it fails.
void compileDispatcher(const std::string &name, const Halide::Module &module, bool decode,
                       const std::string &object) {
  std::string source = object + ".cpp";
  std::ofstream(source) << dispatcherSource(name, dispatchArguments(module, name), decode);
  std::vector<std::string> cmd = compilerCommand();
  for (const char *a : {"-std=c++17", "-O2", "-fPIC", "-c", "-I" ATTNC_HALIDE_RUNTIME_INCLUDE, "-o"})
    cmd.push_back(a);
  cmd.push_back(object);
  cmd.push_back(source);
  std::string output;
  int rc = runProgram(cmd, output);
  std::error_code ec;
  fs::remove(source, ec);
  if (rc != 0)
    throw std::runtime_error("compiling the GPU dispatcher of '" + name + "' with '" + cmd[0] +
                             "' failed (set CXX to a C++ compiler driver):\n" + output);
}

/// Kernel + index-check pipeline as one Halide module. Throws Halide::Error.
Halide::Module buildModule(Built &built, KernelManifest &manifest) {
  AttentionAlgorithm &a = built.alg;
  manifest.name = a.name;
  manifest.target = built.target.to_string();
  manifest.hasGpu = built.gpu.has_value();
  manifest.hasGpuDecode = built.gpuDecode.has_value();
  manifest.gpuWhyNot = built.gpuWhyNot;
  manifest.strategy = a.strategy;
  manifest.decode = a.decode;
  manifest.decodeScale = a.decodeScale;
  manifest.decodeDecay = a.decodeDecay;
  std::vector<Halide::Module> modules;
  // Each entry point: its pipeline compiled as NAME + suffix.
  auto addPipeline = [&](Halide::Pipeline p, const std::vector<Halide::Argument> &args,
                         const std::string &suffix) {
    modules.push_back(p.compile_to_module(args, a.name + suffix, built.target));
  };
  auto add = [&](const std::vector<Halide::Func> &outputs, const std::vector<Halide::Argument> &args,
                 const std::string &suffix) { addPipeline(Halide::Pipeline(outputs), args, suffix); };
  if (built.gpu) {
    // NAME (dispatcherSource, compiled beside) runs NAME_gpu and, when the
    // device fails, NAME_cpu.
    addPipeline(built.gpu->pipeline(), built.gpu->arguments(), "_gpu");
    addPipeline(a.pipeline(), a.arguments(), "_cpu");
    // The decode kernel is an object of its own (linked beside, using the
    // main object's runtime): two GPU pipelines in one Halide module share
    // the device-code state's name, and the second one's kernels are not
    // found (CL_INVALID_KERNEL_NAME on PoCL).
    if (built.gpuDecode)
      built.decodeModule = built.gpuDecode->pipeline().compile_to_module(
          built.gpuDecode->arguments(), a.name + "_gpu_decode",
          built.target.with_feature(Halide::Target::NoRuntime));
  } else {
    addPipeline(a.pipeline(), a.arguments(), "");
  }
  if (a.hasTileMap) {
    add({a.tileMap}, a.inputArguments(), "_tile_map");
    manifest.hasTileMap = true;
    manifest.tileQ = a.tileQ;
    manifest.tileK = a.tileK;
  }
  if (a.decayTable.defined() && a.decode == "linear") {
    add({a.decayTable}, {}, "_decay");
    manifest.hasDecayTable = true;
  }
  if (a.featureQ.defined() && a.decode == "linear") {
    add({a.featureQ, a.featureK}, a.inputArguments(), "_features");
    manifest.hasFeatures = true;
    manifest.featureLength = a.featureLength;
  }
  if (a.indexBounds.defined()) {
    std::vector<Halide::Argument> args = a.inputArguments();
    args.push_back(a.exactChecks);
    add({a.indexBounds}, args, "_check_indices");
    manifest.hasIndexCheck = true;
    for (const IndexCheck &c : a.indexChecks)
      manifest.indexChecks.push_back({c.tensor, c.dim});
  }
  if (built.backward) {
    BackwardAlgorithm &bw = *built.backward;
    add(bw.outputs, bw.arguments(), "_backward");
    manifest.hasBackward = true;
    manifest.gradNames = bw.gradNames;
    if (bw.lseRows.defined()) {
      add({bw.lseRows}, inputArgumentsOf(bw.tensors, bw.params), "_lse");
      manifest.hasLse = true;
    }
  }
  return Halide::link_modules(a.name, modules);
}

/// Halide's compile-time messages: errors become exceptions (caught by
/// guarded), warnings are collected and reported as attnc warnings. The
/// warning that bf16/f16 arithmetic is emulated is dropped: attnc only
/// converts those types (bit shifts) and computes in f32.
class HalideReporter : public Halide::CompileTimeErrorReporter {
public:
  void warning(const char *msg) override {
    std::string m = msg;
    if (m.find("float16 type operation is emulated") != std::string::npos)
      return;
    while (!m.empty() && m.back() == '\n')
      m.pop_back();
    pending() += "attnc: warning: Halide: " + m + "\n";
  }
  [[noreturn]] void error(const char *msg) override { throw Halide::CompileError(msg); }
  static std::string &pending() {
    thread_local std::string text;
    return text;
  }
};

template <typename F> bool guarded(std::string &err, F &&f) {
  static HalideReporter reporter;
  static std::once_flag installed;
  std::call_once(installed, [] { Halide::set_custom_compile_time_error_reporter(&reporter); });
  struct Flush {
    std::string &err;
    ~Flush() {
      err += HalideReporter::pending();
      HalideReporter::pending().clear();
    }
  } flush{err};
  try {
    f();
    return true;
  } catch (const Halide::CompileError &e) {
    err += std::string("attnc: error: ") + e.what() + "\n";
  } catch (const Halide::Error &e) {
    err += std::string("attnc: error: Halide: ") + e.what() + "\n";
  } catch (const std::exception &e) {
    err += std::string("attnc: error: ") + e.what() + "\n";
  }
  return false;
}

} // namespace

std::string resolveTarget(const std::string &spec, std::string &warnings) {
  std::string err;
  std::string result;
  if (!guarded(err, [&] { result = resolveHalideTarget(spec, warnings).to_string(); })) {
    warnings += err;
    return "";
  }
  return result;
}

std::string targetRunsHere(const std::string &target) {
  std::string why;
  guarded(why, [&] {
    Halide::Target t(target), host = Halide::get_host_target();
    if (t.arch != host.arch || t.bits != host.bits || t.os != host.os) {
      why = "target '" + target + "' is not this machine (" +
            host.without_feature(Halide::Target::NoRuntime).to_string() +
            "): a kernel for it cannot be run here; compile it ahead of time with "
            "`attnc compile --target " + target + "` and run it on such a machine";
      return;
    }
    using F = Halide::Target::Feature;
    for (F f : {F::SSE41, F::AVX, F::AVX2, F::FMA, F::FMA4, F::F16C, F::AVX512, F::AVX512_KNL,
                F::AVX512_Skylake, F::AVX512_Cannonlake, F::AVX512_SapphireRapids,
                F::AVX512_Zen4, F::AVX512_Zen5, F::AVXVNNI, F::AVX10_1, F::SVE, F::SVE2,
                F::ARMDotProd, F::ARMFp16})
      if (t.has_feature(f) && !host.has_feature(f)) {
        why = "target '" + target + "' uses CPU features this machine lacks (host: " +
              host.to_string() + "); a kernel for it cannot be run here";
        return;
      }
  });
  return why;
}

bool emitStage(const SourceFile &src, Stage stage, const CompileOptions &opts, std::string &out,
               std::string &err) {
  Lowered low;
  bool needKernel = stage == Stage::Halide || stage == Stage::Stmt;
  if (!frontEnd(src, opts, needKernel, low, err))
    return false;
  if (stage == Stage::Ast) {
    // The AST stage shows the whole file: Sema's view of every kernel.
    out = dsl::printModule(*low.ast);
    return true;
  }
  if (!toMlir(src, stage != Stage::Mlir, low, err))
    return false;
  if (stage == Stage::Mlir || stage == Stage::MlirOpt) {
    if (opts.kernel.empty()) {
      out = printOp(*low.module);
    } else {
      out.clear();
      for (mlir::Operation *op : low.kernelOps)
        out += printOp(op);
    }
    return true;
  }
  return guarded(err, [&] {
    Built built = buildHalide(low, opts, err);
    if (stage == Stage::Halide) {
      out = printAlgorithm(built.gpu ? *built.gpu : built.alg);
      return;
    }
    // A private folder (mkdtemp, 0700): no name in the shared temp
    // directory another user could plant a link at.
    std::string tmpl = (fs::temp_directory_path() / "attnc-stmt-XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))
      throw std::runtime_error("cannot create a temporary folder in " +
                               fs::temp_directory_path().string() + ": " + std::strerror(errno));
    fs::path tmp = fs::path(tmpl) / "kernel.stmt";
    // A GPU target shows the GPU loop nest (its CPU failover is the host's).
    const AttentionAlgorithm &shown = built.gpu ? *built.gpu : built.alg;
    shown.pipeline().compile_to_lowered_stmt(tmp.string(), shown.arguments(), Halide::Text, built.target);
    out = readFile(tmp.string());
    std::error_code ec;
    fs::remove_all(tmpl, ec);
  });
}

bool compileStaticLibrary(const SourceFile &src, const CompileOptions &opts, const std::string &dir,
                          KernelManifest &manifest, std::string &err) {
  Lowered low;
  if (!frontEnd(src, opts, true, low, err) || !toMlir(src, true, low, err))
    return false;
  return guarded(err, [&] {
    Built built = buildHalide(low, opts, err);
    Halide::Module module = buildModule(built, manifest);
    fs::create_directories(dir);
    fs::path base = fs::path(dir) / built.alg.name;
    const std::string name = built.alg.name;
    if (!manifest.hasGpu) {
      module.compile({{Halide::OutputFileType::static_library, base.string() + ".a"},
                      {Halide::OutputFileType::c_header, base.string() + ".h"}});
    } else {
      // The Halide module's object and the dispatcher's in one archive; the
      // header declares NAME beside the module's entry points; the device
      // code is written beside the library (PTX for CUDA, OpenCL C for
      // OpenCL; both are inside NAME.a too), for reading and for ptxas.
      std::string kernelObj = base.string() + ".kernel.o", dispatchObj = base.string() + ".dispatch.o";
      struct Remove {
        std::vector<std::string> paths;
        ~Remove() {
          std::error_code ec;
          for (const std::string &p : paths)
            fs::remove(p, ec);
        }
      } cleanup{{kernelObj, dispatchObj}};
      const std::string decodeObj = base.string() + ".decode.o";
      cleanup.paths.push_back(decodeObj);
      const std::string ext = built.target.has_feature(Halide::Target::CUDA) ? ".ptx" : ".cl";
      // NAME.ptx (or .cl) and, with a split-key decode kernel, NAME_decode.ptx.
      module.compile({{Halide::OutputFileType::object, kernelObj},
                      {Halide::OutputFileType::device_code, base.string() + ext}});
      std::vector<std::string> objects{kernelObj, dispatchObj};
      if (built.decodeModule) {
        built.decodeModule->compile({{Halide::OutputFileType::object, decodeObj},
                                     {Halide::OutputFileType::device_code,
                                      base.string() + "_decode" + ext}});
        objects.push_back(decodeObj);
      }
      compileDispatcher(name, module, manifest.hasGpuDecode, dispatchObj);
      Halide::create_static_library(objects, built.target, base.string() + ".a");
      Halide::Module header(name, built.target);
      for (const Halide::Internal::LoweredFunc &f : module.functions())
        header.append(f);
      if (built.decodeModule)
        for (const Halide::Internal::LoweredFunc &f : built.decodeModule->functions())
          header.append(f);
      header.append(Halide::Internal::LoweredFunc(name, dispatchArguments(module, name),
                                                  Halide::Internal::Stmt(),
                                                  Halide::LinkageType::ExternalPlusMetadata));
      header.compile({{Halide::OutputFileType::c_header, base.string() + ".h"}});
      std::ofstream(base.string() + ".h", std::ios::app)
          << "\n// attnc: NAME runs " << name << "_gpu, else " << name << "_cpu (docs/gpu.md);\n"
          << "// the last call's GPU failure on this thread, \"\" when the GPU ran it.\n"
          << "#ifdef __cplusplus\nextern \"C\"\n#endif\nconst char *" << name << "_gpu_error(void);\n";
    }
    // What NAME_check_indices' rows mean, for AOT callers.
    std::ofstream(base.string() + ".json") << manifest.toJson() << "\n";
  });
}

bool compileSharedObject(const SourceFile &src, const CompileOptions &opts,
                         const std::string &soPath, KernelManifest &manifest, std::string &err) {
  Lowered low;
  if (!frontEnd(src, opts, true, low, err) || !toMlir(src, true, low, err))
    return false;
  fs::path obj = soPath + ".o", dispatchObj = soPath + ".dispatch.o", decodeObj = soPath + ".decode.o";
  bool ok = guarded(err, [&] {
    Built built = buildHalide(low, opts, err);
    Halide::Module module = buildModule(built, manifest);
    module.compile({{Halide::OutputFileType::object, obj.string()}});
    if (built.decodeModule)
      built.decodeModule->compile({{Halide::OutputFileType::object, decodeObj.string()}});
    if (manifest.hasGpu)
      compileDispatcher(built.alg.name, module, manifest.hasGpuDecode, dispatchObj.string());
  });
  if (!ok) {
    std::error_code ec;
    fs::remove(obj, ec);
    fs::remove(dispatchObj, ec);
    fs::remove(decodeObj, ec);
    return false;
  }
  // Link the object (which carries the Halide runtime) into a shared object.
  // -Bsymbolic keeps its runtime private when several kernels are loaded.
  // The linker runs from an argument vector, never through a shell: paths
  // (the cache directory comes from the environment) are data.
  std::vector<std::string> args = compilerCommand();
  for (const char *a : {"-shared", "-Wl,-Bsymbolic", "-o"})
    args.push_back(a);
  args.push_back(soPath);
  args.push_back(obj.string());
  if (manifest.hasGpu)
    args.push_back(dispatchObj.string());
  if (manifest.hasGpuDecode)
    args.push_back(decodeObj.string());
  for (const char *a : {"-lpthread", "-ldl", "-lm"})
    args.push_back(a);
  std::string output;
  int rc = runProgram(args, output);
  std::error_code ec;
  fs::remove(obj, ec);
  fs::remove(dispatchObj, ec);
  fs::remove(decodeObj, ec);
  if (rc == 0)
    return true;
  std::string shown;
  for (const std::string &a : args)
    shown += (shown.empty() ? "" : " ") + a;
  if (rc == 127 && output.empty())
    err += "attnc: error: could not run the linker '" + args[0] +
           "' (set CXX to a C++ compiler driver): " + shown + "\n";
  else
    err += "attnc: error: linking the kernel failed: " + shown + "\n" + output;
  return false;
}

std::vector<std::string> compilerCommand() {
  // $CXX may carry options ("ccache c++", "clang++ -fuse-ld=lld"): split at
  // whitespace into words, with no shell quoting or expansion.
  std::vector<std::string> words;
  const char *cxx = std::getenv("CXX");
  std::istringstream in(cxx && *cxx ? cxx : "c++");
  for (std::string w; in >> w;)
    words.push_back(w);
  if (words.empty())
    words.push_back("c++");
  return words;
}

int runProgram(const std::vector<std::string> &args, std::string &output) {
  if (args.empty())
    return 127;
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    output = std::string("pipe: ") + std::strerror(errno) + "\n";
    return -1;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return 127;
  }
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0)
      output.append(buf, size_t(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

} // namespace attn
