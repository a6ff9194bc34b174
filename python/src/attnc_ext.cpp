// attnc._attnc: the nanobind extension under the `attnc` Python package.
// A thin layer over the C++ JIT (attn/jit/Jit.h): compile a source,
// describe its signature, and run it on tensors given through DLPack or the
// buffer protocol (NumPy arrays, PyTorch CPU tensors, JAX arrays) without
// copying them; merge two attention states (cascade attention). The Python
// package (attnc/__init__.py) adds the user-facing API, exception classes
// and output conversion.
#include "attn/compiler/Driver.h"
#include "attn/compiler/Viz.h"
#include "attn/dsl/Sema.h"
#include "attn/runtime/Bind.h"
#include "attn/jit/Jit.h"
#include "attn/runtime/Merge.h"
#include "attn/runtime/Reference.h"

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>
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

/// What kind of array q was: the Python layer returns outputs of that kind.
enum class ArrayKind { Numpy = 0, Torch = 1, NumpyBf16 = 2 };

const char *numpyName(dsl::ElemType t) {
  switch (t) {
  case dsl::ElemType::F32: return "np.float32";
  case dsl::ElemType::F64: return "np.float64";
  case dsl::ElemType::F16: return "np.float16";
  case dsl::ElemType::BF16: return "ml_dtypes.bfloat16";
  case dsl::ElemType::I32: return "np.int32";
  case dsl::ElemType::I64: return "np.int64";
  case dsl::ElemType::Bool: return "np.bool_";
  }
  return "";
}

const char *torchName(dsl::ElemType t) {
  switch (t) {
  case dsl::ElemType::F32: return "torch.float32";
  case dsl::ElemType::F64: return "torch.float64";
  case dsl::ElemType::F16: return "torch.float16";
  case dsl::ElemType::BF16: return "torch.bfloat16";
  case dsl::ElemType::I32: return "torch.int32";
  case dsl::ElemType::I64: return "torch.int64";
  case dsl::ElemType::Bool: return "torch.bool";
  }
  return "";
}

/// torch.Tensor and torch's dtypes, once some code has imported torch
/// (attnc itself never imports it). Held for the life of the process.
struct Torch {
  PyTypeObject *tensor = nullptr;
  PyObject *dtypes[7] = {}; // indexed by ElemType
};

const Torch *torchIfImported() {
  static Torch t;
  if (t.tensor)
    return &t;
  PyObject *name = PyUnicode_FromString("torch");
  PyObject *mod = PyImport_GetModule(name);
  Py_DECREF(name);
  if (!mod) {
    PyErr_Clear();
    return nullptr;
  }
  nb::object torch = nb::steal(mod);
  if (!nb::hasattr(torch, "Tensor") || !nb::hasattr(torch, "bfloat16"))
    return nullptr; // torch is still being imported
  const char *names[7] = {"float32", "float16", "bfloat16", "float64", "int32", "int64", "bool"};
  static_assert((int)dsl::ElemType::F32 == 0 && (int)dsl::ElemType::F16 == 1 &&
                (int)dsl::ElemType::BF16 == 2 && (int)dsl::ElemType::F64 == 3 &&
                (int)dsl::ElemType::I32 == 4 && (int)dsl::ElemType::I64 == 5 &&
                (int)dsl::ElemType::Bool == 6);
  for (int d = 0; d < 7; ++d)
    t.dtypes[d] = nb::object(torch.attr(names[d])).release().ptr();
  t.tensor = (PyTypeObject *)nb::object(torch.attr("Tensor")).release().ptr();
  return &t;
}

[[noreturn]] void dtypeError(const dsl::Kernel &k, const dsl::TensorDecl &t, const std::string &got,
                             bool torch) {
  std::string fix = t.callName() + (torch ? std::string(".to(") + torchName(t.type) + ")"
                                    : std::string(".astype(") + numpyName(t.type) + ")");
  throw nb::type_error(("tensor '" + t.callName() + "' has dtype " + got + " but kernel '" + k.name +
                        "' declares " + attn::runtime::describeDecl(t) + ": convert it, e.g. " +
                        fix)
                           .c_str());
}

/// str(x), as Python prints it.
std::string pyStr(nb::handle x) {
  nb::object s = nb::steal(PyObject_Str(x.ptr()));
  if (!s.is_valid()) {
    PyErr_Clear();
    return "?";
  }
  return nb::cast<std::string>(s);
}

