"""attnc kernels as PyTorch custom operators.

    import attnc, attnc.torch
    kern = attnc.load("causal.attn")
    op = attnc.torch.custom_op(kern)        # torch.ops.attnc.causal_<hash>
    out = op(q, k, v)                       # eager, or inside torch.compile

The operator is a ``torch.library.custom_op`` with a fake (meta)
implementation, so ``torch.compile`` traces through it without a graph
break: the graph keeps one opaque call into the attnc kernel. Its schema is
the kernel's: q, k, v, the aux tensors in declaration order, then the params
(int, float or bool, with their defaults); it returns out, or (out, lse) for
a kernel that declares ``output lse``.

The kernels have no backward pass yet: calling ``backward()`` through the
operator raises PyTorch's error for an operator without an autograd
formula.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from typing import Dict, Tuple

import torch

from . import Kernel

__all__ = ["custom_op"]

_PARAM_TYPES = {"i32": int, "i64": int, "f32": float, "f64": float, "f16": float, "bf16": float, "bool": bool}

_registered: Dict[str, object] = {}
_lock = threading.Lock()


def _op_name(kern: Kernel) -> str:
    key = "\0".join([kern.source, kern.name, kern.target]).encode()
    return f"{kern.name}_{hashlib.sha256(key).hexdigest()[:12]}"


def custom_op(kern: Kernel, name: str | None = None):
    """Registers ``kern`` as the operator ``torch.ops.attnc.<name>`` and
    returns it. ``name`` defaults to the kernel's name and a hash of its
    source and target, so registering the same kernel twice returns the same
    operator and two different kernels never collide."""
    if not isinstance(kern, Kernel):
        raise TypeError(f"custom_op takes an attnc.Kernel, not {type(kern).__name__}")
    name = name or _op_name(kern)
    if not name.isidentifier():
        raise ValueError(f"operator name '{name}' is not an identifier")
    with _lock:
        if name in _registered:
            return _registered[name]
        op = _register(kern, name)
        _registered[name] = op
        return op


def _register(kern: Kernel, name: str):
    tensors = list(kern.inputs)
    params = kern.params
    lse = kern.output_lse

    parameters = [
        inspect.Parameter(t, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=torch.Tensor)
        for t in tensors
    ]
    for p, (dtype, default) in params.items():
        parameters.append(
            inspect.Parameter(
                p,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=_PARAM_TYPES[dtype],
                default=inspect.Parameter.empty if default is None else default,
            )
        )
    returns = Tuple[torch.Tensor, torch.Tensor] if lse else torch.Tensor
    signature = inspect.Signature(parameters, return_annotation=returns)
    q_name, k_name, v_name = tensors[:3]
    aux_names = tensors[3:]
    param_names = list(params)

    def split(args):
        bound = signature.bind(*args)
        bound.apply_defaults()
        a = bound.arguments
        named = {n: a[n] for n in aux_names}
        named.update({p: a[p] for p in param_names})
        return a[q_name], a[k_name], a[v_name], named

    def impl(*args):
        q, k, v, named = split(args)
        if lse:
            out, l = kern(q, k, v, return_lse=True, **named)
            return out, l
        return kern(q, k, v, **named)

    def fake(*args):
        q, _, v, _ = split(args)
        B, H, Lq = q.shape[0], q.shape[1], q.shape[2]
        out = q.new_empty((B, H, Lq, v.shape[3]))
        if lse:
            return out, q.new_empty((B, H, Lq), dtype=torch.float32)
        return out

    impl.__signature__ = signature
    impl.__name__ = name
    fake.__signature__ = signature
    op = torch.library.custom_op(f"attnc::{name}", mutates_args=())(impl)
    op.register_fake(fake)
    return op
