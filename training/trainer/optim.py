"""AdamW and the warm-up + cosine (or constant) learning-rate schedule."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from training.trainer.config import OptimConfig

__all__ = ["build_optimizer", "cosine_factor"]


def cosine_factor(
    step: int, total: int, warmup: int, eta_ratio: float, constant: bool = False
) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then cosine.

    The multiplier rises linearly from ``1/warmup`` to 1 over the first ``warmup`` steps, then
    follows ``eta + (1 − eta)·(1 + cos(π·t))/2`` with ``t`` going from 0 to 1 over the
    remaining steps, ending at ``eta_ratio = eta_min / lr`` on the last step; with
    ``constant`` it stays at 1 after the warm-up.
    """
    if step < warmup:
        return (step + 1) / warmup
    if constant:
        return 1.0
    span = max(total - warmup - 1, 1)
    t = min((step - warmup) / span, 1.0)
    return eta_ratio + (1 - eta_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def build_optimizer(
    model: nn.Module, config: OptimConfig, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over all parameters and a per-step :func:`cosine_factor` schedule.

    Parameters
    ----------
    model : torch.nn.Module
        The model to optimise.
    config : OptimConfig
        Learning rate, weight decay, betas, η_min, warm-up and schedule.
    total_steps : int
        Steps of the whole run (epochs × steps per epoch); the cosine ends there.

    Returns
    -------
    optimizer, scheduler
        Call ``scheduler.step()`` after every optimiser step.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=tuple(config.betas),
        weight_decay=config.weight_decay,
    )
    factor = functools.partial(
        cosine_factor,
        total=total_steps,
        warmup=config.warmup_steps,
        eta_ratio=config.eta_min / config.lr,
        constant=config.schedule == "constant",
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
