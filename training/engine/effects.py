"""Real-data effects of the data engine: what separates an observed PFS spectrum from an ideal one.

Each effect is a small class: the prior over its strength (a
:func:`specvit.bounds.prior.parse_distribution` distribution, or a number for a fixed strength,
:class:`Fixed`), ``sample(n, generator)`` of its per-star parameters, and the operation it does
at its stage of a draw of :class:`training.engine.simulate.Simulator`:

- **spectrum** (the star's relative f_ν spectrum, before the scaling to the drawn HSC-i
  magnitude): :class:`LSFSpread` (which emulator), :class:`WavelengthOffset` (the star moved),
  :class:`Extinction`;
- **noise** (the noise draw): :class:`WavelengthOffset` (the sky + detector variance moved),
  :class:`BackgroundColour` (its colour changed);
- **observed** (after the noise draw, before the S/N, in this order): :class:`TelluricResiduals`,
  :class:`SkyResiduals`, :class:`WavelengthOffset` (the residual of subtracting an unshifted
  sky), :class:`CosmicRays`, :class:`FluxCalibration` (flux and σ), :class:`SigmaScale` (σ).

:class:`Effects` holds the ones switched on (``Effects.off()``, ``Effects.default()``,
``Effects.from_dict`` for configs and file attributes, ``Effects.only(name, ...)`` for one effect
at a chosen strength) and applies them in that order. Defaults and their sources:
``docs/data_engine.md`` (section *Real-data effects*).

Randomness: an effect never draws from the simulator's generator. When any effect is on, a seed
is hashed from the generator's state as the simulator receives it (nothing is drawn from it), and
each effect draws from its own streams (:func:`training.engine.seeding.step_seed` of that seed and
the effect's stream id): the labels, magnitudes and noise of a draw are the same with any set of
effects, and one effect's draws do not depend on which others are on or on its own strength.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from specvit.bounds.prior import Beta, parse_distribution
from specvit.config import ModelDomain
from specvit.continuum import legendre_basis
from specvit.instrument import (
    DEFAULT_N_EXPOSURES,
    MR_RESOLUTION,
    MR_RESOLVING_POWERS,
    PFS_MR,
    lsf_matrix,
)
from training.engine.seeding import step_seed

__all__ = [
    "EFFECT_TYPES",
    "SUBARU_ALTITUDE_KM",
    "BackgroundColour",
    "CosmicRays",
    "Effect",
    "Effects",
    "Extinction",
    "Fixed",
    "FluxCalibration",
    "LSFSpread",
    "SigmaScale",
    "SkyResiduals",
    "SmoothCurveEffect",
    "TelluricResiduals",
    "WavelengthOffset",
    "o2_column",
    "o2_layer_weights",
    "parse_strength",
    "shift_pixels",
    "state_seed",
    "telluric_model",
    "us1976_pressure",
]


# ---------------------------------------------------------------------------------- strengths
@dataclass(frozen=True)
class Fixed:
    """A strength held at one value (e.g. one grade of "one effect at graded strengths").

    Its :meth:`sample` draws (and ignores) the same uniforms as a distribution would, so an
    effect's other draws (shapes, positions) are the same at every fixed strength.
    """

    value: float

    @property
    def low(self) -> float:
        """The value (the support's lower end)."""
        return self.value

    @property
    def high(self) -> float:
        """The value (the support's upper end)."""
        return self.value

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        """The value, shaped and placed like ``u``."""
        return torch.full_like(u, self.value)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` float64 copies of the value (``n`` uniforms are drawn from ``generator``)."""
        return self.icdf(torch.rand(n, generator=generator, dtype=torch.float64))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "fixed", "value": v}``; :func:`parse_strength` reads it back."""
        return {"kind": "fixed", "value": self.value}

    def __str__(self) -> str:
        return f"{self.value:g}"


def parse_strength(spec: Any) -> Any:
    """A strength prior: a number (:class:`Fixed`), ``{"kind": "fixed", "value": v}``, or any
    :func:`specvit.bounds.prior.parse_distribution` input (``(low, high)``, a mapping, ...)."""
    if isinstance(spec, Fixed):
        return spec
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return Fixed(float(spec))
    if isinstance(spec, Mapping) and spec.get("kind") == "fixed":
        return Fixed(float(spec["value"]))
    return parse_distribution(spec)


# ---------------------------------------------------------------------------------- helpers
def state_seed(generator: torch.Generator) -> int:
    """A 63-bit seed hashed from ``generator``'s current state; draws nothing from it."""
    digest = hashlib.blake2b(generator.get_state().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


#: Neighbours of the 6-point Lagrange interpolation of :func:`shift_pixels`.
_TAPS = (-2, -1, 0, 1, 2, 3)


def shift_pixels(x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``x`` read at pixel positions ``i + offset``: a sub-pixel shift on the grid.

    Six-point Lagrange interpolation of the pixel values (the spectra are sampled by ≈ 3–4
    pixels per FWHM, so a pixel-integrated spectrum is a smooth function of the pixel position):
    held against the exact integration over shifted pixel edges of
    :class:`specvit.emulator.DopplerShift`, it is good to < 1e-3 of the flux
    (``tests/test_effects.py``). An offset of exactly 0 returns ``x`` unchanged; beyond the ends
    the edge pixels are repeated.

    Parameters
    ----------
    x : torch.Tensor
        ``(L,)`` (one pattern for every spectrum) or ``(n, L)``.
    offset : torch.Tensor
        ``(n,)`` shifts in pixels (``> 0``: pixel ``i`` takes what was at ``i + offset``).

    Returns
    -------
    torch.Tensor
        ``(n, L)`` in ``x``'s dtype.
    """
    offset = torch.as_tensor(offset, dtype=torch.float64, device=x.device).reshape(-1)
    n, size = offset.shape[0], x.shape[-1]
    base = offset.floor()
    t = offset - base
    weights = torch.ones(n, len(_TAPS), dtype=torch.float64, device=x.device)
    for k, m in enumerate(_TAPS):
        for j in _TAPS:
            if j != m:
                weights[:, k] *= (t - j) / (m - j)
    weights = weights.to(x.dtype)
    pad = int(base.abs().max()) + 3 if n else 3
    padded = torch.nn.functional.pad(x.reshape(-1, 1, size), (pad, pad), mode="replicate")
    padded = padded[:, 0]  # (1 or n, L + 2 pad)
    out = torch.empty((n, size), dtype=x.dtype, device=x.device)
    for b in base.unique().tolist():
        rows = (base == b).nonzero()[:, 0]
        src = padded if padded.shape[0] == 1 else padded[rows]
        acc = torch.zeros((rows.numel(), size), dtype=x.dtype, device=x.device)
        for k, m in enumerate(_TAPS):
            lo = pad + int(b) + m
            acc.addcmul_(weights[rows, k : k + 1], src[:, lo : lo + size])
        out[rows] = acc
    return out


# ---------------------------------------------------------------------------------- effects
class Effect:
    """What every effect has: a ``name`` (its key in :class:`Effects` and in configs), a random
    ``stream`` id, the per-star parameter keys it returns (``fields``), :meth:`sample` and
    :meth:`to_dict`."""

    name: ClassVar[str]
    stream: ClassVar[int]
    fields: ClassVar[tuple[str, ...]]

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-star parameters, float64 ``(n, ...)`` tensors on the CPU."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML form; ``type(self)(**effect.to_dict())`` rebuilds it."""
        raise NotImplementedError

    def absent(self, params: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
        """In place: the parameters of the stars ``rows`` (a boolean ``(n,)`` mask) set to the
        values under which the effect leaves a spectrum as without it (here zero for every
        field; the effects whose neutral value is not zero say theirs)."""
        for key in self.fields:
            params[key][rows] = 0.0

    def columns(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-star scalar columns of the parameters (for a shard's label table)."""
        return {k: params[k] for k in self.fields}

    def column_names(self) -> tuple[str, ...]:
        """The keys of :meth:`columns`."""
        return self.fields

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


class LSFSpread(Effect):
    """The line-spread function's resolving power differs from fibre to fibre.

    The emulator folds the LSF into its coefficients once per resolving power
    (:meth:`specvit.emulator.Emulator.load`, ≈ 0.3 s, a sparse 4096 × 18501 operator), so a
    continuous R per star would need a fold per star, and extra Gaussian broadening of the
    R = 5000 spectra can only lower R (and its kernel would have to change along the arm). So
    the simulator holds one emulator per value of ``values`` and each star is observed with one
    of them, drawn uniformly (spectrum stage: :meth:`apply` picks the emulator).

    Parameters
    ----------
    values : sequence of float
        The resolving powers λ/FWHM (default
        :data:`specvit.instrument.lsf.MR_RESOLVING_POWERS`, 4000, 4500, …, 6500; the design value
        of the MR arm is ≈ 5000).
    """

    name, stream, fields = "lsf", 1, ("resolving_power",)

    def __init__(self, values: Any = MR_RESOLVING_POWERS) -> None:
        values = (values,) if isinstance(values, int | float) else values
        self.values = tuple(float(v) for v in values)
        if not self.values or min(self.values) <= 0 or len(set(self.values)) != len(self.values):
            raise ValueError(f"LSF values must be distinct resolving powers > 0, got {values}")

    def absent(self, params: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
        """In place: the stars ``rows`` observed at the design resolving power
        (:data:`specvit.instrument.MR_RESOLUTION`; :class:`Effects` checks it is one of
        :attr:`values`)."""
        params["resolving_power"][rows] = MR_RESOLUTION

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``resolving_power`` (n,): one of :attr:`values` per star."""
        k = torch.randint(len(self.values), (n,), generator=generator)
        return {"resolving_power": torch.tensor(self.values, dtype=torch.float64)[k]}

    def apply(
        self,
        params: Mapping[str, torch.Tensor],
        emulate: Callable[[float, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Spectra ``(n, L)``: ``emulate(R, rows)`` for the stars (``rows``) observed at each R."""
        rp = params["resolving_power"]
        parts = []
        for value in self.values:
            rows = (rp == value).nonzero()[:, 0]
            if rows.numel():
                parts.append((rows, emulate(value, rows)))
        if sum(rows.numel() for rows, _ in parts) != rp.shape[0] or not parts:
            raise ValueError("resolving_power holds values this LSF spread has no emulator for")
        out = parts[0][1].new_empty((rp.shape[0], parts[0][1].shape[-1]))
        for rows, flux in parts:
            out[rows] = flux
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values)}


class WavelengthOffset(Effect):
    """An error of the fibre's wavelength solution, a fraction of a pixel.

    The pipeline labels pixel ``i`` with λ_i while it received light of λ_i + δ·Δλ: the **whole
    observed spectrum** moves by ``δ`` pixels relative to the nominal grid — the star (spectrum
    stage, after any Doppler shift: the two add), the sky's variance pattern (noise stage) and
    the sky in the fibre — while the sky model, built from the sky fibres on their own (right)
    solutions, is subtracted at the nominal wavelengths: the residual ``sky(λ + δ) − sky(λ)``,
    derivative-shaped at the OH lines, is added after the noise (observed stage). ``δ > 0``:
    features appear ``δ`` pixels bluer than they are. Shifts by :func:`shift_pixels`.

    Parameters
    ----------
    pixels : strength
        Prior of δ in pixels (default uniform ±0.1 px, ±1.6 km/s at 8000 Å; LAMOST's wavelength
        calibration is good to 4.5 km/s, Bai et al. 2017, ≈ 0.07 of its ≈ 69 km/s pixels).
    """

    name, stream, fields = "wavelength", 2, ("wave_offset",)

    def __init__(self, pixels: Any = (-0.1, 0.1)) -> None:
        self.pixels = parse_strength(pixels)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``wave_offset`` (n,): δ in pixels."""
        return {"wave_offset": self.pixels.sample(n, generator)}

    def apply(self, flux: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Spectrum stage: the star's spectra ``(n, L)`` moved by δ."""
        return shift_pixels(flux, params["wave_offset"])

    def background(
        self, variance: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Noise stage: the ``(L,)`` sky + detector variance moved by each star's δ, ``(n, L)``."""
        return shift_pixels(variance, params["wave_offset"])

    def sky_residual(self, sky: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Observed stage: ``sky(λ + δ) − sky(λ)`` (nJy, ``(n, L)``) left by the sky subtraction."""
        return shift_pixels(sky, params["wave_offset"]) - sky

    def to_dict(self) -> dict[str, Any]:
        return {"pixels": self.pixels.to_dict()}


class SmoothCurveEffect(Effect):
    """An effect whose per-star shape is a smooth curve across the arm, ``Σ_k c_k P_k(x)``
    (Legendre P_1 … P_order in the normalised wavelength x, −1 at the first pixel and +1 at the
    last): per star a shape with standard-normal coefficients, scaled so that its
    **peak-to-peak** over the arm is the drawn ``amplitude``. Subclasses say what the curve does
    (:class:`FluxCalibration`, :class:`BackgroundColour`) and name their parameters ``prefix``
    + ``_amplitude`` and ``_coeffs`` (columns ``_c1`` …).
    """

    prefix: ClassVar[str]

    def __init__(self, amplitude: Any, order: int) -> None:
        self.amplitude = parse_strength(amplitude)
        if self.amplitude.low < 0:
            raise ValueError(f"the {self.name} amplitude must be ≥ 0, got {self.amplitude}")
        if int(order) != order or order < 1:
            raise ValueError(f"order must be a positive integer, got {order}")
        self.order = int(order)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``<prefix>_amplitude`` (n,) and ``<prefix>_coeffs`` (n, order): c_1 … c_order."""
        amplitude = self.amplitude.sample(n, generator)
        shape = torch.randn(n, self.order, generator=generator, dtype=torch.float64)
        curve = shape @ legendre_basis(_X, self.order)
        ptp = (curve.amax(-1) - curve.amin(-1)).clamp_min(1e-12)
        coeffs = shape * (amplitude / ptp).unsqueeze(-1)
        return {f"{self.prefix}_amplitude": amplitude, f"{self.prefix}_coeffs": coeffs}

    def curve(self, params: Mapping[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
        """``(n, L)`` float64: each star's ``Σ_k c_k P_k(x)`` on ``num_pixels`` pixels."""
        coeffs = params[f"{self.prefix}_coeffs"]
        x = torch.linspace(-1.0, 1.0, num_pixels, dtype=torch.float64, device=coeffs.device)
        return coeffs.to(torch.float64) @ legendre_basis(x, self.order)

    def columns(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {f"{self.prefix}_amplitude": params[f"{self.prefix}_amplitude"]}
        for k in range(self.order):
            out[f"{self.prefix}_c{k + 1}"] = params[f"{self.prefix}_coeffs"][:, k]
        return out

    def column_names(self) -> tuple[str, ...]:
        names = (f"{self.prefix}_c{k + 1}" for k in range(self.order))
        return (f"{self.prefix}_amplitude", *names)

    def to_dict(self) -> dict[str, Any]:
        return {"amplitude": self.amplitude.to_dict(), "order": self.order}


class BackgroundColour(SmoothCurveEffect):
    """The sky + detector background's colour changes from one observation to the next.

    Moonlight and twilight add a sky continuum that falls toward the red, airmass and zodiacal
    light change it, the read noise is flat: the background's σ across the arm is not the ETC's
    new-moon shape. The factor on the sky + detector σ is ``exp(Σ_k c_k P_k(x))`` (Legendre
    P_1 … P_order in the normalised wavelength x), per star a shape with standard-normal
    coefficients scaled so that the peak-to-peak of its log is the drawn ``amplitude``; the
    variance, and so the noise drawn and the σ reported, take its square (noise stage). The
    level is left as it is (the magnitude prior spans the S/N).

    Why it is in the engine: at low S/N the noise of a spectrum divided by its continuum is
    ``σ/continuum`` per pixel, and with the ETC's one background shape its trend is the star's
    continuum: a model trained on that one shape reads the continuum (T_eff, reddening) from its
    noise. Ideal spectra given a background σ 50 % higher at one end of the arm than the other
    moved the default model's T_eff by −171 K and +510 K at S/N 2–3 (``docs/research/
    background_colour.py``). No PFS measurement of the background's colour is at hand: the
    default prior is wide on purpose.

    Parameters
    ----------
    amplitude : strength
        Prior of the peak-to-peak of ``ln`` of the σ factor (default uniform 0–0.5: the σ at
        one end of the arm up to 1.65 times that at the other).
    order : int
        Highest Legendre order (default 2).
    """

    name, stream, fields = "background", 9, ("background_amplitude", "background_coeffs")
    prefix = "background"

    def __init__(self, amplitude: Any = (0.0, 0.5), order: int = 2) -> None:
        super().__init__(amplitude, order)

    def apply(self, variance: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Noise stage: the sky + detector variance ``(L,)`` or ``(n, L)`` times the square of
        each star's factor ``exp(curve)``, ``(n, L)``."""
        log_sigma = self.curve(params, variance.shape[-1]).to(variance.device)
        return variance * torch.exp(2.0 * log_sigma).to(variance.dtype)


class Extinction(Effect):
    """Interstellar extinction: the star's spectrum times ``10^(−0.4 E(B−V) R_V A_λ/A_V)``.

    The curve comes from ``dust_extinction`` (an astropy-affiliated package; a ``train`` extra),
    on the pixel centres; it multiplies the noiseless spectrum before the scaling to the
    magnitude, so the drawn HSC-i magnitude is the **observed, reddened** one (as the
    photometry that selects targets measures it) and the photon noise follows the reddened flux.

    Parameters
    ----------
    ebv : strength
        Prior of E(B−V) in mag (default uniform 0–1).
    law : str
        A class of ``dust_extinction.parameter_averages`` (default ``"G23"``, Gordon et al. 2023,
        valid 0.09–32 µm; ``"F99"`` Fitzpatrick 1999 is another).
    R_V : float
        Total-to-selective extinction (default 3.1, the diffuse Milky Way average).
    """

    name, stream, fields = "extinction", 3, ("ebv",)

    def __init__(self, ebv: Any = (0.0, 1.0), law: str = "G23", R_V: float = 3.1) -> None:
        self.ebv = parse_strength(ebv)
        if self.ebv.low < 0:
            raise ValueError(f"E(B−V) must be ≥ 0, got the prior {self.ebv}")
        self.law, self.R_V = str(law), float(R_V)
        self.model()  # fails here, not mid-run, on an unknown law or R_V

    def model(self) -> Any:
        """The ``dust_extinction`` law at :attr:`R_V`."""
        try:
            from dust_extinction import parameter_averages
        except ImportError as err:  # pragma: no cover - the train extra installs it
            raise ImportError(
                "the extinction effect needs dust_extinction: pip install 'specvit[train]'"
            ) from err
        law = getattr(parameter_averages, self.law, None)
        if law is None:
            raise ValueError(f"unknown extinction law {self.law!r} in dust_extinction")
        return law(Rv=self.R_V)

    def curve(self, wavelength: np.ndarray) -> np.ndarray:
        """``A_λ / E(B−V)`` (mag per mag) at ``wavelength`` (Å)."""
        import astropy.units as u

        return self.R_V * np.asarray(self.model()(np.asarray(wavelength) * u.AA), np.float64)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``ebv`` (n,): E(B−V) in mag."""
        return {"ebv": self.ebv.sample(n, generator)}

    def apply(
        self, flux: torch.Tensor, params: Mapping[str, torch.Tensor], curve: torch.Tensor
    ) -> torch.Tensor:
        """Spectrum stage: ``flux`` ``(n, L)`` reddened; ``curve`` is :meth:`curve` on the grid."""
        a_lambda = params["ebv"].to(flux.dtype).unsqueeze(-1) * curve.to(flux.dtype)
        return flux * torch.exp(a_lambda * (-0.4 * math.log(10.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"ebv": self.ebv.to_dict(), "law": self.law, "R_V": self.R_V}


#: Normalised wavelength (−1 at the first pixel centre, +1 at the last) on which a calibration
#: shape's peak-to-peak is measured: 1025 points, about every 4th MR pixel (a cubic's extrema
#: differ by < 1e-5 of its peak-to-peak between these points and the 4096 pixels).
_X = torch.linspace(-1.0, 1.0, 1025, dtype=torch.float64)


class FluxCalibration(SmoothCurveEffect):
    """A smooth multiplicative error of the flux calibration across the arm.

    The factor is ``1 + Σ_k c_k P_k(x)`` (Legendre P_1 … P_order in the normalised wavelength x,
    −1 at the first pixel and +1 at the last): per star, a shape with standard-normal
    coefficients, scaled so that its **peak-to-peak** over the arm is the drawn ``amplitude``.
    The calibration vector divides the counts into flux, so it multiplies the flux **and** σ
    (and the sky residuals and cosmic rays in them): observed stage. The drawn magnitude stays
    the star's true one (it sets the photon noise); the delivered spectrum's synthetic
    magnitude differs from it by at most half the amplitude. The constant term is left out:
    models see flux over its median.

    Parameters
    ----------
    amplitude : strength
        Prior of the peak-to-peak amplitude (default uniform 0.02–0.15: "several % rms in good
        cases" is the PFS status page's 2025 figure for the flux calibration).
    order : int
        Highest Legendre order (default 3).
    """

    name, stream, fields = "calibration", 4, ("calib_amplitude", "calib_coeffs")
    prefix = "calib"

    def __init__(self, amplitude: Any = (0.02, 0.15), order: int = 3) -> None:
        super().__init__(amplitude, order)

    def factor(self, params: Mapping[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
        """``(n, L)``: the calibration error's factor ``1 + Σ c_k P_k(x)``."""
        return 1.0 + self.curve(params, num_pixels)

    def apply(
        self, flux: torch.Tensor, sigma: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> None:
        """Observed stage, in place: ``flux`` and ``sigma`` times the factor."""
        factor = self.factor(params, flux.shape[-1]).to(flux.dtype)
        flux.mul_(factor)
        sigma.mul_(factor)


# ---------------------------------------------------------------------------------- tellurics
#: Subaru's altitude (km) on Maunakea, where PFS observes.
SUBARU_ALTITUDE_KM = 4.139
#: Mole fraction of O₂ in dry air (1976 US Standard Atmosphere).
_O2_FRACTION = 0.209476
#: Mean mass of a dry-air molecule (kg) and the standard gravity (m s⁻²).
_AIR_MOLECULE_KG = 28.9644e-3 / 6.02214076e23
_G0 = 9.80665
#: The 1976 US Standard Atmosphere up to 86 km: base altitude (geopotential km), temperature
#: (K), lapse rate (K/km) and pressure (Pa) of each layer.
_US1976 = (
    (0.0, 288.15, -6.5, 101325.0),
    (11.0, 216.65, 0.0, 22632.06),
    (20.0, 216.65, 1.0, 5474.889),
    (32.0, 228.65, 2.8, 868.0187),
    (47.0, 270.65, 0.0, 110.9063),
    (51.0, 270.65, -2.8, 66.93887),
    (71.0, 214.65, -2.0, 3.956420),
)
#: g₀M/R* of the standard atmosphere, K per km.
_HYDROSTATIC = 34.1632
#: Altitudes (km) of the columns of PhoSim's O₂ cross sections (``o2cs.txt``, shipped by
#: pwv_kpno): 0, 7, …, 56 km, as PhoSim's ``Air::opacitySetup`` reads them.
_O2_LAYERS_KM = 7.0 * np.arange(9)
#: The fine model read from pwv_kpno: 7000–8950 Å at its 0.05 Å, the MR arm and the widest LSF.
_TELLURIC_RANGE = (7000.0, 8950.0)
#: Columns at which the LSF-convolved transmission is tabulated (Hermite-interpolated between):
#: line-of-sight H₂O in mm of precipitable water, O₂ in airmasses (the site's vertical column).
#: Nodes 1.25× apart: the interpolation is good to 2e-5 in ln T.
_H2O_NODES = np.concatenate([[0.0], np.geomspace(1e-3, 100.0, 53)])
_O2_NODES = np.concatenate([[0.0], np.geomspace(1e-3, 10.0, 43)])
#: Default prior of the zenith precipitable water vapour (mm): 20/50/80 % at 0.93/1.80/2.98 mm,
#: Maunakea's 1.0/1.6/3.0 mm (Gemini's water-vapour constraints, from CSO 225 GHz opacities).
_MAUNAKEA_PWV = Beta(0.0, 10.0, 2.0, 8.0)


def us1976_pressure(altitude_km: np.ndarray | float) -> np.ndarray:
    """Pressure of the 1976 US Standard Atmosphere.

    Parameters
    ----------
    altitude_km : float or numpy.ndarray
        Geopotential altitude, 0–86 km (at Maunakea's 4.1 km, 3 m below the geometric one).

    Returns
    -------
    numpy.ndarray
        Pressure in Pa, shaped like ``altitude_km``.
    """
    h = np.asarray(altitude_km, dtype=np.float64)
    if np.any(h < 0) or np.any(h > 86.0):
        raise ValueError("the standard atmosphere is tabulated here for 0–86 km")
    out = np.empty_like(h)
    layer = np.searchsorted([row[0] for row in _US1976], h, side="right") - 1
    for k, (base, temp, lapse, pressure) in enumerate(_US1976):
        sel = layer == k
        dh = h[sel] - base
        if lapse == 0.0:
            out[sel] = pressure * np.exp(-_HYDROSTATIC * dh / temp)
        else:
            out[sel] = pressure * (temp / (temp + lapse * dh)) ** (_HYDROSTATIC / lapse)
    return out


def o2_column(altitude_km: float = SUBARU_ALTITUDE_KM) -> float:
    """Vertical O₂ column above a site in the standard atmosphere, ``x_O₂ P / (m̄ g₀)``.

    Parameters
    ----------
    altitude_km : float
        The site's altitude (default Subaru's, :data:`SUBARU_ALTITUDE_KM`).

    Returns
    -------
    float
        Molecules cm⁻² (2.69e24 at Subaru, 4.50e24 at sea level).
    """
    pressure = float(us1976_pressure(altitude_km))
    return _O2_FRACTION * pressure / (_AIR_MOLECULE_KG * _G0) * 1e-4


def o2_layer_weights(altitude_km: float = SUBARU_ALTITUDE_KM) -> np.ndarray:
    """The share of the O₂ column above a site read at each altitude of PhoSim's cross sections.

    The column above an altitude is ∝ the pressure there; each slice of it is read with the cross
    section interpolated linearly between the two layers around it (0, 7, …, 56 km; the last
    takes what lies above it), as PhoSim does.

    Parameters
    ----------
    altitude_km : float
        The site's altitude (default Subaru's).

    Returns
    -------
    numpy.ndarray
        ``(9,)`` weights of the layers at 0, 7, …, 56 km, summing to 1.
    """
    h = np.linspace(altitude_km, 86.0, 16001)
    dp = -np.diff(us1976_pressure(h))  # the column of each slice, ∝ its pressure drop
    mid = 0.5 * (h[1:] + h[:-1])
    top = _O2_LAYERS_KM[-1]
    width = _O2_LAYERS_KM[1] - _O2_LAYERS_KM[0]
    hats = np.clip(1.0 - np.abs(mid[None, :] - _O2_LAYERS_KM[:, None]) / width, 0.0, None)
    hats[-1, mid >= top] = 1.0
    weights = hats @ dp
    return weights / weights.sum()


def _pwv_kpno_root() -> Path:
    """Where the installed pwv_kpno package keeps its data (found, not imported)."""
    spec = importlib.util.find_spec("pwv_kpno")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the telluric effect needs pwv_kpno (GPL-3, the train extra): "
            "pip install 'specvit[train]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _read_uniform_rows(
    path: Path, lo: float, hi: float, *, delimiter: str | None, header: int, to_angstrom: float
) -> np.ndarray:
    """The rows of a table sampled on a uniform wavelength grid (column 0, × ``to_angstrom``
    in Å) that cover ``[lo, hi]`` Å, read without parsing the rest of the file."""
    with open(path) as f:
        for _ in range(header):
            next(f)
        first, second = (float(next(f).split(delimiter)[0]) * to_angstrom for _ in range(2))
    step = second - first
    start = max(int(np.floor((lo - first) / step + 1e-6)), 0)
    count = int(np.ceil((hi - first) / step - 1e-6)) - start + 1
    rows = np.loadtxt(path, delimiter=delimiter, skiprows=header + start, max_rows=count, ndmin=2)
    wave = rows[:, 0] * to_angstrom
    if (
        rows.shape[0] != count
        or wave[0] > lo + 1e-6
        or wave[-1] < hi - 1e-6
        or np.abs(np.diff(wave) - step).max() > 1e-6
    ):
        raise ValueError(f"{path} is not the uniform wavelength table expected")
    rows[:, 0] = wave
    return rows


@functools.lru_cache(maxsize=1)
def telluric_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fine telluric model over 7000–8950 Å, read from the installed ``pwv_kpno`` 1.3.

    Returns
    -------
    wavelength : numpy.ndarray
        ``(S,)`` Å, vacuum, every 0.05 Å.
    h2o : numpy.ndarray
        ``(S,)`` H₂O optical depth per mm of precipitable water along the line of sight:
        pwv_kpno's ``site_data/kitt_peak/atm_model.csv`` (column ``1/mm``), the model
        ``pwv_kpno.pwv_atm.trans_for_pwv`` exponentiates.
    o2 : numpy.ndarray
        ``(S,)`` O₂ optical depth at airmass 1 above Subaru: PhoSim's O₂ cross sections
        (``default_atmosphere/o2cs.txt``, cm² per molecule at 0, 7, …, 56 km) weighted by
        :func:`o2_layer_weights`, times :func:`o2_column`.
    """
    root = _pwv_kpno_root()
    h2o = _read_uniform_rows(
        root / "site_data" / "kitt_peak" / "atm_model.csv",
        *_TELLURIC_RANGE,
        delimiter=",",
        header=1,
        to_angstrom=1.0,
    )
    o2 = _read_uniform_rows(
        root / "default_atmosphere" / "o2cs.txt",
        *_TELLURIC_RANGE,
        delimiter=None,
        header=0,
        to_angstrom=1e4,
    )
    if h2o.shape[0] != o2.shape[0] or np.abs(h2o[:, 0] - o2[:, 0]).max() > 1e-6:
        raise ValueError("pwv_kpno's H₂O and O₂ tables are not on the same wavelengths")
    if o2.shape[1] != _O2_LAYERS_KM.size + 1:
        raise ValueError(f"o2cs.txt has {o2.shape[1] - 1} layers, expected {_O2_LAYERS_KM.size}")
    tau_o2 = o2_column() * (o2[:, 1:] @ o2_layer_weights())
    return h2o[:, 0], h2o[:, 1], tau_o2


@functools.lru_cache(maxsize=8)
def _telluric_table(resolution: float) -> np.ndarray:
    """``(2 U_H₂O + 2 U_O₂, 4096)`` float64: ln T and d ln T/du of the transmission on the MR
    pixels at ``resolution``, at the nodes u of :data:`_H2O_NODES` then :data:`_O2_NODES`."""
    wave, tau_h2o, tau_o2 = telluric_model()
    centres = PFS_MR.wavelength()
    edges = np.append(centres - 0.5 * PFS_MR.step, centres[-1] + 0.5 * PFS_MR.step)
    lsf = lsf_matrix(wave, edges, resolution)
    blocks = []
    for tau, nodes in ((tau_h2o, _H2O_NODES), (tau_o2, _O2_NODES)):
        fine = np.exp(-np.outer(tau, nodes))  # (S, U)
        conv = lsf @ fine  # (P, U)
        if not np.all(conv > 0):
            raise ValueError("a telluric band is black on the grid: lower the tabulated column")
        blocks += [np.log(conv).T, (-(lsf @ (tau[:, None] * fine)) / conv).T]
    return np.concatenate(blocks)


def _hermite_weights(
    nodes: torch.Tensor, u: torch.Tensor, offset: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns ``(n, 4)`` and weights ``(n, 4)`` of the cubic Hermite interpolation at ``u`` of a
    table block starting at row ``offset``: values at ``offset + j``, derivatives at
    ``offset + U + j``."""
    size = nodes.numel()
    j = (torch.searchsorted(nodes, u, right=True) - 1).clamp(0, size - 2)
    h = nodes[j + 1] - nodes[j]
    t = (u - nodes[j]) / h
    t2, t3 = t * t, t * t * t
    weights = torch.stack(
        [2 * t3 - 3 * t2 + 1, (t3 - 2 * t2 + t) * h, 3 * t2 - 2 * t3, (t3 - t2) * h], -1
    )
    cols = torch.stack([j, j + size, j + 1, j + 1 + size], -1) + offset
    return cols, weights


class TelluricResiduals(Effect):
    """What an imperfect telluric correction leaves: the O₂ A band and the H₂O bands.

    PFS observes from Maunakea through the O₂ A band (7594–7720 Å) and H₂O bands (7160–7340,
    8120–8350 Å, :data:`specvit.instrument.TELLURIC_BANDS`; and weak lines across the arm). The
    pipeline divides the spectrum by a model transmission; when that model has ``(1 − ε)`` times
    the true absorbing column (e.g. a precipitable water vapour misjudged by a fraction ε), the
    delivered flux is the true one times ::

        r(λ) = T(λ; c_H₂O, X) / T(λ; (1 − ε) c_H₂O, (1 − ε) X),

    with ``T`` the transmission as the spectrograph sees it (the line-by-line model convolved
    with the Gaussian LSF and integrated over the MR pixels, :func:`specvit.instrument.lsf_matrix`),
    ``c_H₂O = pwv · X`` the line-of-sight water (mm) and ``X`` the airmass (the O₂ column is the
    site's vertical one times X). ε > 0 under-corrects (absorption left), ε < 0 over-corrects.
    To first order ``ln r = ε c ∂ln T/∂c``: ``ε ln T`` (the ``T^ε`` of an unsaturated band)
    where the lines are weak, less where they are saturated (their cores are black in the data
    and in the model alike); ``|ln r| ≤ |ε| |ln T|`` everywhere (ln T is convex in the column).
    Observed stage, first: it multiplies the star's flux and its noise; σ is not changed (the
    pipeline does not know the residual), as for the sky residuals.

    The model (:func:`telluric_model`) comes from ``pwv_kpno`` (GPL-3, an optional dependency of the
    ``train`` extra, read only here): its H₂O absorption per mm of water (``trans_for_pwv``'s
    table, from PhoSim's ground-level cross sections) and PhoSim's O₂ cross sections, at the 1976 US
    Standard Atmosphere's O₂ column above Subaru (4139 m). It is tabulated once per resolving
    power at columns 1.25× apart and interpolated (cubic Hermite, exact derivatives) to 2e-5
    in ln T.

    Parameters
    ----------
    fraction : strength
        Prior of ε (default uniform ±0.1: a correction 10 % off in the column either way).
    pwv : strength
        Prior of the zenith precipitable water vapour in mm (default beta(2, 8) on 0–10 mm:
        20/50/80 % at 0.93/1.80/2.98 mm against Maunakea's 1.0/1.6/3.0 mm).
    airmass : strength
        Prior of the airmass X (default uniform 1.0–1.5, zenith angles up to 48°).
    oxygen : bool
        Whether the O₂ A band is in the model (default True; False: H₂O only).
    resolution : float or None
        Resolving power the residual is seen at; None (default): the star's own when the LSF
        spread is on, else :data:`specvit.instrument.MR_RESOLUTION` (the design value).
    """

    name, stream, fields = "telluric", 8, ("telluric_fraction", "pwv", "airmass")

    def __init__(
        self,
        fraction: Any = (-0.1, 0.1),
        pwv: Any = _MAUNAKEA_PWV,
        airmass: Any = (1.0, 1.5),
        oxygen: bool = True,
        resolution: float | None = None,
    ) -> None:
        self.fraction = parse_strength(fraction)
        self.pwv = parse_strength(pwv)
        self.airmass = parse_strength(airmass)
        self.oxygen = bool(oxygen)
        self.resolution = None if resolution is None else float(resolution)
        if not -1.0 <= self.fraction.low <= self.fraction.high <= 1.0:
            raise ValueError(f"the residual fraction must lie in [−1, 1], got {self.fraction}")
        if self.pwv.low < 0 or self.airmass.low < 1.0:
            raise ValueError("the telluric effect needs a PWV ≥ 0 mm and an airmass ≥ 1")
        stretch = max(1.0, 1.0 - self.fraction.low)
        if self.pwv.high * self.airmass.high * stretch > _H2O_NODES[-1]:
            raise ValueError(f"line-of-sight water beyond the tabulated {_H2O_NODES[-1]:g} mm")
        if self.airmass.high * stretch > _O2_NODES[-1]:
            raise ValueError(f"airmass beyond the tabulated {_O2_NODES[-1]:g}")
        if self.resolution is not None and not self.resolution > 0:
            raise ValueError(f"the resolving power must be > 0, got {self.resolution}")
        _pwv_kpno_root()  # fails here, not mid-run, without pwv_kpno
        self._tables: dict[tuple[float, str, torch.dtype], torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. for a ``DataLoader`` worker) without the cached tables."""
        return {**self.__dict__, "_tables": {}}

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``telluric_fraction`` (ε), ``pwv`` (mm, zenith) and ``airmass``, each (n,)."""
        return {
            "telluric_fraction": self.fraction.sample(n, generator),
            "pwv": self.pwv.sample(n, generator),
            "airmass": self.airmass.sample(n, generator),
        }

    # ------------------------------------------------------------------ the model on the grid
    def table(
        self,
        resolution: float,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """The tabulated ln T and its derivatives at ``resolution`` (cached per device, dtype)."""
        key = (float(resolution), str(torch.device(device)), dtype)
        if key not in self._tables:
            table = torch.from_numpy(_telluric_table(float(resolution)))
            self._tables[key] = table.to(device=device, dtype=dtype)
        return self._tables[key]

    def _weights(
        self, terms: list[tuple[torch.Tensor, torch.Tensor, float]], device: torch.device
    ) -> torch.Tensor:
        """``(n, rows)`` weights of the table rows for ``Σ sign · ln T(u)`` over ``terms`` of
        ``(H₂O column (mm), airmass, sign)``."""
        h2o = torch.as_tensor(_H2O_NODES, device=device)
        o2 = torch.as_tensor(_O2_NODES, device=device)
        n = terms[0][0].shape[0]
        out = torch.zeros((n, 2 * (h2o.numel() + o2.numel())), dtype=torch.float64, device=device)
        for water, airmass, sign in terms:
            blocks = [(h2o, water, 0)]
            if self.oxygen:
                blocks.append((o2, airmass, 2 * h2o.numel()))
            for nodes, u, offset in blocks:
                if torch.any(u < 0) or torch.any(u > nodes[-1]):
                    raise ValueError(
                        f"telluric column outside the tabulated 0–{float(nodes[-1]):g}"
                    )
                cols, w = _hermite_weights(nodes, u, offset)
                out.scatter_add_(1, cols, sign * w)
        return out

    def _per_resolution(
        self,
        params: Mapping[str, torch.Tensor],
        terms: Callable[[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor, float]]],
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """``exp(Σ sign · ln T)`` ``(n, 4096)`` for each star at its resolving power."""
        device = params["airmass"].device
        n = params["airmass"].shape[0]
        if self.resolution is not None or "resolving_power" not in params:
            value = self.resolution if self.resolution is not None else MR_RESOLUTION
            resolution = torch.full((n,), value, dtype=torch.float64, device=device)
        else:
            resolution = params["resolving_power"].to(device=device, dtype=torch.float64)
        out = torch.empty((n, PFS_MR.num), dtype=dtype, device=device)
        for value in resolution.unique().tolist():
            rows = (resolution == value).nonzero()[:, 0]
            weights = self._weights(terms(rows), device).to(dtype)
            out[rows] = torch.exp(weights @ self.table(value, device, dtype))
        return out

    def _columns(self, params: Mapping[str, torch.Tensor], rows: torch.Tensor) -> tuple:
        airmass = params["airmass"][rows].to(torch.float64)
        water = params["pwv"][rows].to(torch.float64) * airmass
        return water, airmass

    def factor(
        self, params: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """``(n, 4096)``: the residual r that multiplies each star's flux (1 where ε = 0)."""

        def terms(rows: torch.Tensor) -> list:
            water, airmass = self._columns(params, rows)
            kept = 1.0 - params["telluric_fraction"][rows].to(torch.float64)
            return [(water, airmass, 1.0), (kept * water, kept * airmass, -1.0)]

        return self._per_resolution(params, terms, dtype)

    def transmission(
        self, params: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """``(n, 4096)``: the transmission T the stars were observed through (``pwv``,
        ``airmass``, and ``resolving_power`` when given), as the spectrograph sees it."""

        def terms(rows: torch.Tensor) -> list:
            water, airmass = self._columns(params, rows)
            return [(water, airmass, 1.0)]

        return self._per_resolution(params, terms, dtype)

    def apply(self, flux: torch.Tensor, params: Mapping[str, torch.Tensor]) -> None:
        """Observed stage, in place: ``flux`` ``(n, L)`` times the residual (σ as it is)."""
        if flux.shape[-1] != PFS_MR.num:
            raise ValueError(f"the telluric effect is tabulated on the {PFS_MR.num} MR pixels")
        flux.mul_(self.factor(params, flux.dtype))

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction.to_dict(),
            "pwv": self.pwv.to_dict(),
            "airmass": self.airmass.to_dict(),
            "oxygen": self.oxygen,
            "resolution": self.resolution,
        }


class SkyResiduals(Effect):
    """What the sky subtraction leaves, built from the ETC's sky (:attr:`PFSNoiseModel.sky_njy`).

    Residual = ``sky_scale · sky + sky_pixel · sky · z`` (nJy, ``z`` standard normal per pixel),
    added after the noise; σ is **not** inflated for it (the pipeline does not know it). Per star,
    ``sky_scale`` is a coherent scaling error of the subtracted sky plus the mean of one scaling
    error per exposure (each normal with a per-star rms drawn from ``exposure_scale``, averaged
    over the exposures). The ETC's variance already holds a *random* per-pixel floor of 1 % of
    the sky per exposure (0.8 % at 12 exposures, ``specvit.instrument.noise``); these residuals
    are on top of it, and unknown to σ.

    Parameters
    ----------
    scale : strength
        Coherent scaling error (default uniform ±0.02).
    exposure_scale : strength
        rms of each exposure's scaling error (default uniform 0–0.04, the ≈ 4 % fibre
        throughput uncertainty LAMOST corrects with sky lines, Bai et al. 2017).
    pixel : strength
        rms of the per-pixel residual as a fraction of the sky in the pixel (default uniform
        0–0.02; LAMOST: ≈ 3 % residuals at sky lines and continuum, 1.5 % on dark nights).
    """

    name, stream, fields = "sky", 5, ("sky_scale", "sky_pixel")

    def __init__(
        self,
        scale: Any = (-0.02, 0.02),
        exposure_scale: Any = (0.0, 0.04),
        pixel: Any = (0.0, 0.02),
    ) -> None:
        self.scale = parse_strength(scale)
        self.exposure_scale = parse_strength(exposure_scale)
        self.pixel = parse_strength(pixel)
        if self.exposure_scale.low < 0 or self.pixel.low < 0:
            raise ValueError("the sky residuals' rms strengths must be ≥ 0")

    def sample(
        self, n: int, generator: torch.Generator, n_exposures: int = DEFAULT_N_EXPOSURES
    ) -> dict[str, torch.Tensor]:
        """``sky_scale`` (n,): coherent + exposure-mean scaling error; ``sky_pixel`` (n,)."""
        coherent = self.scale.sample(n, generator)
        rms = self.exposure_scale.sample(n, generator)
        pixel = self.pixel.sample(n, generator)
        per_exposure = torch.randn(n, int(n_exposures), generator=generator, dtype=torch.float64)
        return {"sky_scale": coherent + rms * per_exposure.mean(-1), "sky_pixel": pixel}

    def apply(
        self,
        flux: torch.Tensor,
        params: Mapping[str, torch.Tensor],
        sky: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        """Observed stage, in place: add the residual to ``flux`` ``(n, L)``; ``sky`` in nJy."""
        sky = sky.to(flux.dtype)
        z = torch.randn(flux.shape, generator=generator, dtype=flux.dtype, device=flux.device)
        z.mul_(params["sky_pixel"].to(flux.dtype).unsqueeze(-1))
        z.add_(params["sky_scale"].to(flux.dtype).unsqueeze(-1))
        flux.addcmul_(z, sky)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale.to_dict(),
            "exposure_scale": self.exposure_scale.to_dict(),
            "pixel": self.pixel.to_dict(),
        }


class CosmicRays(Effect):
    """Cosmic-ray hits the pipeline did not mask: a few per spectrum, many σ high, 1–3 px wide.

    Per star a mean count is drawn from ``rate`` and the count ``n_cosmic`` from a Poisson
    distribution of that mean; each hit covers ``width`` consecutive pixels (uniform integer) at
    a uniform position and adds ``amplitude`` (drawn per hit) times the pixel's σ to the flux;
    σ is unchanged. Observed stage.

    Parameters
    ----------
    rate : strength
        Prior of the mean number of hits per spectrum (default uniform 0–6: mean 3).
    amplitude : strength
        Prior of a hit's height in units of the pixel's σ (default uniform 5–50).
    width : (int, int)
        Smallest and largest width in pixels (default 1–3).
    """

    name, stream, fields = "cosmic_rays", 6, ("n_cosmic",)

    def __init__(
        self, rate: Any = (0.0, 6.0), amplitude: Any = (5.0, 50.0), width: Any = (1, 3)
    ) -> None:
        self.rate = parse_strength(rate)
        self.amplitude = parse_strength(amplitude)
        self.width = (int(width[0]), int(width[1]))
        if self.rate.low < 0 or not 1 <= self.width[0] <= self.width[1]:
            raise ValueError("cosmic rays need a rate ≥ 0 and widths 1 ≤ low ≤ high")

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``n_cosmic`` (n,): the number of hits of each spectrum."""
        rate = self.rate.sample(n, generator)
        return {"n_cosmic": torch.poisson(rate, generator=generator)}

    def apply(
        self,
        flux: torch.Tensor,
        sigma: torch.Tensor,
        params: Mapping[str, torch.Tensor],
        generator: torch.Generator,
    ) -> None:
        """Observed stage, in place: add the hits to ``flux`` ``(n, L)`` (σ as it is)."""
        n, size = flux.shape
        dev = flux.device
        counts = params["n_cosmic"].to(device=dev, dtype=torch.long)
        total = int(counts.sum())
        if total == 0:
            return
        star = torch.repeat_interleave(torch.arange(n, device=dev), counts)
        start = torch.randint(size, (total,), generator=generator, device=dev)
        lo, hi = self.width
        width = torch.randint(lo, hi + 1, (total,), generator=generator, device=dev)
        u = torch.rand(total, generator=generator, device=dev, dtype=torch.float64)
        height = self.amplitude.icdf(u).to(flux.dtype)
        step = torch.arange(hi, device=dev)
        pixel = start.unsqueeze(-1) + step  # (total, hi)
        keep = (step < width.unsqueeze(-1)) & (pixel < size)
        flat = (star.unsqueeze(-1) * size + pixel)[keep]
        heights = height.unsqueeze(-1).expand(-1, hi)[keep]
        flux.view(-1).index_add_(0, flat, heights * sigma.reshape(-1)[flat])

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate.to_dict(),
            "amplitude": self.amplitude.to_dict(),
            "width": list(self.width),
        }


class SigmaScale(Effect):
    """The reported σ is wrong by a per-star factor: ``error × sigma_scale`` (flux unchanged).

    Observed stage, last (the S/N is then measured with the reported σ).

    Parameters
    ----------
    factor : strength
        Prior of the factor (default uniform 0.7–1.3: the issue's "up to ±30 %").
    """

    name, stream, fields = "sigma_scale", 7, ("sigma_scale",)

    def __init__(self, factor: Any = (0.7, 1.3)) -> None:
        self.factor = parse_strength(factor)
        if self.factor.low <= 0:
            raise ValueError(f"the σ scale must be > 0, got {self.factor}")

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``sigma_scale`` (n,)."""
        return {"sigma_scale": self.factor.sample(n, generator)}

    def absent(self, params: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
        """In place: the stars ``rows`` with their σ as reported (factor 1)."""
        params["sigma_scale"][rows] = 1.0

    def apply(self, sigma: torch.Tensor, params: Mapping[str, torch.Tensor]) -> None:
        """Observed stage, in place: ``sigma`` ``(n, L)`` times the factor."""
        sigma.mul_(params["sigma_scale"].to(sigma.dtype).unsqueeze(-1))

    def to_dict(self) -> dict[str, Any]:
        return {"factor": self.factor.to_dict()}


# ---------------------------------------------------------------------------------- container
#: Every effect, in the order they are applied (and listed in configs).
EFFECT_TYPES: tuple[type[Effect], ...] = (
    LSFSpread,
    WavelengthOffset,
    BackgroundColour,
    Extinction,
    TelluricResiduals,
    SkyResiduals,
    CosmicRays,
    FluxCalibration,
    SigmaScale,
)
_BY_NAME = {t.name: t for t in EFFECT_TYPES}


class Effects:
    """The real-data effects a :class:`~training.engine.simulate.Simulator` applies.

    Build with :meth:`off` (none: the engine as without effects, bit for bit), :meth:`default`
    (every effect with its documented default prior), :meth:`only` (one effect, e.g. at a fixed
    strength) or :meth:`from_dict` (configs, file attributes). ``Effects(extinction=Extinction(),
    ...)`` takes the effects by name.

    Parameters
    ----------
    clean_fraction : float
        The fraction of spectra drawn with none of the effects (each effect's
        :meth:`Effect.absent` values), in [0, 1); default 0. A model trained on the effects'
        priors alone has seen almost no spectrum with every effect near zero, and its σ there
        is an extrapolation: 20 % clean spectra show it that corner too. Which stars are clean
        is drawn from a stream of its own (:data:`CLEAN_STREAM`): at 0 the draws are those of
        the effects alone, bit for bit.
    **effects : Effect or None
        The effects, by name.
    """

    #: Stream id of the clean spectra's draw (the effects use 1–9).
    CLEAN_STREAM: ClassVar[int] = 10

    def __init__(self, *, clean_fraction: float = 0.0, **effects: Effect | None) -> None:
        unknown = set(effects) - set(_BY_NAME)
        if unknown:
            raise ValueError(f"unknown effects {sorted(unknown)}; known: {list(_BY_NAME)}")
        self.clean_fraction = float(clean_fraction)
        if not 0.0 <= self.clean_fraction < 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1), got {clean_fraction!r}")
        self.effects: dict[str, Effect] = {}
        for name, kind in _BY_NAME.items():
            effect = effects.get(name)
            if effect is None:
                continue
            if not isinstance(effect, kind):
                raise TypeError(f"effect {name!r} must be a {kind.__name__}, got {effect!r}")
            self.effects[name] = effect
        if self.clean_fraction and not self.effects:
            raise ValueError("clean_fraction needs effects: without any every spectrum is clean")
        lsf = self.effects.get("lsf")
        if self.clean_fraction and lsf is not None and MR_RESOLUTION not in lsf.values:
            raise ValueError(
                f"clean spectra are observed at the design R {MR_RESOLUTION:g}: the LSF spread "
                f"{lsf.values} must hold it"
            )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def off(cls) -> Effects:
        """No effect."""
        return cls()

    def widen(self, domain: ModelDomain) -> ModelDomain:
        """``domain`` of a model trained with these effects: their names become its
        ``effects`` and the σ-scale effect's support its ``sigma_scale`` (what the emulator
        fit then allows)."""
        names = tuple(self.effects)
        if not names:
            return domain
        scale = self.get("sigma_scale")
        sigma_scale = domain.sigma_scale if scale is None else (scale.factor.low, scale.factor.high)
        return dataclasses.replace(domain, sigma_scale=sigma_scale, effects=names)

    @classmethod
    def default(cls) -> Effects:
        """Every effect with its default prior (``docs/data_engine.md``)."""
        return cls(**{name: kind() for name, kind in _BY_NAME.items()})

    @classmethod
    def only(cls, name: str, *args: Any, **kwargs: Any) -> Effects:
        """One effect, built with ``args``/``kwargs``: ``Effects.only("extinction", ebv=0.5)``."""
        if name not in _BY_NAME:
            raise ValueError(f"unknown effect {name!r}; known: {list(_BY_NAME)}")
        return cls(**{name: _BY_NAME[name](*args, **kwargs)})

    @classmethod
    def from_dict(cls, spec: Any) -> Effects:
        """From a config value: None, ``{}``, ``False`` or ``"off"``: none; ``True`` or
        ``"default"``: :meth:`default`; a mapping ``{name: settings}`` with each ``settings``
        ``True``/``"default"`` (the effect's defaults), ``None``/``False`` (off) or a mapping of
        its keyword arguments, and optionally ``clean_fraction`` (what :meth:`to_dict`
        writes)."""
        if isinstance(spec, Effects):
            return spec
        if spec is None or spec is False or spec == "off":
            return cls.off()
        if spec is True or spec == "default":
            return cls.default()
        if not isinstance(spec, Mapping):
            raise TypeError(f"effects must be a mapping, 'default' or 'off', got {spec!r}")
        effects: dict[str, Effect | None] = {}
        clean_fraction = spec.get("clean_fraction", 0.0)
        for name, settings in spec.items():
            if name == "clean_fraction":
                continue
            if name not in _BY_NAME:
                raise ValueError(f"unknown effect {name!r}; known: {list(_BY_NAME)}")
            if settings is None or settings is False or settings == "off":
                continue
            if settings is True or settings == "default":
                settings = {}
            if not isinstance(settings, Mapping):
                raise TypeError(f"effect {name!r}: settings must be a mapping, got {settings!r}")
            try:
                effects[name] = _BY_NAME[name](**settings)
            except TypeError as err:
                raise ValueError(f"effect {name!r}: {err}") from None
        if isinstance(clean_fraction, bool) or not isinstance(clean_fraction, int | float):
            raise TypeError(f"clean_fraction must be a number, got {clean_fraction!r}")
        return cls(clean_fraction=clean_fraction, **effects)

    def to_dict(self) -> dict[str, Any]:
        """``{name: settings}`` of the effects that are on (and ``clean_fraction`` when not 0);
        :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {name: effect.to_dict() for name, effect in self.effects.items()}
        if self.clean_fraction:
            out["clean_fraction"] = self.clean_fraction
        return out

    # ------------------------------------------------------------------ queries
    @property
    def enabled(self) -> bool:
        """Whether any effect is on."""
        return bool(self.effects)

    def get(self, name: str) -> Any:
        """The effect called ``name``, or None when it is off."""
        return self.effects.get(name)

    def column_names(self) -> tuple[str, ...]:
        """The per-star scalar columns of the effects that are on (for a shard's label table)."""
        return tuple(c for effect in self.effects.values() for c in effect.column_names())

    def columns(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Those columns from a sample's parameters."""
        out: dict[str, torch.Tensor] = {}
        for effect in self.effects.values():
            out.update(effect.columns(params))
        return out

    def __repr__(self) -> str:
        clean = f"; {self.clean_fraction:.0%} clean" if self.clean_fraction else ""
        return f"Effects({', '.join(self.effects) or 'off'}{clean})"

    # ------------------------------------------------------------------ randomness
    def sample(
        self, n: int, seed: int, n_exposures: int = DEFAULT_N_EXPOSURES
    ) -> dict[str, torch.Tensor]:
        """Every effect's per-star parameters (float64, CPU), each from its own stream; the
        clean spectra's (:attr:`clean_fraction`) set to the effects' absent values."""
        out: dict[str, torch.Tensor] = {}
        for effect in self.effects.values():
            generator = torch.Generator().manual_seed(step_seed(seed, effect.stream, 1))
            if isinstance(effect, SkyResiduals):
                out.update(effect.sample(n, generator, n_exposures))
            else:
                out.update(effect.sample(n, generator))
        if self.clean_fraction:
            generator = torch.Generator().manual_seed(step_seed(seed, self.CLEAN_STREAM, 1))
            clean = torch.rand(n, generator=generator, dtype=torch.float64) < self.clean_fraction
            for effect in self.effects.values():
                effect.absent(out, clean)
        return out

    def generators(self, seed: int, device: torch.device) -> dict[str, torch.Generator]:
        """Per effect, the generator (on ``device``) of its draws inside :meth:`observed`."""
        return {
            name: torch.Generator(device=device).manual_seed(step_seed(seed, effect.stream, 2))
            for name, effect in self.effects.items()
        }

    # ------------------------------------------------------------------ stages
    def spectrum(
        self,
        flux: torch.Tensor,
        params: Mapping[str, torch.Tensor],
        extinction_curve: torch.Tensor | None,
    ) -> torch.Tensor:
        """Spectrum stage after the emulator: the wavelength offset, then the extinction."""
        if "wavelength" in self.effects:
            flux = self.effects["wavelength"].apply(flux, params)
        if "extinction" in self.effects:
            flux = self.effects["extinction"].apply(flux, params, extinction_curve)
        return flux

    def background(
        self, variance: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> torch.Tensor | None:
        """Noise stage: each star's sky + detector variance (nJy²), moved by the wavelength
        offset and coloured by the background's colour, or None for the model's."""
        if "wavelength" not in self.effects and "background" not in self.effects:
            return None
        if "wavelength" in self.effects:
            variance = self.effects["wavelength"].background(variance, params)
        if "background" in self.effects:
            variance = self.effects["background"].apply(variance, params)
        return variance

    def observed(
        self,
        flux: torch.Tensor,
        sigma: torch.Tensor,
        params: Mapping[str, torch.Tensor],
        sky: torch.Tensor | None,
        generators: Mapping[str, torch.Generator],
    ) -> None:
        """Observed stage, in place: the telluric residual, sky residuals (of the subtraction
        and of the wavelength offset), cosmic rays, then the calibration (flux and σ), then the
        σ scale."""
        fx = self.effects
        if "telluric" in fx:
            fx["telluric"].apply(flux, params)
        if "sky" in fx:
            fx["sky"].apply(flux, params, sky, generators["sky"])
        if "wavelength" in fx and sky is not None:
            flux.add_(fx["wavelength"].sky_residual(sky.to(flux.dtype), params))
        if "cosmic_rays" in fx:
            fx["cosmic_rays"].apply(flux, sigma, params, generators["cosmic_rays"])
        if "calibration" in fx:
            fx["calibration"].apply(flux, sigma, params)
        if "sigma_scale" in fx:
            fx["sigma_scale"].apply(sigma, params)
