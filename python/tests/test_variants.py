"""Every examples/variants/*.attn through Python against attnc's float64
reference, and a few against NumPy references written here."""

import math

import numpy as np
import pytest

import attnc
from conftest import VARIANTS, assert_close, call, call_reference, random_inputs


@pytest.mark.parametrize("path", VARIANTS, ids=[p.stem for p in VARIANTS])
def test_variant_matches_reference(path, rng):
    kern = attnc.load(path)
    arrays = random_inputs(kern, rng)
    dtype = kern._declared[kern.inputs[0]]
    if kern.output_lse:
        out, lse = call(kern, arrays, return_lse=True)
        ref, ref_lse = call_reference(kern, arrays, return_lse=True)
        assert_close(lse[np.isfinite(ref_lse)], ref_lse[np.isfinite(ref_lse)], "f32")  # lse is f32
        assert np.array_equal(np.isneginf(lse), np.isneginf(ref_lse))
    else:
        out = call(kern, arrays)
        ref = call_reference(kern, arrays)
    assert out.dtype == arrays[kern.inputs[0]].dtype
    assert_close(out, ref, dtype)


def softmax_attention(q, k, v, mask, scale):
    """float64 NumPy: softmax(q k^T * scale) v over the mask; GQA by
    repeating k and v; fully masked rows 0."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    s = np.where(mask, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    w = np.exp(s - m)
    denom = w.sum(-1, keepdims=True)
    return np.einsum("bhij,bhjd->bhid", w / np.where(denom > 0, denom, 1), v)


def test_causal_against_numpy(causal, rng):
    q, k, v = (rng.standard_normal((2, 3, 77, 32)).astype(np.float32) for _ in range(3))
    i, j = np.arange(77)[:, None], np.arange(77)[None, :]
    assert_close(causal(q, k, v), softmax_attention(q, k, v, j <= i, 1 / math.sqrt(32)), "f32")


def test_sliding_window_gqa_against_numpy(rng):
    kern = attnc.compile(
        """
        attention swa {
          q: f32[B, H, L, 64]; k: f32[B, G, L, 64]; v: f32[B, G, L, 64]
          param window: i32 = 16
          mask = j <= i && i - j < window
        }"""
    )
    q = rng.standard_normal((1, 8, 300, 64)).astype(np.float32)
    k, v = (rng.standard_normal((1, 2, 300, 64)).astype(np.float32) for _ in range(2))
    i, j = np.arange(300)[:, None], np.arange(300)[None, :]
    for window in (1, 16, 1000):
        ref = softmax_attention(q, k, v, (j <= i) & (i - j < window), 1 / 8)
        assert_close(kern(q, k, v, window=window), ref, "f32")


def test_packed_documents_lse_against_numpy(rng):
    kern = attnc.load(VARIANTS[0].parent / "packed_documents.attn")
    q, k, v = (rng.standard_normal((1, 2, 100, 16)).astype(np.float32) for _ in range(3))
    doc = np.repeat(np.array([0, 1, 1, 2, -1], np.int32), 20)[None, :]
    out, lse = kern(q, k, v, doc=doc, return_lse=True)
    i, j = np.arange(100)[:, None], np.arange(100)[None, :]
    mask = (doc[0][:, None] == doc[0][None, :]) & (j <= i) & (doc[0][:, None] >= 0)
    assert_close(out, softmax_attention(q, k, v, mask, 0.25), "f32")
    s = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k) * 0.25
    s = np.where(mask, s, -np.inf)
    with np.errstate(divide="ignore"):
        ref_lse = np.log(np.exp(s).sum(-1))
    padding = doc[0] < 0
    assert np.all(np.isneginf(lse[..., padding])), "fully masked rows give lse -inf"
    assert np.all(out[..., padding, :] == 0), "fully masked rows give 0"
    assert_close(lse[..., ~padding], ref_lse[..., ~padding], "f32")
