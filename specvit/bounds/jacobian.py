"""Jacobians of a batched spectral model: forward-mode autograd, and a central-difference check.

A model here is any function ``fn(labels) -> flux`` mapping ``(N, P)`` labels to ``(N, L)``
fluxes, row by row (row ``i`` of the output depends only on row ``i`` of the input), such as
the emulator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "JacobianCheck",
    "autograd_jacobian",
    "central_difference_jacobian",
    "check_jacobian",
]

Model = Callable[[torch.Tensor], torch.Tensor]


def _check_labels(labels: torch.Tensor) -> None:
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape (N, P), got {tuple(labels.shape)}")


def autograd_jacobian(fn: Model, labels: torch.Tensor) -> torch.Tensor:
    """Exact ``∂flux/∂labels`` by forward-mode autograd (one pass per parameter).

    Parameters
    ----------
    fn : callable
        Row-wise model ``(N, P) -> (N, L)``, differentiable in torch.
    labels : torch.Tensor
        ``(N, P)`` points at which to differentiate.

    Returns
    -------
    torch.Tensor
        ``(N, L, P)`` Jacobian in the dtype of ``fn``'s output.
    """
    _check_labels(labels)
    columns = []
    for k in range(labels.shape[1]):
        tangent = torch.zeros_like(labels)
        tangent[:, k] = 1.0
        _, column = torch.func.jvp(fn, (labels,), (tangent,))
        columns.append(column)
    return torch.stack(columns, dim=-1)


def central_difference_jacobian(
    fn: Model, labels: torch.Tensor, step: float | Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """``(f(θ + h e_k) − f(θ − h e_k)) / 2h`` for each parameter ``k``.

    Parameters
    ----------
    fn : callable
        Row-wise model ``(N, P) -> (N, L)``.
    labels : torch.Tensor
        ``(N, P)``.
    step : float or sequence of float
        Step ``h`` per parameter (a scalar applies to all), in label units.

    Returns
    -------
    torch.Tensor
        ``(N, L, P)``.
    """
    _check_labels(labels)
    h = torch.as_tensor(step, dtype=labels.dtype).expand(labels.shape[1])
    if not bool((h > 0).all()):
        raise ValueError(f"finite-difference steps must be > 0, got {h.tolist()}")
    columns = []
    with torch.no_grad():
        for k in range(labels.shape[1]):
            shift = torch.zeros_like(labels)
            shift[:, k] = h[k]
            columns.append((fn(labels + shift) - fn(labels - shift)) / (2 * h[k]))
    return torch.stack(columns, dim=-1)


@dataclass(frozen=True)
class JacobianCheck:
    """Relative disagreement of a Jacobian with central differences over a step sweep.

    Attributes
    ----------
    steps : torch.Tensor
        ``(S, P)`` step used per sweep point and parameter.
    errors : torch.Tensor
        ``(S, P)`` relative error ``‖J_fd − J‖ / ‖J‖`` per parameter (norm over stars and
        pixels).
    """

    steps: torch.Tensor
    errors: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        """``(P,)`` smallest relative error over the sweep, per parameter."""
        return self.errors.min(dim=0).values

    @property
    def best_steps(self) -> torch.Tensor:
        """``(P,)`` the step at which each best error was reached."""
        idx = self.errors.argmin(dim=0)
        return self.steps.gather(0, idx.unsqueeze(0)).squeeze(0)


def check_jacobian(
    fn: Model,
    labels: torch.Tensor,
    jacobian: torch.Tensor,
    scales: float | Sequence[float],
    factors: Sequence[float] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5),
) -> JacobianCheck:
    """Compare ``jacobian`` with central differences of ``fn`` at steps ``factor × scale``.

    Truncation error falls as ``h²`` and round-off grows as ``1/h``: an exact Jacobian agrees
    with the differences to high accuracy somewhere in the sweep, a wrong one nowhere.
    Run ``fn`` in float64 for a meaningful check.

    Parameters
    ----------
    fn : callable
        Row-wise model ``(N, P) -> (N, L)``.
    labels : torch.Tensor
        ``(N, P)``.
    jacobian : torch.Tensor
        ``(N, L, P)`` the Jacobian to check (e.g. from :func:`autograd_jacobian`).
    scales : float or sequence of float
        Typical scale of each parameter (e.g. its prior range), in label units.
    factors : sequence of float
        Steps as fractions of ``scales``.

    Returns
    -------
    JacobianCheck
    """
    _check_labels(labels)
    p = labels.shape[1]
    if jacobian.dim() != 3 or jacobian.shape[0] != labels.shape[0] or jacobian.shape[2] != p:
        raise ValueError(
            f"jacobian must have shape (N={labels.shape[0]}, L, P={p}), got {tuple(jacobian.shape)}"
        )
    scale = torch.as_tensor(scales, dtype=torch.float64).expand(p)
    steps = torch.stack([f * scale for f in factors])
    ref = jacobian.to(torch.float64)
    norm = ref.square().sum(dim=(0, 1)).sqrt()
    errors = []
    for h in steps:
        fd = central_difference_jacobian(fn, labels, h.to(labels.dtype)).to(torch.float64)
        errors.append((fd - ref).square().sum(dim=(0, 1)).sqrt() / norm)
    return JacobianCheck(steps=steps, errors=torch.stack(errors))
