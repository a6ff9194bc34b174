// The just-in-time API: compile a `.attn` source string to a callable
// kernel, with a persistent on-disk cache, and run it on host tensors.
//
//   auto k = attn::JitKernel::compile({"causal.attn", text}, {});
//   attn::runtime::HostTensor out;
//   k->run({{"q", q}, {"k", k}, {"v", v}}, {}, out, nullptr);
//
// Compiled kernels are shared objects in the cache directory ($ATTNC_CACHE_DIR,
// else $XDG_CACHE_HOME/attnc, else ~/.cache/attnc, else a 0700 folder
// attnc-cache-UID in the temp directory), keyed by attnc and Halide versions,
// target, kernel name and source text; a second compile of the same source
// loads the cached object without compiling. The directory must belong to
// the user and be writable by no one else; entries are published by atomic
// rename and checked (size, hash, manifest values) before they are loaded; a
// damaged entry is rebuilt with a warning.
#pragma once

#include "attn/compiler/Driver.h"
#include "attn/dsl/AST.h"
#include "attn/runtime/Bind.h"
#include "attn/runtime/Tensor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace attn {

struct JitOptions {
  std::string kernel;        // may be empty when the source has one kernel
  std::string target = "host";
  bool useCache = true;
  std::string cacheDir;      // empty: the default cache directory
  bool skipTiles = true;     // see CompileOptions::skipTiles
  bool backward = false;     // also compile the backward (JitKernel::backward)
  /// GPU targets: a call whose GPU kernel fails is an error instead of
  /// falling back to the CPU (tests, scripts/gpu-check.sh).
  bool requireGpu = false;
};

class JitKernel {
public:
  ~JitKernel();
  JitKernel(const JitKernel &) = delete;
  JitKernel &operator=(const JitKernel &) = delete;

  /// Compiles (or loads from the cache). Diagnostics and warnings go to
  /// `messages`; a null result means failure.
  static std::unique_ptr<JitKernel> compile(const SourceFile &src, const JitOptions &opts,
                                            std::string &messages);

  const dsl::Kernel &kernel() const { return *kernel_; }
  const KernelManifest &manifest() const { return manifest_; }
  bool cacheHit() const { return cacheHit_; }
  double compileSeconds() const { return compileSeconds_; }

  /// A call with its arguments checked and its outputs allocated, ready to
  /// run (repeatedly, for benchmarks).
  struct Call {
    runtime::Bindings bindings;
    std::vector<void *> argv;
    std::vector<std::shared_ptr<void>> storage; // buffers and scalars argv points to
    runtime::HostTensor out, lse;
    /// Data-dependent masks: the tile map built from the aux tensors
    /// (uint8 [B, H, query tiles, key blocks]); reused by every execute.
    runtime::HostTensor tileMap;
    double tileMapSeconds = 0; // time prepare() spent building it
    /// What the helper pipelines take: the inputs, then the params.
    std::vector<void *> inputArgv;
    /// Set before prepare(): check and bind the inputs only (inputArgv),
    /// with no tile map and no outputs (what the backward needs).
    bool inputsOnly = false;
  };

  /// One position's features, for the decoder of a linear kernel whose
  /// score is dot(x, y) of channel vectors computed from their own row
  /// (manifest().hasFeatures: elu+1, Performer): q, k and v of one position
  /// ([1, 1, 1, d]; v unused), the aux tensors given once, and φ(q) (the
  /// score's constant included) and φ(k) as f64 [1, 1, 1, length].
  struct FeatureCall {
    std::map<std::string, runtime::HostTensor> inputs;
    runtime::HostTensor fq, fk;
    int length = 0;
    Call call;
    std::vector<void *> argv;
    std::vector<std::shared_ptr<void>> views;
  };
  /// Checks the aux tensors (every one the kernel declares) and sets up `fc`.
  runtime::Status prepareFeatures(const std::map<std::string, runtime::HostTensor> &aux, int d,
                                  int dv, FeatureCall &fc) const;
  /// φ(q) and φ(k) of the rows q and k (d doubles each) into fc.fq, fc.fk.
  runtime::Status features(FeatureCall &fc, const double *q, const double *k) const;

