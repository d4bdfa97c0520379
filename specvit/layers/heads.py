"""Regression heads: a point estimate, or a Gaussian (mean, log σ) per label."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RegressionHead", "sigma_network"]


def sigma_network(embed_dim: int, hidden: int, num_labels: int) -> nn.Sequential:
    """A Gaussian head's σ network: ``Linear(embed_dim, hidden) → GELU → Linear(hidden,
    num_labels)``, log σ per label from the pooled features."""
    return nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, num_labels))


class RegressionHead(nn.Module):
    """A mean (and, for a Gaussian head, a log σ) per label from (B, D) features.

    The mean is ``Linear(D, num_labels)`` of the features. A Gaussian head's log σ is either
    the same linear map's second output per label (``sigma_hidden=0``: one ``Linear(D,
    num_labels * 2)``) or its own small network, ``Linear(D, H) → GELU → Linear(H,
    num_labels)`` with ``H = sigma_hidden``, which can tell spectra apart that the means' linear
    map weighs alike (a clean spectrum from one with real-data effects, say).

    Parameters
    ----------
    embed_dim, num_labels : int
        Input width and number of labels.
    gaussian : bool
        If true, K = 2 (mean, log σ); otherwise K = 1 (mean).
    sigma_hidden : int
        Hidden width of the σ network (Gaussian head only); 0: log σ from the linear map.
    """

    def __init__(
        self, embed_dim: int, num_labels: int, gaussian: bool = False, sigma_hidden: int = 0
    ) -> None:
        super().__init__()
        if sigma_hidden and not gaussian:
            raise ValueError("a σ network needs a Gaussian head")
        self.num_labels = num_labels
        self.moments = 2 if gaussian else 1
        self.sigma: nn.Module | None = None
        if sigma_hidden:
            self.fc = nn.Linear(embed_dim, num_labels)
            self.sigma = sigma_network(embed_dim, sigma_hidden, num_labels)
        else:
            self.fc = nn.Linear(embed_dim, num_labels * self.moments)

    def forward(self, features: torch.Tensor, detach_sigma: bool = False) -> torch.Tensor:
        """Map (B, D) features to (B, num_labels, K).

        With ``detach_sigma`` (K = 2), log σ comes from ``features.detach()``: the same values,
        but a loss on σ trains this head's σ weights and nothing upstream.
        """
        if self.sigma is not None:
            log_sigma = self.sigma(features.detach() if detach_sigma else features)
            return torch.stack([self.fc(features), log_sigma], dim=-1)
        out = self.fc(features).view(-1, self.num_labels, self.moments)
        if detach_sigma and self.moments == 2:
            sigma = self.fc(features.detach()).view(-1, self.num_labels, 2)[..., 1:]
            out = torch.cat([out[..., :1], sigma], dim=-1)
        return out
