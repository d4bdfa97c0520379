"""Turn flux and σ arrays on the model's grid into the model's input tensor.

This is the one place where a spectrum becomes model input; training and
:func:`specvit.predict` both call :func:`model_input`, so a model sees at inference exactly what
it saw in training.

On the CPU the work is done by numpy on views of the tensors (no copies): its comparisons,
``where`` and partial sort are 5–20× faster than torch's CPU kernels for these (B, 4096)
arrays, and the two per-spectrum medians are split over ``torch.get_num_threads()`` threads
(numpy releases the GIL). Elsewhere (CUDA, autograd) it is the same arithmetic in torch.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np
import torch

from specvit.config import SpecViTConfig

__all__ = ["median_snr", "model_input", "valid_pixels"]

#: Fewest rows a thread takes in a median (one row of 4096 pixels costs ≈ 25 µs).
_ROWS_PER_THREAD = 32


def _arrays(*tensors: torch.Tensor | None) -> tuple[ModuleType, list[Any]]:
    """The array module to compute with and the arrays: numpy views of CPU float / bool
    tensors that need no gradient, else torch and the tensors themselves."""
    given = [t for t in tensors if t is not None]
    if all(
        t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64, torch.bool)
        and not t.requires_grad
        for t in given
    ):
        return np, [None if t is None else t.numpy() for t in tensors]
    return torch, list(tensors)


def valid_pixels(flux: torch.Tensor, error: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels usable for inference: finite flux and, when σ is given, finite σ > 0.

    Parameters
    ----------
    flux, error : torch.Tensor
        Shape (B, L); ``error`` is the 1σ uncertainty in the flux unit, or None.

    Returns
    -------
    torch.Tensor
        Boolean (B, L), True where the pixel is valid.
    """
    xp, (f, e) = _arrays(flux, error)
    valid = xp.isfinite(f)
    if e is not None:
        valid &= xp.isfinite(e) & (e > 0)
    return torch.as_tensor(valid)


