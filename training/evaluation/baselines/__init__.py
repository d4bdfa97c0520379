"""Baseline methods scored beside SpecViT on the same spectra (``training/evaluation/compare.py``).

Every baseline has one interface, :class:`Baseline`: ``fit(train, val)`` on
:class:`~training.evaluation.baselines.features.Features` of the training and validation spectra,
then ``predict(test)`` returning physical labels ``(N, 3)`` in ``T_eff, log_g, M_H`` order and, for
methods that have one, a 1σ ``(N, 3)`` (else None). :func:`make` builds one by name; the modules
hold one method each:

================  ==========================================================================
name              method
================  ==========================================================================
``ridge``         ridge regression on block-averaged normalised flux, α chosen on validation
``lightgbm``      gradient-boosted trees (LightGBM) on the same features, early stopping
``template``      maximum-likelihood fit of the emulator (Levenberg–Marquardt, analytic
                  Jacobian, free amplitude, several starts, clipped to the prior box)
``cannon``        The Cannon (PyPI ``thecannon``, module ``TheCannon``): quadratic in labels
``mlp``           a multilayer perceptron on the normalised flux (torch)
``cnn``           a 1-D convolutional network on the normalised flux (torch)
================  ==========================================================================

LightGBM and The Cannon need the optional extra ``pip install 'specvit[baselines]'``.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from training.evaluation.baselines.features import Features

__all__ = ["BASELINES", "Baseline", "default_block", "make"]


class Baseline(Protocol):
    """What every baseline provides."""

    #: Short name (the key of :data:`BASELINES`).
    name: str
    #: Pixels per feature block (1 = full resolution) of the features it is fitted on.
    block: int

    def fit(self, train: Features, val: Features) -> None:
        """Fit on the training features; choose hyper-parameters on the validation ones."""

    def predict(self, test: Features) -> tuple[np.ndarray, np.ndarray | None]:
        """Physical labels ``(N, 3)`` and their 1σ ``(N, 3)`` (None if it has none)."""


def _registry() -> dict[str, str]:
    return {
        "ridge": "training.evaluation.baselines.ridge:Ridge",
        "lightgbm": "training.evaluation.baselines.gbm:LightGBM",
        "template": "training.evaluation.baselines.template:TemplateFit",
        "cannon": "training.evaluation.baselines.cannon:Cannon",
        "mlp": "training.evaluation.baselines.nets:MLP",
        "cnn": "training.evaluation.baselines.nets:CNN",
    }


#: Baseline names -> ``module:class`` (imported on use, so optional extras stay optional).
BASELINES: dict[str, str] = _registry()


def _class(name: str) -> type:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    module, cls = BASELINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make(name: str, **options: Any) -> Baseline:
    """The baseline ``name`` (a key of :data:`BASELINES`) with constructor ``options``."""
    return _class(name)(**options)


def default_block(name: str) -> int:
    """Pixels per feature of baseline ``name`` with its default options."""
    return _class(name).block
