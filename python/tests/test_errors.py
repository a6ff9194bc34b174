"""Bad sources, tensors and params are Python exceptions with the compiler's
and the runtime's messages, never a crash of the interpreter."""

import numpy as np
import pytest
import torch

import attnc
from conftest import ROOT


def test_compile_error_carries_the_diagnostic():
    src = "attention bad {\n  q: f32[B, H, L, 64]; k: f32[B, H, L, 64]; v: f32[B, H, L, 64]\n  mask = j <= undefined_name\n}\n"
    with pytest.raises(attnc.CompileError) as e:
        attnc.compile(src, filename="bad.attn")
    text = str(e.value)
    assert "bad.attn:3:" in text and "error:" in text
    assert "^" in text, "a caret under the offending text"
    assert "undefined_name" in e.value.diagnostics


def test_syntax_error_and_check():
    with pytest.raises(attnc.CompileError, match=r"<string>:1:\d+: error"):
        attnc.check("attention { q: }")
    attnc.check((ROOT / "examples" / "variants" / "causal.attn").read_text())


def test_unknown_kernel_name():
    src = (ROOT / "examples" / "variants" / "causal.attn").read_text()
    with pytest.raises(attnc.CompileError, match="no kernel named 'nope'"):
        attnc.compile(src, kernel="nope")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        attnc.load(tmp_path / "missing.attn")
    with pytest.raises(IsADirectoryError):
        attnc.load(tmp_path)
    with pytest.raises(TypeError, match="source must be the .attn text"):
        attnc.compile(b"attention x {}")


def test_dtype_mismatch_names_the_tensor(causal):
    q = np.zeros((1, 1, 4, 8))  # float64
    with pytest.raises(TypeError, match=r"tensor 'q' has dtype float64 but kernel 'causal' declares q: f32\[B, H, L, D\].*astype\(np.float32\)"):
        causal(q, q.astype(np.float32), q.astype(np.float32))
    t = torch.zeros(1, 1, 4, 8, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"tensor 'k' has dtype torch.float16.*k.to\(torch.float32\)"):
        causal(t.float(), t, t.float())
    with pytest.raises(TypeError, match="tensor 'v' must be an array"):
        causal(t.float(), t.float(), [[1.0]])
    with pytest.raises(TypeError, match="dtype uint8, which attnc kernels do not take|has dtype uint8"):
        causal(np.zeros((1, 1, 4, 8), np.uint8), t.float(), t.float())


def test_shape_errors_name_tensor_and_dimension(causal):
    q = np.zeros((1, 2, 4, 8), np.float32)
    k = np.zeros((1, 2, 5, 8), np.float32)
    with pytest.raises(ValueError, match=r"dimension 'L' of tensor 'k' \(dim 2\) is 5 but 'L' was bound to 4 by tensor 'q' \(dim 2\)"):
        causal(q, k, q)
    with pytest.raises(ValueError, match="tensor 'q' has rank 3"):
        causal(q[0], q, q)


def test_aux_and_param_errors():
    kern = attnc.load(ROOT / "examples" / "variants" / "packed_documents.attn")
    q = np.zeros((1, 1, 8, 16), np.float32)
    with pytest.raises(TypeError, match=r"missing aux tensor 'doc: i32\[B, L\]': pass doc=\.\.\."):
        kern(q, q, q)
    with pytest.raises(TypeError, match="has no aux tensor or param named 'window'; it takes doc"):
        kern(q, q, q, doc=np.zeros((1, 8), np.int32), window=3)
    with pytest.raises(ValueError, match=r"dimension 'L' of tensor 'doc' \(dim 1\) is 9"):
        kern(q, q, q, doc=np.zeros((1, 9), np.int32))
    sw = attnc.load(ROOT / "examples" / "variants" / "sliding_window.attn")
    with pytest.raises(TypeError, match="param 'window' must be an int, a float or a bool, not str"):
        sw(q, q, q, window="3")
    with pytest.raises(ValueError, match="param 'window': 4294967296 is out of range for i32"):
        sw(q, q, q, window=2**32)
    with pytest.raises(ValueError, match="param 'window' is declared i32 but was given a float value"):
        sw(q, q, q, window=2.5)
    with pytest.raises(TypeError, match="takes q positionally"):
        sw(q, q, q, q=q)


def test_return_lse_without_output_lse(causal):
    q = np.zeros((1, 1, 4, 8), np.float32)
    with pytest.raises(ValueError, match="does not declare `output lse`"):
        causal(q, q, q, return_lse=True)


def test_out_of_range_aux_index():
    kern = attnc.compile(
        """attention gather {
          q: f32[B, H, L, 8]; k: f32[B, H, L, 8]; v: f32[B, H, L, 8]
          slopes: f32[S]
          score = dot(q, k) + slopes[h]
        }"""
    )
    q = np.zeros((1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match="aux tensor 'slopes'"):
        kern(q, q, q, slopes=np.zeros(2, np.float32))


def test_gpu_tensor_is_refused_with_a_reason(causal):
    meta = torch.zeros(1, 1, 4, 8, device="meta")
    with pytest.raises(ValueError, match="tensor 'q' is on device meta; this attnc kernel runs on the CPU"):
        causal(meta, meta, meta)
