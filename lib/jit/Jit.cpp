// The JIT runtime (see Jit.h): compile-or-load through the on-disk cache,
// argument checking, aux-index checking and the call through NAME_argv.
#include "attn/jit/Jit.h"
#include "attn/runtime/Peak.h"

#include "attn/dsl/Sema.h"

#include "HalideRuntime.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using attn::runtime::HostTensor;
using attn::runtime::Status;

namespace attn {

namespace {

/// Removes a file or folder (and what it holds) when it goes out of scope,
/// unless `path` was cleared: temporaries of a compile that failed.
struct RemoveOnExit {
  fs::path path;
  ~RemoveOnExit() {
    std::error_code ec;
    if (!path.empty())
      fs::remove_all(path, ec);
  }
};

thread_local std::string lastHalideError;

void captureHalideError(void *, const char *msg) {
  lastHalideError = msg ? msg : "unknown error";
  while (!lastHalideError.empty() && lastHalideError.back() == '\n')
    lastHalideError.pop_back();
}

/// halide_print of a kernel: to stderr, each distinct message once per
/// process (a GPU library's failover warning in a loop of calls).
void relayHalidePrint(void *, const char *msg) {
  static std::mutex mutex;
  static std::set<std::string> shown;
  std::string text = msg ? msg : "";
  std::lock_guard<std::mutex> lock(mutex);
  if (shown.insert(text).second)
    std::fputs(text.c_str(), stderr);
}

uint64_t fnv1a(uint64_t h, const std::string &s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= 0xff; // separator, so ("ab","c") != ("a","bc")
  h *= 1099511628211ull;
  return h;
}

std::string readFile(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A name no other process or thread writing the same cache entry uses:
/// PID, thread and 64 random bits.
std::string uniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  uint64_t r = (uint64_t(rd()) << 32) ^ rd() ^ counter++;
  char buf[96];
  snprintf(buf, sizeof buf, ".tmp-%ld-%zx-%016llx", (long)::getpid(),
           std::hash<std::thread::id>()(std::this_thread::get_id()), (unsigned long long)r);
  return buf;
}

/// The FNV-1a 64 hash of a file's bytes as 16 hex digits, and its size;
/// empty when it cannot be read.
std::string hashFile(const fs::path &p, uint64_t &size) {
  std::ifstream in(p, std::ios::binary);
  if (!in)
    return "";
  uint64_t h = 1469598103934665603ull;
  size = 0;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    std::streamsize n = in.gcount();
    for (std::streamsize i = 0; i < n; ++i) {
      h ^= (unsigned char)buf[i];
      h *= 1099511628211ull;
    }
    size += uint64_t(n);
  }
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  return hex;
}

/// Writes `data` under a unique temporary name beside `p` and renames it
/// over `p` (atomic: a reader sees the old file or the whole new one).
bool writeFileAtomically(const fs::path &p, const std::string &data) {
  fs::path tmp = p;
  tmp += uniqueSuffix();
  {
    std::ofstream out(tmp, std::ios::binary);
    out << data;
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return false;
    }
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec)
    fs::remove(tmp, ec);
  return !ec;
}

