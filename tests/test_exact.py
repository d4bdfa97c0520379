"""Exact posteriors (specvit.inference.exact): importance sampling from the network's answer."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from specvit.bounds.prior import LabelPrior, Uniform
from specvit.inference.exact import ImportancePosterior

PIXELS = np.linspace(-4.0, 4.0, 64)


def line_model(theta: torch.Tensor) -> torch.Tensor:
    """A continuum of 1 with an absorption line centred at label 0 and depth label 1."""
    x = torch.as_tensor(PIXELS, dtype=theta.dtype)
    return 1.0 - theta[:, 1:2] * torch.exp(-0.5 * (x - theta[:, 0:1]).square() / 0.3**2)


PRIOR = LabelPrior({"centre": Uniform(-2.0, 2.0), "depth": Uniform(0.1, 0.9)})


def observed(seed: int = 1, sigma: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    truth = torch.tensor([[0.4, 0.5]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    clean = 3.0 * line_model(truth)  # an amplitude the posterior is not told
    flux = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    return flux, torch.full_like(flux, sigma)


def quadrature_posterior(flux: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and σ by brute force on a fine grid: for every grid point the amplitude is fitted
    by least squares and integrated out as a Gaussian around it, with a 1/A prior."""
    centres, depths = np.linspace(-2, 2, 801), np.linspace(0.1, 0.9, 321)
    c, d = np.meshgrid(centres, depths, indexing="ij")
    theta = torch.as_tensor(np.stack([c.ravel(), d.ravel()], 1))
    f = line_model(theta).numpy() / sigma  # whitened template per grid point
    y = flux / sigma
    amp = f @ y / np.einsum("gl,gl->g", f, f)
    chi2 = ((y[None] - amp[:, None] * f) ** 2).sum(1)
    log_post = -0.5 * chi2 - 0.5 * np.log(np.einsum("gl,gl->g", f, f)) - np.log(amp)
    p = np.exp(log_post - log_post.max())
    p /= p.sum()
    mean = p @ theta.numpy()
    std = np.sqrt(p @ (theta.numpy() - mean) ** 2)
    return mean, std


def test_matches_a_posterior_known_by_quadrature():
    flux, sigma = observed()
    mean, std = quadrature_posterior(flux[0].numpy(), sigma[0].numpy())
    # a network that is off by a σ and overconfident by 2: the weights must correct it
    proposal_mean = torch.as_tensor(mean + std)[None]
    proposal_std = torch.as_tensor(std / 2)[None]
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=20_000)
    post = sampler(flux, sigma, proposal_mean, proposal_std, torch.Generator().manual_seed(0))
    assert post.ess.item() > 1000
    np.testing.assert_allclose(post.mean[0].numpy(), mean, atol=0.05 * std.max())
    np.testing.assert_allclose(post.std[0].numpy(), std, rtol=0.05)


def test_later_rounds_recover_from_a_poor_proposal():
    flux, sigma = observed()
    mean, std = quadrature_posterior(flux[0].numpy(), sigma[0].numpy())
    off = (torch.as_tensor(mean + 3 * std)[None], torch.as_tensor(std / 3)[None])
    ess = {}
    for rounds in (1, 3):
        sampler = ImportancePosterior(line_model, PRIOR, n_samples=512, rounds=rounds, retries=0)
        post = sampler(flux, sigma, *off, torch.Generator().manual_seed(0))
        ess[rounds] = post.ess.item()
        if rounds == 3:
            np.testing.assert_allclose(post.mean[0].numpy(), mean, atol=0.2 * std.max())
    assert ess[3] > 5 * ess[1]


def test_a_low_ess_spectrum_is_sampled_again_about_its_posterior():
    """One round from a poor proposal leaves the ESS below min_ess; the retry, centred on the
    posterior found so far, lifts it and moves the answer onto the quadrature posterior."""
    flux, sigma = observed()
    mean, std = quadrature_posterior(flux[0].numpy(), sigma[0].numpy())
    off = (torch.as_tensor(mean + 3 * std)[None], torch.as_tensor(std / 3)[None])
    posts = {}
    for retries in (0, 1):
        sampler = ImportancePosterior(
            line_model, PRIOR, n_samples=128, rounds=1, retries=retries, min_ess=20.0
        )
        posts[retries] = sampler(flux, sigma, *off, torch.Generator().manual_seed(0))
    assert posts[0].ess.item() < 20.0 < posts[1].ess.item(), (posts[0].ess, posts[1].ess)
    np.testing.assert_allclose(posts[1].mean[0].numpy(), mean, atol=0.2 * std.max())