/// The ints of a tuple (torch.Size, a stride tuple).
std::vector<int64_t> intTuple(nb::handle seq) {
  if (!PyTuple_Check(seq.ptr()))
    throw nb::type_error("expected a tuple of ints");
  Py_ssize_t n = PyTuple_GET_SIZE(seq.ptr());
  std::vector<int64_t> r(n);
  for (Py_ssize_t d = 0; d < n; ++d) {
    r[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(seq.ptr(), d));
    if (r[d] == -1 && PyErr_Occurred())
      throw nb::python_error();
  }
  return r;
}

/// getattr(obj, name) with an interned name (a call's hot path).
nb::object attr(nb::handle obj, PyObject *name) {
  PyObject *r = PyObject_GetAttr(obj.ptr(), name);
  if (!r)
    throw nb::python_error();
  return nb::steal(r);
}

nb::object callMethod(nb::handle obj, PyObject *name) {
  PyObject *r = PyObject_CallMethodNoArgs(obj.ptr(), name);
  if (!r)
    throw nb::python_error();
  return nb::steal(r);
}

/// The element type of a torch dtype object, -1 when attnc has none.
int torchElemType(const Torch &torch, nb::handle dt) {
  for (int d = 0; d < 7; ++d)
    if (dt.ptr() == torch.dtypes[d])
      return d;
  return -1;
}

/// The address, shape and strides of PyTorch CPU tensor `name`, read from
/// the tensor itself (cheaper than a DLPack export).
void torchGeometry(const std::string &name, nb::handle obj, TensorRef &r) {
  static PyObject *isCpuName = PyUnicode_InternFromString("is_cpu"),
                  *shapeName = PyUnicode_InternFromString("shape"),
                  *strideName = PyUnicode_InternFromString("stride"),
                  *dataPtrName = PyUnicode_InternFromString("data_ptr");
  if (attr(obj, isCpuName).ptr() != Py_True)
    throw nb::value_error(("tensor '" + name + "' is on device " +
                           pyStr(obj.attr("device")) +
                           "; this attnc kernel runs on the CPU: pass " + name + ".cpu()")
                              .c_str());
  r.shape = intTuple(attr(obj, shapeName));
  r.strides = intTuple(callMethod(obj, strideName));
  nb::object ptr = callMethod(obj, dataPtrName);
  r.data = (const void *)(uintptr_t)PyLong_AsUnsignedLongLong(ptr.ptr());
}

PyObject *dtypeAttrName() {
  static PyObject *name = PyUnicode_InternFromString("dtype");
  return name;
}

/// A view of a PyTorch CPU tensor given for kernel tensor `t`.
TensorRef torchRef(const Torch &torch, const dsl::Kernel &k, const dsl::TensorDecl &t,
                   nb::handle obj) {
  TensorRef r;
  nb::object dt = attr(obj, dtypeAttrName());
  if (torchElemType(torch, dt) != (int)t.type)
    dtypeError(k, t, pyStr(dt), true);
  r.type = t.type;
  torchGeometry(t.callName(), obj, r);
  return r;
}

std::string numpyDtypeText(nb::dlpack::dtype t) {
  if (t.code == (uint8_t)nb::dlpack::dtype_code::Bool)
    return "bool";
  return dtypeText(t);
}

/// `obj` as an ndarray: anything nanobind imports as one (NumPy arrays,
/// objects with __dlpack__), or an ml_dtypes bf16 array through a uint16
/// view of the same memory (NumPy exports no custom dtype; `bf16` is set and
/// the view kept in `keep`). A TypeError naming tensor `name` otherwise.
AnyArray arrayOf(const std::string &name, nb::handle obj, bool &bf16,
                 std::vector<nb::object> &keep) {
  AnyArray a;
  bf16 = false;
  if (nb::try_cast(obj, a, false))
    return a;
  nb::object dt = nb::getattr(obj, "dtype", nb::none());
  if (!dt.is_none() && nb::hasattr(dt, "name") && pyStr(dt.attr("name")) == "bfloat16" &&
      nb::hasattr(obj, "view")) {
    nb::object view = obj.attr("view")(nb::module_::import_("numpy").attr("uint16"));
    if (nb::try_cast(view, a, false)) {
      keep.push_back(view);
      bf16 = true;
      return a;
    }
  }
  throw nb::type_error(("tensor '" + name +
                        "' must be an array (NumPy, PyTorch or anything with __dlpack__), not " +
                        pyStr(obj.type().attr("__name__")))
                           .c_str());
}

