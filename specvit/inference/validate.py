"""Check user spectra and turn the accepted input types into one lazily read form.

:func:`as_spectra` accepts numpy arrays (one spectrum or a batch; memory-mapped arrays stay
on disk), torch tensors, astropy Quantities and specutils ``Spectrum`` / ``Spectrum1D``
objects. It checks shapes, dtypes, units and the wavelength axis up front, without reading the
flux, and returns a :class:`Spectra` whose :meth:`Spectra.chunk` reads a slice of rows as
float64 (or float32).

Units: the models read f_ν (the data engine's PFS nJy; only the spectral shape matters, as the
input is divided by each spectrum's median). A flux Quantity in f_ν (Jy, erg/(s cm² Hz) …), in
another unit that is no spectral flux density (counts, dimensionless) or plain numbers is used
as it is; one per unit wavelength (f_λ) or a photon flux is converted to nJy pixel by pixel with
:func:`astropy.units.spectral_density`, and σ with it. Flux and error carry a unit both or
neither. Masked arrays (numpy ``MaskedArray``, astropy ``Masked`` and ``MaskedColumn``) mask
their masked pixels, as ``mask=`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from specvit.io.columns import UNCERTAINTY_POWER

__all__ = [
    "DEFAULT_MEDIUM",
    "DEFAULT_UNCERTAINTY",
    "Chunk",
    "Spectra",
    "as_spectra",
    "is_specutils_spectrum",
]

ErrorKind = Literal["std", "var", "ivar"]
Medium = Literal["vacuum", "air"]
_KIND_TEXT = {"std": "1σ", "var": "a variance", "ivar": "an inverse variance"}

#: Medium of user wavelengths when none is given (:func:`as_spectra`, :func:`specvit.predict`).
DEFAULT_MEDIUM: Medium = "vacuum"
#: What a user's error array holds when not said: 1σ (:func:`as_spectra`, :func:`specvit.predict`).
DEFAULT_UNCERTAINTY: ErrorKind = "std"


@dataclass
class Chunk:
    """A slice of rows of :class:`Spectra`, ready for resampling.

    Attributes
    ----------
    flux : numpy.ndarray
        (B, L) float64 or float32 (the ``dtype`` of :meth:`Spectra.chunk`).
    error : numpy.ndarray or None
        (B, L) 1σ, same dtype (converted from variance or inverse variance if needed).
    valid : numpy.ndarray
        (B, L) boolean: finite flux, finite σ > 0, not masked by the user, finite wavelength.
    wavelength : numpy.ndarray or None
        (L,) shared or (B, L) per-spectrum ascending wavelengths in Å; None means "already on
        the model grid".
    bad_wavelength : numpy.ndarray
        (B,) boolean: the spectrum's own wavelength axis is unusable (not strictly monotonic).
    sky : numpy.ndarray or None
        (B, L) the subtracted sky, as ``flux`` (converted the same way).
    """

    flux: np.ndarray
    error: np.ndarray | None
    valid: np.ndarray
    wavelength: np.ndarray | None
    bad_wavelength: np.ndarray
    sky: np.ndarray | None = None


@dataclass
class Spectra:
    """Validated spectra, read one chunk of rows at a time.

    Build it with :func:`as_spectra`; the arrays it holds are the caller's (no copy).

    Attributes
    ----------
    single : bool
        The input was one spectrum (1-D), not a batch.
    medium : {"vacuum", "air"}
        Medium of the wavelengths.
    """

    flux: np.ndarray
    error: np.ndarray | None
    error_kind: ErrorKind
    wavelength: np.ndarray | None
    wave_factor: float
    reverse: bool
    mask: np.ndarray | None
    medium: Medium
    single: bool
    #: Units of the flux and of 1σ (None: plain numbers) and the unit both are read in.
    flux_unit: Any = None
    sigma_unit: Any = None
    unit: Any = None
    #: (N, L) the sky subtracted from the flux, in the flux's unit (None: not given).
    sky: Any = None

    def __len__(self) -> int:
        return self.flux.shape[0]

    @property
    def length(self) -> int:
        """Pixels per input spectrum."""
        return self.flux.shape[1]

    def chunk(self, start: int, stop: int, dtype: type = np.float64) -> Chunk:
        """Read rows ``start:stop`` as ``dtype`` with their validity mask.

        Parameters
        ----------
        start, stop : int
            Row range.
        dtype : numpy float type
            float64 (for resampling) or float32 (spectra already on the model's grid: what
            the model reads, so a value beyond the float32 range is inf there, hence invalid).
            A variance, an inverse variance or σ in another unit is converted in float64; a
            flux per unit wavelength or a photon flux is converted to f_ν (nJy) in float64.

        Returns
        -------
        Chunk
        """
        with np.errstate(over="ignore"):
            flux = np.asarray(self.flux[start:stop], dtype=dtype)
            sky = None if self.sky is None else np.asarray(self.sky[start:stop], dtype=dtype)
        valid = np.isfinite(flux)
        error = None
        if self.error is not None:
            convert = self.error_kind != "std" or self.sigma_unit != self.unit
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                raw = np.asarray(self.error[start:stop], dtype=np.float64 if convert else dtype)
                if self.error_kind == "var":
                    error = np.where(raw > 0, np.sqrt(np.abs(raw)), raw)
                elif self.error_kind == "ivar":
                    error = np.where(raw > 0, 1.0 / np.sqrt(np.abs(raw)), np.nan)
                else:
                    error = raw
                if convert and not _needs_wavelength(self.sigma_unit, self.unit):
                    error = error * _unit_scale(self.sigma_unit, self.unit, None)
                error = error.astype(dtype, copy=False)
            valid &= np.isfinite(error) & (error > 0)
        if self.mask is not None:
            mask = self.mask if self.mask.ndim == 1 else self.mask[start:stop]
            valid &= ~np.asarray(mask, dtype=bool)
        bad_wave = np.zeros(flux.shape[0], dtype=bool)
        wave = self.wavelength
        if wave is not None and wave.ndim == 2:
            wave = np.asarray(wave[start:stop], dtype=np.float64) * self.wave_factor
            step = np.diff(wave, axis=1)
            descending = np.all(step < 0, axis=1)
            bad_wave = ~(np.all(step > 0, axis=1) | descending) | ~np.all(np.isfinite(wave), 1)
            if descending.any():
                # asarray may have returned the caller's own arrays
                flux = flux.copy()
                error = None if error is None else error.copy()
                sky = None if sky is None else sky.copy()
                extra = tuple(a for a in (error, sky) if a is not None)
                for arr in (wave, flux, valid, *extra):
                    arr[descending] = arr[descending, ::-1]
            valid[bad_wave] = False
        elif self.reverse:
            flux, valid = flux[:, ::-1], valid[:, ::-1]
            error = None if error is None else error[:, ::-1]
            sky = None if sky is None else sky[:, ::-1]
        if wave is not None:  # per-pixel conversions to f_ν, on the ascending wavelengths
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                if _needs_wavelength(self.flux_unit, self.unit):
                    flux = flux * _unit_scale(self.flux_unit, self.unit, wave)
                    sky = (
                        None if sky is None else sky * _unit_scale(self.flux_unit, self.unit, wave)
                    )
                if error is not None and _needs_wavelength(self.sigma_unit, self.unit):
                    error = error * _unit_scale(self.sigma_unit, self.unit, wave)
        if sky is not None:  # a pixel without a sky model is a bad pixel
            valid &= np.isfinite(sky)
        return Chunk(flux, error, valid, wave, bad_wave, sky)


def as_spectra(
    flux: Any,
    error: Any = None,
    *,
    wavelength: Any = None,
    mask: Any = None,
    medium: Medium = DEFAULT_MEDIUM,
    uncertainty: ErrorKind = DEFAULT_UNCERTAINTY,
    sky: Any = None,
) -> Spectra:
    """Check user spectra and wrap them for chunked reading.

    Parameters
    ----------
    flux : array-like, torch.Tensor, astropy.units.Quantity or specutils.Spectrum
        (L,) one spectrum or (N, L) a batch. A Quantity per unit wavelength (f_λ) or in photons
        is converted to f_ν (see the module docstring; it needs ``wavelength``). Integer
        dtypes are read as float, torch's bfloat16 as float32; boolean, complex, string and
        object arrays are refused. Masked entries of a masked array (numpy, astropy
        ``Masked``, ``MaskedColumn``) are bad pixels. A specutils ``Spectrum`` (or
        ``Spectrum1D``) carries its own wavelength, uncertainty (StdDev, Variance or
        InverseVariance) and mask; do not pass them again.
    error : array-like, torch.Tensor or astropy.units.Quantity, optional
        Uncertainty of ``flux``, same shape, masked entries masked. A Quantity exactly when
        ``flux`` is one, in a unit convertible to the flux unit (squared for a variance,
        inverse squared for an inverse variance). What it holds is set by ``uncertainty``.
    wavelength : array-like or astropy.units.Quantity, optional
        (L,) shared or (N, L) per-spectrum pixel-centre wavelengths, ascending or descending.
        Plain arrays are in Å; pass a Quantity for nm or µm. None: the spectra are already on
        the model's grid.
    mask : array-like, optional
        (L,) or (N, L); True (or any non-zero integer, e.g. a PFS mask bit) marks a bad pixel.
    medium : {"vacuum", "air"}
        Medium of ``wavelength`` (any case).
    uncertainty : {"std", "var", "ivar"}
        ``error`` holds 1σ, the variance σ², or the inverse variance 1/σ² (0 = no data); any
        case.
    sky : array-like, torch.Tensor or astropy.units.Quantity, optional
        The sky the pipeline subtracted from ``flux`` (PFS files carry it: ``sky``), same
        shape, in the flux's unit (a Quantity exactly when ``flux`` is one, and convertible to
        its unit); a pixel where it is not finite is masked.

    Returns
    -------
    Spectra

    Raises
    ------
    TypeError
        For an unsupported type or dtype, or arguments given twice with a ``Spectrum``.
    ValueError
        For inconsistent shapes, an empty spectrum, an unusable shared wavelength axis, or
        units that do not fit (a unit on only one of flux and error, an error unit that does
        not match ``uncertainty``, f_λ without a wavelength).
    """
    medium = medium.lower() if isinstance(medium, str) else medium
    if medium not in ("vacuum", "air"):
        raise ValueError(f"medium must be 'vacuum' or 'air', got {medium!r}")
    uncertainty = uncertainty.lower() if isinstance(uncertainty, str) else uncertainty
    if uncertainty not in ("std", "var", "ivar"):
        raise ValueError(f"uncertainty must be 'std', 'var' or 'ivar', got {uncertainty!r}")
    error_kind: ErrorKind = uncertainty
    if is_specutils_spectrum(flux):
        if error is not None or wavelength is not None or mask is not None:
            raise TypeError(
                "a specutils Spectrum carries its own uncertainty, wavelength and mask: "
                "do not pass error=, wavelength= or mask= with it"
            )
        flux, error, error_kind, wavelength, mask = _unpack_spectrum(flux)
    flux_arr, flux_unit, flux_mask = _as_array(flux, "flux")
    error_arr, sigma_unit, error_mask = None, None, None
    if error is not None:
        error_arr, error_unit, error_mask = _as_array(error, "error")
        sigma_unit = _sigma_unit(error_unit, flux_unit, error_kind)
        if error_arr.shape != flux_arr.shape:
            raise ValueError(
                f"error shape {error_arr.shape} does not match flux shape {flux_arr.shape}"
            )
    sky_arr = None
    if sky is not None:
        sky_arr, sky_unit, _ = _as_array(sky, "sky")
        if sky_arr.shape != flux_arr.shape:
            raise ValueError(
                f"sky shape {sky_arr.shape} does not match flux shape {flux_arr.shape}"
            )
        if (sky_unit is None) != (flux_unit is None):
            raise ValueError(
                "sky must be in the flux's unit: a Quantity exactly when the flux is one "
                f"(flux unit {flux_unit}, sky unit {sky_unit})"
            )
        if sky_unit is not None:
            if not sky_unit.is_equivalent(flux_unit):
                raise ValueError(f"sky in {sky_unit} cannot be converted to the flux's {flux_unit}")
            sky_arr = np.asarray(sky_arr) * sky_unit.to(flux_unit)
    if flux_arr.ndim not in (1, 2):
        raise ValueError(
            f"flux must be 1-D (one spectrum) or 2-D (a batch, one spectrum per row), "
            f"got {flux_arr.ndim}-D with shape {flux_arr.shape}"
        )
    single = flux_arr.ndim == 1
    if single:
        flux_arr = flux_arr[None]
        error_arr = None if error_arr is None else error_arr[None]
        sky_arr = None if sky_arr is None else sky_arr[None]
    if flux_arr.shape[1] == 0:
        raise ValueError("flux has zero pixels per spectrum: nothing to predict from")
    mask_arr = None if mask is None else _as_mask(mask, flux_arr.shape, single)
    mask_arr = _merge_masks(mask_arr, flux_mask, error_mask, shape=flux_arr.shape)
    wave_arr, wave_factor, reverse = None, 1.0, False
    if wavelength is not None:
        wave_arr, wave_factor, reverse = _as_wavelength(wavelength, flux_arr.shape, single)
    unit = _working_unit(flux_unit)
    if wave_arr is None and (
        _needs_wavelength(flux_unit, unit) or _needs_wavelength(sigma_unit, unit)
    ):
        units = f"flux in {flux_unit}" + ("" if error is None else f", 1σ in {sigma_unit}")
        raise ValueError(
            f"{units}: a flux per unit wavelength or in photons is converted pixel by pixel to "
            "f_ν, which the model reads, and that needs the wavelengths: pass wavelength= (for "
            "spectra on the model's grid, Predictor.wavelength)"
        )
    return Spectra(
        flux=flux_arr,
        error=error_arr,
        error_kind=error_kind,
        wavelength=wave_arr,
        wave_factor=wave_factor,
        reverse=reverse,
        mask=mask_arr,
        medium=medium,
        single=single,
        flux_unit=flux_unit,
        sigma_unit=sigma_unit,
        unit=unit,
        sky=sky_arr,
    )


def is_specutils_spectrum(obj: Any) -> bool:
    """True for a specutils ``Spectrum`` / ``Spectrum1D`` (checked without importing specutils)."""
    return type(obj).__module__.startswith("specutils") and hasattr(obj, "spectral_axis")


def _unpack_spectrum(spec: Any) -> tuple[Any, Any, ErrorKind, Any, Any]:
    """Flux, uncertainty (and its kind), wavelength and mask of a specutils Spectrum."""
    from astropy import units as u
    from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty

    error, kind = None, "std"
    unc = spec.uncertainty
    if unc is not None:
        kinds = {StdDevUncertainty: "std", VarianceUncertainty: "var", InverseVariance: "ivar"}
        kind = next((k for cls, k in kinds.items() if isinstance(unc, cls)), None)
        if kind is None:
            raise TypeError(
                f"unsupported Spectrum uncertainty {type(unc).__name__}: use "
                "StdDevUncertainty, VarianceUncertainty or InverseVariance"
            )
        if unc.unit is not None:
            error = unc.quantity
        else:  # an uncertainty without a unit is in the flux's (NDData's convention)
            error = np.asarray(unc.array) * spec.flux.unit ** UNCERTAINTY_POWER[kind]
    wave = spec.spectral_axis.to(u.AA, equivalencies=u.spectral())
    return spec.flux, error, kind, wave, spec.mask


def _is_lazy_2d(obj: Any) -> bool:
    """A 2-D array-like read on slicing (h5py or zarr datasets): kept as is, read by chunk."""
    return (
        not isinstance(obj, np.ndarray)
        and all(hasattr(obj, a) for a in ("shape", "dtype", "ndim", "__getitem__"))
        and obj.ndim == 2
    )


def _as_array(obj: Any, name: str) -> tuple[Any, Any, np.ndarray | None]:
    """A numpy view of ``obj`` (no copy for numpy arrays, memory maps and HDF5 datasets), its
    astropy unit and its mask (True = masked) when it is a masked array."""
    unit, mask = None, None
    if hasattr(obj, "unmasked") and hasattr(obj, "mask"):  # astropy Masked (Quantity or array)
        mask, obj = np.asarray(obj.mask), obj.unmasked
    if hasattr(obj, "unit") and hasattr(obj, "value"):  # astropy Quantity or Column
        unit, obj = obj.unit, obj.value
    elif type(obj).__module__.startswith("torch"):
        obj = _tensor_to_numpy(obj)
    if isinstance(obj, np.ma.MaskedArray):  # also a MaskedColumn's value
        if obj.mask is not np.ma.nomask:
            mask = np.ma.getmaskarray(obj)
        obj = obj.data
    arr = obj if isinstance(obj, np.ndarray) or _is_lazy_2d(obj) else np.asarray(obj)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or integer), got dtype {arr.dtype}")
    return arr, unit, mask


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor as a numpy array (bfloat16 and float8, which numpy lacks, as float32)."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in (
        torch.float16,
        torch.float32,
        torch.float64,
    ):
        tensor = tensor.float()
    return tensor.numpy()


def _merge_masks(
    mask: np.ndarray | None, *masks: np.ndarray | None, shape: tuple[int, int]
) -> np.ndarray | None:
    """The user's mask with the masked entries of a masked flux or error, (N, L) boolean."""
    extra = [m for m in masks if m is not None and m.any()]
    if not extra:
        return mask
    merged = np.zeros(shape, dtype=bool)
    for m in extra:
        merged |= m.reshape(shape)
    if mask is not None:
        merged |= np.asarray(mask, dtype=bool)
    return merged