def test_is_reproducible_by_seed():
    flux, sigma = observed()
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=64)
    args = (flux, sigma, torch.tensor([[0.4, 0.5]]), torch.tensor([[0.1, 0.1]]))
    a = sampler(*args, torch.Generator().manual_seed(3), return_samples=True)
    b = sampler(*args, torch.Generator().manual_seed(3), return_samples=True)
    c = sampler(*args, torch.Generator().manual_seed(4))
    assert torch.equal(a.mean, b.mean) and torch.equal(a.samples, b.samples)
    assert not torch.equal(a.mean, c.mean)
    assert a.samples.shape == (1, 64, 2) and a.log_weights.shape == (1, 64)
    assert math.isclose(a.log_weights.exp().sum().item(), 1.0, rel_tol=1e-9)


def test_the_sigma_holds_the_sampling_error_of_the_mean():
    """σ² and the covariance are the weighted samples' (unbiased for reliability weights) times
    1 + 1/ESS: the posterior's spread plus the variance of a mean of ESS effective samples."""
    flux, sigma = observed()
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=48)
    args = (flux, sigma, torch.tensor([[0.4, 0.5]]), torch.tensor([[0.1, 0.1]]))
    post = sampler(*args, torch.Generator().manual_seed(3), return_samples=True)
    w = post.log_weights.exp()[0]
    centred = post.samples[0] - (w[:, None] * post.samples[0]).sum(0)
    spread = (w[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    sum_w2 = w.square().sum()
    assert math.isclose(1.0 / sum_w2.item(), post.ess.item(), rel_tol=1e-9)
    expected = spread / (1.0 - sum_w2) * (1.0 + 1.0 / post.ess[0])
    torch.testing.assert_close(post.cov[0], expected, rtol=1e-9, atol=0.0)
    torch.testing.assert_close(post.std[0], expected.diagonal().sqrt(), rtol=1e-9, atol=0.0)


def test_a_proposal_outside_the_prior_gives_zero_weight_not_nan():
    flux, sigma = observed()
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=2048, min_ess=5)
    means = torch.tensor([[40.0, 0.5], [0.4, 0.5]])  # wholly, then partly outside the prior
    stds = torch.tensor([[0.01, 0.01], [0.05, 0.4]])
    post = sampler(flux.expand(2, -1), sigma.expand(2, -1), means, stds, return_samples=True)
    assert post.ess[0] == 0 and torch.isnan(post.mean[0]).all()
    assert sampler.low_ess(post).tolist() == [True, False]
    outside = (post.samples[1, :, 1] < 0.1) | (post.samples[1, :, 1] > 0.9)
    assert outside.sum() > 100 and torch.isneginf(post.log_weights[1, outside]).all()
    assert torch.isfinite(post.mean[1]).all() and torch.isfinite(post.cov[1]).all()


def test_masked_pixels_are_left_out():
    flux, sigma = observed()
    spoiled, masked = flux.clone(), sigma.clone()
    spoiled[0, 10:20] = 1e6  # a cosmic ray masked by an infinite σ,
    masked[0, 10:20] = math.inf
    spoiled[0, 30:33] = math.nan  # no data,
    masked[0, 40:42] = math.nan  # no error
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=128)
    args = (torch.tensor([[0.4, 0.5]]), torch.tensor([[0.1, 0.1]]))
    a = sampler(spoiled, masked, *args, torch.Generator().manual_seed(0))
    kept = torch.ones(64, dtype=torch.bool)
    kept[10:20] = kept[30:33] = kept[40:42] = False
    # the same samples, weighted on the same pixels
    cut = ImportancePosterior(lambda t: line_model(t)[:, kept], PRIOR, n_samples=128)
    b = cut(flux[:, kept], sigma[:, kept], *args, torch.Generator().manual_seed(0))
    assert torch.allclose(a.mean, b.mean, rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 1}, "n_samples must be an integer ≥ 2"),
        ({"n_samples": 0}, "n_samples must be an integer ≥ 2"),
        ({"nu": math.nan}, "nu must be a finite number > 0"),
        ({"inflate": -1.0}, "inflate must be a finite number > 0"),
        ({"refit_inflate": 0.0}, "refit_inflate must be a finite number > 0"),
        ({"min_ess": -1.0}, "min_ess must be a finite number ≥ 0"),
        ({"chunk": 0}, "chunk must be an integer ≥ 1"),
        ({"rounds": 0}, r"rounds must be an integer in \[1, n_samples\]"),
        ({"n_samples": 8, "rounds": 9}, r"rounds must be an integer in \[1, n_samples\]"),
        ({"retries": -1}, "retries must be an integer ≥ 0"),
        ({"retries": 1.5}, "retries must be an integer ≥ 0"),
        ({"continuum_order": -1}, "continuum_order"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImportancePosterior(line_model, PRIOR, **kwargs)


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        ([[math.nan, 0.5]], [[0.1, 0.1]], "must be finite, and σ > 0"),
        ([[0.4, 0.5]], [[0.0, 0.1]], "must be finite, and σ > 0"),
        ([[0.4, 0.5]], [[math.inf, 0.1]], "must be finite, and σ > 0"),
        ([[0.4, 0.5, 1.0]], [[0.1, 0.1, 0.1]], r"must both be \(N, 2\)"),
    ],
)
def test_bad_proposals_are_refused(mean, std, message):
    flux, sigma = observed()
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=8)
    with pytest.raises(ValueError, match=message):
        sampler(flux, sigma, torch.tensor(mean), torch.tensor(std))


