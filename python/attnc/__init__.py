"""attnc: compile attention variants written in ``.attn`` and call them on
NumPy arrays and PyTorch tensors.

    import attnc
    kern = attnc.compile(source)            # or attnc.load("causal.attn")
    out = kern(q, k, v, doc=doc, window=256)
    out, lse = kern(q, k, v, return_lse=True)

Inputs are read in place (no copy) whenever their last dimension is
contiguous; outputs come back as the kind of array q was (a torch.Tensor for
a torch.Tensor, else a NumPy array). Compiled kernels are cached on disk, in
the same cache as the ``attnc`` command line. See docs/python.md.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _attnc

__all__ = [
    "CompileError",
    "Kernel",
    "check",
    "compile",
    "default_cache_dir",
    "load",
    "version",
]

version: str = _attnc.version
build_id: str = _attnc.build_id


class CompileError(Exception):
    """A ``.attn`` source that does not compile.

    ``str(e)`` and ``e.diagnostics`` hold the compiler's clang-style text
    (``file:line:col: error: ...``, the source line, a caret under the
    offending text and a hint)."""

    def __init__(self, diagnostics: str):
        self.diagnostics = diagnostics.rstrip("\n")
        super().__init__(self.diagnostics)


# The NumPy dtype of every attnc element type (bf16 has none in NumPy itself:
# it is ml_dtypes.bfloat16 when that package is installed).
_NUMPY_DTYPES = {
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "f16": np.dtype(np.float16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
_TORCH_DTYPES = {
    "torch.float32": "f32",
    "torch.float64": "f64",
    "torch.float16": "f16",
    "torch.bfloat16": "bf16",
    "torch.int32": "i32",
    "torch.int64": "i64",
    "torch.bool": "bool",
}
_NUMPY_NAMES = {v: k for k, v in _NUMPY_DTYPES.items()}
_TORCH_NAMES = {v: k for k, v in _TORCH_DTYPES.items()}


def _is_bf16_numpy(dtype: np.dtype) -> bool:
    return dtype.name == "bfloat16" and dtype.itemsize == 2


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def _dims_text(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


class Kernel:
    """A compiled attention kernel. Create it with :func:`compile` or
    :func:`load`; call it as ``kern(q, k, v, AUX=..., PARAM=...)``.

    A kernel may be called from several threads at once; the GIL is released
    while it runs."""

    def __init__(self, impl, source: str, filename: str, target: str):
        self._impl = impl
        self._source = source
        self._filename = filename
        self._target = target
        self._tensors = impl.tensors()  # (name, role, dtype, dims)
        self._params = impl.params()  # (name, dtype, default)
        self._declared = {name: dtype for name, _, dtype, _ in self._tensors}
        self._decl_text = {
            name: f"{name}: {dtype}{_dims_text(dims)}" for name, _, dtype, dims in self._tensors
        }
        roles = {role: name for name, role, _, _ in self._tensors}
        self._q, self._k, self._v = roles["q"], roles["k"], roles["v"]
        self._aux = tuple(name for name, role, _, _ in self._tensors if role == "aux")
        self._param_names = frozenset(name for name, _, _ in self._params)

    # -- what it is -------------------------------------------------------
    @property
    def name(self) -> str:
        """The kernel's name (its ``attention NAME { ... }`` block)."""
        return self._impl.name

    @property
    def strategy(self) -> str:
        """The strategy the compiler chose (attn-select-strategy), e.g.
        ``dense``, ``block-sparse`` or ``hull``."""
        return self._impl.strategy

    @property
    def target(self) -> str:
        """The Halide target string the kernel was compiled for."""
        return self._impl.target

    @property
    def normalize(self) -> str:
        return self._impl.normalize

    @property
    def output_lse(self) -> bool:
        """Whether the kernel declares ``output lse``."""
        return self._impl.output_lse

    @property
    def cache_hit(self) -> bool:
        """Whether the kernel was loaded from the compile cache."""
        return self._impl.cache_hit

    @property
    def compile_seconds(self) -> float:
        return self._impl.compile_seconds

    @property
    def warnings(self) -> str:
        """Warnings the compiler printed (e.g. a GPU target's fallback)."""
        return self._impl.messages

    @property
    def source(self) -> str:
        return self._source

    @property
    def inputs(self) -> Tuple[str, ...]:
        """The tensor names a call takes: q, k, v, then the aux tensors."""
        return (self._q, self._k, self._v) + self._aux

    @property
    def params(self) -> Dict[str, Tuple[str, Any]]:
        """``{name: (dtype, default or None)}`` of the params."""
        return {name: (dtype, default) for name, dtype, default in self._params}

    @property
    def signature(self) -> str:
        """The call as Python sees it, with the declared types and shapes:
        ``causal(q: f32[B, H, L, 64], k: ..., v: ..., *, window: i32 = 256)
        -> out: f32[B, H, L, 64]``."""
        args = [self._decl_text[n] for n in (self._q, self._k, self._v)]
        kw = [self._decl_text[n] for n in self._aux]
        for name, dtype, default in self._params:
            kw.append(f"{name}: {dtype}" + ("" if default is None else f" = {default!r}"))
        dims = {name: dims for name, _, _, dims in self._tensors}
        qd, vd = dims[self._q], dims[self._v]
        out = f"out: {self._declared[self._q]}{_dims_text(list(qd[:3]) + [vd[3]])}"
        if self.output_lse:
            out += f", lse: f32{_dims_text(qd[:3])}"
        sep = ", *, " if kw else ""
        return f"{self.name}({', '.join(args)}{sep}{', '.join(kw)}) -> {out}"

    def __repr__(self) -> str:
        return f"<attnc.Kernel {self.signature} strategy={self.strategy}>"

    def emit(self, stage: str = "halide") -> str:
        """The text of one stage of the pipeline, as ``attnc emit --stage``:
        ``ast``, ``mlir``, ``mlir-opt``, ``halide`` or ``stmt``."""
        ok, text, err = _attnc.emit(self._source, self._filename, stage, self.name, self._target)
        if not ok:
            raise CompileError(err)
        return text

    # -- calling it -------------------------------------------------------
    def _input(self, name: str, x: Any):
        """(what the extension reads, dtype override, kind of x)."""
        declared = self._declared[name]
        if isinstance(x, np.ndarray):
            dt = x.dtype
            if _is_bf16_numpy(dt):
                got = "bf16"
            else:
                got = _NUMPY_NAMES.get(dt)
            if got != declared:
                self._dtype_error(name, str(dt), declared, "numpy")
            if x.ndim and x.strides[-1] != x.itemsize and x.shape[-1] > 1:
                x = np.ascontiguousarray(x)
            if got == "bf16":
                return x.view(np.uint16), "bf16", "numpy-bf16"
            return x, "", "numpy"
        if _is_torch(x):
            got = _TORCH_DTYPES.get(str(x.dtype))
            if got != declared:
                self._dtype_error(name, str(x.dtype), declared, "torch")
            if x.device.type != "cpu":
                raise ValueError(
                    f"tensor '{name}' is on device {x.device}; this attnc kernel runs on the CPU "
                    f"(target {self.target}): pass {name}.cpu()"
                )
            if x.requires_grad:
                x = x.detach()
            if x.dim() and x.stride(-1) != 1 and x.shape[-1] > 1:
                x = x.contiguous()
            return x, "", "torch"
        if hasattr(x, "__dlpack__"):
            return x, "", "dlpack"
        if isinstance(x, (list, tuple)) or np.isscalar(x):
            raise TypeError(
                f"tensor '{name}' must be an array (NumPy, PyTorch or anything with __dlpack__), "
                f"not {type(x).__name__}: pass np.asarray({name}, dtype=np.{_NUMPY_DTYPES.get(declared, 'float32')})"
            )
        raise TypeError(
            f"tensor '{name}' must be an array (NumPy, PyTorch or anything with __dlpack__), "
            f"not {type(x).__name__}"
        )

    def _dtype_error(self, name: str, got: str, declared: str, kind: str):
        if kind == "torch":
            fix = f"{name}.to({_TORCH_NAMES[declared]})"
        elif declared == "bf16":
            fix = f"{name}.astype(ml_dtypes.bfloat16)"
        else:
            fix = f"{name}.astype(np.{_NUMPY_DTYPES[declared]})"
        raise TypeError(
            f"tensor '{name}' has dtype {got} but kernel '{self.name}' declares "
            f"{self._decl_text[name]}: convert it, e.g. {fix}"
        )

    def _arguments(self, q, k, v, named):
        """(inputs for the extension, params, kind of q) of a call."""
        inputs = {}
        qx, override, kind = self._input(self._q, q)
        inputs[self._q] = (qx, override)
        for name, x in ((self._k, k), (self._v, v)):
            x, override, _ = self._input(name, x)
            inputs[name] = (x, override)
        params = {}
        for name, value in named.items():
            if name in self._declared and name not in inputs:
                x, override, _ = self._input(name, value)
                inputs[name] = (x, override)
            elif name in self._param_names:
                params[name] = value
            else:
                raise TypeError(self._unknown(name))
        if len(inputs) != 3 + len(self._aux):
            missing = [n for n in self._aux if n not in inputs]
            raise TypeError(
                f"kernel '{self.name}' is missing aux tensor"
                f"{'s' if len(missing) > 1 else ''} "
                + ", ".join(f"'{self._decl_text[n]}'" for n in missing)
                + f": pass {missing[0]}=..."
            )
        for name, _, default in self._params:
            if default is None and name not in params:
                raise TypeError(
                    f"kernel '{self.name}' is missing param '{name}' (no default): pass {name}=..."
                )
        return inputs, params, kind

    def __call__(self, q, k, v, /, *, return_lse: bool = False, **named):
        """Runs the kernel: q, k, v positionally, aux tensors and params by
        name. Returns out (and lse with ``return_lse=True``) as the kind of
        array q is. Raises TypeError for a missing, unknown or mistyped
        argument and ValueError for shapes, sizes and index errors, each
        naming the tensor and dimension."""
        inputs, params, kind = self._arguments(q, k, v, named)
        out, lse = self._impl.run(inputs, params, return_lse)
        out = _convert(out, kind, self._declared[self._q])
        if return_lse:
            return out, _convert(lse, kind, "f32")
        return out

    def reference(self, q, k, v, /, *, return_lse: bool = False, **named):
        """The same call evaluated by attnc's float64 reference interpreter
        (the oracle of its test suites): out (and lse) in float64. Slow:
        for checking kernels on small problems."""
        inputs, params, kind = self._arguments(q, k, v, named)
        out, lse = self._impl.reference(inputs, params, return_lse)
        out = _convert(out, kind, "f64")
        if return_lse:
            return out, _convert(lse, kind, "f64")
        return out

    def _unknown(self, name: str) -> str:
        known = [n for n in self._aux] + [n for n, _, _ in self._params]
        hint = f"; it takes {', '.join(known)}" if known else "; it takes no aux tensors or params"
        if name in (self._q, self._k, self._v):
            return f"kernel '{self.name}' takes {name} positionally: kern(q, k, v, ...)"
        return f"kernel '{self.name}' has no aux tensor or param named '{name}'{hint}"


