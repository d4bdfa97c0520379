"""Turn flux and σ arrays on the model's grid into the model's input tensor.

This is the one place where a spectrum becomes model input; training and
:func:`specvit.predict` both call :func:`model_input`, so a model sees at inference exactly what
it saw in training. It is also the home of the S/N of a spectrum, in two definitions, each its
own function: :func:`median_snr`, the *observed* S/N (a noisy spectrum's flux over its σ: the
``snr`` that the data engine, the evaluation sets and :func:`specvit.predict` store), and
:func:`expected_snr`, the *expected* S/N (noiseless flux over the noise model's σ: the ``snr``
of :func:`specvit.bounds.crlb_ceilings` and its tables). The third S/N in specvit, per pixel of a
flat-spectrum source (the exposure-time calculator's), is
:meth:`specvit.instrument.PFSNoiseModel.snr_flat`.

Every step is row by row, and on the CPU numpy does it on views of the tensors: its
comparisons, ``where`` and partial sort are 5–20× faster than torch's CPU kernels on these
(B, 4096) arrays, and blocks of rows run in up to ``torch.get_num_threads()`` worker threads
(:mod:`specvit._threads`; numpy releases the GIL). On other devices (and for tensors that need a
gradient) the same code runs in torch.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch

from specvit._threads import cpu_workers, map_in_workers
from specvit.config import SpecViTConfig
from specvit.continuum import fit_continuum
from specvit.velocity import Velocity, measure_rv, to_rest_frame

__all__ = [
    "Prepared",
    "expected_snr",
    "masked_median",
    "median_snr",
    "model_input",
    "prepare",
    "valid_pixels",
]

#: Fewest rows a thread takes (a median over 4096 pixels costs ≈ 25 µs per row).
_ROWS_PER_THREAD = 32


def _arrays(*tensors: torch.Tensor | None) -> tuple[ModuleType, list[Any]]:
    """The array module to compute with and the arrays: numpy views of CPU float / bool
    tensors that need no gradient, else torch and the tensors themselves."""
    if all(
        t is None
        or (
            t.device.type == "cpu"
            and t.dtype in (torch.float32, torch.float64, torch.bool)
            and not t.requires_grad
        )
        for t in tensors
    ):
        return np, [None if t is None else t.numpy() for t in tensors]
    return torch, list(tensors)


def _run(fn: Callable[..., None], *tensors: torch.Tensor | None) -> None:
    """``fn(*tensors)``, a row-by-row computation writing its output rows in place.

    CPU tensors (see :func:`_arrays`) go to ``fn`` as numpy views, in blocks of rows that run
    in :func:`specvit._threads.cpu_workers` threads; others as they are, in one call.
    """
    xp, arrays = _arrays(*tensors)
    rows = arrays[0].shape[0]
    workers = min(cpu_workers(), rows // _ROWS_PER_THREAD) if xp is np else 1
    if workers < 2:
        fn(*arrays)
        return
    edges = np.linspace(0, rows, workers + 1).astype(int)
    blocks = [
        [None if a is None else a[lo:hi] for a in arrays] for lo, hi in itertools.pairwise(edges)
    ]
    for _ in map_in_workers(lambda block: fn(*block), blocks):
        pass  # re-raises a worker's exception


def _rows(t: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """(..., L) as (R, L), detached."""
    return None if t is None else t.detach().reshape(-1, length)


def _median_rows(values: Any, valid: Any, out: Any) -> None:
    """``out`` (R,) = lower median of each row of ``values`` (R, L) over its ``valid`` entries
    (all when None; they must not be NaN), NaN for a row without any: the element
    ``torch.nanmedian`` picks. numpy: a partial sort (a full one for rows with masked entries)."""
    if not isinstance(values, np.ndarray):
        if valid is not None:
            values = torch.where(valid, values, torch.nan)
        out[:] = torch.nanmedian(values, dim=-1).values
    elif valid is None or valid.all():
        k = (values.shape[-1] - 1) // 2
        out[:] = np.partition(values, k, axis=-1)[:, k]
    else:
        n = valid.sum(axis=-1)
        ordered = np.where(valid, values, np.nan)
        ordered.sort(axis=-1)  # NaN last
        middle = np.take_along_axis(ordered, ((n - 1) // 2).clip(0)[:, None], axis=-1)[:, 0]
        out[:] = np.where(n > 0, middle, np.nan)


def masked_median(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Lower median over the last axis of the ``valid`` entries: the median of specvit.

    The same element ``torch.nanmedian`` picks (for an even count, the lower of the two middle
    values), computed as :func:`model_input` normalises and :func:`median_snr` medians.

    Parameters
    ----------
    values : torch.Tensor
        ``(..., L)`` values; entries that are not ``valid`` may be anything, valid ones must not
        be NaN.
    valid : torch.Tensor or None
        ``(..., L)`` boolean mask of the entries to take the median of (None: all).

    Returns
    -------
    torch.Tensor
        ``(...,)`` the medians, NaN where a row has no valid entry.
    """
    out = values.new_full(values.shape[:-1], torch.nan)
    length = values.shape[-1]
    if length and out.numel():
        _run(_median_rows, _rows(values, length), _rows(valid, length), out.view(-1))
    return out


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
    return torch.as_tensor(_valid(*_arrays(flux, error)[1]))


