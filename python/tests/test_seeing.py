"""Seeing attention from Python: the mask's tile map and the normalized
weights, as arrays and as PNGs."""

import struct

import numpy as np
import pytest
import torch

import attnc
from conftest import ROOT, assert_close


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_tile_map_of_a_sliding_window(tmp_path):
    kern = attnc.load(ROOT / "examples" / "variants" / "sliding_window.attn")
    tiles, summary = kern.tile_map(L=1000, window=200, png=tmp_path / "t.png", return_summary=True)
    assert tiles.shape == (16, 8) and tiles.dtype == np.uint8
    # Recompute the classes from the mask: tile (r, c) covers i in
    # [64r, 64r+63] and j in [128c, 128c+127], clipped to L.
    i = np.arange(1000)[:, None]
    j = np.arange(1000)[None, :]
    mask = (j <= i) & (i - j < 200)
    for r in range(16):
        for c in range(8):
            m = mask[64 * r: 64 * r + 64, 128 * c: 128 * c + 128]
            want = attnc.TILE_FULL if m.all() else attnc.TILE_EMPTY if not m.any() else attnc.TILE_PARTIAL
            assert tiles[r, c] == want, (r, c)
    assert "pairs taking part" in summary
    w, h = png_size(tmp_path / "t.png")
    assert w > 0 and h > 0


def test_tile_map_with_aux_tensors_and_errors():
    kern = attnc.load(ROOT / "examples" / "variants" / "packed_documents.attn")
    doc = np.repeat(np.arange(4, dtype=np.int32), 128)[None, :]
    tiles = kern.tile_map(doc=doc)  # L comes from doc's shape
    assert tiles.shape == (8, 4)
    assert (tiles[:2, 1:] == attnc.TILE_EMPTY).all()
    with pytest.raises(ValueError, match="L"):
        attnc.load(ROOT / "examples" / "variants" / "causal.attn").tile_map()
    with pytest.raises(TypeError, match="size 'L' must be an int"):
        attnc.load(ROOT / "examples" / "variants" / "causal.attn").tile_map(L="big")


def test_weights_reproduce_the_output(tmp_path):
    kern = attnc.load(ROOT / "examples" / "variants" / "packed_documents.attn")
    q, k, v = (torch.randn(1, 2, 80, 16) for _ in range(3))
    doc = torch.repeat_interleave(torch.tensor([[0, 1, 1, 2, -1]], dtype=torch.int32), 16, dim=1)
    w = kern.weights(q, k, v, doc=doc)
    assert isinstance(w, torch.Tensor) and w.shape == (1, 2, 80, 80) and w.dtype == torch.float64
    out = kern(q, k, v, doc=doc)
    assert_close(out.numpy(), torch.einsum("bhij,bhjd->bhid", w, v.double()).numpy(), "f32")
    rows = w.sum(-1)
    padding = doc[0] < 0
    assert torch.allclose(rows[..., ~padding], torch.ones(1, dtype=torch.float64)), "softmax rows sum to 1"
    assert (rows[..., padding] == 0).all(), "fully masked rows are 0"
    plane = kern.weights(q, k, v, doc=doc, b=0, h=1, png=tmp_path / "w.png")
    assert torch.equal(plane, w[0, 1])
    width, height = png_size(tmp_path / "w.png")
    assert width >= 300 and height >= 300


def test_weights_refuse_large_problems_and_check_arguments():
    kern = attnc.load(ROOT / "examples" / "variants" / "dense.attn")
    big = np.zeros((1, 1, 9000, 64), np.float32)
    with pytest.raises(ValueError, match="weights are for small problems"):
        kern.weights(big, big, big)
    with pytest.raises(TypeError, match="give both b and h"):
        kern.weights(big, big, big, b=0)
    small = np.zeros((1, 1, 8, 64), np.float32)
    with pytest.raises(ValueError, match="out of range|b = 3"):
        kern.weights(small, small, small, b=3, h=0)