def _convert(arr: np.ndarray, kind: str, dtype: str):
    """The kernel's output as the kind of array q was, without a copy."""
    if dtype == "bf16":
        if kind == "torch":
            import torch

            return torch.from_numpy(arr).view(torch.bfloat16)
        import ml_dtypes

        return arr.view(ml_dtypes.bfloat16)
    if kind == "torch":
        import torch

        return torch.from_numpy(arr)
    return arr




def compile(
    source: str,
    kernel: Optional[str] = None,
    target: str = "host",
    *,
    cache: bool = True,
    cache_dir: Optional[str] = None,
    filename: str = "<string>",
) -> Kernel:
    """Compiles one kernel of ``.attn`` source text (or loads it from the
    compile cache). ``kernel`` names the block when the source has several.
    Raises :class:`CompileError` with the compiler's diagnostics."""
    if not isinstance(source, str):
        raise TypeError(f"source must be the .attn text as a str, not {type(source).__name__}")
    impl, messages = _attnc.compile(
        source, filename, kernel or "", target, bool(cache), os.fspath(cache_dir) if cache_dir else ""
    )
    if impl is None:
        raise CompileError(messages)
    return Kernel(impl, source, filename, target)


def load(path, kernel: Optional[str] = None, target: str = "host", **options) -> Kernel:
    """:func:`compile` of a ``.attn`` file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"'{path}' is a directory, not a .attn file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return compile(text, kernel, target, filename=path, **options)


def check(source: str, filename: str = "<string>") -> None:
    """Parses and checks ``source``; raises :class:`CompileError` if it is
    not valid ``.attn``."""
    ok, diagnostics = _attnc.check(source, filename)
    if not ok:
        raise CompileError(diagnostics)


def default_cache_dir() -> str:
    """The compile cache directory ($ATTNC_CACHE_DIR, else
    $XDG_CACHE_HOME/attnc, else ~/.cache/attnc), shared with the CLI."""
    return _attnc.default_cache_dir()
