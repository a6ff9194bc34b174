"""Linear attention in O(L) (issue 17, LANGUAGE.md §8.4): attn-select-strategy
chooses `linear` for a factorisable score under normalize = linear or none
with no mask or a causal one; the kernels (two passes, or a chunked causal
scan) equal the float64 reference and the quadratic kernel of the same
source (``analyse=False``)."""

import numpy as np
import pytest

import attnc
from conftest import ROOT, assert_close

V2 = ROOT / "examples" / "variants" / "v2"

ELU = """attention elu_{tag} {{
  q: {t}[B, H, Lq, {d}]; k: {t}[B, G, Lk, {d}]; v: {t}[B, G, Lk, 24]
  let fq[c] = select(q[c] > 0, q[c] + 1, exp(q[c]))
  let fk[c] = select(k[c] > 0, k[c] + 1, exp(k[c]))
  score = dot(fq, fk) * 0.5
  {mask}
  normalize = {norm}
}}"""


def numpy_linear(fq, fk, v, causal, normalized, scale=1.0):
    s = scale * np.einsum("bhin,bhjn->bhij", fq, fk)
    if causal:
        s = np.where(np.arange(fk.shape[2])[None, :] <= np.arange(fq.shape[2])[:, None], s, 0)
    num = s @ v
    if not normalized:
        return num
    den = s.sum(-1, keepdims=True)
    return np.where(den != 0, num / np.where(den != 0, den, 1), 0)


def linear_and_quadratic(src):
    """The kernel attn-select-strategy makes linear, and the quadratic one of
    the same source."""
    fast = attnc.compile(src)
    assert fast.strategy == "linear", fast.emit("mlir-opt")
    slow = attnc.compile(src, analyse=False)
    assert slow.strategy != "linear"
    return fast, slow


def numpy_dtype(dtype):
    if dtype == "bf16":
        return pytest.importorskip("ml_dtypes").bfloat16
    return {"f32": np.float32, "f64": np.float64}[dtype]


def elu1(x):
    return np.where(x > 0, x + 1, np.exp(x))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("norm", ["linear", "none"])
