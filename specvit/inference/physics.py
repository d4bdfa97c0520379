"""The physical context of each prediction: its Cramér–Rao floor, an emulator fit and domain flags.

For every predicted star, at its predicted labels and with its own error array on the model
grid (after masking and resampling), :class:`PhysicalContext` computes

* ``crlb_<label>``: the marginal Cramér–Rao bound σ_min = √CRLB of each label, with the other
  labels and the flux amplitude ``ln A`` (for an ``input_norm="continuum"`` model, the whole
  continuum polynomial of its ``continuum_order``) as nuisances, through
  :func:`specvit.bounds.fisher_information` and :func:`specvit.bounds.marginal_crlb` — the best
  σ any unbiased method could reach on this spectrum;
* ``v_rad``, ``chi2_red``, ``chi2_pvalue``: the emulator spectrum at the predicted labels, shifted
  to a fitted radial velocity and scaled by an analytically fitted amplitude, against the
  observed flux and σ;
* ``line_ratio``: the depth of the observed lines relative to the emulator's (the flux fitted
  as α·spectrum + γ·lines, ``1 + γ/α``), whose z-score ``γ/σ_γ`` is the line test;
* ``shape_pvalue``, for a model that sees its flux over one number: the continuum-shape test,
  whether a Legendre polynomial of :data:`SHAPE_ORDER` times the emulator spectrum fits better
  than one amplitude with the labels free in both fits (:meth:`PhysicalContext._shape_gain`):
  a flux-calibration error or reddening, which such a model reads as labels.

The continuum is treated as the model's input normalisation treats it: the input is the flux
divided by one number (its median), so the model sees the continuum's shape, and so does the
fit: the emulator's flux (normalised flux × its continuum) is scaled by one amplitude, nothing
else. A spectrum whose continuum the emulator cannot produce (detector counts with the
throughput in, a flat or power-law source) fails the fit.

The radial velocity is found coarse to fine. Coarse: the observed and the emulator spectrum's line
structure (each minus its 65-pixel running mean) are cross-correlated by FFT over the red quarter
of the arm (8412–8850 Å, the Ca II triplet; a velocity is nearly one pixel shift there) within
±:data:`specvit.velocity.RV_SEARCH_KMS`, the peak refined by a parabola through three lags. Fine:
one Gauss–Newton step in ``(A, v)`` about the rest frame for every star, the emulator spectrum
shifted to second order in its (fourth-order finite-difference) wavelength derivatives; where the
cross-correlation peak lies beyond half a pixel and the rest-frame fit fails the line test (z <
−:data:`LINE_Z`), three more steps about the peak, on the emulator spectrum shifted there by cubic
(Catmull–Rom) interpolation (:func:`specvit.velocity.catmull_rom_shift`), kept where they lower χ²
on the same pixels by more than :data:`RV_DELTA_CHI2`. Pixels whose rest wavelength falls off the
grid, and the two at each end, are left out of the fit. Stars are fitted in chunks of 64, whose
working set stays in the CPU cache.

For a model trained on real-data effects (its ``config.domain``): pixels more than
:data:`specvit.continuum.CLIP_SIGMA` σ above the spectrum's continuum are left out of the fit
when it was trained on cosmic rays or sky residuals, and the sky lines' pixels (σ above
:data:`SKY_SIGMA_RATIO` times its trend) when it was trained on sky residuals or wavelength
errors, and the χ² test allows the σ to be too small
by the lower end of its ``sigma_scale``; when it was trained across LSF widths (``lsf``), a star
failing the χ² or line test is fitted again with the emulator at the broadest of them
(:data:`specvit.instrument.MR_RESOLVING_POWERS`) and is out of domain only if that fit fails too;
for an ``input_norm="continuum"`` model the amplitude is
a Legendre polynomial of its ``continuum_order``; for a ``rest_frame`` model the fit takes the
spectrum its input was built from, in the rest frame, and searches no far velocity.

The flags (:class:`~specvit.inference.flags.PredictFlag`) and their thresholds are documented
on the predict docs page and below.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
from scipy import stats

from specvit.bounds.ceilings import sigma_from_relative_error
from specvit.bounds.fisher import equilibrate, fisher_information, marginal_crlb
from specvit.config import SpecViTConfig
from specvit.continuum import CLIP_SIGMA, fit_continuum
from specvit.emulator.doppler import (
    kms_per_pixel,
    pixel_shift,
    pixels_per_kms,
    velocity_from_pixel_shift,
)
from specvit.inference.flags import PredictFlag
from specvit.inference.likelihood import continuum_basis
from specvit.instrument.grid import PFS_MR
from specvit.instrument.lsf import MR_RESOLVING_POWERS
from specvit.labels import LABEL_NAMES
from specvit.velocity import CONTINUUM_ORDER, RV_SEARCH_KMS, catmull_rom_shift

__all__ = [
    "CHI2_PVALUE_THRESHOLD",
    "LINE_Z",
    "LOW_SNR",
    "RV_DELTA_CHI2",
    "RV_TOLERANCE_KMS",
    "SHAPE_ORDER",
    "SKY_SIGMA_RATIO",
    "PhysicalContext",
    "emulator_mismatch",
    "pixel_derivatives",
    "taylor_shift",
]

#: ``LOW_SNR`` below this median flux/σ: there the median star's unbiased bound on log g
#: (1.14 dex at SNR 3, docs/bounds.md) reaches the spread of the training prior (1.15 dex for
#: log g uniform in 1–5), so a model's log g is mostly its prior.
LOW_SNR = 3.0
#: ``OUT_OF_DOMAIN`` when the fit's χ² p-value is below this (calibrated on engine spectra
#: across the prior at SNR 2–15: see the predict docs page for the measured false-alarm rate).
CHI2_PVALUE_THRESHOLD = 1e-3
#: ``OUT_OF_DOMAIN`` also when the observed lines are weaker than the emulator's at the predicted
#: labels by more than this many σ (``line_ratio`` below 1): a featureless or hotter source,
#: whose few-σ line deficit the χ² over all pixels dilutes.
LINE_Z = 3.0
#: ``RV_OUTSIDE_TRAINING`` when the fitted v_rad lies more than this beyond the trained range
#: (half the 60 km/s FWHM of the MR line-spread function, about two pixels).
RV_TOLERANCE_KMS = 30.0
#: Legendre order of the continuum-shape test of a model that sees its flux over one number: the
#: spectrum fitted about the predicted labels (label steps free) by one amplitude and by a
#: polynomial of this order times the emulator's spectrum; ``OUT_OF_DOMAIN`` where the polynomial
#: lowers χ² more than noise would with p < :data:`CHI2_PVALUE_THRESHOLD`: a flux-calibration
#: error or reddening, which such a model reads as labels (order 3: a calibration error's shape).
SHAPE_ORDER = 3
#: A velocity from the cross-correlation replaces the rest-frame fit only where it lowers
#: χ² (on the same pixels) by more than this (a 5σ preference), so noise peaks at low SNR do
#: not make velocities.
RV_DELTA_CHI2 = 25.0
#: Gauss–Newton steps (each re-shifting the emulator spectrum) about a cross-correlation
#: velocity: the peak of a mismatched template can be a pixel or two off.
_FAR_STEPS = 3
#: A model trained on sky-subtraction residuals has its emulator fit leave out the pixels whose σ
#: exceeds this multiple of σ's smooth trend: the sky lines, where those residuals sit.
SKY_SIGMA_RATIO = 1.5
#: Stars fitted together (a chunk's working set stays in the CPU cache).
_CHUNK = 64
#: Half-width (pixels) of the running mean taken off before the cross-correlation.
_HALF_BOX = 32


def emulator_mismatch(config: SpecViTConfig) -> str | None:
    """Why the emulator cannot describe this model's spectra, or None when it can.

    The emulator makes PFS MR spectra (vacuum grid, 4096 pixels) of (T_eff, log g, [M/H]):
    the model must predict exactly these three labels on exactly that grid.
    """
    if not config.wavelength_grid.matches(PFS_MR):
        return (
            f"the model's grid ({config.input_length} px, {config.wave_start}–"
            f"{config.wave_stop} Å, {config.wave_medium}) is not the emulator's PFS MR grid "
            f"({PFS_MR.num} px, {PFS_MR.start}–{PFS_MR.stop} Å, vacuum)"
        )
    if sorted(config.label_names) != sorted(LABEL_NAMES):
        return f"the model predicts {config.label_names}; the emulator needs all of {LABEL_NAMES}"
    return None


def _high_pass(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus its running mean over ``2·_HALF_BOX + 1`` pixels (shorter at the ends)."""
    n, k = x.shape[-1], _HALF_BOX
    cum = torch.nn.functional.pad(x.cumsum(-1), (1, 0))
    mean = torch.empty_like(x)
    mean[:, k : n - k] = (cum[:, 2 * k + 1 :] - cum[:, : n - 2 * k]) / (2 * k + 1)
    ends = torch.cat([torch.arange(k), torch.arange(n - k, n)]).to(x.device)
    lo, hi = (ends - k).clamp_min(0), (ends + k + 1).clamp_max(n)
    mean[:, ends] = (cum[:, hi] - cum[:, lo]) / (hi - lo)
    return x - mean


