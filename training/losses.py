"""Regression losses in normalised label space."""

from __future__ import annotations

import math

import torch

__all__ = ["GAUSSIAN_LOSSES", "LOSSES", "regression_loss"]

#: Loss names accepted by :func:`regression_loss`.
LOSSES = ("mse", "l1", "gaussian_nll", "decoupled_nll")
#: The losses that train a Gaussian (mean, log σ) head; the others train a point head.
GAUSSIAN_LOSSES = ("gaussian_nll", "decoupled_nll")

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def regression_loss(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over spectra and labels.

    Parameters
    ----------
    output : torch.Tensor
        Model output (B, n_labels, K): K = 1 (mean) or K = 2 (mean, log σ), normalised units.
    target : torch.Tensor
        (B, n_labels) normalised labels.
    kind : {"mse", "l1", "gaussian_nll", "decoupled_nll"}
        ``"gaussian_nll"`` is ``log σ + (target − mean)² / (2σ²) + ½ log 2π`` and needs K = 2.
        ``"decoupled_nll"`` (K = 2) is the MSE of the mean plus the Gaussian NLL of σ with the
        mean detached: the mean gets exactly the MSE gradient (the heteroscedastic NLL scales
        it by 1/σ², which stalls the means of hard, low-SNR spectra) and σ learns the
        expected squared residual. ``"mse"`` and ``"l1"`` need K = 1.

    Returns
    -------
    torch.Tensor
        Scalar loss (float32 even under autocast).
    """
    out, target = output.float(), target.float()
    if out.dim() != 3 or out.shape[:2] != target.shape:
        raise ValueError(
            f"output {tuple(out.shape)} does not match target {tuple(target.shape)} as (B, n, K)"
        )
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose from {LOSSES}")
    if (kind in GAUSSIAN_LOSSES) != (out.shape[2] == 2):
        raise ValueError(f"loss {kind!r} does not fit a head with K={out.shape[2]} outputs")
    mean = out[..., 0]
    if kind == "mse":
        return (mean - target).pow(2).mean()
    if kind == "l1":
        return (mean - target).abs().mean()
    log_sigma = out[..., 1]
    if kind == "decoupled_nll":
        z = (target - mean.detach()) * torch.exp(-log_sigma)
        nll = (log_sigma + 0.5 * z.pow(2)).mean() + _HALF_LOG_2PI
        return (mean - target).pow(2).mean() + nll
    z = (target - mean) * torch.exp(-log_sigma)
    return (log_sigma + 0.5 * z.pow(2)).mean() + _HALF_LOG_2PI
