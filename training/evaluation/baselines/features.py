"""The baselines' input: normalised flux and its inverse variance, optionally block-averaged.

The flux is divided by its median (the scale-free input every model here sees,
:func:`specvit.preprocessing.model_input`, without its ``− 1`` offset), σ by the same median.
Averaging over blocks of ``block`` pixels (4096 / block features) is the documented feature
downsampling of the tree and linear models; the inverse variance of a block mean is
``block² / Σσ²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from specvit.config import SpecViTConfig
from specvit.preprocessing import model_input, valid_pixels

__all__ = ["Features", "features"]

_CONFIG = SpecViTConfig()


@dataclass
class Features:
    """Inputs and labels of a set of spectra.

    Attributes
    ----------
    x : numpy.ndarray
        ``(N, L / block)`` float32 normalised flux (≈ 1 in the continuum).
    ivar : numpy.ndarray
        ``(N, L / block)`` float32 inverse variance of ``x`` (0 for masked pixels).
    labels : numpy.ndarray or None
        ``(N, 3)`` true labels (T_eff, log g, [M/H]) when known.
    block : int
        Pixels per feature.
    """

    x: np.ndarray
    ivar: np.ndarray
    labels: np.ndarray | None
    block: int

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, n: int) -> Features:
        """The first ``n`` spectra."""
        labels = None if self.labels is None else self.labels[:n]
        return Features(self.x[:n], self.ivar[:n], labels, self.block)


def features(
    flux: np.ndarray | torch.Tensor,
    error: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | None = None,
    block: int = 1,
) -> Features:
    """:class:`Features` of spectra ``(N, 4096)`` in any flux unit.

    Raises
    ------
    ValueError
        If ``block`` does not divide the number of pixels, or a spectrum cannot be normalised.
    """
    flux, error = torch.as_tensor(flux), torch.as_tensor(error)
    if flux.shape[-1] % block:
        raise ValueError(f"block={block} does not divide {flux.shape[-1]} pixels")
    x, scale = model_input(flux, error, _CONFIG)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError(f"{int((~torch.isfinite(scale)).sum())} spectra cannot be normalised")
    x = x[:, 0] + 1.0
    var = torch.where(
        valid_pixels(flux, error), (error.float() / scale[:, None]).square(), torch.inf
    )
    n = x.shape[0]
    if block > 1:
        x = x.reshape(n, -1, block).mean(-1)
        var = var.reshape(n, -1, block).sum(-1) / block**2
    ivar = torch.where(torch.isfinite(var), var.reciprocal(), 0.0)
    lab = None if labels is None else np.asarray(labels, dtype=np.float64)
    return Features(x.numpy().astype(np.float32), ivar.numpy().astype(np.float32), lab, block)
