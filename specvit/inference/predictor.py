"""`Predictor` and `predict`: stellar labels, their σ and quality flags for user spectra.

A :class:`Predictor` holds one model on one device; each call validates the spectra
(:func:`~specvit.inference.validate.as_spectra`), reads them in chunks of ``batch_size`` rows,
resamples each chunk onto the model's grid
(:class:`~specvit.inference.resample.Resampler`), builds the model input exactly as in training
(:func:`specvit.preprocessing.prepare`) and writes one output row per input spectrum, so
memory stays bounded by ``batch_size`` whatever the number of spectra.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from astropy.table import Column, Table

from specvit._hub import PRETRAINED_DIR, load
from specvit._threads import cpu_workers, map_in_workers
from specvit._version import __version__
from specvit.inference.exact import ExactCorrection
from specvit.inference.flags import PredictFlag
from specvit.inference.physics import PhysicalContext
from specvit.inference.resample import Resampler
from specvit.inference.validate import (
    DEFAULT_MEDIUM,
    DEFAULT_UNCERTAINTY,
    Chunk,
    ErrorKind,
    Medium,
    Spectra,
    as_spectra,
    is_specutils_spectrum,
)
from specvit.labels import LABEL_UNITS
from specvit.models.specvit import SpecViT, UntrainedModelWarning
from specvit.preprocessing import median_snr, prepare, valid_pixels
from specvit.velocity import (
    MIN_PEAK_CONTRAST,
    RV_SEARCH_KMS,
    interpolated_variance,
    to_rest_frame,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DEVICE",
    "DEFAULT_EXACT",
    "DEFAULT_EXACT_SAMPLES",
    "DEFAULT_MIN_VALID",
    "DEFAULT_MODEL",
    "DEFAULT_PHYSICS",
    "DEFAULT_PRECISION",
    "DEVICE_TYPES",
    "PRECISIONS",
    "UNIT_SCALE_STRIDE",
    "Predictor",
    "predict",
    "resolve_device",
    "unit_scale",
]

#: The model :func:`predict` and ``specvit-predict`` use when none is given: the folder bundled
#: inside the package (``config.json`` + ``model.safetensors``), loaded from disk with no network
#: call: ``specvit-tiny-pfs-observed``, for observed-frame spectra in any flux convention. Its
#: model card (``README.md`` there) holds its test-set scores and says when the other bundled
#: model, ``specvit-tiny-pfs`` (rest frame, reads the continuum), is the better choice.
DEFAULT_MODEL: Path = PRETRAINED_DIR / "specvit-tiny-pfs-observed"

Precision = Literal["auto", "fp32", "bf16", "fp16"]
#: The accepted ``precision`` values (``auto``: fp32 on CPU, bf16 on CUDA).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
#: The torch device types predict runs on (``cuda`` and ``mps`` where this torch has them).
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")

# The defaults of :class:`Predictor`, :func:`predict` and ``specvit-predict`` (one home: the
# three read them from here).
#: Device: CUDA when available, else CPU (:func:`resolve_device`).
DEFAULT_DEVICE = "auto"
#: Spectra per forward pass.
DEFAULT_BATCH_SIZE = 256
#: Autocast dtype: fp32 on CPU, bf16 on CUDA.
DEFAULT_PRECISION: Precision = "auto"
#: Fraction of the model's pixels that must be valid for a prediction.
DEFAULT_MIN_VALID = 0.5
#: Whether the physical context (CRLB, emulator fit, domain flags) is computed.
DEFAULT_PHYSICS = True
#: Whether the labels are the exact posterior (:mod:`specvit.inference.exact`).
DEFAULT_EXACT = False
#: Importance samples per spectrum in exact mode.
DEFAULT_EXACT_SAMPLES = 256

#: Fewest spectra a worker thread takes (below, a batch is not cut).
_MIN_SLICE = 32
#: What the ``snr`` column holds (its description in the output table).
_SNR_DESCRIPTION = (
    "observed S/N, specvit.median_snr: median flux/sigma over the valid model-grid pixels"
)


def _product_unit(a: str, b: str) -> str | None:
    """The unit of the covariance of labels ``a`` and ``b`` (None when either has none)."""
    ua, ub = LABEL_UNITS.get(a), LABEL_UNITS.get(b)
    return None if not (ua and ub) else f"{ua} {ub}"


#: Every how many pixels :func:`unit_scale` reads for its median (a scale needs no more).
UNIT_SCALE_STRIDE = 8


def unit_scale(reference: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per spectrum, the power of two that brings the median of ``|reference|`` (σ, or the
    flux where there is none) over its valid pixels nearest to 1.

    ``predict`` multiplies each spectrum's flux, σ and sky by it before anything else. Nothing
    after that sees a spectrum's scale (the model's input is divided by its continuum or median,
    S/N is a ratio, and the likelihoods of exact mode and of the physical context fit the
    amplitude, with a scale-free prior), so the answers do not change; but flux and σ² stay
    inside float32's range whatever the unit (f_ν in erg/(s cm² Hz) has σ² near 10⁻⁶⁰). A power
    of two rounds nothing.

    Parameters
    ----------
    reference : numpy.ndarray
        (B, L) σ (or flux), float32 or float64.
    valid : numpy.ndarray
        (B, L) bool: the pixels to read.

    Returns
    -------
    numpy.ndarray
        (B,) float64 factors; 1 for a spectrum without a valid pixel or with a median of 0.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": handled below
        step = UNIT_SCALE_STRIDE
        level = np.nanmedian(np.where(valid[:, ::step], np.abs(reference[:, ::step]), np.nan), 1)
        again = ~(level > 0) & valid.any(1)  # no valid pixel among those read
        if again.any():
            level[again] = np.nanmedian(np.where(valid[again], np.abs(reference[again]), np.nan), 1)
    ok = np.isfinite(level) & (level > 0)
    limit = np.finfo(reference.dtype).maxexp - 2  # a factor the array's dtype holds
    power = np.clip(np.round(-np.log2(np.where(ok, level, 1.0))), -limit, limit)
    return np.where(ok, np.exp2(power), 1.0)


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device`` (``"auto"``: CUDA when available, else CPU).

    Raises
    ------
    ValueError
        For a device this torch cannot use: a type not in :data:`DEVICE_TYPES` (``meta``,
        ``xla`` …), ``"cuda"`` on a CPU-only build or without a visible GPU, a GPU index
        beyond those present, MPS where it is not available.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {str(device)!r} ({exc})") from exc
    if dev.type not in DEVICE_TYPES:
        raise ValueError(
            f"device {str(device)!r}: specvit predicts on {', '.join(DEVICE_TYPES)} (or "
            "'auto'), not on a torch device of type " + repr(dev.type)
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no visible GPU"
            raise ValueError(
                f"device {str(device)!r}: torch {torch.__version__} here has {build}; "
                "use device 'cpu' (or 'auto')"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available here")
    return dev


class Predictor:
    """A model loaded once, predicting labels for any number of spectra in bounded memory.

    Parameters
    ----------
    model : SpecViT, str or pathlib.Path, optional
        A model, or a local folder, bundled model name (:func:`specvit.list_pretrained`) or
        Hub repo id for :func:`specvit.load`; None: the bundled default model
        (:data:`DEFAULT_MODEL`, read from disk). A model object is used as it is, not copied:
        it is moved to ``device`` if that differs from where it is, and its mode is never
        changed: a model in train mode predicts through an eval-mode view sharing its weights
        (dropout off), so the labels are the same in any mode and concurrent calls are safe.
    revision : str, optional
        Hub revision (pin a commit hash); ignored for local folders and model objects.
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU; for a model object, the device its weights
        are on), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
    batch_size : int
        Spectra per forward pass; peak memory grows linearly with it.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast dtype of the forward pass. ``"auto"`` is fp32 on CPU and bf16 on CUDA (see
        the predict docs page for the accuracy cost measured for bf16).
    min_valid : float
        Fraction of the model's pixels that must be valid after masking and resampling;
        spectra with fewer get :attr:`PredictFlag.TOO_FEW_PIXELS` and NaN labels.
    physics : bool
        Add each star's physical context (:mod:`specvit.inference.physics`): the ``crlb_<label>``,
        ``v_rad``, ``chi2_red``, ``chi2_pvalue``, ``shape_pvalue`` (a model that sees its flux
        over one number) and ``line_ratio`` columns and the ``OUT_OF_DOMAIN``,
        ``OUTSIDE_PRIOR``, ``LOW_SNR`` and ``RV_OUTSIDE_TRAINING`` flags.
        For a model the emulator cannot describe (another grid, other labels) a warning says
        why and those columns are absent; the flags that need no emulator are still set.
        False: none of it.
    exact : bool
        Replace the network's labels and σ by the exact posterior under the emulator, the
        model's training prior and the noise model (:mod:`specvit.inference.exact`: importance
        sampling with the network's answer as proposal), and add ``ess`` (the effective sample
        size), ``cov_<a>_<b>`` (the labels' covariances; the variances are the ``_err`` columns
        squared) and the ``LOW_ESS`` flag. Needs a model the
        emulator describes, with a Gaussian head and a rest-frame training prior.
    exact_samples : int
        Importance samples per spectrum in exact mode.

    Notes
    -----
    One Predictor may serve several threads at once: :meth:`predict` changes no shared state
    (threads then share the CPU cores torch uses). Worker *processes* must be started with
    ``spawn``, not ``fork``: see the predict docs page.

    Examples
    --------
    >>> predictor = Predictor("path/to/model")  # doctest: +SKIP
    >>> table = predictor.predict(flux, error, wavelength=wave)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: SpecViT | str | Path | None = None,
        *,
        revision: str | None = None,
        device: str | torch.device = DEFAULT_DEVICE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: Precision = DEFAULT_PRECISION,
        min_valid: float = DEFAULT_MIN_VALID,
        physics: bool = DEFAULT_PHYSICS,
        exact: bool = DEFAULT_EXACT,
        exact_samples: int = DEFAULT_EXACT_SAMPLES,
    ) -> None:
        integer = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
        if not integer or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 < min_valid <= 1.0:
            raise ValueError(f"min_valid must be a fraction in (0, 1], got {min_valid}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self._owned = not isinstance(model, SpecViT)  # loaded here: its weights never change
        if isinstance(model, SpecViT):
            if str(device) == "auto":
                device = next(model.parameters()).device
            self.device = resolve_device(device)
            self.model = model.to(self.device)
            self.source = type(model).__name__
        else:
            model = DEFAULT_MODEL if model is None else model
            self.device = resolve_device(device)
            self.model = load(model, revision=revision, device=self.device)
            self.source = str(model) if revision is None else f"{model}@{revision}"
        self._provenance = self._weights_provenance() if self._owned else None
        self.config = self.model.config
        self.batch_size = int(batch_size)
        self.min_valid = min_valid
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.wavelength = self.model.wavelength
        self._resamplers: dict[tuple, Resampler] = {}
        self.physics = PhysicalContext(self.config, self.device) if physics else None
        self.exact = ExactCorrection(self.config, exact_samples) if exact else None
        if self.physics is not None and not self.physics.fits:
            warnings.warn(
                f"no per-star CRLB or emulator fit for {self.source}: {self.physics.reason}; "
                "the crlb_*, v_rad and chi2_* columns are left out",
                UserWarning,
                stacklevel=2,
            )

    @property
    def label_names(self) -> tuple[str, ...]:
        """Predicted labels, in output-column order."""
        return self.config.label_names

    def predict(
        self,
        flux: Any,
        error: Any = None,
        *,
        wavelength: Any = None,
        mask: Any = None,
        medium: Medium = DEFAULT_MEDIUM,
        uncertainty: ErrorKind = DEFAULT_UNCERTAINTY,
        rv: Any = None,
        sky: Any = None,
        progress: Callable[[int], object] | None = None,
    ) -> Table:
        """Predict labels for one spectrum or a batch.

        Parameters
        ----------
        flux, error, wavelength, mask, medium, uncertainty
            As in :func:`specvit.inference.validate.as_spectra`. ``flux`` may also be a list of
            specutils ``Spectrum`` objects on different grids (one output row each).
        rv : float or array-like, optional
            Known radial velocities (km/s, receding > 0; heliocentric or not, as long as the
            wavelengths are in the same frame): one for all spectra or one per spectrum. Only
            for models that take observed-frame spectra (``config.rest_frame``); None: each
            spectrum's velocity is measured (:func:`specvit.velocity.measure_rv`).
        sky : array-like, optional
            The sky subtracted from ``flux``, as in :func:`specvit.inference.validate.as_spectra`:
            exact mode marginalises a scale error and a shift of it. Exact mode only.
        progress : callable, optional
            Called with the number of spectra finished after each chunk (e.g. ``tqdm.update``).

        Returns
        -------
        astropy.table.Table
            One row per input spectrum, in input order; see :func:`predict` for the columns.
        """
        if isinstance(flux, (list, tuple)) and flux and all(map(is_specutils_spectrum, flux)):
            if error is not None or wavelength is not None or mask is not None:
                raise TypeError("Spectrum objects carry their own error, wavelength and mask")
            if sky is not None:
                raise TypeError("sky= goes with flux arrays, not with a list of Spectrum objects")
            from astropy.table import vstack

            provenance = self._current_provenance()  # once: hashing the weights costs time
            velocities = self._velocities(rv, len(flux))
            rows = [
                self._predict_spectra(
                    as_spectra(s, medium=medium),
                    progress,
                    provenance,
                    None if velocities is None else velocities[i : i + 1],
                )
                for i, s in enumerate(flux)
            ]
            return vstack(rows, metadata_conflicts="silent")
        spectra = as_spectra(
            flux,
            error,
            wavelength=wavelength,
            mask=mask,
            medium=medium,
            uncertainty=uncertainty,
            sky=sky,
        )
        return self.predict_spectra(spectra, rv=rv, progress=progress)

    __call__ = predict

    def predict_spectra(
        self,
        spectra: Spectra,
        *,
        rv: Any = None,
        progress: Callable[[int], object] | None = None,
    ) -> Table:
        """Predict for already validated :class:`~specvit.inference.validate.Spectra`.

        Parameters
        ----------
        spectra : Spectra
            From :func:`~specvit.inference.validate.as_spectra`.
        rv, progress
            As in :meth:`predict`.

        Returns
        -------
        astropy.table.Table
        """
        velocities = self._velocities(rv, len(spectra))
        return self._predict_spectra(spectra, progress, self._current_provenance(), velocities)

    def _velocities(self, rv: Any, n: int) -> np.ndarray | None:
        """``rv`` checked and broadcast to ``(n,)`` float32 km/s (None stays None)."""
        if rv is None:
            return None
        if not self.config.rest_frame:
            raise ValueError(
                f"{self.source} takes rest-frame spectra: shift them to the rest frame instead "
                "of passing rv="
            )
        try:
            values = np.asarray(rv, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"rv must be a number or one number per spectrum, got {rv!r}"
            ) from None
        if values.ndim > 1 or (values.ndim == 1 and values.shape[0] != n):
            raise ValueError(
                f"rv must be one velocity or one per spectrum ({n}), got shape {values.shape}"
            )
        bad = ~np.isfinite(values) | (np.abs(values) > RV_SEARCH_KMS)
        if bad.any():
            first = np.flatnonzero(np.atleast_1d(bad))[0]
            raise ValueError(
                f"rv must be finite and within ±{RV_SEARCH_KMS:g} km/s; spectrum {first} has "
                f"{float(np.atleast_1d(values)[first]):g}"
            )
        return np.broadcast_to(values, (n,)).astype(np.float32)

    # ------------------------------------------------------------------ internals
    def _predict_spectra(
        self,
        spectra: Spectra,
        progress: Callable[[int], object] | None,
        provenance: dict[str, Any],
        rv: np.ndarray | None = None,
    ) -> Table:
        """:meth:`predict_spectra` with the weights' provenance already known."""
        n, n_labels = len(spectra), self.config.num_labels
        if spectra.wavelength is None and spectra.length != self.config.input_length:
            raise ValueError(
                f"spectra have {spectra.length} pixels but the model's grid has "
                f"{self.config.input_length} ({self.config.wave_start}–{self.config.wave_stop} Å, "
                f"{self.config.wave_medium}); pass wavelength= to resample them onto it"
            )
        if self.exact is not None and spectra.error is None:
            raise ValueError("exact mode needs the spectra's error (the likelihood is built on it)")
        if self.exact is None and spectra.sky is not None:
            raise ValueError(
                "sky= is read by exact mode only (its likelihood marginalises a scale error and "
                "a shift of the subtracted sky): pass exact=True, or leave sky out"
            )
        if spectra.wavelength is not None and spectra.wavelength.ndim == 1:
            self._check_overlap(spectra.wavelength, spectra.medium)
        # float32, the precision the model computes in (no float64 digits that mean nothing)
        mean = np.full((n, n_labels), np.nan, dtype=np.float32)
        sigma = np.full((n, n_labels), np.nan, dtype=np.float32)
        snr = np.full(n, np.nan, dtype=np.float32)
        n_valid = np.zeros(n, dtype=np.int32)
        flags = np.zeros(n, dtype=np.int32)
        names = ["v_rad", "v_rad_err"] if self.config.rest_frame else []
        names += [] if self.physics is None else self.physics.columns()
        context = {name: np.full(n, np.nan) for name in names}
        if self.exact is not None:
            context["ess"] = np.zeros(n, dtype=np.float32)
            context["cov"] = np.full((n, n_labels, n_labels), np.nan, dtype=np.float32)
        model = self._eval_model()
        # on the model's grid already: read as the float32 the model takes (no float64 copy)
        dtype = np.float32 if spectra.wavelength is None else np.float64

        def run(start: int, stop: int) -> tuple[np.ndarray, ...]:
            chunk = spectra.chunk(start, stop, dtype)
            chunk_rv = None if rv is None else rv[start:stop]
            return self._predict_chunk(chunk, spectra.medium, model, start, chunk_rv)

        for start, stop, out in self._slices(n, run):
            mean[start:stop], sigma[start:stop], snr[start:stop] = out[:3]
            n_valid[start:stop], flags[start:stop] = out[3:5]
            for name in context:
                context[name][start:stop] = out[5][name]
            if progress is not None:
                progress(stop - start)
        return self._table(mean, sigma, snr, n_valid, flags, context, provenance)

    def _slices(
        self, n: int, run: Callable[[int, int], tuple[np.ndarray, ...]]
    ) -> Iterator[tuple[int, int, tuple[np.ndarray, ...]]]:
        """``(start, stop, run(start, stop))`` over ``n`` spectra in input order, ``batch_size``
        at a time: on the CPU a batch is cut into one slice per worker thread
        (:func:`specvit._threads.cpu_workers`, each slice at least ``_MIN_SLICE`` spectra),
        computed at once. Memory still grows with ``batch_size`` only, and a star's labels do
        not depend on how its batch is cut (rows are independent; float32 sums in other matrix
        shapes may round differently in the last digits)."""
        workers = cpu_workers() if self.device.type == "cpu" else 1
        for first in range(0, n, self.batch_size):
            last = min(first + self.batch_size, n)
            cuts = min(workers, (last - first) // _MIN_SLICE)
            if cuts < 2:
                yield first, last, run(first, last)
                continue
            edges = np.linspace(first, last, cuts + 1).round().astype(int).tolist()
            bounds = list(itertools.pairwise(edges))
            outputs = map_in_workers(lambda b: run(*b), bounds)
            for (start, stop), out in zip(bounds, outputs, strict=True):
                yield start, stop, out

    def _current_provenance(self) -> dict[str, Any]:
        """The provenance of the weights predicting now (a model object's may have changed
        since the last call); warns when they are untrained."""
        provenance = self._provenance or self._weights_provenance()
        if provenance["untrained"]:
            warnings.warn(
                f"{self.source} has untrained weights (the random initialisation of "
                "create_model, or a folder saved from it): its labels are random numbers. "
                "Train it (python -m training train) or use a trained model "
                "(specvit.list_pretrained())",
                UntrainedModelWarning,
                stacklevel=4,
            )
        return provenance

    def _weights_provenance(self) -> dict[str, Any]:
        """Which weights predict: name and revision (:attr:`SpecViT.origin`), SHA-256 and
        whether they are untrained."""
        origin = self.model.origin or {"name": "", "revision": ""}
        return {
            "model_name": origin["name"],
            "model_revision": origin["revision"],
            "weights_sha256": self.model.weights_sha256(),
            "untrained": self.model.untrained,
        }

    def _eval_model(self) -> SpecViT:
        """The model in eval mode without changing the caller's: the model itself when every
        module is in eval mode, else a view of it (a copy of the modules sharing every weight
        and buffer) in eval mode. Nothing shared is toggled, so threads may predict at once."""
        if not any(m.training for m in self.model.modules()):
            return self.model
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return copy.deepcopy(self.model, memo={id(t): t for t in tensors}).eval()

    def _model_grid_wave(self, wave: np.ndarray, medium: str) -> np.ndarray:
        """Wavelengths (Å) converted into the medium of the model's grid."""
        if medium == self.config.wave_medium:
            return wave
        from specvit.instrument import wavelength as conv

        return conv.air_to_vacuum(wave) if medium == "air" else conv.vacuum_to_air(wave)

    def _check_overlap(self, wave: np.ndarray, medium: str) -> None:
        lo, hi = wave[0], wave[-1]
        c = self.config
        if hi < c.wave_start or lo > c.wave_stop:
            raise ValueError(
                f"the spectra's wavelengths ({lo:.6g}–{hi:.6g} Å, {medium}) do not overlap the "
                f"model's range ({c.wave_start}–{c.wave_stop} Å, {c.wave_medium}). Plain arrays "
                "are read as Å: pass an astropy Quantity (e.g. wave * u.nm) for other units"
            )

    def _resampler(self, wave: np.ndarray, medium: str) -> Resampler:
        key = (medium, wave.shape, hashlib.blake2b(wave.tobytes(), digest_size=16).digest())
        resampler = self._resamplers.get(key)
        if resampler is None:
            if len(self._resamplers) >= 8:
                self._resamplers.clear()
            source = self._model_grid_wave(wave, medium)
            resampler = self._resamplers[key] = Resampler(source, self.wavelength)
        return resampler

    def _to_model_grid(
        self, chunk: Chunk, medium: str
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
        """Flux, σ and valid mask on the model grid, each row's PARTIAL_COVERAGE bit, and the
        subtracted sky there (None if not given)."""
        partial = np.zeros(chunk.flux.shape[0], dtype=bool)
        if chunk.wavelength is None:
            return chunk.flux, chunk.error, chunk.valid, partial, chunk.sky
        if chunk.wavelength.ndim == 1:
            resampler = self._resampler(chunk.wavelength, medium)
            partial[:] = not resampler.covered.all()
            sky = None if chunk.sky is None else resampler(chunk.sky, None, chunk.valid)[0]
            return (*resampler(chunk.flux, chunk.error, chunk.valid), partial, sky)
        b, length = chunk.flux.shape[0], self.config.input_length
        flux = np.full((b, length), np.nan)
        error = None if chunk.error is None else np.full((b, length), np.nan)
        sky = None if chunk.sky is None else np.full((b, length), np.nan)
        valid = np.zeros((b, length), dtype=bool)
        for i in np.flatnonzero(~chunk.bad_wavelength):
            resampler = self._resampler(chunk.wavelength[i], medium)
            err_i = None if error is None else chunk.error[i : i + 1]
            f, e, v = resampler(chunk.flux[i : i + 1], err_i, chunk.valid[i : i + 1])
            flux[i], valid[i] = f[0], v[0]
            if error is not None:
                error[i] = e[0]
            if sky is not None:
                sky[i] = resampler(chunk.sky[i : i + 1], None, chunk.valid[i : i + 1])[0][0]
            partial[i] = not resampler.covered.all()
        return flux, error, valid, partial, sky

    def _autocast(self) -> Any:
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def _predict_chunk(
        self, chunk: Chunk, medium: str, model: SpecViT, start: int, rv: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        flux, error, valid, partial, sky = self._to_model_grid(chunk, medium)
        factor = unit_scale(flux if error is None else error, valid)[:, None]
        flux, error, sky = (
            None if a is None else a * factor.astype(a.dtype) for a in (flux, error, sky)
        )
        dev = self.device
        # float32 (out-of-range values become inf: masked below); the scaled arrays are new, so
        # the caller's arrays are never written
        with np.errstate(over="ignore"):
            flux_h = torch.from_numpy(np.require(flux, np.float32, "W"))
            error_h = None
            if error is not None:
                error_h = torch.from_numpy(np.require(error, np.float32, "W"))
        # Validity is decided on the float32 values the model sees (a finite float64 beyond
        # the float32 range becomes inf, and a tiny σ becomes 0), on the host.
        valid = valid & valid_pixels(flux_h, error_h).numpy()
        flux_t = flux_h.to(dev)
        error_t = None if error_h is None else error_h.to(dev)
        valid_t = torch.from_numpy(valid).to(dev)
        rv_t = None if rv is None else torch.from_numpy(rv).to(dev)
        prepared = prepare(flux_t, error_t, self.config, valid=valid_t, rv=rv_t)
        x, scale = prepared.x, prepared.scale
        n_valid = torch.from_numpy(np.count_nonzero(valid, axis=1)).to(dev)
        if error_t is None:
            snr = torch.full_like(scale, torch.nan)
        else:
            snr = median_snr(flux_t, error_t, valid_t)
        with self._autocast():
            out = model(x)
        mean, sigma = model.to_physical(out.float(), snr)
        flags = torch.zeros_like(n_valid, dtype=torch.int32)
        need = max(1, math.ceil(self.min_valid * self.config.input_length))
        flags |= torch.where(n_valid < need, int(PredictFlag.TOO_FEW_PIXELS), 0).int()
        flags |= torch.where(torch.isfinite(scale), 0, int(PredictFlag.BAD_NORMALISATION)).int()
        flags |= torch.from_numpy(
            np.where(chunk.bad_wavelength, int(PredictFlag.BAD_WAVELENGTH), 0)
            | np.where(partial, int(PredictFlag.PARTIAL_COVERAGE), 0)
        ).to(dev, torch.int32)
        finite = torch.isfinite(mean).all(dim=1)
        if sigma is not None:
            finite &= torch.isfinite(sigma).all(dim=1)
        no_result = (flags & int(PredictFlag.no_result())) != 0
        flags |= torch.where(finite | no_result, 0, int(PredictFlag.NONFINITE_OUTPUT)).int()
        drop = ((flags & int(PredictFlag.no_result())) != 0)[:, None]
        mean = torch.where(drop, torch.nan, mean)
        sigma = torch.full_like(mean, torch.nan) if sigma is None else sigma
        sigma = torch.where(drop, torch.nan, sigma)
        context: dict[str, torch.Tensor] = {}
        if self.config.rest_frame:
            velocity = prepared.velocity
            context["v_rad"], context["v_rad_err"] = velocity.v_rad, velocity.v_rad_err
            ambiguous = velocity.contrast < MIN_PEAK_CONTRAST  # NaN (given): not ambiguous
            flags |= torch.where(ambiguous, int(PredictFlag.RV_UNCERTAIN), 0).int()
        network_mean = mean
        if self.exact is not None:
            mean, sigma, context["cov"], context["ess"] = self._exact(
                mean, sigma, prepared, start, sky
            )
            low = context["ess"] < self.exact.sampler.min_ess
            flags |= torch.where(low.to(dev), int(PredictFlag.LOW_ESS), 0).int()
        if self.physics is not None:
            data = (
                prepared.flux,
                prepared.error,
                prepared.valid,
                scale,
                snr,
                None if prepared.velocity is None else prepared.velocity.v_rad,
                prepared.continuum,
            )
            if self.exact is not None:
                # exact mode never clears a flag the network's answer raises: a spectrum whose
                # network answer the emulator cannot reproduce (or that lies beyond the prior's
                # box, where the posterior cannot go) is no safer for a posterior that fits it
                flags |= self.physics(network_mean, *data, crlb=False)[0]
            bits, physical = self.physics(mean, *data)
            context.update(physical)
            flags |= bits
        out = tuple(t.cpu().numpy() for t in (mean, sigma, snr, n_valid, flags))
        return (*out, {name: t.cpu().numpy() for name, t in context.items()})

    def _exact(self, mean, sigma, prepared, start, sky):
        """The exact posterior where it has samples with weight; the network's answer (and
        ``LOW_ESS``) where it has none. ``sky``: the subtracted sky on the model's grid, shifted
        here to the rest frame as the flux was. A spectrum shifted to its rest frame keeps the
        information of the observed one: its σ for the likelihood, which takes the pixels as
        independent, undo the interpolation's variance reduction
        (:func:`specvit.velocity.interpolated_variance`)."""
        error = prepared.error
        if sky is not None:
            sky = torch.from_numpy(np.asarray(sky, dtype=np.float32)).to(self.device)
        if prepared.velocity is not None:
            grid, v_rad = self.config.wavelength_grid, prepared.velocity.v_rad
            error = error / interpolated_variance(v_rad, grid).sqrt()
            if sky is not None:
                sky = to_rest_frame(sky, sky, torch.isfinite(sky), v_rad, grid)[0]
        v_rad = None if prepared.velocity is None else prepared.velocity.v_rad
        post_mean, post_sigma, cov, ess = self.exact(
            mean, sigma, prepared.flux, error, prepared.valid, start, prepared.continuum, sky, v_rad
        )
        kept = (ess > 0).to(mean.device)[:, None]
        mean = torch.where(kept, post_mean.to(mean), mean)
        sigma = torch.where(kept, post_sigma.to(sigma), sigma)
        return mean, sigma, cov, ess

    def _table(
        self,
        mean: np.ndarray,
        sigma: np.ndarray,
        snr: np.ndarray,
        n_valid: np.ndarray,
        flags: np.ndarray,
        context: dict[str, np.ndarray],
        provenance: dict[str, Any],
    ) -> Table:
        columns = []
        for k, name in enumerate(self.label_names):
            unit = LABEL_UNITS.get(name)
            columns.append(Column(mean[:, k], name=name, unit=unit))
            columns.append(Column(sigma[:, k], name=f"{name}_err", unit=unit))
        columns += [
            Column(snr, name="snr", description=_SNR_DESCRIPTION),
            Column(n_valid, name="n_valid"),
            Column(flags, name="flags"),
        ]
        for name, values in context.items():
            if name == "cov":  # the off-diagonal terms: σ² are the _err columns squared
                labels = self.label_names
                for i, j in itertools.combinations(range(len(labels)), 2):
                    unit = _product_unit(labels[i], labels[j])
                    cov = Column(values[:, i, j], name=f"cov_{labels[i]}_{labels[j]}", unit=unit)
                    columns.append(cov)
                continue
            unit = LABEL_UNITS.get(name.removeprefix("crlb_")) if name.startswith("crlb_") else None
            unit = "km / s" if name in ("v_rad", "v_rad_err") else unit
            columns.append(Column(values, name=name, unit=unit))
        meta = {
            "model": self.source,
            **provenance,
            "specvit_version": __version__,
            "head": self.config.head,
            "flags": PredictFlag.describe(),
        }
        if self.physics is not None:
            meta["physics"] = self.physics.metadata()
        if self.exact is not None:
            meta["exact"] = {
                "samples": self.exact.sampler.n_samples,
                "min_ess": self.exact.sampler.min_ess,
                "telluric_bands": list(self.exact.telluric_bands),
            }
        return Table(columns, meta=meta)


def predict(
    flux: Any,
    error: Any = None,
    *,
    wavelength: Any = None,
    mask: Any = None,
    medium: Medium = DEFAULT_MEDIUM,
    uncertainty: ErrorKind = DEFAULT_UNCERTAINTY,
    rv: Any = None,
    sky: Any = None,
    model: Predictor | SpecViT | str | Path | None = None,
    revision: str | None = None,
    device: str | torch.device = DEFAULT_DEVICE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: Precision = DEFAULT_PRECISION,
    min_valid: float = DEFAULT_MIN_VALID,
    physics: bool = DEFAULT_PHYSICS,
    exact: bool = DEFAULT_EXACT,
    exact_samples: int = DEFAULT_EXACT_SAMPLES,
) -> Table:
    """Predict stellar labels, their σ and quality flags for one spectrum or a batch.

    Parameters
    ----------
    flux : array-like, torch.Tensor, astropy.units.Quantity or specutils.Spectrum
        (L,) one spectrum or (N, L) a batch: f_ν in any scale (the model input is divided by
        each spectrum's median flux); a Quantity per unit wavelength or in photons is converted
        to f_ν. A list of specutils ``Spectrum`` objects is also accepted.
    error : array-like, optional
        1σ, same shape and unit as ``flux`` (or σ² / 1/σ², see ``uncertainty``). Pixels with
        σ ≤ 0, NaN or inf (inverse variance 0) are masked. Needed for the ``snr`` column and
        by models with a two-channel (σ-aware) input.
    wavelength : array-like or astropy.units.Quantity, optional
        (L,) or (N, L) pixel-centre wavelengths (plain arrays in Å), ascending or descending.
        None: the spectra are already on the model's grid (``L`` must equal its length).
    mask : array-like, optional
        (L,) or (N, L), True / non-zero = bad pixel.
    medium : {"vacuum", "air"}
        Medium of ``wavelength``; converted to the model's if they differ.
    uncertainty : {"std", "var", "ivar"}
        What ``error`` holds: 1σ, variance or inverse variance.
    rv : float or array-like, optional
        Known radial velocities (km/s), one or one per spectrum, for a model that takes
        observed-frame spectra (``config.rest_frame``); None: measured (see
        :meth:`Predictor.predict`). A rest-frame model refuses it.
    sky : array-like or astropy.units.Quantity, optional
        The sky the pipeline subtracted from ``flux`` (PFS files carry it), same shape and
        unit. Exact mode (``exact=True``, which it needs) then marginalises a scale error and a
        wavelength shift of the sky subtraction: the residuals they leave no longer move the
        labels.
    model : Predictor, SpecViT, str or pathlib.Path, optional
        The model, a local folder, a bundled model's name (:func:`specvit.list_pretrained`) or
        a Hub repo id; None: the bundled default model (:data:`DEFAULT_MODEL`, offline). A
        :class:`Predictor` is used as it is (its own device, batch size, precision and
        ``min_valid``).
    revision : str, optional
        Hub revision; pin a commit hash.
    device, batch_size, precision, min_valid, physics, exact, exact_samples
        As for :class:`Predictor`.

    Returns
    -------
    astropy.table.Table
        One row per input spectrum, in input order, with for each label ``<label>`` and
        ``<label>_err`` (1σ; NaN for models with a point head), ``snr`` (the observed S/N,
        :func:`specvit.median_snr`: median flux/σ over the valid model-grid pixels — the lower
        middle value for an even count; NaN without ``error``), ``n_valid`` (valid model-grid
        pixels)
        and ``flags`` (:class:`PredictFlag` bits). Labels are NaN where a :meth:`no_result
        <PredictFlag.no_result>` bit is set. With ``physics`` (default) and a model on the
        emulator's PFS MR grid with its three labels, also ``crlb_<label>`` (σ_min = √CRLB: the
        best σ any unbiased method could reach on this spectrum, label unit), ``v_rad`` (km/s),
        ``chi2_red``, ``chi2_pvalue``, ``shape_pvalue`` (a model that sees its flux over one
        number) and ``line_ratio`` (see :mod:`specvit.inference.physics`);
        NaN where the labels are NaN or no ``error`` was given. A model that takes
        observed-frame spectra (``config.rest_frame``) gives ``v_rad`` and ``v_rad_err``
        (km/s: the velocity the spectrum was shifted to its rest frame by, measured or the
        given ``rv``; ``v_rad_err`` NaN where given) with or without ``physics``. Labels, σ
        and ``snr`` are float32, the precision the model computes in. ``meta`` records the model
        (``model``, ``model_name``, ``model_revision``: the Hub commit), the SHA-256 of its
        weights (``weights_sha256``, :meth:`SpecViT.weights_sha256`), ``untrained``, the
        specvit version, the head and the flags. With ``exact``, the labels and σ are the exact
        posterior's (:mod:`specvit.inference.exact`), and ``ess`` (effective sample size) and
        ``cov_<a>_<b>`` (each pair's covariance, units the product of theirs) are added.

    Warns
    -----
    UntrainedModelWarning
        For a model whose weights are still its random initialisation
        (:attr:`SpecViT.untrained`): its labels are random numbers.

    Raises
    ------
    ValueError
        For inconsistent input (see :func:`~specvit.inference.validate.as_spectra`).

    Notes
    -----
    Loading a model costs far more than predicting a few spectra: in a pipeline, build one
    :class:`Predictor` and call it repeatedly.
    """
    if not isinstance(model, Predictor):
        model = Predictor(
            model,
            revision=revision,
            device=device,
            batch_size=batch_size,
            precision=precision,
            min_valid=min_valid,
            physics=physics,
            exact=exact,
            exact_samples=exact_samples,
        )
    return model.predict(
        flux,
        error,
        wavelength=wavelength,
        mask=mask,
        medium=medium,
        uncertainty=uncertainty,
        rv=rv,
        sky=sky,
    )
