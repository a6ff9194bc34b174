"""Gradients from Python: Kernel.backward on arrays, autograd through the
torch custom operator (against PyTorch's own autograd of the same
attention, and torch.autograd.gradcheck in float64), under torch.compile."""

import math

import numpy as np
import pytest
import torch

import attnc
import attnc.torch
from conftest import ROOT

VARIANTS = ROOT / "examples" / "variants"


def test_kernel_backward_returns_every_gradient_by_name():
    kern = attnc.load(VARIANTS / "bias_table.attn")
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 19, 16), dtype=np.float32) for _ in range(3))
    bias = rng.standard_normal((2, 19, 19), dtype=np.float32)
    out = kern(q, k, v, bias=bias)
    dout = rng.standard_normal(out.shape, dtype=np.float32)
    grads = kern.backward(q, k, v, out=out, dout=dout, bias=bias)
    assert list(grads) == ["q", "k", "v", "bias"]
    for name, x in (("q", q), ("k", k), ("v", v), ("bias", bias)):
        assert grads[name].shape == x.shape and grads[name].dtype == np.float32
    # dbias[h, i, j] = Σ_b ds[b, h, i, j]: the score's derivative in the
    # bias is 1, so dbias sums to Σ ds = 0 per row (softmax).
    assert np.allclose(grads["bias"].sum(axis=-1), 0, atol=1e-5)
    assert kern.has_backward


def sdpa_reference(q, k, v, causal):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


