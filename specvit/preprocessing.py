"""Turn flux and σ arrays on the model's grid into the model's input tensor.

This is the one place where a spectrum becomes model input; training and
:func:`specvit.predict` both call :func:`model_input`, so a model sees at inference exactly what
it saw in training.
"""

from __future__ import annotations

import numpy as np
import torch

from specvit.config import SpecViTConfig

__all__ = ["median_snr", "model_input", "valid_pixels"]


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
    valid = torch.isfinite(flux)
    if error is not None:
        valid &= torch.isfinite(error) & (error > 0)
    return valid


def _masked_median(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Lower median over the last axis of the ``valid`` entries; NaN where none is valid.

    The same element ``torch.nanmedian`` picks; when every entry is valid (``valid`` None says
    so without a check) it comes from numpy's partial sort on the CPU, several times faster
    than torch's full sort.
    """
    if values.shape[-1] == 0:
        return torch.full(values.shape[:-1], torch.nan, dtype=values.dtype, device=values.device)
    fast = values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64)
    if fast and (valid is None or bool(valid.all())):
        k = (values.shape[-1] - 1) // 2
        return torch.from_numpy(np.partition(values.numpy(), k, axis=-1)[..., k])
    if valid is None:
        return torch.nanmedian(values, dim=-1).values
    return torch.nanmedian(torch.where(valid, values, torch.nan), dim=-1).values


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
    usable = torch.isfinite(scale)[:, None]
    safe_scale = torch.where(usable[:, 0], scale, 1.0)[:, None]
    keep = good & usable
    offset = 1.0 if config.input_norm == "median" else 0.0
    channels = [torch.where(keep, flux / safe_scale - offset, 0.0)]
    if config.in_chans == 2:
        inverr = torch.where(keep, safe_scale / torch.where(keep, error, 1.0), 0.0)
        channels.append(inverr.log1p() if config.input_channels == "flux+lnsnr" else inverr)
    return torch.stack(channels, dim=1), scale