void arrayGeometry(const AnyArray &a, TensorRef &r) {
  r.shape.resize(a.ndim());
  r.strides.resize(a.ndim());
  for (size_t d = 0; d < a.ndim(); ++d) {
    r.shape[d] = (int64_t)a.shape(d);
    r.strides[d] = a.stride(d);
  }
  r.data = a.data();
}

/// The view of one argument: a torch tensor, an ml_dtypes bf16 array
/// (reinterpreted as uint16), or anything nanobind imports as an ndarray
/// (NumPy arrays, objects with __dlpack__). `keep` holds temporaries the
/// view points into.
TensorRef toRef(const dsl::Kernel &k, const dsl::TensorDecl &t, nb::handle obj, ArrayKind &kind,
                std::vector<nb::object> &keep) {
  if (const Torch *torch = torchIfImported(); torch && PyObject_TypeCheck(obj.ptr(), torch->tensor)) {
    kind = ArrayKind::Torch;
    return torchRef(*torch, k, t, obj);
  }
  bool bf16;
  AnyArray a = arrayOf(t.callName(), obj, bf16, keep);
  kind = bf16 ? ArrayKind::NumpyBf16 : ArrayKind::Numpy;
  TensorRef r;
  if (bf16)
    r.type = dsl::ElemType::BF16;
  else if (!elemTypeOf(a.dtype(), r.type) || r.type != t.type)
    dtypeError(k, t, numpyDtypeText(a.dtype()), false);
  if (r.type != t.type)
    dtypeError(k, t, "bfloat16", false);
  arrayGeometry(a, r);
  return r;
}

/// The view of tensor `name` of any dtype attnc has (merge_states'
/// arguments); a TypeError for another dtype.
TensorRef anyRef(const std::string &name, nb::handle obj, ArrayKind &kind,
                 std::vector<nb::object> &keep) {
  TensorRef r;
  if (const Torch *torch = torchIfImported(); torch && PyObject_TypeCheck(obj.ptr(), torch->tensor)) {
    kind = ArrayKind::Torch;
    nb::object dt = attr(obj, dtypeAttrName());
    int type = torchElemType(*torch, dt);
    if (type < 0)
      throw nb::type_error(("tensor '" + name + "' has dtype " + pyStr(dt) +
                            ", which attnc does not take")
                               .c_str());
    r.type = (dsl::ElemType)type;
    torchGeometry(name, obj, r);
    return r;
  }
  bool bf16;
  AnyArray a = arrayOf(name, obj, bf16, keep);
  kind = bf16 ? ArrayKind::NumpyBf16 : ArrayKind::Numpy;
  if (bf16)
    r.type = dsl::ElemType::BF16;
  else if (!elemTypeOf(a.dtype(), r.type))
    throw nb::type_error(("tensor '" + name + "' has dtype " + numpyDtypeText(a.dtype()) +
                          ", which attnc does not take")
                             .c_str());
  arrayGeometry(a, r);
  return r;
}

/// attn::runtime::mergeAttentionStates on four arrays read in place:
/// (out, lse, kind of out_a, out's dtype) with NumPy arrays that own the
/// results. A wrong dtype is a TypeError, any other mismatch a ValueError,
/// each naming the tensor (and the dimension).
std::tuple<nb::object, nb::object, int, std::string> mergeStates(nb::handle outA, nb::handle lseA,
                                                                 nb::handle outB, nb::handle lseB) {
  std::vector<nb::object> keep;
  ArrayKind kind, ignored;
  TensorRef oa = anyRef("out_a", outA, kind, keep);
  TensorRef la = anyRef("lse_a", lseA, ignored, keep);
  TensorRef ob = anyRef("out_b", outB, ignored, keep);
  TensorRef lb = anyRef("lse_b", lseB, ignored, keep);
  if (Status s = attn::runtime::checkMergeTypes(oa, la, ob, lb); !s)
    throw nb::type_error(s.message().c_str());
  HostTensor out, lse;
  Status status = Status::ok();
  {
    nb::gil_scoped_release release;
    status = attn::runtime::mergeAttentionStates(oa, la, ob, lb, out, lse);
  }
  if (!status)
    throw nb::value_error(status.message().c_str());
  std::string dtype = dsl::toString(out.type);
  return {toNumpy(std::move(out)), toNumpy(std::move(lse)), (int)kind, dtype};
}

