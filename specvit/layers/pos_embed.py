"""Positional encodings for patch tokens: learned, sinusoidal and wavelength-aware."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LearnedPosEmbed", "SinusoidalPosEmbed", "sinusoidal_code"]


def sinusoidal_code(positions: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """Fixed sinusoidal code of real-valued positions.

    Parameters
    ----------
    positions : torch.Tensor
        Shape (N,), any real values (token index, or wavelength in Å).
    dim : int
        Code width (even).
    max_period : float
        Longest period of the code, in the units of ``positions``.

    Returns
    -------
    torch.Tensor
        Shape (N, dim): ``[sin(p ω_k), cos(p ω_k)]`` with ω_k geometric from 2π/max_period
        up to 1 (radian per unit).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    angles = positions.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


class LearnedPosEmbed(nn.Module):
    """A learned vector per token position (CLS included when ``num_tokens`` counts it).

    Parameters
    ----------
    num_tokens, embed_dim : int
        Sequence length and token width.
    """

    def __init__(self, num_tokens: int, embed_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Add the embedding to tokens of shape (B, num_tokens, D)."""
        return tokens + self.weight


class SinusoidalPosEmbed(nn.Module):
    """A fixed (non-trainable) sinusoidal code of each token's position.

    With ``positions`` = token indices this is the classic Transformer encoding; with
    ``positions`` = each patch's central wavelength in Å it is the wavelength-aware
    ("physics-informed") encoding: tokens at the same wavelength get the same code whatever
    the patching, and the code's periods are physical (Å).

    Parameters
    ----------
    positions : torch.Tensor
        Shape (num_tokens,): the position of each patch token. A CLS token gets no code:
        :class:`specvit.SpecViT` adds this one before it prepends the CLS token.
    embed_dim : int
        Token width (even).
    max_period : float
        Longest period of the code in the units of ``positions``.
    """

    def __init__(self, positions: torch.Tensor, embed_dim: int, max_period: float) -> None:
        super().__init__()
        code = sinusoidal_code(positions, embed_dim, max_period)
        self.register_buffer("code", code[None], persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Add the code to tokens of shape (B, num_tokens, D)."""
        return tokens + self.code.to(tokens.dtype)