def test_bad_background_terms_are_refused():
    flux, sigma = observed()
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=8)
    mean, std = torch.tensor([[0.4, 0.5]]), torch.tensor([[0.1, 0.1]])
    length = flux.shape[-1]
    for background in (torch.ones(1, length), torch.ones(2, 1, length), torch.ones(1, 1, 3)):
        with pytest.raises(ValueError, match=r"background must be \(N, J, L\)"):
            sampler(flux, sigma, mean, std, background=background)
    bad = torch.ones(1, 2, length)
    bad[0, 1, 5] = math.inf
    with pytest.raises(ValueError, match="background terms must be finite"):
        sampler(flux, sigma, mean, std, background=bad)
    ok = sampler(flux, sigma, mean, std, background=torch.ones(1, 1, length))
    assert torch.isfinite(ok.mean).all()


def test_one_generator_per_spectrum_or_one_for_all():
    flux, sigma = observed()
    sampler = ImportancePosterior(line_model, PRIOR, n_samples=8)
    mean, std = torch.tensor([[0.4, 0.5]]), torch.tensor([[0.1, 0.1]])
    two = [torch.Generator().manual_seed(k) for k in range(2)]
    with pytest.raises(ValueError, match="2 generators for 1 spectra"):
        sampler(flux, sigma, mean, std, two)
    one = sampler(flux, sigma, mean, std, two[:1])
    again = sampler(flux, sigma, mean, std, [torch.Generator().manual_seed(0)])
    np.testing.assert_array_equal(one.mean.numpy(), again.mean.numpy())


def _direct_loglike(y, w, f, basis, background=None):
    """The continuum-marginalised log likelihood of ``whitened_loglike``, sample by sample in
    float64 with numpy's least squares: −χ²/2 − ln det(GᵀWG)/2 − (K + 1) ln β̂_0; with
    ``background`` terms B fitted beside G (ln det(BᵀWB)/2 taken off)."""
    y, w, f, basis = (t.to(torch.float64).numpy() for t in (y[0], w[0], f[0], basis))
    sw = np.sqrt(w)
    b = np.zeros((0, y.size)) if background is None else background.numpy() * sw
    out = []
    for spectrum in f:
        g = np.concatenate([basis * spectrum * sw, b]).T  # (L, K+1+J)
        beta, *_ = np.linalg.lstsq(g, y * sw, rcond=None)
        chi2 = np.sum((y * sw - g @ beta) ** 2)
        log_det = np.linalg.slogdet(g.T @ g)[1] - np.linalg.slogdet(b @ b.T)[1]
        amplitude = -np.inf if beta[0] <= 0 else -len(basis) * np.log(beta[0])
        out.append(-0.5 * chi2 - 0.5 * log_det + amplitude)
    return torch.tensor(out)[None]


def _star_and_samples(snr, *, tilt, background, seed):
    """An emulator star at S/N ``snr`` (times a smooth calibration-like tilt, plus a sky-like
    additive term, lines, and its derivative at 20 % of a line, if asked) and 256 labels about
    it: ``truth``, ``y``, ``w``, ``theta`` (1, 256, 3) and the additive ``terms`` (or None)."""
    from specvit.continuum import legendre_basis
    from specvit.emulator import Emulator

    emulator = Emulator.load()
    gen = torch.Generator().manual_seed(seed)
    truth = torch.tensor([[4800.0, 2.5, -1.2]])
    x = torch.linspace(-1.0, 1.0, emulator.num_pixels, dtype=torch.float64)
    shape = 1.0 + 0.2 * x + 0.1 * legendre_basis(x, 2)[-1] if tilt else torch.ones_like(x)
    clean = 7.0 * shape * emulator(truth).to(torch.float64)
    terms = None
    if background:
        pixel = torch.arange(x.numel(), dtype=torch.float64)
        sky = 10.0 * torch.exp(-0.5 * ((pixel % 97 - 48.0) / 1.5) ** 2)
        terms = torch.stack([sky, torch.gradient(sky)[0]])
        clean = clean + 0.2 * sky
    sigma = clean.median() / snr * torch.ones_like(clean)
    y = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    scale = torch.tensor([150.0, 0.4, 0.3]) * (10.0 / snr)
    theta = truth + scale * torch.randn(1, 256, 3, generator=gen)
    theta = torch.clamp(theta, torch.tensor([3500.0, 0.0, -2.5]), torch.tensor([8000.0, 5.0, 0.5]))
    return truth, y, sigma.reciprocal().square(), theta, terms


