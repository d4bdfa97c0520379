"""Radial velocities of observed spectra, and their shift into the star's rest frame.

A model trained with ``rest_frame = True`` takes spectra in the observed frame: before its
input is built (:func:`specvit.preprocessing.prepare`), each spectrum's velocity is measured
here — or given by the user — and the spectrum is read off at its rest wavelengths.

**Measuring.** :func:`measure_rv` cross-correlates each spectrum's line structure with a few
emulator templates (:data:`TEMPLATE_LABELS`: cool and warm, metal-rich and metal-poor, dwarfs and
giants) over ±:data:`RV_SEARCH_KMS`. The line structure is the flux over its continuum
(:func:`specvit.continuum.fit_continuum`) minus 1, weighted by (continuum/σ)², on a grid uniform
in ln λ (4096 points across the arm, 16.1 km/s apart), where a velocity is one shift at every
wavelength. For each template ``t`` and lag ``s`` the amplitude of ``t`` shifted by ``s`` is
fitted in closed form; its χ² improvement ``(Σ w d t_s)² / Σ w t_s²`` (signed, so that emission
does not match absorption) is the score. The best template's best lag, refined by a parabola
through its neighbours, is the velocity; ``v_rad_err`` is from the score's curvature there
(``σ_s² = 2 / −score''``), with the template mismatch left out.

**Shifting.** :func:`to_rest_frame` reads flux at ``λ (1 + v/c)`` (the observed wavelength of
rest wavelength λ) by cubic (Catmull–Rom) interpolation on the linear grid, propagates σ with
the squared interpolation weights, and masks a rest pixel whose four neighbours are not all
valid observed pixels (the arm's ends at large velocities).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from specvit.continuum import fit_continuum
from specvit.emulator.doppler import C_KMS
from specvit.instrument.grid import WavelengthGrid

__all__ = [
    "CONTINUUM_ORDER",
    "MIN_PEAK_CONTRAST",
    "PEAK_SEPARATION",
    "RV_SEARCH_KMS",
    "TEMPLATE_LABELS",
    "Velocity",
    "catmull_rom_shift",
    "catmull_rom_weights",
    "interpolated_variance",
    "measure_rv",
    "to_rest_frame",
]

#: The radial-velocity search range, ± km/s: the one home of specvit's velocity limit (the data
#: engine draws no velocity beyond it).
RV_SEARCH_KMS = 1000.0
#: (T_eff, log g, [M/H]) of the cross-correlation templates.
TEMPLATE_LABELS = (
    (4000.0, 1.5, -0.5),
    (4500.0, 4.5, 0.0),
    (5000.0, 2.5, -2.0),
    (5750.0, 4.0, -1.0),
)
#: Legendre order of the continuum taken off before the cross-correlation.
CONTINUUM_ORDER = 5
#: Lags (16.1 km/s each) beyond which another peak of the score counts as a rival.
PEAK_SEPARATION = 4
#: A velocity whose peak beats its best rival by less than this χ² improvement is ambiguous
#: (``RV_UNCERTAIN``). On 3 000 engine spectra (every real-data effect, −600…+600 km/s) at
#: S/N ≥ 5 it marks 0.8 % of the velocities within 30 km/s of the truth and 10 of the 18 off by
#: more (docs/research/observed_model.md).
MIN_PEAK_CONTRAST = 10.0


class Velocity(NamedTuple):
    """Measured radial velocities (km/s), ``(B,)`` float32 each."""

    #: The velocity (NaN where no spectrum could be measured: no valid pixels).
    v_rad: torch.Tensor
    #: Its 1σ from the score's curvature (template mismatch not included).
    v_rad_err: torch.Tensor
    #: How much the best peak's χ² improvement exceeds the best one more than
    #: :data:`PEAK_SEPARATION` lags away (NaN where there is no velocity): below
    #: :data:`MIN_PEAK_CONTRAST` the velocity is ambiguous.
    contrast: torch.Tensor


def catmull_rom_weights(t: torch.Tensor) -> torch.Tensor:
    """The four cubic (Catmull–Rom) interpolation weights at fractional offsets ``t``.

    Parameters
    ----------
    t : torch.Tensor
        ``(...)`` offsets in [0, 1) from pixel ``i`` towards ``i + 1``.

    Returns
    -------
    torch.Tensor
        ``(..., 4)`` the weights of pixels ``i − 1, i, i + 1, i + 2`` (they sum to 1).
    """
    t2 = t * t
    t3 = t2 * t
    return torch.stack(
        (
            t2 - 0.5 * (t3 + t),
            1.5 * t3 - 2.5 * t2 + 1.0,
            2.0 * t2 + 0.5 * t - 1.5 * t3,
            0.5 * (t3 - t2),
        ),
        dim=-1,
    )


def catmull_rom_shift(values: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``values`` read at fractional pixel positions ``pos`` by cubic (Catmull–Rom) interpolation.

    Parameters
    ----------
    values : torch.Tensor
        (R, L) pixel values.
    pos : torch.Tensor
        (R, L) (fractional) pixel positions, clamped to ``[1, L − 2.01]``.

    Returns
    -------
    torch.Tensor
        (R, L) the interpolated values.
    """
    n = values.shape[-1]
    pos = pos.clamp(1.0, n - 2.01)
    i = pos.floor().long()
    weights = catmull_rom_weights(pos - i)
    return sum(weights[..., k] * values.gather(-1, i + (k - 1)) for k in range(4))


