"""Inputs without copies (NumPy, PyTorch, DLPack, strided views), outputs of
the input's kind, bf16, the compile cache shared with the CLI, emit."""

import os
import subprocess

import ml_dtypes
import numpy as np
import pytest
import torch

import attnc
from conftest import ROOT, assert_close


class Spy:
    """Stands in for a kernel's extension object and records what the
    Python layer hands to it."""

    def __init__(self, impl):
        self.impl = impl
        self.inputs = None

    def call(self, q, k, v, aux, params, want_lse):
        self.inputs = (q, k, v) + tuple(aux)
        return self.impl.call(q, k, v, aux, params, want_lse)

    def __getattr__(self, name):
        return getattr(self.impl, name)


def test_strided_torch_view_is_read_in_place(causal):
    # [B, L, H, D] as PyTorch and FlashAttention keep it, viewed as [B, H, L, D].
    q, k, v = (torch.randn(2, 70, 3, 32) for _ in range(3))
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    assert not qt.is_contiguous()
    spy = Spy(causal._impl)
    causal._impl = spy
    try:
        out = causal(qt, kt, vt)
    finally:
        causal._impl = spy.impl
    # The Python layer passed the views themselves...
    assert spy.inputs[0] is qt and spy.inputs[1] is kt and spy.inputs[2] is vt
    # ...and the extension reads them where they are, with their strides.
    ptr, strides = attnc._attnc.view_info(qt)
    assert ptr == qt.data_ptr() and tuple(strides) == qt.stride()
    ref = causal.reference(qt.contiguous(), kt.contiguous(), vt.contiguous())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert_close(out.numpy(), ref.numpy(), "f32")


def test_numpy_views_and_read_only_arrays(causal, rng):
    base = rng.standard_normal((1, 40, 2, 16)).astype(np.float32)
    q = base.transpose(0, 2, 1, 3)  # strided, last axis contiguous
    ro = np.ascontiguousarray(q)
    ro.setflags(write=False)
    out = causal(q, ro, q)
    ptr, _ = attnc._attnc.view_info(q)
    assert ptr == q.__array_interface__["data"][0]
    assert isinstance(out, np.ndarray)
    assert_close(out, causal.reference(ro, ro, ro), "f32")


def test_non_contiguous_last_axis_is_copied_and_right(causal, rng):
    q = rng.standard_normal((1, 2, 30, 32)).astype(np.float32)
    strided = np.asfortranarray(q)
    assert strided.strides[-1] != 4
    assert_close(causal(strided, strided, strided), causal.reference(q, q, q), "f32")


def test_anything_with_dlpack(causal, rng):
    class OnlyDLPack:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    q = rng.standard_normal((1, 1, 20, 8)).astype(np.float32)
    out = causal(OnlyDLPack(q), OnlyDLPack(q), OnlyDLPack(q))
    assert isinstance(out, np.ndarray)
    assert_close(out, causal.reference(q, q, q), "f32")


def test_output_owns_its_memory(causal, rng):
    q = rng.standard_normal((1, 1, 16, 8)).astype(np.float32)
    out = causal(q, q, q)
    assert out.flags.owndata is False and out.base is not None  # the capsule keeps it alive
    expected = out.copy()
    del q
    for _ in range(3):
        causal(*(rng.standard_normal((1, 1, 16, 8)).astype(np.float32) for _ in range(3)))
    assert np.array_equal(out, expected)


BF16 = """
attention bf16_causal {
  q: bf16[B, H, L, 64]; k: bf16[B, H, L, 64]; v: bf16[B, H, L, 64]
  mask = j <= i
  output lse
}
"""


def test_bf16_torch_and_ml_dtypes(rng):
    kern = attnc.compile(BF16)
    q, k, v = (torch.randn(1, 2, 90, 64).to(torch.bfloat16) for _ in range(3))
    out, lse = kern(q, k, v, return_lse=True)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    ref = kern.reference(q, k, v)
    assert_close(out.float().numpy(), ref.numpy(), "bf16")
    qn, kn, vn = (x.float().numpy().astype(ml_dtypes.bfloat16) for x in (q, k, v))
    outn = kern(qn, kn, vn)
    assert outn.dtype == ml_dtypes.bfloat16
    assert np.array_equal(outn.view(np.uint16), out.view(torch.int16).numpy().view(np.uint16))


def test_f16_and_f64_numpy(rng):
    for dtype, npt in (("f16", np.float16), ("f64", np.float64)):
        kern = attnc.compile(
            f"attention t {{ q: {dtype}[B, H, L, 16]; k: {dtype}[B, H, L, 16]; v: {dtype}[B, H, L, 16] }}"
        )
        q = rng.standard_normal((1, 2, 33, 16)).astype(npt)
        out = kern(q, q, q)
        assert out.dtype == npt
        assert_close(out, kern.reference(q, q, q), dtype)


def test_cache_is_shared_with_the_cli(tmp_path, rng):
    source = ROOT / "examples" / "variants" / "dense.attn"
    kern = attnc.load(source, cache_dir=tmp_path)
    assert not kern.cache_hit
    assert attnc.load(source, cache_dir=tmp_path).cache_hit
    q = rng.standard_normal((1, 1, 8, 64)).astype(np.float32)
    for name in "qkv":
        np.save(tmp_path / f"{name}.npy", q)
    attnc_bin = os.environ.get("ATTNC_BIN", str(ROOT / "build" / "tools" / "attnc"))
    run = subprocess.run(
        [attnc_bin, "run", str(source), "--out", str(tmp_path / "out.npy"), "--bench", "1"]
        + [f"--in={n}={tmp_path / (n + '.npy')}" for n in "qkv"],
        env={**os.environ, "ATTNC_CACHE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "(cached)" in run.stdout
    assert_close(np.load(tmp_path / "out.npy"), kern(q, q, q), "f32")


def test_describe_and_emit(causal):
    assert causal.name == "causal"
    assert causal.signature.startswith("causal(q: f32[B, H, L, D], k: f32[B, H, L, D]")
    assert causal.strategy
    assert "attn.kernel" in causal.emit("mlir")
    assert "for" in causal.emit("stmt")
    sw = attnc.load(ROOT / "examples" / "variants" / "sliding_window.attn")
    assert sw.params == {"window": ("i32", 256)}
    assert "*, window: i32 = 256" in sw.signature
    with pytest.raises(ValueError, match="unknown stage 'llvm'"):
        causal.emit("llvm")
