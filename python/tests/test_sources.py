"""Several key/value sources under one normalization (LANGUAGE.md §8.5):
two and three sources with every normalization against a NumPy reference
over the concatenated keys (written here) and attnc's float64 reference,
ties across sources, paged and data-dependent sources, and the errors."""

import numpy as np
import pytest

import attnc
from conftest import ROOT, assert_close

V2 = ROOT / "examples" / "variants" / "v2"
NEG = -np.inf

NORMALIZATIONS = [
    "softmax",
    "sigmoid",
    "relu",
    "none",
    "linear",
    "hardmax",
    "hardmax(ties = latest)",
    "hardmax(ties = first)",
    "topk(5)",
]

# Each source: its block (k and v [B, G, Ls, 16], a mask, a score) and how
# NumPy computes that mask and score. Sizes: Lq = 20; keys 37, 150, 9.
SOURCES = [
    (
        "text",
        37,
        """k: f32[B, G, T, 16]; v: f32[B, G, T, 16]
    mask = j <= i + T - Lq""",
        lambda i, j, L, Lq: j <= i + L - Lq,
        None,
    ),
    (
        "image",
        150,
        """k: f32[B, G, N, 16]; v: f32[B, G, N, 16]
    img_bias: f32[H]
    score = dot(q, k) * rsqrt(16) + img_bias[h]""",
        lambda i, j, L, Lq: np.ones((i.shape[0], j.shape[1]), bool),
        "img_bias",
    ),
    (
        "memory",
        9,
        """k: f32[B, G, M, 16]; v: f32[B, G, M, 16]
    slot_of: i32[M]
    mask = slot_of[j] != i % 3""",
        None,  # data-dependent: computed from slot_of below
        None,
    ),
]


def kernel_source(n, norm, positive=False):
    blocks = []
    for name, _, body, _, _ in SOURCES[:n]:
        if positive:  # linear attention wants positive scores
            body = body.replace("score = dot(q, k) * rsqrt(16) + img_bias[h]",
                                "score = exp(dot(q, k) * 0.1 + img_bias[h])")
            if "score" not in body:
                body += "\n    score = exp(dot(q, k) * 0.1)"
        blocks.append(f"  source {name} {{\n    {body}\n  }}")
    lse = "\n  output lse" if norm.startswith(("softmax", "hardmax", "topk")) else ""
    return (
        f"attention multi {{\n  q: f32[B, H, Lq, 16]\n" + "\n".join(blocks)
        + f"\n  normalize = {norm}{lse}\n}}"
    )


def inputs(rng, n, B=2, H=4, G=2, Lq=20):
    q = rng.standard_normal((B, H, Lq, 16)).astype(np.float32)
    named = {}
    for name, L, _, _, aux in SOURCES[:n]:
        named[f"{name}.k"] = rng.standard_normal((B, G, L, 16)).astype(np.float32)
        named[f"{name}.v"] = rng.standard_normal((B, G, L, 16)).astype(np.float32)
    named["img_bias"] = rng.standard_normal(H).astype(np.float32)
    if n >= 3:
        named["slot_of"] = rng.integers(0, 3, size=SOURCES[2][1]).astype(np.int32)
    return q, named


