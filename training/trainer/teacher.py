"""A cheap teacher: regress the means on the grid posterior mean instead of the true labels.

Under squared loss a network learns ``E[θ | x]`` whether its target is the true label ``θ`` or
the posterior mean ``E[θ | x]`` itself; only the gradient noise differs. At S/N 3 the true log g
lies 0.67 dex (rms) from the posterior mean, so most of each gradient is label noise. The grid
posterior (:meth:`specvit.bounds.PosteriorMean.grid_posterior`: one matrix product per star
against precomputed emulator spectra, about 1.7 ms per star on the 2-core CPU) is within
0.04 dex of the exact posterior mean on the faint evaluation set, and its R² matches the
Bayes-optimal R² to 1 % (``benchmarks/teacher.py``).

Where the posterior is narrower than half a grid cell (bright stars), the grid mean snaps to a
cell and the true label is the better target; :class:`GridTeacher` keeps the true label there,
label by label. The Gaussian head's σ still learns from the true labels (the trainer passes them
as the σ target), so σ keeps the posterior's width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from specvit.bounds import PosteriorMean
from specvit.bounds.prior import LabelPrior
from specvit.emulator import Emulator
from specvit.labels import LABEL_NAMES

__all__ = ["MIN_CELLS", "GridTeacher"]

#: The teacher's mean replaces a true label where the grid posterior's std exceeds this many
#: cell widths (below it the posterior is not resolved by the grid).
MIN_CELLS = 0.5


class GridTeacher:
    """Regression targets from the grid posterior of the engine's own emulator and prior.

    Parameters
    ----------
    emulator : specvit.emulator.Emulator
        The emulator the training spectra were drawn with.
    prior : specvit.bounds.LabelPrior
        Their label prior, over :data:`specvit.labels.LABEL_NAMES`.
    grid_shape : sequence of int
        Grid cells per label (T_eff, log g, [M/H]).
    min_cells : float
        Resolution threshold (:data:`MIN_CELLS`).
    """

    def __init__(
        self,
        emulator: Emulator,
        prior: LabelPrior,
        grid_shape: Sequence[int],
        min_cells: float = MIN_CELLS,
    ) -> None:
        if tuple(prior.names) != LABEL_NAMES:
            raise ValueError(f"the teacher's prior must be over {LABEL_NAMES}, got {prior.names}")
        self.posterior = PosteriorMean(
            emulator, prior, grid_shape=grid_shape, n_samples=2, n_rounds=1, dtype=torch.float32
        )
        self.min_std = (min_cells * self.posterior.width).to(torch.float32)

    def __call__(self, spectra: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Targets (N, 3) in :data:`~specvit.labels.LABEL_NAMES` order for a batch of spectra.

        Parameters
        ----------
        spectra : mapping
            ``flux``, ``error`` (N, L) and the true ``labels`` (N, 3).

        Returns
        -------
        torch.Tensor
            The grid posterior mean where it resolves the label, else the true label (float32).
        """
        labels = torch.as_tensor(spectra["labels"], dtype=torch.float32)
        with torch.no_grad():
            post = self.posterior.grid_posterior(
                torch.as_tensor(spectra["flux"]), torch.as_tensor(spectra["error"])
            )
        mean, std = post.mean.to(torch.float32), post.std.to(torch.float32)
        return torch.where(std > self.min_std, mean, labels)
