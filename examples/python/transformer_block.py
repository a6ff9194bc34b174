"""A pre-norm transformer block whose attention is an attnc kernel, run
eagerly and under torch.compile (one graph, no breaks: the attnc call is a
torch custom operator with a fake implementation), then one training step:
loss.backward() runs attnc's compiled backward, and the gradients of every
weight agree with those of the same block whose attention is written in
PyTorch.

    .venv/bin/python examples/python/transformer_block.py
"""

import torch
import torch.nn as nn

import attnc
import attnc.torch

# ALiBi-style causal attention with a per-head slope, written in .attn.
SOURCE = """
attention alibi_causal {
  q: f32[B, H, L, D]; k: f32[B, H, L, D]; v: f32[B, H, L, D]
  let slope = exp2(-8.0 * (h + 1) / H)
  score = dot(q, k) * rsqrt(D) + slope * (j - i)
  mask = j <= i
}
"""


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, source: str = SOURCE):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.attention = attnc.torch.custom_op(attnc.compile(source))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, C // self.heads)
        # [B, L, H, D] -> [B, H, L, D] views: the kernel reads them in place.
        q, k, v = (qkv[:, :, n].transpose(1, 2) for n in range(3))
        a = self.attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, C))
        return x + self.mlp(self.norm2(x))


def torch_alibi_causal(q, k, v):
    """The same attention in PyTorch ops (autograd's reference)."""
    H, L, D = q.shape[1], q.shape[2], q.shape[3]
    slope = torch.exp2(-8.0 * torch.arange(1, H + 1, dtype=q.dtype) / H).view(1, H, 1, 1)
    i = torch.arange(L).view(L, 1)
    j = torch.arange(L).view(1, L)
    s = q @ k.transpose(-1, -2) / D**0.5 + slope * (j - i)
    s = s.masked_fill(j > i, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def main():
    torch.manual_seed(0)
    block = Block(dim=128, heads=4).eval()
    x = torch.randn(2, 96, 128)
    with torch.no_grad():
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True)(x)
    print(f"eager output {tuple(eager.shape)}, torch.compile(fullgraph=True) agrees to "
          f"{(eager - compiled).abs().max().item():.2e}")

    # One training step through attnc's backward, against the same block
    # with the attention in PyTorch ops.
    reference = Block(dim=128, heads=4)
    reference.load_state_dict(block.state_dict())
    reference.attention = torch_alibi_causal
    for model in (block, reference):
        model.train().zero_grad()
        model(x).square().mean().backward()
    worst = max(
        ((p.grad - r.grad).abs().max() / r.grad.abs().max()).item()
        for p, r in zip(block.parameters(), reference.parameters())
    )
    print(f"training step: every weight's gradient through attnc's backward agrees with "
          f"PyTorch's autograd to {worst:.2e} (relative)")


if __name__ == "__main__":
    main()