def numpy_reference(q, named, n, norm, positive=False):
    """float64 over the keys of all sources, concatenated in file order."""
    B, H, Lq, _ = q.shape
    scores, values = [], []
    for s, (name, L, _, mask, _) in enumerate(SOURCES[:n]):
        k = named[f"{name}.k"].astype(np.float64)
        v = named[f"{name}.v"].astype(np.float64)
        g = H // k.shape[1]
        k, v = np.repeat(k, g, 1), np.repeat(v, g, 1)
        dot = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k)
        if positive:
            sc = dot * 0.1
            if name == "image":
                sc = sc + named["img_bias"][None, :, None, None]
            sc = np.exp(sc)
        else:
            sc = dot / 4.0
            if name == "image":
                sc = sc + named["img_bias"][None, :, None, None]
        i, j = np.arange(Lq)[:, None], np.arange(L)[None, :]
        m = mask(i, j, L, Lq) if mask else named["slot_of"][None, :] != (i % 3)
        scores.append(np.where(m, sc, NEG))
        values.append(v)
    s = np.concatenate(scores, -1)
    v = np.concatenate(values, 2)
    live = s > NEG
    kind = norm.split("(")[0]
    if kind in ("sigmoid", "relu", "none", "linear"):
        w = {"sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0),
             "none": lambda x: x, "linear": lambda x: x}[kind](np.where(live, s, 0))
        w = np.where(live, w, 0)
        if kind == "linear":
            tot = w.sum(-1, keepdims=True)
            w = np.where(tot != 0, w / np.where(tot != 0, tot, 1), 0)
        return w @ v, None
    m = s.max(-1, keepdims=True)
    has = np.isfinite(m)
    if kind == "hardmax":
        tied = live & (s == m)
        if "latest" in norm or "first" in norm:
            idx = np.arange(s.shape[-1])
            pick = np.where(tied, idx, -1).max(-1) if "latest" in norm else \
                np.where(tied, idx, s.shape[-1]).min(-1)
            w = (idx == pick[..., None]) & tied
        else:
            w = tied
        w = w.astype(np.float64)
        cnt = w.sum(-1, keepdims=True)
        out = np.where(cnt > 0, w / np.where(cnt > 0, cnt, 1), 0) @ v
        return out, np.where(has[..., 0], m[..., 0], NEG)
    if kind == "topk":
        K = int(norm[5:-1])
        order = np.argsort(np.where(live, -s, np.inf) - 1e-12 * np.arange(s.shape[-1]),
                           axis=-1, kind="stable")
        keep = np.zeros_like(live)
        np.put_along_axis(keep, order[..., :K], True, axis=-1)
        s = np.where(keep & live, s, NEG)
        m = s.max(-1, keepdims=True)
        has = np.isfinite(m)
    w = np.exp(s - np.where(has, m, 0))
    l = w.sum(-1, keepdims=True)
    out = (w / np.where(l > 0, l, 1)) @ v
    lse = np.where(has[..., 0], (np.where(has, m, 0) + np.log(np.where(l > 0, l, 1)))[..., 0], NEG)
    return out, lse


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("norm", NORMALIZATIONS)
def test_sources_against_numpy_and_the_reference(rng, n, norm):
    positive = norm == "linear"
    kern = attnc.compile(kernel_source(n, norm, positive))
    q, named = inputs(rng, n)
    if n < 3:
        named.pop("slot_of", None)
    want_lse = kern.output_lse
    got = kern(q, **named, return_lse=want_lse)
    ref = kern.reference(q, **named, return_lse=want_lse)
    np_out, np_lse = numpy_reference(q, named, n, norm, positive)
    out, lse = got if want_lse else (got, None)
    rout, rlse = ref if want_lse else (ref, None)
    assert_close(rout, np_out, "f64")
    assert_close(out, np_out, "f32")
    if want_lse:
        assert_close(rlse, np_lse, "f64")
        assert_close(lse, np_lse, "f32")


def test_two_sources_equal_one_kernel_over_the_concatenated_keys(rng):
    two = attnc.compile(
        """attention two {
          q: f32[B, H, L, 32]
          source a { k: f32[B, H, S, 32]; v: f32[B, H, S, 32] }
          source b { k: f32[B, H, T, 32]; v: f32[B, H, T, 32] }
          output lse
        }"""
    )
    one = attnc.compile(
        """attention one {
          q: f32[B, H, L, 32]; k: f32[B, H, S, 32]; v: f32[B, H, S, 32]
          output lse
        }"""
    )
    q = rng.standard_normal((1, 2, 70, 32)).astype(np.float32)
    ka, va = (rng.standard_normal((1, 2, 300, 32)).astype(np.float32) for _ in range(2))
    kb, vb = (rng.standard_normal((1, 2, 129, 32)).astype(np.float32) for _ in range(2))
    out, lse = two(q, a_k=ka, a_v=va, b_k=kb, b_v=vb, return_lse=True)
    o1, l1 = one(q, np.concatenate([ka, kb], 2), np.concatenate([va, vb], 2), return_lse=True)
    assert_close(out, o1, "f32")
    assert_close(lse, l1, "f32")
    # The keys of a source that nothing masks all count: no tile is lost at
    # the boundary between the sources' key blocks.
    assert "+" in two.strategy


