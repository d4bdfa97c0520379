"""The SpecViT model family: one model definition, named presets, one factory."""

from specvit.models.factory import create_model, get_preset, list_models
from specvit.models.specvit import SpecViT, UntrainedModelWarning, WeightsMismatchError

__all__ = [
    "SpecViT",
    "UntrainedModelWarning",
    "WeightsMismatchError",
    "create_model",
    "get_preset",
    "list_models",
]