/// Creates `dir` (the last component 0700) if missing, then refuses it
/// unless it is a directory owned by this user that no group or other user
/// can write: whoever can write the cache chooses the code the JIT runs.
/// Empty on success, else the error.
std::string preparePrivateDir(const fs::path &dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    if (dir.has_parent_path())
      fs::create_directories(dir.parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return "cannot create the cache directory " + dir.string() + ": " + std::strerror(errno) +
             "; set ATTNC_CACHE_DIR to a writable directory, or run with --no-cache";
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    return "cannot use the cache directory " + dir.string() + ": " + std::strerror(errno);
  if (!S_ISDIR(st.st_mode))
    return "the cache directory " + dir.string() + " is not a directory";
  if (st.st_uid != ::geteuid())
    return "refusing the cache directory " + dir.string() + ": it belongs to uid " +
           std::to_string(st.st_uid) + ", not to you (uid " + std::to_string(::geteuid()) +
           "), and whoever can write it chooses the code attnc runs; set ATTNC_CACHE_DIR to a "
           "directory of yours";
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return "refusing the cache directory " + dir.string() + ": it is writable by group or others (mode " +
           mode + "), and whoever can write it chooses the code attnc runs; `chmod go-w " +
           dir.string() + "` or set ATTNC_CACHE_DIR";
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return "cannot write to the cache directory " + dir.string() + ": " + std::strerror(errno) +
           "; set ATTNC_CACHE_DIR to a writable directory, or run with --no-cache";
  return "";
}

halide_type_t halideType(dsl::ElemType t) {
  switch (t) {
  case dsl::ElemType::F32: return halide_type_t(halide_type_float, 32);
  case dsl::ElemType::F16: return halide_type_t(halide_type_float, 16);
  case dsl::ElemType::BF16: return halide_type_t(halide_type_bfloat, 16);
  case dsl::ElemType::F64: return halide_type_t(halide_type_float, 64);
  case dsl::ElemType::I32: return halide_type_t(halide_type_int, 32);
  case dsl::ElemType::I64: return halide_type_t(halide_type_int, 64);
  case dsl::ElemType::Bool: return halide_type_t(halide_type_uint, 1);
  }
  return halide_type_t();
}

/// A halide_buffer_t view of a tensor (C order -> Halide's reversed dims).
struct BufferView {
  halide_buffer_t buf{};
  std::vector<halide_dimension_t> dims;
};

/// Fills `v` with a view of `t`; Halide's extents and strides are 32-bit
/// and its kernels assume a contiguous innermost dimension.
Status makeView(const std::string &name, const runtime::TensorRef &t, halide_type_t type,
                BufferView &v) {
  int n = t.rank();
  v.dims.resize(n);
  for (int k = 0; k < n; ++k) {
    int declared = n - 1 - k;
    int64_t extent = t.shape[declared], stride = t.strides[declared];
    auto where = [&] {
      return "tensor '" + name + "' (" + t.describe() + "), dimension " +
             std::to_string(declared);
    };
    if (extent > INT32_MAX || stride > INT32_MAX || stride < -INT32_MAX)
      return Status::error("attnc: error: " + where() + " has " +
                           (extent > INT32_MAX ? "extent " + std::to_string(extent)
                                               : "stride " + std::to_string(stride)) +
                           ", beyond the 2^31 - 1 a kernel buffer can address\n"
                           "hint: split the tensor (e.g. over the batch) into calls of fewer "
                           "elements");
    if (k == 0 && stride != 1 && extent > 1)
      return Status::error(where() + " has stride " + std::to_string(stride) +
                           "; the last dimension of every tensor must be contiguous "
                           "(stride 1): pass a contiguous copy");
    v.dims[k] = halide_dimension_t(0, (int32_t)extent, k == 0 ? 1 : (int32_t)stride);
  }
  v.buf.host = (uint8_t *)t.data;
  v.buf.type = type;
  v.buf.dimensions = n;
  v.buf.dim = v.dims.data();
  return Status::ok();
}

std::shared_ptr<void> scalar(const dsl::ParamDecl &p, const dsl::Literal &v) {
  auto num = [&]() { return v.kind == dsl::Literal::Kind::Float ? v.f : double(v.i); };
  switch (p.type) {
  case dsl::ElemType::I32: return std::make_shared<int32_t>((int32_t)v.i);
  case dsl::ElemType::I64: return std::make_shared<int64_t>(v.i);
  case dsl::ElemType::F64: return std::make_shared<double>(num());
  case dsl::ElemType::Bool:
    return std::make_shared<bool>(v.kind == dsl::Literal::Kind::Bool ? v.b : v.i != 0);
  default: return std::make_shared<float>((float)num());
  }
}

int64_t extentOf(const dsl::TensorDecl &t, int dim, const runtime::Bindings &b) {
  const dsl::Dim &d = t.dims[dim];
  return d.isLiteral() ? d.value : b.sizes.at(d.name);
}

std::string gib(double bytes) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f", bytes / double(1ull << 30));
  return buf;
}

/// Memory the kernel may still allocate: MemAvailable of /proc/meminfo (0
/// when unknown).
double availableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:")
      return kb * 1024;
  return 0;
}

/// Every buffer prepare() allocates fits a halide_buffer_t, and what it
/// allocates fits the memory available. (The inputs' views are checked by
/// makeView, with their own strides.)
Status checkSizes(const dsl::Kernel &k, const runtime::Bindings &bd, const KernelManifest &m) {
  std::vector<int64_t> out{bd.B, bd.H, bd.Lq, bd.Dv};
  if (Status s = runtime::checkBufferShape("the output of '" + k.name + "' [" + std::to_string(bd.B) + ", " +
                                      std::to_string(bd.H) + ", " + std::to_string(bd.Lq) + ", " +
                                      std::to_string(bd.Dv) + "]",
                                  out);
      !s)
    return s;
  double bytes = double(bd.B) * bd.H * bd.Lq * bd.Dv * runtime::elemSize(k.q->type);
  if (k.outputLse)
    bytes += double(bd.B) * bd.H * bd.Lq * 4;
  if (m.hasTileMap)
    bytes += double(bd.B) * bd.H * ((bd.Lq + m.tileQ - 1) / m.tileQ) * double(bd.keyBlocks(m.tileK));
  // Reading /proc/meminfo costs microseconds: only outputs of a GiB or more
  // are weighed against it, so small calls stay cheap.
  if (bytes < double(1ull << 30))
    return Status::ok();
  double avail = availableBytes();
  if (avail > 0 && bytes > avail)
    return Status::error("attnc: error: the outputs of '" + k.name + "' (out [" +
                         std::to_string(bd.B) + ", " + std::to_string(bd.H) + ", " +
                         std::to_string(bd.Lq) + ", " + std::to_string(bd.Dv) + "]" +
                         (k.outputLse ? " and lse" : "") + ") need " + gib(bytes) +
                         " GiB, more than the " + gib(avail) + " GiB of memory available");
  return Status::ok();
}

} // namespace