@pytest.mark.parametrize("ties,source", [("latest", "b"), ("first", "a"), ("average", None)])
def test_hardmax_ties_across_sources(rng, ties, source):
    """The same key in both sources ties exactly: `latest` takes the later
    source's, `first` the earlier's, `average` the mean of both values."""
    kern = attnc.compile(
        f"""attention h {{
          q: f32[B, H, L, 8]
          source a {{ k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; score = dot(q, k) }}
          source b {{ k: f32[B, H, T, 8]; v: f32[B, H, T, 8]; score = dot(q, k) }}
          normalize = hardmax(ties = {ties})
          output lse
        }}"""
    )
    q = rng.standard_normal((1, 1, 4, 8)).astype(np.float32)
    ka = rng.standard_normal((1, 1, 10, 8)).astype(np.float32) * 0.1
    kb = rng.standard_normal((1, 1, 6, 8)).astype(np.float32) * 0.1
    best = q[0, 0].copy()  # a key that wins every row, placed in both sources
    ka[0, 0, 3] = kb[0, 0, 5] = 10 * best[0]
    va, vb = (rng.standard_normal((1, 1, n, 8)).astype(np.float32) for n in (10, 6))
    named = dict(a_k=ka, a_v=va, b_k=kb, b_v=vb)
    out = kern(q, **named)
    ref = kern.reference(q, **named)
    assert_close(out, ref, "f32")
    row = out[0, 0, 0]
    want = {"a": va[0, 0, 3], "b": vb[0, 0, 5]}.get(source)
    if want is None:
        want = (va[0, 0, 3] + vb[0, 0, 5]) / 2
    np.testing.assert_allclose(row, want, rtol=1e-6, atol=1e-6)


