"""The data engine's simulator: labels from a prior → noiseless PFS MR spectra → fresh noise.

A draw: labels ``(T_eff, log g, [M/H])`` and an HSC-i magnitude from :class:`Prior` (and, when
asked, a radial velocity); the :class:`specvit.emulator.Emulator` spectrum on the MR grid, Doppler
shifted if there is an RV; scaled to the magnitude in nJy per pixel; observed with the PFS noise
model (:meth:`specvit.instrument.PFSNoiseModel.observe`), whose σ is estimated from the noisy
observation. Optional real-data effects (:mod:`training.engine.effects`: LSF spread, wavelength
offset, extinction, sky residuals, cosmic rays, flux calibration, σ scale) act at their stages
of the same draw. See ``docs/data_engine.md``.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch

from specvit.bounds.prior import LabelPrior, parse_distribution
from specvit.config import ModelDomain
from specvit.emulator import DopplerShift, Emulator, NativeModel
from specvit.instrument import PFSNoiseModel
from specvit.labels import LABEL_NAMES
from specvit.preprocessing import median_snr
from specvit.velocity import RV_SEARCH_KMS
from training.engine.effects import Effects, state_seed
from training.engine.seeding import DRAW_BLOCK, step_generator

__all__ = ["DEFAULT_MAG", "Prior", "Simulator"]

#: HSC-i range of the default magnitude prior (uniform): the engine's, and so the default
#: training data's and evaluation sets'.
DEFAULT_MAG = (20.5, 22.5)


class Prior:
    """Distributions of the labels, the HSC-i magnitude and (optionally) the radial velocity.

    Label defaults are :meth:`specvit.bounds.LabelPrior.default` (uniform T_eff 3750–6000 K,
    log g 1–5 dex, [M/H] −2.5…+0.5 dex); the magnitude is uniform in :data:`DEFAULT_MAG`
    (i 20.5–22.5); no RV, and never one beyond ±:data:`specvit.velocity.RV_SEARCH_KMS`
    (1000 km/s), the range in which ``specvit.predict`` measures radial velocities.
    Each argument takes a :class:`specvit.bounds.Uniform` or :class:`specvit.bounds.Beta`, a
    mapping (e.g. from YAML: ``{"kind": "beta", "low": -2.5, "high": 0.5, "a": 2, "b": 1.5}``)
    or ``(low, high)`` for a uniform range (see :func:`specvit.bounds.prior.parse_distribution`).
    The label part is :attr:`label_prior`, the population that ``specvit.bounds`` integrates over.

    Parameters
    ----------
    T_eff, log_g, M_H : distribution-like or None
        Label distributions (None: the default's).
    mag : distribution-like
        HSC-i magnitude distribution.
    rv : distribution-like or None
        Radial velocity in km/s (e.g. ``(-300, 300)``), or None for none.
    rest_fraction : float
        With an ``rv``: the fraction of stars drawn at ``v = 0`` exactly, their spectra
        unshifted (the others from ``rv``). Shifting a spectrum to the rest frame interpolates
        its noise, by an amount that depends on the shift's fraction of a pixel; stars at rest
        keep white noise, as do the ideal benchmark and spectra given with ``rv = 0``, and a
        network that never saw such spectra reads them differently
        (``docs/research/interpolation_smoothing.py``).
    extrapolate : bool
        Allow label ranges beyond the emulator's grid (:meth:`NativeModel.label_ranges`:
        T_eff 3500–8000 K, log g 0–5, [M/H] −2.5…+0.5); a warning says the emulator
        extrapolates. Without it they raise.
    """

    def __init__(
        self,
        T_eff: Any = None,
        log_g: Any = None,
        M_H: Any = None,
        mag: Any = DEFAULT_MAG,
        rv: Any = None,
        rest_fraction: float = 0.0,
        extrapolate: bool = False,
    ) -> None:
        given = {"T_eff": T_eff, "log_g": log_g, "M_H": M_H}
        default = LabelPrior.default()
        self.label_prior = LabelPrior(
            {
                name: default[name] if spec is None else parse_distribution(spec)
                for name, spec in given.items()
            }
        )
        self.distributions = self.label_prior.distributions
        self.mag = parse_distribution(mag)
        self.rv = None if rv is None else parse_distribution(rv)
        self.rest_fraction = float(rest_fraction)
        if not 0.0 <= self.rest_fraction < 1.0:
            raise ValueError(f"rest_fraction must be in [0, 1), got {rest_fraction!r}")
        if self.rest_fraction and self.rv is None:
            raise ValueError(
                "rest_fraction needs an rv distribution: without one every star is at rest"
            )
        self.extrapolate = bool(extrapolate)
        ranges = NativeModel.load().label_ranges()
        for name, d in self.distributions.items():
            lo, hi = ranges[name]
            if d.low < lo or d.high > hi:
                msg = (
                    f"prior {name} {d} reaches beyond the emulator's grid [{lo:g}, {hi:g}]: "
                    "the polynomial extrapolates there"
                )
                if not self.extrapolate:
                    raise ValueError(msg + " (pass extrapolate=True to allow it)")
                warnings.warn(msg, UserWarning, stacklevel=2)
        if self.rv is not None and max(abs(self.rv.low), abs(self.rv.high)) > RV_SEARCH_KMS:
            raise ValueError(f"|rv| must stay below {RV_SEARCH_KMS:g} km/s, got {self.rv}")

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``labels`` (n, 3) in :data:`~specvit.labels.LABEL_NAMES` order, ``mag``, ``rv`` (n,)."""
        out = {
            "labels": torch.stack(
                [self.distributions[k].sample(n, generator) for k in LABEL_NAMES], dim=-1
            ),
            "mag": self.mag.sample(n, generator),
        }
        if self.rv is not None:
            rv = self.rv.sample(n, generator)
            if self.rest_fraction:
                rest = torch.rand(n, generator=generator, dtype=torch.float64) < self.rest_fraction
                rv = torch.where(rest.to(rv.device), 0.0, rv)
            out["rv"] = rv
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-serialisable form; ``Prior(**prior.to_dict())`` rebuilds it."""
        out: dict[str, Any] = {k: d.to_dict() for k, d in self.distributions.items()}
        out["mag"] = self.mag.to_dict()
        out["rv"] = None if self.rv is None else self.rv.to_dict()
        if self.rest_fraction:
            out["rest_fraction"] = self.rest_fraction
        out["extrapolate"] = self.extrapolate
        return out

    def domain(self) -> ModelDomain:
        """The :class:`specvit.config.ModelDomain` of a model trained on this prior's spectra.

        The box of each label and of the magnitude is its distribution's support; without an
        RV the model is a rest-frame one (``rv = [0, 0]``), with one it expects spectra in the
        observed frame moving within the RV distribution's support.
        """
        rest = self.rv is None
        return ModelDomain(
            labels={k: (d.low, d.high) for k, d in self.distributions.items()},
            mag=(self.mag.low, self.mag.high),
            rv=(0.0, 0.0) if rest else (self.rv.low, self.rv.high),
            frame="rest" if rest else "observed",
        )

    def __repr__(self) -> str:
        parts = [f"{k} {d}" for k, d in self.distributions.items()]
        parts.append(f"i {self.mag}")
        if self.rv is not None:
            parts.append(f"RV {self.rv} km/s")
        if self.rest_fraction:
            parts.append(f"{self.rest_fraction:.0%} at rest")
        return "; ".join(parts)


class Simulator:
    """Noisy PFS MR spectra drawn from a prior, on the fly.

    Parameters
    ----------
    emulator : Emulator, optional
        Noiseless spectra (default ``Emulator.load()``, float32, R = 5000 on PFS MR).
    noise : PFSNoiseModel, optional
        Noise model (default :meth:`PFSNoiseModel.default`, which warns: pass
        ``PFSNoiseModel.from_etc(etc_dir)`` for the real ETC noise). Used as given (its float64
        tables are cast to the emulator's dtype per call); copied if it is on another device.
    prior : Prior, optional
        Label/magnitude/RV distributions (default :class:`Prior`).
    chunk_size : int
        Spectra processed at a time inside :meth:`sample` (keeps the working set in cache).
    effects : Effects or mapping, optional
        Real-data effects (:class:`training.engine.effects.Effects`, or what
        :meth:`Effects.from_dict` reads); default none, and then the draws are those of the
        engine without effects, bit for bit.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        noise: PFSNoiseModel | None = None,
        prior: Prior | None = None,
        chunk_size: int = 512,
        effects: Effects | Any = None,
    ) -> None:
        self.emulator = emulator if emulator is not None else Emulator.load()
        noise = noise if noise is not None else PFSNoiseModel.default()
        device = self.emulator.weights.device
        if noise.var_background.device != device:  # a copy: .to() would move the caller's model
            noise = copy.deepcopy(noise).to(device)
        self.noise = noise
        self.prior = prior if prior is not None else Prior()
        self.chunk_size = int(chunk_size)
        if self.emulator.num_pixels != self.noise.grid.num:
            raise ValueError("emulator and noise model have different grids")
        self._doppler = None
        max_rv = None
        if self.prior.rv is not None:
            max_rv = max(abs(self.prior.rv.low), abs(self.prior.rv.high))
            self._doppler = DopplerShift(self.emulator, max_rv)
        self.effects = Effects.from_dict(effects)
        self._prepare_effects(max_rv)

    def _prepare_effects(self, max_rv: float | None) -> None:
        """What the effects need once: an emulator (and Doppler shift) per R of the LSF spread,
        the extinction curve on the grid; the sky effects need the noise model's sky."""
        device = self.emulator.weights.device
        self._emulators: dict[float, Emulator] = {}
        self._dopplers: dict[float, DopplerShift] = {}
        lsf = self.effects.get("lsf")
        for value in lsf.values if lsf is not None else ():
            if value == self.emulator.resolution:
                em, doppler = self.emulator, self._doppler
            else:
                em = Emulator.load(value, self.emulator.grid, device, self.emulator.dtype)
                doppler = None if max_rv is None else DopplerShift(em, max_rv)
            self._emulators[value], self._dopplers[value] = em, doppler
        self._extinction_curve = None
        if self.effects.get("extinction") is not None:
            curve = self.effects.get("extinction").curve(self.wavelength)
            self._extinction_curve = torch.as_tensor(curve, device=device)
        needs_sky = (
            self.effects.get("sky") is not None or self.effects.get("wavelength") is not None
        )
        if needs_sky and self.noise.sky_njy is None:
            raise ValueError("the sky and wavelength effects need a noise model with a sky")

    def with_effects(self, effects: Effects | Any) -> Simulator:
        """This simulator's emulator, noise model and prior with other ``effects``.

        The same generator then draws the same labels, magnitudes and noise: e.g. the same stars
        with one effect at graded strengths, ``sim.with_effects(Effects.only("extinction",
        ebv=0.3))``.
        """
        return Simulator(self.emulator, self.noise, self.prior, self.chunk_size, effects)

    @property
    def wavelength(self) -> np.ndarray:
        """Pixel-centre wavelengths (Å, vacuum) of the spectra."""
        return self.emulator.wavelength

    def noiseless(
        self,
        labels: torch.Tensor,
        mag: torch.Tensor,
        rv: torch.Tensor | None = None,
        effects: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Noiseless flux (nJy per pixel) of labels ``(n, 3)`` at magnitudes ``(n,)``.

        ``effects``: per-star parameters of this simulator's effects (as :meth:`sample` returns
        them); their spectrum stage (LSF, wavelength offset, extinction) is applied before the
        scaling to the magnitude. None: none.
        """
        dev, dt = self.emulator.weights.device, self.emulator.dtype
        labels = torch.as_tensor(labels, device=dev)
        if rv is not None and self._doppler is None:
            raise ValueError("this simulator's prior has no RV: build it with Prior(rv=...)")
        params = None
        if effects is not None:
            params = {k: torch.as_tensor(v, device=dev) for k, v in effects.items()}
        lsf = self.effects.get("lsf") if params is not None else None
        if lsf is not None:
            rv_dev = None if rv is None else torch.as_tensor(rv, device=dev)

            def emulate(value: float, rows: torch.Tensor) -> torch.Tensor:
                if rv_dev is None:
                    return self._emulators[value](labels[rows])
                return self._dopplers[value](labels[rows], rv_dev[rows])

            flux = lsf.apply(params, emulate)
        elif rv is None:
            flux = self.emulator(labels)
        else:
            flux = self._doppler(labels, rv)
        if params is not None:
            flux = self.effects.spectrum(flux, params, self._extinction_curve)
        return self.noise.scale_to_magnitude(flux, torch.as_tensor(mag, device=dev, dtype=dt))

    def sample_fixed(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        """``n`` spectra of a fixed set: block ``b`` of :data:`~training.engine.seeding.DRAW_BLOCK`
        spectra from ``step_generator(seed, b)``, so a seed always gives the same spectra (the
        realism and calibration sets). The tensors of :meth:`sample`, concatenated.

        Raises
        ------
        ValueError
            If ``n`` < 1.
        """
        if n < 1:
            raise ValueError(f"a fixed set needs n ≥ 1 spectra, got {n}")
        parts = [
            self.sample(min(DRAW_BLOCK, n - lo), step_generator(seed, b))
            for b, lo in enumerate(range(0, n, DRAW_BLOCK))
        ]
        keys = [k for k, v in parts[0].items() if isinstance(v, torch.Tensor)]
        return {k: torch.cat([p[k] for p in parts]) for k in keys}

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` noisy spectra with fresh labels and fresh noise.

        Parameters
        ----------
        n : int
            Number of spectra.
        generator : torch.Generator, optional
            CPU generator for the labels and (on CPU) the noise; the same seed gives the same
            spectra. With a GPU emulator the noise uses a device generator seeded from it.

        Returns
        -------
        dict
            ``flux`` and ``error`` (n, 4096) in nJy per pixel (emulator dtype), ``labels``
            (n, 3) float32 in :data:`~specvit.labels.LABEL_NAMES` order, ``mag`` (n,), ``snr``
            (n,) (the observed S/N, :func:`specvit.median_snr` of ``flux`` and ``error``),
            ``rv`` (n,) km/s when the prior has one, and each effect's per-star parameters
            (float32, e.g. ``ebv``, ``calib_coeffs`` (n, 3), ``resolving_power``).

        Notes
        -----
        The effects never draw from ``generator`` (:mod:`training.engine.effects`): with the same
        generator, any set of effects gives the same labels, magnitudes and noise draw.
        """
        if n < 0:
            raise ValueError(f"n must be ≥ 0, got {n}")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        effects_seed = state_seed(generator) if self.effects.enabled else None
        draw = self.prior.sample(n, generator)
        dev, dt = self.emulator.weights.device, self.emulator.dtype
        noise_gen = generator
        if dev.type != "cpu":
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            noise_gen = torch.Generator(device=dev).manual_seed(seed)
        flux = torch.empty((n, self.emulator.num_pixels), dtype=dt, device=dev)
        error = torch.empty_like(flux)
        labels = draw["labels"].to(device=dev)
        mag = draw["mag"].to(device=dev, dtype=dt)
        rv = draw.get("rv")
        snr = torch.empty(n, dtype=dt, device=dev)
        params: dict[str, torch.Tensor] = {}
        if effects_seed is not None:
            params = self.effects.sample(n, effects_seed, self.noise.n_exposures)
            streams = self.effects.generators(effects_seed, dev)
        for start in range(0, n, self.chunk_size):
            sl = slice(start, min(start + self.chunk_size, n))
            rv_sl = None if rv is None else rv[sl]
            if effects_seed is None:
                clean = self.noiseless(labels[sl], mag[sl], rv_sl)
                self.noise.observe(clean, noise_gen, out=(flux[sl], error[sl]))
            else:
                p = {k: v[sl].to(dev) for k, v in params.items()}
                clean = self.noiseless(labels[sl], mag[sl], rv_sl, p)
                background = self.effects.background(self.noise.var_background, p)
                self.noise.observe(clean, noise_gen, (flux[sl], error[sl]), background)
                self.effects.observed(flux[sl], error[sl], p, self.noise.sky_njy, streams)
            snr[sl] = median_snr(flux[sl], error[sl])  # while the chunk is in cache
        out = {
            "flux": flux,
            "error": error,
            "labels": draw["labels"].to(torch.float32),
            "mag": draw["mag"].to(torch.float32),
            "snr": snr.cpu(),
        }
        if rv is not None:
            out["rv"] = rv.to(torch.float32)
        out.update({k: v.to(torch.float32) for k, v in params.items()})
        return out