std::string JitKernel::defaultCacheDir() { return runtime::defaultCacheDir(); }

JitKernel::~JitKernel() {
  if (handle_)
    dlclose(handle_);
}

std::unique_ptr<JitKernel> JitKernel::compile(const SourceFile &src, const JitOptions &opts,
                                              std::string &messages) {
  std::unique_ptr<JitKernel> k(new JitKernel());
  dsl::DiagnosticEngine diag(src.fileName, src.text);
  auto module = dsl::parseAndCheck(src.fileName, src.text, diag);
  messages += diag.render();
  if (!module)
    return nullptr;
  k->module_ = std::make_unique<dsl::Module>(std::move(*module));
  if (!opts.kernel.empty())
    k->kernel_ = k->module_->findKernel(opts.kernel);
  else if (k->module_->kernels.size() == 1)
    k->kernel_ = &k->module_->kernels[0];
  if (!k->kernel_) {
    messages += "attnc: error: " + src.fileName +
                (opts.kernel.empty() ? std::string(" has several kernels; choose one with --kernel")
                                     : " has no kernel named '" + opts.kernel + "'") +
                "\n";
    return nullptr;
  }
  std::string target = resolveTarget(opts.target, messages);
  if (target.empty())
    return nullptr;

  uint64_t h = 1469598103934665603ull;
  const char *tiles = std::getenv("ATTNC_TILES"); // a tuning override of the schedule
  for (const std::string &part : {std::string(version()), std::string(buildId()), std::string(tiles ? tiles : ""),
                                  std::string(opts.skipTiles ? "skip" : "noskip"), std::string(opts.backward ? "backward" : ""), std::to_string(HALIDE_VERSION_MAJOR) + "." +
                                                                std::to_string(HALIDE_VERSION_MINOR),
                                  target, k->kernel_->name, src.text})
    h = fnv1a(h, part);
  if (std::string why = targetRunsHere(target); !why.empty()) {
    messages += why.rfind("attnc:", 0) == 0 ? why : "attnc: error: " + why + "\n";
    return nullptr;
  }
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  const std::string stem = k->kernel_->name + "-" + hex;
  auto start = std::chrono::steady_clock::now();

  // --no-cache: compile into a private temporary folder, load, remove it.
  fs::path dir;
  RemoveOnExit removeTemp;
  if (opts.useCache) {
    dir = opts.cacheDir.empty() ? defaultCacheDir() : opts.cacheDir;
    if (std::string why = preparePrivateDir(dir); !why.empty()) {
      messages += "attnc: error: " + why + "\n";
      return nullptr;
    }
  } else {
    std::error_code ec;
    fs::path tmp = fs::temp_directory_path(ec);
    std::string tmpl = ((ec ? fs::path("/tmp") : tmp) / "attnc-jit-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      messages += "attnc: error: cannot create a temporary folder in " +
                  fs::path(tmpl).parent_path().string() + ": " + std::strerror(errno) + "\n";
      return nullptr;
    }
    dir = removeTemp.path = tmpl;
  }
  fs::path so = dir / (stem + ".so");
  fs::path manifestPath = dir / (stem + ".json");

  bool haveCached = false;
  if (opts.useCache) {
    // The manifest is published last: without one the entry is absent (or
    // being written by another process). A damaged entry is not removed,
    // the rebuilt one is renamed over it: removing could race with a
    // writer that just published a good one.
    std::error_code ec;
    if (fs::exists(manifestPath, ec)) {
      std::string why = k->loadCached(so, manifestPath);
      if (why.empty())
        haveCached = true;
      else
        messages += "attnc: warning: the cached kernel " + so.string() + " is unusable (" + why +
                    "); compiling it again\n";
    }
  }
  if (!haveCached) {
    // Built under a unique name, hashed, then published by rename: the .so
    // first, its manifest (which names the hash) last.
    const std::string unique = uniqueSuffix();
    fs::path tmpSo = dir / (stem + unique + ".so");
    int fd = ::open(tmpSo.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      messages += "attnc: error: cannot write to the cache directory " + dir.string() + ": " +
                  std::strerror(errno) +
                  "; set ATTNC_CACHE_DIR to a writable directory, or run with --no-cache\n";
      return nullptr;
    }
    ::close(fd);
    RemoveOnExit removeTmpSo{tmpSo};
    CompileOptions copts;
    copts.kernel = k->kernel_->name;
    copts.target = target;
    copts.skipTiles = opts.skipTiles;
    copts.backward = opts.backward;
    KernelManifest manifest;
    if (!compileSharedObject(src, copts, tmpSo.string(), manifest, messages))
      return nullptr;
    manifest.soHash = hashFile(tmpSo, manifest.soSize);
    std::error_code ec;
    if (manifest.soHash.empty() || (fs::rename(tmpSo, so, ec), ec) ||
        (opts.useCache && !writeFileAtomically(manifestPath, manifest.toJson()))) {
      messages += "attnc: error: cannot write to the cache directory " + dir.string() +
                  (ec ? ": " + ec.message() : std::string()) + "\n";
      return nullptr;
    }
    removeTmpSo.path.clear();
    k->manifest_ = manifest;
    if (std::string why = k->load(so); !why.empty()) {
      messages += "attnc: error: cannot load the compiled kernel " + so.string() + ": " + why + "\n";
      return nullptr;
    }
  }
  k->cacheHit_ = haveCached;
  // ATTNC_REQUIRE_GPU=1 asks the same of every kernel of a process (the
  // Python suite on a GPU target).
  const char *require = std::getenv("ATTNC_REQUIRE_GPU");
  k->requireGpu_ = opts.requireGpu || (require && std::string(require) == "1");
  k->compileSeconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return k;
}

