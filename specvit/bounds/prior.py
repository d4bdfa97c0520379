"""Label priors for the bounds: the population the ceilings are computed for.

An R² ceiling needs a prior: its variance of log g is the denominator of ``R²_max``, the
population of stars is drawn from it, the van Trees bound needs its Fisher information and the
Bayes-optimal estimator integrates over it. Each label has a uniform or a (scaled) beta
distribution on a finite interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import special

__all__ = ["Beta", "LabelPrior", "Uniform", "parse_distribution"]


class _Interval:
    """What a distribution on a finite interval ``[low, high]`` shares."""

    low: float
    high: float

    def _check_interval(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"need finite low < high, got low={self.low}, high={self.high}")

    @property
    def width(self) -> float:
        """``high − low``."""
        return self.high - self.low

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` float64 draws on the CPU (inverse-CDF of ``torch.rand`` from ``generator``)."""
        return self.icdf(torch.rand(n, generator=generator, dtype=torch.float64))

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML form with a ``kind`` key; :func:`parse_distribution` reads it back."""
        return {"kind": type(self).__name__.lower(), **asdict(self)}


@dataclass(frozen=True)
class Uniform(_Interval):
    """Uniform distribution on ``[low, high]``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        self._check_interval()

    def __str__(self) -> str:
        return f"uniform[{self.low:g}, {self.high:g}]"

    def mean(self) -> float:
        """Expectation."""
        return 0.5 * (self.low + self.high)

    def variance(self) -> float:
        """Variance ``width² / 12``."""
        return self.width**2 / 12.0

    def fisher_information(self) -> float:
        """Location Fisher information ``E[(d ln p/dx)²]``: infinite (the density jumps)."""
        return math.inf

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        """Quantile function at ``u`` in [0, 1]."""
        return self.low + self.width * u

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """Log density (``-inf`` outside the support)."""
        inside = (x >= self.low) & (x <= self.high)
        return torch.where(inside, -math.log(self.width), -math.inf).to(x.dtype)


@dataclass(frozen=True)
class Beta(_Interval):
    """Beta(``a``, ``b``) distribution scaled to ``[low, high]``."""

    low: float
    high: float
    a: float
    b: float

    def __post_init__(self) -> None:
        self._check_interval()
        if not (self.a > 0 and self.b > 0):
            raise ValueError(f"beta shape parameters must be > 0, got a={self.a}, b={self.b}")

    def __str__(self) -> str:
        return f"beta(a={self.a:g}, b={self.b:g})[{self.low:g}, {self.high:g}]"

    def mean(self) -> float:
        """Expectation."""
        return self.low + self.width * self.a / (self.a + self.b)

    def variance(self) -> float:
        """Variance ``width² a b / ((a + b)² (a + b + 1))``."""
        s = self.a + self.b
        return self.width**2 * self.a * self.b / (s**2 * (s + 1))

    def fisher_information(self) -> float:
        """Location Fisher information ``E[(d ln p/dx)²]``.

        ``(a + b − 1)(a + b − 2)(1/(a − 2) + 1/(b − 2)) / width²``, finite only for a, b > 2
        (otherwise the density does not vanish fast enough at the edges and it is ``inf``).
        """
        a, b = self.a, self.b
        if a <= 2 or b <= 2:
            return math.inf
        return (a + b - 1) * (a + b - 2) * (1 / (a - 2) + 1 / (b - 2)) / self.width**2

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        """Quantile function at ``u`` in [0, 1]."""
        x = special.betaincinv(self.a, self.b, u.detach().cpu().numpy().astype(np.float64))
        return self.low + self.width * torch.as_tensor(x, dtype=u.dtype, device=u.device)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """Log density (``-inf`` outside the support)."""
        z = ((x - self.low) / self.width).to(torch.float64)
        inside = (z > 0) & (z < 1)
        zc = z.clamp(1e-300, 1 - 1e-16)
        log_p = (
            (self.a - 1) * torch.log(zc)
            + (self.b - 1) * torch.log1p(-zc)
            - float(special.betaln(self.a, self.b))
            - math.log(self.width)
        )
        return torch.where(inside, log_p, -math.inf).to(x.dtype)


Distribution = Uniform | Beta