def _valid(flux: Any, error: Any) -> Any:
    """:func:`valid_pixels` of numpy arrays or torch tensors, in their own type."""
    xp = np if isinstance(flux, np.ndarray) else torch
    valid = xp.isfinite(flux)
    if error is not None:
        valid &= xp.isfinite(error) & (error > 0)
    return valid


def median_snr(
    flux: torch.Tensor, error: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """The observed S/N of each spectrum: the median over valid pixels of flux/σ.

    The paper's definition, applied to a spectrum as observed: its noisy flux and its σ (given,
    or estimated from the noisy flux as the data engine does). This is the ``snr`` stored by the
    data engine's shards (:mod:`specvit.io.hdf5`), the evaluation sets and the
    :func:`specvit.predict` table, and the S/N of the SNR bins and of the σ calibration. For a
    noiseless spectrum and the noise model's σ use :func:`expected_snr`.

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
    out = flux.new_full(flux.shape[:-1], torch.nan, dtype=torch.result_type(flux, error))
    length = flux.shape[-1]
    if length and out.numel():
        rows = (_rows(t, length) for t in (flux, error, valid))
        _run(_snr_rows, *rows, out.view(-1))
    return out


def expected_snr(flux: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The expected S/N of each spectrum: the median over pixels of noiseless flux / expected σ.

    No noise is drawn: ``flux`` is the model (emulator) spectrum and ``sigma`` the σ the noise
    model expects at it (or a given error spectrum), so this is the S/N a star *would* be
    observed at, free of the scatter of one noise draw. It is the ``snr`` of
    :func:`specvit.bounds.crlb_ceilings` (:attr:`specvit.bounds.Ceilings.snr`), of the bounds
    tables (:func:`specvit.bounds.magnitude_for_snr`) and of noiseless shards. Pixels with
    non-finite σ or σ ≤ 0 (masked) are left out, as in :func:`median_snr`.

    Parameters
    ----------
    flux : torch.Tensor
        (..., L) noiseless flux.
    sigma : torch.Tensor
        (..., L) expected 1σ in the unit of ``flux``.

    Returns
    -------
    torch.Tensor
        (...,) the lower median for an even number of pixels; NaN for a spectrum without any.
    """
    return median_snr(flux, sigma)


def _snr_rows(flux: Any, error: Any, valid: Any, out: Any) -> None:
    """:func:`median_snr` of (R, L) rows into ``out`` (R,), numpy arrays or torch tensors."""
    with np.errstate(divide="ignore", invalid="ignore"):  # invalid pixels: not in the median
        ratio = flux / error
    _median_rows(ratio, valid, out)


def _input_rows(
    flux: Any,
    error: Any,
    valid: Any,
    continuum: Any,
    snr_reference: Any,
    x: Any,
    scale: Any,
    *,
    config: SpecViTConfig,
) -> None:
    """Rows of :func:`model_input` into ``x`` (R, C, L) and ``scale`` (R,), in place, for numpy
    arrays or torch tensors; ``continuum`` (R, L) is the flux's divisor of
    ``input_norm="continuum"`` and ``snr_reference`` (R, L) the σ channel's numerator (None for
    the other normalisations)."""
    xp = np if isinstance(flux, np.ndarray) else torch
    good = _valid(flux, error)
    if valid is not None:
        good &= valid
    if config.input_norm == "median":
        _median_rows(flux, good, scale)
        scale[~(scale > 0)] = np.nan
        divisor = scale[:, None]
    elif config.input_norm == "continuum":
        _median_rows(continuum, good, scale)
        # a continuum ≤ 0 on a valid pixel (a fit to a spectrum that is not a star's) is unusable
        scale[((continuum <= 0) & good).any(-1)] = np.nan
        divisor = continuum
    else:
        scale[:] = 1.0
        divisor = scale[:, None]
    usable = xp.isfinite(scale)[:, None]
    safe = xp.where(usable & (divisor > 0), divisor, 1.0)
    with np.errstate(divide="ignore"):  # σ = 0: masked below
        xp.divide(flux, safe, out=x[:, 0])
        if config.input_norm != "none":
            x[:, 0] -= 1.0
        if config.in_chans == 2:
            reference = safe if snr_reference is None else snr_reference
            xp.divide(xp.where(usable & (reference > 0), reference, 1.0), error, out=x[:, 1])
    if config.input_channels == "flux+lnsnr":
        # torch's log1p on numpy's view too: numpy's can differ in the last bit, and training
        # runs resumed across versions must see the same input
        channel = torch.from_numpy(x[:, 1]) if xp is np else x[:, 1]
        channel.log1p_()
    bad = ~(good & usable)
    for channel in range(config.in_chans):
        x[:, channel][bad] = 0.0


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
        (B, C, L) float32 model input (data: no gradient flows back to ``flux``).
    scale : torch.Tensor
        (B,) the flux each spectrum was divided by (1 when ``input_norm == "none"``); NaN
        where a spectrum has no valid pixel or a non-positive median, in which case its input
        row is meaningless and the caller must flag it.
    """
    x, scale, _ = _model_input(flux, error, config, valid)
    return x, scale


def _model_input(
    flux: torch.Tensor,
    error: torch.Tensor | None,
    config: SpecViTConfig,
    valid: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`model_input`, and the continuum fit the flux was divided by (None unless
    ``input_norm="continuum"``)."""
    if flux.dim() != 2 or flux.shape[1] != config.input_length:
        raise ValueError(
            f"flux must have shape (B, {config.input_length}) on the model grid, "
            f"got {tuple(flux.shape)}"
        )
    if error is not None and error.shape != flux.shape:
        raise ValueError(f"error shape {tuple(error.shape)} != flux shape {tuple(flux.shape)}")
    if config.in_chans == 2 and error is None:
        raise ValueError("this model takes a median/σ channel: pass the error array")
    flux = flux.detach().float()
    error = None if error is None else error.detach().float()
    valid = None if valid is None else valid.to(flux.device)
    continuum = snr_reference = None
    if config.input_norm == "continuum":
        if error is None:
            raise ValueError("a model with input_norm='continuum' needs the error array")
        continuum, snr_reference = _continuum_and_snr_reference(flux, error, valid, config)
    x = flux.new_empty((flux.shape[0], config.in_chans, flux.shape[1]))
    scale = flux.new_empty(flux.shape[0])
    _run(
        functools.partial(_input_rows, config=config),
        flux,
        error,
        valid,
        continuum,
        snr_reference,
        x,
        scale,
    )
    return x, scale, continuum


def _continuum_and_snr_reference(
    flux: torch.Tensor, error: torch.Tensor, valid: torch.Tensor | None, config: SpecViTConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_norm="continuum"``: the flux's divisor, the continuum fit, and the σ channel's
    numerator, the continuum times ``median(S) / trend(S)``: the S/N per pixel ``S =
    continuum/σ`` keeps its level and its pixel-to-pixel structure (sky lines) but loses its
    smooth trend, which follows the star's observed continuum (through its photon noise) and
    would tell the model the reddening the flux channel hides."""
    good = valid_pixels(flux, error)
    if valid is not None:
        good &= valid
    continuum = fit_continuum(flux, error, good, config.continuum_order)
    usable = good & (continuum > 0)
    snr = torch.where(usable, continuum / error, 0.0)
    trend = fit_continuum(snr, torch.ones_like(snr), usable, config.continuum_order)
    level = masked_median(snr, usable).unsqueeze(-1)
    flat = trend > 0
    reference = torch.where(flat, continuum * level / torch.where(flat, trend, 1.0), continuum)
    return continuum, reference


class Prepared(NamedTuple):
    """What :func:`prepare` makes of a batch of spectra."""

    #: (B, C, L) float32 model input.
    x: torch.Tensor
    #: (B,) the flux each spectrum was divided by (see :func:`model_input`); NaN: unusable.
    scale: torch.Tensor
    #: The velocity each spectrum was shifted by (:class:`specvit.velocity.Velocity`: measured,
    #: or given with NaN ``v_rad_err`` and ``contrast``); None for a model without
    #: ``rest_frame``.
    velocity: Velocity | None
    #: (B, L) the flux, σ and valid pixels the input was built from (in the rest frame for a
    #: ``rest_frame`` model; ``valid`` combines :func:`valid_pixels` with the caller's mask).
    flux: torch.Tensor
    error: torch.Tensor | None
    valid: torch.Tensor
    #: (B, L) the continuum fit the flux was divided by (:func:`specvit.continuum.fit_continuum`,
    #: in the flux's unit), None unless ``input_norm="continuum"``.
    continuum: torch.Tensor | None


def prepare(
    flux: torch.Tensor,
    error: torch.Tensor | None,
    config: SpecViTConfig,
    valid: torch.Tensor | None = None,
    rv: torch.Tensor | None = None,
) -> Prepared:
    """Spectra on the model's grid → model input: the path of training and inference alike.

    For a model with ``config.rest_frame`` each spectrum is first shifted to its rest frame
    (:func:`specvit.velocity.to_rest_frame`) by ``rv`` or, where that is None, by its velocity
    measured with :func:`specvit.velocity.measure_rv`; then :func:`model_input` builds the input.

    Parameters
    ----------
    flux, error, config, valid
        As for :func:`model_input` (``error`` is required with ``rest_frame``).
    rv : torch.Tensor, optional
        (B,) known radial velocities (km/s); None to measure them (``rest_frame`` models only).

    Returns
    -------
    Prepared
    """
    velocity = None
    good = valid_pixels(flux, error)
    if valid is not None:
        good &= valid.to(good.device)
    if config.rest_frame:
        if error is None:
            raise ValueError("a rest_frame model needs the error array")
        grid = config.wavelength_grid
        if rv is None:
            velocity = measure_rv(flux, error, good, grid)
        else:
            v_rad = torch.as_tensor(rv, dtype=torch.float32, device=flux.device).expand(
                flux.shape[0]
            )
            unknown = torch.full_like(v_rad, torch.nan)
            velocity = Velocity(v_rad, unknown, unknown)
        flux, error, good = to_rest_frame(flux, error, good, velocity.v_rad, grid)
    elif rv is not None:
        raise ValueError("this model takes rest-frame spectra: it cannot use a radial velocity")
    x, scale, continuum = _model_input(flux, error, config, good)
    return Prepared(x, scale, velocity, flux, error, good, continuum)