  /// Checks every argument (names, dtypes, ranks, sizes, params) and every
  /// aux-tensor index, builds the tile map of a data-dependent mask, and
  /// allocates out (and lse when the kernel outputs it). The kernel reads
  /// the inputs in place: they must outlive the call. A TensorRef may have
  /// any strides whose magnitude fits in 32 bits, as long as its last
  /// dimension is contiguous (stride 1).
  runtime::Status prepare(const std::map<std::string, runtime::TensorRef> &inputs,
                          const std::map<std::string, dsl::Literal> &params, Call &call) const;
  /// As above with params as text (`--param NAME=VALUE`).
  runtime::Status prepare(const std::map<std::string, runtime::TensorRef> &inputs,
                          const std::map<std::string, std::string> &params, Call &call) const;
  runtime::Status prepare(const std::map<std::string, runtime::HostTensor> &inputs,
                          const std::map<std::string, std::string> &params, Call &call) const;
  /// Runs a prepared call. Calls of one kernel may run on several threads at
  /// once, each with its own Call.
  runtime::Status execute(Call &call) const;

  /// prepare + execute; moves the results into out / lse (lse may be null).
  runtime::Status run(const std::map<std::string, runtime::HostTensor> &inputs,
                      const std::map<std::string, std::string> &params,
                      runtime::HostTensor &out, runtime::HostTensor *lse) const;

  /// Gradients, for a kernel compiled with JitOptions::backward: from the
  /// forward's inputs and params, its out and the gradient of a loss with
  /// respect to it, dout (both q's type, [B, H, Lq, Dv]), and for softmax its
  /// lse (f32 [B, H, Lq]; null: the kernel's NAME_lse computes it) and, when
  /// the loss reads lse too, dlse = dL/dlse (f32 [B, H, Lq]; null: 0), writes
  /// `grads`: "q", "k", "v" (their shapes and types), every float aux tensor
  /// the score reads, and every float param (a 0-d tensor), as
  /// manifest().gradNames lists them. Errors name the tensor and dimension.
  runtime::Status backward(const std::map<std::string, runtime::HostTensor> &inputs,
                           const std::map<std::string, std::string> &params,
                           const runtime::HostTensor &out, const runtime::HostTensor &dout,
                           const runtime::HostTensor *lse,
                           std::map<std::string, runtime::HostTensor> &grads,
                           const runtime::HostTensor *dlse = nullptr) const;
  /// The same on views (read in place) with params as literals.
  runtime::Status backward(const std::map<std::string, runtime::TensorRef> &inputs,
                           const std::map<std::string, dsl::Literal> &params,
                           const runtime::TensorRef &out, const runtime::TensorRef &dout,
                           const runtime::TensorRef *lse,
                           std::map<std::string, runtime::HostTensor> &grads,
                           const runtime::TensorRef *dlse = nullptr) const;

  /// The decay g of query head `head` of a linear kernel whose score decays
  /// by pow(g, i - j) with g computed from h (manifest().hasDecayTable):
  /// what the decoder of that head's streams uses.
  runtime::Status decayOfHead(int64_t head, double &g) const;

  /// The default cache directory.
  static std::string defaultCacheDir();

private:
  JitKernel() = default;
  runtime::Status prepareBound(const std::map<std::string, runtime::TensorRef> &inputs,
                               Call &call) const;
  runtime::Status checkIndices(Call &call, const std::vector<void *> &inputArgv) const;
  /// prepare (params as text or literals), then backwardPrepared.
  template <class Params>
  runtime::Status backwardOf(const std::map<std::string, runtime::TensorRef> &inputs,
                             const Params &params, const runtime::TensorRef &out,
                             const runtime::TensorRef &dout, const runtime::TensorRef *lse,
                             const runtime::TensorRef *dlse,
                             std::map<std::string, runtime::HostTensor> &grads) const;
  runtime::Status backwardPrepared(Call &call,
                                   const std::map<std::string, runtime::TensorRef> &inputs,
                                   const runtime::TensorRef &out, const runtime::TensorRef &dout,
                                   const runtime::TensorRef *lse, const runtime::TensorRef *dlse,
                                   std::map<std::string, runtime::HostTensor> &grads) const;
  /// Validates a cache entry (manifest fields, the .so's size and hash)
  /// and loads it; empty on success, else why it is unusable.
  std::string loadCached(const std::string &so, const std::string &manifestPath);
  /// dlopen + the entry points of manifest_; empty on success.
  std::string load(const std::string &so);

  std::unique_ptr<dsl::Module> module_;
  const dsl::Kernel *kernel_ = nullptr;
  KernelManifest manifest_;
  void *handle_ = nullptr;
  int (*entry_)(void **) = nullptr;
  int (*check_)(void **) = nullptr;
  int (*tileMap_)(void **) = nullptr;
  int (*decay_)(void **) = nullptr;
  int (*features_)(void **) = nullptr;
  int (*backward_)(void **) = nullptr;
  int (*lse_)(void **) = nullptr;
  bool cacheHit_ = false;
  bool requireGpu_ = false;
  const char *(*gpuError_)() = nullptr; // GPU libraries: NAME_gpu_error
  double compileSeconds_ = 0;
};

} // namespace attn
