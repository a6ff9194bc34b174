"""Language v2 (LANGUAGE.md §8) through Python: index maps (layouts, paged
KV caches, packed batches), `range`, lazy index checks, int/sin/cos; each
against attnc's float64 reference and a NumPy reference written here."""

import math

import numpy as np
import pytest

import attnc
from conftest import ROOT, TEST_TARGET, assert_close, cpu_only

V2 = ROOT / "examples" / "variants" / "v2"


def softmax_rows(s, v):
    """float64: softmax over the last axis of scores s (-inf masked), times v;
    0 for rows without a finite score; also the lse."""
    m = np.max(s, axis=-1, keepdims=True)
    ok = np.isfinite(m)
    w = np.exp(s - np.where(ok, m, 0))
    l = w.sum(-1, keepdims=True)
    out = (w / np.where(l > 0, l, 1)) @ v
    lse = np.where(ok[..., 0], (np.where(ok, m, 0) + np.log(np.where(l > 0, l, 1)))[..., 0], -np.inf)
    return out, lse


def test_bshd_layout_matches_the_bhld_kernel(rng):
    kern = attnc.load(V2 / "bshd_causal.attn")
    B, L, H, G = 2, 150, 4, 2
    q, k, v = (rng.standard_normal((B, L, n, 64)).astype(np.float32) for n in (H, G, G))
    out = kern(q, k, v)
    assert out.shape == (B, H, L, 64)
    assert_close(out, kern.reference(q, k, v), "f32")
    bhld = attnc.compile(
        """attention c {
          q: f32[B, H, L, 64]; k: f32[B, G, L, 64]; v: f32[B, G, L, 64]
          mask = j <= i
        }"""
    )
    t = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1, 3))
    if TEST_TARGET == "host":
        np.testing.assert_array_equal(out, bhld(t(q), t(k), t(v)))
    else:  # GPU compilers contract the two kernels' multiply-adds differently
        np.testing.assert_allclose(out, bhld(t(q), t(k), t(v)), atol=1e-6)


def test_bshd_layout_bf16_and_torch_views(rng):
    torch = pytest.importorskip("torch")
    src = (V2 / "bshd_causal.attn").read_text().replace("f32[", "bf16[")
    kern = attnc.compile(src)
    q, k, v = (torch.randn(1, 70, n, 64, dtype=torch.bfloat16) for n in (4, 2, 2))
    out = kern(q, k, v)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 4, 70, 64)
    ref = kern.reference(q, k, v)
    assert_close(out.float().numpy(), ref, "bf16")


