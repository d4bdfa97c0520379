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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map (B, D) features to (B, num_labels, K)."""
        return self.fc(features).view(-1, self.num_labels, self.moments)