def parse_distribution(spec: Distribution | Mapping[str, Any] | tuple | list) -> Distribution:
    """A distribution from itself, ``(low, high)`` (uniform), or a mapping such as YAML gives.

    Mappings name their ``kind`` (``"uniform"``, the default, or ``"beta"``) beside the fields:
    ``{"kind": "beta", "low": -2.5, "high": 0.5, "a": 2, "b": 1.5}``.
    """
    if isinstance(spec, Uniform | Beta):
        return spec
    if isinstance(spec, Mapping):
        fields = dict(spec)
        kind = fields.pop("kind", "uniform")
        classes = {"uniform": Uniform, "beta": Beta}
        if kind not in classes:
            raise ValueError(f"distribution kind must be 'uniform' or 'beta', got {kind!r}")
        try:
            return classes[kind](**fields)
        except TypeError as err:
            raise ValueError(f"bad {kind} distribution {spec!r}: {err}") from None
    if isinstance(spec, tuple | list) and len(spec) == 2:
        return Uniform(float(spec[0]), float(spec[1]))
    raise TypeError(f"cannot make a distribution from {spec!r}")


class LabelPrior:
    """Independent per-label prior over named labels.

    Parameters
    ----------
    distributions : Mapping[str, Uniform | Beta]
        One distribution per label, in label order (e.g. ``T_eff``, ``log_g``, ``M_H``).
    """

    def __init__(self, distributions: Mapping[str, Distribution]) -> None:
        if not distributions:
            raise ValueError("a prior needs at least one label")
        for name, dist in distributions.items():
            if not isinstance(dist, Uniform | Beta):
                raise TypeError(f"label {name!r}: expected Uniform or Beta, got {type(dist)}")
        self.distributions = dict(distributions)

    @classmethod
    def default(cls) -> LabelPrior:
        """The default population: T_eff U(3750, 6000) K, log g U(1, 5), [M/H] U(−2.5, 0.5).

        The paper's T_eff and log g ranges; [M/H] stops at +0.5 where the emulator's grid ends.
        """
        return cls(
            {
                "T_eff": Uniform(3750.0, 6000.0),
                "log_g": Uniform(1.0, 5.0),
                "M_H": Uniform(-2.5, 0.5),
            }
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Label names, in order."""
        return tuple(self.distributions)

    def __getitem__(self, name: str) -> Distribution:
        if name not in self.distributions:
            raise ValueError(f"unknown label {name!r}; this prior has {self.names}")
        return self.distributions[name]

    def __repr__(self) -> str:
        return f"LabelPrior({self.distributions!r})"

    def variance(self, name: str) -> float:
        """Prior variance of label ``name``."""
        return self[name].variance()

    def bounds(self) -> torch.Tensor:
        """``(P, 2)`` float64 support ``[low, high]`` per label."""
        return torch.tensor([[d.low, d.high] for d in self.distributions.values()])

    def clip(self, labels: torch.Tensor) -> torch.Tensor:
        """``(..., P)`` labels moved into the support (each label clamped to its ``bounds``),
        e.g. a network's answer as a point to evaluate a model at without extrapolating."""
        if labels.shape[-1] != len(self.distributions):
            raise ValueError(
                f"labels have {labels.shape[-1]} columns, the prior has {len(self.names)}: "
                f"{self.names}"
            )
        bounds = self.bounds().to(labels)
        return torch.minimum(torch.maximum(labels, bounds[:, 0]), bounds[:, 1])

    def fisher_information(self) -> torch.Tensor:
        """``(P, P)`` diagonal prior Fisher information ``E[∇ln p ∇ln pᵀ]`` (``inf`` if uniform)."""
        return torch.diag(
            torch.tensor([d.fisher_information() for d in self.distributions.values()])
        )

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        """Map ``(..., P)`` uniforms in [0, 1] to labels."""
        cols = [d.icdf(u[..., i]) for i, d in enumerate(self.distributions.values())]
        return torch.stack(cols, dim=-1)

    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Draw ``(n, P)`` labels (inverse-CDF sampling from ``generator``)."""
        u = torch.rand(n, len(self.distributions), generator=generator, dtype=dtype)
        return self.icdf(u)

    def log_density(self, labels: torch.Tensor) -> torch.Tensor:
        """``(...,)`` log prior density of ``(..., P)`` labels."""
        if labels.shape[-1] != len(self.distributions):
            raise ValueError(
                f"labels have {labels.shape[-1]} columns, the prior has {len(self.names)}: "
                f"{self.names}"
            )
        return sum(d.log_density(labels[..., i]) for i, d in enumerate(self.distributions.values()))
