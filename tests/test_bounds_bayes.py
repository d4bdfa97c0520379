"""Bayes-optimal posterior mean (vs brute-force quadrature) and the van Trees bound."""

import math

import pytest
import torch

from specvit.bounds import (
    Beta,
    LabelPrior,
    PosteriorMean,
    Uniform,
    fisher_information,
    marginal_crlb,
    van_trees_bound,
)
from specvit.bounds.bayes import amplitude_marginal_loglike
from specvit.bounds.jacobian import autograd_jacobian

X = torch.linspace(-1.0, 1.0, 160, dtype=torch.float64)


def line_model(theta: torch.Tensor) -> torch.Tensor:
    """A continuum with a slope and one absorption line: (depth, centre, width) in [0, 1]."""
    depth = 0.2 + 0.6 * theta[:, :1]
    centre = -0.5 + theta[:, 1:2]
    width = 0.05 + 0.15 * theta[:, 2:3]
    return (1.0 + 0.3 * X) * (1.0 - depth * torch.exp(-0.5 * ((X - centre) / width) ** 2))


PRIOR = LabelPrior({"depth": Uniform(0, 1), "centre": Beta(0, 1, 3, 3), "width": Uniform(0, 1)})


def brute_force_mean(y: torch.Tensor, sigma: torch.Tensor, n: int = 64) -> torch.Tensor:
    axis = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    grid = torch.cartesian_prod(axis, axis, axis)
    w = sigma.reciprocal().square()
    log_like = []
    for g in grid.split(32768):
        f = line_model(g)
        log_like.append(
            amplitude_marginal_loglike(
                (y.square() * w).sum(-1, keepdim=True), (y * w) @ f.T, w @ f.square().T
            )
        )
    return torch.softmax(torch.cat(log_like, 1) + PRIOR.log_density(grid), 1) @ grid


@pytest.mark.parametrize("noise", [0.05, 0.2])
def test_posterior_mean_matches_quadrature(noise):
    gen = torch.Generator().manual_seed(3)
    theta = PRIOR.sample(4, gen)
    sigma = torch.full((4, X.numel()), noise, dtype=torch.float64)
    amplitude = torch.tensor([[3.0], [0.5], [10.0], [1.0]], dtype=torch.float64)
    y = amplitude * line_model(theta) + amplitude * sigma * torch.randn(
        sigma.shape, generator=gen, dtype=torch.float64
    )
    sigma = amplitude * sigma
    estimator = PosteriorMean(line_model, PRIOR, grid_shape=(12, 12, 12), n_samples=512)
    post = estimator(y, sigma, torch.Generator().manual_seed(0))
    exact = brute_force_mean(y, sigma)
    assert (post.ess > 50).all(), post.ess
    # Monte-Carlo error ~ std/sqrt(ESS); quadrature error ~ (1/72)²: agree well inside that.
    tol = 4 * post.std / post.ess.sqrt()[:, None] + 2e-3
    assert ((post.mean - exact).abs() < tol).all(), (post.mean, exact, tol)
    assert (post.std > 0).all()


def test_amplitude_marginal_is_scale_invariant():
    s_yy, s_yf, s_ff = torch.tensor(50.0), torch.tensor(20.0), torch.tensor(9.0)
    c = 7.0  # f → c f: S_yf → c S_yf, S_ff → c² S_ff
    a = amplitude_marginal_loglike(s_yy, s_yf, s_ff)
    b = amplitude_marginal_loglike(s_yy, c * s_yf, c**2 * s_ff)
    assert torch.allclose(a, b)
    assert amplitude_marginal_loglike(s_yy, -s_yf, s_ff) == -math.inf


def test_beta_fisher_information_matches_monte_carlo():
    d = Beta(1.0, 5.0, 3.5, 4.0)
    z = torch.distributions.Beta(3.5, 4.0).sample((400_000,)).double()
    score = (d.a - 1) / z - (d.b - 1) / (1 - z)
    assert d.fisher_information() == pytest.approx(
        float(score.square().mean()) / d.width**2, rel=0.03
    )
    assert Uniform(0, 1).fisher_information() == math.inf