@pytest.mark.parametrize(("order", "background"), [(0, False), (5, False), (5, True)])
@pytest.mark.parametrize("snr", [3.0, 40.0, 200.0])
def test_the_float32_likelihood_about_a_reference_matches_the_direct_float64_form(
    snr, order, background
):
    from specvit.bounds.bayes import amplitude_marginal_loglike
    from specvit.emulator import Emulator
    from specvit.inference.likelihood import continuum_basis, whitened_loglike

    emulator = Emulator.load()
    truth, y, w, theta, terms = _star_and_samples(
        snr,
        tilt=order > 0,
        background=background,
        seed=0,  # a calibration error for order 5
    )
    basis = continuum_basis(emulator.num_pixels, order)
    basis = torch.ones(1, emulator.num_pixels, dtype=torch.float64) if basis is None else basis
    f32 = emulator(theta)  # (1, 256, L) float32, as the sampler evaluates it
    f0 = emulator(truth).to(torch.float64)
    exact = _direct_loglike(y, w, f32, basis, terms)
    if order == 0:  # the amplitude alone: bounds.bayes's form
        amplitude = amplitude_marginal_loglike(
            (y.square() * w).sum(-1, keepdim=True),
            (f32.to(torch.float64) @ (y * w).unsqueeze(-1)).squeeze(-1),
            (f32.to(torch.float64).square() @ w.unsqueeze(-1)).squeeze(-1),
        )
        np.testing.assert_allclose(amplitude - amplitude.max(), exact - exact.max(), atol=1e-6)
    fast = whitened_loglike(y, w, f32, f0, basis if order else None, terms)
    below = exact.max() - exact
    near = below < 20  # the samples that can carry weight
    assert near.sum() > 100 and below.max() > 50  # their likelihoods differ: a real test
    # within 0.01 in ln L where it matters (float32 sums taken directly are off by 0.03 at S/N 3,
    # 6 at S/N 40 and 100 at S/N 200), and no sample far below comes back up; with a 5th-order
    # continuum, and with a sky-like background beside it, within 0.1 (measured 0.028 and 0.052,
    # at S/N 3: a far sample's float32 difference spectrum is no longer small)
    atol = 1e-2 if order == 0 else 0.1
    np.testing.assert_allclose(fast[near].numpy(), exact[near].numpy(), rtol=0, atol=atol)
    assert (fast[~near] < exact.max() - 19).all()


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("snr", [3.0, 40.0, 200.0])
def test_the_likelihood_linear_in_the_design_matches_the_direct_float64_form(snr, background):
    """LinearLikelihood (the emulator's normalised flux times a held continuum, a 5th-order
    continuum and a sky-like background marginalised) against numpy's least squares, sample by
    sample, for the same model fluxes."""
    from specvit.emulator import Emulator
    from specvit.inference.likelihood import LinearLikelihood, continuum_basis

    emulator = Emulator.load()
    length = emulator.num_pixels
    truth, y, w, theta, terms = _star_and_samples(snr, tilt=True, background=background, seed=1)
    held = emulator.continuum(truth).double()
    design = emulator.design(theta).double()
    flux = (design @ emulator.normalised_weights.double()) * held[:, None]
    exact = _direct_loglike(y, w, flux, continuum_basis(length, 5), terms)
    fast = LinearLikelihood(
        y, w, emulator.normalised_weights, held, 5, None if terms is None else terms[None]
    ).loglike(design)
    below = exact.max() - exact
    near = below < 20
    assert near.sum() > 100 and below.max() > 50  # their likelihoods differ: a real test
    # measured ≤ 1e-6 at S/N 200 (the float64 sums cancel to |z|² ≈ 2e8 there)
    np.testing.assert_allclose(fast[near].numpy(), exact[near].numpy(), rtol=0, atol=1e-5)
    assert (fast[~near] < exact.max() - 19).all()
    # an amplitude ≤ 0 is -inf, as whitened_loglike's
    flipped = LinearLikelihood(-y, w, emulator.normalised_weights, held, 5)
    assert torch.isinf(flipped.loglike(design)).all()