@pytest.mark.parametrize("dtype,d", [("f32", 16), ("f64", 8), ("bf16", 16)])
@pytest.mark.parametrize("Lq,Lk", [(1, 1), (63, 63), (65, 65), (200, 200), (70, 130)])
def test_linear_kernels_against_numpy_reference_and_quadratic(rng, causal, norm, dtype, d, Lq, Lk):
    if causal and Lq != Lk and Lq > Lk:
        pytest.skip("covered by the equal-length cases")
    src = ELU.format(tag="t", t=dtype, d=d, mask="mask = j <= i" if causal else "", norm=norm)
    fast, slow = linear_and_quadratic(src)
    np_dtype = numpy_dtype(dtype)
    B, H, G = 2, 4, 2
    q = (0.5 * rng.standard_normal((B, H, Lq, d))).astype(np_dtype)
    k = (0.5 * rng.standard_normal((B, G, Lk, d))).astype(np_dtype)
    v = rng.standard_normal((B, G, Lk, 24)).astype(np_dtype)
    out = fast(q, k, v)
    ref = fast.reference(q, k, v)
    quad = slow(q, k, v)
    tol = "bf16" if dtype == "bf16" else dtype
    assert_close(out, ref, tol)
    assert_close(out, quad, tol)
    if dtype != "bf16":  # bf16 rounds q, k and v first
        rep = lambda x: np.repeat(x.astype(np.float64), H // G, 1)
        want = numpy_linear(elu1(q.astype(np.float64)), rep(elu1(k.astype(np.float64))), rep(v),
                            causal, norm == "linear", 0.5)
        assert_close(ref, want, "f64")


def test_the_examples_are_linear(rng):
    elu = attnc.load(V2 / "linear_elu.attn")
    perf = attnc.load(V2 / "performer.attn")
    assert elu.strategy == "linear" and perf.strategy == "linear"
    q, k, v = (0.5 * rng.standard_normal((1, 2, 150, 64)).astype(np.float32) for _ in range(3))
    w = rng.standard_normal((32, 64)).astype(np.float32)
    assert_close(elu(q, k, v), elu.reference(q, k, v), "f32")
    assert_close(perf(q, k, v, w=w), perf.reference(q, k, v, w=w), "f32")
    slow = attnc.load(V2 / "performer.attn", analyse=False)
    assert_close(perf(q, k, v, w=w), slow(q, k, v, w=w), "f32")


def test_dot_of_q_and_k_without_feature_maps(rng):
    kern = attnc.compile(
        """attention plain {
          q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]
          score = dot(q, k) * 0.25
          mask = j <= i
          normalize = none
        }"""
    )
    assert kern.strategy == "linear"
    q, k, v = (rng.standard_normal((1, 3, 97, 16)).astype(np.float32) for _ in range(3))
    assert_close(kern(q, k, v), kern.reference(q, k, v), "f32")


def test_linear_rows_whose_normalizer_is_zero_are_zero():
    kern = attnc.compile(ELU.format(tag="z", t="f32", d=4, mask="", norm="linear").replace(
        "score = dot(fq, fk) * 0.5", "score = dot(q, k)"))
    assert kern.strategy == "linear"
    q = np.zeros((1, 1, 3, 4), np.float32)
    k = np.ones((1, 1, 5, 4), np.float32)
    v = np.ones((1, 1, 5, 24), np.float32)
    np.testing.assert_array_equal(kern(q, k, v), np.zeros((1, 1, 3, 24), np.float32))


@pytest.mark.parametrize(
    "change,why",
    [
        (("normalize = linear", "normalize = softmax"), None),
        (("mask = j <= i", "mask = j < i"), "the mask is neither absent nor causal"),
        (("score = dot(fq, fk) * 0.5", "score = dot(fq, fk) * -0.5"), "constant factor is not positive"),
        (("score = dot(fq, fk) * 0.5", "score = dot(fq, fk) + 1"), "not a constant times dot"),
        (("score = dot(fq, fk) * 0.5", "score = dot(fq, fk) * pow(0.9, j - i)"), "not a decay pow(g, i - j)"),
        (("score = dot(fq, fk) * 0.5", "score = dot(fq, fk) * pow(0.9 + 0.01 * (i % 2), i - j)"), "not per head"),
        (("score = dot(fq, fk) * 0.5", "score = dot(fq, fk) * pow(1.5, i - j)"), "not in (0, 1]"),
        (("score = dot(fq, fk) * 0.5", "score = dot(fq, fk) * pow(0.9, i - j) * pow(0.8, i - j)"),
         "not a constant times dot"),
        (("mask = j <= i", ""), None),  # with the decay below: needs the causal mask
    ],
)
def test_near_misses_say_why_not(change, why):
    src = ELU.format(tag="n", t="f32", d=8, mask="mask = j <= i", norm="linear").replace(*change)
    if why is None and change[0] == "mask = j <= i":
        src = src.replace("score = dot(fq, fk) * 0.5", "score = dot(fq, fk) * pow(0.9, i - j)")
        why = "needs the causal mask"
    kern = attnc.compile(src)
    assert kern.strategy != "linear"
    if why:
        assert why in kern.emit("mlir-opt")


RETENTION = """attention retention_{tag} {{
  q: {t}[B, H, Lq, {d}]; k: {t}[B, G, Lk, {d}]; v: {t}[B, G, Lk, 24]
  {decl}
  score = {score}
  mask = j <= i
  normalize = {norm}
}}"""

# Retention's decays: a constant, an aux tensor per head, RetNet's
# 1 - 2^(-5 - h) computed in the kernel.
DECAYS = {
    "const": ("", "dot(q, k) * rsqrt(16.0) * pow(0.9, i - j)", lambda h, gaux: np.full(h, 0.9)),
    "aux": ("gamma: f32[H]", "pow(gamma[h], i - j) * dot(q, k) / 4.0", lambda h, gaux: gaux),
    "retnet": ("", "dot(q, k) * pow(1 - pow(2.0, -5 - h), i - j) * 0.25",
               lambda h, gaux: 1 - 2.0 ** (-5 - np.arange(h))),
}


@pytest.mark.parametrize("decay", sorted(DECAYS))
@pytest.mark.parametrize("norm", ["none", "linear"])
@pytest.mark.parametrize("dtype", ["f32", "f64", "bf16"])
@pytest.mark.parametrize("Lq,Lk", [(1, 1), (64, 64), (200, 200), (70, 130), (150, 90)])
def test_retention_decay_against_numpy_reference_and_quadratic(rng, decay, norm, dtype, Lq, Lk):
    decl, score, gammas = DECAYS[decay]
    d = 16
    src = RETENTION.format(tag=decay, t=dtype, d=d, decl=decl, score=score, norm=norm)
    fast, slow = linear_and_quadratic(src)
    assert "linear_decay = true" in fast.emit("mlir-opt")
    np_dtype = numpy_dtype(dtype)
    B, H, G = 2, 4, 2
    # Positive features keep the linear normalizer away from 0.
    q = np.abs(rng.standard_normal((B, H, Lq, d))).astype(np_dtype)
    k = np.abs(rng.standard_normal((B, G, Lk, d))).astype(np_dtype)
    v = rng.standard_normal((B, G, Lk, 24)).astype(np_dtype)
    gaux = rng.uniform(0.8, 1.0, H).astype(np.float32)
    aux = {"gamma": gaux} if decay == "aux" else {}
    out = fast(q, k, v, **aux)
    ref = fast.reference(q, k, v, **aux)
    quad = slow(q, k, v, **aux)
    tol = "bf16" if dtype == "bf16" else dtype
    assert_close(out, ref, tol)
    assert_close(out, quad, tol)
    # The reference against NumPy: s_ij = c q.k g_h^(i - j) for j <= i.
    rep = lambda x: np.repeat(x.astype(np.float64), H // G, 1)
    q64, k64, v64 = q.astype(np.float64), rep(k), rep(v)
    g = gammas(H, gaux.astype(np.float64)).astype(np.float64)
    ii, jj = np.arange(Lq)[:, None], np.arange(Lk)[None, :]
    s = np.einsum("bhid,bhjd->bhij", q64, k64) * 0.25
    s = s * np.where(jj <= ii, g[None, :, None, None] ** np.maximum(ii - jj, 0), 0)
    want = s @ v64
    if norm == "linear":
        den = s.sum(-1, keepdims=True)
        want = np.where(den != 0, want / np.where(den != 0, den, 1), 0)
    assert_close(ref, want, "f64")


def test_retention_with_feature_maps_and_a_long_sequence(rng):
    """Many chunks (L = 1000, 16 chunks of 64) with elu+1 features: the
    decayed state carried across chunks stays exact."""
    src = """attention ret_elu {
      q: f32[B, H, L, 32]; k: f32[B, H, L, 32]; v: f32[B, H, L, 32]
      let fq[c] = select(q[c] > 0, q[c] + 1, exp(q[c]))
      let fk[c] = select(k[c] > 0, k[c] + 1, exp(k[c]))
      score = dot(fq, fk) * pow(0.995, i - j)
      mask = j <= i
      normalize = linear
    }"""
    fast = attnc.compile(src)
    assert fast.strategy == "linear"
    q, k, v = (rng.standard_normal((1, 2, 1000, 32)).astype(np.float32) for _ in range(3))
    assert_close(fast(q, k, v), fast.reference(q, k, v), "f32")
    assert_close(fast(q, k, v), attnc.compile(src, analyse=False)(q, k, v), "f32")


def test_the_retention_example(rng):
    kern = attnc.load(V2 / "retention.attn")
    assert kern.strategy == "linear", kern.emit("mlir-opt")
    q, k, v = (rng.standard_normal((1, 4, 300, 64)).astype(np.float32) for _ in range(3))
    assert_close(kern(q, k, v), kern.reference(q, k, v), "f32")
    slow = attnc.load(V2 / "retention.attn", analyse=False)
    assert_close(kern(q, k, v), slow(q, k, v), "f32")
