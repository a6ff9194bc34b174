"""attnc: compile attention variants written in ``.attn`` and call them on
NumPy arrays and PyTorch tensors.

    import attnc
    kern = attnc.compile(source)            # or attnc.load("causal.attn")
    out = kern(q, k, v, doc=doc, window=256)
    out, lse = kern(q, k, v, return_lse=True)
    out, lse = attnc.merge_states(out_a, lse_a, out_b, lse_b)  # cascade attention

Inputs are read in place (no copy) whenever their last dimension is
contiguous; outputs come back as the kind of array q was (a torch.Tensor for
a torch.Tensor, else a NumPy array). Compiled kernels are cached on disk, in
the same cache as the ``attnc`` command line. See docs/python.md.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _attnc

__all__ = [
    "TILE_EMPTY",
    "TILE_FULL",
    "TILE_PARTIAL",
    "CompileError",
    "Kernel",
    "check",
    "compile",
    "default_cache_dir",
    "load",
    "merge_states",
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


def _dims_text(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


class Kernel:
    """A compiled attention kernel. Create it with :func:`compile` or
    :func:`load`; call it as ``kern(q, k, v, AUX=..., PARAM=...)``.

    A kernel may be called from several threads at once; the GIL is released
    while it runs."""

    def __init__(self, impl, source: str, filename: str, target: str, options=None):
        self._impl = impl
        self._source = source
        self._filename = filename
        self._target = target
        self._options = dict(options or {})  # compile()'s keyword options
        self._grad_impl = impl if impl.has_backward else None
        self._grad_lock = threading.Lock()
        self._tensors = impl.tensors()  # (name, role, dtype, dims)
        self._params = impl.params()  # (name, dtype, default)
        self._declared = {name: dtype for name, _, dtype, _ in self._tensors}
        self._decl_text = {
            name: f"{name}: {dtype}{_dims_text(dims)}" for name, _, dtype, dims in self._tensors
        }
        roles = {role: name for name, role, _, _ in self._tensors}
        # Key/value sources (LANGUAGE.md §8.5): each source's k and v are
        # passed by name, SOURCE.k or SOURCE_k, before the aux tensors.
        self._kv = tuple(
            name for name, role, _, _ in self._tensors if role in ("k", "v") and "." in name
        )
        self._q = roles["q"]
        self._k, self._v = (None, None) if self._kv else (roles["k"], roles["v"])
        self._aux = self._kv + tuple(
            name for name, role, _, _ in self._tensors if role == "aux"
        )
        self._param_names = frozenset(name for name, _, _ in self._params)
        self._required = tuple(name for name, _, default in self._params if default is None)
        self._needs_named = bool(self._aux or self._required)
        self._out_dtype = self._declared[self._q]

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
        """The tensor names a call takes: q, k, v (with sources, each
        source's SOURCE.k and SOURCE.v), then the aux tensors."""
        if self._kv:
            return (self._q,) + self._aux
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
        heads = (self._q,) if self._kv else (self._q, self._k, self._v)
        args = [self._decl_text[n] for n in heads]
        # A source's k and v by the names a call takes them: text_k=...
        kw = [self._decl_text[n].replace(".", "_", 1) if n in self._kv else self._decl_text[n]
              for n in self._aux]
        for name, dtype, default in self._params:
            kw.append(f"{name}: {dtype}" + ("" if default is None else f" = {default!r}"))
        od = self._impl.output_dims()  # [B, H, Lq, Dv], ranges with index maps
        out = f"out: {self._declared[self._q]}[{', '.join(od)}]"
        if self.output_lse:
            out += f", lse: f32[{', '.join(od[:3])}]"
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
    def _route(self, named: dict):
        """(aux tensors in declaration order, params) of a call's keyword
        arguments; TypeError for a missing or unknown one."""
        if not named and not self._needs_named:
            return (), named
        aux = []
        missing = []
        for name in self._aux:
            alias = name.replace(".", "_")  # a source's text.k as text_k=
            if name in named:
                aux.append(named.pop(name))
            elif alias != name and alias in named:
                aux.append(named.pop(alias))
            else:
                missing.append(name)
        if missing:
            raise TypeError(
                f"kernel '{self.name}' is missing aux tensor"
                f"{'s' if len(missing) > 1 else ''} "
                + ", ".join(f"'{self._decl_text[n]}'" for n in missing)
                + f": pass {missing[0].replace('.', '_')}=..."
            )
        for name in named:
            if name not in self._param_names:
                raise TypeError(self._unknown(name))
        for name in self._required:
            if name not in named:
                raise TypeError(
                    f"kernel '{self.name}' is missing param '{name}' (no default): pass {name}=..."
                )
        return tuple(aux), named

    def _heads(self, q, k, v):
        if self._kv and (k is not None or v is not None):
            raise TypeError(
                f"kernel '{self.name}' has key/value sources: pass q positionally and each "
                f"source's k and v by name ({', '.join(n.replace('.', '_') + '=...' for n in self._kv)})"
            )
        if not self._kv and (k is None or v is None):
            raise TypeError(f"kernel '{self.name}' takes q, k and v positionally")
        # With sources the extension reads k and v from the named tensors;
        # its k and v slots are unused (q fills them).
        return (q, q) if self._kv else (k, v)

    def __call__(self, q, k=None, v=None, /, *, return_lse: bool = False, **named):
        """Runs the kernel: q, k, v positionally, aux tensors and params by
        name (with `source` blocks: q positionally, each source's k and v by
        name, ``text_k=`` or ``**{"text.k": ...}``). Returns out (and lse with
        ``return_lse=True``) as the kind of array q is. Raises TypeError for
        a missing, unknown or mistyped argument and ValueError for shapes,
        sizes and index errors, each naming the tensor and dimension."""
        k, v = self._heads(q, k, v)
        aux, params = self._route(named)
        out, lse, kind = self._impl.call(q, k, v, aux, params, return_lse)
        if kind or self._out_dtype == "bf16":
            out = _convert(out, kind, self._out_dtype)
            if return_lse:
                lse = _convert(lse, kind, "f32")
        return (out, lse) if return_lse else out

    @property
    def has_backward(self) -> bool:
        """Whether the backward is compiled already (``compile(...,
        backward=True)``, or a first :meth:`backward` call)."""
        return self._grad_impl is not None

    def _backward_impl(self):
        """The kernel compiled with its backward: this one, or the same
        source compiled again with ``backward=True`` on first use (once; the
        compile cache keeps it)."""
        with self._grad_lock:
            if self._grad_impl is None:
                opts = self._options
                impl, messages = _attnc.compile(
                    self._source, self._filename, self.name, self._target,
                    opts.get("cache", True), opts.get("cache_dir", ""), opts.get("analyse", True), True
                )
                if impl is None:
                    raise CompileError(messages)
                self._grad_impl = impl
            return self._grad_impl

    def backward(self, q, k=None, v=None, /, *, out, dout, lse=None, dlse=None,
                 **named) -> Dict[str, Any]:
        """The gradients of a loss L through this kernel, given the forward's
        ``out`` and ``dout`` = dL/dout (q's dtype, [B, H, Lq, Dv]) and, for a
        softmax kernel that outputs it, its ``lse`` (else None: the kernel
        computes it), and ``dlse`` = dL/dlse when the loss reads lse too
        (float32 [B, H, Lq]; None: 0). Returns a dict by name: ``q``, ``k``, ``v`` (their
        shapes and dtypes), every float aux tensor the score reads and every
        float param (a 0-d array), as arrays of q's kind. Compiles the
        backward on first use when the kernel was compiled without it; a
        kernel attnc cannot differentiate yet (channel vectors, ...) raises
        :class:`CompileError` saying why."""
        k, v = self._heads(q, k, v)
        aux, params = self._route(named)
        grads, kind = self._backward_impl().backward(q, k, v, aux, params, out, dout, lse, dlse)
        dtypes = dict(self._declared)
        dtypes.update({name: dtype for name, dtype, _ in self._params})
        return {name: _convert(g, kind, dtypes[name]) for name, g in grads}

    def reference(self, q, k=None, v=None, /, *, return_lse: bool = False, **named):
        """The same call evaluated by attnc's float64 reference interpreter
        (the oracle of its test suites): out (and lse) in float64. Slow:
        for checking kernels on small problems."""
        k, v = self._heads(q, k, v)
        aux, params = self._route(named)
        out, lse, kind = self._impl.reference(q, k, v, aux, params, return_lse)
        out = _convert(out, kind, "f64")
        if return_lse:
            return out, _convert(lse, kind, "f64")
        return out

    # -- seeing attention --------------------------------------------------
    def tile_map(self, *, b: int = 0, h: int = 0, tile=(64, 128), png=None,
                 return_summary: bool = False, **named):
        """The mask's tiles over the (i, j) plane of one (b, h), as the
        compiler classifies them (``attnc viz``): a uint8 array
        [query tiles, key blocks] of TILE_EMPTY (skipped), TILE_PARTIAL (the
        mask is evaluated per pair) and TILE_FULL (no mask evaluated).

        Keyword arguments are the sizes the plane needs (``L=4096``, or
        ``Lq=``/``Lk=``), params (``window=256``) and aux tensors the mask
        reads (``doc=doc``); sizes an aux tensor's shape gives may be left
        out. ``png`` writes the picture too; ``return_summary`` also returns
        the printed summary (tile counts, fraction of pairs taking part)."""
        sizes, params, aux = {}, {}, {}
        for name, value in named.items():
            if name in self._aux:
                aux[name] = value
            elif name in self._param_names:
                params[name] = _param_text(name, value)
            else:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise TypeError(f"size '{name}' must be an int, not {type(value).__name__}")
                sizes[name] = str(int(value))
        tq, tk = tile
        tiles, summary, _ = self._impl.tile_map(sizes, params, aux, f"{int(tq)}x{int(tk)}", b, h)
        if png is not None:
            _attnc.write_tile_map_png(os.fspath(png), tiles)
        return (tiles, summary) if return_summary else tiles

    def weights(self, q, k=None, v=None, /, *, b: Optional[int] = None,
                h: Optional[int] = None, png=None, **named):
        """The normalized attention weights of the call ``kern(q, k, v,
        **named)``, by the float64 reference: [B, H, Lq, Lk], or [Lq, Lk] of
        one (b, h) when both are given, such that out = weights @ v for every
        normalization (masked pairs and fully masked rows are 0); with
        sources, Lk counts every source's keys, one source after the other. For
        problems small enough: at most 2^26 weights (a ValueError above).
        ``png`` draws (b, h) (default 0, 0) as a heatmap with axes, a colour
        bar and a title (as ``attnc viz --heatmap``)."""
        if (b is None) != (h is None):
            raise TypeError("give both b and h, or neither")
        k, v = self._heads(q, k, v)
        aux, params = self._route(named)
        one = b is not None
        w, part, kind = self._impl.weights(q, k, v, aux, params, b if one else -1, h if one else -1)
        if png is not None:
            pb, ph = (b, h) if one else (0, 0)
            plane, mask = (w, part) if one else (w[pb, ph], part[pb, ph])
            Lq, Lk = plane.shape
            _attnc.write_heatmap_png(
                os.fspath(png), np.ascontiguousarray(plane), np.ascontiguousarray(mask),
                self._impl.heatmap_title(pb, ph, Lq, Lk))
        return _convert(w, kind, "f64")

    def _unknown(self, name: str) -> str:
        known = [n for n in self._aux] + [n for n, _, _ in self._params]
        hint = f"; it takes {', '.join(known)}" if known else "; it takes no aux tensors or params"
        if name in (self._q, self._k, self._v):
            return f"kernel '{self.name}' takes {name} positionally: kern(q, k, v, ...)"
        return f"kernel '{self.name}' has no aux tensor or param named '{name}'{hint}"


def _param_text(name: str, value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(value.item() if hasattr(value, "item") else value)
    raise TypeError(f"param '{name}' must be an int, a float or a bool, not {type(value).__name__}")


# The tile classes of Kernel.tile_map.
TILE_EMPTY, TILE_PARTIAL, TILE_FULL = 0, 1, 2

# What kind of array q was (the extension's ArrayKind).
_NUMPY, _TORCH, _NUMPY_BF16 = 0, 1, 2


def _convert(arr: np.ndarray, kind: int, dtype: str):
    """The kernel's output (a NumPy array; bf16 as its uint16 bits) as the
    kind of array q was, without a copy."""
    if kind == _TORCH:
        import torch

        t = torch.from_numpy(arr)
        return t.view(torch.bfloat16) if dtype == "bf16" else t
    if dtype == "bf16":
        import ml_dtypes

        return arr.view(ml_dtypes.bfloat16)
    return arr


def compile(
    source: str,
    kernel: Optional[str] = None,
    target: str = "host",
    *,
    cache: bool = True,
    cache_dir: Optional[str] = None,
    filename: str = "<string>",
    analyse: bool = True,
    backward: bool = False,
) -> Kernel:
    """Compiles one kernel of ``.attn`` source text (or loads it from the
    compile cache). ``kernel`` names the block when the source has several.
    ``analyse=False`` builds the unanalysed kernel: every pair evaluated, no
    tile skipped, and quadratic where attn-select-strategy chose linear (for
    comparing the two). ``backward=True`` also compiles the backward pass
    (:meth:`Kernel.backward`; otherwise compiled on its first use). Raises
    :class:`CompileError` with the compiler's diagnostics."""
    if not isinstance(source, str):
        raise TypeError(f"source must be the .attn text as a str, not {type(source).__name__}")
    impl, messages = _attnc.compile(
        source, filename, kernel or "", target, bool(cache),
        os.fspath(cache_dir) if cache_dir else "", bool(analyse), bool(backward)
    )
    if impl is None:
        raise CompileError(messages)
    options = {"cache": bool(cache), "cache_dir": os.fspath(cache_dir) if cache_dir else "",
               "analyse": bool(analyse)}
    return Kernel(impl, source, filename, target, options)


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


def merge_states(out_a, lse_a, out_b, lse_b):
    """Merges two softmax attention states of the same query rows over
    disjoint sets of keys, ``(out_a, lse_a)`` and ``(out_b, lse_b)`` (out
    [B, H, L, Dv], lse [B, H, L], as ``kern(..., return_lse=True)`` returns
    them), into ``(out, lse)`` over all the keys: cascade attention, with a
    shared prefix and each request's suffix computed apart.

    Exact in float64, rounded once: with m = max(lse_a, lse_b),
    w = exp(lse - m), out = (w_a out_a + w_b out_b) / (w_a + w_b) and lse =
    m + log(w_a + w_b). A state with lse = -inf (no key) is not read (the
    other is returned exactly; both -inf give out = 0, lse = -inf); one with
    lse = +inf takes all the weight (both +inf: out NaN); a NaN lse gives NaN.

    Arrays of any strides are read in place. out has out_a's dtype (float32,
    float64, float16 or bfloat16; out_b must match), lse lse_a's (float32 or
    float64; lse_b must match); both come back as the kind of array out_a is
    (torch.Tensor or NumPy). A wrong dtype is a TypeError, any shape mismatch
    a ValueError, each naming the tensor and dimension. See docs/cascade.md."""
    out, lse, kind, dtype = _attnc.merge_states(out_a, lse_a, out_b, lse_b)
    return _convert(out, kind, dtype), _convert(lse, kind, str(lse.dtype))


def default_cache_dir() -> str:
    """The compile cache directory ($ATTNC_CACHE_DIR, else
    $XDG_CACHE_HOME/attnc, else ~/.cache/attnc), shared with the CLI."""
    return _attnc.default_cache_dir()
