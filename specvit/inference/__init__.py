"""Inference on user spectra: :func:`predict`, :class:`Predictor`, the ``specvit-predict`` CLI."""

from specvit.inference.flags import PredictFlag
from specvit.inference.predictor import DEFAULT_MODEL, Predictor, predict
from specvit.inference.validate import Spectra, as_spectra

__all__ = ["DEFAULT_MODEL", "PredictFlag", "Predictor", "Spectra", "as_spectra", "predict"]