/// A compiled kernel, shared by every Python object and thread that uses it.
class Kernel {
public:
  std::shared_ptr<attn::JitKernel> jit;
  std::string messages; // warnings of the compile
  std::string source, fileName;

  const dsl::Kernel &ast() const { return jit->kernel(); }

  /// (name, role, dtype, dims) of every tensor, q, k, v first as declared.
  std::vector<std::tuple<std::string, std::string, std::string, std::vector<nb::object>>>
  tensors() const {
    std::vector<std::tuple<std::string, std::string, std::string, std::vector<nb::object>>> r;
    for (const dsl::TensorDecl *tp : ast().inputs()) {
      const dsl::TensorDecl &t = *tp;
      std::vector<nb::object> dims;
      for (const dsl::Dim &d : t.dims)
        dims.push_back(d.isLiteral() ? nb::cast(d.value) : nb::cast(d.name));
      const char *role = t.role == dsl::TensorRole::Q   ? "q"
                         : t.role == dsl::TensorRole::K ? "k"
                         : t.role == dsl::TensorRole::V ? "v"
                                                        : "aux";
      r.emplace_back(t.callName(), role, dsl::toString(t.type), std::move(dims));
    }
    return r;
  }

  /// The output's dims [B, H, Lq, Dv] as text: sizes, literals or, with
  /// index maps, the range expressions (LANGUAGE.md §8.1).
  std::vector<std::string> outputDims() const {
    const dsl::Kernel &k = ast();
    std::vector<std::string> r;
    for (dsl::IndexVar v : {dsl::IndexVar::B, dsl::IndexVar::H, dsl::IndexVar::I})
      r.push_back(k.extents[int(v)].empty() || !k.extents[int(v)].front().value
                      ? "?"
                      : dsl::printExpr(*k.extents[int(v)].front().value));
    const dsl::Dim &dv = k.v->dims.back();
    r.push_back(dv.isLiteral() ? std::to_string(dv.value) : dv.name);
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

  /// The arguments of one call as the kernel reads them: views of the
  /// caller's arrays, and contiguous copies of the few whose last dimension
  /// is strided (Halide's kernels need it contiguous).
  struct Arguments {
    std::map<std::string, TensorRef> refs;
    std::vector<HostTensor> copies;
    std::map<std::string, dsl::Literal> params;
    std::vector<nb::object> keep; // views the refs point into
    ArrayKind kind = ArrayKind::Numpy; // q's
  };

  /// q, k, v and the aux tensors in declaration order (`aux`), params by
  /// name. A wrong dtype or kind of object is a TypeError naming the tensor
  /// and the conversion to write; a tensor on a device a ValueError.
  Arguments gather(nb::handle q, nb::handle k, nb::handle v, const nb::tuple &aux,
                   const nb::dict &params) const {
    Arguments a;
    const dsl::Kernel &kd = ast();
    // With sources (LANGUAGE.md §8.5) `aux` holds each source's k and v
    // first, in call order, then the aux tensors.
    size_t nAux = 0;
    for (const dsl::TensorDecl *t : kd.inputs())
      nAux += t->role == dsl::TensorRole::Aux || (kd.hasSources() && t->role != dsl::TensorRole::Q);
    if (aux.size() != nAux)
      throw nb::type_error(("kernel '" + kd.name + "' takes " + std::to_string(nAux) +
                            " aux tensors, got " + std::to_string(aux.size()))
                               .c_str());
    a.copies.reserve(3 + nAux);
    size_t next = 0;
    for (const dsl::TensorDecl *tp : kd.inputs()) {
      const dsl::TensorDecl &t = *tp;
      nb::handle obj = t.role == dsl::TensorRole::Q                       ? q
                       : kd.hasSources() || t.role == dsl::TensorRole::Aux ? aux[next++]
                       : t.role == dsl::TensorRole::K                      ? k
                                                                          : v;
      ArrayKind kind;
      TensorRef r = toRef(kd, t, obj, kind, a.keep);
      if (t.role == dsl::TensorRole::Q)
        a.kind = kind;
      if (r.rank() && r.strides.back() != 1 && r.shape.back() > 1) {
        a.copies.push_back(attn::runtime::copyToHost(r));
        r = TensorRef(a.copies.back());
      }
      a.refs.emplace(t.callName(), std::move(r));
    }
    a.params = literals(params);
    return a;
  }

  /// Runs the kernel on the arrays in place. Returns (out, lse or None,
  /// kind of q) with NumPy arrays that own the kernel's outputs (the Python
  /// layer turns them into q's kind). Argument errors raise ValueError (the
  /// runtime's message, naming tensor and dimension); a failing kernel
  /// RuntimeError.
  std::tuple<nb::object, nb::object, int> call(nb::handle q, nb::handle k, nb::handle v,
                                               const nb::tuple &aux, const nb::dict &params,
                                               bool wantLse) const {
    Arguments a = gather(q, k, v, aux, params);
    checkLse(wantLse);
    attn::JitKernel::Call call;
    Status status = Status::ok();
    bool kernelFailed = false;
    {
      nb::gil_scoped_release release;
      try {
        status = jit->prepare(a.refs, a.params, call);
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
    return {out, lse, (int)a.kind};
  }

  /// The gradients of a loss given dout = dL/dout (JitKernel::backward),
  /// for a kernel compiled with its backward: (name, NumPy array) pairs in
  /// the manifest's gradNames order (q, k, v, float aux tensors, float
  /// params as 0-d arrays) and the kind of q. `lse` and `dlse` may be None.
  std::pair<std::vector<std::pair<std::string, nb::object>>, int>
  backward(nb::handle q, nb::handle k, nb::handle v, const nb::tuple &aux, const nb::dict &params,
           nb::handle out, nb::handle dout, nb::handle lse, nb::handle dlse) const {
    Arguments a = gather(q, k, v, aux, params);
    ArrayKind ignored;
    std::vector<HostTensor> copies;
    copies.reserve(4);
    auto ref = [&](const char *name, nb::handle obj) {
      TensorRef r = anyRef(name, obj, ignored, a.keep);
      if (r.rank() && r.strides.back() != 1 && r.shape.back() > 1) {
        copies.push_back(attn::runtime::copyToHost(r));
        r = TensorRef(copies.back());
      }
      return r;
    };
    TensorRef o = ref("out", out), d = ref("dout", dout), l, dl;
    if (!lse.is_none())
      l = ref("lse", lse);
    if (!dlse.is_none())
      dl = ref("dlse", dlse);
    std::map<std::string, HostTensor> grads;
    Status status = Status::ok();
    {
      nb::gil_scoped_release release;
      status = jit->backward(a.refs, a.params, o, d, lse.is_none() ? nullptr : &l, grads,
                             dlse.is_none() ? nullptr : &dl);
    }
    if (!status)
      throw nb::value_error(status.message().c_str());
    std::vector<std::pair<std::string, nb::object>> r;
    for (const std::string &name : jit->manifest().gradNames)
      r.emplace_back(name, toNumpy(std::move(grads.at(name))));
    return {std::move(r), (int)a.kind};
  }

  bool hasBackward() const { return jit->manifest().hasBackward; }

  /// Binds the arguments and copies them into host tensors for the float64
  /// reference (attn/runtime/Reference.h).
  std::pair<attn::runtime::Bindings, std::map<std::string, HostTensor>>
  hostArguments(const Arguments &a) const {
    attn::runtime::Bindings bind;
    if (Status s = attn::runtime::bindArguments(ast(), a.refs, a.params, bind); !s)
      throw nb::value_error(s.message().c_str());
    std::map<std::string, HostTensor> host;
    for (const auto &[name, r] : a.refs)
      host.emplace(name, attn::runtime::copyToHost(r));
    return {std::move(bind), std::move(host)};
  }

  /// The float64 reference on copies of the arrays: (out, lse or None,
  /// kind of q) in f64.
  std::tuple<nb::object, nb::object, int> reference(nb::handle q, nb::handle k, nb::handle v,
                                                    const nb::tuple &aux,
                                                    const nb::dict &params,
                                                    bool wantLse) const {
    Arguments a = gather(q, k, v, aux, params);
    checkLse(wantLse);
    auto [bind, host] = hostArguments(a);
    HostTensor out, lse;
    Status status = Status::ok();
    {
      nb::gil_scoped_release release;
      status = attn::runtime::referenceAttention(ast(), host, bind, out, wantLse ? &lse : nullptr);
    }
    if (!status)
      throw nb::value_error(status.message().c_str());
    nb::object l = wantLse ? toNumpy(std::move(lse)) : nb::none();
    return {toNumpy(std::move(out)), l, (int)a.kind};
  }

  /// The float64 reference's normalized weights, [B, H, Lq, Lk] (b < 0) or
  /// of one (b, h) plane [Lq, Lk], and whether each pair takes part (bool of
  /// the same shape): (weights, participates, kind of q).
  std::tuple<nb::object, nb::object, int> weights(nb::handle q, nb::handle k, nb::handle v,
                                                  const nb::tuple &aux, const nb::dict &params,
                                                  int64_t b, int64_t h) const {
    Arguments a = gather(q, k, v, aux, params);
    auto [bind, host] = hostArguments(a);
    HostTensor w;
    std::vector<uint8_t> part;
    Status status = Status::ok();
    {
      nb::gil_scoped_release release;
      try {
        status = b < 0 ? attn::runtime::referenceWeights(ast(), host, bind, w, &part)
                       : attn::runtime::referenceWeightsOfHead(ast(), host, bind, b, h, w, &part);
      } catch (const std::bad_alloc &) {
        status = Status::error("out of memory computing the attention weights of '" +
                               ast().name + "'");
      }
    }
    if (!status)
      throw nb::value_error(status.message().c_str());
    HostTensor mask(dsl::ElemType::Bool, w.shape);
    if (!part.empty())
      std::memcpy(mask.data(), part.data(), part.size());
    nb::object wo = toNumpy(std::move(w));
    return {wo, toNumpy(std::move(mask)), (int)a.kind};
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
                              pyStr(value.type().attr("__name__")))
                                 .c_str());
      }
      literals.emplace(name, l);
    }
    return literals;
  }

  /// The mask's tile classes over one (b, h) plane (attn/compiler/Viz.h):
  /// (uint8 [query tiles, key blocks] of TileClass values, summary, the
  /// tile shape). `sizes` and `params` as text; `aux`: name -> array.
  std::tuple<nb::object, std::string, std::pair<int64_t, int64_t>>
  tileMap(const std::map<std::string, std::string> &sizes,
          const std::map<std::string, std::string> &params, const nb::dict &aux,
          const std::string &tile, int64_t b, int64_t h) const {
    attn::TileMapRequest req;
    req.fileName = fileName;
    req.source = source;
    req.kernel = ast().name;
    req.sizes = sizes;
    req.params = params;
    req.tile = tile;
    req.batch = b;
    req.head = h;
    std::vector<nb::object> keep;
    for (auto [key, value] : aux) {
      std::string name = nb::cast<std::string>(key);
      const dsl::TensorDecl *t = ast().findTensor(name);
      if (!t || t->role != dsl::TensorRole::Aux)
        throw nb::type_error(("kernel '" + ast().name + "' has no aux tensor named '" + name + "'").c_str());
      ArrayKind kind;
      req.aux.emplace(name, attn::runtime::copyToHost(toRef(ast(), *t, value, kind, keep)));
    }
    attn::TileMapResult result;
    std::string err;
    bool ok;
    {
      nb::gil_scoped_release release;
      ok = attn::buildTileMap(req, result, err);
    }
    if (!ok)
      throw nb::value_error(err.c_str());
    HostTensor map(dsl::ElemType::Bool, {result.rows, result.cols}); // uint8 bytes
    for (size_t n = 0; n < result.tiles.size(); ++n)
      map.as<uint8_t>()[n] = (uint8_t)result.tiles[n];
    nb::object arr = toNumpy(std::move(map)).attr("view")(nb::module_::import_("numpy").attr("uint8"));
    return {arr, result.summary, {result.tileQ, result.tileK}};
  }

  std::string heatmapTitle(int64_t b, int64_t h, int64_t Lq, int64_t Lk) const {
    return attn::heatmapTitle(ast(), b, h, Lq, Lk);
  }

  void checkLse(bool wantLse) const {
    if (wantLse && !ast().outputLse)
      throw nb::value_error(("return_lse=True but kernel '" + ast().name +
                             "' does not declare `output lse`")
                                .c_str());
  }
};