@pytest.mark.parametrize("snr", [3.0, 200.0])
def test_best_fit_chi2_is_the_least_squares_fits(snr):
    """best_fit_chi2 (the LSF choice of exact mode) against numpy's least squares, for six
    model fluxes, a 5th-order continuum and additive terms of unlike units, one of them zero
    and one repeated."""
    from specvit.emulator import Emulator
    from specvit.inference.likelihood import best_fit_chi2, continuum_basis

    emulator = Emulator.load()
    length = emulator.num_pixels
    truth, y, w, theta, terms = _star_and_samples(snr, tilt=True, background=True, seed=2)
    band = torch.zeros(length, dtype=torch.float64)
    band[1000:1300] = 1e6 * emulator(truth)[0, 1000:1300].double()  # a telluric-like term
    terms = torch.cat([terms, band[None], torch.zeros(1, length), terms[:1]])  # (5, L)
    models = emulator(theta[0, :6]).double()[None]  # (1, 6, L)
    basis = continuum_basis(length, 5)
    fast = best_fit_chi2(y, w, models, basis, terms)
    sw = np.sqrt(w[0].numpy())
    direct = []
    for flux in models[0].numpy():
        g = np.concatenate([basis.numpy() * flux, terms.numpy()]).T * sw[:, None]
        beta, *_ = np.linalg.lstsq(g, y[0].numpy() * sw, rcond=None)
        direct.append(np.sum((y[0].numpy() * sw - g @ beta) ** 2))
    assert np.ptp(direct) > 10  # the models fit differently: a real test
    np.testing.assert_allclose(fast[0].numpy(), direct, rtol=1e-8, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        {"y": torch.ones(8)},  # not (n, L)
        {"w": torch.ones(2, 7)},
        {"models": torch.ones(2, 8)},  # no R axis
        {"models": torch.ones(3, 4, 8)},  # another n
        {"basis": torch.ones(3, 7)},
        {"background": torch.ones(2, 7)},
        {"background": torch.ones(3, 2, 8)},  # another n
    ],
)
def test_best_fit_chi2_refuses_shapes_that_disagree(bad):
    from specvit.inference.likelihood import best_fit_chi2

    args = {
        "y": torch.ones(2, 8, dtype=torch.float64),
        "w": torch.ones(2, 8, dtype=torch.float64),
        "models": torch.ones(2, 4, 8),
        "basis": torch.ones(3, 8),
        "background": torch.ones(2, 8),
    }
    best_fit_chi2(**args)  # the shapes it takes
    with pytest.raises(ValueError, match="best_fit_chi2 takes"):
        best_fit_chi2(**{**args, **bad})


def test_the_held_continuum_posterior_is_the_full_emulators(etc_dir):
    """With a continuum polynomial marginalised, exact mode holds the emulator's continuum at
    the proposal's centre (its change between samples is smooth: the polynomial takes it) and
    samples the normalised flux alone; the posterior is the one the full emulator's fluxes give,
    to a small fraction of its σ, at S/N ≈ 3 and ≈ 15."""
    from specvit.emulator import Emulator
    from specvit.instrument import PFSNoiseModel
    from training.engine.simulate import Prior, Simulator

    emulator = Emulator.load()
    noise = PFSNoiseModel.from_etc(etc_dir)
    shifts, ratios = [], []
    for mag in (22.0, 20.0):
        batch = Simulator(noise=noise, prior=Prior(mag=(mag, mag + 0.2))).sample(
            12, torch.Generator().manual_seed(3)
        )
        mean = batch["labels"].double() + 0.5 * torch.tensor([120.0, 0.3, 0.15])
        std = torch.tensor([[240.0, 0.6, 0.3]]).expand(12, 3)
        posts = []
        for model in (emulator, lambda t: emulator(t)):  # a bare callable: full fluxes
            sampler = ImportancePosterior(
                model, LabelPrior.default(), n_samples=512, continuum_order=5
            )
            gens = [torch.Generator().manual_seed(i) for i in range(12)]
            posts.append(sampler(batch["flux"], batch["error"], mean, std, gens))
            assert (sampler._linear is None) == (model is not emulator)
        held, full = posts
        assert held.ess.min() > 20
        shifts.append((held.mean - full.mean).abs() / full.std)
        ratios.append(held.std / full.std)
    shifts, ratios = torch.cat(shifts), torch.cat(ratios)
    # measured: median 0.016 / 0.027 / 0.021 σ (T_eff, log g, [M/H]), at most 0.24 σ (a star
    # with an ESS of ~30, whose sampling noise is ~0.2 σ); σ within 9 %
    assert (shifts.median(0).values < 0.08).all() and shifts.max() < 0.35, shifts
    assert ((ratios > 0.85) & (ratios < 1.15)).all(), ratios


@pytest.fixture(scope="module")
def engine_spectra(etc_dir):
    from specvit.instrument import PFSNoiseModel
    from training.engine.simulate import Simulator

    sim = Simulator(noise=PFSNoiseModel.from_etc(etc_dir))
    return sim.sample(24, torch.Generator().manual_seed(5))