def test_van_trees_bounds_the_bayes_risk_and_rejects_uniform_priors():
    prior = LabelPrior(
        {"depth": Beta(0, 1, 4, 4), "centre": Beta(0, 1, 4, 4), "width": Beta(0, 1, 4, 4)}
    )
    gen = torch.Generator().manual_seed(5)
    theta = prior.sample(64, gen)
    sigma = torch.full((64, X.numel()), 0.3, dtype=torch.float64)
    fisher = fisher_information(autograd_jacobian(line_model, theta), sigma)
    bound = van_trees_bound(fisher, prior.fisher_information(), 0)
    # Below the prior variance (data help), above zero; and below the average unbiased CRLB
    # capped at the prior variance.
    assert 0 < bound < prior.variance("depth")
    capped = marginal_crlb(fisher, 0).clamp_max(prior.variance("depth")).mean()
    assert bound <= capped
    # The Bayes-optimal estimator's MSE cannot beat it.
    y = line_model(theta) + sigma * torch.randn(sigma.shape, generator=gen, dtype=torch.float64)
    post = PosteriorMean(line_model, prior, grid_shape=(10, 10, 10), n_samples=256)(y, sigma, gen)
    mse = (post.mean[:, 0] - theta[:, 0]).square().mean()
    assert mse > 0.5 * bound  # 64 stars: loose, the bound is an expectation
    with pytest.raises(ValueError, match="finite Fisher information"):
        van_trees_bound(fisher, PRIOR.fisher_information(), 0)


def test_posterior_mean_bad_inputs():
    estimator = PosteriorMean(line_model, PRIOR, grid_shape=(4, 4, 4), n_samples=8, n_rounds=1)
    ok = torch.ones(2, X.numel(), dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        estimator(ok, 0 * ok)
    with pytest.raises(ValueError, match="pixels"):
        estimator(ok[:, :10], ok[:, :10])
    with pytest.raises(ValueError, match="both be"):
        estimator(ok, ok[:1])
    with pytest.raises(ValueError, match="grid_shape needs 3"):
        PosteriorMean(line_model, PRIOR, grid_shape=(4, 4))


def test_grid_posterior_is_the_exact_mean_where_wide_and_narrower_than_a_cell_where_not():
    gen = torch.Generator().manual_seed(4)
    theta = PRIOR.sample(6, gen)
    estimator = PosteriorMean(line_model, PRIOR, grid_shape=(24, 24, 24), n_samples=2)
    for noise, resolved in ((1.0, True), (0.002, False)):
        sigma = torch.full((6, X.numel()), noise, dtype=torch.float64)
        y = line_model(theta) + sigma * torch.randn(sigma.shape, generator=gen, dtype=torch.float64)
        grid = estimator.grid_posterior(y, sigma, chunk=4)
        if resolved:  # wide posteriors: the cell-centre sum is a quadrature of the exact mean
            exact = brute_force_mean(y, sigma)
            assert (grid.std > estimator.width).all()
            assert ((grid.mean - exact).abs() < 0.1 * grid.std).all(), (grid.mean, exact)
            assert (grid.ess > 10).all()
        else:  # sharp ones: the grid puts (nearly) all weight on one cell
            assert (grid.std < 0.5 * estimator.width).any()
            assert (grid.ess < 8).all()
    with pytest.raises(ValueError, match="must both be"):
        estimator.grid_posterior(y[0], sigma[0])


def test_a_prior_clips_labels_into_its_support():
    from specvit.bounds.prior import LabelPrior

    prior = LabelPrior.default()  # T_eff 3750–6000, log g 1–5, [M/H] −2.5–0.5
    labels = torch.tensor([[3000.0, 2.0, 1.0], [5000.0, 6.0, -3.0]], dtype=torch.float32)
    clipped = prior.clip(labels)
    assert clipped.dtype == torch.float32
    assert clipped.tolist() == [[3750.0, 2.0, 0.5], [5000.0, 5.0, -2.5]]
    assert torch.isfinite(prior.log_density(clipped.double())).all()
    with pytest.raises(ValueError, match="2 columns, the prior has 3"):
        prior.clip(labels[:, :2])