@pytest.mark.parametrize("variant,causal", [("causal.attn", True), ("dense.attn", False)])
def test_loss_backward_matches_pytorch_autograd(variant, causal):
    kern = attnc.load(VARIANTS / variant)
    op = attnc.torch.custom_op(kern)
    torch.manual_seed(0)
    shape = (2, 3, 70, 32)  # 70 rows: two query tiles, the second ragged
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    qr, kr, vr = (x.detach().clone().requires_grad_() for x in (q, k, v))
    w = torch.randn(shape)
    (op(q, k, v) * w).sum().backward()
    (sdpa_reference(qr, kr, vr, causal) * w).sum().backward()
    for got, want in ((q.grad, qr.grad), (k.grad, kr.grad), (v.grad, vr.grad)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()


def test_gqa_gradients_sum_over_the_group():
    kern = attnc.load(VARIANTS / "gqa_decode.attn")
    op = attnc.torch.custom_op(kern)
    torch.manual_seed(1)
    q = torch.randn(1, 6, 9, 128, requires_grad=True)
    k = torch.randn(1, 2, 40, 128, requires_grad=True)
    v = torch.randn(1, 2, 40, 128, requires_grad=True)
    qr, kr, vr = (x.detach().clone().requires_grad_() for x in (q, k, v))
    w = torch.randn(1, 6, 9, 128)
    out, lse = op(q, k, v)
    (out * w).sum().backward()
    # PyTorch: each key head repeated for its 3 query heads (autograd sums
    # their gradients); query i sees the keys j <= i + Lk - Lq.
    mask = torch.arange(40)[None, :] <= torch.arange(9)[:, None] + 31
    ref = torch.nn.functional.scaled_dot_product_attention(
        qr, kr.repeat_interleave(3, dim=1), vr.repeat_interleave(3, dim=1), attn_mask=mask
    )
    (ref * w).sum().backward()
    for got, want in ((q.grad, qr.grad), (k.grad, kr.grad), (v.grad, vr.grad)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()


@pytest.mark.parametrize("variant", ["causal_f64.attn"])
def test_gradcheck_in_float64(variant):
    kern = attnc.load(VARIANTS / variant)
    op = attnc.torch.custom_op(kern)
    torch.manual_seed(2)
    dims = kern._impl.tensors()[0][3]
    D = dims[3] if isinstance(dims[3], int) else 8
    inputs = tuple(torch.randn(1, 2, 7, D, dtype=torch.float64, requires_grad=True) for _ in range(3))
    # out is float64: the default precision. lse is float32 whatever the
    # kernel's type, so its numerical Jacobian needs a larger step.
    assert torch.autograd.gradcheck(lambda q, k, v: op(q, k, v)[0], inputs, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda q, k, v: op(q, k, v)[1], inputs, eps=1e-3, atol=2e-3,
                                    rtol=1e-2)


def test_gradcheck_of_a_learned_bias_and_slopes():
    source = """
attention learned {
  q: f64[B, H, L, D]
  k: f64[B, H, L, D]
  v: f64[B, H, L, D]
  bias: f64[H, L, L]
  slope: f64[H]
  param cap: f64 = 3.0
  score = cap * tanh(dot(q, k) * rsqrt(D) / cap) + bias[h, i, j] - slope[h] * abs(i - j)
  mask = j <= i
}
"""
    kern = attnc.compile(source)
    op = attnc.torch.custom_op(kern)
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 6, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(2, 6, 6, dtype=torch.float64, requires_grad=True)
    slope = torch.rand(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v, bias, slope: op(q, k, v, bias, slope), (q, k, v, bias, slope),
        eps=1e-6, atol=1e-7,
    )


def test_fully_masked_rows_get_zero_gradients():
    kern = attnc.load(VARIANTS / "packed_documents.attn")
    op = attnc.torch.custom_op(kern)
    torch.manual_seed(4)
    q, k, v = (torch.randn(1, 2, 20, 32, requires_grad=True) for _ in range(3))
    doc = torch.tensor([[0] * 8 + [1] * 8 + [-1] * 4], dtype=torch.int32)  # 4 padding tokens
    out, lse = op(q, k, v, doc)
    out.sum().backward()
    for g in (q.grad, k.grad, v.grad):
        assert not torch.isnan(g).any()
        assert torch.equal(g[:, :, 16:], torch.zeros_like(g[:, :, 16:]))


def test_a_loss_on_lse_gets_its_gradient():
    kern = attnc.load(VARIANTS / "packed_documents.attn")
    op = attnc.torch.custom_op(kern)
    torch.manual_seed(6)
    q, k, v = (torch.randn(1, 2, 24, 32, requires_grad=True) for _ in range(3))
    qr, kr, vr = (x.detach().clone().requires_grad_() for x in (q, k, v))
    doc = torch.tensor([[0] * 10 + [1] * 14], dtype=torch.int32)
    out, lse = op(q, k, v, doc)
    (out.sum() + (lse * lse).sum()).backward()  # a z-loss on lse
    same = doc[0][:, None] == doc[0][None, :]
    mask = same & (torch.arange(24)[None, :] <= torch.arange(24)[:, None])
    s = qr @ kr.transpose(-1, -2) / math.sqrt(32)
    s = s.masked_fill(~mask, float("-inf"))
    ref_lse = torch.logsumexp(s, dim=-1)
    ref_out = torch.softmax(s, dim=-1) @ vr
    (ref_out.sum() + (ref_lse * ref_lse).sum()).backward()
    assert torch.allclose(lse, ref_lse, atol=1e-5)
    for got, want in ((q.grad, qr.grad), (k.grad, kr.grad), (v.grad, vr.grad)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()


def test_backward_under_torch_compile():
    kern = attnc.load(VARIANTS / "sliding_window.attn")
    op = attnc.torch.custom_op(kern)

    def f(q, k, v):
        return (op(q, k, v, 16) * 2).sum()

    torch.manual_seed(5)
    q, k, v = (torch.randn(1, 2, 50, 32, requires_grad=True) for _ in range(3))
    qe, ke, ve = (x.detach().clone().requires_grad_() for x in (q, k, v))
    torch.compile(f, fullgraph=True)(q, k, v).backward()
    f(qe, ke, ve).backward()
    for got, want in ((q.grad, qe.grad), (k.grad, ke.grad), (v.grad, ve.grad)):
        assert torch.equal(got, want)


def test_kernels_without_a_backward_say_why():
    kern = attnc.load(VARIANTS / "v2" / "rope_causal.attn")
    q = np.zeros((1, 1, 4, 64), dtype=np.float32)
    out = kern(q, q, q)
    with pytest.raises(attnc.CompileError, match="channel vectors"):
        kern.backward(q, q, q, out=out, dout=out)
