// attnc._attnc: the nanobind extension under the `attnc` Python package.
// A thin layer over the C++ JIT (attn/runtime/Jit.h): compile a source,
// describe its signature, and run it on tensors given through DLPack or the
// buffer protocol (NumPy arrays, PyTorch CPU tensors, JAX arrays) without
// copying them. The Python package (attnc/__init__.py) adds the user-facing
// API, exception classes and output conversion.
#include "attn/compiler/Driver.h"
#include "attn/dsl/Sema.h"
#include "attn/runtime/Bind.h"
#include "attn/runtime/Jit.h"
#include "attn/runtime/Reference.h"

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <new>
#include <stdexcept>

namespace nb = nanobind;
using namespace nb::literals;
using attn::runtime::HostTensor;
using attn::runtime::Status;
using attn::runtime::TensorRef;
namespace dsl = attn::dsl;

namespace {

/// An array as the extension receives it: any dtype, any strides, on the CPU.
using AnyArray = nb::ndarray<nb::ro, nb::device::cpu>;

/// The element type a DLPack dtype stands for; false when attnc has none.
bool elemTypeOf(nb::dlpack::dtype t, dsl::ElemType &out) {
  using Code = nb::dlpack::dtype_code;
  if (t.lanes != 1)
    return false;
  switch ((Code)t.code) {
  case Code::Float:
    if (t.bits == 32) out = dsl::ElemType::F32;
    else if (t.bits == 64) out = dsl::ElemType::F64;
    else if (t.bits == 16) out = dsl::ElemType::F16;
    else return false;
    return true;
  case Code::Bfloat:
    if (t.bits != 16) return false;
    out = dsl::ElemType::BF16;
    return true;
  case Code::Int:
    if (t.bits == 32) out = dsl::ElemType::I32;
    else if (t.bits == 64) out = dsl::ElemType::I64;
    else return false;
    return true;
  case Code::Bool:
    if (t.bits != 8) return false;
    out = dsl::ElemType::Bool;
    return true;
  default:
    return false;
  }
}

std::string dtypeText(nb::dlpack::dtype t) {
  const char *kinds[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
  std::string kind = t.code < 7 ? kinds[t.code] : "code" + std::to_string(t.code);
  return kind + std::to_string(t.bits) + (t.lanes != 1 ? "x" + std::to_string(t.lanes) : "");
}

/// A host tensor handed to NumPy without a copy: the array owns it through
/// a capsule. bf16 and bool are passed as uint16 / bool arrays of the same
/// bytes; the Python side reinterprets bf16.
nb::object toNumpy(HostTensor &&t) {
  auto *owned = new HostTensor(std::move(t));
  nb::capsule owner(owned, [](void *p) noexcept { delete static_cast<HostTensor *>(p); });
  std::vector<size_t> shape(owned->shape.begin(), owned->shape.end());
  nb::dlpack::dtype dt;
  switch (owned->type) {
  case dsl::ElemType::F32: dt = nb::dtype<float>(); break;
  case dsl::ElemType::F64: dt = nb::dtype<double>(); break;
  case dsl::ElemType::F16: dt = {(uint8_t)nb::dlpack::dtype_code::Float, 16, 1}; break;
  case dsl::ElemType::BF16: dt = nb::dtype<uint16_t>(); break;
  case dsl::ElemType::I32: dt = nb::dtype<int32_t>(); break;
  case dsl::ElemType::I64: dt = nb::dtype<int64_t>(); break;
  case dsl::ElemType::Bool: dt = nb::dtype<bool>(); break;
  }
  nb::ndarray<nb::numpy> arr(owned->data(), shape.size(), shape.data(), owner, nullptr, dt);
  return arr.cast();
}

/// A compiled kernel, shared by every Python object and thread that uses it.
class Kernel {
public:
  std::shared_ptr<attn::JitKernel> jit;
  std::string messages; // warnings of the compile

  const dsl::Kernel &ast() const { return jit->kernel(); }

  /// (name, role, dtype, dims) of every tensor, q, k, v first as declared.
  std::vector<std::tuple<std::string, std::string, std::string, std::vector<nb::object>>>
  tensors() const {
    std::vector<std::tuple<std::string, std::string, std::string, std::vector<nb::object>>> r;
    for (const dsl::TensorDecl &t : ast().tensors) {
      std::vector<nb::object> dims;
      for (const dsl::Dim &d : t.dims)
        dims.push_back(d.isLiteral() ? nb::cast(d.value) : nb::cast(d.name));
      const char *role = t.role == dsl::TensorRole::Q   ? "q"
                         : t.role == dsl::TensorRole::K ? "k"
                         : t.role == dsl::TensorRole::V ? "v"
                                                        : "aux";
      r.emplace_back(t.name, role, dsl::toString(t.type), std::move(dims));
    }
    return r;
  }

  /// (name, dtype, default or None) of every param.
  std::vector<std::tuple<std::string, std::string, nb::object>> params() const {
    std::vector<std::tuple<std::string, std::string, nb::object>> r;
    for (const dsl::ParamDecl &p : ast().params) {
      nb::object def = nb::none();
      if (p.defaultValue) {
        const dsl::Literal &l = *p.defaultValue;
        def = l.kind == dsl::Literal::Kind::Float  ? nb::cast(l.f)
              : l.kind == dsl::Literal::Kind::Bool ? nb::cast(l.b)
                                                   : nb::cast(l.i);
      }
      r.emplace_back(p.name, dsl::toString(p.type), def);
    }
    return r;
  }

  using Inputs = std::map<std::string, std::pair<AnyArray, std::string>>;

  /// Views of the arrays (no copy). `inputs`: name -> (array, dtype
  /// override: "" or "bf16" for uint16 arrays that hold bf16 bits).
  static std::map<std::string, TensorRef> views(const Inputs &inputs) {
    std::map<std::string, TensorRef> refs;
    for (const auto &[name, entry] : inputs) {
      const AnyArray &a = entry.first;
      TensorRef r;
      if (entry.second == "bf16" && a.dtype() == nb::dtype<uint16_t>())
        r.type = dsl::ElemType::BF16;
      else if (!elemTypeOf(a.dtype(), r.type))
        throw nb::type_error(("tensor '" + name + "' has dtype " + dtypeText(a.dtype()) +
                              ", which attnc kernels do not take (f32, f16, bf16, f64, i32, "
                              "i64, bool)")
                                 .c_str());
      r.shape.resize(a.ndim());
      r.strides.resize(a.ndim());
      for (size_t d = 0; d < a.ndim(); ++d) {
        r.shape[d] = (int64_t)a.shape(d);
        r.strides[d] = a.stride(d);
      }
      r.data = a.data();
      refs.emplace(name, std::move(r));
    }
    return refs;
  }

  /// `params`: name -> int, float or bool.
  static std::map<std::string, dsl::Literal> literals(const nb::dict &params) {
    std::map<std::string, dsl::Literal> literals;
    for (auto [key, value] : params) {
      std::string name = nb::cast<std::string>(key);
      dsl::Literal l;
      if (nb::isinstance<nb::bool_>(value)) {
        l.kind = dsl::Literal::Kind::Bool;
        l.b = nb::cast<bool>(value);
      } else if (nb::isinstance<nb::int_>(value)) {
        l.kind = dsl::Literal::Kind::Int;
        try {
          l.i = nb::cast<int64_t>(value);
        } catch (const std::exception &) {
          throw nb::value_error(("param '" + name + "' is out of range for a 64-bit integer").c_str());
        }
      } else if (nb::isinstance<nb::float_>(value)) {
        l.kind = dsl::Literal::Kind::Float;
        l.f = nb::cast<double>(value);
      } else {
        throw nb::type_error(("param '" + name + "' must be an int, a float or a bool, not " +
                              nb::cast<std::string>(nb::str(value.type().attr("__name__"))))
                                 .c_str());
      }
      literals.emplace(name, l);
    }
    return literals;
  }

  void checkLse(bool wantLse) const {
    if (wantLse && !ast().outputLse)
      throw nb::value_error(("return_lse=True but kernel '" + ast().name +
                             "' does not declare `output lse`")
                                .c_str());
  }

  /// Runs the kernel on the arrays in place. Returns (out, lse or None) as
  /// NumPy arrays that own the kernel's outputs. Argument errors raise
  /// ValueError (the runtime's message, naming tensor and dimension); a
  /// failing kernel RuntimeError.
  std::pair<nb::object, nb::object> run(const Inputs &inputs, const nb::dict &params,
                                        bool wantLse) const {
    std::map<std::string, TensorRef> refs = views(inputs);
    std::map<std::string, dsl::Literal> lits = literals(params);
    checkLse(wantLse);

    attn::JitKernel::Call call;
    Status status = Status::ok();
    bool kernelFailed = false;
    {
      nb::gil_scoped_release release;
      try {
        status = jit->prepare(refs, lits, call);
        if (status) {
          status = jit->execute(call);
          kernelFailed = !status;
        }
      } catch (const std::bad_alloc &) {
        status = Status::error("out of memory allocating the outputs of '" + ast().name + "'");
      }
    }
    if (!status) {
      if (kernelFailed)
        throw std::runtime_error(status.message());
      throw nb::value_error(status.message().c_str());
    }
    nb::object out = toNumpy(std::move(call.out));
    nb::object lse = wantLse ? toNumpy(std::move(call.lse)) : nb::none();
    return {out, lse};
  }

  /// The float64 reference (attn/runtime/Reference.h) on copies of the
  /// arrays: (out, lse or None) in f64.
  std::pair<nb::object, nb::object> reference(const Inputs &inputs, const nb::dict &params,
                                              bool wantLse) const {
    std::map<std::string, TensorRef> refs = views(inputs);
    std::map<std::string, dsl::Literal> lits = literals(params);
    checkLse(wantLse);
    HostTensor out, lse;
    Status status = Status::ok();
    {
      nb::gil_scoped_release release;
      attn::runtime::Bindings bind;
      status = attn::runtime::bindArguments(ast(), refs, lits, bind);
      if (status) {
        std::map<std::string, HostTensor> host;
        for (const auto &[name, r] : refs)
          host.emplace(name, attn::runtime::copyToHost(r));
        status = attn::runtime::referenceAttention(ast(), host, bind, out, wantLse ? &lse : nullptr);
      }
    }
    if (!status)
      throw nb::value_error(status.message().c_str());
    nb::object o = toNumpy(std::move(out));
    nb::object l = wantLse ? toNumpy(std::move(lse)) : nb::none();
    return {o, l};
  }
};

/// Compiles (or loads from the cache shared with the CLI). Returns the
/// kernel, or None and the diagnostics.
std::pair<std::optional<Kernel>, std::string> compileKernel(const std::string &source,
                                                            const std::string &fileName,
                                                            const std::string &kernel,
                                                            const std::string &target,
                                                            bool useCache,
                                                            const std::string &cacheDir) {
  attn::JitOptions opts;
  opts.kernel = kernel;
  opts.target = target;
  opts.useCache = useCache;
  opts.cacheDir = cacheDir;
  std::string messages;
  std::unique_ptr<attn::JitKernel> jit;
  {
    nb::gil_scoped_release release;
    jit = attn::JitKernel::compile({fileName, source}, opts, messages);
  }
  if (!jit)
    return {std::nullopt, messages};
  Kernel k;
  k.jit = std::move(jit);
  k.messages = messages;
  return {std::move(k), messages};
}

/// `attnc emit --stage STAGE`: (ok, text, diagnostics).
std::tuple<bool, std::string, std::string> emit(const std::string &source,
                                                const std::string &fileName,
                                                const std::string &stageName,
                                                const std::string &kernel,
                                                const std::string &target) {
  attn::Stage stage;
  if (!attn::parseStage(stageName, stage))
    throw nb::value_error(("unknown stage '" + stageName +
                           "' (expected ast, mlir, mlir-opt, halide or stmt)")
                              .c_str());
  std::string out, err;
  bool ok;
  {
    nb::gil_scoped_release release;
    ok = attn::emitStage({fileName, source}, stage, {kernel, target}, out, err);
  }
  return {ok, out, err};
}

/// `attnc check`: (ok, diagnostics).
std::pair<bool, std::string> check(const std::string &source, const std::string &fileName) {
  dsl::DiagnosticEngine diag(fileName, source);
  auto module = dsl::parseAndCheck(fileName, source, diag);
  return {module.has_value(), diag.render()};
}

} // namespace

NB_MODULE(_attnc, m) {
  m.doc() = "attnc's C++ core (use the `attnc` package)";
  // Kernels registered as torch operators live in torch's registry until the
  // interpreter exits, after nanobind's leak check: not leaks to report.
  nb::set_leak_warnings(false);
  m.attr("version") = attn::version();
  m.attr("build_id") = attn::buildId();

  nb::class_<Kernel>(m, "Kernel")
      .def_prop_ro("name", [](const Kernel &k) { return k.ast().name; })
      .def_prop_ro("strategy", [](const Kernel &k) { return k.jit->manifest().strategy; })
      .def_prop_ro("decode", [](const Kernel &k) { return k.jit->manifest().decode; })
      .def_prop_ro("target", [](const Kernel &k) { return k.jit->manifest().target; })
      .def_prop_ro("normalize",
                   [](const Kernel &k) { return std::string(dsl::toString(k.ast().normalize.kind)); })
      .def_prop_ro("output_lse", [](const Kernel &k) { return k.ast().outputLse; })
      .def_prop_ro("cache_hit", [](const Kernel &k) { return k.jit->cacheHit(); })
      .def_prop_ro("compile_seconds", [](const Kernel &k) { return k.jit->compileSeconds(); })
      .def_prop_ro("has_tile_map", [](const Kernel &k) { return k.jit->manifest().hasTileMap; })
      .def_prop_ro("tile_shape",
                   [](const Kernel &k) {
                     return std::make_pair(k.jit->manifest().tileQ, k.jit->manifest().tileK);
                   })
      .def_ro("messages", &Kernel::messages)
      .def("tensors", &Kernel::tensors)
      .def("params", &Kernel::params)
      .def("run", &Kernel::run, "inputs"_a, "params"_a, "want_lse"_a)
      .def("reference", &Kernel::reference, "inputs"_a, "params"_a, "want_lse"_a);

  m.def("compile", &compileKernel, "source"_a, "file_name"_a, "kernel"_a, "target"_a,
        "use_cache"_a, "cache_dir"_a);
  m.def("emit", &emit, "source"_a, "file_name"_a, "stage"_a, "kernel"_a, "target"_a);
  m.def("check", &check, "source"_a, "file_name"_a);
  m.def("default_cache_dir", &attn::JitKernel::defaultCacheDir);
  // What a kernel call reads for an array: its address and strides in
  // elements, as the extension sees them (for tests that prove no copy).
  m.def("view_info", [](const AnyArray &a) {
    std::vector<int64_t> strides;
    for (size_t d = 0; d < a.ndim(); ++d)
      strides.push_back(a.stride(d));
    return std::make_pair((uintptr_t)a.data(), strides);
  });
}