def test_predict_exact_gives_the_posterior_its_covariance_and_ess(engine_spectra):
    import specvit
    from specvit.inference import PredictFlag

    flux, error = engine_spectra["flux"].numpy(), engine_spectra["error"].numpy()
    rest = "specvit-tiny-pfs"  # exact mode serves rest-frame models that read the continuum
    net = specvit.predict(flux, error, model=rest)
    exact = specvit.predict(flux, error, model=rest, exact=True, exact_samples=128)
    again = specvit.predict(flux, error, model=rest, exact=True, exact_samples=128)
    pairs = {"cov_T_eff_log_g", "cov_T_eff_M_H", "cov_log_g_M_H"}
    assert "ess" not in net.colnames and {"ess", *pairs} <= set(exact.colnames)
    assert exact["cov_T_eff_log_g"].unit == "K dex" and exact.meta["exact"]["samples"] == 128
    assert exact.meta["exact"]["telluric_bands"] == []  # a rest-frame model: where they fell?
    np.testing.assert_array_equal(exact["log_g"], again["log_g"])  # reproducible
    assert not np.array_equal(exact["log_g"], net["log_g"])
    corr = np.asarray(exact["cov_log_g_M_H"]) / (exact["log_g_err"] * exact["M_H_err"])
    assert (np.abs(corr) <= 1).all() and np.abs(corr).max() > 0.05  # a real correlation
    low = (np.asarray(exact["flags"]) & int(PredictFlag.LOW_ESS)) != 0
    np.testing.assert_array_equal(low, np.asarray(exact["ess"]) < 10)
    assert (np.asarray(exact["ess"]) > 0).all() and (np.asarray(exact["ess"]) <= 128).all()


def test_exact_answers_do_not_depend_on_the_batch_or_the_threads(engine_spectra):
    """Each spectrum draws from its own seed: cutting the input into other batches (or a batch
    across worker threads) gives the same answers."""
    import specvit

    flux, error = engine_spectra["flux"].numpy(), engine_spectra["error"].numpy()
    one = specvit.predict(flux, error, model="specvit-tiny-pfs", exact=True, exact_samples=32)
    other = specvit.predict(
        flux, error, model="specvit-tiny-pfs", exact=True, exact_samples=32, batch_size=5
    )
    # the network's float32 rounding differs with the batch's shape (1e-7); a spectrum with a
    # few effective samples of 32 amplifies it in its weights (ESS to 1e-4 here); another
    # spectrum's draws would change it by percents
    for name in ("T_eff", "log_g", "M_H", "ess"):
        np.testing.assert_allclose(other[name], one[name], rtol=1e-3)


def test_exact_mode_of_a_continuum_model_marginalises_a_calibration_error(engine_spectra):
    """The default model divides the flux by its continuum; its exact mode marginalises the
    same polynomial, so a smooth flux-calibration error leaves the posterior where it was, while
    a model that reads the continuum (the amplitude alone marginalised) moves."""
    import specvit

    flux, error = engine_spectra["flux"].numpy(), engine_spectra["error"].numpy()
    x = np.linspace(-1.0, 1.0, flux.shape[1])
    tilt = 1.0 + 0.15 * x - 0.05 * x**2  # 15 % peak to peak across the arm
    shifts = {}
    for model in ("specvit-tiny-pfs-observed", "specvit-tiny-pfs"):
        predictor = specvit.Predictor(model, exact=True, exact_samples=128)
        assert predictor.exact.sampler.continuum_order == (5 if "observed" in model else 0)
        plain = predictor.predict(flux, error)
        tilted = predictor.predict(flux * tilt, error * tilt)
        assert (np.asarray(plain["ess"]) > 0).all()
        ok = np.asarray(plain["snr"]) >= 5
        shifts[model] = np.median(np.abs(tilted["T_eff"] - plain["T_eff"])[ok])
    assert shifts["specvit-tiny-pfs-observed"] < 40.0 < 100.0 < shifts["specvit-tiny-pfs"], shifts


def test_exact_mode_refuses_what_it_cannot_serve(engine_spectra):
    import specvit

    flux = engine_spectra["flux"].numpy()[:2]
    with pytest.raises(ValueError, match="exact mode needs the spectra's error"):
        specvit.predict(flux, model="specvit-tiny-pfs", exact=True)
    point = specvit.create_model("specvit_tiny", head="point")
    with pytest.raises(ValueError, match="has a 'point' head"):
        specvit.Predictor(point, exact=True)
    with pytest.raises(ValueError, match="n_samples must be an integer ≥ 2"):
        specvit.Predictor("specvit-tiny-pfs", exact=True, exact_samples=1)
    import dataclasses

    from specvit.inference.exact import ExactCorrection

    # the default model's config, as if it took moving stars as they are (no rest-frame shift)
    moving = dataclasses.replace(specvit.load("specvit-tiny-pfs-observed").config, rest_frame=False)
    with pytest.raises(ValueError, match="it does not shift to the rest frame"):
        ExactCorrection(moving)