std::string JitKernel::loadCached(const std::string &so, const std::string &manifestPath) {
  // Everything is checked before dlopen: a truncated file would fault
  // (SIGBUS) inside the loader, bad tile sizes inside prepare.
  KernelManifest m;
  std::string text = readFile(manifestPath);
  if (text.empty())
    return "its manifest is missing or empty";
  if (!KernelManifest::fromJson(text, m))
    return "its manifest is malformed or holds out-of-range values";
  if (m.name != kernel_->name)
    return "its manifest names kernel '" + m.name + "'";
  if (m.soSize == 0 || m.soHash.empty())
    return "its manifest records no size and hash";
  uint64_t size = 0;
  std::string hash = hashFile(so, size);
  if (hash.empty())
    return "the shared object cannot be read";
  if (size != m.soSize)
    return "the shared object holds " + std::to_string(size) + " bytes, its manifest says " +
           std::to_string(m.soSize);
  if (hash != m.soHash)
    return "the shared object's hash " + hash + " is not the manifest's " + m.soHash;
  manifest_ = m;
  return load(so);
}

std::string JitKernel::load(const std::string &so) {
  if (handle_) {
    dlclose(handle_);
    handle_ = nullptr;
  }
  handle_ = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_)
    return dlerror();
  // NAME_argv and the helper pipelines the manifest says the .so has.
  bool missing = false;
  auto entry = [&](const char *suffix, bool present) {
    auto f = present ? (int (*)(void **))dlsym(handle_, (kernel_->name + suffix).c_str()) : nullptr;
    missing = missing || (present && !f);
    return f;
  };
  entry_ = entry("_argv", true);
  check_ = entry("_check_indices_argv", manifest_.hasIndexCheck);
  tileMap_ = entry("_tile_map_argv", manifest_.hasTileMap);
  features_ = entry("_features_argv", manifest_.hasFeatures);
  decay_ = entry("_decay_argv", manifest_.hasDecayTable);
  backward_ = entry("_backward_argv", manifest_.hasBackward);
  lse_ = entry("_lse_argv", manifest_.hasLse);
  gpuError_ = manifest_.hasGpu ? (const char *(*)())dlsym(handle_, (kernel_->name + "_gpu_error").c_str())
                               : nullptr;
  missing = missing || (manifest_.hasGpu && !gpuError_);
  auto setHandler = (void (*)(void (*)(void *, const char *)))dlsym(handle_,
                                                                     "halide_set_error_handler");
  if (missing || !setHandler) {
    dlclose(handle_);
    handle_ = nullptr;
    return "it lacks its entry points";
  }
  setHandler(captureHalideError);
  if (auto setPrint = (void *(*)(void (*)(void *, const char *)))dlsym(handle_, "halide_set_custom_print"))
    setPrint(relayHalidePrint);
  return "";
}

Status JitKernel::prepare(const std::map<std::string, runtime::TensorRef> &inputs,
                          const std::map<std::string, dsl::Literal> &params, Call &call) const {
  if (Status s = runtime::bindArguments(*kernel_, inputs, params, call.bindings); !s)
    return s;
  return prepareBound(inputs, call);
}