def paged_inputs(rng, seqlen, S=16, P=24, G=2, H=4, D=64, fill=-1):
    B = len(seqlen)
    NP = max(1, max((n + S - 1) // S for n in seqlen) + 1)  # one spare page per row
    k, v = (rng.standard_normal((P, G, S, D)).astype(np.float32) for _ in range(2))
    q = rng.standard_normal((B, H, 1, D)).astype(np.float32)
    pages = np.full((B, NP), fill, np.int32)
    free = list(rng.permutation(P))
    for b, n in enumerate(seqlen):
        for p in range((n + S - 1) // S):
            pages[b, p] = free.pop()
    return q, k, v, pages, np.array(seqlen, np.int32)


def paged_numpy(q, k, v, pages, seqlen):
    B, H, _, D = q.shape
    P, G, S, _ = k.shape
    out = np.zeros((B, H, 1, v.shape[-1]))
    lse = np.full((B, H, 1), -np.inf)
    for b in range(B):
        n = int(seqlen[b])
        if n == 0:
            continue
        rows = [pages[b, j // S] for j in range(n)]
        for h in range(H):
            hk = h // (H // G)
            kk = np.stack([k[rows[j], hk, j % S] for j in range(n)]).astype(np.float64)
            vv = np.stack([v[rows[j], hk, j % S] for j in range(n)]).astype(np.float64)
            s = (kk @ q[b, h, 0].astype(np.float64) / 8.0)[None, :]
            o, l = softmax_rows(s, vv)
            out[b, h, 0], lse[b, h, 0] = o[0], l[0]
    return out, lse


@pytest.mark.parametrize("seed", range(4))
def test_paged_decode_random_page_tables(seed):
    rng = np.random.default_rng(seed)
    kern = attnc.load(V2 / "paged_decode.attn")
    seqlen = rng.integers(0, 80, 3).tolist() + [1, 16]
    q, k, v, pages, sl = paged_inputs(rng, seqlen)
    out, lse = kern(q, k, v, pages=pages, seqlen=sl, return_lse=True)
    ref, ref_lse = paged_numpy(q, k, v, pages, sl)
    assert_close(out, ref, "f32")
    assert np.array_equal(np.isneginf(lse), np.isneginf(ref_lse))
    fin = np.isfinite(ref_lse)
    assert_close(lse[fin], ref_lse[fin], "f32")
    kref, kref_lse = kern.reference(q, k, v, pages=pages, seqlen=sl, return_lse=True)
    assert_close(out, kref, "f32")


def test_paged_entries_past_the_end_are_never_read(rng):
    kern = attnc.load(V2 / "paged_decode.attn")
    q, k, v, pages, sl = paged_inputs(rng, [20, 33])
    base = kern(q, k, v, pages=pages, seqlen=sl)
    garbage = pages.copy()
    for b, n in enumerate(sl):
        garbage[b, (n + 15) // 16:] = [10**6, -7][b]
    np.testing.assert_array_equal(kern(q, k, v, pages=garbage, seqlen=sl), base)
    kern.reference(q, k, v, pages=garbage, seqlen=sl)  # no error either


def test_paged_entry_in_use_out_of_range_is_an_error(rng):
    kern = attnc.load(V2 / "paged_decode.attn")
    q, k, v, pages, sl = paged_inputs(rng, [20, 33])
    pages[1, 2] = 24  # sequence 1's third page (keys 32..33) is past the cache
    msg = r"the `at` of 'k': index 0 \(dimension 0 of k: f32\[P, G, S, 64\], extent 24\) is 24 at \(b=1, h=\d+, i=0, j=3[23]\)"
    with pytest.raises(ValueError, match=msg):
        kern(q, k, v, pages=pages, seqlen=sl)
    with pytest.raises(ValueError, match=r"the `at` of 'k': index 0 is 24, out of range"):
        kern.reference(q, k, v, pages=pages, seqlen=sl)


def test_paged_decode_visits_only_keys_below_seqlen(rng):
    kern = attnc.load(V2 / "paged_decode.attn")
    q, k, v, pages, sl = paged_inputs(rng, [5, 300], S=16, P=40)
    tiles = kern.tile_map(pages=pages, seqlen=sl, S=16, H=4, b=0)
    # One key block (128 keys) of sequence 0 may take part, none past it.
    assert tiles[0, 0] != 0 and not tiles[0, 1:].any()


def varlen_numpy(q, k, v, start, max_len):
    N = len(start) - 1
    T, H, D = q.shape
    out = np.zeros((N, H, max_len, v.shape[-1]))
    for b in range(N):
        s0, n = start[b], start[b + 1] - start[b]
        if n == 0:
            continue
        for h in range(H):
            qq, kk, vv = (x[s0:s0 + n, h].astype(np.float64) for x in (q, k, v))
            s = qq @ kk.T / 8.0
            s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
            out[b, h, :n] = softmax_rows(s, vv)[0]
    return out


def test_varlen_with_empty_and_one_token_sequences(rng):
    kern = attnc.load(V2 / "varlen_causal.attn")
    lens = [5, 0, 1, 130, 0, 64, 1]
    start = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    T, H = int(start[-1]), 4
    q, k, v = (rng.standard_normal((T, H, 64)).astype(np.float32) for _ in range(3))
    out = kern(q, k, v, start=start, max_len=max(lens))
    assert out.shape == (len(lens), H, max(lens), 64)
    assert_close(out, varlen_numpy(q, k, v, start, max(lens)), "f32")
    assert_close(out, kern.reference(q, k, v, start=start, max_len=max(lens)), "f32")
    for b, n in enumerate(lens):
        assert not out[b, :, n:].any()  # padding rows are 0


def test_varlen_row_past_the_tokens_is_an_error(rng):
    kern = attnc.load(V2 / "varlen_causal.attn")
    start = np.array([0, 4, 9], np.int32)
    q = k = v = rng.standard_normal((8, 2, 64)).astype(np.float32)  # 9 tokens claimed, 8 given
    with pytest.raises(ValueError, match=r"the `at` of 'q': index 0 \(dimension 0 of q: f32\[T, H, 64\], extent 8\) is 8 at \(b=1, h=\d+, i=4, j=\d+\)"):
        kern(q, k, v, start=start, max_len=5)
    with pytest.raises(ValueError, match=r"the `at` of '[qk]': index 0 is 8, out of range"):
        kern.reference(q, k, v, start=start, max_len=5)


def test_varlen_only_its_sequences_tiles(rng):
    kern = attnc.load(V2 / "varlen_causal.attn")
    lens = [64, 300]
    start = np.array([0, 64, 364], np.int32)
    tiles = kern.tile_map(start=start, max_len=300, H=2, b=0)
    # Sequence 0 has 64 tokens: one query tile and one key block take part.
    assert tiles.shape == (5, 3)
    assert tiles[0, 0] != 0 and not tiles[1:].any() and not tiles[0, 1:].any()


def t5_bucket(rel):
    n = abs(rel)
    small = n < 8
    big = 8 + (np.log(np.maximum(n, 1) / 8.0) / np.log(16.0) * 8).astype(np.float64)
    big = np.minimum(15, np.floor(big).astype(int))
    return np.where(rel > 0, 16, 0) + np.where(small, n, big)


def test_t5_buckets_with_int(rng):
    kern = attnc.load(V2 / "t5_bias.attn")
    B, H, L = 1, 2, 300
    q, k, v = (rng.standard_normal((B, H, L, 64)).astype(np.float32) * 0.1 for _ in range(3))
    bias = rng.standard_normal((H, 32)).astype(np.float32)
    out = kern(q, k, v, bias=bias)
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    bucket = t5_bucket(j - i)
    s = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k) + bias[:, bucket][None]
    assert_close(out, softmax_rows(s, v.astype(np.float64))[0], "f32")
    assert_close(out, kern.reference(q, k, v, bias=bias), "f32")


@pytest.mark.parametrize("x,expected", [(2.5, 2), (-2.5, -3), (-0.0, 0), (1e10, 2**31 - 1),
                                        (-1e10, -2**31), (float("nan"), 0), (float("inf"), 2**31 - 1)])
def test_int_rounds_down_and_saturates(x, expected):
    kern = attnc.compile(
        """attention t {
          q: f64[B, H, L, 4]; k: f64[B, H, L, 4]; v: f64[B, H, L, 4]
          param x: f64
          score = int(x) * 1.0
          normalize = none
        }"""
    )
    ones = np.ones((1, 1, 3, 4))
    out = kern(ones, ones, ones, x=x)
    assert np.all(out == 3.0 * expected)
    assert np.all(kern.reference(ones, ones, ones, x=x) == 3.0 * expected)


def test_sin_and_cos(rng):
    kern = attnc.compile(
        """attention t {
          q: f64[B, H, L, 8]; k: f64[B, H, L, 8]; v: f64[B, H, L, 8]
          score = sin(dot(q, k)) + cos(i * 0.1 - j)
        }"""
    )
    q, k, v = (rng.standard_normal((1, 2, 40, 8)) for _ in range(3))
    i, j = np.arange(40)[:, None], np.arange(40)[None, :]
    s = np.sin(np.einsum("bhid,bhjd->bhij", q, k)) + np.cos(i * 0.1 - j)
    assert_close(kern(q, k, v), softmax_rows(s, v)[0], "f64")


def test_next_document_guard_reads_past_the_end_only_when_in_range(rng):
    kern = attnc.load(V2 / "next_document.attn")
    B, H, L = 2, 2, 150
    q, k, v = (rng.standard_normal((B, H, L, 64)).astype(np.float32) for _ in range(3))
    doc = np.sort(rng.integers(0, 5, (B, L)), axis=1).astype(np.int32)
    out = kern(q, k, v, doc=doc)
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    s = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k) / 8.0
    for b in range(B):
        nxt = np.append(doc[b, 1:], -1)  # i + 1 < L guards the read
        last = (i + 1 < L) & (nxt[:, None] != doc[b][:, None])
        mask = ((j <= i) & (doc[b][None, :] == doc[b][:, None])) | (last & (j == i + 1))
        o = softmax_rows(np.where(mask, s[b], -np.inf), v[b].astype(np.float64))[0]
        assert_close(out[b], o, "f32")
    assert_close(out, kern.reference(q, k, v, doc=doc), "f32")


def test_unguarded_read_past_the_end_is_an_error(rng):
    kern = attnc.compile(
        """attention t {
          q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]
          doc: i32[B, L]
          mask = doc[b, i + 1] == doc[b, j]
        }"""
    )
    x = np.zeros((1, 1, 9, 16), np.float32)
    doc = np.zeros((1, 9), np.int32)
    with pytest.raises(ValueError, match=r"aux tensor 'doc': index 1 .* is 9 at \(b=0, h=0, i=8, j=\d+\)"):
        kern(x, x, x, doc=doc)
    with pytest.raises(ValueError, match=r"tensor 'doc': index 9 is out of range for dimension 1"):
        kern.reference(x, x, x, doc=doc)


def test_score_index_counts_only_for_pairs_that_take_part(rng):
    # bias[h, i - j] is out of range for j > i, which the mask leaves out.
    kern = attnc.compile(
        """attention t {
          q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]
          bias: f32[H, L]
          score = dot(q, k) + bias[h, i - j]
          mask = j <= i
        }"""
    )
    q, k, v = (rng.standard_normal((1, 2, 50, 16)).astype(np.float32) for _ in range(3))
    bias = rng.standard_normal((2, 50)).astype(np.float32)
    assert_close(kern(q, k, v, bias=bias), kern.reference(q, k, v, bias=bias), "f32")


@pytest.mark.parametrize(
    "source,message",
    [
        ("q: f32[B, L, H, 16] at [b, i]", r"'q' has 4 dimensions, so its `at` needs 3 indices, got 2"),
        ("q: f32[B, L, H, 16] at [b, j, h]", r"'j' cannot be used in the `at` of 'q'"),
        ("q: f32[B, L, H, 16] at [b, i, h]\n  range i < L", r"the range of i is given twice"),
        ("q: f32[B, L, H, 16] at [b, 0, h]", r"nothing gives the range of i"),
        ("q: f32[B, L, H, 16] at [b, i, h]\n  let x = 1", None),
        ("q: f32[B, L, H, 16] at [b, i, int(h * 1.0)]\n  range h < H", None),
        ("q: f32[B, L, H, 16] at [b, i, h * 1.5]", r"index of 'q' must be an integer, got f32"),
        ("q: f32[B, L, H, 16] at [b, i, sqnorm(q)]", r"'sqnorm' cannot be used in the `at` of 'q'"),
    ],
)
def test_index_map_diagnostics(source, message):
    src = f"""attention t {{
  {source}
  k: f32[B, G, L, 16]; v: f32[B, G, L, 16]
}}"""
    if message is None:
        attnc.check(src)
        return
    with pytest.raises(attnc.CompileError, match=message):
        attnc.check(src)


def np_rope(x, pos, base=10000.0):
    half = x.shape[-1] // 2
    freq = base ** (-np.arange(half) / half)
    ang = pos[:, None] * freq[None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang), x2 * np.cos(ang) + x1 * np.sin(ang)], -1)


def test_rope_against_numpy(rng):
    kern = attnc.load(V2 / "rope_causal.attn")
    L = 130
    q, k, v = (rng.standard_normal((2, 3, L, 64)).astype(np.float32) for _ in range(3))
    out = kern(q, k, v)
    pos = np.arange(L, dtype=np.float64)
    s = np.einsum("bhid,bhjd->bhij", np_rope(q.astype(np.float64), pos), np_rope(k.astype(np.float64), pos)) / 8
    s = np.where(np.tril(np.ones((L, L), bool)), s, -np.inf)
    assert_close(out, softmax_rows(s, v.astype(np.float64))[0], "f32")
    assert_close(out, kern.reference(q, k, v), "f32")
    # base is a param: another base, another result
    assert not np.allclose(kern(q, k, v, base=500.0), out)


@cpu_only
def test_rope_vectors_are_computed_per_row_not_per_pair():
    stmt = attnc.load(V2 / "rope_causal.attn").emit("stmt")
    # qr and kr are produced once, before the loop over query tiles ...
    assert stmt.index("produce vec_qr") < stmt.index("produce out")
    assert stmt.index("produce vec_kr") < stmt.index("produce out")
    # ... and the q.k tiles read them, not q and k with sin and cos.
    body = stmt[stmt.index("produce out"):]
    assert "sin_f32" not in body and "cos_f32" not in body


def linear_numpy(fq, fk, v, causal):
    s = np.einsum("bhir,bhjr->bhij", fq, fk)
    if causal:
        s = s * np.tril(np.ones(s.shape[-2:]))
    den = s.sum(-1, keepdims=True)
    return np.where(den != 0, (s @ v) / np.where(den != 0, den, 1), 0)


def test_performer_with_an_aux_projection(rng):
    kern = attnc.load(V2 / "performer.attn")
    q, k, v = (rng.standard_normal((1, 2, 90, 64)).astype(np.float32) * 0.5 for _ in range(3))
    w = rng.standard_normal((48, 64)).astype(np.float32)
    out = kern(q, k, v, w=w)
    f = lambda x: np.exp(x.astype(np.float64) @ w.T.astype(np.float64) * 0.35355
                         - (x.astype(np.float64) ** 2).sum(-1, keepdims=True) / 16)
    assert_close(out, linear_numpy(f(q), f(k), v.astype(np.float64), False), "f32")
    assert_close(out, kern.reference(q, k, v, w=w), "f32")


def test_linear_elu_causal(rng):
    kern = attnc.load(V2 / "linear_elu.attn")
    q, k, v = (rng.standard_normal((2, 2, 140, 64)).astype(np.float32) for _ in range(3))
    out = kern(q, k, v)
    f = lambda x: np.where(x > 0, x + 1.0, np.exp(x)).astype(np.float64)
    assert_close(out, linear_numpy(f(q), f(k), v.astype(np.float64), True), "f32")
    assert_close(out, kern.reference(q, k, v), "f32")


def test_linear_rows_whose_scores_sum_to_zero_are_zero(rng):
    kern = attnc.compile(
        """attention t {
          q: f64[B, H, L, 4]; k: f64[B, H, L, 4]; v: f64[B, H, L, 4]
          normalize = linear
        }"""
    )
    q = np.zeros((1, 1, 5, 4))
    q[0, 0, 1] = 1.0
    k = np.ones((1, 1, 5, 4))
    v = rng.standard_normal((1, 1, 5, 4))
    out = kern(q, k, v)
    assert not np.isnan(out).any()
    assert np.all(out[0, 0, [0, 2, 3, 4]] == 0)
    assert_close(out[0, 0, 1], v[0, 0].mean(0), "f64")
    assert np.array_equal(kern.reference(q, k, v) == 0, out == 0)


def test_channel_index_out_of_range_only_where_used(rng):
    bad = attnc.compile(
        """attention t {
          q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]
          let qs[c] = q[c + 1]
          score = dot(qs, k)
        }"""
    )
    x = rng.standard_normal((1, 1, 6, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"tensor 'q': channel index is 16 at"):
        bad(x, x, x)
    with pytest.raises(ValueError, match=r"vector 'q': channel index 16 is out of range"):
        bad.reference(x, x, x)
    good = attnc.compile(
        """attention t {
          q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]
          let qs[c] = select(c + 1 < 16, q[c + 1], 0.0)
          score = dot(qs, k)
        }"""
    )
    assert_close(good(x, x, x), good.reference(x, x, x), "f32")


def test_sum_over_channels_in_the_score(rng):
    kern = attnc.compile(
        """attention l1 {
          q: f64[B, H, L, 8]; k: f64[B, H, L, 8]; v: f64[B, H, L, 8]
          score = -sum(c < 8: abs(q[c] - k[c]))
        }"""
    )
    q, k, v = (rng.standard_normal((1, 2, 30, 8)) for _ in range(3))
    s = -np.abs(q[:, :, :, None, :] - k[:, :, None, :, :]).sum(-1)
    assert_close(kern(q, k, v), softmax_rows(s, v)[0], "f64")


@pytest.mark.parametrize(
    "lines,message",
    [
        ("let x[c] = q[c] * k[c]\n  score = x[0]", r"vector 'x' reads both the query and the key side"),
        ("let x[c] = q[c]\n  let y[c] = q[c] * 2\n  score = dot(x, y)", r"dot\(x, y\) takes a query vector and a key vector"),
        ("let x[c < 8] = q[c]\n  let y[c] = k[c]\n  score = dot(x, y)", r"dot\(x, y\) of vectors of different lengths \(8 and 16\)"),
        ("let x[c] = q[c]\n  score = x", r"'x' is a channel vector"),
        ("let x[c] = q[c]\n  score = dot(x, k) + dot(q, k)", r"a kernel computes one dot product per pair"),
        ("let x[c < N] = q[c]", r"the length of vector 'x' must be a size or an integer, got 'N'"),
        ("let x[i] = q[i]", r"channel variable 'i' hides another name"),
        ("score = q[0.5]", r"channel index of 'q' must be an integer, got f32"),
        ("score = v[0]", r"'v' cannot be indexed"),
        ("score = sum(c < 4: c > 1)", r"the body of sum must be a number, got bool"),
    ],
)
def test_channel_diagnostics(lines, message):
    src = f"""attention t {{
  q: f32[B, H, L, 16]; k: f32[B, H, L, 16]; v: f32[B, H, L, 16]
  {lines}
}}"""
    with pytest.raises(attnc.CompileError, match=message):
        attnc.check(src)


def test_signatures_give_the_output_over_the_ranges():
    assert attnc.load(V2 / "varlen_causal.attn").signature.endswith(
        "-> out: f32[(N - 1), H, max_len, 64]")
    assert attnc.load(V2 / "bshd_causal.attn").signature.endswith("-> out: f32[B, H, L, 64]")


def test_mask_reading_head_values_with_index_maps(rng):
    # The checks count such a mask as true (docs/language.md); the kernel
    # still applies it.
    kern = attnc.compile(
        """attention t {
          q: f32[B, L, H, 16] at [b, i, h]; k: f32[B, L, H, 16] at [b, j, hk]
          v: f32[B, L, H, 16] at [b, j, hk]
          let fk[c] = k[c] * 2
          mask = j <= i && q[0] + fk[1] > -1
        }"""
    )
    q, k, v = (rng.standard_normal((1, 40, 2, 16)).astype(np.float32) for _ in range(3))
    assert_close(kern(q, k, v), kern.reference(q, k, v), "f32")


@pytest.mark.parametrize(
    "mask",
    [
        "dot(q, k) > 1000 && t[b, j + 1] == 0",  # && skips the read, but the guard reads q.k
        "sqnorm(q) < 0 || t[b, j + 1] == 0",
        "select(q[0] > 1000, t[b, j + 1] == 0, j <= i)",
    ],
)
def test_guards_reading_head_values_count_as_true_in_kernel_and_reference(rng, mask):
    """A guard that reads head values counts as true for the index checks
    (docs/language.md), in the compiled checks and in the float64 reference
    alike: t[b, j + 1] is out of range at j = L - 1 even though the guard's
    real value skips it."""
    kern = attnc.compile(
        f"""attention g {{
          q: f32[B, H, L, 8]; k: f32[B, H, L, 8]; v: f32[B, H, L, 8]
          t: i32[B, L]
          mask = {mask}
        }}"""
    )
    q, k, v = (rng.standard_normal((1, 2, 20, 8)).astype(np.float32) for _ in range(3))
    t = np.zeros((1, 20), np.int32)
    with pytest.raises(ValueError, match=r"aux tensor 't': index 1 .* is 20 at \(b=0, h=\d+, i=\d+, j=19\)"):
        kern(q, k, v, t=t)
    with pytest.raises(ValueError, match=r"tensor 't': index 20 is out of range for dimension 1"):
        kern.reference(q, k, v, t=t)
    # Guarded by a condition of indices only, the read is lazy in both.
    ok = attnc.compile(
        """attention g2 {
          q: f32[B, H, L, 8]; k: f32[B, H, L, 8]; v: f32[B, H, L, 8]
          t: i32[B, L]
          mask = j + 1 < L && t[b, j + 1] == 0 && dot(q, k) > -1000
        }"""
    )
    assert_close(ok(q, k, v, t=t), ok.reference(q, k, v, t=t), "f32")