def _working_unit(flux_unit: Any) -> Any:
    """The unit flux and σ are read in: nJy for a flux per unit wavelength or a photon flux
    (the model reads f_ν), else the flux's own unit (or None for plain numbers)."""
    if flux_unit is None:
        return None
    from astropy import units as u

    if not flux_unit.is_equivalent(u.nJy) and flux_unit.is_equivalent(
        u.nJy, u.spectral_density(1.0 * u.AA)
    ):
        return u.nJy
    return flux_unit


def _needs_wavelength(unit: Any, target: Any) -> bool:
    """Whether converting ``unit`` into ``target`` depends on the wavelength (f_λ ↔ f_ν)."""
    return unit is not None and target is not None and not unit.is_equivalent(target)


def _unit_scale(unit: Any, target: Any, wave: np.ndarray | None) -> Any:
    """Factor that brings values in ``unit`` into ``target``: a number, or one per pixel of
    ``wave`` (Å, (L,) or (B, L)) through the spectral density."""
    if unit is None or unit == target:
        return 1.0
    if not _needs_wavelength(unit, target):
        return float(unit.to(target))
    from astropy import units as u

    return (1.0 * unit).to_value(target, u.spectral_density(wave * u.AA))


def _sigma_unit(error_unit: Any, flux_unit: Any, kind: ErrorKind) -> Any:
    """The unit of 1σ for an error of ``kind`` in ``error_unit``; a ``ValueError`` saying
    what to pass when the units do not fit each other or ``kind``."""
    if error_unit is None and flux_unit is None:
        return None
    if error_unit is None or flux_unit is None:
        has, lacks, unit = ("flux", "error", flux_unit)
        if flux_unit is None:
            has, lacks, unit = ("error", "flux", error_unit)
        raise ValueError(
            f"{has} has a unit ({unit}) but {lacks} has none: give both as "
            "astropy Quantities (in convertible units), or both as plain numbers"
        )
    from astropy import units as u

    power = UNCERTAINTY_POWER[kind]
    sigma_unit = error_unit ** (1 / power) if power != 1 else error_unit
    target = _working_unit(flux_unit)
    if sigma_unit.is_equivalent(target, u.spectral_density(1.0 * u.AA)):
        return sigma_unit
    matches = [k for k, p in UNCERTAINTY_POWER.items() if error_unit.is_equivalent(flux_unit**p)]
    if matches:
        holds = matches[0]
        wanted = flux_unit**power
        if kind == "std":
            what = "squared" if holds == "var" else "inverse squared"
            raise ValueError(
                f"error unit {error_unit} is the flux unit {what}, {_KIND_TEXT[holds]}: pass "
                f"uncertainty={holds!r}, or 1σ in {flux_unit}"
            )
        name = "squared" if kind == "var" else "inverse squared"
        raise ValueError(
            f"uncertainty={kind!r} says error holds {_KIND_TEXT[kind]}, in the flux unit "
            f"{name} ({wanted}), but its unit is {error_unit}, that of {_KIND_TEXT[holds]}: "
            f"give it in {wanted} (e.g. error.value * u.Unit('{flux_unit}')**{power}), or "
            f"pass uncertainty={holds!r}"
        )
    expected = "" if power == 1 else f" ({_KIND_TEXT[kind]}: {flux_unit**power})"
    raise ValueError(
        f"error unit {error_unit} cannot be converted to the flux unit {flux_unit}{expected}"
    )


