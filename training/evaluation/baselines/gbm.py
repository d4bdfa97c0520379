"""Gradient-boosted trees (LightGBM) on block-averaged normalised flux, one model per label."""

from __future__ import annotations

import numpy as np

from training.evaluation.baselines.features import Features

__all__ = ["LightGBM"]


class LightGBM:
    """One LightGBM regressor per label, early-stopped on the validation set.

    Parameters
    ----------
    block : int
        Pixels per feature (4096 / block features).
    rounds : int
        Maximum boosting rounds (early stopping after 30 without improvement).
    params : dict, optional
        LightGBM parameters replacing the defaults (``learning_rate`` 0.1, ``num_leaves`` 63,
        ``max_bin`` 63, ``min_data_in_leaf`` 20, ``feature_fraction`` 0.8, one thread).
    """

    name = "lightgbm"
    block = 16

    def __init__(self, block: int = 16, rounds: int = 400, params: dict | None = None) -> None:
        self.block, self.rounds = int(block), int(rounds)
        self.params = {
            "objective": "regression",
            "learning_rate": 0.1,
            "num_leaves": 63,
            "max_bin": 63,
            "min_data_in_leaf": 20,
            "feature_fraction": 0.8,
            "num_threads": 1,
            "deterministic": True,
            "seed": 0,
            "verbosity": -1,
            **(params or {}),
        }
        self.boosters: list = []

    def fit(self, train: Features, val: Features) -> None:
        """One booster per label, stopped at its best validation round."""
        import lightgbm as lgb

        self.boosters = []
        for j in range(3):
            data = lgb.Dataset(train.x, train.labels[:, j], free_raw_data=True)
            valid = lgb.Dataset(val.x, val.labels[:, j], reference=data)
            booster = lgb.train(
                self.params,
                data,
                num_boost_round=self.rounds,
                valid_sets=[valid],
                callbacks=[lgb.early_stopping(30, verbose=False)],
            )
            self.boosters.append(booster)

    def predict(self, test: Features) -> tuple[np.ndarray, None]:
        """Labels ``(N, 3)``; no σ."""
        cols = [b.predict(test.x, num_iteration=b.best_iteration) for b in self.boosters]
        return np.stack(cols, axis=1), None