@functools.cache
def _thread_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads for this process (``pid``: a forked child, whose copy of
    the parent's pool has no threads, gets its own)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="specvit-median")


def _by_rows(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """``fn(*arrays)`` (one value per row) computed on blocks of rows in parallel threads."""
    rows = arrays[0].shape[0]
    workers = min(torch.get_num_threads(), rows // _ROWS_PER_THREAD)
    if workers < 2:
        return fn(*arrays)
    edges = np.linspace(0, rows, workers + 1).astype(int)
    blocks = [[a[lo:hi] for a in arrays] for lo, hi in itertools.pairwise(edges)]
    pool = _thread_pool(workers, os.getpid())
    return np.concatenate(list(pool.map(lambda block: fn(*block), blocks)))


def _lower_median(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Lower median of each row of (R, L) ``values`` over its ``valid`` entries; NaN for none."""
    if valid is None or valid.all():
        k = (values.shape[-1] - 1) // 2
        return np.partition(values, k, axis=-1)[:, k]
    n = valid.sum(axis=-1)
    ordered = np.sort(np.where(valid, values, np.nan), axis=-1)  # NaN sorts last
    middle = np.take_along_axis(ordered, ((n - 1) // 2).clip(0)[:, None], axis=-1)[:, 0]
    return np.where(n > 0, middle, np.nan).astype(values.dtype)


def _masked_median(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Lower median over the last axis of the ``valid`` entries; NaN where none is valid.

    The same element as ``torch.nanmedian`` (``valid`` None: every entry is valid, unchecked;
    valid entries must not be NaN). On the CPU numpy's partial sort picks it (a full sort for
    rows with masked entries), several times faster than torch.
    """
    if values.shape[-1] == 0:
        return torch.full(values.shape[:-1], torch.nan, dtype=values.dtype, device=values.device)
    xp, (v, ok) = _arrays(values.detach(), valid)
    if xp is torch:
        if valid is not None:
            values = torch.where(valid, values, torch.nan)
        return torch.nanmedian(values, dim=-1).values
    length = v.shape[-1]
    rows = [v.reshape(-1, length)] + ([] if ok is None else [ok.reshape(-1, length)])
    return torch.from_numpy(_by_rows(_lower_median, *rows).reshape(v.shape[:-1]))


def median_snr(
    flux: torch.Tensor, error: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """SNR of each spectrum: the median over valid pixels of flux/σ (the paper's definition).

    Parameters
    ----------
    flux, error : torch.Tensor
        (..., L) flux and 1σ in the same unit.
    valid : torch.Tensor, optional
        (..., L) boolean mask of usable pixels (default: :func:`valid_pixels`).

    Returns
    -------
    torch.Tensor
        (...,) the lower median for an even number of valid pixels (as ``torch.median``); NaN
        for a spectrum without valid pixels.
    """
    if valid is None:
        valid = valid_pixels(flux, error)
    return _masked_median((flux / error).detach(), valid)


def model_input(
    flux: torch.Tensor,
    error: torch.Tensor | None,
    config: SpecViTConfig,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the (B, C, L) model input from spectra already on the model's grid.

    With ``config.input_norm == "median"`` the flux channel is ``flux / median − 1`` and σ is
    divided by the same median valid flux, so the input does not depend on the flux unit or
    the star's brightness and is centred on 0 (a centred input lets the transformer start
    learning at once; an input sitting at 1 stalled the tiny model for hundreds of steps).
    Invalid pixels (see :func:`valid_pixels`, combined with ``valid`` if given) are 0 in every
    channel: the median level in the flux channel, no information in the ``median/σ`` one.

    Parameters
    ----------
    flux : torch.Tensor
        (B, L) flux on the model's grid, any unit.
    error : torch.Tensor or None
        (B, L) 1σ in the flux unit. Required for the two-channel inputs (``"flux+inverr"``,
        ``"flux+lnsnr"``).
    config : SpecViTConfig
        The model's config.
    valid : torch.Tensor, optional
        (B, L) boolean; False marks further pixels to mask (e.g. a user's bad-pixel mask).

    Returns
    -------
    x : torch.Tensor
        (B, C, L) float32 model input.
    scale : torch.Tensor
        (B,) the flux each spectrum was divided by (1 when ``input_norm == "none"``); NaN
        where a spectrum has no valid pixel or a non-positive median, in which case its input
        row is meaningless and the caller must flag it.
    """
    if flux.dim() != 2 or flux.shape[1] != config.input_length:
        raise ValueError(
            f"flux must have shape (B, {config.input_length}) on the model grid, "
            f"got {tuple(flux.shape)}"
        )
    if error is not None and error.shape != flux.shape:
        raise ValueError(f"error shape {tuple(error.shape)} != flux shape {tuple(flux.shape)}")
    if config.in_chans == 2 and error is None:
        raise ValueError("this model takes a median/σ channel: pass the error array")
    flux = flux.float()
    error = None if error is None else error.float()
    good = valid_pixels(flux, error)
    if valid is not None:
        good &= valid.to(good.device)
    if config.input_norm == "median":
        scale = _masked_median(flux, good)
        scale = torch.where(scale > 0, scale, torch.nan)
    else:
        scale = torch.ones(flux.shape[0], device=flux.device)
    usable = torch.isfinite(scale)
    safe_scale = torch.where(usable, scale, 1.0)[:, None]
    x = flux.new_empty((flux.shape[0], config.in_chans, flux.shape[1]))
    xp, (f, e, ok, use, s, out) = _arrays(flux, error, good, usable[:, None], safe_scale, x)
    with np.errstate(divide="ignore"):  # σ = 0: masked below
        xp.divide(f, s, out=out[:, 0])
        if config.input_norm == "median":
            out[:, 0] -= 1.0
        if config.in_chans == 2:
            xp.divide(s, e, out=out[:, 1])
    if config.input_channels == "flux+lnsnr":
        x[:, 1].log1p_()  # torch's log1p (numpy's differs in the last bit)
    bad = ~(ok & use)
    for channel in range(config.in_chans):
        out[:, channel][bad] = 0.0
    return x, scale
