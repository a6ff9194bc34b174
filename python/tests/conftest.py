"""Shared fixtures of the attnc Python tests: the example variants, random
inputs shaped after a kernel's declarations, and the tolerance of a dtype."""

import os
import pathlib
import re

import numpy as np
import pytest

import attnc

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The NumPy dtype of every attnc element type but bf16 (ml_dtypes.bfloat16).
NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i32": np.int32,
                "i64": np.int64, "bool": np.bool_}
VARIANTS = sorted((ROOT / "examples" / "variants").glob("*.attn"))

# ATTNC_TEST_TARGET (ctest python_opencl: host-opencl on PoCL): every kernel
# a test compiles for the host is compiled for that target instead, with
# ATTNC_REQUIRE_GPU=1 making a GPU failure an error, not a CPU fallback.
TEST_TARGET = os.environ.get("ATTNC_TEST_TARGET", "host")
if TEST_TARGET != "host":
    _compile = attnc.compile

    def _compile_for_test_target(source, kernel=None, target="host", **options):
        return _compile(source, kernel, TEST_TARGET if target == "host" else target, **options)

    attnc.compile = _compile_for_test_target
# Tests of the CPU kernel's loop nest or of bit-equal CPU kernels.
cpu_only = pytest.mark.skipif(TEST_TARGET != "host",
                              reason=f"checks the CPU kernel itself, not the {TEST_TARGET} one")


def pytest_sessionstart(session):
    # The suite must test the package just built, not an older install.
    id_file = os.environ.get("ATTNC_BUILD_ID_FILE")
    if not id_file:
        return
    expected = re.search(r'return "([0-9a-f]+)"', pathlib.Path(id_file).read_text()).group(1)
    if expected != attnc.build_id:
        raise pytest.UsageError(
            f"the installed attnc was built from other sources (build id {attnc.build_id}, "
            f"this tree {expected}): run scripts/build.sh"
        )


def demo_sizes(source: str):
    """The `# demo-sizes: NAME=N ...` line of an example, if any."""
    sizes = {}
    for m in re.finditer(r"^# demo-sizes:(.*)$", source, re.M):
        for item in m.group(1).split():
            name, value = item.split("=")
            sizes[name] = int(value)
    return sizes


def size_of(name, kern, given):
    """Small sizes that still cover ragged tiles, GQA and batches."""
    if name in given:
        return given[name]
    dims = {n: d for n, _, _, d in kern._impl.tensors()}
    q, k, v = kern.inputs[:3]
    if name == "B":
        return 2
    if name == "H":
        return 4
    if name in (dims[q][3], dims[v][3]):
        return 32
    if name == dims[k][1] and name != "L":
        return 2
    return 150


def random_inputs(kern, rng, sizes=None, cap=200):
    """q, k, v ~ N(0, 1); integer aux tensors in sorted runs 0..3 along
    their last axis (document ids, image ids); bool aux at random; float aux
    ~ N(0, 0.1). As attnc-demo makes them."""
    given = {n: (s if s <= 1 else min(s, cap)) for n, s in demo_sizes(kern.source).items()}
    given.update(sizes or {})
    arrays = {}
    for name, role, dtype, dims in kern._impl.tensors():
        shape = [d if isinstance(d, int) else size_of(d, kern, given) for d in dims]
        if role != "aux":
            x = rng.standard_normal(shape)
        elif dtype == "bool":
            x = rng.integers(0, 2, shape).astype(bool)
        elif dtype in ("i32", "i64"):
            last = shape[-1]
            x = np.broadcast_to((np.arange(last) * 4) // last, shape)
        else:
            x = 0.1 * rng.standard_normal(shape)
        arrays[name] = as_dtype(x, dtype)
    return arrays


def as_dtype(x, dtype):
    if dtype == "bf16":
        import ml_dtypes

        return np.ascontiguousarray(x, dtype=ml_dtypes.bfloat16)
    return np.ascontiguousarray(x, dtype=NUMPY_DTYPES[dtype])


def tolerance(dtype):
    return {"f64": 1e-9, "f32": 1e-4, "f16": 2e-2, "bf16": 2e-2}[dtype]


def assert_close(out, ref, dtype):
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape
    assert not np.isnan(out).any(), "NaN in the kernel's output"
    err = np.max(np.abs(out - ref)) if out.size else 0.0
    scale = max(1.0, np.max(np.abs(ref)) if ref.size else 0.0)
    assert err <= tolerance(dtype) * scale, f"max error {err:.3g} (scale {scale:.3g})"


def call(kern, arrays, **kw):
    q, k, v = (arrays[n] for n in kern.inputs[:3])
    aux = {n: arrays[n] for n in kern.inputs[3:]}
    return kern(q, k, v, **aux, **kw)


def call_reference(kern, arrays, **kw):
    q, k, v = (arrays[n] for n in kern.inputs[:3])
    aux = {n: arrays[n] for n in kern.inputs[3:]}
    return kern.reference(q, k, v, **aux, **kw)


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def causal():
    return attnc.load(ROOT / "examples" / "variants" / "causal.attn")
