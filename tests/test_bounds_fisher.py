"""Fisher information and marginal CRLB: closed form, Schur vs inverse, nuisances, bad input."""

import math

import pytest
import torch

from specvit.bounds import check_jacobian, fisher_information, marginal_crlb
from specvit.bounds.jacobian import autograd_jacobian

# One Gaussian absorption line, f = 1 − d(θ) exp(−x²/2w(θ)²), on a fine grid that covers ±20 w.
LAM0, STEP = 0.0, 0.05
LAM = torch.arange(-40.0, 40.0 + STEP / 2, STEP, dtype=torch.float64)
D0, W0 = 0.4, 1.2
A = torch.tensor([0.05, -0.02, 0.01], dtype=torch.float64)  # ∂d/∂θ
B = torch.tensor([0.10, 0.30, -0.05], dtype=torch.float64)  # ∂w/∂θ
SIGMA = 0.02


def gaussian_line(theta: torch.Tensor) -> torch.Tensor:
    d = D0 + theta @ A
    w = W0 + theta @ B
    x = LAM - LAM0
    return 1.0 - d[:, None] * torch.exp(-(x**2) / (2 * w[:, None] ** 2))


def analytic_fisher(theta: torch.Tensor) -> torch.Tensor:
    """Closed form from the Gaussian integrals ∫g² = √π w, ∫x²g² = √π w³/2, ∫x⁴g² = 3√π w⁵/4."""
    d = D0 + theta @ A
    w = W0 + theta @ B
    c = math.sqrt(math.pi) / (STEP * SIGMA**2)
    i_dd = c * w
    i_dw = c * d / 2
    i_ww = c * 3 * d**2 / (4 * w)
    dw = torch.stack([torch.stack([i_dd, i_dw], -1), torch.stack([i_dw, i_ww], -1)], -2)
    m = torch.stack([A, B])  # (2, P): ∂(d, w)/∂θ
    return m.T @ dw @ m


THETA = torch.tensor([[0.0, 0.0, 0.0], [1.0, -0.5, 2.0], [-2.0, 1.0, 0.5]], dtype=torch.float64)


def test_gaussian_line_matches_analytic_fisher():
    jac = autograd_jacobian(gaussian_line, THETA)
    fisher = fisher_information(jac, torch.full((LAM.numel(),), SIGMA, dtype=torch.float64))
    expected = analytic_fisher(THETA)
    rel = (fisher - expected).abs().max() / expected.abs().max()
    assert rel < 1e-6
    # One line has two degrees of freedom (d, w): two of the three parameters are identifiable.
    sub = [0, 1]
    crlb = marginal_crlb(fisher[:, sub][:, :, sub], 1)
    exact = torch.linalg.inv(expected[:, sub][:, :, sub])[:, 1, 1]
    assert torch.allclose(crlb, exact, rtol=1e-6)


def test_autograd_matches_central_differences_over_a_step_sweep():
    jac = autograd_jacobian(gaussian_line, THETA)
    check = check_jacobian(gaussian_line, THETA, jac, scales=1.0)
    assert (check.best < 1e-4).all(), check.errors
    # The sweep shows truncation error at large steps: the check can tell a wrong Jacobian.
    assert (check.errors[0] > 10 * check.best).all()
    wrong = check_jacobian(gaussian_line, THETA, jac * 1.001, scales=1.0)
    assert (wrong.best > 5e-4).all()


def _random_fisher(n: int, p: int, generator: torch.Generator) -> torch.Tensor:
    jac = torch.randn(n, 64, p, generator=generator, dtype=torch.float64)
    jac = jac * torch.logspace(-3, 3, p, dtype=torch.float64)  # parameters in very different units
    sigma = 0.5 + torch.rand(n, 64, generator=generator, dtype=torch.float64)
    return fisher_information(jac, sigma)


def _inverse_diagonal(fisher: torch.Tensor, g: int) -> torch.Tensor:
    """``[I⁻¹]_gg`` by inverting the whole (unit-diagonal scaled) matrix."""
    d = fisher.diagonal(dim1=-2, dim2=-1).sqrt()
    scaled = fisher / (d.unsqueeze(-1) * d.unsqueeze(-2))
    return torch.linalg.inv(scaled)[..., g, g] / d[..., g] ** 2


