"""Cramér–Rao ceilings on log g (or any label) for a population of stars and a noise setup.

:func:`crlb_ceilings` is the high-level call: labels (or a population drawn from a prior), and
one of (a) each star's magnitude with the PFS noise model (exposures configurable), (b) a target
SNR, or (c) the user's own error spectrum. It returns per-star bounds and both summaries:

* ``median_r2_max``: the median over stars of ``1 − min(CRLB, Var)/Var`` (the paper's
  convention, a typical star);
* ``population_r2_max``: ``1 − E[min(CRLB, Var)]/Var``, the R² an unbiased-where-possible
  estimator could reach on the whole population (a star whose bound exceeds the prior variance
  is predicted no better than by the prior mean).

``Var`` is the variance of the label under the prior the stars are drawn from. These are
*unbiased* bounds: estimators that use the prior can beat them at low SNR (see
:mod:`specvit.bounds.bayes`). Tables over magnitudes or SNRs are :mod:`specvit.bounds.table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from specvit.bounds.fisher import (
    AMPLITUDE,
    check_continuum_order,
    continuum_parameters,
    fisher_information,
    marginal_crlb,
)
from specvit.bounds.prior import LabelPrior
from specvit.bounds.van_trees import van_trees_bound
from specvit.bounds.velocity import VELOCITY, velocity_jacobian
from specvit.emulator import Emulator
from specvit.instrument.noise import PFSNoiseModel
from specvit.labels import LABEL_NAMES
from specvit.preprocessing import expected_snr, masked_median

__all__ = [
    "MAG_RANGE",
    "REFERENCE_MAG",
    "Ceilings",
    "check_labels",
    "check_mag",
    "check_n_stars",
    "check_nuisance",
    "check_snr",
    "crlb_ceilings",
    "default_nuisance",
    "sigma_from_relative_error",
]


def default_nuisance(target: str) -> tuple[str, ...]:
    """The other labels and the flux amplitude: the default nuisances of ``target``."""
    return (*(n for n in LABEL_NAMES if n != target), AMPLITUDE)


#: Magnitude at which the noise spectrum's *shape* is taken when an SNR is asked for.
REFERENCE_MAG = 21.5

#: HSC-i magnitudes the bounds take (:func:`check_mag`), and the range
#: :func:`specvit.bounds.magnitude_for_snr` searches: from far brighter than PFS targets to far
#: below any usable S/N with 12 × 900 s.
MAG_RANGE = (12.0, 28.0)


def check_n_stars(n_stars: int) -> int:
    """``n_stars`` checked: an integer ≥ 1.

    Raises
    ------
    ValueError
        Otherwise.
    """
    if isinstance(n_stars, bool) or not isinstance(n_stars, int | np.integer) or n_stars < 1:
        raise ValueError(f"n_stars must be an integer >= 1, got {n_stars!r}")
    return int(n_stars)


def _values(value, name: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from err


def _require(values: torch.Tensor, ok: torch.Tensor, message: str) -> torch.Tensor:
    """``values``, or a ValueError with ``message`` and the first value where ``ok`` is False."""
    bad = ~ok
    if bool(bad.any()):
        raise ValueError(f"{message}, got {float(values.reshape(-1)[bad.reshape(-1)][0]):g}")
    return values


def check_mag(mag: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """HSC-i magnitudes as float64, checked: finite and within :data:`MAG_RANGE`.

    Raises
    ------
    ValueError
        Naming the first magnitude that is not.
    """
    t = _values(mag, "mag")
    low, high = MAG_RANGE
    ok = torch.isfinite(t) & (t >= low) & (t <= high)
    return _require(t, ok, f"mag must be an HSC-i magnitude within {low:g}–{high:g}")


def check_snr(snr: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """S/N values as float64, checked: > 0 and finite.

    Raises
    ------
    ValueError
        Naming the first value that is not.
    """
    t = _values(snr, "snr")
    return _require(t, torch.isfinite(t) & (t > 0), "snr must be > 0 and finite")


def check_labels(labels: torch.Tensor, emulator=None) -> torch.Tensor:
    """Stars as a float64 ``(N, 3)`` tensor, checked: at least one, finite, in the emulator's grid.

    Parameters
    ----------
    labels : torch.Tensor
        ``(N, 3)`` as (T_eff, log_g, M_H).
    emulator : optional
        With an ``in_range`` method (as :class:`specvit.emulator.Emulator`), every star must lie
        inside the grid the emulator was fitted to: beyond it the polynomial extrapolates into
        spectra with negative or non-finite flux, and bounds computed from them mean nothing.

    Raises
    ------
    ValueError
        Naming the first star that fails.
    """
    t = _values(labels, "labels")
    if t.dim() != 2 or t.shape[1] != len(LABEL_NAMES):
        raise ValueError(f"labels must have shape (N, 3) as {LABEL_NAMES}, got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError("labels hold no star")
    finite = torch.isfinite(t).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        raise ValueError(f"labels must be finite; star {row} is {t[row].tolist()}")
    if emulator is not None and hasattr(emulator, "in_range"):
        inside = emulator.in_range(t).cpu()
        if not bool(inside.all()):
            row = int((~inside).nonzero()[0])
            values = zip(LABEL_NAMES, t[row].tolist(), strict=True)
            star = ", ".join(f"{n} {v:g}" for n, v in values)
            raise ValueError(
                f"star {row} ({star}) lies outside the emulator's grid{_grid(emulator)}, where "
                f"its spectra are extrapolated ({int((~inside).sum())} of {t.shape[0]} stars do)"
            )
    return t


def _grid(emulator) -> str:
    """`` (T_eff 3500…8000, …)``: the emulator's label box, when it tells it."""
    low, high = getattr(emulator, "valid_low", None), getattr(emulator, "valid_high", None)
    if low is None or high is None:
        return ""
    ranges = zip(LABEL_NAMES, low.tolist(), high.tolist(), strict=True)
    return " (" + ", ".join(f"{n} {lo:g}…{hi:g}" for n, lo, hi in ranges) + ")"


