"""specvit: Vision Transformers for stellar parameters from 1-D spectra.

The public API is listed in ``__all__``; subpackages hold the domains: :mod:`specvit.models`,
:mod:`specvit.layers`, :mod:`specvit.instrument`.
"""

from importlib.metadata import version as _version

from specvit._hub import UnpinnedRevisionWarning, load
from specvit.bounds import PosteriorMean, crlb_ceilings
from specvit.config import SpecViTConfig
from specvit.emulator import Emulator
from specvit.inference import Predictor, predict
from specvit.instrument import PFS_MR, PFSNoiseModel
from specvit.models import SpecViT, WeightsMismatchError, create_model, get_preset, list_models
from specvit.preprocessing import model_input

__version__ = _version("specvit")

__all__ = [
    "PFS_MR",
    "Emulator",
    "PFSNoiseModel",
    "PosteriorMean",
    "Predictor",
    "SpecViT",
    "SpecViTConfig",
    "UnpinnedRevisionWarning",
    "WeightsMismatchError",
    "__version__",
    "create_model",
    "crlb_ceilings",
    "get_preset",
    "list_models",
    "load",
    "model_input",
    "predict",
]
