"""Pre-LN Transformer encoder blocks; attention through ``scaled_dot_product_attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "EncoderBlock", "FeedForward"]


class Attention(nn.Module):
    """Multi-head self-attention.

    Parameters
    ----------
    dim : int
        Token width (divisible by ``num_heads``).
    num_heads : int
        Number of heads.
    attn_dropout : float
        Dropout on attention weights (training only).
    proj_dropout : float
        Dropout on the output projection.
    """

    def __init__(
        self, dim: int, num_heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.proj_dropout = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over tokens of shape (B, N, D)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).unbind(2)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        return self.proj_dropout(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class FeedForward(nn.Sequential):
    """``Linear → GELU → Dropout → Linear → Dropout``.

    Parameters
    ----------
    dim, hidden_dim : int
        Token width and hidden width.
    dropout : float
        Dropout probability.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )


class EncoderBlock(nn.Module):
    """Pre-LN encoder layer: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``.

    Parameters
    ----------
    dim, num_heads : int
        Token width and attention heads.
    mlp_ratio : float
        Feed-forward hidden width as a multiple of ``dim``.
    dropout, attn_dropout : float
        Residual-branch dropout and attention-weight dropout.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, attn_dropout=attn_dropout, proj_dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, round(dim * mlp_ratio), dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform tokens of shape (B, N, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
