"""A pre-norm transformer block whose attention is an attnc kernel, run
eagerly and under torch.compile (one graph, no breaks: the attnc call is a
torch custom operator with a fake implementation).

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


def main():
    torch.manual_seed(0)
    block = Block(dim=128, heads=4).eval()
    x = torch.randn(2, 96, 128)
    with torch.no_grad():
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True)(x)
    print(f"eager output {tuple(eager.shape)}, torch.compile(fullgraph=True) agrees to "
          f"{(eager - compiled).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