def _as_mask(mask: Any, shape: tuple[int, int], single: bool) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"mask must be boolean or integer (non-zero = bad), got {arr.dtype}")
    if single and arr.ndim == 1:
        arr = arr[None]
    if arr.shape not in (shape, shape[1:]):
        raise ValueError(f"mask shape {arr.shape} matches neither flux {shape} nor {shape[1:]}")
    return arr


def _as_wavelength(
    wavelength: Any, shape: tuple[int, int], single: bool
) -> tuple[np.ndarray, float, bool]:
    """Shared (L,) ascending wavelength in Å, or a (N, L) per-spectrum array and its Å factor."""
    factor = 1.0
    if hasattr(wavelength, "unit") and hasattr(wavelength, "value"):
        from astropy import units as u

        unit = wavelength.unit
        if not unit.is_equivalent(u.AA):
            raise ValueError(
                f"wavelength unit {unit} is not a length; frequencies or energies must be "
                "converted first (e.g. q.to(u.AA, equivalencies=u.spectral()))"
            )
        factor = float(unit.to(u.AA))
        wavelength = wavelength.value
    arr, _, masked = _as_array(wavelength, "wavelength")
    if masked is not None and masked.any():
        raise ValueError(
            f"wavelength has masked entries (first at index {int(np.argmax(masked.ravel()))}): "
            "every pixel needs a wavelength; mask the pixels with mask= instead"
        )
    if shape[1] < 2:
        raise ValueError("a spectrum on its own wavelength grid needs at least 2 pixels")
    if single and arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2 and arr.shape == shape:
        return arr, factor, False
    if arr.shape != shape[1:]:
        raise ValueError(
            f"wavelength shape {arr.shape} matches neither the pixels per spectrum "
            f"({shape[1]},) nor the flux shape {shape}"
        )
    wave = arr.astype(np.float64) * factor
    if not np.all(np.isfinite(wave)):
        raise ValueError("wavelength holds NaN or inf values")
    step = np.diff(wave)
    if np.all(step < 0):
        return wave[::-1].copy(), 1.0, True
    if not np.all(step > 0):
        raise ValueError(
            "wavelength must be strictly monotonic (ascending or descending); "
            f"it changes direction or repeats a value at index {int(np.argmin(step > 0)) + 1}"
        )
    return wave, 1.0, False