Status JitKernel::prepare(const std::map<std::string, runtime::TensorRef> &inputs,
                          const std::map<std::string, std::string> &params, Call &call) const {
  if (Status s = runtime::bindArguments(*kernel_, inputs, params, call.bindings); !s)
    return s;
  return prepareBound(inputs, call);
}

Status JitKernel::prepare(const std::map<std::string, HostTensor> &inputs,
                          const std::map<std::string, std::string> &params, Call &call) const {
  std::map<std::string, runtime::TensorRef> refs;
  for (const auto &[name, t] : inputs)
    refs.emplace(name, runtime::TensorRef(t));
  return prepare(refs, params, call);
}

Status JitKernel::prepareBound(const std::map<std::string, runtime::TensorRef> &inputs,
                               Call &call) const {
  const dsl::Kernel &k = *kernel_;
  const runtime::Bindings &bd = call.bindings;
  if (Status s = checkSizes(k, bd, manifest_); !s)
    return s;
  call.argv.clear();
  call.storage.clear();
  Status viewError = Status::ok();
  auto view = [&](const std::string &name, const runtime::TensorRef &t, halide_type_t type) {
    auto v = std::make_shared<BufferView>();
    if (Status s = makeView(name, t, type, *v); !s && viewError)
      viewError = s;
    call.storage.push_back(v);
    return (void *)&v->buf;
  };
  // The helper pipelines (index check, tile map) take the inputs: q, k, v,
  // aux tensors in declaration order, params. The kernel takes the tile map
  // after the aux tensors, and its outputs last.
  std::vector<void *> tensors, scalars;
  for (const dsl::TensorDecl *t : k.inputs())
    tensors.push_back(view(t->callName(), inputs.at(t->callName()), halideType(t->type)));
  if (!viewError)
    return viewError;
  for (const dsl::ParamDecl &p : k.params) {
    std::shared_ptr<void> v = scalar(p, bd.params.at(p.name));
    scalars.push_back(v.get());
    call.storage.push_back(v);
  }
  std::vector<void *> helperArgv = tensors;
  helperArgv.insert(helperArgv.end(), scalars.begin(), scalars.end());
  if (Status s = checkIndices(call, helperArgv); !s)
    return s;

  call.inputArgv = helperArgv;
  if (call.inputsOnly)
    return Status::ok(); // no tile map, no outputs
  call.argv = tensors;
  if (manifest_.hasTileMap) {
    int64_t nQT = (bd.Lq + manifest_.tileQ - 1) / manifest_.tileQ;
    int64_t nKB = bd.keyBlocks(manifest_.tileK);
    call.tileMap = HostTensor(dsl::ElemType::Bool, {bd.B, bd.H, nQT, nKB});
    void *map = view("tile map", call.tileMap, halide_type_t(halide_type_uint, 8));
    std::vector<void *> argv = helperArgv;
    argv.push_back(map);
    auto t0 = std::chrono::steady_clock::now();
    if (tileMap_(argv.data()) != 0)
      return Status::error("attnc: error: building the tile map of '" + k.name +
                           "' failed: " + lastHalideError);
    call.tileMapSeconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    call.argv.push_back(map);
  }
  call.argv.insert(call.argv.end(), scalars.begin(), scalars.end());
  call.out = HostTensor(k.q->type, {bd.B, bd.H, bd.Lq, bd.Dv});
  call.argv.push_back(view("out", call.out, halideType(k.q->type)));
  if (k.outputLse) {
    call.lse = HostTensor(dsl::ElemType::F32, {bd.B, bd.H, bd.Lq});
    call.argv.push_back(view("lse", call.lse, halideType(dsl::ElemType::F32)));
  }
  if (!viewError)
    return viewError;
  return Status::ok();
}

