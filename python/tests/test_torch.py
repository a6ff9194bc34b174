"""attnc.torch: kernels as torch custom operators, eager and under
torch.compile without graph breaks."""

import math
import re
import runpy
import sys

import numpy as np
import pytest
import torch

import attnc
import attnc.torch
from conftest import ROOT, assert_close

sys.path.insert(0, str(ROOT / "examples" / "python"))
import transformer_block  # noqa: E402


def test_custom_op_eager_matches_the_kernel():
    kern = attnc.load(ROOT / "examples" / "variants" / "packed_documents.attn")
    op = attnc.torch.custom_op(kern)
    assert attnc.torch.custom_op(kern) is op, "one operator per kernel"
    q, k, v = (torch.randn(1, 2, 64, 32) for _ in range(3))
    doc = torch.repeat_interleave(torch.tensor([[0, 1, 2, 3]], dtype=torch.int32), 16, dim=1)
    out, lse = op(q, k, v, doc)
    ref_out, ref_lse = kern(q, k, v, doc=doc, return_lse=True)
    assert torch.equal(out, ref_out) and torch.equal(lse, ref_lse)
    torch.library.opcheck(op, (q, k, v, doc))


def test_custom_op_params_and_defaults():
    kern = attnc.load(ROOT / "examples" / "variants" / "sliding_window.attn")
    op = attnc.torch.custom_op(kern)
    q = torch.randn(1, 2, 80, 32)
    assert torch.equal(op(q, q, q), kern(q, q, q))
    assert torch.equal(op(q, q, q, 7), kern(q, q, q, window=7))
    assert torch.equal(op(q, q, q, window=7), kern(q, q, q, window=7))


def test_fake_tensor_shapes():
    kern = attnc.load(ROOT / "examples" / "variants" / "cross_modal.attn")
    op = attnc.torch.custom_op(kern)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(2, 3, 10, 64)
        k = torch.empty(2, 3, 20, 64)
        v = torch.empty(2, 3, 20, 96)
        ids = torch.empty(2, 10, dtype=torch.int32), torch.empty(2, 20, dtype=torch.int32)
        out = op(q, k, v, *ids)
        assert out.shape == (2, 3, 10, 96) and out.dtype == torch.float32


def test_torch_compile_without_graph_breaks():
    kern = attnc.load(ROOT / "examples" / "variants" / "softcap.attn")
    op = attnc.torch.custom_op(kern)

    def f(q, k, v):
        return torch.relu(op(q, k, v) * 2.0) + 1.0

    q, k, v = (torch.randn(1, 2, 70, 64) for _ in range(3))
    explanation = torch._dynamo.explain(f)(q, k, v)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(f, fullgraph=True)
    assert torch.allclose(compiled(q, k, v), f(q, k, v), atol=1e-6)


def test_transformer_block_eager_and_compiled():
    torch.manual_seed(0)
    block = transformer_block.Block(dim=64, heads=4).eval()
    x = torch.randn(2, 40, 64)
    with torch.no_grad():
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True)(x)
    assert torch.allclose(eager, compiled, atol=1e-5)
    # The attention inside is the variant: check it against NumPy.
    with torch.no_grad():
        qkv = block.qkv(block.norm1(x)).view(2, 40, 3, 4, 16)
        q, k, v = (qkv[:, :, n].transpose(1, 2).double().numpy() for n in range(3))
    s = np.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(16)
    slope = 2.0 ** (-8.0 * (np.arange(4) + 1) / 4)
    i, j = np.arange(40)[:, None], np.arange(40)[None, :]
    s = s + slope[None, :, None, None] * (j - i)
    s = np.where(j <= i, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    ref = np.einsum("bhij,bhjd->bhid", w / w.sum(-1, keepdims=True), v)
    got = block.attention(*(torch.from_numpy(a).float() for a in (q, k, v)))
    assert_close(got.numpy(), ref, "f32")


def test_backward_of_a_kernel_attnc_cannot_differentiate_says_why():
    # The gradients themselves: test_backward.py. RoPE in channel vectors
    # has none yet.
    op = attnc.torch.custom_op(attnc.load(ROOT / "examples" / "variants" / "v2" / "rope_causal.attn"))
    q = torch.randn(1, 1, 8, 64, requires_grad=True)
    out = op(q, q, q)
    with pytest.raises(attnc.CompileError, match="the score reads channel vectors"):
        out.sum().backward()


@pytest.mark.parametrize(
    "example, pattern, limit",
    [
        ("quickstart.py", r"max \|attnc - torch SDPA\| = (\S+)", 1e-4),
        ("transformer_block.py", r"agrees to (\S+)", 1e-5),
        ("transformer_block.py", r"autograd to (\S+) \(relative\)", 1e-4),
    ],
)
def test_examples_run(example, pattern, limit, capsys):
    runpy.run_path(str(ROOT / "examples" / "python" / example), run_name="__main__")
    printed = capsys.readouterr().out
    m = re.search(pattern, printed)
    assert m, printed
    assert float(m.group(1)) <= limit, printed
