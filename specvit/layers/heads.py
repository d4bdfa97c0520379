"""Regression heads: a point estimate, or a Gaussian (mean, log σ) per label."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RegressionHead"]


class RegressionHead(nn.Module):
    """``Linear(D, num_labels * K)`` reshaped to (B, num_labels, K).

    Parameters
    ----------
    embed_dim, num_labels : int
        Input width and number of labels.
    gaussian : bool
        If true, K = 2 (mean, log σ); otherwise K = 1 (mean).
    """

    def __init__(self, embed_dim: int, num_labels: int, gaussian: bool = False) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.moments = 2 if gaussian else 1
        self.fc = nn.Linear(embed_dim, num_labels * self.moments)

    def forward(self, features: torch.Tensor, detach_sigma: bool = False) -> torch.Tensor:
        """Map (B, D) features to (B, num_labels, K).

        With ``detach_sigma`` (K = 2), log σ comes from ``features.detach()``: the same values,
        but a loss on σ trains this layer's σ rows and nothing upstream.
        """
        out = self.fc(features).view(-1, self.num_labels, self.moments)
        if detach_sigma and self.moments == 2:
            sigma = self.fc(features.detach()).view(-1, self.num_labels, 2)[..., 1:]
            out = torch.cat([out[..., :1], sigma], dim=-1)
        return out