def check_nuisance(target: str, nuisance: Sequence[str] | None) -> tuple[str, ...]:
    """The nuisance parameters of ``target``, checked (None: :func:`default_nuisance`).

    Raises
    ------
    ValueError
        For an unknown target, an unknown or repeated nuisance parameter.
    """
    if target not in LABEL_NAMES:
        raise ValueError(f"unknown target {target!r}; labels are {LABEL_NAMES}")
    nuisance = default_nuisance(target) if nuisance is None else tuple(nuisance)
    allowed = (*(n for n in LABEL_NAMES if n != target), VELOCITY, AMPLITUDE)
    for name in nuisance:
        if name not in allowed:
            raise ValueError(f"unknown nuisance parameter {name!r}; choose from {allowed}")
    if len(set(nuisance)) != len(nuisance):
        raise ValueError(f"nuisance parameters repeat: {nuisance}")
    return nuisance


def _flux_and_jacobian(emulator, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flux ``(n, L)`` and Jacobian ``(n, L, 3)`` of the emulator at ``theta``.

    Uses the model's fused ``flux_and_jacobian`` when it has one (as
    :class:`specvit.emulator.Emulator` does); any other model is called as ``model(theta)`` and
    ``model.jacobian(theta)``.
    """
    if hasattr(emulator, "flux_and_jacobian"):
        return emulator.flux_and_jacobian(theta)
    return emulator(theta), emulator.jacobian(theta)


def sigma_from_relative_error(flux: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """σ in the model's flux unit from σ in units of the star's median flux.

    This is how :func:`crlb_ceilings` reads ``error=`` and how :func:`specvit.predict` takes
    a spectrum's own error array (divided by its median valid flux, as the model input is):
    the observed spectrum is taken to be the model flux scaled to the same median.

    Parameters
    ----------
    flux : torch.Tensor
        ``(..., L)`` model (emulator) flux of each star.
    error : torch.Tensor
        ``(L,)`` or ``(..., L)`` 1σ divided by the star's median flux; ``inf`` masks a pixel.

    Returns
    -------
    torch.Tensor
        ``(..., L)`` σ in the unit of ``flux``: ``error × median(flux)`` (the lower median over
        pixels, as ``torch.median``).
    """
    return error.to(flux.dtype) * masked_median(flux, None).unsqueeze(-1)


@dataclass(frozen=True)
class Ceilings:
    """Per-star Cramér–Rao bounds and their summaries for one target label.

    Attributes
    ----------
    labels : torch.Tensor
        ``(N, 3)`` the stars (T_eff in K, log g and [M/H] in dex).
    snr : torch.Tensor
        ``(N,)`` expected S/N of each star's spectrum
        (:func:`specvit.preprocessing.expected_snr`: its noiseless flux over σ); with ``snr=``
        the asked value, which it is by construction.
    crlb : torch.Tensor
        ``(N,)`` marginal CRLB of the target, in (label unit)² (``inf`` if not identifiable).
    variance : float
        Prior variance of the target: the R² denominator.
    target : str
        The bounded label.
    parameters : tuple of str
        All parameters of the Fisher matrix (target first, then the nuisances, then the
        continuum's coefficients ``c_1 … c_K``).
    fisher : torch.Tensor
        ``(N, P, P)`` Fisher matrices over :attr:`parameters`.
    mag : torch.Tensor or None
        ``(N,)`` HSC-i magnitudes when the noise came from magnitudes.
    continuum_order : int
        Order K of the multiplicative continuum marginalised (its coefficients ``c_1 … c_K``
        end :attr:`parameters`); 0 for none.
    """

    labels: torch.Tensor
    snr: torch.Tensor
    crlb: torch.Tensor
    variance: float
    target: str
    parameters: tuple[str, ...]
    fisher: torch.Tensor
    mag: torch.Tensor | None = field(default=None)
    continuum_order: int = 0

    @property
    def sigma_min(self) -> torch.Tensor:
        """``(N,)`` √CRLB: the smallest 1σ error of an unbiased estimator, in label units."""
        return self.crlb.sqrt()

    @property
    def r2_max(self) -> torch.Tensor:
        """``(N,)`` per-star ``1 − min(CRLB, Var)/Var`` (0 where the data add nothing)."""
        return 1.0 - self.crlb.clamp_max(self.variance) / self.variance

    @property
    def median_r2_max(self) -> float:
        """Median over stars of :attr:`r2_max` (the paper's convention)."""
        return float(self.r2_max.median())

    @property
    def population_r2_max(self) -> float:
        """``1 − E[min(CRLB, Var)]/Var`` over the stars."""
        return float(1.0 - self.crlb.clamp_max(self.variance).mean() / self.variance)

    @property
    def median_sigma_min(self) -> float:
        """Median over stars of :attr:`sigma_min`."""
        return float(self.sigma_min.median())

    @property
    def median_snr(self) -> float:
        """Median over stars of the per-star expected S/N (:attr:`snr`)."""
        return float(self.snr.median())

    def van_trees_r2(
        self,
        prior: LabelPrior,
        amplitude_fisher: float | None = None,
        continuum_fisher: float | None = None,
    ) -> float:
        """``1 − VT/Var`` with ``VT`` the van Trees bound for stars drawn from ``prior``.

        Valid for every estimator, biased or not, when these stars are a draw from ``prior``;
        needs finite prior Fisher information for every parameter (see
        :func:`specvit.bounds.van_trees_bound`).

        Parameters
        ----------
        prior : LabelPrior
            The prior the stars were drawn from.
        amplitude_fisher : float, optional
            Prior Fisher information of ``ln A`` (required when ``ln_A`` is a parameter).
        continuum_fisher : float, optional
            Prior Fisher information of each continuum coefficient ``c_k`` (required when the
            continuum is a nuisance, ``continuum_order`` > 0).
        """
        continuum = continuum_parameters(self.continuum_order)
        info = []
        for name in self.parameters:
            if name == AMPLITUDE:
                if amplitude_fisher is None:
                    raise ValueError("ln_A is a parameter: pass its prior's amplitude_fisher")
                info.append(float(amplitude_fisher))
            elif name in continuum:
                if continuum_fisher is None:
                    raise ValueError(
                        "the continuum is a nuisance: pass its coefficients' continuum_fisher"
                    )
                info.append(float(continuum_fisher))
            else:
                info.append(prior[name].fisher_information())
        bound = van_trees_bound(self.fisher, torch.diag(torch.tensor(info)), 0)
        return float(1.0 - bound / self.variance)

    def subset(self, mask: torch.Tensor, variance: float | None = None) -> Ceilings:
        """The stars selected by a boolean ``(N,)`` mask (e.g. an SNR bin).

        ``variance`` replaces the R² denominator (e.g. the variance of the target among the
        selected stars, to compare with an R² measured on them); default: unchanged.
        """
        return Ceilings(
            labels=self.labels[mask],
            snr=self.snr[mask],
            crlb=self.crlb[mask],
            fisher=self.fisher[mask],
            variance=self.variance if variance is None else float(variance),
            target=self.target,
            parameters=self.parameters,
            mag=None if self.mag is None else self.mag[mask],
            continuum_order=self.continuum_order,
        )


def _per_star(t: torch.Tensor, n: int, name: str) -> torch.Tensor:
    if t.dim() == 0:
        return t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    return t


def crlb_ceilings(
    labels: torch.Tensor | None = None,
    *,
    mag: float | torch.Tensor | None = None,
    snr: float | torch.Tensor | None = None,
    error: torch.Tensor | None = None,
    prior: LabelPrior | None = None,
    n_stars: int = 2000,
    generator: torch.Generator | None = None,
    target: str = "log_g",
    nuisance: Sequence[str] | None = None,
    continuum_order: int = 0,
    emulator=None,
    noise_model=None,
    chunk: int = 64,
) -> Ceilings:
    """Per-star marginal CRLB of ``target`` and the R² ceilings it implies.

    Give exactly one of ``mag``, ``snr`` or ``error``.

    Parameters
    ----------
    labels : torch.Tensor, optional
        ``(N, 3)`` stars as (T_eff, log_g, M_H). Default: ``n_stars`` drawn from ``prior``.
    mag : float or torch.Tensor, optional
        HSC-i magnitude (scalar or ``(N,)``, within :data:`MAG_RANGE`): noise from
        ``noise_model`` (PFS MR, its number of exposures), flux in nJy.
    snr : float or torch.Tensor, optional
        Target expected S/N (:func:`specvit.preprocessing.expected_snr`): each star's noise
        spectrum has the shape the noise model gives at i = :data:`REFERENCE_MAG`, rescaled to
        this S/N.
    error : torch.Tensor, optional
        The user's own 1σ spectrum, ``(L,)`` or ``(N, L)``, in units of each star's median flux
        (i.e. divide σ by the spectrum's median flux).
    prior : LabelPrior, optional
        Population prior: draws the stars when ``labels`` is None and gives the R² denominator
        ``Var(target)`` (default :meth:`LabelPrior.default`).
    n_stars : int
        Stars drawn when ``labels`` is None.
    generator : torch.Generator, optional
        Randomness for the draw (default: a generator seeded with 0, so that repeated calls
        give the same population and the same numbers).
    target : str
        The bounded label.
    nuisance : sequence of str, optional
        Parameters estimated jointly and marginalised (default: the other labels and
        ``ln_A``, :func:`default_nuisance`): any of the other labels, ``"v_rad"``
        (radial velocity, km/s, see :mod:`specvit.bounds.velocity`; needs the specvit
        emulator) and ``"ln_A"`` (the unknown flux amplitude, ``∂flux/∂ln A = flux``). Without
        ``ln_A`` the flux scale is taken as known.
    continuum_order : int
        K ≥ 0: also marginalise a smooth multiplicative continuum, the flux times
        ``1 + Σ_{k=1..K} c_k P_k(x)`` (Legendre P_k in the pixel coordinate x, −1 at the first
        pixel and +1 at the last, :mod:`specvit.continuum`), at ``c = 0``. Its coefficients
        ``c_1 … c_K`` follow the nuisances in :attr:`Ceilings.parameters`. With ``ln_A`` (the
        constant term) this is any polynomial continuum of degree K: the information left to a
        model that divides each spectrum by a fitted continuum of that order. 0 (default): the
        continuum's shape is taken as known.
    emulator, noise_model : optional
        The spectral emulator and PFS noise model (default: ``Emulator.load()`` and
        ``PFSNoiseModel.default()``).
    chunk : int
        Stars processed together (small chunks stay in the CPU cache: fastest).

    Returns
    -------
    Ceilings

    Raises
    ------
    ValueError
        Before any work, for inputs that would give no or meaningless bounds: no star, labels
        that are not finite or lie outside the emulator's grid (:func:`check_labels`), a
        magnitude that is not finite or outside :data:`MAG_RANGE`, an S/N that is not finite
        and > 0, an unknown nuisance parameter, a continuum order that is not an integer ≥ 0,
        or shapes that do not fit.
    """
    if sum(x is not None for x in (mag, snr, error)) != 1:
        raise ValueError("give exactly one of mag=, snr= or error=")
    prior = prior or LabelPrior.default()
    nuisance = check_nuisance(target, nuisance)
    continuum_order = check_continuum_order(continuum_order)
    continuum = continuum_parameters(continuum_order)
    mag_t = None if mag is None else check_mag(mag)
    snr_t = None if snr is None else check_snr(snr)
    variance = prior.variance(target)
    emulator = emulator if emulator is not None else Emulator.load()
    if labels is None:
        if prior.names != LABEL_NAMES:
            raise ValueError(f"the prior must be over {LABEL_NAMES}, got {prior.names}")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        labels = prior.sample(check_n_stars(n_stars), generator)
    labels = check_labels(labels, emulator)
    n = labels.shape[0]
    mag_t = None if mag_t is None else _per_star(mag_t, n, "mag")
    snr_t = None if snr_t is None else _per_star(snr_t, n, "snr")
    if mag is not None or snr is not None:
        noise_model = noise_model if noise_model is not None else PFSNoiseModel.default()
    if error is not None:
        error = torch.as_tensor(error, dtype=torch.float64)
        if error.dim() == 2 and error.shape[0] != n:
            raise ValueError(f"error has {error.shape[0]} spectra for {n} stars")
    velocity = VELOCITY in nuisance
    # The continuum's columns follow ln_A's (fisher_information), which is dropped again below
    # when it is not a nuisance.
    with_flux = AMPLITUDE in nuisance or bool(continuum)
    # Fisher over (T_eff, log_g, M_H[, v_rad][, ln_A][, c_1 … c_K]), then the rows of
    # (target, *nuisance, *continuum).
    columns = (*LABEL_NAMES, VELOCITY) if velocity else LABEL_NAMES
    columns = (*columns, AMPLITUDE, *continuum) if with_flux else columns
    parameters = (target, *nuisance, *continuum)
    order = [columns.index(p) for p in parameters]
    crlbs, snrs, fishers = [], [], []
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        theta = labels[sl].to(emulator.dtype)
        flux, jac = _flux_and_jacobian(emulator, theta)
        if velocity:
            jac = torch.cat([jac, velocity_jacobian(emulator, theta, flux).unsqueeze(-1)], -1)
        if mag_t is not None or snr_t is not None:
            ref = mag_t[sl] if mag_t is not None else torch.full_like(snr_t[sl], REFERENCE_MAG)
            flux_njy = noise_model.scale_to_magnitude(flux, ref.to(flux.dtype))
            sigma = noise_model.expected_sigma(flux_njy)
            star_snr = expected_snr(flux_njy, sigma)
            # The Fisher matrix does not depend on the flux unit: express σ in the emulator's
            # unit rather than rescale the (3× larger) Jacobian.
            to_model = flux.sum(dim=-1, keepdim=True) / flux_njy.sum(dim=-1, keepdim=True)
            if snr_t is not None:
                to_model = to_model * (star_snr / snr_t[sl].to(sigma.dtype)).unsqueeze(-1)
                star_snr = snr_t[sl]
            sigma = sigma * to_model
        else:
            rows = error if error.dim() == 1 else error[sl]
            if rows.shape[-1] != flux.shape[-1]:
                raise ValueError(
                    f"error has {rows.shape[-1]} pixels, the emulator {flux.shape[-1]}"
                )
            sigma = sigma_from_relative_error(flux, rows)
            star_snr = expected_snr(flux, sigma.expand_as(flux))
        fisher = fisher_information(
            jac, sigma, flux=flux if with_flux else None, continuum_order=continuum_order
        )
        fisher = fisher[..., order, :][..., order]
        fishers.append(fisher)
        crlbs.append(marginal_crlb(fisher, 0))
        snrs.append(star_snr.to(torch.float64))
    return Ceilings(
        labels=labels,
        snr=torch.cat(snrs),
        crlb=torch.cat(crlbs),
        fisher=torch.cat(fishers),
        variance=variance,
        target=target,
        parameters=parameters,
        mag=mag_t,
        continuum_order=continuum_order,
    )
