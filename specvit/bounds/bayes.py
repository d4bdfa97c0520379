"""The Bayes-optimal estimator: a ceiling valid for biased estimators too.

The unbiased CRLB is no ceiling for an estimator that uses the prior (shrinkage toward the prior
mean beats it at low SNR). :class:`PosteriorMean` is the Bayes-optimal estimator itself,
``E[θ | data]``, computed by integrating the likelihood over the prior (grid proposal + adaptive
importance sampling). No estimator has a lower mean squared error on data drawn from that prior
and noise model, so its R² on a test set is the ceiling for that set (up to Monte-Carlo error,
reported as the effective sample size). The other Bayesian answer, a bound rather than an
estimator, is :func:`specvit.bounds.van_trees_bound`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from specvit.bounds.fisher import equilibrate
from specvit.bounds.jacobian import autograd_jacobian
from specvit.bounds.prior import LabelPrior

__all__ = [
    "Posterior",
    "PosteriorMean",
    "amplitude_marginal_loglike",
    "student_t_logpdf",
]

Model = Callable[[torch.Tensor], torch.Tensor]


def amplitude_marginal_loglike(
    s_yy: torch.Tensor, s_yf: torch.Tensor, s_ff: torch.Tensor
) -> torch.Tensor:
    """Log likelihood of ``y ~ N(A f, σ²)`` with the amplitude ``A`` integrated out.

    The prior on ``A`` is scale-invariant, ``p(A) ∝ 1/A`` (the estimator is not told the star's
    brightness, and the result does not depend on how ``f`` is normalised). The Gaussian
    integral over ``A`` is taken at its peak ``Â = S_yf/S_ff`` (Laplace; the likelihood in
    ``A`` is narrow, ≈1/(SNR √L) relative):
    ``ln L = −½ (S_yy − S_yf²/S_ff) − ½ ln S_ff − ln Â`` up to a constant.

    Parameters
    ----------
    s_yy, s_yf, s_ff : torch.Tensor
        ``Σ y²/σ²``, ``Σ y f/σ²``, ``Σ f²/σ²`` (broadcastable).

    Returns
    -------
    torch.Tensor
        Log likelihood up to a constant per spectrum; ``-inf`` where ``Â ≤ 0``.
    """
    a_hat = s_yf / s_ff
    chi2 = (s_yy - s_yf * a_hat).clamp_min(0.0)
    out = -0.5 * chi2 - 0.5 * torch.log(s_ff) - torch.log(a_hat.clamp_min(1e-300))
    return torch.where(a_hat > 0, out, torch.full_like(out, -math.inf))


@dataclass(frozen=True)
class Posterior:
    """Posterior summaries per spectrum.

    Attributes
    ----------
    mean, std : torch.Tensor
        ``(N, P)`` posterior mean (the Bayes-optimal estimate under squared loss) and standard
        deviation of each label.
    ess : torch.Tensor
        ``(N,)`` effective number of importance samples behind each estimate.
    """

    mean: torch.Tensor
    std: torch.Tensor
    ess: torch.Tensor


def _box_dilate(p: torch.Tensor) -> torch.Tensor:
    """Average each grid cell with its neighbours (3 wide in every grid dimension)."""
    for dim in range(1, p.dim()):
        padded = torch.nn.functional.pad(p.movedim(dim, -1), (1, 1))
        ones = torch.nn.functional.pad(torch.ones(p.shape[dim], dtype=p.dtype), (1, 1))
        n = p.shape[dim]
        s = padded[..., :n] + padded[..., 1 : n + 1] + padded[..., 2:]
        c = ones[:n] + ones[1 : n + 1] + ones[2:]
        p = (s / c).movedim(-1, dim)
    return p


def student_t_logpdf(
    x: torch.Tensor, mean: torch.Tensor, chol: torch.Tensor, nu: float
) -> torch.Tensor:
    """Multivariate Student-t log density, one distribution per row.

    Parameters
    ----------
    x : torch.Tensor
        ``(n, K, P)`` points, ``K`` per distribution.
    mean : torch.Tensor
        ``(n, P)`` locations.
    chol : torch.Tensor
        ``(n, P, P)`` lower Cholesky factors of the scale matrices.
    nu : float
        Degrees of freedom.

    Returns
    -------
    torch.Tensor
        ``(n, K)`` log densities.
    """
    p = x.shape[-1]
    z = torch.linalg.solve_triangular(chol, (x - mean[:, None]).mT, upper=False).mT
    maha = z.square().sum(-1)
    log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    const = math.lgamma((nu + p) / 2) - math.lgamma(nu / 2) - p / 2 * math.log(nu * math.pi)
    return const - log_det[:, None] - (nu + p) / 2 * torch.log1p(maha / nu)


class PosteriorMean:
    """The Bayes-optimal estimator ``E[θ | y, σ]`` for a spectral model and a label prior.

    Model: ``y = A f(θ) + ε``, ``ε ~ N(0, diag σ²)``, ``θ ~ prior``, the amplitude ``A``
    marginalised with a scale-invariant prior (:func:`amplitude_marginal_loglike`).

    Algorithm, per spectrum: (1) the posterior on a regular grid of cell centres over the
    prior's support (one matrix product against precomputed model fluxes), spread to
    neighbouring cells: the *grid proposal*, uniform within cells; (2) Gauss-Newton steps from
    the best cell to the likelihood peak and a Student-t with the inverse Fisher matrix there
    (Laplace), mixed with the grid proposal (weight ``defensive``), for the first ``n_samples``
    draws; (3) ``n_rounds − 1`` more rounds from a Student-t fitted to the weighted samples so
    far, again mixed with the grid proposal; (4) self-normalised importance weights of all
    samples against the mixture of all proposals (deterministic mixture), exact likelihood in
    float64. The grid proposal covers broad and multimodal posteriors at low SNR, the
    Student-t the narrow ones at high SNR.

    Parameters
    ----------
    model : callable
        Row-wise ``(N, P) -> (N, L)`` noiseless flux (any normalisation), e.g. the emulator.
    prior : LabelPrior
        Prior over the model's ``P`` labels, in the model's label order.
    grid_shape : sequence of int
        Cells per label for step (1).
    n_samples : int
        Importance samples per round and spectrum.
    n_rounds : int
        Rounds (the first from the grid, the others adaptive).
    defensive : float
        Weight of the grid proposal in the adaptive rounds' mixtures.
    chunk : int
        Spectra processed together (memory ≈ ``n_rounds × chunk × n_samples × L × 8`` bytes).
    dtype : torch.dtype
        Dtype of the labels passed to ``model`` (float32 is enough for a float32 emulator; the
        likelihood is always accumulated in float64).
    """

    def __init__(
        self,
        model: Model,
        prior: LabelPrior,
        grid_shape: Sequence[int] = (24, 24, 20),
        n_samples: int = 256,
        n_rounds: int = 3,
        defensive: float = 0.2,
        chunk: int = 16,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        p = len(prior.names)
        if len(grid_shape) != p:
            raise ValueError(
                f"grid_shape needs {p} entries (labels {prior.names}), got {grid_shape}"
            )
        if n_rounds < 1 or n_samples < 2:
            raise ValueError("need n_rounds ≥ 1 and n_samples ≥ 2")
        if not 0 < defensive <= 1:
            raise ValueError(f"defensive must be in (0, 1], got {defensive}")
        self.model, self.prior, self.dtype = model, prior, dtype
        self.grid_shape = tuple(int(g) for g in grid_shape)
        self.n_samples, self.n_rounds, self.defensive, self.chunk = (
            n_samples,
            n_rounds,
            defensive,
            chunk,
        )
        bounds = prior.bounds()
        self.low, self.width = (
            bounds[:, 0],
            (bounds[:, 1] - bounds[:, 0]) / torch.tensor(self.grid_shape, dtype=torch.float64),
        )
        axes = [
            self.low[k] + (torch.arange(g, dtype=torch.float64) + 0.5) * self.width[k]
            for k, g in enumerate(self.grid_shape)
        ]
        centres = torch.cartesian_prod(*axes).reshape(-1, p)
        self.centres = centres
        jacobian = getattr(model, "jacobian", None)
        self._jacobian = jacobian if callable(jacobian) else partial(autograd_jacobian, model)
        with torch.no_grad():
            flux = torch.cat([model(c.to(dtype)).to(torch.float32) for c in centres.split(4096)])
        self.grid_flux = flux  # (G, L)
        self.grid_flux_sq = flux.square()
        self.grid_log_prior = prior.log_density(centres)
        self.log_cell_volume = float(torch.log(self.width).sum())

    def _loglike(self, y: torch.Tensor, w: torch.Tensor, flux: torch.Tensor) -> torch.Tensor:
        """Exact float64 log likelihood; y, w (n, L), flux (n, K, L) -> (n, K)."""
        s_yf = (flux @ (y * w).unsqueeze(-1)).squeeze(-1)
        s_ff = (flux.square() @ w.unsqueeze(-1)).squeeze(-1)
        s_yy = (y.square() * w).sum(-1, keepdim=True)
        return amplitude_marginal_loglike(s_yy, s_yf, s_ff)

    def _grid_logq(self, theta: torch.Tensor, log_cells: torch.Tensor) -> torch.Tensor:
        """Log density of the grid proposal at theta (n, K, P); log_cells (n, G)."""
        idx = ((theta - self.low) / self.width).floor().long()
        shape = torch.tensor(self.grid_shape)
        inside = ((idx >= 0) & (idx < shape)).all(-1)
        idx = torch.minimum(idx.clamp_min(0), shape - 1)
        strides = torch.tensor([math.prod(self.grid_shape[k + 1 :]) for k in range(len(shape))])
        flat = (idx * strides).sum(-1)
        out = log_cells.gather(1, flat) - self.log_cell_volume
        return torch.where(inside, out, torch.full_like(out, -math.inf))

    def _sample_grid(self, log_cells: torch.Tensor, generator: torch.Generator | None):
        n, k = log_cells.shape[0], self.n_samples
        cells = torch.multinomial(log_cells.exp(), k, replacement=True, generator=generator)
        idx = torch.stack(torch.unravel_index(cells, self.grid_shape), dim=-1).to(torch.float64)
        u = torch.rand(n, k, len(self.grid_shape), generator=generator, dtype=torch.float64)
        return self.low + (idx + u) * self.width

    def __call__(
        self,
        flux: torch.Tensor,
        sigma: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> Posterior:
        """Posterior mean, std and effective sample size for each observed spectrum.

        Parameters
        ----------
        flux, sigma : torch.Tensor
            ``(N, L)`` observed flux and its 1σ (σ > 0; ``inf`` masks a pixel).
        generator : torch.Generator, optional
            Source of the importance samples.

        Returns
        -------
        Posterior
        """
        self._check(flux, sigma)
        parts = [
            self._chunk(y, s, generator)
            for y, s in zip(flux.split(self.chunk), sigma.split(self.chunk), strict=True)
        ]
        return Posterior(*(torch.cat(t) for t in zip(*parts, strict=True)))

    def _check(self, flux: torch.Tensor, sigma: torch.Tensor) -> None:
        if flux.dim() != 2 or flux.shape != sigma.shape:
            raise ValueError(
                f"flux and sigma must both be (N, L); got {tuple(flux.shape)}, {tuple(sigma.shape)}"
            )
        if flux.shape[1] != self.grid_flux.shape[1]:
            raise ValueError(
                f"spectra have {flux.shape[1]} pixels, the model {self.grid_flux.shape[1]}"
            )
        if bool(torch.isnan(sigma).any()) or not bool((sigma > 0).all()):
            raise ValueError("sigma must be > 0 and not NaN (inf masks a pixel)")

    def _grid_log_post(self, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Unnormalised log posterior at the cell centres, (n, G), from float64 ``y`` and
        ``w = 1/σ²`` (n, L); the products run in float32."""
        s_yf = ((y * w).float() @ self.grid_flux.T).double()
        s_ff = (w.float() @ self.grid_flux_sq.T).double()
        s_yy = (y.square() * w).sum(-1, keepdim=True)
        return amplitude_marginal_loglike(s_yy, s_yf, s_ff) + self.grid_log_prior

    def grid_posterior(
        self, flux: torch.Tensor, sigma: torch.Tensor, chunk: int = 256
    ) -> Posterior:
        """The grid approximation alone: posterior moments over the cell centres.

        Step (1) of the algorithm without the importance sampling: one matrix product per
        spectrum against the precomputed model fluxes, tens of times faster than
        :meth:`__call__`. Close to the exact posterior where it spans several cells (low SNR);
        where it is narrower than a cell, its mean snaps towards the best cell and its ``std``
        falls below the cell width.

        Parameters
        ----------
        flux, sigma : torch.Tensor
            ``(N, L)`` observed flux and its 1σ (σ > 0; ``inf`` masks a pixel).
        chunk : int
            Spectra per matrix product (memory ≈ ``chunk × G × 8`` bytes for ``G`` cells).

        Returns
        -------
        Posterior
            Mean and std over the cells (float64); ``ess`` is the effective number of cells,
            1 / Σ p².
        """
        self._check(flux, sigma)
        means, stds, ess = [], [], []
        for y, s in zip(flux.split(chunk), sigma.split(chunk), strict=True):
            w = s.to(torch.float64).reciprocal().square()
            prob = torch.softmax(self._grid_log_post(y.to(torch.float64), w), dim=-1)
            mean = prob @ self.centres
            var = prob @ self.centres.square() - mean.square()
            means.append(mean)
            stds.append(var.clamp_min(0.0).sqrt())
            ess.append(1.0 / prob.square().sum(-1))
        return Posterior(torch.cat(means), torch.cat(stds), torch.cat(ess))

    def _chunk(self, y, sigma, generator):
        y = y.to(torch.float64)
        w = sigma.to(torch.float64).reciprocal().square()
        n, p = y.shape[0], len(self.grid_shape)
        # (1) grid posterior (float32 products: only a proposal), then spread to neighbours.
        log_post = self._grid_log_post(y, w)
        cells = torch.softmax(log_post, dim=-1).reshape(n, *self.grid_shape)
        cells = _box_dilate(cells).reshape(n, -1)
        cells = cells / cells.sum(-1, keepdim=True)
        log_cells = torch.log(cells.clamp_min(1e-300))
        # (2) Gauss-Newton from the best cell to the likelihood peak: a Laplace proposal.
        best = self.centres[log_post.argmax(dim=-1)]
        # (3) importance sampling rounds.
        thetas, log_targets, proposals = [], [], []
        for r in range(self.n_rounds):
            if r == 0:
                mean, chol = self._laplace(y, w, best)
            else:
                log_w = self._mixture_weights(
                    torch.cat(thetas, 1), torch.cat(log_targets, 1), log_cells, proposals
                )
                mean, chol = self._fit(torch.cat(thetas, 1), log_w)
            proposals.append((mean, chol))
            theta = self._sample_mixture(mean, chol, log_cells, generator)
            with torch.no_grad():
                f = self.model(theta.reshape(-1, p).to(self.dtype))
            f = f.to(torch.float64).reshape(n, -1, y.shape[1])
            thetas.append(theta)
            log_targets.append(self._loglike(y, w, f) + self.prior.log_density(theta))
        theta = torch.cat(thetas, 1)
        log_w = self._mixture_weights(theta, torch.cat(log_targets, 1), log_cells, proposals)
        weights = torch.softmax(log_w, dim=1)
        mean = (weights[..., None] * theta).sum(1)
        var = (weights[..., None] * (theta - mean[:, None]).square()).sum(1)
        ess = 1.0 / weights.square().sum(1)
        return mean, var.sqrt(), ess

    def _laplace(self, y, w, theta):
        """Gauss-Newton steps to the likelihood peak; Student-t scale from the inverse Fisher."""
        low, high = self.low, self.low + self.width * torch.tensor(self.grid_shape)
        p = theta.shape[-1]
        for step in range(self.GN_STEPS + 1):
            with torch.no_grad():
                f = self.model(theta.to(self.dtype)).to(torch.float64)
            jac = self._jacobian(theta.to(self.dtype)).detach().to(torch.float64)
            # y ≈ A f(θ) + A J Δθ is linear in (A, A Δθ): weighted least squares, equilibrated.
            design = torch.cat([f.unsqueeze(-1), jac], dim=-1) * w.sqrt().unsqueeze(-1)
            normal, d = equilibrate(design.mT @ design)
            ridge = 1e-12 * torch.eye(p + 1, dtype=torch.float64)
            if step == self.GN_STEPS:
                break
            rhs = (design.mT @ (y * w.sqrt()).unsqueeze(-1)).squeeze(-1) / d
            coef = torch.linalg.solve(normal + ridge, rhs) / d
            amp = coef[:, :1]
            delta = torch.where(amp > 0, coef[:, 1:] / amp.clamp_min(1e-300), 0.0)
            delta = torch.nan_to_num(delta, nan=0.0, posinf=0.0, neginf=0.0)
            theta = torch.minimum(torch.maximum(theta + delta, low), high)
        # Covariance of θ with the amplitude free: [F⁻¹]_θθ, F over (A, θ) with columns f, A J.
        cov = torch.linalg.inv(normal + ridge) / (d.unsqueeze(-1) * d.unsqueeze(-2))
        amp = ((f * y * w).sum(-1) / (f.square() * w).sum(-1)).abs().clamp_min(1e-300)
        cov = cov[:, 1:, 1:] / amp.square()[:, None, None]
        cov = torch.nan_to_num(cov, nan=0.0)
        cov = self.INFLATE**2 * cov + torch.diag((1e-3 * self.width).square())
        chol, info = torch.linalg.cholesky_ex(cov)
        fallback = torch.diag(self.width).expand_as(chol)
        return theta, torch.where((info == 0)[:, None, None], chol, fallback)

    def _log_q(self, theta, log_cells, proposal):
        grid = self._grid_logq(theta, log_cells)
        t = student_t_logpdf(theta, *proposal, nu=self.NU)
        mix = torch.stack(
            [grid + math.log(self.defensive), t + math.log1p(-self.defensive)]
            if self.defensive < 1
            else [grid]
        )
        return torch.logsumexp(mix, dim=0)

    def _mixture_weights(self, theta, log_target, log_cells, proposals):
        log_q = torch.stack([self._log_q(theta, log_cells, q) for q in proposals])
        log_q = torch.logsumexp(log_q, dim=0) - math.log(len(proposals))
        out = log_target - log_q
        return torch.where(torch.isfinite(out), out, torch.full_like(out, -math.inf))

    #: Degrees of freedom of the adaptive Student-t proposals.
    NU = 5
    #: Scale factor of the fitted covariance in the adaptive proposals.
    INFLATE = 1.5
    #: Gauss-Newton steps from the best grid cell toward the likelihood peak.
    GN_STEPS = 3

    def _fit(self, theta, log_w):
        weights = torch.softmax(log_w, dim=1)[..., None]
        mean = (weights * theta).sum(1)
        centred = theta - mean[:, None]
        cov = (weights * centred).mT @ centred
        floor = torch.diag((1e-3 * self.width).square())
        cov = self.INFLATE**2 * cov + floor
        chol, info = torch.linalg.cholesky_ex(cov)
        fallback = torch.diag(self.width).expand_as(chol)
        chol = torch.where((info == 0)[:, None, None], chol, fallback)
        return mean, chol

    def _sample_mixture(self, mean, chol, log_cells, generator):
        n, k, p = mean.shape[0], self.n_samples, mean.shape[1]
        grid = self._sample_grid(log_cells, generator)
        z = torch.randn(n, k, p, generator=generator, dtype=torch.float64)
        chi2 = torch.randn(n, k, self.NU, generator=generator, dtype=torch.float64)
        chi2 = chi2.square().sum(-1, keepdim=True)
        t = mean[:, None] + (z @ chol.mT) * torch.sqrt(self.NU / chi2)
        use_grid = torch.rand(n, k, 1, generator=generator, dtype=torch.float64) < self.defensive
        return torch.where(use_grid, grid, t)
