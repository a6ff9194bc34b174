// The JIT runtime (see Jit.h): compile-or-load through the on-disk cache,
// argument checking, aux-index checking and the call through NAME_argv.
#include "attn/runtime/Jit.h"

#include "attn/dsl/Sema.h"

#include "HalideRuntime.h"

#include <chrono>
#include <cstdlib>
#include <dlfcn.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;
using attn::runtime::HostTensor;
using attn::runtime::Status;

namespace attn {

namespace {

thread_local std::string lastHalideError;

void captureHalideError(void *, const char *msg) {
  lastHalideError = msg ? msg : "unknown error";
  while (!lastHalideError.empty() && lastHalideError.back() == '\n')
    lastHalideError.pop_back();
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

bool writeFileAtomically(const fs::path &p, const std::string &data) {
  fs::path tmp = p;
  tmp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << data;
    if (!out)
      return false;
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  return !ec;
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
      return Status::error(where() + ": extent " + std::to_string(extent) + " and stride " +
                           std::to_string(stride) +
                           " must fit in 32 bits (split the tensor into smaller calls)");
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

} // namespace

std::string JitKernel::defaultCacheDir() {
  if (const char *d = std::getenv("ATTNC_CACHE_DIR"); d && *d)
    return d;
  if (const char *d = std::getenv("XDG_CACHE_HOME"); d && *d)
    return std::string(d) + "/attnc";
  if (const char *d = std::getenv("HOME"); d && *d)
    return std::string(d) + "/.cache/attnc";
  return (fs::temp_directory_path() / "attnc-cache").string();
}

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
                                  std::string(opts.skipTiles ? "skip" : "noskip"), std::to_string(HALIDE_VERSION_MAJOR) + "." +
                                                                std::to_string(HALIDE_VERSION_MINOR),
                                  target, k->kernel_->name, src.text})
    h = fnv1a(h, part);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  fs::path dir = opts.cacheDir.empty() ? defaultCacheDir() : opts.cacheDir;
  fs::path so = dir / (k->kernel_->name + "-" + hex + ".so");
  fs::path manifestPath = dir / (k->kernel_->name + "-" + hex + ".json");

  auto start = std::chrono::steady_clock::now();
  bool haveCached = opts.useCache && fs::exists(so) && fs::exists(manifestPath) &&
                    KernelManifest::fromJson(readFile(manifestPath), k->manifest_);
  if (!haveCached) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      messages += "attnc: error: cannot create the cache directory " + dir.string() + ": " +
                  ec.message() + "\n";
      return nullptr;
    }
    CompileOptions copts;
    copts.kernel = k->kernel_->name;
    copts.target = target;
    copts.skipTiles = opts.skipTiles;
    fs::path tmpSo = so;
    tmpSo += ".tmp" + std::to_string(::getpid());
    if (!compileSharedObject(src, copts, tmpSo.string(), k->manifest_, messages))
      return nullptr;
    fs::rename(tmpSo, so, ec);
    if (ec || !writeFileAtomically(manifestPath, k->manifest_.toJson())) {
      messages += "attnc: error: cannot write to the cache directory " + dir.string() + "\n";
      return nullptr;
    }
  }
  k->cacheHit_ = haveCached;

  k->handle_ = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!k->handle_) {
    messages += std::string("attnc: error: cannot load the compiled kernel: ") + dlerror() + "\n";
    return nullptr;
  }
  k->entry_ = (int (*)(void **))dlsym(k->handle_, (k->kernel_->name + "_argv").c_str());
  if (k->manifest_.hasIndexCheck)
    k->check_ =
        (int (*)(void **))dlsym(k->handle_, (k->kernel_->name + "_check_indices_argv").c_str());
  if (k->manifest_.hasTileMap)
    k->tileMap_ =
        (int (*)(void **))dlsym(k->handle_, (k->kernel_->name + "_tile_map_argv").c_str());
  auto setHandler = (void (*)(void (*)(void *, const char *)))dlsym(k->handle_,
                                                                     "halide_set_error_handler");
  if (!k->entry_ || (k->manifest_.hasIndexCheck && !k->check_) ||
      (k->manifest_.hasTileMap && !k->tileMap_) || !setHandler) {
    messages += "attnc: error: the compiled kernel " + so.string() +
                " lacks its entry points; delete it and try again\n";
    return nullptr;
  }
  setHandler(captureHalideError);
  k->compileSeconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return k;
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
  for (const dsl::TensorDecl *t : {k.q, k.k, k.v})
    tensors.push_back(view(t->name, inputs.at(t->name), halideType(t->type)));
  for (const dsl::TensorDecl &t : k.tensors)
    if (t.role == dsl::TensorRole::Aux)
      tensors.push_back(view(t.name, inputs.at(t.name), halideType(t.type)));
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

  call.argv = tensors;
  if (manifest_.hasTileMap) {
    int64_t nQT = (bd.Lq + manifest_.tileQ - 1) / manifest_.tileQ;
    int64_t nKB = (bd.Lk + manifest_.tileK - 1) / manifest_.tileK;
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

Status JitKernel::checkIndices(Call &call, const std::vector<void *> &inputArgv) const {
  if (!check_)
    return Status::ok();
  size_t n = manifest_.indexChecks.size();
  HostTensor bounds(dsl::ElemType::I64, {2, (int64_t)n}); // Halide dims (c, e)
  auto view = std::make_shared<BufferView>();
  if (Status s = makeView("index bounds", bounds, halideType(bounds.type), *view); !s)
    return s;
  std::vector<void *> argv = inputArgv;
  argv.push_back(&view->buf);
  if (check_(argv.data()) != 0)
    return Status::error("attnc: error: " + lastHalideError);
  std::string errors;
  for (size_t c = 0; c < n; ++c) {
    const KernelManifest::Check &chk = manifest_.indexChecks[c];
    const dsl::TensorDecl *t = kernel_->findTensor(chk.tensor);
    int64_t lo = bounds.as<int64_t>()[c], hi = bounds.as<int64_t>()[n + c];
    int64_t extent = t && chk.dim < (int)t->dims.size() ? extentOf(*t, chk.dim, call.bindings) : 0;
    if (lo < 0 || hi >= extent) {
      std::ostringstream os;
      os << "aux tensor '" << chk.tensor << "': index " << chk.dim << " (dimension "
         << chk.dim << " of " << (t ? runtime::describeDecl(*t) : chk.tensor)
         << ", extent " << extent << ") takes values in [" << lo << ", " << hi
         << "], outside [0, " << extent << ")";
      errors += (errors.empty() ? "" : "\n") + os.str();
    }
  }
  if (!errors.empty())
    return Status::error(errors +
                         "\nhint: every aux index must be in range for every (b, h, i, j), "
                         "whatever the mask says (&& does not guard a read); clamp it, "
                         "e.g. t[max(x, 0)]");
  return Status::ok();
}

Status JitKernel::execute(Call &call) const {
  if (entry_(call.argv.data()) != 0)
    return Status::error("kernel '" + kernel_->name + "' failed: " + lastHalideError);
  return Status::ok();
}

Status JitKernel::run(const std::map<std::string, HostTensor> &inputs,
                      const std::map<std::string, std::string> &params, HostTensor &out,
                      HostTensor *lse) const {
  Call call;
  if (Status s = prepare(inputs, params, call); !s)
    return s;
  if (Status s = execute(call); !s)
    return s;
  out = std::move(call.out);
  if (lse)
    *lse = std::move(call.lse);
  return Status::ok();
}

} // namespace attn
