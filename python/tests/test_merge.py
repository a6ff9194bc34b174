"""attnc.merge_states: cascade attention (a prefix run and a suffix run
merged equal the run over all keys) on NumPy arrays and torch tensors, the
-inf rows, strided views, bf16, and the errors naming tensor and dimension."""

import numpy as np
import pytest
import torch

import attnc
from conftest import ROOT

CASCADE = ROOT / "tests" / "lit" / "cli" / "Inputs" / "cascade.attn"

# 40 queries at positions -2..37 over 60 keys split at 24: rows 0-1 see no
# key, rows 2-25 only the prefix, rows 26-39 both parts.
PREFIX, QUERY0 = 24, -2


@pytest.fixture(scope="module")
def cascade():
    return attnc.load(CASCADE)


@pytest.fixture(scope="module")
def qkv():
    r = np.random.default_rng(14)
    q = r.standard_normal((2, 4, 40, 32), dtype=np.float32)
    k = r.standard_normal((2, 2, 60, 32), dtype=np.float32)
    v = r.standard_normal((2, 2, 60, 16), dtype=np.float32)
    return q, k, v


def states(kern, q, k, v):
    full = kern(q, k, v, query0=QUERY0, return_lse=True)
    a = kern(q, k[:, :, :PREFIX], v[:, :, :PREFIX], query0=QUERY0, return_lse=True)
    b = kern(q, k[:, :, PREFIX:], v[:, :, PREFIX:], query0=QUERY0, key0=PREFIX,
             return_lse=True)
    return full, a, b


def test_prefix_and_suffix_merge_to_the_full_run(cascade, qkv):
    (full, full_lse), (a, a_lse), (b, b_lse) = states(cascade, *qkv)
    out, lse = attnc.merge_states(a, a_lse, b, b_lse)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == full.shape
    assert lse.dtype == np.float32 and lse.shape == full_lse.shape
    assert (b_lse[:, :, :26] == -np.inf).all() and np.isfinite(b_lse[:, :, 26:]).all()
    assert (out[:, :, :2] == 0).all() and (lse[:, :, :2] == -np.inf).all()
    # Rows without suffix keys are the prefix's state, bit for bit.
    assert np.array_equal(out[:, :, 2:26], a[:, :, 2:26])
    assert np.array_equal(lse[:, :, 2:26], a_lse[:, :, 2:26])
    np.testing.assert_allclose(out, full, atol=1e-5)
    np.testing.assert_allclose(lse[:, :, 2:], full_lse[:, :, 2:], atol=1e-5)

    # The merge is in float64: merging the f64 copies agrees to f32 rounding.
    out64, lse64 = attnc.merge_states(a.astype(np.float64), a_lse.astype(np.float64),
                                      b.astype(np.float64), b_lse.astype(np.float64))
    assert out64.dtype == np.float64 and lse64.dtype == np.float64
    assert np.array_equal(out64.astype(np.float32), out)


def test_torch_in_torch_out(cascade, qkv):
    q, k, v = (torch.from_numpy(x) for x in qkv)
    (full, full_lse), (a, a_lse), (b, b_lse) = states(cascade, q, k, v)
    out, lse = attnc.merge_states(a, a_lse, b, b_lse)
    assert isinstance(out, torch.Tensor) and isinstance(lse, torch.Tensor)
    assert out.dtype == torch.float32 and lse.dtype == torch.float32
    torch.testing.assert_close(out, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse[:, :, 2:], full_lse[:, :, 2:], atol=1e-5, rtol=0)
    assert bool((lse[:, :, :2] == -torch.inf).all())


def test_strided_views_are_read_in_place():
    r = np.random.default_rng(3)
    a, b = (r.standard_normal((2, 5, 3, 4), dtype=np.float32) for _ in range(2))  # [B, L, H, Dv]
    la, lb = (r.standard_normal((2, 3, 5), dtype=np.float32) for _ in range(2))
    view = attnc.merge_states(a.transpose(0, 2, 1, 3), la, b.transpose(0, 2, 1, 3), lb[:, :, ::-1])
    dense = attnc.merge_states(np.ascontiguousarray(a.transpose(0, 2, 1, 3)), la,
                               np.ascontiguousarray(b.transpose(0, 2, 1, 3)),
                               np.ascontiguousarray(lb[:, :, ::-1]))
    assert np.array_equal(view[0], dense[0]) and np.array_equal(view[1], dense[1])
    la64, lb64 = la.astype(np.float64), lb[:, :, ::-1].astype(np.float64)
    m = np.maximum(la64, lb64)
    wa, wb = np.exp(la64 - m), np.exp(lb64 - m)
    ref = (wa[..., None] * a.transpose(0, 2, 1, 3) + wb[..., None] * b.transpose(0, 2, 1, 3)) / (wa + wb)[..., None]
    assert np.array_equal(view[0], ref.astype(np.float32)), "the float64 merge, rounded once"
    assert np.array_equal(view[1], (m + np.log(wa + wb)).astype(np.float32))


def test_bf16_and_f16_keep_their_dtype():
    t = torch.randn(1, 2, 3, 8).to(torch.bfloat16)
    l = torch.zeros(1, 2, 3)
    out, lse = attnc.merge_states(t, l, t, l)
    assert out.dtype == torch.bfloat16 and torch.equal(out, t)
    assert lse.dtype == torch.float32
    h = np.random.default_rng(0).standard_normal((1, 1, 2, 4)).astype(np.float16)
    out, _ = attnc.merge_states(h, np.zeros((1, 1, 2), np.float32), h, np.full((1, 1, 2), -np.inf, np.float32))
    assert out.dtype == np.float16 and np.array_equal(out, h)


def test_errors_name_the_tensor_and_the_dimension():
    o = np.zeros((1, 2, 8, 4), np.float32)
    l = np.zeros((1, 2, 8), np.float32)
    with pytest.raises(ValueError, match=r"tensor 'out_b' \(f32\[1, 2, 6, 4\]\): dimension 2 \(L\) is 6 but out_a's \(f32\[1, 2, 8, 4\]\) is 8"):
        attnc.merge_states(o, l, o[:, :, :6], l)
    with pytest.raises(ValueError, match=r"tensor 'lse_b' \(f32\[1, 2, 7\]\): dimension 2 \(L\) is 7"):
        attnc.merge_states(o, l, o, l[:, :, 1:])
    with pytest.raises(ValueError, match=r"tensor 'lse_a' has rank 4"):
        attnc.merge_states(o, o, o, l)
    with pytest.raises(TypeError, match=r"tensor 'out_b' has dtype f64 but out_a has f32"):
        attnc.merge_states(o, l, o.astype(np.float64), l)
    with pytest.raises(TypeError, match=r"tensor 'lse_a' has dtype f16; a state's lse is f32 or f64"):
        attnc.merge_states(o, l.astype(np.float16), o, l)
    with pytest.raises(TypeError, match=r"tensor 'out_a' has dtype uint8, which attnc does not take"):
        attnc.merge_states(o.astype(np.uint8), l, o, l)
    with pytest.raises(TypeError, match=r"tensor 'lse_b' must be an array"):
        attnc.merge_states(o, l, o, [0.0])
    with pytest.raises(TypeError, match=r"tensor 'out_b' has dtype torch.complex64, which attnc does not take"):
        attnc.merge_states(o, l, torch.zeros(1, 2, 8, 4, dtype=torch.complex64), l)
