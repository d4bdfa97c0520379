"""The multiplicative continuum as a nuisance: one Legendre basis, its Fisher columns, an
independent numpy check of the ceilings, nested nuisances, the table and the command."""

import itertools

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from numpy.polynomial import legendre

from specvit.bounds import (
    Beta,
    LabelPrior,
    ceiling_table,
    continuum_parameters,
    crlb_ceilings,
    fisher_information,
)
from specvit.bounds.cli import main
from specvit.continuum import legendre_basis
from specvit.emulator import Emulator


@pytest.fixture(scope="module")
def emulator():
    return Emulator.load(dtype=torch.float64)


def _numpy_legendre(num_pixels: int, order: int) -> np.ndarray:
    """``(order, L)`` P_1 … P_order from numpy's own Legendre series, on x = −1 … +1."""
    x = np.linspace(-1.0, 1.0, num_pixels)
    return np.stack([legendre.legval(x, np.eye(order + 1)[k]) for k in range(1, order + 1)])


def _error_spectrum(num_pixels: int, level: float) -> torch.Tensor:
    """σ in units of the median flux: ``level`` with a slow and a fast ripple (not flat)."""
    x = np.linspace(0.0, 1.0, num_pixels)
    ripple = 1.0 + 0.4 * np.sin(2 * np.pi * 1.3 * x) + 0.1 * np.cos(2 * np.pi * 40 * x)
    return torch.from_numpy(level * ripple)


# ------------------------------------------------------------------ one basis
def test_the_engine_takes_the_basis_from_the_library():
    """One home: the data engine's flux-calibration effect uses specvit.continuum's basis."""
    effects = pytest.importorskip("training.engine.effects")
    assert effects.legendre_basis is legendre_basis
    calibration = effects.FluxCalibration(order=4)
    params = calibration.sample(3, torch.Generator().manual_seed(0))
    factor = calibration.factor(params, 300)
    expected = 1.0 + params["calib_coeffs"].numpy() @ _numpy_legendre(300, 4)
    np.testing.assert_allclose(factor.numpy(), expected, rtol=0, atol=1e-13)


# ------------------------------------------------------------------ the Fisher columns
def test_continuum_columns_are_the_flux_times_each_legendre_polynomial():
    gen = torch.Generator().manual_seed(3)
    jac = torch.randn(4, 50, 3, generator=gen, dtype=torch.float64)
    flux = 1.0 + 0.1 * torch.rand(4, 50, generator=gen, dtype=torch.float64)
    sigma = 0.05 + 0.05 * torch.rand(50, generator=gen, dtype=torch.float64)
    fisher = fisher_information(jac, sigma, flux=flux, continuum_order=3)
    assert fisher.shape == (4, 7, 7)
    # ∂/∂c_k of flux · (1 + Σ c_k P_k) at c = 0, with numpy's polynomials, as explicit columns.
    poly = torch.from_numpy(_numpy_legendre(50, 3))
    columns = torch.cat([flux.unsqueeze(-1), flux.unsqueeze(-1) * poly.T], -1)
    explicit = fisher_information(torch.cat([jac, columns], -1), sigma)
    torch.testing.assert_close(fisher, explicit, rtol=1e-12, atol=0)
    # Order 0 is the amplitude alone, bit for bit.
    assert torch.equal(
        fisher_information(jac, sigma, flux=flux, continuum_order=0),
        fisher_information(jac, sigma, flux=flux),
    )
    assert continuum_parameters(3) == ("c_1", "c_2", "c_3")
    assert continuum_parameters(0) == ()


@pytest.mark.parametrize("order", [-1, 1.5, True, "3"])
def test_bad_continuum_orders_are_clear_errors(order):
    jac, sigma, flux = torch.ones(1, 5, 2), torch.ones(5), torch.ones(1, 5)
    with pytest.raises(ValueError, match="continuum_order must be an integer >= 0"):
        fisher_information(jac, sigma, flux=flux, continuum_order=order)
    with pytest.raises(ValueError, match="continuum_order must be an integer >= 0"):
        continuum_parameters(order)


def test_the_continuum_needs_the_flux():
    with pytest.raises(ValueError, match="continuum_order needs the model flux"):
        fisher_information(torch.ones(1, 5, 2), torch.ones(5), continuum_order=2)


