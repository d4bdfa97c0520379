"""The van Trees (Bayesian Cramér–Rao) bound: a ceiling for biased estimators too.

``E[(ĝ − g)²] ≥ [(E_θ[I(θ)] + J_prior)⁻¹]_gg`` for *any* estimator of ``g``, where ``J_prior`` is
the prior's Fisher information. It needs a prior that vanishes smoothly at its edges (finite
``J_prior``); for a uniform prior it does not apply (use :class:`specvit.bounds.PosteriorMean`).
"""

from __future__ import annotations

import torch

from specvit.bounds.fisher import equilibrate

__all__ = ["van_trees_bound"]


def van_trees_bound(
    fisher: torch.Tensor,
    prior_fisher: torch.Tensor,
    index: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Van Trees (Bayesian Cramér–Rao) bound on the mean squared error of parameter ``index``.

    ``[(E_θ[I(θ)] + J_prior)⁻¹]_gg`` with the expectation over stars drawn from the prior. It
    bounds the MSE of every estimator, biased or not. (``E[(I(θ) + J_prior)⁻¹]`` is *not* this
    bound: by Jensen's inequality it is larger and need not bound anything.)

    Parameters
    ----------
    fisher : torch.Tensor
        ``(N, P, P)`` Fisher matrices of stars drawn from the prior.
    prior_fisher : torch.Tensor
        ``(P, P)`` the prior's Fisher information ``E[∇ln p ∇ln pᵀ]``
        (:meth:`LabelPrior.fisher_information` for independent labels).
    index : int
        Parameter of interest.
    weights : torch.Tensor, optional
        ``(N,)`` non-negative weights of the stars in the expectation (default: equal).

    Returns
    -------
    torch.Tensor
        Scalar float64 bound on ``E[(ĝ − g)²]``.

    Raises
    ------
    ValueError
        If a prior Fisher entry is infinite or NaN (e.g. a uniform prior: the van Trees
        inequality needs a prior density that vanishes at the edges of its support).
    """
    if fisher.dim() != 3 or fisher.shape[-1] != fisher.shape[-2]:
        raise ValueError(f"fisher must have shape (N, P, P), got {tuple(fisher.shape)}")
    p = fisher.shape[-1]
    prior_fisher = torch.as_tensor(prior_fisher, dtype=torch.float64)
    if prior_fisher.shape != (p, p):
        raise ValueError(
            f"prior_fisher must have shape ({p}, {p}), got {tuple(prior_fisher.shape)}"
        )
    if not bool(torch.isfinite(prior_fisher).all()):
        raise ValueError(
            "the van Trees bound needs a prior with finite Fisher information for every "
            "parameter (a density vanishing smoothly at its edges, e.g. Beta(a, b) with a, b > 2);"
            " a uniform prior has none. Use PosteriorMean (the Bayes-optimal estimator) instead."
        )
    fisher = fisher.to(torch.float64)
    if weights is None:
        mean_fisher = fisher.mean(dim=0)
    else:
        w = weights.to(torch.float64)
        mean_fisher = (w[:, None, None] * fisher).sum(0) / w.sum()
    scaled, d = equilibrate(mean_fisher + prior_fisher)
    return torch.linalg.inv(scaled)[index, index] / d[index] ** 2