def test_the_command_line_exact_mode(tmp_path):
    from astropy.table import Table
    from click.testing import CliRunner

    from specvit.inference.cli import main

    data = Path(__file__).resolve().parents[1] / "examples" / "data"
    out = tmp_path / "labels.ecsv"
    args = [str(data / "pfsCoadd-engine-example.fits"), "-o", str(out), "--exact"]
    args += ["--model", "specvit-tiny-pfs"]
    result = CliRunner().invoke(main, [*args, "--exact-samples", "64"])
    assert result.exit_code == 0, result.output
    table = Table.read(out)
    assert len(table) == 48 and "ess" in table.colnames and "cov_T_eff_M_H" in table.colnames
    point = tmp_path / "point"
    import specvit

    specvit.create_model("specvit_tiny", head="point").save_pretrained(point)
    refused = CliRunner().invoke(main, [*args[:-2], "--overwrite", "--model", str(point)])
    assert refused.exit_code == 2 and "--exact: exact mode needs" in refused.output


def _bright(etc_dir, n, seed, **kwargs):
    """``n`` bright engine stars at rest observed with the LSF effect's ``kwargs``."""
    from specvit.bounds.prior import Uniform
    from specvit.instrument import PFSNoiseModel
    from training.engine.effects import Effects
    from training.engine.simulate import Prior, Simulator

    prior = Prior(mag=(18.5, 19.5), rv=Uniform(-1e-3, 1e-3))
    effects = Effects.only("lsf", **kwargs)
    sim = Simulator(noise=PFSNoiseModel.from_etc(etc_dir), prior=prior, effects=effects)
    return sim.sample(n, torch.Generator().manual_seed(seed))


def test_the_likelihood_takes_the_lsf_that_fits(etc_dir):
    """Bright stars observed at R 4000 get the emulator at R 4000 where it fits better (most of
    them), those at the design R 5000 the design one (a 2σ preference is needed to move off
    it)."""
    import specvit
    from specvit.inference.exact import ExactCorrection

    exact = ExactCorrection(specvit.load("specvit-tiny-pfs").config, n_samples=16)
    for resolution in (4000.0, 5000.0):
        data = _bright(etc_dir, 24, 3, values=(resolution,))
        sigma = data["error"].to(torch.float64)
        models = exact._models(data["labels"].to(torch.float64))
        lsf = exact._lsf(data["flux"].to(torch.float64), sigma, models)
        assert (lsf == resolution).float().mean() >= (0.5 if resolution == 4000 else 0.9), lsf


def test_exact_mode_given_the_sky_marginalises_a_sky_subtraction_error(engine_spectra, etc_dir):
    """A sky subtracted 3 % too weakly (and 0.1 pixel off) moves the likelihood's labels; given
    the subtracted sky, exact mode marginalises a scale error and a shift of it, and the labels
    stay where they were."""
    import specvit
    from specvit.instrument import PFSNoiseModel

    sky = PFSNoiseModel.from_etc(etc_dir).sky_njy.numpy().astype(np.float64)
    flux, error = engine_spectra["flux"].numpy(), engine_spectra["error"].numpy()
    residual = 0.03 * sky + 0.1 * np.gradient(sky)  # what the subtraction left
    skies = np.broadcast_to(sky, flux.shape)
    predictor = specvit.Predictor(exact=True)
    clean = predictor.predict(flux, error, sky=skies)
    ok = np.asarray(clean["snr"]) >= 5  # 11 stars, log g σ ≈ 0.5 dex
    shift = {}
    for given in (False, True):
        out = predictor.predict(flux + residual, error, sky=skies if given else None)
        shift[given] = abs(np.mean((out["log_g"] - clean["log_g"])[ok]))
    # measured: 0.02 given the sky, 0.37 without it
    assert shift[True] < 0.1 < 0.25 < shift[False], shift


def test_exact_mode_marginalises_a_telluric_residual(engine_spectra, monkeypatch):
    """A telluric correction that left each band 10 % too deep moves the likelihood's labels;
    exact mode gives the model a free scale in each band where the star's velocity put it, and
    the labels stay near where they were."""
    import specvit
    from specvit.inference.exact import ExactCorrection
    from specvit.instrument import PFS_MR, telluric_band_masks

    flux, error = engine_spectra["flux"].numpy(), engine_spectra["error"].numpy()
    bands = telluric_band_masks(PFS_MR, torch.zeros(1))[0].sum(0).numpy()  # at rest
    shift = {}
    for terms in (True, False):
        if not terms:
            monkeypatch.setattr(ExactCorrection, "_telluric_terms", lambda *args: None)
        predictor = specvit.Predictor(exact=True)
        clean = predictor.predict(flux, error)
        assert clean.meta["exact"]["telluric_bands"] == ["H2O 7160-7340", "O2 A", "H2O 8120-8350"]
        out = predictor.predict(flux * (1.0 - 0.1 * bands), error)
        ok = np.asarray(clean["snr"]) >= 5  # 11 stars
        shift[terms] = np.mean(np.abs(out["log_g"] - clean["log_g"])[ok])
    # measured: 0.07 dex with the bands' terms, 0.82 without
    assert shift[True] < 0.2 < 0.5 < shift[False], shift


