// The compiler driver: `.attn` source -> any stage of the pipeline, as text
// (`attnc emit`), as a static library + header (`attnc compile`, AOT) or as
// a shared object the runtime loads (JIT). No MLIR or Halide types here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attn {

enum class Stage { Ast, Mlir, MlirOpt, Halide, Stmt };

/// Parses "ast", "mlir", "mlir-opt", "halide", "stmt".
bool parseStage(const std::string &text, Stage &stage);

struct SourceFile {
  std::string fileName;
  std::string text;
};

/// What the runtime must know about a compiled kernel beyond its signature.
struct KernelManifest {
  std::string name;
  std::string target;   // the Halide target string it was compiled for
  std::string strategy; // attn-select-strategy's choice
  std::string decode = "none"; // hull, scan, linear or none (jit/Decoder.h)
  double decodeScale = 1;      // decodable kernels: score = decodeScale * dot(q, k)
  double decodeDecay = 1;      // linear: times pow(decodeDecay, i - j), in (0, 1]
  bool hasIndexCheck = false;
  /// Data-dependent masks: NAME_tile_map(inputs..., params..., map) builds
  /// the uint8 tile map [B][H][ceil(Lq/tileQ)][ceil(Lk/tileK)] that NAME
  /// takes after its aux tensors.
  bool hasTileMap = false;
  bool hasDecayTable = false; // NAME_decay(out f64[H]): the per-head decay g
  bool hasFeatures = false;   // NAME_features(inputs, params, out φq, out φk)
  std::string featureLength;  // their length N: a literal or a size name
  int tileQ = 64, tileK = 128;
  struct Check {
    std::string tensor;
    int dim = 0;
  };
  std::vector<Check> indexChecks; // in the order of NAME_check_indices' rows
  /// CompileOptions::backward: NAME_backward(inputs..., params..., out, dout[,
  /// lse, dlse], dq, dk, dv, then one gradient per gradNames entry after "q", "k",
  /// "v"); softmax kernels without `output lse` also NAME_lse(inputs...,
  /// params..., lse).
  /// A GPU target: NAME runs NAME_gpu, and NAME_cpu when the device fails.
  /// A kernel without a GPU schedule has only the CPU kernel and says why.
  bool hasGpu = false;
  /// ... and NAME_gpu_decode, the split-key kernel NAME runs when Lq is short.
  bool hasGpuDecode = false;
  std::string gpuWhyNot;
  bool hasBackward = false;
  bool hasLse = false;
  std::vector<std::string> gradNames;
  /// JIT cache entries: the shared object's size and FNV-1a 64 hash (16 hex
  /// digits), checked before it is loaded. 0 / empty elsewhere.
  uint64_t soSize = 0;
  std::string soHash;
  std::string toJson() const;
  /// false on malformed JSON, fields of the wrong type or out-of-range values
  /// (tile sizes outside [1, 65536], an unknown decoder, ...).
  static bool fromJson(const std::string &json, KernelManifest &out);
};

struct CompileOptions {
  std::string kernel; // may be empty when the file has one kernel
  std::string target = "host";
  /// false: evaluate the mask on every pair and skip no tile (for tests
  /// that compare the analysed kernel with the unanalysed one).
  bool skipTiles = true;
  /// Also compile the backward (NAME_backward; KernelManifest::hasBackward).
  bool backward = false;
  /// With `backward`: a kernel attnc cannot differentiate yet compiles
  /// without it and a note saying why, instead of failing (attnc compile).
  bool backwardIfDifferentiable = false;
};

/// Diagnostics (clang-style for source errors, `attnc: error: ...` for the
/// rest) are appended to `err`; functions return false on error.
bool emitStage(const SourceFile &src, Stage stage, const CompileOptions &opts,
               std::string &out, std::string &err);

/// Writes DIR/NAME.a and DIR/NAME.h. The library holds NAME(q, k, v, aux...,
/// params..., out[, lse]) and, when the kernel reads aux tensors,
/// NAME_check_indices(..., bounds) returning the min/max of every index.
bool compileStaticLibrary(const SourceFile &src, const CompileOptions &opts,
                          const std::string &dir, KernelManifest &manifest, std::string &err);

/// Writes a shared object at `soPath` exporting NAME_argv (and
/// NAME_check_indices_argv), for the JIT runtime.
bool compileSharedObject(const SourceFile &src, const CompileOptions &opts,
                         const std::string &soPath, KernelManifest &manifest, std::string &err);

/// The Halide target string a spec resolves to ("host" -> this machine's
/// features; OpenCL gets cl_doubles, CUDA without a capability sm_70). A
/// GPU API other than CUDA and OpenCL falls back to the host CPU with a
/// warning appended to `warnings`.
std::string resolveTarget(const std::string &spec, std::string &warnings);

/// Empty when kernels compiled for `target` (a resolved Halide target
/// string) can run in this process; else why not (another architecture or
/// OS, or CPU features the host lacks).
std::string targetRunsHere(const std::string &target);

/// The C++ compiler driver that links JIT kernels: $CXX split at whitespace
/// (no shell), else "c++".
std::vector<std::string> compilerCommand();

/// Runs args[0] (looked up in PATH) with `args`, without a shell, collecting
/// its stdout and stderr into `output`; the exit status, 127 when it could
/// not be started, 128+N when killed by signal N.
int runProgram(const std::vector<std::string> &args, std::string &output);

/// attnc's version string (part of the compile cache key).
const char *version();

/// A hash of the sources attnc was built from (cmake/WriteBuildId.cmake):
/// the compile cache's key for the code generator, the same in every
/// program built from one tree (the CLI, the Python extension), so they
/// share cached kernels.
const char *buildId();

} // namespace attn