def to_rest_frame(
    flux: torch.Tensor,
    error: torch.Tensor,
    valid: torch.Tensor,
    rv: torch.Tensor,
    grid: WavelengthGrid,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spectra observed at velocities ``rv`` read off at their rest wavelengths, on ``grid``.

    Parameters
    ----------
    flux, error : torch.Tensor
        ``(B, L)`` observed flux and 1σ on ``grid``.
    valid : torch.Tensor
        ``(B, L)`` boolean: usable observed pixels.
    rv : torch.Tensor
        ``(B,)`` radial velocities in km/s (receding > 0); a non-finite one marks the row
        invalid.
    grid : WavelengthGrid
        The spectra's (linear) grid.

    Returns
    -------
    flux, error, valid : torch.Tensor
        ``(B, L)`` each, in the rest frame: pixel ``i`` holds the spectrum at observed wavelength
        ``λ_i (1 + v/c)``; a pixel is valid where its four interpolation neighbours are valid
        observed pixels on the grid.
    """
    n = flux.shape[-1]
    wave = _wavelength(grid, str(flux.device))
    finite = torch.isfinite(rv)
    beta = torch.where(finite, rv.double(), 0.0)[:, None] / C_KMS
    pos = ((wave * (1.0 + beta) - grid.start) / grid.step).float()
    inside = (pos >= 1.0) & (pos <= n - 2.01) & finite[:, None]
    pos = pos.clamp_(1.0, n - 2.01)
    i = pos.floor()
    weights = catmull_rom_weights(pos.sub_(i)).unbind(-1)
    i = i.long()
    values = torch.where(valid, flux.float(), 0.0)
    variance = torch.where(valid, error.float().square(), 0.0)
    valid_f = valid.float()
    out_flux, out_var, count = (torch.zeros_like(values) for _ in range(3))
    for k, w in enumerate(weights):
        taps = i + (k - 1)
        out_flux.addcmul_(w, values.gather(-1, taps))
        out_var.addcmul_(w.square(), variance.gather(-1, taps))
        count.add_(valid_f.gather(-1, taps))
    out_valid = inside & (count > 3.5)
    return out_flux, out_var.sqrt(), out_valid


def interpolated_variance(rv: torch.Tensor, grid: WavelengthGrid) -> torch.Tensor:
    """``(B, L)`` the fraction ``Σ w²`` of white noise's variance that :func:`to_rest_frame`'s
    interpolation keeps at each rest pixel (1 where it reads a pixel as it is, 0.64 half-way).

    The shifted noise is correlated with its neighbours' (they share observed pixels), which the
    σ :func:`to_rest_frame` propagates do not say: for a signal smooth over a few pixels the
    shifted spectrum carries the information of the observed one, so a likelihood that takes
    its pixels as independent wants σ over ``√`` of this fraction. Non-finite velocities give 1.

    Parameters
    ----------
    rv : torch.Tensor
        ``(B,)`` velocities (km/s) the spectra were shifted by.
    grid : WavelengthGrid
        The spectra's (linear) grid.
    """
    wave = _wavelength(grid, str(rv.device))
    beta = torch.where(torch.isfinite(rv), rv.double(), 0.0)[:, None] / C_KMS
    pos = (wave * (1.0 + beta) - grid.start) / grid.step
    return catmull_rom_weights((pos - pos.floor()).float()).square().sum(-1)


@functools.lru_cache(maxsize=8)
def _wavelength(grid: WavelengthGrid, device: str) -> torch.Tensor:
    """The grid's pixel-centre wavelengths (Å), float64, on ``device``."""
    return torch.as_tensor(grid.wavelength(), dtype=torch.float64, device=device)


class _Bank(NamedTuple):
    """The cross-correlation's fixed parts for one grid and device."""

    log_pos: torch.Tensor  # (N,) linear-grid pixel positions of the log grid's points
    lags: torch.Tensor  # (S,) integer lags, log-grid pixels
    step: float  # log grid spacing (Δ ln λ)
    shifted: torch.Tensor  # (N, K·S) template t shifted by each lag, K blocks of S
    shifted_sq: torch.Tensor  # (N, K·S) the same for t²


def _to_log_grid(values: torch.Tensor, log_pos: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` linear-grid values linearly interpolated at ``log_pos``: ``(B, N)``."""
    i = log_pos.floor().long().clamp(0, values.shape[-1] - 2)
    frac = (log_pos - i).to(values.dtype)
    return values[:, i] * (1.0 - frac) + values[:, i + 1] * frac


@functools.lru_cache(maxsize=4)
def _bank(grid: WavelengthGrid, device: str, search_kms: float) -> _Bank:
    from specvit.emulator.emulator import Emulator  # the templates: built once, on first use

    emulator = Emulator.load(grid=grid, dtype=torch.float64)
    spectra = emulator(torch.tensor(TEMPLATE_LABELS, dtype=torch.float64)).float()
    ones = torch.ones_like(spectra)
    lines = spectra / fit_continuum(spectra, ones, ones.bool(), CONTINUUM_ORDER) - 1.0
    n = grid.num
    log_wave = np.linspace(math.log(grid.start), math.log(grid.stop), n)
    step = float(log_wave[1] - log_wave[0])
    log_pos = torch.as_tensor((np.exp(log_wave) - grid.start) / grid.step, dtype=torch.float32)
    templates = _to_log_grid(lines, log_pos)  # (K, N)
    max_lag = math.ceil(math.log1p(search_kms / C_KMS) / step)
    lags = torch.arange(-max_lag, max_lag + 1)
    # shifted[j, (k, s)] = t_k[j − s] (zero beyond the template): the data at log pixel j match
    # template pixel j − s when the star moves by s pixels
    index = torch.arange(n)[:, None] - lags[None, :]  # (N, S)
    inside = (index >= 0) & (index < n)
    gathered = templates[:, index.clamp(0, n - 1)] * inside  # (K, N, S)
    shifted = gathered.permute(1, 0, 2).reshape(n, -1).contiguous()
    shifted_sq = shifted.square()
    return _Bank(
        log_pos.to(device), lags.to(device), step, shifted.to(device), shifted_sq.to(device)
    )


def measure_rv(
    flux: torch.Tensor,
    error: torch.Tensor,
    valid: torch.Tensor,
    grid: WavelengthGrid,
    search_kms: float = RV_SEARCH_KMS,
) -> Velocity:
    """Each spectrum's radial velocity, by cross-correlation with emulator templates.

    Parameters
    ----------
    flux, error : torch.Tensor
        ``(B, L)`` observed flux and 1σ on ``grid`` (any unit, the same for both).
    valid : torch.Tensor
        ``(B, L)`` boolean: usable pixels.
    grid : WavelengthGrid
        The spectra's grid; the emulator's range must cover it (the PFS MR arm).
    search_kms : float
        Velocities searched, ± km/s.

    Returns
    -------
    Velocity
        ``v_rad`` and ``v_rad_err`` (km/s), NaN for a spectrum without valid pixels.
    """
    bank = _bank(grid, str(flux.device), float(search_kms))
    flux, error = flux.float(), error.float()
    continuum = fit_continuum(flux, error, valid, CONTINUUM_ORDER)
    usable = valid & (continuum > 0)
    with torch.no_grad():
        snr = torch.where(usable, continuum / error, 0.0)
        lines = torch.where(usable, flux / continuum - 1.0, 0.0)
        weight = snr.square()
        # emission spikes (cosmic rays, sky residuals) carry no velocity: leave them out
        weight = torch.where(lines * snr > 5.0, 0.0, weight)
        wd = _to_log_grid(weight * lines, bank.log_pos)
        w = _to_log_grid(weight, bank.log_pos)
        num = wd @ bank.shifted  # (B, K·S)
        den = (w @ bank.shifted_sq).clamp_min(1e-30)
        score = (num * num.abs() / den).view(flux.shape[0], len(TEMPLATE_LABELS), -1)
        best_per_template, lag_per_template = score.max(-1)
        template = best_per_template.argmax(-1)
        rows = torch.arange(flux.shape[0], device=flux.device)
        k = lag_per_template[rows, template]
        curve = score[rows, template]  # (B, S)
        last = curve.shape[-1] - 1
        left = curve.gather(-1, (k - 1).clamp(0, last)[:, None])[:, 0]
        mid = curve[rows, k]
        right = curve.gather(-1, (k + 1).clamp(max=last)[:, None])[:, 0]
        curvature = left - 2.0 * mid + right  # < 0 at a peak
        edge = (k == 0) | (k == last) | ~(curvature < 0)
        offset = torch.where(edge, 0.0, 0.5 * (left - right) / curvature.clamp(max=-1e-30))
        lag = bank.lags[k].float() + offset.clamp(-0.5, 0.5)
        v = C_KMS * torch.expm1(lag.double() * bank.step)
        err_px = torch.where(edge, math.inf, (2.0 / (-curvature).clamp_min(1e-30)).sqrt())
        err = C_KMS * bank.step * err_px.double()
        rival = (torch.arange(last + 1, device=k.device) - k[:, None]).abs() > PEAK_SEPARATION
        contrast = mid - torch.where(rival, curve, -math.inf).amax(-1)
    none = ~usable.any(-1)
    nan = torch.tensor(math.nan, dtype=torch.float64, device=flux.device)
    return Velocity(
        torch.where(none, nan, v).float(),
        torch.where(none, nan, err).float(),
        torch.where(none, nan, contrast.double()).float(),
    )