Status JitKernel::prepareFeatures(const std::map<std::string, HostTensor> &aux, int d, int dv,
                                  FeatureCall &fc) const {
  const dsl::Kernel &k = *kernel_;
  if (!features_)
    return Status::error("attnc: error: kernel '" + k.name +
                         "' has no feature entry point (manifest has_features)");
  std::map<std::string, HostTensor> inputs;
  for (const auto &[name, t] : aux) {
    if (name == "q" || name == "k" || name == "v")
      return Status::error("attnc: error: '" + name + "' is not an aux tensor of '" + k.name +
                           "'");
    inputs.emplace(name, t);
  }
  // One position: q, k, v of shape [1, 1, 1, d] (v: dv).
  inputs["q"] = HostTensor(k.q->type, {1, 1, 1, d});
  inputs["k"] = HostTensor(k.k->type, {1, 1, 1, d});
  inputs["v"] = HostTensor(k.v->type, {1, 1, 1, dv});
  if (Status s = prepare(inputs, std::map<std::string, std::string>{}, fc.call); !s)
    return s;
  fc.inputs = std::move(inputs); // the call's views point at these (moved, not copied)
  const std::string &len = manifest_.featureLength;
  int64_t n = std::all_of(len.begin(), len.end(), ::isdigit) ? std::stoll(len)
              : fc.call.bindings.sizes.count(len) ? fc.call.bindings.sizes.at(len)
                                                  : -1;
  if (n < 1 || n > (1 << 20))
    return Status::error("attnc: error: kernel '" + k.name + "': no feature length '" + len + "'");
  fc.length = int(n);
  fc.fq = HostTensor(dsl::ElemType::F64, {1, 1, 1, n});
  fc.fk = HostTensor(dsl::ElemType::F64, {1, 1, 1, n});
  fc.argv = fc.call.inputArgv;
  for (HostTensor *t : {&fc.fq, &fc.fk}) {
    auto v = std::make_shared<BufferView>();
    if (Status s = makeView("features", *t, halide_type_t(halide_type_float, 64), *v); !s)
      return s;
    fc.views.push_back(v);
    fc.argv.push_back(&v->buf);
  }
  return Status::ok();
}

Status JitKernel::features(FeatureCall &fc, const double *q, const double *k) const {
  HostTensor &tq = fc.inputs.at("q"), &tk = fc.inputs.at("k");
  for (int64_t c = 0; c < tq.numel(); ++c) {
    tq.setDouble(c, q[c]);
    tk.setDouble(c, k[c]);
  }
  if (features_(fc.argv.data()) != 0)
    return Status::error("attnc: error: the features of '" + kernel_->name +
                         "' failed: " + lastHalideError);
  return Status::ok();
}

Status JitKernel::decayOfHead(int64_t head, double &g) const {
  if (!decay_)
    return Status::error("attnc: error: kernel '" + kernel_->name +
                         "' has no per-head decay table");
  if (head < 0 || head >= (int64_t(1) << 20))
    return Status::error("attnc: error: head " + std::to_string(head) + " is out of range");
  HostTensor table(dsl::ElemType::F64, {head + 1});
  BufferView v;
  if (Status s = makeView("decay", table, halide_type_t(halide_type_float, 64), v); !s)
    return s;
  void *argv[] = {&v.buf};
  if (decay_(argv) != 0)
    return Status::error("attnc: error: the decay table of '" + kernel_->name +
                         "' failed: " + lastHalideError);
  g = table.getDouble(head);
  return Status::ok();
}

Status JitKernel::checkIndices(Call &call, const std::vector<void *> &inputArgv) const {
  if (!check_)
    return Status::ok();
  // LANGUAGE.md §8.2: first every index over the whole domain of the index
  // variables it reads (a superset of the used ones, cheap); only when that
  // finds one out of range, again over the points where it is used.
  size_t n = manifest_.indexChecks.size();
  HostTensor bounds(dsl::ElemType::I64, {(int64_t)n, 2, 5}); // Halide dims (f, e, c)
  auto view = std::make_shared<BufferView>();
  if (Status s = makeView("index bounds", bounds, halideType(bounds.type), *view); !s)
    return s;
  // The extent a check's index must stay below: a tensor's dimension, or a
  // channel vector's length.
  auto extentOfCheck = [&](const KernelManifest::Check &chk) -> int64_t {
    if (const dsl::TensorDecl *t = kernel_->findInput(chk.tensor))
      return chk.dim < (int)t->dims.size() ? extentOf(*t, chk.dim, call.bindings) : 0;
    const dsl::LetDecl *l = kernel_->findLet(chk.tensor);
    for (const dsl::Kernel &s : kernel_->sources) // a source's vector
      l = l ? l : s.findLet(chk.tensor);
    if (!l || !l->length)
      return 0;
    if (l->length->isLiteral())
      return l->length->value;
    auto it = call.bindings.sizes.find(l->length->name);
    return it == call.bindings.sizes.end() ? 0 : it->second;
  };
  auto outside = [&](size_t c) {
    const KernelManifest::Check &chk = manifest_.indexChecks[c];
    int64_t extent = extentOfCheck(chk);
    const int64_t *row = bounds.as<int64_t>() + c * 10;
    return std::make_pair(row[0] < 0 ? row : row[5] >= extent ? row + 5 : nullptr, extent);
  };
  std::string errors;
  for (bool exact : {false, true}) {
    std::vector<void *> argv = inputArgv;
    argv.push_back(&exact);
    argv.push_back(&view->buf);
    if (check_(argv.data()) != 0)
      return Status::error("attnc: error: " + lastHalideError);
    bool any = false;
    for (size_t c = 0; c < n; ++c)
      any = any || outside(c).first;
    if (!any)
      return Status::ok();
    if (!exact)
      continue;
    for (size_t c = 0; c < n; ++c) {
      auto [at, extent] = outside(c);
      if (!at)
        continue;
      const KernelManifest::Check &chk = manifest_.indexChecks[c];
      const dsl::TensorDecl *t = kernel_->findInput(chk.tensor);
      bool head = t && t->role != dsl::TensorRole::Aux;
      bool channel = !t || (head && chk.dim + 1 == (int)t->dims.size());
      std::ostringstream os;
      if (channel) // q[c], k[c] or a channel vector's element
        os << (t ? "tensor '" : "vector '") << chk.tensor << "': channel index is " << at[0]
           << " at (b=" << at[1] << ", h=" << at[2] << ", i=" << at[3] << ", j=" << at[4]
           << "), outside [0, " << extent << ")";
      else
        os << (head ? "the `at` of '" : "aux tensor '") << chk.tensor << "': index " << chk.dim
           << " (dimension " << chk.dim << " of " << (t ? runtime::describeDecl(*t) : chk.tensor)
           << ", extent " << extent << ") is " << at[0] << " at (b=" << at[1] << ", h=" << at[2]
           << ", i=" << at[3] << ", j=" << at[4] << "), outside [0, " << extent << ")";
      errors += (errors.empty() ? "" : "\n") + os.str();
    }
  }
  return Status::error(errors + "\nhint: an index counts where its value is used: in the "
                                "mask as far as && / || / select evaluate it, in the score and "
                                "the `at` of k and v for pairs the mask admits (LANGUAGE.md "
                                "§8.2); guard it, e.g. `j < len && t[b, j] == 0`");
}

