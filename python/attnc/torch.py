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

The operator carries autograd: ``loss.backward()`` runs attnc's compiled
backward (``Kernel.backward``, itself the custom operator
``torch.ops.attnc.<name>_backward``, so a compiled graph's backward keeps it
as one node too). q, k, v and the float aux tensors get gradients; params
are Python scalars in the schema and get none (make a learned scalar an aux
tensor, e.g. ``slope: f32[H]``). A loss may read lse as well as out (the
gradient of lse is p, folded into the softmax's Δ). The backward is compiled on the
first ``backward()`` unless the kernel was compiled with ``backward=True``.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from typing import Dict, List, Optional, Tuple

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
    _register_autograd(kern, name, op, signature, split, tensors, param_names, lse)
    return op


_FLOAT_TYPES = ("f32", "f64", "f16", "bf16")


def _register_autograd(kern: Kernel, name: str, op, signature, split, tensors, param_names, lse):
    """The backward operator ``attnc::<name>_backward`` (q, k, v, aux...,
    out, dout, lse or None, params...) -> the gradients of q, k, v and the
    float aux tensors, and the autograd formula of ``op`` that calls it."""
    dtypes = {n: dtype for n, _, dtype, _ in kern._tensors}
    aux_names = tensors[3:]
    # The tensors that get gradients (the kernel's gradNames but params).
    grad_names = list(tensors[:3]) + [n for n in aux_names if dtypes[n] in _FLOAT_TYPES]
    tensor_params = [
        inspect.Parameter(t, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=torch.Tensor)
        for t in tensors
    ]
    extra = [
        inspect.Parameter("out", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=torch.Tensor),
        inspect.Parameter("dout", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=torch.Tensor),
        inspect.Parameter("lse", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Optional[torch.Tensor]),
        inspect.Parameter("dlse", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Optional[torch.Tensor]),
    ]
    scalar_params = [signature.parameters[p] for p in param_names]
    bw_signature = inspect.Signature(tensor_params + extra + scalar_params,
                                     return_annotation=List[torch.Tensor])

    def bw_split(args):
        bound = bw_signature.bind(*args)
        bound.apply_defaults()
        a = bound.arguments
        forward_args = [a[t] for t in tensors] + [a[p] for p in param_names]
        return forward_args, a["out"], a["dout"], a["lse"], a["dlse"]

    def bw_impl(*args):
        forward_args, out, dout, l, dl = bw_split(args)
        q, k, v, named = split(forward_args)
        grads = kern.backward(q, k, v, out=out, dout=dout, lse=l, dlse=dl, **named)
        return [grads[n] for n in grad_names]

    def bw_fake(*args):
        forward_args = bw_split(args)[0]
        bound = signature.bind(*forward_args)
        return [torch.empty_like(bound.arguments[n]) for n in grad_names]

    bw_impl.__signature__ = bw_signature
    bw_impl.__name__ = name + "_backward"
    bw_fake.__signature__ = bw_signature
    bw_op = torch.library.custom_op(f"attnc::{name}_backward", mutates_args=())(bw_impl)
    bw_op.register_fake(bw_fake)

    def setup_context(ctx, inputs, output):
        bound = signature.bind(*inputs)
        bound.apply_defaults()
        a = bound.arguments
        out, l = (output[0], output[1]) if lse else (output, None)
        ctx.save_for_backward(*[a[t] for t in tensors], out, l)
        ctx.scalars = [a[p] for p in param_names]

    def backward(ctx, *grad_outputs):
        saved = ctx.saved_tensors
        inputs, out, l = list(saved[: len(tensors)]), saved[len(tensors)], saved[len(tensors) + 1]
        dout = grad_outputs[0]
        if dout is None:
            dout = torch.zeros_like(out)
        dl = grad_outputs[1] if lse else None
        if dout.dtype != out.dtype:
            dout = dout.to(out.dtype)
        if dl is not None and dl.dtype != torch.float32:
            dl = dl.to(torch.float32)
        grads = dict(zip(grad_names, bw_op(*inputs, out, dout, l, dl, *ctx.scalars)))
        return tuple(grads.get(t) for t in tensors) + (None,) * len(param_names)

    op.register_autograd(backward, setup_context=setup_context)