def _cross_correlation_lag(obs: torch.Tensor, template: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Sub-pixel lag (R,) of ``obs`` relative to ``template`` (R, n) within ±``max_lag``.

    Circular cross-correlation by FFT (both inputs are high-passed, so the wrap-around only
    mixes a few near-zero edge pixels), peak refined by a parabola through three lags.
    """
    n = obs.shape[-1]
    cc = torch.fft.irfft(torch.fft.rfft(obs) * torch.fft.rfft(template).conj(), n)
    window = torch.cat([cc[:, -max_lag - 1 :], cc[:, : max_lag + 2]], dim=1)  # −k−1 … k+1
    peak = window[:, 1:-1].argmax(dim=1, keepdim=True) + 1
    y0, y1, y2 = (window.gather(1, peak + d).squeeze(1) for d in (-1, 0, 1))
    denom = y0 - 2.0 * y1 + y2
    offset = torch.where(denom < 0, 0.5 * (y0 - y2) / denom, 0.0).clamp(-0.5, 0.5)
    return peak.squeeze(1).to(obs.dtype) - (max_lag + 1) + offset


def pixel_derivatives(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and second pixel derivatives by fourth-order central differences.

    Parameters
    ----------
    x : torch.Tensor
        (R, n) pixel values.

    Returns
    -------
    d1, d2 : torch.Tensor
        (R, n − 4) each: the derivatives at the interior pixels ``2 … n − 3``.
    """
    m2, m1, c, p1, p2 = (x[:, k : x.shape[1] - 4 + k] for k in range(5))
    d1 = (8.0 * (p1 - m1) - (p2 - m2)) / 12.0
    d2 = (16.0 * (p1 + m1) - (p2 + m2) - 30.0 * c) / 12.0
    return d1, d2


def taylor_shift(
    base: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """``base`` shifted by ``shift`` pixels to second order: ``base − s·d1 + s²·d2 / 2``.

    The fit's approximation of a small Doppler shift (``shift`` = velocity ×
    :func:`specvit.emulator.doppler.pixels_per_kms`, ``d1``, ``d2`` from
    :func:`pixel_derivatives`), held against :class:`specvit.emulator.DopplerShift` by
    ``tests/test_doppler.py``.

    Parameters
    ----------
    base : torch.Tensor
        (R, n) the unshifted spectrum.
    d1, d2 : torch.Tensor
        (R, n) its first and second pixel derivatives.
    shift : torch.Tensor
        (R, n) (or broadcastable) shift in pixels, positive towards the red.

    Returns
    -------
    torch.Tensor
        (R, n) the shifted spectrum.
    """
    return torch.addcmul(base, shift, torch.addcmul(-d1, shift, d2, value=0.5))


def _fails(fit: dict[str, torch.Tensor], line_z: torch.Tensor) -> torch.Tensor:
    """(R,) bool: the emulator fit's columns (``chi2_pvalue``, ``shape_pvalue`` where there is
    one) and line z-score fail the χ², continuum-shape or line test."""
    bad = (fit["chi2_pvalue"] < CHI2_PVALUE_THRESHOLD) | (line_z < -LINE_Z)
    if "shape_pvalue" in fit:  # NaN (no labels) fails nothing
        bad |= fit["shape_pvalue"] < CHI2_PVALUE_THRESHOLD
    return bad


def _legendre_design(length: int, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, L)`` Legendre terms P₀ … P_order on ``length`` pixels
    (:func:`specvit.inference.likelihood.continuum_basis`, order ≥ 1), and the ``(K², L)``
    products of each pair of them (float32)."""
    poly = continuum_basis(length, order)
    return poly.float(), (poly[:, None, :] * poly[None, :, :]).flatten(0, 1).float()


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """torch on one CPU thread inside the block (restored after).

    The fit is hundreds of small operations on (64, 4096) arrays; with two threads on a shared
    2-core CPU each of them waits for a descheduled thread (measured beside a training job:
    the physical context cost +855 % over ``physics=False`` with 2 threads, +25 % with 1).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class PhysicalContext:
    """Cramér–Rao floors, emulator fit and domain flags for the predictions of one model.

    Parameters
    ----------
    config : SpecViTConfig
        The model's config; :func:`emulator_mismatch` must be None for the CRLB and the fit.
        Its ``domain`` (if any) gives the ``OUTSIDE_PRIOR`` and ``RV_OUTSIDE_TRAINING`` flags.
    device : torch.device
        Where the emulator runs (the predictor's device).
    """

    def __init__(self, config: SpecViTConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.reason = emulator_mismatch(config)
        self.domain = config.domain
        self._model = None
        grid = config.wavelength_grid
        wave = grid.wavelength()
        self._step = grid.step
        #: pixels of shift per km/s at each pixel (v ≪ c)
        self._px_per_kms = torch.tensor(pixels_per_kms(wave, self._step), dtype=torch.float32)
        self._wave = torch.tensor(wave, dtype=torch.float32)
        self._index = torch.arange(wave.size, dtype=torch.float32)
        #: the cross-correlation runs on the red quarter (8412–8850 Å on the MR arm: the Ca II
        #: triplet and the Paschen lines), where a velocity is nearly one pixel shift (±3 %)
        self._ccf = slice(3 * config.input_length // 4, None)
        self._kms_per_px = kms_per_pixel(float(wave[self._ccf].mean()), self._step)
        self._max_lag = math.ceil(RV_SEARCH_KMS / self._kms_per_px)
        #: the continuum a model with ``input_norm="continuum"`` cannot use: a nuisance of its CRLB
        self._crlb_order = config.continuum_order if config.input_norm == "continuum" else 0
        #: whether the fit leaves out emission spikes (a model trained on them, ModelDomain.effects)
        effects = () if config.domain is None else config.domain.effects
        self._ignore_spikes = bool({"cosmic_rays", "sky"} & set(effects))
        #: the broadest LSF (resolving power) the model was trained on, where its training
        #: drew the LSF (the ``lsf`` effect): the χ² test's second try; None: one LSF
        self._broad_lsf = min(MR_RESOLVING_POWERS) if "lsf" in effects else None
        self._broad = None
        #: whether the fit leaves out the sky lines' pixels (a model trained on their
        #: subtraction residuals: the sky or a wavelength-solution error)
        self._ignore_sky = bool({"sky", "wavelength"} & set(effects))
        #: the continuum polynomial's Legendre terms (K, L) for an ``input_norm="continuum"``
        #: model, None for one that sees its flux over one number
        self._poly = self._poly_pairs = None
        #: for a model that sees its flux over one number, the Legendre terms (K, L) of the
        #: continuum-shape test (SHAPE_ORDER); None for one whose input divides out the continuum
        self._shape = None
        if config.input_norm == "continuum":  # and (K², L) the products of each pair of them
            self._poly, self._poly_pairs = _legendre_design(
                config.input_length, config.continuum_order
            )
        else:
            self._shape = _legendre_design(config.input_length, SHAPE_ORDER)[0]
        if self.reason is None:
            self._order = [config.label_names.index(n) for n in LABEL_NAMES]
            self._crlb_index = [LABEL_NAMES.index(n) for n in config.label_names]

    @property
    def fits(self) -> bool:
        """Whether the emulator describes the model's spectra (CRLB and fit columns)."""
        return self.reason is None

    def columns(self) -> list[str]:
        """Names of the columns :meth:`__call__` returns, in table order."""
        if not self.fits:
            return []
        crlb = [f"crlb_{name}" for name in self.config.label_names]
        # a rest_frame model's velocity is the one its input was shifted by (predict's v_rad)
        velocity = [] if self.config.rest_frame else ["v_rad"]
        # the continuum-shape test of a model that sees its flux over one number
        shape = ["shape_pvalue"] if self._shape is not None else []
        return [*crlb, *velocity, "chi2_red", "chi2_pvalue", *shape, "line_ratio"]

    def outside_prior(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)`` int32: ``OUTSIDE_PRIOR`` where a label of ``(B, P)`` ``labels`` (the
        model's order and units) lies outside the training prior's box, else 0 (always 0
        without a ``domain``)."""
        if self.domain is None:
            return torch.zeros(labels.shape[0], dtype=torch.int32, device=labels.device)
        box = [self.domain.labels[n] for n in self.config.label_names]
        low = labels.new_tensor([lo for lo, _ in box])
        high = labels.new_tensor([hi for _, hi in box])
        outside = ((labels < low) | (labels > high)).any(dim=1)
        return torch.where(outside, int(PredictFlag.OUTSIDE_PRIOR), 0).int()

    @property
    def checked(self) -> PredictFlag:
        """The flags this context sets (the others of the four are not computed)."""
        checked = PredictFlag.LOW_SNR
        if self.domain is not None:
            checked |= PredictFlag.OUTSIDE_PRIOR
        if self.fits:
            checked |= PredictFlag.OUT_OF_DOMAIN
            if self.domain is not None:
                checked |= PredictFlag.RV_OUTSIDE_TRAINING
        return checked

    def metadata(self) -> dict:
        """What was computed and at which thresholds, for the output table's metadata.

        Short keys and numbers only, so FITS headers keep them: ``checked`` is the bit mask of
        the flags that were computed (a 0 in an unchecked bit means "not checked", not "fine").
        """
        return {
            "checked": int(self.checked),
            "low_snr": LOW_SNR,
            "chi2_pvalue_min": CHI2_PVALUE_THRESHOLD,
            "line_z_min": -LINE_Z,
            "rv_tolerance_kms": RV_TOLERANCE_KMS,
            # the continuum-shape test's Legendre order (0: no such test for this model)
            "shape_order": 0 if self._shape is None else SHAPE_ORDER,
        }

    def _emulator(self, broad: bool = False):
        """The emulator at the MR arm's design LSF, or (``broad``) at :attr:`_broad_lsf`."""
        from specvit.emulator import Emulator

        if broad:
            if self._broad is None:
                self._broad = Emulator.load(device=self.device, resolution=self._broad_lsf)
            return self._broad
        if self._model is None:
            self._model = Emulator.load(device=self.device)
        return self._model

    # ------------------------------------------------------------------ per chunk
    def __call__(
        self,
        labels: torch.Tensor,
        flux: torch.Tensor,
        error: torch.Tensor | None,
        valid: torch.Tensor,
        scale: torch.Tensor,
        snr: torch.Tensor,
        velocity: torch.Tensor | None = None,
        continuum: torch.Tensor | None = None,
        crlb: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flags and columns of one chunk.

        Parameters
        ----------
        labels : torch.Tensor
            (B, n_labels) predicted labels in the model's order; NaN rows are skipped.
        flux, error : torch.Tensor
            (B, L) flux and 1σ on the model grid (``error`` None: nothing but the prior flag).
        valid : torch.Tensor
            (B, L) valid pixels.
        scale : torch.Tensor
            (B,) each spectrum's median valid flux (from :func:`specvit.model_input`).
        snr : torch.Tensor
            (B,) median flux/σ.
        velocity : torch.Tensor, optional
            (B,) km/s: for a ``rest_frame`` model (required), the velocity its input was
            shifted by, and ``flux``, ``error`` and ``valid`` are that rest-frame spectrum
            (:class:`specvit.preprocessing.Prepared`); the fit then searches no velocity far
            from rest.
        continuum : torch.Tensor, optional
            (B, L) the continuum fit of ``flux`` in its unit
            (:attr:`specvit.preprocessing.Prepared.continuum`), for the spikes a model trained
            on cosmic rays or sky residuals leaves out; None: fitted here.
        crlb : bool
            Compute the ``crlb_<label>`` columns (False: NaN; for flags alone, as exact mode's
            check of the network's answer).

        Returns
        -------
        flags : torch.Tensor
            (B,) int32 bits of ``LOW_SNR``, ``OUTSIDE_PRIOR``, ``OUT_OF_DOMAIN``,
            ``RV_OUTSIDE_TRAINING``.
        columns : dict of str to torch.Tensor
            (B,) float64 each, :meth:`columns` (NaN where the star has no labels).
        """
        b = labels.shape[0]
        flags = torch.where(snr < LOW_SNR, int(PredictFlag.LOW_SNR), 0).int()
        flags |= self.outside_prior(labels)
        columns = {
            name: torch.full((b,), torch.nan, dtype=torch.float64, device=labels.device)
            for name in self.columns()
        }
        if not self.fits or error is None:
            return flags, columns
        rows = torch.isfinite(labels).all(dim=1) & torch.isfinite(scale)
        if not bool(rows.any()):
            return flags, columns
        line_z = torch.full((b,), torch.nan, dtype=torch.float64, device=labels.device)
        # small chunks stay in the CPU cache (several times faster than one batch of 256);
        # slices, not copies, when every star has labels
        if bool(rows.all()):
            chunks = [slice(a, a + _CHUNK) for a in range(0, b, _CHUNK)]
        else:
            chunks = torch.nonzero(rows).squeeze(1).split(_CHUNK)
        data = (labels, flux, error, valid, scale, continuum)
        with _one_cpu_thread(flux.device):
            for sel in chunks:
                fit = self._fit_rows(sel, *data, crlb=crlb)
                line_z[sel] = fit.pop("_line_z").to(torch.float64)
                for name, value in fit.items():
                    columns[name][sel] = value.to(torch.float64)
            bad_fit = _fails(columns, line_z)
            if self._broad_lsf is not None:
                # a model trained across LSF widths: a star whose lines are broader than the
                # design LSF's (its fibre's, or smoothed by the rest-frame shift) is not at risk
                for sel in torch.nonzero(bad_fit).squeeze(1).split(_CHUNK):
                    fit = self._fit_rows(sel, *data, broad=True)
                    ok = ~_fails(fit, fit.pop("_line_z"))
                    bad_fit[sel[ok]] = False
                    for name, value in fit.items():
                        columns[name][sel[ok]] = value[ok].to(torch.float64)
        flags |= torch.where(bad_fit, int(PredictFlag.OUT_OF_DOMAIN), 0).int()
        if self.domain is not None:
            lo, hi = self.domain.rv
            v = velocity.to(torch.float64) if self.config.rest_frame else columns["v_rad"]
            off = (v < lo - RV_TOLERANCE_KMS) | (v > hi + RV_TOLERANCE_KMS)
            flags |= torch.where(off, int(PredictFlag.RV_OUTSIDE_TRAINING), 0).int()
        return flags, columns

    def ignored(
        self,
        flux: torch.Tensor,
        error: torch.Tensor,
        valid: torch.Tensor,
        continuum: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The valid pixels the emulator fit leaves out: for a model trained on them (its
        ``config.domain.effects``), emission spikes (more than :data:`CLIP_SIGMA` σ above the
        continuum) and sky lines (σ above :data:`SKY_SIGMA_RATIO` times its trend).

        Parameters
        ----------
        flux, error : torch.Tensor
            ``(B, L)`` flux and 1σ in any one unit (the answer does not depend on it).
        valid : torch.Tensor
            ``(B, L)`` bool, the usable pixels.
        continuum : torch.Tensor, optional
            ``(B, L)`` the flux's continuum fit (:attr:`specvit.preprocessing.Prepared.continuum`);
            None: fitted here.

        Returns
        -------
        torch.Tensor
            ``(B, L)`` bool, True at the valid pixels left out (none for a model trained on
            neither effect).
        """
        keep = valid.to(flux.dtype)
        f = torch.nan_to_num(flux * keep, nan=0.0, posinf=0.0, neginf=0.0)
        w = torch.nan_to_num(error.reciprocal().square() * keep, nan=0.0, posinf=0.0)
        out = torch.zeros_like(valid)
        if self._ignore_spikes:
            out |= self._spikes(f, w, continuum)
            w = torch.where(out, 0.0, w)
        if self._ignore_sky:
            out |= self._sky_lines(w)
        return out & valid

    def _spikes(self, f, w, continuum):
        """Pixels more than CLIP_SIGMA σ above the continuum (fitted when None)."""
        if continuum is None:
            continuum = fit_continuum(f, w.rsqrt(), w > 0, CONTINUUM_ORDER)
        return (f - continuum) * w.sqrt() > CLIP_SIGMA

    def _sky_lines(self, w):
        """Pixels whose σ exceeds SKY_SIGMA_RATIO times its smooth trend (w = 1/σ², 0: masked).

        σ is taken over its mean across the used pixels first, so the trend's fit clips the
        pixels more than CLIP_SIGMA mean σ above it in any unit of σ.
        """
        used = w > 0
        sigma_pix = torch.where(used, w.clamp_min(1e-30).rsqrt(), 0.0)
        mean = sigma_pix.sum(-1, keepdim=True) / used.sum(-1, keepdim=True).clamp_min(1)
        sigma_pix = sigma_pix / mean.clamp_min(1e-30)
        trend = fit_continuum(sigma_pix, torch.ones_like(sigma_pix), used, CONTINUUM_ORDER)
        return sigma_pix > SKY_SIGMA_RATIO * trend

    def _fit_rows(self, rows, labels, flux, error, valid, scale, continuum, broad=False, crlb=True):
        """:meth:`_fit` of the stars ``rows`` (a slice or indices) of a batch."""
        return self._fit(
            labels[rows],
            flux[rows],
            error[rows],
            valid[rows],
            scale[rows].unsqueeze(-1),
            None if continuum is None else continuum[rows],
            broad,
            crlb,
        )

    def _fit(
        self, labels, flux, error, valid, scale, continuum, broad=False, crlb=True
    ) -> dict[str, torch.Tensor]:
        """The fit's columns of a chunk of stars (and ``_line_z``); ``broad``: with the emulator
        at the broadest trained LSF, for the tests only (no CRLB); ``crlb``: the CRLB too."""
        emulator = self._emulator(broad)
        crlb = crlb and not broad
        if not crlb and self._shape is None:
            model, jac = emulator(labels[:, self._order]), None
        else:  # the CRLB and the continuum-shape test take the Jacobian
            model, jac = emulator.flux_and_jacobian(labels[:, self._order])
        # f and weights w = 1/σ² in units of the median valid flux, as the model input; w = 0
        # at masked pixels and, for the fit, at the two pixels at each end (no central
        # differences there).
        # Float masks and nan_to_num: boolean tensor ops are ~10× slower on the CPU.
        keep = valid.to(flux.dtype)
        f = torch.nan_to_num(flux * (keep / scale), nan=0.0, posinf=0.0, neginf=0.0)
        w = torch.nan_to_num((scale / error).square() * keep, nan=0.0, posinf=0.0)
        if self._ignore_spikes:  # cosmic rays and sky residuals: the model learnt to ignore them
            # (the input's own continuum, in units of the median valid flux as f)
            spikes = self._spikes(f, w, None if continuum is None else continuum / scale)
            w = torch.where(spikes, 0.0, w)
            keep = torch.where(spikes, 0.0, keep)
        out: dict[str, torch.Tensor] = {}

        # Cramér–Rao: Fisher over (T_eff, log g, [M/H], ln A) with σ from the star's own
        # error array in units of its median flux (specvit.bounds' error= convention; σ = inf
        # at masked pixels).
        if crlb:
            sigma = sigma_from_relative_error(model, w.rsqrt())
            fisher = fisher_information(jac, sigma, flux=model, continuum_order=self._crlb_order)
            for name, k in zip(self.config.label_names, self._crlb_index, strict=True):
                out[f"crlb_{name}"] = marginal_crlb(fisher, k).sqrt()
        if self._ignore_sky:  # sky lines: the model learnt their subtraction residuals
            w = torch.where(self._sky_lines(w), 0.0, w)
        w[:, :2] = 0.0
        w[:, -2:] = 0.0

        # Radial velocity, coarse: cross-correlate the line structure (flux minus its running
        # mean; masked pixels at the median level, weight 0) of the observed and the emulator
        # spectrum over the red quarter.
        lines = _high_pass(model)
        wf = w * f
        if self.config.rest_frame:  # shifted to rest already: no far velocity to search
            v_coarse = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
        else:
            red = self._ccf
            obs = _high_pass(f[:, red] - keep[:, red] + 1.0) * w[:, red]
            lag = _cross_correlation_lag(obs, lines[:, red].contiguous(), self._max_lag)
            v_coarse = velocity_from_pixel_shift(lag, self._kms_per_px)
        px_per_kms = self._px_per_kms.to(f.device)
        # Fine: one Gauss–Newton step in v about the rest frame (every star) ...
        v, chi2, dof, ratio, line_z = self._refine(
            model, lines, torch.zeros_like(v_coarse), f, w, wf, px_per_kms
        )
        # ... and about the cross-correlation peak where it lies beyond half a pixel and the
        # rest-frame fit fails the line test (a moving star's lines miss the rest-frame ones);
        # the far velocity wins only where it lowers χ² by more than RV_DELTA_CHI2.
        search = (v_coarse.abs() > 0.5 * self._kms_per_px) & (line_z < -LINE_Z)
        far = torch.nonzero(search).squeeze(1)
        if far.numel():
            vc = v_coarse[far]
            for _ in range(_FAR_STEPS):
                pos = self._index.to(f.device) - pixel_shift(
                    self._wave.to(f.device), self._step, vc.unsqueeze(-1)
                )
                inside = ((pos >= 2.0) & (pos <= f.shape[1] - 3.0)).to(w.dtype)
                base = catmull_rom_shift(model[far], pos)
                w_in, wf_in = w[far] * inside, wf[far] * inside
                shifted = self._refine(base, _high_pass(base), vc, f[far], w_in, wf_in, px_per_kms)
                vc = shifted[0]
            # against the rest-frame fit on the same pixels (the shift moves some off the grid)
            rest = self._refine(model[far], lines[far], vc * 0.0, f[far], w_in, wf_in, px_per_kms)
            better = shifted[1] < rest[1] - RV_DELTA_CHI2
            for mine, theirs in zip((v, chi2, dof, ratio, line_z), shifted, strict=True):
                mine[far] = torch.where(better, theirs.to(mine.dtype), mine[far])
        if not self.config.rest_frame:
            out["v_rad"] = v
        out["chi2_red"] = chi2 / dof
        out["line_ratio"] = ratio
        out["_line_z"] = line_z
        # a model trained on σ up to a factor s_low too small is not at risk from it: the test
        # takes the χ² that σ would give (ModelDomain.sigma_scale; 1 for most models)
        low = 1.0 if self.domain is None else min(1.0, self.domain.sigma_scale[0])
        p = stats.chi2.sf(chi2.cpu().numpy() * low**2, dof.clamp_min(1.0).cpu().numpy())
        out["chi2_pvalue"] = torch.from_numpy(np.asarray(p)).to(chi2.device)
        if self._shape is not None:
            gain = self._shape_gain(model, jac, v, f, w)
            p = stats.chi2.sf(gain.cpu().numpy() * low**2, SHAPE_ORDER)
            out["shape_pvalue"] = torch.from_numpy(np.asarray(p)).to(chi2.device)
        return out

    def _shape_gain(self, model, jac, v, f, w) -> torch.Tensor:
        """How much a continuum polynomial lowers χ² with the labels free: the continuum-shape test.

        Two linear fits of ``f`` about the predicted labels: ``f ≈ A·spectrum + J·b`` and
        ``f ≈ P(x)·spectrum + J·b``, ``P`` a Legendre polynomial of :data:`SHAPE_ORDER`, with the
        emulator spectrum and its label derivatives ``jac`` at the fitted velocity ``v`` (shifted
        to second order as in :meth:`_refine`, by Catmull–Rom where ``v`` is more than a pixel).
        The second fit holds the first, so for a spectrum the emulator describes the χ² they
        differ by follows χ² with SHAPE_ORDER degrees of freedom, whatever the labels' own
        errors. A continuum the labels cannot make, such as a flux-calibration error or reddening
        that the labels absorbed at the cost of the lines' fit, lowers it much more. (Gauss–Newton
        steps of the second fit's labels made the test weaker on reddened spectra, not stronger.)

        The gain is the residual of the first fit projected on what the polynomial adds (its
        columns less their part in the first fit's): sums of small residuals, exact enough in
        float32; only the small normal matrices are float64.

        Returns
        -------
        torch.Tensor
            (R,) float64, the χ² gain (≥ 0).
        """
        r, n = model.shape
        shift = v[:, None] * self._px_per_kms.to(f.device)  # (R, L) pixels
        # the spectrum and its three label derivatives, shifted together
        both = torch.cat([model[:, None], jac.transpose(-1, -2)], dim=1).flatten(0, 1)
        d1, d2 = pixel_derivatives(both)
        moved = both.clone()
        inner = shift[:, 2:-2].repeat_interleave(4, 0)
        moved[:, 2:-2] = taylor_shift(both[:, 2:-2], d1, d2, inner)
        moved = moved.view(r, 4, n)
        spectrum = moved[:, 0]  # a view: the Catmull–Rom rows below land in it too
        far = torch.nonzero(shift.abs().amax(1) > 1.0).squeeze(1)
        if far.numel():  # a pixel or more: Catmull–Rom
            pos = self._index.to(f.device) - pixel_shift(
                self._wave.to(f.device), self._step, v[far, None]
            )
            far_both = both.view(r, 4, n)[far].flatten(0, 1)
            moved[far] = catmull_rom_shift(far_both, pos.repeat_interleave(4, 0)).view(-1, 4, n)
            w = w.clone()
            w[far] *= ((pos >= 2.0) & (pos <= n - 3.0)).to(w.dtype)
        first = moved  # (R, 4, L): the spectrum and its label derivatives
        added = self._shape[1:].to(spectrum)[None] * spectrum[:, None]  # (R, K, L)
        w_first, w_added = first * w[:, None], added * w[:, None]
        g_ff = (w_first @ first.mT).double()
        g_af = (w_added @ first.mT).double()
        g_aa = (w_added @ added.mT).double()
        # equilibrated: the columns differ by orders of magnitude (per K, per dex)
        unit, d = equilibrate(g_ff)
        unit = unit + 1e-12 * torch.eye(4, dtype=torch.float64, device=f.device)

        def solve_first(x: torch.Tensor) -> torch.Tensor:
            """``G_ff⁻¹ x`` for (R, 4, m) ``x``."""
            return torch.linalg.solve(unit, x / d[:, :, None]) / d[:, :, None]

        coef = solve_first((w_first @ f.unsqueeze(-1)).double())  # (R, 4, 1)
        residual = f - (coef.to(f.dtype) * first).sum(1)
        # what of the residual the polynomial explains beyond the first fit's columns
        b = (w_added @ residual.unsqueeze(-1)).double()
        b = b - g_af @ solve_first((w_first @ residual.unsqueeze(-1)).double())
        schur, e = equilibrate(g_aa - g_af @ solve_first(g_af.mT))
        schur = schur + 1e-12 * torch.eye(schur.shape[1], dtype=torch.float64, device=f.device)
        b = b / e[:, :, None]
        return (b * torch.linalg.solve(schur, b)).sum((1, 2)).clamp_min(0.0)

    def _refine(self, base, lines, v0, f, w, wf, px_per_kms):
        """One Gauss–Newton step in (A, v) from ``base`` (the emulator spectrum at ``v0``).

        The spectrum at ``v0 + δ`` is ``base`` shifted by ``s = δ · px_per_kms`` pixels, to
        second order: ``base − s base' + s² base''/2``; ``A`` is then fitted exactly (for a model
        with ``input_norm="continuum"``, a Legendre polynomial of its ``continuum_order`` times
        the spectrum, :meth:`_continuum_fit`). ``lines`` is ``base`` minus its running mean, for
        the line-strength test. ``w`` must be 0 on the two pixels at each end.

        Returns
        -------
        v, chi2, dof, line_ratio, line_z : torch.Tensor
            (R,) velocity (km/s), χ² (float64), degrees of freedom (pixels with weight − 2),
            the depth of the observed lines relative to the emulator's and its z-score.
        """
        d1, d2 = pixel_derivatives(base)
        inner = slice(2, -2)
        base, lines, f = base[:, inner], lines[:, inner], f[:, inner]
        w, wf, px_per_kms = w[:, inner], wf[:, inner], px_per_kms[inner]
        slope = d1 * px_per_kms  # −∂base/∂v
        wb = w * base
        a11, a12 = torch.linalg.vecdot(wb, base), -torch.linalg.vecdot(wb, slope)
        a22 = torch.linalg.vecdot(w * slope, slope)
        b1, b2 = torch.linalg.vecdot(wf, base), -torch.linalg.vecdot(wf, slope)
        det = a11 * a22 - a12 * a12
        delta = (a11 * b2 - a12 * b1) / (a22 * b1 - a12 * b2)  # (A δ) / A
        limit = 0.75 / float(px_per_kms.mean())
        delta = torch.where(torch.isfinite(delta) & (det > 0), delta, 0.0).clamp(-limit, limit)
        shift = delta.unsqueeze(-1) * px_per_kms
        spectrum = taylor_shift(base, d1, d2, shift)
        if self._poly is not None:
            chi2, dof, ratio, line_z = self._continuum_fit(spectrum, lines, f, w, inner)
            return v0 + delta, chi2, dof, ratio, line_z
        ws = w * spectrum
        s_ss, s_fs = torch.linalg.vecdot(ws, spectrum), torch.linalg.vecdot(wf, spectrum)
        amp = s_fs / s_ss
        chi2 = torch.linalg.vecdot(w, (f - amp.unsqueeze(-1) * spectrum).square()).double()
        dof = torch.count_nonzero(w, dim=-1).double() - 2.0
        # Line strength: f ≈ α·spectrum + γ·lines; γ/α = 0 when the lines are as deep as the
        # emulator's (the small shift between base and spectrum does not matter here).
        s_sl, s_ll = torch.linalg.vecdot(ws, lines).double(), torch.linalg.vecdot(w * lines, lines)
        s_fl = torch.linalg.vecdot(wf, lines).double()
        s_ss, s_fs, s_ll = s_ss.double(), s_fs.double(), s_ll.double()
        det = s_ss * s_ll - s_sl * s_sl
        alpha, gamma = (s_ll * s_fs - s_sl * s_fl) / det, (s_ss * s_fl - s_sl * s_fs) / det
        line_z = gamma * torch.sign(alpha) / torch.sqrt(s_ss / det)
        return v0 + delta, chi2, dof, 1.0 + gamma / alpha, line_z

    def _continuum_fit(self, spectrum, lines, f, w, inner):
        """χ², dof, line ratio and line z of ``f ≈ P(x)·spectrum`` (+ ``γ·lines``), ``P`` a
        Legendre polynomial of the model's ``continuum_order`` fitted by weighted least squares.

        The line ratio is ``1 + γ/α₀`` (α₀: the polynomial's constant term). For a model trained
        on spikes (:attr:`_ignore_spikes`), pixels more than :data:`CLIP_SIGMA` σ off a first
        fit, on either side (the residuals of a sky subtraction at a shifted wavelength are
        both), are left out of the second. Every sum over pixels is one matrix product with the
        Legendre terms (or the products of each pair of them, for the normal matrix).
        """
        basis, pairs = self._poly[:, inner].to(spectrum), self._poly_pairs[:, inner].to(spectrum)
        k = basis.shape[0]
        eye = torch.eye(k + 1, dtype=torch.float64, device=f.device)
        wsf = w * spectrum * f

        def fit(w):
            ws = w * spectrum
            normal = ((ws * spectrum) @ pairs.T).double().view(-1, k, k)
            rhs = (wsf @ basis.T).double().unsqueeze(-1)  # (R, K, 1)
            coef = torch.linalg.solve(normal + 1e-12 * eye[:k, :k], rhs)
            return ws, normal, rhs, spectrum * (coef.squeeze(-1).float() @ basis)

        ws, normal, rhs, model = fit(w)
        if self._ignore_spikes:
            w = torch.where(w * (f - model).square() > CLIP_SIGMA**2, 0.0, w)
            wsf = w * spectrum * f
            ws, normal, rhs, model = fit(w)
        chi2 = torch.linalg.vecdot(w, (f - model).square()).double()
        dof = torch.count_nonzero(w, dim=-1).double() - (k + 1.0)
        # the line test: one more column, the emulator's line structure
        wl = w * lines
        cross = ((ws * lines) @ basis.T).double().unsqueeze(-1)  # (R, K, 1)
        full = torch.cat(
            [
                torch.cat([normal, cross], dim=2),
                torch.cat(
                    [cross.transpose(1, 2), torch.linalg.vecdot(wl, lines).double()[:, None, None]],
                    dim=2,
                ),
            ],
            dim=1,
        )
        rhs_full = torch.cat([rhs, torch.linalg.vecdot(wl, f).double()[:, None, None]], dim=1)
        inverse = torch.linalg.inv(full + 1e-12 * eye)
        solution = (inverse @ rhs_full).squeeze(-1)
        alpha, gamma = solution[:, 0], solution[:, -1]
        line_z = gamma * torch.sign(alpha) / inverse[:, -1, -1].clamp_min(1e-300).sqrt()
        return chi2, dof, 1.0 + gamma / alpha, line_z
