"""specvit: Vision Transformers for stellar parameters from 1-D spectra.

The public API is listed in ``__all__``. Subpackages hold the domains: :mod:`specvit.models`
and :mod:`specvit.layers` (the SpecViT family), :mod:`specvit.inference` (``predict`` and its
CLI), :mod:`specvit.io` (FITS, HDF5, NPZ), :mod:`specvit.instrument` (PFS grid, LSF, noise),
:mod:`specvit.emulator` (the spectral model) and :mod:`specvit.bounds` (the physical ceilings).
"""

from specvit._hub import UnpinnedRevisionWarning, list_pretrained, load
from specvit._version import __version__
from specvit.bounds import LabelPrior, PosteriorMean, crlb_ceilings
from specvit.config import SpecViTConfig
from specvit.emulator import Emulator
from specvit.inference import PredictFlag, Predictor, predict
from specvit.instrument import PFS_MR, PFSNoiseModel
from specvit.labels import LABEL_NAMES, LABEL_UNITS
from specvit.models import (
    SpecViT,
    UntrainedModelWarning,
    WeightsMismatchError,
    create_model,
    get_preset,
    list_models,
)
from specvit.preprocessing import median_snr, model_input

__all__ = [
    "LABEL_NAMES",
    "LABEL_UNITS",
    "PFS_MR",
    "Emulator",
    "LabelPrior",
    "PFSNoiseModel",
    "PosteriorMean",
    "PredictFlag",
    "Predictor",
    "SpecViT",
    "SpecViTConfig",
    "UnpinnedRevisionWarning",
    "UntrainedModelWarning",
    "WeightsMismatchError",
    "__version__",
    "create_model",
    "crlb_ceilings",
    "get_preset",
    "list_models",
    "list_pretrained",
    "load",
    "median_snr",
    "model_input",
    "predict",
]
