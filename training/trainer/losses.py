"""Regression losses in normalised label space."""

from __future__ import annotations

import math

import torch

__all__ = ["GAUSSIAN_LOSSES", "LOSSES", "MEAN_TARGET_LOSSES", "regression_loss"]

#: Loss names accepted by :func:`regression_loss`.
LOSSES = ("mse", "l1", "gaussian_nll", "decoupled_nll")
#: The losses that train a Gaussian (mean, log σ) head; the others train a point head.
GAUSSIAN_LOSSES = ("gaussian_nll", "decoupled_nll")
#: The losses whose mean is trained by squared error alone, so it may take its own target.
MEAN_TARGET_LOSSES = ("mse", "decoupled_nll")

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def regression_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    mean_target: torch.Tensor | None = None,
) -> torch.Tensor:
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
    mean_target : torch.Tensor, optional
        (B, n_labels) normalised target of the mean alone (a teacher's posterior mean,
        :mod:`training.trainer.teacher`), for ``"mse"`` and ``"decoupled_nll"``; σ still learns from
        ``target``, the true labels, so it keeps measuring the error against them.

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
    if mean_target is not None and (
        kind not in MEAN_TARGET_LOSSES or mean_target.shape != target.shape
    ):
        raise ValueError(
            f"mean_target {tuple(mean_target.shape)} needs a loss in {MEAN_TARGET_LOSSES} and "
            f"the target's shape {tuple(target.shape)}; got loss {kind!r}"
        )
    mean = out[..., 0]
    if kind == "l1":
        return (mean - target).abs().mean()
    if kind == "gaussian_nll":
        z = (target - mean) * torch.exp(-out[..., 1])
        return (out[..., 1] + 0.5 * z.pow(2)).mean() + _HALF_LOG_2PI
    mse = (mean - (target if mean_target is None else mean_target.float())).pow(2).mean()
    if kind == "mse":
        return mse
    log_sigma = out[..., 1]
    z = (target - mean.detach()) * torch.exp(-log_sigma)
    return mse + (log_sigma + 0.5 * z.pow(2)).mean() + _HALF_LOG_2PI