/// Compiles (or loads from the cache shared with the CLI). Returns the
/// kernel, or None and the diagnostics.
std::pair<std::optional<Kernel>, std::string> compileKernel(const std::string &source,
                                                            const std::string &fileName,
                                                            const std::string &kernel,
                                                            const std::string &target,
                                                            bool useCache,
                                                            const std::string &cacheDir,
                                                            bool analyse, bool backward) {
  attn::JitOptions opts;
  opts.backward = backward;
  opts.kernel = kernel;
  opts.skipTiles = analyse;
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
  k.source = source;
  k.fileName = fileName;
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
      .def("output_dims", &Kernel::outputDims)
      .def("call", &Kernel::call, "q"_a, "k"_a, "v"_a, "aux"_a, "params"_a, "want_lse"_a)
      .def("backward", &Kernel::backward, "q"_a, "k"_a, "v"_a, "aux"_a, "params"_a, "out"_a,
           "dout"_a, "lse"_a.none(), "dlse"_a.none())
      .def_prop_ro("has_backward", &Kernel::hasBackward)
      .def("reference", &Kernel::reference, "q"_a, "k"_a, "v"_a, "aux"_a, "params"_a,
           "want_lse"_a)
      .def("weights", &Kernel::weights, "q"_a, "k"_a, "v"_a, "aux"_a, "params"_a, "b"_a, "h"_a)
      .def("tile_map", &Kernel::tileMap, "sizes"_a, "params"_a, "aux"_a, "tile"_a, "b"_a, "h"_a)
      .def("heatmap_title", &Kernel::heatmapTitle, "b"_a, "h"_a, "Lq"_a, "Lk"_a);

  m.def("compile", &compileKernel, "source"_a, "file_name"_a, "kernel"_a, "target"_a,
        "use_cache"_a, "cache_dir"_a, "analyse"_a = true, "backward"_a = false);
  m.def("emit", &emit, "source"_a, "file_name"_a, "stage"_a, "kernel"_a, "target"_a);
  m.def("check", &check, "source"_a, "file_name"_a);
  m.def("default_cache_dir", &attn::JitKernel::defaultCacheDir);
  m.def("merge_states", &mergeStates, "out_a"_a, "lse_a"_a, "out_b"_a, "lse_b"_a);
  m.def(
      "write_tile_map_png",
      [](const std::string &path, nb::ndarray<const uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu> tiles) {
        std::vector<attn::TileClass> classes(tiles.size());
        for (size_t n = 0; n < tiles.size(); ++n) {
          uint8_t c = tiles.data()[n];
          if (c > 2)
            throw nb::value_error("tile classes are 0 (empty), 1 (partial) or 2 (full)");
          classes[n] = (attn::TileClass)c;
        }
        std::string err;
        if (!attn::writeTileMapPng(path, classes, (int64_t)tiles.shape(0), (int64_t)tiles.shape(1), 0, err))
          throw nb::value_error(err.c_str());
      },
      "path"_a, "tiles"_a);
  m.def(
      "write_heatmap_png",
      [](const std::string &path, nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu> w,
         std::optional<nb::ndarray<const bool, nb::ndim<2>, nb::c_contig, nb::device::cpu>> participates,
         const std::string &title) {
        std::vector<uint8_t> part;
        if (participates) {
          if (participates->shape(0) != w.shape(0) || participates->shape(1) != w.shape(1))
            throw nb::value_error("participates must have the shape of the weights");
          part.assign((const uint8_t *)participates->data(),
                      (const uint8_t *)participates->data() + participates->size());
        }
        std::string err;
        bool ok;
        {
          nb::gil_scoped_release release;
          ok = attn::writeHeatmapPng(path, w.data(), (int64_t)w.shape(0), (int64_t)w.shape(1),
                                     participates ? &part : nullptr, title, err);
        }
        if (!ok)
          throw nb::value_error(err.c_str());
      },
      "path"_a, "weights"_a, "participates"_a.none(), "title"_a);
  // What a kernel call reads for an array: its address and strides in
  // elements, as the extension sees them (for tests that prove no copy).
  m.def("view_info", [](const AnyArray &a) {
    std::vector<int64_t> strides;
    for (size_t d = 0; d < a.ndim(); ++d)
      strides.push_back(a.stride(d));
    return std::make_pair((uintptr_t)a.data(), strides);
  });
}