# ------------------------------------------------------------------ the ceilings
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("order", [3, 5])
def test_ceilings_match_an_independent_numpy_fisher_inverse(emulator, order, dtype):
    """Finite differences of the emulator flux in the labels, of A·flux in ln A and of the
    explicitly multiplied polynomial in c_k, a numpy Fisher matrix and its numpy inverse,
    against the ceilings with the float64 emulator and with the default float32 one (agreement
    < 1e-6 when written)."""
    bounded = emulator if dtype == torch.float64 else Emulator.load(dtype=dtype)
    labels = torch.tensor(
        [[3900.0, 1.5, -2.0], [4700.0, 2.8, -0.7], [5400.0, 4.2, 0.1], [5900.0, 4.8, -1.4]],
        dtype=torch.float64,
    )
    n_pix = emulator(labels[:1]).shape[-1]
    error = _error_spectrum(n_pix, 0.15)
    # T_eff in kK so that the numpy inverse needs no equilibration (it is checked, not trusted).
    steps = np.array([2.0, 2e-3, 2e-3])  # K, dex, dex
    unit = np.array([1000.0, 1.0, 1.0])  # label unit per parameter unit
    poly = _numpy_legendre(n_pix, order)
    for star, theta in enumerate(labels.numpy()):
        flux = emulator(torch.from_numpy(theta[None])).numpy()[0]
        columns = []
        for i in range(3):
            step = np.zeros(3)
            step[i] = steps[i]
            up = emulator(torch.from_numpy((theta + step)[None])).numpy()[0]
            down = emulator(torch.from_numpy((theta - step)[None])).numpy()[0]
            columns.append((up - down) / (2 * steps[i]) * unit[i])

        def observed(ln_a: float, c: np.ndarray, flux: np.ndarray = flux) -> np.ndarray:
            return np.exp(ln_a) * flux * (1.0 + c @ poly)

        eps = 1e-4
        columns.append(
            (observed(eps, np.zeros(order)) - observed(-eps, np.zeros(order))) / (2 * eps)
        )
        for k in range(order):
            c = np.zeros(order)
            c[k] = eps
            columns.append((observed(0.0, c) - observed(0.0, -c)) / (2 * eps))
        jac = np.stack(columns, -1)
        sigma = error.numpy() * np.sort(flux)[(n_pix - 1) // 2]  # × the lower median flux
        cov = np.linalg.inv(jac.T @ (jac / sigma[:, None] ** 2))
        for target, i in (("T_eff", 0), ("log_g", 1)):
            c = crlb_ceilings(
                labels[star : star + 1],
                error=error,
                target=target,
                continuum_order=order,
                emulator=bounded,
            )
            assert c.parameters[-order - 1 :] == ("ln_A", *continuum_parameters(order))
            expected = np.sqrt(cov[i, i]) * unit[i]
            assert float(c.sigma_min[0]) == pytest.approx(expected, rel=1e-5), (target, star)


def test_more_nuisance_never_lowers_sigma_and_the_matrices_nest(emulator):
    labels = LabelPrior.default().sample(40, torch.Generator().manual_seed(4))
    error = _error_spectrum(emulator(labels[:1]).shape[-1], 0.2)

    def ceilings(**kwargs):
        return crlb_ceilings(labels, error=error, emulator=emulator, **kwargs)

    for target in ("log_g", "T_eff", "M_H"):
        # known scale and shape → shape of order K known → order K + 1 → ...
        steps = [ceilings(target=target, nuisance=())]
        steps.append(ceilings(target=target))
        steps += [ceilings(target=target, continuum_order=k) for k in range(1, 7)]
        for before, after in itertools.pairwise(steps):
            assert (after.crlb >= before.crlb * (1 - 1e-9)).all(), target
            # The smaller model's Fisher matrix is the leading block of the larger one's.
            p = before.fisher.shape[-1]
            if before.parameters[1:]:
                assert after.parameters[:p] == before.parameters
                torch.testing.assert_close(after.fisher[:, :p, :p], before.fisher)
        # The continuum costs information: order 5 is strictly worse than none for most stars.
        assert float((steps[-2].crlb > 1.01 * steps[1].crlb).float().mean()) > 0.9


def test_the_continuum_without_the_amplitude_drops_its_row(emulator):
    labels = LabelPrior.default().sample(10, torch.Generator().manual_seed(5))
    error = _error_spectrum(emulator(labels[:1]).shape[-1], 0.2)
    full = crlb_ceilings(labels, error=error, continuum_order=2, emulator=emulator)
    known_scale = crlb_ceilings(
        labels, error=error, nuisance=("T_eff", "M_H"), continuum_order=2, emulator=emulator
    )
    assert full.parameters == ("log_g", "T_eff", "M_H", "ln_A", "c_1", "c_2")
    assert known_scale.parameters == ("log_g", "T_eff", "M_H", "c_1", "c_2")
    keep = [0, 1, 2, 4, 5]
    torch.testing.assert_close(known_scale.fisher, full.fisher[:, keep][:, :, keep])
    assert (known_scale.crlb <= full.crlb * (1 + 1e-9)).all()
    assert known_scale.continuum_order == 2
    assert full.subset(torch.arange(10) < 4).continuum_order == 2


def test_van_trees_asks_for_the_continuums_prior_information(emulator):
    smooth = LabelPrior(
        {"T_eff": Beta(3750, 6000, 3, 3), "log_g": Beta(1, 5, 3, 3), "M_H": Beta(-2.5, 0.5, 3, 3)}
    )
    labels = smooth.sample(20, torch.Generator().manual_seed(6))
    error = _error_spectrum(emulator(labels[:1]).shape[-1], 0.2)
    c = crlb_ceilings(
        labels,
        error=error,
        prior=smooth,
        nuisance=("T_eff", "M_H"),
        continuum_order=2,
        emulator=emulator,
    )
    with pytest.raises(ValueError, match="continuum_fisher"):
        c.van_trees_r2(smooth)
    loose, tight = (
        c.van_trees_r2(smooth, continuum_fisher=1.0),
        c.van_trees_r2(smooth, continuum_fisher=1e8),
    )
    assert c.population_r2_max <= loose < tight < 1  # a tighter continuum prior helps
    # A continuum known to ±1e-4 is as good as a known one.
    known = crlb_ceilings(
        labels, error=error, prior=smooth, nuisance=("T_eff", "M_H"), emulator=emulator
    )
    assert tight == pytest.approx(known.van_trees_r2(smooth), abs=1e-4)


@pytest.mark.parametrize("order", [-1, 2.0])
def test_bad_orders_are_refused_before_any_work(order):
    # object() as emulator and noise model: any work on the spectra would fail otherwise
    with pytest.raises(ValueError, match="continuum_order must be an integer >= 0"):
        crlb_ceilings(mag=21.0, continuum_order=order, emulator=object(), noise_model=object())
    with pytest.raises(ValueError, match="continuum_order must be an integer >= 0"):
        ceiling_table(snrs=[5.0], continuum_order=order, emulator=object(), noise_model=object())


# ------------------------------------------------------------------ the command
def _run(*args: str):
    result = CliRunner().invoke(main, ["--n-stars", "30", "--snr", "5", "--mag", "21", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_cli_continuum_order_marginalises_the_continuum():
    plain, zero, five = _run(), _run("--continuum-order", "0"), _run("--continuum-order", "5")
    assert zero == plain  # 0 is today's behaviour, bit for bit
    assert "nuisance T_eff, M_H, ln_A;" in plain[0]
    assert "nuisance T_eff, M_H, ln_A, c_1, c_2, c_3, c_4, c_5 (continuum order 5);" in five[0]
    # Same rows (magnitudes, SNRs), lower ceilings.
    for row_plain, row_five in zip(plain[3:], five[3:], strict=True):
        a, b = row_plain.strip("| ").split(" | "), row_five.strip("| ").split(" | ")
        assert a[:2] == b[:2]
        assert float(b[3]) < float(a[3]) and float(b[4]) > float(a[4])


def test_cli_refuses_a_negative_continuum_order(monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the table was computed before the options were checked")

    monkeypatch.setattr("specvit.bounds.cli.ceiling_table", no_work)
    result = CliRunner().invoke(main, ["--n-stars", "20", "--continuum-order", "-2"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--continuum-order'" in result.output
    assert "continuum_order must be an integer >= 0, got -2" in result.output
