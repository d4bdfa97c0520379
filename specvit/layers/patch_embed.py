"""Tokenizers: turn a (B, C, L) spectrum into (B, N, D) patch tokens."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Conv1dPatchEmbed", "SlidingWindowPatchEmbed", "build_patch_embed"]


class Conv1dPatchEmbed(nn.Module):
    """C1D tokenizer: ``Conv1d(C, D, kernel=patch_size, stride=patch_stride)``.

    Parameters
    ----------
    in_chans, embed_dim, patch_size, patch_stride : int
        Input channels C, token width D, window length and step in pixels.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, patch_stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, L) to (B, N, D)."""
        return self.proj(x).transpose(1, 2)


class SlidingWindowPatchEmbed(nn.Module):
    """SW tokenizer: unfold into (possibly overlapping) windows, then one shared ``Linear``.

    Parameters
    ----------
    in_chans, embed_dim, patch_size, patch_stride : int
        Input channels C, token width D, window length and step in pixels.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, patch_stride: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        self.proj = nn.Linear(in_chans * patch_size, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, L) to (B, N, D)."""
        windows = x.unfold(-1, self.patch_size, self.patch_stride)  # (B, C, N, P)
        windows = windows.permute(0, 2, 1, 3).flatten(2)  # (B, N, C*P)
        return self.proj(windows)


def build_patch_embed(
    kind: str, in_chans: int, embed_dim: int, patch_size: int, patch_stride: int
) -> nn.Module:
    """Build the tokenizer named ``kind`` (``"c1d"`` or ``"sw"``)."""
    classes = {"c1d": Conv1dPatchEmbed, "sw": SlidingWindowPatchEmbed}
    if kind not in classes:
        raise ValueError(f"unknown tokenizer {kind!r}; choose from {sorted(classes)}")
    return classes[kind](in_chans, embed_dim, patch_size, patch_stride)
