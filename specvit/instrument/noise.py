"""PFS MR noise model from the PFS exposure-time calculator (ETC): magnitudes, nJy, counts, σ.

For each MR pixel ``i`` the ETC gives, per exposure, the signal ``s18_i`` (e⁻) of a flat-f_ν
source of AB = 18 and the variance ``N_i`` (e⁻²) of everything but the object (sky, detector).
A source of flux density ``f_i`` (nJy) collects ``c_i = g_i f_i`` e⁻ per exposure with
``g_i = s18_i / F18`` (``F18`` = AB 18 in nJy). Over ``n`` exposures (source counts summed, the
spectrum reported per exposure-time average) the flux estimate has variance, in nJy², ::

    σ_i² = N_i / (n g_i²) + f_i / (n g_i)          (= a_i + b_i f_i)

which reproduces the ETC's S/N formula ``n s_i / √(n (N_i + s_i))``. Counts are many (the sky
alone gives ~220 e⁻² per pixel and exposure), so the noise is drawn Gaussian.

The *reported* σ must not carry the noiseless spectrum. :meth:`PFSNoiseModel.observe` draws the
noisy flux and then estimates σ from the observation only, as a pipeline's model variance: the
background term ``a_i`` is the known sky + detector model, and the source term ``b_i f`` uses the
*observed* flux averaged over blocks of ``variance_block`` pixels — by default the whole spectrum,
i.e. the source's observed mean level. The averaging is what keeps σ free of spectral
information. With a per-pixel source term σ would be a copy of the noisy flux (an error-only
regressor learns whatever the flux teaches); with 128-pixel blocks σ still carries the broad
spectral shape, and a ridge regressor on σ alone reached R²(log g) = 0.15 on 20 000 spectra; with
the mean level (default) it scores ≈ 0 (``tests/test_simulate.py``). The price: where the
spectrum departs from its mean (deep lines, the red end of cool stars) the source term is
mis-estimated; it is ≈ 4–20 % of the median pixel's variance at i = 22.5–20.5, and at i = 20.5 σ
is off by a median < 1 % and up to ≈ 9 % in the deepest features (``tests/test_noise.py``).

The ETC's variance ``N_i`` already holds a *random* sky-subtraction floor: the ETC adds
``(0.01 √n_ETC · sky)²`` per pixel and exposure (``sysfrac`` of its ``gsetc.c``, 1 % of the
brightest sky of the pixel and its two neighbours, scaled so it does not average down over its
``n_ETC = 8`` exposures) and a diffuse stray light of 2 % of the mean sky; so at the OH lines ``N``
is up to 13 × the sky counts. The sky itself (the ETC's ``sky`` column, e⁻ per pixel and exposure)
is kept as :attr:`PFSNoiseModel.sky_njy` in nJy, for the data engine's sky-subtraction residuals
(``training/engine/effects.py``).

Defaults: 12 exposures of 900 s (the paper's setup; the shared ETC run used 8 × 900 s, seeing
0.8″, zenith angle 45°, new moon — per-exposure numbers do not depend on the count). What the
model omits: variations of seeing, moon and airmass between targets; sky-subtraction residuals
beyond the ETC's random floor; flux-calibration errors; cosmic rays and bad pixels; correlations
between neighbouring pixels (the data engine's optional effects add several of these).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from specvit.instrument.grid import PFS_MR, WavelengthGrid
from specvit.instrument.photometry import band_weights, magnitude_to_njy, njy_to_magnitude

__all__ = ["DEFAULT_N_EXPOSURES", "PFSNoiseModel", "read_etc"]

#: The paper's exposures: 12 × 900 s.
DEFAULT_N_EXPOSURES = 12
#: Flux density of an AB = 18 source in nJy.
_F18_NJY = float(magnitude_to_njy(18.0))
#: MR rows of the ETC files carry this arm number in their first column.
_MR_ARM = 3
#: The default model's approximation of the ETC (8 × 900 s run, seeing 0.8″, new moon): signal of
#: AB = 18 per pixel and exposure, quadratic in x = (λ_vac/nm − 800)/100, and the median
#: sky + detector variance. Both come from the shared ETC tables (the signal fit iteratively
#: excluding pixels > 3 % below it, i.e. telluric bands; tests/test_noise.py checks both).
_DEFAULT_SIGNAL18_POLY = (569.447, -73.186, -60.335)
_DEFAULT_BACKGROUND_VARIANCE = 221.49
#: The default model's sky: the median of the ETC's sky column, e⁻ per pixel and exposure.
_DEFAULT_SKY = 118.27


def read_etc(etc_dir: str | Path) -> dict[str, np.ndarray]:
    """Read the MR rows of the PFS ETC output tables.

    Parameters
    ----------
    etc_dir : str or Path
        Folder with ``noise_mr.dat`` and ``snc_mr.dat`` (the ETC's output files).

    Returns
    -------
    dict
        ``wavelength`` (Å, vacuum, from ``noise_mr.dat``), ``background_variance`` (e⁻² per pixel
        and exposure), ``signal_ab18`` (e⁻ per pixel and exposure of an AB = 18 flat source),
        ``snr_ab18`` (the ETC's S/N of that source over all its exposures), ``sky`` (e⁻ per pixel
        and exposure of the sky alone, ``noise_mr.dat`` column 5), each ``(4096,)``.

    Raises
    ------
    FileNotFoundError
        If a table is missing.
    ValueError
        If the tables do not hold 4096 consecutive MR pixels.
    """
    etc_dir = Path(etc_dir)
    tables = {}
    for name in ("noise_mr.dat", "snc_mr.dat"):
        path = etc_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"PFS ETC table not found: {path}")
        table = np.loadtxt(path)
        table = table[table[:, 0] == _MR_ARM]
        if table.shape[0] != PFS_MR.num or np.any(table[:, 1] != np.arange(PFS_MR.num)):
            raise ValueError(f"{path} does not hold {PFS_MR.num} consecutive MR pixels (arm 3)")
        tables[name] = table
    noise, snc = tables["noise_mr.dat"], tables["snc_mr.dat"]
    return {
        "wavelength": noise[:, 2] * 10.0,
        "background_variance": noise[:, 3],
        "signal_ab18": snc[:, 4],
        "snr_ab18": snc[:, 3],
        "sky": noise[:, 4],
    }


class PFSNoiseModel(torch.nn.Module):
    """Per-pixel noise of the PFS MR arm for a number of exposures, in nJy.

    Parameters
    ----------
    signal_ab18 : array_like
        ``(L,)`` e⁻ per pixel and exposure of an AB = 18 flat-f_ν source.
    background_variance : array_like
        ``(L,)`` sky + detector variance, e⁻² per pixel and exposure.
    n_exposures : int
        Number of exposures combined (default 12, the paper's 12 × 900 s).
    grid : WavelengthGrid
        The pixels' wavelengths (default :data:`~specvit.instrument.PFS_MR`).
    variance_block : int, optional
        Pixels per block over which the observed flux is averaged for σ's source term (must
        divide the number of pixels; default: the whole spectrum, see the module docstring).
    description : str
        Where the tables came from (for reports).
    sky : array_like, optional
        ``(L,)`` sky counts, e⁻ per pixel and exposure (the ETC's ``sky`` column); kept in nJy as
        :attr:`sky_njy` (None without it).

    Notes
    -----
    Buffers are float64 on construction; ``.to(dtype)`` / ``.to(device)`` move them like any
    module (the data engine uses float32).
    """

    def __init__(
        self,
        signal_ab18: np.ndarray,
        background_variance: np.ndarray,
        n_exposures: int = DEFAULT_N_EXPOSURES,
        grid: WavelengthGrid = PFS_MR,
        variance_block: int | None = None,
        description: str = "",
        sky: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        sig = np.asarray(signal_ab18, dtype=np.float64)
        var = np.asarray(background_variance, dtype=np.float64)
        if sig.shape != (grid.num,) or var.shape != (grid.num,):
            raise ValueError(
                f"signal_ab18 and background_variance need shape ({grid.num},), got "
                f"{sig.shape} and {var.shape}"
            )
        if np.any(sig <= 0) or np.any(var < 0) or not np.all(np.isfinite(var)):
            raise ValueError("signal_ab18 must be > 0 and background_variance finite and ≥ 0")
        if int(n_exposures) != n_exposures or n_exposures < 1:
            raise ValueError(f"n_exposures must be a positive integer, got {n_exposures}")
        variance_block = grid.num if variance_block is None else int(variance_block)
        if variance_block < 1 or grid.num % variance_block:
            raise ValueError(
                f"variance_block must divide the {grid.num} pixels, got {variance_block}"
            )
        self.n_exposures = int(n_exposures)
        self.grid = grid
        self.variance_block = int(variance_block)
        self.description = description
        gain = sig / _F18_NJY  # e⁻ per exposure per nJy
        n = self.n_exposures
        self.register_buffer("signal_ab18", torch.from_numpy(sig))
        self.register_buffer("background_variance", torch.from_numpy(var))
        self.register_buffer("var_background", torch.from_numpy(var / (n * gain**2)))  # nJy²
        self.register_buffer("var_per_njy", torch.from_numpy(1.0 / (n * gain)))  # nJy
        self.register_buffer("band_weights", torch.from_numpy(band_weights(grid.wavelength())))
        if sky is not None:
            sky = np.asarray(sky, dtype=np.float64)
            if sky.shape != (grid.num,) or np.any(sky < 0) or not np.all(np.isfinite(sky)):
                raise ValueError(f"sky must be finite, ≥ 0 and of shape ({grid.num},)")
            sky = torch.from_numpy(sky / gain)  # nJy: the same gain as the source's counts
        #: Sky flux density per pixel (nJy), or None: what the pipeline subtracts.
        self.register_buffer("sky_njy", sky)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_etc(
        cls, etc_dir: str | Path, n_exposures: int = DEFAULT_N_EXPOSURES, **kwargs
    ) -> PFSNoiseModel:
        """Noise model from the PFS ETC's MR tables (``noise_mr.dat``, ``snc_mr.dat``).

        Parameters
        ----------
        etc_dir : str or Path
            Folder with the ETC output (e.g. ``../shared/data/pfs_etc``).
        n_exposures : int
            Number of exposures (default 12 × 900 s; the tables are per exposure).
        **kwargs
            Passed to the constructor (``variance_block``).

        Returns
        -------
        PFSNoiseModel
        """
        etc = read_etc(etc_dir)
        return cls(
            etc["signal_ab18"],
            etc["background_variance"],
            n_exposures=n_exposures,
            description=f"PFS ETC tables in {Path(etc_dir)}",
            sky=etc["sky"],
            **kwargs,
        )

    @classmethod
    def default(cls, n_exposures: int = DEFAULT_N_EXPOSURES, **kwargs) -> PFSNoiseModel:
        """Approximate noise model for when the ETC tables are not at hand (warns).

        The AB = 18 signal is a quadratic fit to the ETC's (±10 % along the arm) and the sky +
        detector variance its median, 221.5 e⁻² per pixel and exposure. The approximation has
        **no sky emission lines and no telluric absorption**: the ETC's variance exceeds
        3 400 e⁻² in 5 % of the pixels (OH lines) and its signal drops in the O₂ A band and the
        H₂O bands, so it overestimates S/N there (the median S/N of a flat source comes out ≈ 7 %
        high at i = 21.5). Its sky is flat, the median of the ETC's (118.3 e⁻). Use
        :meth:`from_etc` for anything quantitative.

        Parameters
        ----------
        n_exposures : int
            Number of exposures (default 12 × 900 s).
        **kwargs
            Passed to the constructor.

        Returns
        -------
        PFSNoiseModel
        """
        warnings.warn(
            "PFSNoiseModel.default(): smooth approximation of the PFS ETC without sky lines; "
            "use PFSNoiseModel.from_etc(etc_dir) for realistic noise",
            UserWarning,
            stacklevel=2,
        )
        x = (PFS_MR.wavelength() / 10.0 - 800.0) / 100.0
        c0, c1, c2 = _DEFAULT_SIGNAL18_POLY
        signal = c0 + c1 * x + c2 * x**2
        background = np.full(PFS_MR.num, _DEFAULT_BACKGROUND_VARIANCE)
        return cls(
            signal,
            background,
            n_exposures=n_exposures,
            description="smooth approximation of the PFS ETC (no sky lines)",
            sky=np.full(PFS_MR.num, _DEFAULT_SKY),
            **kwargs,
        )

    # ------------------------------------------------------------------ photometry
    def magnitude(self, flux_njy: torch.Tensor) -> torch.Tensor:
        """HSC-i AB magnitude of spectra in nJy, over the grid's part of the band.

        Parameters
        ----------
        flux_njy : torch.Tensor
            ``(..., L)`` flux density in nJy.

        Returns
        -------
        torch.Tensor
            ``(...)`` AB magnitudes.
        """
        return njy_to_magnitude(flux_njy @ self.band_weights.to(flux_njy.dtype))

    def scale_to_magnitude(self, flux: torch.Tensor, mag: torch.Tensor | float) -> torch.Tensor:
        """Scale spectra in any f_ν unit to an HSC-i magnitude: flux density in nJy per pixel.

        Parameters
        ----------
        flux : torch.Tensor
            ``(..., L)`` spectra proportional to f_ν (e.g. the emulator's output).
        mag : torch.Tensor or float
            ``(...)`` HSC-i AB magnitudes (broadcast against ``flux.shape[:-1]``).

        Returns
        -------
        torch.Tensor
            ``(..., L)`` flux density in nJy whose HSC-i magnitude (see
            :mod:`specvit.instrument.photometry`) is ``mag``.
        """
        self._check_length(flux)
        mag = torch.as_tensor(mag, dtype=flux.dtype, device=flux.device)
        mean = flux @ self.band_weights.to(flux.dtype)
        return flux * (magnitude_to_njy(mag) / mean).unsqueeze(-1)

    # ------------------------------------------------------------------ noise
    def expected_sigma(
        self, flux_njy: torch.Tensor, background: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Noise-free per-pixel 1σ (nJy) of an observation of ``flux_njy`` (the true σ).

        Parameters
        ----------
        flux_njy : torch.Tensor
            ``(..., L)`` noiseless flux density in nJy.
        background : torch.Tensor, optional
            ``(..., L)`` sky + detector variance in nJy² to use instead of the model's
            ``var_background`` (e.g. its pattern moved by a wavelength-solution error).

        Returns
        -------
        torch.Tensor
            ``(..., L)`` σ in nJy: ``√(a + b·max(f, 0))`` (see the module docstring).
        """
        self._check_length(flux_njy)
        a, b = self._coefficients(flux_njy, background)
        return torch.addcmul(a, b, flux_njy.clamp_min(0.0)).sqrt_()

    def estimate_sigma(
        self, observed_njy: torch.Tensor, background: torch.Tensor | None = None
    ) -> torch.Tensor:
        """σ (nJy) estimated from an observed (noisy) spectrum only, as a pipeline would.

        Parameters
        ----------
        observed_njy : torch.Tensor
            ``(..., L)`` noisy flux density in nJy.
        background : torch.Tensor, optional
            ``(..., L)`` sky + detector variance (nJy²) instead of the model's.

        Returns
        -------
        torch.Tensor
            ``(..., L)`` σ: sky + detector model plus the source term of the observed flux
            averaged over blocks of ``variance_block`` pixels (clipped at 0).
        """
        self._check_length(observed_njy)
        return self._estimate_into(observed_njy, torch.empty_like(observed_njy), background)

    def observe(
        self,
        flux_njy: torch.Tensor,
        generator: torch.Generator | None = None,
        out: tuple[torch.Tensor, torch.Tensor] | None = None,
        background: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One noisy observation of noiseless spectra, and its estimated σ.

        Parameters
        ----------
        flux_njy : torch.Tensor
            ``(..., L)`` noiseless flux density in nJy.
        generator : torch.Generator, optional
            Source of the Gaussian draws (on the tensor's device).
        out : tuple of torch.Tensor, optional
            Contiguous ``(flux, sigma)`` tensors of ``flux_njy``'s shape to write into (saves
            two copies in the data engine's hot loop).
        background : torch.Tensor, optional
            ``(..., L)`` sky + detector variance (nJy²) of each spectrum instead of the model's
            ``var_background``, for the draw and for σ; the Gaussian draws are the same.

        Returns
        -------
        flux, sigma : torch.Tensor
            ``(..., L)`` noisy flux (nJy) and σ estimated from it (:meth:`estimate_sigma`); the
            noiseless flux enters σ only through the noisy observation.
        """
        shape, dtype, device = flux_njy.shape, flux_njy.dtype, flux_njy.device
        if out is None:
            out = (torch.empty_like(flux_njy), torch.empty_like(flux_njy))
        noisy, sigma = out
        if noisy.shape != shape or sigma.shape != shape:
            raise ValueError(f"out tensors must have shape {tuple(shape)}")
        torch.randn(shape, generator=generator, dtype=dtype, device=device, out=noisy)
        torch.addcmul(flux_njy, noisy, self.expected_sigma(flux_njy, background), out=noisy)
        return noisy, self._estimate_into(noisy, sigma, background)

    def snr_flat(self, mag: torch.Tensor | float) -> torch.Tensor:
        """Per-pixel S/N ``(..., L)`` of a flat-f_ν source of AB magnitude ``mag``.

        The exposure-time calculator's S/N (``snr_ab18`` of :func:`read_etc` at ``mag = 18``):
        a spectrum per pixel, of a source flat in f_ν, noiseless flux over the expected σ; not
        the S/N of a star's spectrum, which is a median over its pixels
        (:func:`specvit.preprocessing.median_snr` observed,
        :func:`specvit.preprocessing.expected_snr` expected).

        Parameters
        ----------
        mag : torch.Tensor or float
            HSC-i AB magnitude(s), any shape.

        Returns
        -------
        torch.Tensor
            ``(..., L)`` S/N per pixel.
        """
        mag = torch.as_tensor(mag, dtype=self.var_per_njy.dtype, device=self.var_per_njy.device)
        f = magnitude_to_njy(mag).unsqueeze(-1)
        f = f.expand(*mag.shape, self.grid.num)
        return f / self.expected_sigma(f)

    # ------------------------------------------------------------------ internals
    def _estimate_into(
        self, observed: torch.Tensor, sigma: torch.Tensor, background: torch.Tensor | None = None
    ) -> torch.Tensor:
        a, b = self._coefficients(observed, background)
        k = self.variance_block
        level = observed.unflatten(-1, (-1, k)).mean(-1, keepdim=True).clamp_min_(0.0)
        blocks = sigma.view(*observed.shape[:-1], -1, k)
        torch.addcmul(a.unflatten(-1, (-1, k)), b.view(-1, k), level, out=blocks)
        blocks.sqrt_()
        return sigma

    def _coefficients(
        self, like: torch.Tensor, background: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.var_background if background is None else background
        if a.shape[-1] != self.grid.num:
            raise ValueError(f"background has {a.shape[-1]} pixels, the grid {self.grid.num}")
        return (
            a.to(dtype=like.dtype, device=like.device),
            self.var_per_njy.to(dtype=like.dtype, device=like.device),
        )

    def _check_length(self, flux: torch.Tensor) -> None:
        if flux.shape[-1] != self.grid.num:
            raise ValueError(
                f"spectra have {flux.shape[-1]} pixels, the noise model's grid {self.grid.num}"
            )

    def extra_repr(self) -> str:
        return f"n_exposures={self.n_exposures}, {self.description}"
