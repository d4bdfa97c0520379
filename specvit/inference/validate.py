"""Check user spectra and turn the accepted input types into one lazily read form.

:func:`as_spectra` accepts numpy arrays (one spectrum or a batch; memory-mapped arrays stay
on disk), torch tensors, astropy Quantities and specutils ``Spectrum`` / ``Spectrum1D``
objects. It checks shapes, dtypes and the wavelength axis up front, without reading the flux,
and returns a :class:`Spectra` whose :meth:`Spectra.chunk` reads a slice of rows as float64 (or
float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

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
    """

    flux: np.ndarray
    error: np.ndarray | None
    valid: np.ndarray
    wavelength: np.ndarray | None
    bad_wavelength: np.ndarray


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
    error_factor: float
    wavelength: np.ndarray | None
    wave_factor: float
    reverse: bool
    mask: np.ndarray | None
    medium: Medium
    single: bool

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
            A variance, an inverse variance or σ in another unit is converted in float64.

        Returns
        -------
        Chunk
        """
        with np.errstate(over="ignore"):
            flux = np.asarray(self.flux[start:stop], dtype=dtype)
        valid = np.isfinite(flux)
        error = None
        if self.error is not None:
            convert = self.error_kind != "std" or self.error_factor != 1.0
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                raw = np.asarray(self.error[start:stop], dtype=np.float64 if convert else dtype)
                if convert:
                    raw = raw * self.error_factor
                if self.error_kind == "var":
                    error = np.where(raw > 0, np.sqrt(np.abs(raw)), raw)
                elif self.error_kind == "ivar":
                    error = np.where(raw > 0, 1.0 / np.sqrt(np.abs(raw)), np.nan)
                else:
                    error = raw
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
                for arr in (wave, flux, valid) + (() if error is None else (error,)):
                    arr[descending] = arr[descending, ::-1]
            valid[bad_wave] = False
        elif self.reverse:
            flux, valid = flux[:, ::-1], valid[:, ::-1]
            error = None if error is None else error[:, ::-1]
        return Chunk(flux, error, valid, wave, bad_wave)


def as_spectra(
    flux: Any,
    error: Any = None,
    *,
    wavelength: Any = None,
    mask: Any = None,
    medium: Medium = DEFAULT_MEDIUM,
    uncertainty: ErrorKind = DEFAULT_UNCERTAINTY,
) -> Spectra:
    """Check user spectra and wrap them for chunked reading.

    Parameters
    ----------
    flux : array-like, torch.Tensor, astropy.units.Quantity or specutils.Spectrum
        (L,) one spectrum or (N, L) a batch, any flux unit. Integer dtypes are read as float;
        boolean, complex, string and object arrays are refused. A specutils ``Spectrum`` (or
        ``Spectrum1D``) carries its own wavelength, uncertainty (StdDev, Variance or
        InverseVariance) and mask; do not pass them again.
    error : array-like, torch.Tensor or astropy.units.Quantity, optional
        Uncertainty of ``flux``, same shape (and, for Quantities, a unit convertible to the
        flux unit, squared for a variance). What it holds is set by ``uncertainty``.
    wavelength : array-like or astropy.units.Quantity, optional
        (L,) shared or (N, L) per-spectrum pixel-centre wavelengths, ascending or descending.
        Plain arrays are in Å; pass a Quantity for nm or µm. None: the spectra are already on
        the model's grid.
    mask : array-like, optional
        (L,) or (N, L); True (or any non-zero integer, e.g. a PFS mask bit) marks a bad pixel.
    medium : {"vacuum", "air"}
        Medium of ``wavelength``.
    uncertainty : {"std", "var", "ivar"}
        ``error`` holds 1σ, the variance σ², or the inverse variance 1/σ² (0 = no data).

    Returns
    -------
    Spectra

    Raises
    ------
    TypeError
        For an unsupported type or dtype, or arguments given twice with a ``Spectrum``.
    ValueError
        For inconsistent shapes, an empty spectrum, or an unusable shared wavelength axis.
    """
    if medium not in ("vacuum", "air"):
        raise ValueError(f"medium must be 'vacuum' or 'air', got {medium!r}")
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
    flux_arr, flux_unit = _as_array(flux, "flux")
    error_factor = 1.0
    error_arr = None
    if error is not None:
        error_arr, error_unit = _as_array(error, "error")
        error_factor = _unit_factor(error_unit, flux_unit, error_kind)
        if error_arr.shape != flux_arr.shape:
            raise ValueError(
                f"error shape {error_arr.shape} does not match flux shape {flux_arr.shape}"
            )
    if flux_arr.ndim not in (1, 2):
        raise ValueError(
            f"flux must be 1-D (one spectrum) or 2-D (a batch, one spectrum per row), "
            f"got {flux_arr.ndim}-D with shape {flux_arr.shape}"
        )
    single = flux_arr.ndim == 1
    if single:
        flux_arr = flux_arr[None]
        error_arr = None if error_arr is None else error_arr[None]
    if flux_arr.shape[1] == 0:
        raise ValueError("flux has zero pixels per spectrum: nothing to predict from")
    mask_arr = None if mask is None else _as_mask(mask, flux_arr.shape, single)
    wave_arr, wave_factor, reverse = None, 1.0, False
    if wavelength is not None:
        wave_arr, wave_factor, reverse = _as_wavelength(wavelength, flux_arr.shape, single)
    return Spectra(
        flux=flux_arr,
        error=error_arr,
        error_kind=error_kind,
        error_factor=error_factor,
        wavelength=wave_arr,
        wave_factor=wave_factor,
        reverse=reverse,
        mask=mask_arr,
        medium=medium,
        single=single,
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
        error = unc.quantity if unc.unit is not None else np.asarray(unc.array)
    wave = spec.spectral_axis.to(u.AA, equivalencies=u.spectral())
    return spec.flux, error, kind, wave, spec.mask


def _is_lazy_2d(obj: Any) -> bool:
    """A 2-D array-like read on slicing (h5py or zarr datasets): kept as is, read by chunk."""
    return (
        not isinstance(obj, np.ndarray)
        and all(hasattr(obj, a) for a in ("shape", "dtype", "ndim", "__getitem__"))
        and obj.ndim == 2
    )


def _as_array(obj: Any, name: str) -> tuple[Any, Any]:
    """A numpy view of ``obj`` (no copy for numpy arrays, memory maps and HDF5 datasets)
    and its astropy unit."""
    unit = None
    if hasattr(obj, "unit") and hasattr(obj, "value"):  # astropy Quantity
        unit, obj = obj.unit, obj.value
    elif type(obj).__module__.startswith("torch"):
        obj = obj.detach().cpu().numpy()
    arr = obj if isinstance(obj, np.ndarray) or _is_lazy_2d(obj) else np.asarray(obj)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or integer), got dtype {arr.dtype}")
    return arr, unit


def _unit_factor(error_unit: Any, flux_unit: Any, kind: ErrorKind) -> float:
    """Factor that brings the uncertainty into the flux unit (squared for variances)."""
    if error_unit is None or flux_unit is None:
        return 1.0
    from astropy import units as u

    power = {"std": 1, "var": 2, "ivar": -2}[kind]
    try:
        return float(error_unit.to(flux_unit**power))
    except u.UnitConversionError as exc:
        raise ValueError(
            f"error unit {error_unit} cannot be converted to the flux unit {flux_unit}"
        ) from exc


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
    arr, _ = _as_array(wavelength, "wavelength")
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