def test_the_telluric_terms_follow_a_moving_star(monkeypatch):
    """Stars at +300 km/s whose telluric bands (fixed in the observed frame) kept 3 % too much
    absorption: the terms sit where the measured velocity put the bands in the rest frame, and
    exact mode's labels stay near those of the clean spectra."""
    import specvit
    from specvit.emulator import DopplerShift, Emulator
    from specvit.inference.exact import ExactCorrection
    from specvit.instrument import PFS_MR, telluric_band_masks

    gen = torch.Generator().manual_seed(3)
    n = 32
    unit = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    labels = torch.tensor([3900.0, 1.5, -2.0]) + unit * torch.tensor([1900.0, 3.0, 2.2])
    clean = DopplerShift(Emulator.load(), max_rv=600.0)(labels.float(), torch.full((n,), 300.0))
    error = clean.double().numpy() / 15.0
    flux = clean.double().numpy() + error * torch.randn(clean.shape, generator=gen).numpy()
    observed = telluric_band_masks(PFS_MR, torch.zeros(1))[0].sum(0).numpy()
    shift = {}
    for terms in (True, False):
        if not terms:
            monkeypatch.setattr(ExactCorrection, "_telluric_terms", lambda *args: None)
        predictor = specvit.Predictor(exact=True, physics=False)
        before = predictor.predict(flux, error)
        after = predictor.predict(flux * (1.0 - 0.03 * observed), error)
        assert np.abs(np.asarray(before["v_rad"]) - 300.0).max() < 10.0
        shift[terms] = np.mean(np.abs(after["log_g"] - before["log_g"]))
    # measured: 0.054 dex with the terms (0.062 with them left at rest), 0.279 without
    assert shift[True] < 0.15 < 0.2 < shift[False], shift


def test_bad_sky_is_refused_or_masked(engine_spectra):
    import astropy.units as u

    import specvit

    flux, error = engine_spectra["flux"].numpy()[:2], engine_spectra["error"].numpy()[:2]
    sky = np.ones_like(flux)
    with pytest.raises(ValueError, match="sky= is read by exact mode only"):
        specvit.predict(flux, error, sky=sky)
    exact = specvit.Predictor("specvit-tiny-pfs", exact=True, exact_samples=8)
    with pytest.raises(ValueError, match=r"sky shape \(2, 10\) does not match flux shape"):
        exact.predict(flux, error, sky=sky[:, :10])
    with pytest.raises(ValueError, match="sky must be in the flux's unit"):
        exact.predict(flux * u.nJy, error * u.nJy, sky=sky)
    with pytest.raises(ValueError, match="cannot be converted to the flux's nJy"):
        exact.predict(flux * u.nJy, error * u.nJy, sky=sky * u.m)
    # a sky in another unit of the flux's kind is converted to the flux's
    from specvit.inference.validate import as_spectra

    in_ujy = as_spectra(flux * u.nJy, error * u.nJy, sky=(3.0 * sky * u.nJy).to(u.uJy))
    np.testing.assert_allclose(in_ujy.chunk(0, 2).sky, 3.0 * sky)
    # a pixel without a sky is masked
    plain = exact.predict(flux, error, sky=sky)
    bad = sky.copy()
    bad[1, 7] = np.nan
    masked = exact.predict(flux, error, sky=bad)
    assert list(masked["n_valid"]) == [plain["n_valid"][0], plain["n_valid"][1] - 1]
    assert np.isfinite(masked["log_g"]).all()


def test_exact_mode_keeps_the_networks_outside_prior_flag(etc_dir):
    """The posterior lies in the prior's box, so its mean cannot say a spectrum asks for labels
    beyond it: exact mode flags ``OUTSIDE_PRIOR`` where the network's answer lies outside (a
    7500 K star for a model trained on 3750–6000 K), as the network alone does."""
    import specvit
    from specvit.inference import PredictFlag
    from specvit.instrument import PFSNoiseModel
    from training.engine.ood_cases import make_case

    flux, error, _ = make_case(
        "teff_7500", PFSNoiseModel.from_etc(etc_dir), 24, torch.Generator().manual_seed(5)
    )
    flux, error = flux.numpy(), error.numpy()
    net = specvit.predict(flux, error, model="specvit-tiny-pfs")
    exact = specvit.predict(flux, error, model="specvit-tiny-pfs", exact=True, exact_samples=64)
    bit = int(PredictFlag.OUTSIDE_PRIOR)
    outside = (np.asarray(net["flags"]) & bit) != 0
    assert outside.mean() > 0.5
    np.testing.assert_array_equal((np.asarray(exact["flags"]) & bit) != 0, outside)
    assert (np.asarray(exact["T_eff"]) <= 6000.0).all()  # the posterior's mean is inside
