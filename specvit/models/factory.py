"""Named SpecViT presets and the one factory, :func:`create_model`."""

from __future__ import annotations

from typing import Any

from specvit.config import SpecViTConfig
from specvit.models.specvit import SpecViT

__all__ = ["create_model", "get_preset", "list_models"]

#: Architecture presets: overrides of the :class:`SpecViTConfig` defaults.
_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's ViT-L6-H256: C1D patch 16, 6 pre-LN layers, width 256, 8 heads, FFN 1024,
    # CLS token, learned positional embedding, dropout 0.1, one output (log g). ≈4.8 M parameters.
    "specvit_l6_h256": {},
    # A small model for tests, CI and quick experiments on a CPU (≈0.1 M parameters).
    "specvit_tiny": {
        "patch_size": 32,
        "patch_stride": 32,
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "dropout": 0.0,
    },
    # specvit_tiny's depth and forward cost on a CPU with twice the width and patches of 64
    # pixels (64 tokens instead of 128: attention and layer norms cost less, the linear layers
    # more): ≈0.3 M parameters. The architecture of the default model's second run.
    "specvit_small": {
        "patch_size": 64,
        "patch_stride": 64,
        "embed_dim": 128,
        "depth": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "dropout": 0.0,
    },
}


def list_models() -> list[str]:
    """Names of the architecture presets :func:`create_model` builds (untrained weights).

    The trained models shipped with specvit are listed by :func:`specvit.list_pretrained`.
    """
    return sorted(_PRESETS)


def get_preset(name: str, **overrides: Any) -> SpecViTConfig:
    """The :class:`SpecViTConfig` of preset ``name`` with ``overrides`` applied.

    Raises
    ------
    ValueError
        If ``name`` is not a preset or an override key is not a config field.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown SpecViT preset {name!r}; available: {list_models()}")
    return SpecViTConfig.from_dict({**_PRESETS[name], **overrides})


def create_model(name: str = "specvit_l6_h256", **overrides: Any) -> SpecViT:
    """Build a freshly initialised SpecViT from a preset: random weights, to be trained.

    The model is :attr:`~specvit.SpecViT.untrained` until its weights change: predicting
    with it warns (:class:`~specvit.UntrainedModelWarning`). Trained models:
    :func:`specvit.list_pretrained`, :func:`specvit.load`.

    Parameters
    ----------
    name : str
        A preset from :func:`list_models` (default: the paper's ``"specvit_l6_h256"``).
    **overrides
        Any :class:`SpecViTConfig` field, e.g. ``tokenizer="sw"``, ``head="gaussian"``,
        ``label_names=("T_eff", "log_g", "M_H")`` with matching ``label_shift``/``label_scale``.

    Examples
    --------
    >>> import specvit
    >>> model = specvit.create_model("specvit_l6_h256")
    >>> round(model.num_parameters() / 1e6, 1)
    4.8
    """
    return SpecViT(get_preset(name, **overrides))
