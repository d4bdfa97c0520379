"""Ridge regression on block-averaged normalised flux, one α per label chosen on validation."""

from __future__ import annotations

import numpy as np

from training.evaluation.baselines.features import Features

__all__ = ["ALPHAS", "Ridge"]

#: Penalties tried, relative to the number of training spectra.
ALPHAS = tuple(float(a) for a in np.logspace(-10, 2, 25))


class Ridge:
    """Linear least squares with an L2 penalty on standardised features.

    The penalised normal equations are solved for every α of ``alphas`` at once through the
    eigen-decomposition of ``XᵀX``; each label keeps the α with the smallest validation MSE.

    Parameters
    ----------
    block : int
        Pixels per feature (4096 / block features).
    alphas : sequence of float
        Penalties to try, relative to the number of training spectra (``α·N``).
    """

    name = "ridge"
    block = 16

    def __init__(self, block: int = 16, alphas: tuple[float, ...] = ALPHAS) -> None:
        self.block = int(block)
        self.alphas = np.asarray(alphas, dtype=np.float64)
        self.chosen: list[float] = []

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float64) - self.mean) / self.scale

    def fit(self, train: Features, val: Features) -> None:
        """Fit on ``train``; choose α per label on ``val``."""
        x = train.x.astype(np.float64)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-12
        x = self._standardise(train.x)
        self.y_mean = train.labels.mean(0)
        evals, evecs = np.linalg.eigh(x.T @ x)
        xty = evecs.T @ (x.T @ (train.labels - self.y_mean))  # (F, 3)
        xv = self._standardise(val.x) @ evecs
        self.coef = np.empty((x.shape[1], 3))
        self.chosen = []
        for j in range(3):
            best = None
            for alpha in self.alphas * len(x):
                w = xty[:, j] / (evals + alpha)
                mse = np.mean(np.square(xv @ w + self.y_mean[j] - val.labels[:, j]))
                if best is None or mse < best[0]:
                    best = (mse, alpha, w)
            self.chosen.append(float(best[1] / len(x)))
            self.coef[:, j] = evecs @ best[2]

    def predict(self, test: Features) -> tuple[np.ndarray, None]:
        """Labels ``(N, 3)``; no σ."""
        return self._standardise(test.x) @ self.coef + self.y_mean, None
