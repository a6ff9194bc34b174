"""GPU targets from Python: the OpenCL kernel (PoCL on CI's CPUs) against the
CPU kernel and NumPy, and the failover to the CPU twin when no GPU answers
(docs/gpu.md)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import attnc

CAUSAL = """attention causal_gpu {
  q: f32[B, H, L, D]; k: f32[B, H, L, D]; v: f32[B, H, L, D]
  mask = j <= i
  output lse
}"""

HAS_OPENCL = pathlib.Path("/etc/OpenCL/vendors").is_dir() and any(
    p.suffix == ".icd" for p in pathlib.Path("/etc/OpenCL/vendors").iterdir())


def causal_reference(q, k, v):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    s = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
    L = s.shape[-1]
    s = np.where(np.tril(np.ones((L, L), bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    return (p / p.sum(-1, keepdims=True)) @ v, (m[..., 0] + np.log(p.sum(-1)))


def inputs(seed=0, shape=(2, 3, 70, 48)):
    r = np.random.default_rng(seed)
    return [r.standard_normal(shape).astype(np.float32) for _ in range(3)]


@pytest.mark.skipif(not HAS_OPENCL, reason="no OpenCL driver (PoCL) installed")
def test_opencl_kernel_matches_the_reference_and_the_cpu_kernel():
    gpu = attnc.compile(CAUSAL, target="host-opencl", cache=False)
    assert "GPU" not in gpu.warnings, gpu.warnings
    q, k, v = inputs()
    out, lse = gpu(q, k, v, return_lse=True)
    ref, ref_lse = causal_reference(q, k, v)
    np.testing.assert_allclose(out, ref, atol=2e-5)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-4)
    cpu_out = attnc.compile(CAUSAL, cache=False)(q, k, v)
    np.testing.assert_allclose(out, cpu_out, atol=2e-6)


SCRIPT = """
import sys, numpy as np, attnc
src, target = sys.argv[1], sys.argv[2]
r = np.random.default_rng(1)
q, k, v = (r.standard_normal((1, 2, 33, 16)).astype(np.float32) for _ in range(3))
kern = attnc.compile(src, target=target, cache=False)
a = kern(q, k, v, return_lse=True)
b = kern(q, k, v, return_lse=True)
host = attnc.compile(src, cache=False)(q, k, v, return_lse=True)
for x, y in zip(a + b, host + host):
    np.testing.assert_array_equal(x, y)
print("ok")
"""


@pytest.mark.parametrize("target", ["host-cuda", "host-opencl"])
def test_no_gpu_falls_back_to_the_cpu_twin_with_one_warning(tmp_path, target):
    # CUDA: CI has no driver. OpenCL: the ICD loader pointed at a folder with
    # no drivers finds no platform.
    env = dict(os.environ, OCL_ICD_VENDORS=str(tmp_path))
    if target == "host-cuda" and subprocess.run(["sh", "-c", "command -v nvidia-smi"],
                                                capture_output=True).returncode == 0:
        pytest.skip("this machine has an NVIDIA driver: the CUDA kernel would run")
    r = subprocess.run([sys.executable, "-c", SCRIPT, CAUSAL, target], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    warnings = [line for line in r.stderr.splitlines() if "the GPU failed" in line]
    assert len(warnings) == 1, r.stderr  # two calls, one warning
    assert "computing it on the CPU (causal_gpu_cpu)" in warnings[0]
