"""Checks DIR/out.npy against causal softmax attention of DIR/{q,k,v}.npy in float64."""
import sys
import numpy as np

d = sys.argv[1]
q, k, v = (np.load(f"{d}/{n}.npy").astype(np.float64) for n in "qkv")
s = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
L = s.shape[-1]
s = np.where(np.tril(np.ones((L, L), bool)), s, -np.inf)
p = np.exp(s - s.max(-1, keepdims=True))
ref = (p / p.sum(-1, keepdims=True)) @ v
out = np.load(f"{d}/out.npy")
err = np.abs(out - ref).max()
assert out.shape == ref.shape and err < 1e-5, (out.shape, err)
