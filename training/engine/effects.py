"""Real-data effects of the data engine: what separates an observed PFS spectrum from an ideal one.

Each effect is a small class: the prior over its strength (a
:func:`specvit.bounds.prior.parse_distribution` distribution, or a number for a fixed strength,
:class:`Fixed`), ``sample(n, generator)`` of its per-star parameters, and the operation it does
at its stage of a draw of :class:`training.engine.simulate.Simulator`:

- **spectrum** (the star's relative f_ν spectrum, before the scaling to the drawn HSC-i
  magnitude): :class:`LSFSpread` (which emulator), :class:`WavelengthOffset` (the star moved),
  :class:`Extinction`;
- **noise** (the noise draw): :class:`WavelengthOffset` (the sky + detector variance moved);
- **observed** (after the noise draw, before the S/N, in this order): :class:`SkyResiduals`,
  :class:`WavelengthOffset` (the residual of subtracting an unshifted sky), :class:`CosmicRays`,
  :class:`FluxCalibration` (flux and σ), :class:`SigmaScale` (σ).

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
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from specvit.bounds.prior import parse_distribution
from specvit.config import ModelDomain
from specvit.continuum import legendre_basis
from specvit.instrument import DEFAULT_N_EXPOSURES
from training.engine.seeding import step_seed

__all__ = [
    "EFFECT_TYPES",
    "CosmicRays",
    "Effect",
    "Effects",
    "Extinction",
    "Fixed",
    "FluxCalibration",
    "LSFSpread",
    "SigmaScale",
    "SkyResiduals",
    "WavelengthOffset",
    "legendre_basis",
    "parse_strength",
    "shift_pixels",
    "state_seed",
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
        The resolving powers λ/FWHM (default 4000, 4500, …, 6500; the design value of the MR
        arm is ≈ 5000).
    """

    name, stream, fields = "lsf", 1, ("resolving_power",)

    def __init__(self, values: Any = (4000.0, 4500.0, 5000.0, 5500.0, 6000.0, 6500.0)) -> None:
        values = (values,) if isinstance(values, int | float) else values
        self.values = tuple(float(v) for v in values)
        if not self.values or min(self.values) <= 0 or len(set(self.values)) != len(self.values):
            raise ValueError(f"LSF values must be distinct resolving powers > 0, got {values}")

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


class FluxCalibration(Effect):
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

    def __init__(self, amplitude: Any = (0.02, 0.15), order: int = 3) -> None:
        self.amplitude = parse_strength(amplitude)
        if self.amplitude.low < 0:
            raise ValueError(f"the calibration amplitude must be ≥ 0, got {self.amplitude}")
        if int(order) != order or order < 1:
            raise ValueError(f"order must be a positive integer, got {order}")
        self.order = int(order)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``calib_amplitude`` (n,) and ``calib_coeffs`` (n, order): c_1 … c_order."""
        amplitude = self.amplitude.sample(n, generator)
        shape = torch.randn(n, self.order, generator=generator, dtype=torch.float64)
        curve = shape @ legendre_basis(_X, self.order)
        ptp = (curve.amax(-1) - curve.amin(-1)).clamp_min(1e-12)
        coeffs = shape * (amplitude / ptp).unsqueeze(-1)
        return {"calib_amplitude": amplitude, "calib_coeffs": coeffs}

    def factor(self, params: Mapping[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
        """``(n, L)``: the calibration error's factor ``1 + Σ c_k P_k(x)``."""
        coeffs = params["calib_coeffs"]
        x = torch.linspace(-1.0, 1.0, num_pixels, dtype=torch.float64, device=coeffs.device)
        return 1.0 + coeffs.to(torch.float64) @ legendre_basis(x, self.order)

    def apply(
        self, flux: torch.Tensor, sigma: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> None:
        """Observed stage, in place: ``flux`` and ``sigma`` times the factor."""
        factor = self.factor(params, flux.shape[-1]).to(flux.dtype)
        flux.mul_(factor)
        sigma.mul_(factor)

    def columns(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"calib_amplitude": params["calib_amplitude"]}
        for k in range(self.order):
            out[f"calib_c{k + 1}"] = params["calib_coeffs"][:, k]
        return out

    def column_names(self) -> tuple[str, ...]:
        return ("calib_amplitude", *(f"calib_c{k + 1}" for k in range(self.order)))

    def to_dict(self) -> dict[str, Any]:
        return {"amplitude": self.amplitude.to_dict(), "order": self.order}


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
    Extinction,
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
    """

    def __init__(self, **effects: Effect | None) -> None:
        unknown = set(effects) - set(_BY_NAME)
        if unknown:
            raise ValueError(f"unknown effects {sorted(unknown)}; known: {list(_BY_NAME)}")
        self.effects: dict[str, Effect] = {}
        for name, kind in _BY_NAME.items():
            effect = effects.get(name)
            if effect is None:
                continue
            if not isinstance(effect, kind):
                raise TypeError(f"effect {name!r} must be a {kind.__name__}, got {effect!r}")
            self.effects[name] = effect

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
        its keyword arguments (what :meth:`to_dict` writes)."""
        if isinstance(spec, Effects):
            return spec
        if spec is None or spec is False or spec == "off":
            return cls.off()
        if spec is True or spec == "default":
            return cls.default()
        if not isinstance(spec, Mapping):
            raise TypeError(f"effects must be a mapping, 'default' or 'off', got {spec!r}")
        effects: dict[str, Effect | None] = {}
        for name, settings in spec.items():
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
        return cls(**effects)

    def to_dict(self) -> dict[str, Any]:
        """``{name: settings}`` of the effects that are on; :meth:`from_dict` reads it back."""
        return {name: effect.to_dict() for name, effect in self.effects.items()}

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
        return f"Effects({', '.join(self.effects) or 'off'})"

    # ------------------------------------------------------------------ randomness
    def sample(
        self, n: int, seed: int, n_exposures: int = DEFAULT_N_EXPOSURES
    ) -> dict[str, torch.Tensor]:
        """Every effect's per-star parameters (float64, CPU), each from its own stream."""
        out: dict[str, torch.Tensor] = {}
        for effect in self.effects.values():
            generator = torch.Generator().manual_seed(step_seed(seed, effect.stream, 1))
            if isinstance(effect, SkyResiduals):
                out.update(effect.sample(n, generator, n_exposures))
            else:
                out.update(effect.sample(n, generator))
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
        """Noise stage: each star's sky + detector variance (nJy²), or None for the model's."""
        if "wavelength" not in self.effects:
            return None
        return self.effects["wavelength"].background(variance, params)

    def observed(
        self,
        flux: torch.Tensor,
        sigma: torch.Tensor,
        params: Mapping[str, torch.Tensor],
        sky: torch.Tensor | None,
        generators: Mapping[str, torch.Generator],
    ) -> None:
        """Observed stage, in place: sky residuals (of the subtraction and of the wavelength
        offset), cosmic rays, then the calibration (flux and σ), then the σ scale."""
        fx = self.effects
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
