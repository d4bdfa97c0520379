"""Two small torch networks on the normalised flux: an MLP and a 1-D CNN, one training loop.

Input: the normalised flux minus 1 (``x − 1``, the model input of SpecViT), averaged over
``block`` pixels; targets: the three labels z-scored on the training set; loss: MSE; AdamW with
a cosine schedule over ``epochs`` passes over the fixed training spectra (batch 256); the
weights of the epoch with the lowest validation MSE are kept. Seeded: the same data give the
same network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from training.evaluation.baselines.features import Features

__all__ = ["CNN", "MLP"]


class _Net:
    """Shared fit / predict of the torch baselines; subclasses build :meth:`network`."""

    name = ""
    block = 4

    def __init__(
        self, block: int = 4, epochs: int = 10, lr: float = 1e-3, batch: int = 256, seed: int = 0
    ) -> None:
        self.block, self.epochs, self.lr, self.batch, self.seed = block, epochs, lr, batch, seed
        self.history: list[float] = []

    def network(self, n_in: int) -> nn.Module:
        raise NotImplementedError

    def _input(self, f: Features) -> torch.Tensor:
        return torch.from_numpy(f.x - 1.0).float()

    def fit(self, train: Features, val: Features) -> None:
        """Train; keep the epoch with the lowest validation MSE."""
        torch.manual_seed(self.seed)
        x, xv = self._input(train), self._input(val)
        self.shift = torch.from_numpy(train.labels.mean(0)).float()
        self.scale = torch.from_numpy(train.labels.std(0)).float()
        y = (torch.from_numpy(train.labels).float() - self.shift) / self.scale
        yv = (torch.from_numpy(val.labels).float() - self.shift) / self.scale
        self.net = self.network(x.shape[1])
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=1e-4)
        steps = self.epochs * math.ceil(len(x) / self.batch)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        generator = torch.Generator().manual_seed(self.seed)
        best, self.history = (math.inf, None), []
        for _ in range(self.epochs):
            self.net.train()
            for idx in torch.randperm(len(x), generator=generator).split(self.batch):
                loss = nn.functional.mse_loss(self.net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            val_mse = float(nn.functional.mse_loss(self._forward(xv), yv))
            self.history.append(val_mse)
            if val_mse < best[0]:
                best = (val_mse, {k: v.clone() for k, v in self.net.state_dict().items()})
        self.net.load_state_dict(best[1])

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return torch.cat([self.net(c) for c in x.split(1024)])

    def predict(self, test: Features) -> tuple[np.ndarray, None]:
        """Labels ``(N, 3)``; no σ."""
        out = self._forward(self._input(test)) * self.scale + self.shift
        return out.double().numpy(), None


class MLP(_Net):
    """Two hidden layers of ``width`` GELU units (default block 4: 1024 inputs)."""

    name = "mlp"

    def __init__(self, width: int = 256, **kwargs) -> None:
        super().__init__(**kwargs)
        self.width = width

    def network(self, n_in: int) -> nn.Module:
        w = self.width
        return nn.Sequential(
            nn.Linear(n_in, w), nn.GELU(), nn.Linear(w, w), nn.GELU(), nn.Linear(w, 3)
        )


class CNN(_Net):
    """Three strided convolutions (16, 32, 64 channels, kernel 9, stride 4) and a dense head."""

    name = "cnn"
    block = 2

    def __init__(self, block: int = 2, **kwargs) -> None:
        super().__init__(block=block, **kwargs)

    def network(self, n_in: int) -> nn.Module:
        length = n_in
        layers: list[nn.Module] = [nn.Unflatten(1, (1, n_in))]
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            layers += [nn.Conv1d(c_in, c_out, 9, stride=4, padding=4), nn.GELU()]
            length = (length - 1) // 4 + 1
        layers += [nn.Flatten(), nn.Linear(64 * length, 128), nn.GELU(), nn.Linear(128, 3)]
        return nn.Sequential(*layers)
