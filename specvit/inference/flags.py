"""The per-spectrum quality flags of :func:`specvit.predict` (the ``flags`` output column)."""

from __future__ import annotations

from enum import IntFlag

__all__ = ["PredictFlag"]


class PredictFlag(IntFlag):
    """Bits of the ``flags`` column; 0 means nothing to report.

    Bits in :meth:`no_result` mean the spectrum's labels and σ are NaN; the others are warnings
    and the labels are still predicted. ``OUT_OF_DOMAIN`` … ``RV_OUTSIDE_TRAINING`` come from the
    physical context (:mod:`specvit.inference.physics`); which of them were checked is in the
    table's ``meta["physics"]``.

    Test a bit with ``(table["flags"] & PredictFlag.TOO_FEW_PIXELS) != 0``.
    """

    #: Fewer valid pixels on the model grid than ``min_valid`` asks for (labels are NaN).
    TOO_FEW_PIXELS = 1
    #: The median flux of the valid pixels is ≤ 0 or not finite, so the spectrum cannot be
    #: normalised as in training (labels are NaN).
    BAD_NORMALISATION = 2
    #: The spectrum's own wavelength axis is not finite and strictly monotonic (labels are NaN).
    BAD_WAVELENGTH = 4
    #: The model returned a non-finite value (labels are NaN).
    NONFINITE_OUTPUT = 8
    #: Part of the model's wavelength range lies outside the spectrum's; those model pixels
    #: are masked (labels are still predicted).
    PARTIAL_COVERAGE = 16
    #: The emulator at the predicted labels (amplitude and v_rad fitted) does not describe the
    #: spectrum: the fit's χ² p-value ``chi2_pvalue`` (or, for a model that sees its flux over
    #: one number, the continuum-shape test's ``shape_pvalue``) is below
    #: :data:`~specvit.inference.physics.CHI2_PVALUE_THRESHOLD`, or its lines are too weak
    #: (labels are still predicted).
    OUT_OF_DOMAIN = 32
    #: A predicted label lies outside the model's training prior box (``config.domain``).
    OUTSIDE_PRIOR = 64
    #: ``snr`` below :data:`~specvit.inference.physics.LOW_SNR`, where a model's log g is mostly
    #: its prior (the unbiased bound reaches the prior's spread).
    LOW_SNR = 128
    #: The fitted ``v_rad`` lies beyond the radial velocities the model was trained on
    #: (``config.domain.rv``) by more than
    #: :data:`~specvit.inference.physics.RV_TOLERANCE_KMS`.
    RV_OUTSIDE_TRAINING = 256
    #: Exact mode only (``predict(exact=True)``): the effective sample size ``ess`` of the
    #: importance samples is below :attr:`specvit.inference.exact.ImportancePosterior.min_ess`,
    #: so the correction cannot be trusted (the labels are its estimate where ``ess`` > 0, else
    #: the network's). Fall-backs: more samples (``exact_samples``) or the grid posterior,
    #: :class:`specvit.bounds.PosteriorMean`.
    LOW_ESS = 512
    #: A model that takes observed-frame spectra measured the velocity (``v_rad``) from a
    #: cross-correlation peak that is not clearly above another one (its χ² improvement by
    #: less than :data:`specvit.velocity.MIN_PEAK_CONTRAST`): the spectrum may have been shifted
    #: to a wrong rest frame, and its labels with it.
    RV_UNCERTAIN = 1024

    @classmethod
    def no_result(cls) -> PredictFlag:
        """The bits that mean "no prediction" (labels and σ are NaN)."""
        no_pixels = cls.TOO_FEW_PIXELS | cls.BAD_NORMALISATION | cls.BAD_WAVELENGTH
        return no_pixels | cls.NONFINITE_OUTPUT

    @classmethod
    def describe(cls) -> dict[str, int]:
        """Flag names and their values, e.g. for a table's metadata."""
        return {flag.name: int(flag) for flag in cls}

    @property
    def meaning(self) -> str:
        """What one flag says, in a few words (the docs page Outputs and flags says more)."""
        return _MEANING[self.name]


#: Each flag's meaning in a few words, for summaries (one home: :attr:`PredictFlag.meaning`).
_MEANING = {
    "TOO_FEW_PIXELS": "too few valid pixels: no labels",
    "BAD_NORMALISATION": "median flux <= 0 or not finite: no labels",
    "BAD_WAVELENGTH": "its wavelengths are not finite and monotonic: no labels",
    "NONFINITE_OUTPUT": "the model returned NaN or inf: no labels",
    "PARTIAL_COVERAGE": "part of the model's wavelength range is missing",
    "OUT_OF_DOMAIN": "the emulator at the predicted labels does not fit the spectrum",
    "OUTSIDE_PRIOR": "a label lies outside the training prior",
    "LOW_SNR": "low S/N: log g is mostly the model's prior",
    "RV_OUTSIDE_TRAINING": "v_rad beyond the radial velocities of the training set",
    "LOW_ESS": "exact mode: too few effective importance samples to trust the correction",
    "RV_UNCERTAIN": "the measured v_rad is ambiguous: the spectrum may be in a wrong frame",
}