Status JitKernel::execute(Call &call) const {
  if (entry_(call.argv.data()) != 0)
    return Status::error("kernel '" + kernel_->name + "' failed: " + lastHalideError);
  if (requireGpu_ && gpuError_ && *gpuError_()) {
    std::string why = gpuError_();
    return Status::error("kernel '" + kernel_->name + "': the GPU was required and failed: " +
                         why.substr(0, why.find_last_not_of('\n') + 1));
  }
  return Status::ok();
}

Status JitKernel::run(const std::map<std::string, HostTensor> &inputs,
                      const std::map<std::string, std::string> &params, HostTensor &out,
                      HostTensor *lse) const {
  Call call;
  try {
    if (Status s = prepare(inputs, params, call); !s)
      return s;
  } catch (const std::bad_alloc &) {
    return Status::error("attnc: error: out of memory preparing a call of '" + kernel_->name + "'");
  }
  if (Status s = execute(call); !s)
    return s;
  out = std::move(call.out);
  if (lse)
    *lse = std::move(call.lse);
  return Status::ok();
}

template <class Params>
Status JitKernel::backwardOf(const std::map<std::string, runtime::TensorRef> &inputs,
                             const Params &params, const runtime::TensorRef &out,
                             const runtime::TensorRef &dout, const runtime::TensorRef *lse,
                             const runtime::TensorRef *dlse,
                             std::map<std::string, HostTensor> &grads) const {
  Call call;
  call.inputsOnly = true; // the backward's own arguments follow
  if (backward_) {
    try {
      if (Status s = prepare(inputs, params, call); !s)
        return s;
    } catch (const std::bad_alloc &) {
      return Status::error("attnc: error: out of memory preparing a call of '" + kernel_->name + "'");
    }
  }
  return backwardPrepared(call, inputs, out, dout, lse, dlse, grads);
}

Status JitKernel::backward(const std::map<std::string, HostTensor> &inputs,
                          const std::map<std::string, std::string> &params,
                          const HostTensor &out, const HostTensor &dout, const HostTensor *lse,
                          std::map<std::string, HostTensor> &grads, const HostTensor *dlse) const {
  std::map<std::string, runtime::TensorRef> refs;
  for (const auto &[name, t] : inputs)
    refs.emplace(name, runtime::TensorRef(t));
  runtime::TensorRef lseRef = lse ? runtime::TensorRef(*lse) : runtime::TensorRef();
  runtime::TensorRef dlseRef = dlse ? runtime::TensorRef(*dlse) : runtime::TensorRef();
  return backwardOf(refs, params, out, dout, lse ? &lseRef : nullptr, dlse ? &dlseRef : nullptr,
                    grads);
}

Status JitKernel::backward(const std::map<std::string, runtime::TensorRef> &inputs,
                          const std::map<std::string, dsl::Literal> &params,
                          const runtime::TensorRef &out, const runtime::TensorRef &dout,
                          const runtime::TensorRef *lse,
                          std::map<std::string, HostTensor> &grads,
                          const runtime::TensorRef *dlse) const {
  return backwardOf(inputs, params, out, dout, lse, dlse, grads);
}