@pytest.mark.parametrize("p", [1, 2, 4, 6])
def test_schur_equals_full_inverse(p):
    fisher = _random_fisher(50, p, torch.Generator().manual_seed(p))
    for g in range(p):
        assert torch.allclose(
            marginal_crlb(fisher, g), _inverse_diagonal(fisher, g), rtol=1e-9, atol=0
        )


def test_more_nuisance_parameters_never_lower_the_crlb():
    fisher = _random_fisher(200, 5, torch.Generator().manual_seed(1))
    previous = None
    for p in range(1, 6):  # parameter 0 of interest, nuisances 1..p-1 added one by one
        crlb = marginal_crlb(fisher[:, :p, :p], 0)
        if previous is not None:
            assert (crlb >= previous * (1 - 1e-12)).all()
        previous = crlb


def test_amplitude_parameter_is_a_flux_column():
    flux = gaussian_line(THETA)
    jac = autograd_jacobian(gaussian_line, THETA)
    sigma = 0.01 + 0.02 * torch.rand(LAM.numel(), dtype=torch.float64)
    fisher = fisher_information(jac, sigma, flux=flux)
    assert fisher.shape == (3, 4, 4)
    # ∂(A f)/∂ln A at A = 1, by central differences in ln A, as an explicit fourth column.
    eps = 1e-6
    column = (math.exp(eps) - math.exp(-eps)) * flux / (2 * eps)
    explicit = fisher_information(torch.cat([jac, column.unsqueeze(-1)], -1), sigma)
    assert torch.allclose(fisher, explicit, rtol=1e-9)
    with pytest.raises(ValueError, match="flux shape"):
        fisher_information(jac, sigma, flux=flux[:, :10])


def test_masked_pixels_carry_no_information():
    jac = torch.randn(2, 10, 2, dtype=torch.float64)
    sigma = torch.ones(10, dtype=torch.float64)
    sigma_masked = sigma.clone()
    sigma_masked[5:] = torch.inf
    assert torch.allclose(
        fisher_information(jac, sigma_masked), fisher_information(jac[:, :5], sigma[:5])
    )


def test_unidentifiable_parameter_has_infinite_crlb():
    jac = torch.zeros(1, 10, 2, dtype=torch.float64)
    jac[..., 0] = 1.0
    assert torch.isinf(marginal_crlb(fisher_information(jac, torch.ones(10)), 1)).all()


@pytest.mark.parametrize(
    ("jac", "sigma", "message"),
    [
        (torch.ones(3, 10, 2), torch.zeros(10), "sigma must be > 0"),
        (torch.ones(3, 10, 2), -torch.ones(10), "sigma must be > 0"),
        (torch.ones(3, 10, 2), torch.full((10,), math.nan), "NaN"),
        (torch.ones(3, 10, 2), torch.ones(11), "11 pixels but the jacobian has 10"),
        (torch.ones(3, 10, 2), torch.ones(4, 10), "does not broadcast"),
        (torch.ones(10), torch.ones(10), r"shape \(\.\.\., L, P\)"),
    ],
)
def test_bad_inputs_are_clear_errors(jac, sigma, message):
    with pytest.raises(ValueError, match=message):
        fisher_information(jac, sigma)


def test_bad_index_and_shapes():
    fisher = torch.eye(3).expand(2, 3, 3)
    with pytest.raises(ValueError, match="out of range"):
        marginal_crlb(fisher, 3)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., P, P\)"):
        marginal_crlb(torch.ones(2, 3), 0)


def test_equilibrate_gives_unit_diagonal_and_undoes_exactly():
    """The public scaling the CRLB, van Trees and the posterior's regression share."""
    from specvit.bounds.fisher import equilibrate

    g = torch.Generator().manual_seed(3)
    root = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    units = torch.tensor([1e3, 1.0, 1e-2], dtype=torch.float64)  # K, dex, ... span decades
    fisher = (root * units).mT @ (root * units)
    scaled, d = equilibrate(fisher)
    torch.testing.assert_close(scaled.diagonal(dim1=-2, dim2=-1), torch.ones(4, 3).double())
    torch.testing.assert_close(d, fisher.diagonal(dim1=-2, dim2=-1).sqrt())
    torch.testing.assert_close(scaled * d.unsqueeze(-1) * d.unsqueeze(-2), fisher)
    with pytest.raises(ValueError, match=r"\(\.\.\., P, P\)"):
        equilibrate(torch.ones(3, 2))