def test_topk_prefers_the_later_source_at_a_boundary_tie(rng):
    kern = attnc.compile(
        """attention t {
          q: f32[B, H, L, 4]
          source a { k: f32[B, H, S, 4]; v: f32[B, H, S, 4]; score = dot(q, k) }
          source b { k: f32[B, H, T, 4]; v: f32[B, H, T, 4]; score = dot(q, k) }
          normalize = topk(1)
        }"""
    )
    q = np.ones((1, 1, 1, 4), np.float32)
    ka = np.zeros((1, 1, 3, 4), np.float32)
    kb = np.zeros((1, 1, 2, 4), np.float32)
    ka[0, 0, 1] = kb[0, 0, 0] = 1.0  # the best score, in both sources
    va = rng.standard_normal((1, 1, 3, 4)).astype(np.float32)
    vb = rng.standard_normal((1, 1, 2, 4)).astype(np.float32)
    named = dict(a_k=ka, a_v=va, b_k=kb, b_v=vb)
    np.testing.assert_allclose(kern(q, **named)[0, 0, 0], vb[0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(kern.reference(q, **named)[0, 0, 0], vb[0, 0, 0], rtol=1e-12)


def vlm_inputs(rng, B=2, H=4, G=2, Lq=3, T=200, N=150):
    q = rng.standard_normal((B, H, Lq, 128)).astype(np.float32)
    named = {
        n: rng.standard_normal((B, G, L, 128)).astype(np.float32)
        for n, L in (("text.k", T), ("text.v", T), ("image.k", N), ("image.v", N))
    }
    named["img_bias"] = rng.standard_normal(H).astype(np.float32)
    return q, named


def test_vlm_decode_example(rng):
    kern = attnc.load(V2 / "vlm_decode.attn")
    assert "text_k: f32[B, G, T, 128]" in kern.signature
    assert kern.inputs[:5] == ("q", "text.k", "text.v", "image.k", "image.v")
    q, named = vlm_inputs(rng)
    out, lse = kern(q, **named, return_lse=True)
    ref, rlse = kern.reference(q, **named, return_lse=True)
    assert_close(out, ref, "f32")
    assert_close(lse, rlse, "f32")
    # Dotted and underscore names are the same inputs.
    alias = {n.replace(".", "_"): t for n, t in named.items()}
    np.testing.assert_array_equal(kern(q, **alias), out)


def paged_three(rng, seqlen, S=16, NB=12, G=2, H=4, P=5, N=7):
    B = len(seqlen)
    NP = max((n + S - 1) // S for n in seqlen) + 1
    h16 = lambda *s: rng.standard_normal(s).astype(np.float16)
    pages = np.full((B, NP), -1, np.int32)  # past the end: never read
    free = list(rng.permutation(NB))
    for b, n in enumerate(seqlen):
        for p in range((n + S - 1) // S):
            pages[b, p] = free.pop()
    named = {
        "prefix.k": h16(1, G, P, 64), "prefix.v": h16(1, G, P, 64),
        "cache.k": h16(NB, G, S, 64), "cache.v": h16(NB, G, S, 64),
        "image.k": h16(B, G, N, 64), "image.v": h16(B, G, N, 64),
        "pages": pages, "seqlen": np.array(seqlen, np.int32),
        "image_of": np.array([0, -1, 1][:B], np.int32),
        "token_image": np.array([0, 0, 0, 1, 1, 1, 1][:N], np.int32),
    }
    return h16(B, H, 1, 64), named


def test_three_sources_paged_and_data_dependent(rng):
    kern = attnc.load(V2 / "prefix_paged_image.attn")
    q, named = paged_three(rng, [20, 33, 1])
    out, lse = kern(q, **named, return_lse=True)
    ref, rlse = kern.reference(q, **named, return_lse=True)
    assert_close(out, ref, "f16")
    assert_close(lse, rlse, "f32")
    # NumPy over the keys each request sees.
    G = 2
    for b in range(3):
        ks, vs = [named["prefix.k"][0], named["prefix.v"][0]], None
        keys = [named["prefix.k"][0]]
        vals = [named["prefix.v"][0]]
        n = named["seqlen"][b]
        pages = named["pages"][b]
        cache_k = np.concatenate([named["cache.k"][p] for p in pages[pages >= 0]], 1)[:, :n]
        cache_v = np.concatenate([named["cache.v"][p] for p in pages[pages >= 0]], 1)[:, :n]
        keys.append(cache_k)
        vals.append(cache_v)
        sel = named["token_image"] == named["image_of"][b]
        keys.append(named["image.k"][b][:, sel])
        vals.append(named["image.v"][b][:, sel])
        K = np.repeat(np.concatenate(keys, 1).astype(np.float64), 2, 0)
        V = np.repeat(np.concatenate(vals, 1).astype(np.float64), 2, 0)
        s = np.einsum("hd,hjd->hj", q[b, :, 0].astype(np.float64), K) / 8.0
        w = np.exp(s - s.max(-1, keepdims=True))
        want = np.einsum("hj,hjd->hd", w / w.sum(-1, keepdims=True), V)
        assert_close(out[b, :, 0], want, "f16")


def test_a_bad_page_of_one_source_names_that_source(rng):
    kern = attnc.load(V2 / "prefix_paged_image.attn")
    q, named = paged_three(rng, [20, 33])
    named["pages"][1, 2] = 99  # keys 32..33 of request 1
    msg = r"the `at` of 'cache.k': index 0 \(dimension 0 of cache.k: f16\[NB, G, S, 64\], extent 12\) is 99 at \(b=1, h=\d+, i=0, j=3[23]\)"
    with pytest.raises(ValueError, match=msg):
        kern(q, **named)
    with pytest.raises(ValueError, match=r"cache.k"):
        kern.reference(q, **named)


def test_tile_map_of_sources_puts_their_key_blocks_side_by_side(rng):
    kern = attnc.load(V2 / "prefix_paged_image.attn")
    q, named = paged_three(rng, [5, 300], S=16, NB=40)
    aux = {n: named[n] for n in ("pages", "seqlen", "image_of", "token_image")}
    tiles = kern.tile_map(**aux, P=5, S=16, H=4, G=2, N=7, b=0)
    # prefix: one block; cache: NP * S = 320 keys, 3 blocks, only the first
    # below seqlen[0] = 5; image: one block.
    assert tiles.shape == (1, 5)
    assert tiles[0, 0] != 0 and tiles[0, 1] != 0 and not tiles[0, 2:4].any()


def test_errors_name_the_source_input(rng):
    kern = attnc.load(V2 / "vlm_decode.attn")
    q, named = vlm_inputs(rng)
    missing = dict(named)
    del missing["image.v"]
    with pytest.raises(TypeError, match=r"missing aux tensor 'image.v: f32\[B, G, N, 128\]': pass image_v="):
        kern(q, **missing)
    bad = dict(named)
    bad["image.v"] = bad["image.v"][..., :64].copy()
    with pytest.raises(ValueError, match=r"image.v"):
        kern(q, **bad)
    bad = dict(named)
    bad["image.k"] = bad["image.k"][:, :1].copy()  # G = 1 against text's G = 2
    with pytest.raises(ValueError, match=r"dimension 'G' of tensor 'image.k'"):
        kern(q, **bad)
    with pytest.raises(TypeError, match=r"pass q positionally and each source's k and v by name"):
        kern(q, named["text.k"], named["text.v"], **named)


@pytest.mark.parametrize(
    "body,message",
    [
        ("k: f32[B, H, L, 8]; v: f32[B, H, L, 8]\n  source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8] }",
         r"3:3: error: 'k' is declared outside the source blocks"),
        ("mask = j < 3\n  source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8] }",
         r"'mask' outside the source blocks"),
        ("source a { q: f32[B, H, L, 8]; k: f32[B, H, S, 8]; v: f32[B, H, S, 8] }",
         r"'q' is declared inside source 'a'"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; param w: i32 }",
         r"'param w' inside source 'a'"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; normalize = relu }",
         r"'normalize' inside source 'a'"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8] }\n  source a { k: f32[B, H, T, 8]; v: f32[B, H, T, 8] }",
         r"redefinition of source 'a'"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; t: i32[S] }\n  source b { k: f32[B, H, T, 8]; v: f32[B, H, T, 8]; t: i32[T] }",
         r"redefinition of 't'"),
        ("a_k: f32[S]\n  source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8] }",
         r"aux tensor 'a_k' clashes with source 'a'"),
        ("source a { k: f32[B, H, S, 8] }", r"source 'a' has no 'v' tensor"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8] }\n  source b { k: f32[B, H, T, 8]; v: f32[B, H, T, 4] }",
         r"the value dimension of 'b.v' \(4\) differs from that of 'a.v' \(8\)"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; range i < 4 }",
         r"'range i' inside source 'a'"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; source b { } }",
         r"a source block inside source 'a'"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; mask = zz > 0 }",
         r"unknown name 'zz'"),
        ("source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8] }\n  source b { k: f32[B, H, T, 8]; v: f32[B, H, T, 8] }",
         None),
    ],
)
def test_source_diagnostics(body, message):
    src = f"attention s {{\n  q: f32[B, H, L, 8]\n  {body}\n}}"
    if message is None:
        attnc.check(src)
        return
    with pytest.raises(attnc.CompileError, match=message) as e:
        attnc.check(src)
    assert "^" in str(e.value)


def test_an_error_in_a_shared_let_is_reported_once():
    src = """attention s {
  q: f32[B, H, L, 8]
  let x = nope + 1
  source a { k: f32[B, H, S, 8]; v: f32[B, H, S, 8]; score = x }
  source b { k: f32[B, H, T, 8]; v: f32[B, H, T, 8]; score = x }
}"""
    with pytest.raises(attnc.CompileError) as e:
        attnc.check(src)
    assert str(e.value).count("unknown name 'nope'") == 1