Status JitKernel::backwardPrepared(Call &call,
                                  const std::map<std::string, runtime::TensorRef> &inputs,
                                  const runtime::TensorRef &out, const runtime::TensorRef &dout,
                                  const runtime::TensorRef *lse, const runtime::TensorRef *dlse,
                                  std::map<std::string, HostTensor> &grads) const {
  const dsl::Kernel &k = *kernel_;
  if (!backward_)
    return Status::error("attnc: error: kernel '" + k.name +
                         "' was compiled without its backward (JitOptions::backward)");
  const runtime::Bindings &bd = call.bindings;
  // out, dout and lse: the forward's shapes and types.
  auto expect = [&](const char *name, const runtime::TensorRef &t, dsl::ElemType type,
                    std::vector<int64_t> shape) -> Status {
    if (t.type != type)
      return Status::error(std::string("attnc: error: tensor '") + name + "' must be " +
                           dsl::toString(type) + ", got " + dsl::toString(t.type));
    if (t.shape.size() != shape.size())
      return Status::error(std::string("attnc: error: tensor '") + name + "' must have rank " +
                           std::to_string(shape.size()) + ", got " + std::to_string(t.shape.size()));
    for (size_t d = 0; d < shape.size(); ++d)
      if (t.shape[d] != shape[d])
        return Status::error(std::string("attnc: error: tensor '") + name + "', dimension " +
                             std::to_string(d) + ": expected " + std::to_string(shape[d]) +
                             " (the forward's output), got " + std::to_string(t.shape[d]));
    return Status::ok();
  };
  std::vector<int64_t> outShape{bd.B, bd.H, bd.Lq, bd.Dv}, lseShape{bd.B, bd.H, bd.Lq};
  for (auto [name, t] :
       {std::pair<const char *, const runtime::TensorRef *>{"out", &out}, {"dout", &dout}})
    if (Status s = expect(name, *t, k.q->type, outShape); !s)
      return s;
  std::vector<std::shared_ptr<BufferView>> views;
  Status viewError = Status::ok();
  auto view = [&](const std::string &name, const runtime::TensorRef &t) {
    auto v = std::make_shared<BufferView>();
    if (Status s = makeView(name, t, halideType(t.type), *v); !s && viewError)
      viewError = s;
    views.push_back(v);
    return (void *)&v->buf;
  };
  std::vector<void *> argv = call.inputArgv;
  argv.push_back(view("out", out));
  argv.push_back(view("dout", dout));
  HostTensor lseOwn, dlseZero;
  if (k.normalize.kind == dsl::NormKind::Softmax || k.normalize.kind == dsl::NormKind::TopK) {
    if (lse) {
      if (Status s = expect("lse", *lse, dsl::ElemType::F32, lseShape); !s)
        return s;
      argv.push_back(view("lse", *lse));
    } else {
      if (!lse_)
        return Status::error("attnc: error: kernel '" + k.name + "' outputs lse: pass it");
      lseOwn = HostTensor(dsl::ElemType::F32, lseShape);
      std::vector<void *> la = call.inputArgv;
      la.push_back(view("lse", lseOwn));
      if (!viewError)
        return viewError;
      if (lse_(la.data()) != 0)
        return Status::error("attnc: error: the lse of '" + k.name + "' failed: " + lastHalideError);
      argv.push_back(view("lse", lseOwn));
    }
    if (dlse) {
      if (Status s = expect("dlse", *dlse, dsl::ElemType::F32, lseShape); !s)
        return s;
      argv.push_back(view("dlse", *dlse));
    } else {
      dlseZero = HostTensor(dsl::ElemType::F32, lseShape); // zero-filled
      argv.push_back(view("dlse", dlseZero));
    }
  }
  // The gradients: q, k, v and aux tensors as their inputs, params 0-d.
  grads.clear();
  try {
    for (const std::string &name : manifest_.gradNames) {
      HostTensor g;
      if (auto it = inputs.find(name); it != inputs.end())
        g = HostTensor(it->second.type, it->second.shape);
      else if (const dsl::ParamDecl *p = k.findParam(name))
        g = HostTensor(p->type, {});
      else
        return Status::error("attnc: error: kernel '" + k.name + "' has no input '" + name + "'");
      HostTensor &slot = grads[name] = std::move(g);
      argv.push_back(view(name, slot));
    }
  } catch (const std::bad_alloc &) {
    return Status::error("attnc: error: out of memory allocating the gradients of '" + k.name + "'");
  }
  if (!viewError)
    return viewError;
  if (backward_(argv.data()) != 0)
    return Status::error("attnc: error: the backward of '" + k.name + "' failed: " + lastHalideError);
  return Status::ok();
}

} // namespace attn
