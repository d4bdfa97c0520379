"""The Cannon (Ness et al. 2015) through the PyPI package ``thecannon`` (module ``TheCannon``).

Continuum normalisation: each spectrum is divided by its median flux (the scale-free input of
every method here; ivar scaled to match); no pseudo-continuum fit. The package's quadratic
model in (T_eff, log g, [M/H]) is trained on the training spectra at full resolution (per-pixel
weighted least squares with a fitted per-pixel scatter, ``CannonModel(order=2,
useErrors=False)``) and its labels inferred per test spectrum by ``curve_fit``; σ is the
square root of the diagonal of ``curve_fit``'s covariance.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from training.evaluation.baselines.features import Features

__all__ = ["Cannon"]


def _quiet():
    """The package prints a line per step: keep it out of the command's output."""
    return contextlib.redirect_stdout(io.StringIO())


class Cannon:
    """The Cannon trained on the (first ``n_train``) training spectra.

    Parameters
    ----------
    n_train : int or None
        Training spectra used (the package's per-pixel regression is slow; None: all).
    """

    name = "cannon"
    block = 1

    def __init__(self, n_train: int | None = 10_000) -> None:
        self.n_train = n_train

    def _dataset(self, train: Features, test: Features):
        import matplotlib

        saved = matplotlib.rcParams.copy()
        from TheCannon import dataset, model

        matplotlib.rcParams.update(saved)  # the package switches LaTeX and serif fonts on
        wl = np.arange(train.x.shape[1], dtype=np.float64)
        ds = dataset.Dataset(
            wl,
            np.arange(len(train)),
            train.x.astype(np.float64),
            train.ivar.astype(np.float64),
            train.labels,
            np.arange(len(test)),
            test.x.astype(np.float64),
            test.ivar.astype(np.float64),
        )
        ds.set_label_names(["T_eff", "log_g", "M_H"])
        return ds, model

    def fit(self, train: Features, val: Features) -> None:
        """Train the quadratic model (no hyper-parameters to choose)."""
        train = train if self.n_train is None else train.subset(self.n_train)
        with _quiet():
            ds, model = self._dataset(train, val)
            self.model = model.CannonModel(2, useErrors=False)
            self.model.train(ds)
        self._train = train
        self.n_train_used = len(train)

    def predict(self, test: Features) -> tuple[np.ndarray, np.ndarray]:
        """Labels ``(N, 3)`` and ``curve_fit``'s 1σ.

        A spectrum whose fit fails (the package returns −9999, or a non-finite σ) gets the
        training labels' mean and standard deviation; :attr:`n_failed` counts them.
        """
        with _quiet():
            ds, _ = self._dataset(self._train.subset(1), test)
            errs, _ = self.model.infer_labels(ds)
        labels = np.asarray(ds.test_label_vals, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            sigma = np.asarray(errs, dtype=np.float64)
        failed = (labels == -9999.0).any(1) | ~np.isfinite(sigma).all(1) | ~(sigma > 0).all(1)
        self.n_failed = int(failed.sum())
        labels[failed] = self._train.labels.mean(0)
        sigma[failed] = self._train.labels.std(0)
        return labels, sigma
