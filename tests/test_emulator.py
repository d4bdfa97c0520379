"""The emulator: folded LSF vs brute force, Jacobian, batching, dtype/device, artifact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specvit.emulator import DopplerShift, Emulator, NativeModel
from specvit.instrument import PFS_MR, lsf_sigma, vacuum_to_air
from specvit.labels import LABEL_NAMES

LABELS = np.array(
    [[3750.0, 1.0, 0.0], [3750.0, 5.0, 0.5], [6000.0, 4.5, -2.5], [4500.0, 2.5, -1.0]]
)


@pytest.fixture(scope="module")
def emulator64() -> Emulator:
    return Emulator.load(dtype=torch.float64)


def brute_force(native: NativeModel, flux: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Direct double integral: Gaussian convolution on a 0.01 Å grid, then the pixel mean."""
    centre, half = PFS_MR.wavelength()[pixels], 0.5 * PFS_MR.step
    lo, hi = vacuum_to_air(centre - half), vacuum_to_air(centre + half)
    out = np.empty((flux.shape[0], pixels.size))
    x0 = native.wave_air[0]
    for n, (a, b) in enumerate(zip(lo, hi, strict=True)):
        s = lsf_sigma(0.5 * (a + b), 5000.0)
        # 0.01 Å steps aligned with the native samples, so the piecewise-linear source has no
        # kink inside a step.
        k0, k1 = np.floor((a - 9 * s - x0) / 0.01), np.ceil((b + 9 * s - x0) / 0.01)
        grid = x0 + 0.01 * np.arange(k0, k1 + 1)
        lam = np.linspace(a, b, 41)
        g = np.exp(-0.5 * ((lam[:, None] - grid[None, :]) / s) ** 2) / (s * np.sqrt(2 * np.pi))
        fine = np.stack([np.interp(grid, native.wave_air, f) for f in flux])  # piecewise linear
        conv = np.trapezoid(g[None] * fine[:, None, :], grid, axis=-1)  # (N, 41)
        out[:, n] = np.trapezoid(conv, lam, axis=-1) / (b - a)
    return out


def test_folded_lsf_matches_brute_force(emulator64: Emulator) -> None:
    """Done-when: the folded operator agrees with convolution + pixel integration to 1e-4."""
    native = NativeModel.load()
    pixels = np.unique(np.r_[np.arange(0, 4096, 7), np.arange(4090, 4096)])
    reference = brute_force(native, native.flux(LABELS), pixels)
    folded = emulator64(torch.as_tensor(LABELS)).numpy()[:, pixels]
    rel = np.abs(folded / reference - 1.0)
    assert rel.max() < 1e-4, rel.max()
    # The operator alone (no continuum product) is exact to the quadrature: normalised flux.
    v = native.design(LABELS)
    exact_norm = brute_force(native, v @ native.theta.T, pixels)
    op_norm = np.asarray(native.operator(5000.0, PFS_MR) @ native.theta)[pixels] @ v.T
    assert np.abs(op_norm.T / exact_norm - 1.0).max() < 2e-6, np.abs(
        op_norm.T / exact_norm - 1.0
    ).max()


def test_continuum_product_approximation_is_small(emulator64: Emulator) -> None:
    """The documented approximation A(n·c) ≈ (A n)·c(λ_i), quantified on the full MR grid."""
    native = NativeModel.load()
    op = native.operator(5000.0, PFS_MR)
    exact = (op @ native.flux(LABELS).T).T
    approx = emulator64(torch.as_tensor(LABELS)).numpy()
    rel = np.abs(approx / exact - 1.0)
    print(f"continuum-product approximation: max {rel.max():.2e}, median {np.median(rel):.2e}")
    assert rel.max() < 1e-4
    assert np.median(rel) < 1e-5


def test_autograd_matches_analytic_jacobian(emulator64: Emulator) -> None:
    labels = torch.tensor([[4100.0, 1.7, -1.3], [5600.0, 4.4, 0.2]], dtype=torch.float64)
    analytic = emulator64.jacobian(labels)
    assert analytic.shape == (2, 4096, 3)
    auto = torch.autograd.functional.jacobian(emulator64, labels)  # (2, L, 2, 3)
    auto = torch.stack([auto[i, :, i, :] for i in range(2)])
    scale = auto.abs().amax(dim=1, keepdim=True)
    assert torch.allclose(analytic / scale, auto / scale, rtol=0, atol=1e-12)
    flux, fused = emulator64.flux_and_jacobian(labels)
    assert torch.equal(fused, analytic)
    assert torch.allclose(flux, emulator64(labels), rtol=1e-13, atol=0)


def test_batched_shapes_and_float32(emulator64: Emulator) -> None:
    em = Emulator.load()
    assert em.dtype == torch.float32 and em.label_names == LABEL_NAMES
    assert em.wavelength.shape == (4096,) and em.wavelength[0] == pytest.approx(PFS_MR.start)
    labels = torch.as_tensor(LABELS, dtype=torch.float32)
    batch = em(labels.reshape(2, 2, 3))
    assert batch.shape == (2, 2, 4096) and batch.dtype == torch.float32
    ref = emulator64(labels.double()).reshape(2, 2, 4096)
    assert torch.allclose(batch.double(), ref, rtol=1e-5)
    assert em.jacobian(labels[0]).shape == (4096, 3)
    assert torch.all(batch > 0)


def test_bad_labels_and_range() -> None:
    em = Emulator.load()
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        em(torch.zeros(5, 2))
    inside = em.in_range(torch.tensor([[5000.0, 3.0, 0.0], [5000.0, 3.0, 0.75]]))
    assert inside.tolist() == [True, False]


def test_other_resolution_broadens_lines() -> None:
    sharp, broad = Emulator.load(resolution=8000.0), Emulator.load(resolution=2000.0)
    labels = torch.tensor([4000.0, 2.0, 0.0])
    assert sharp(labels).min() < broad(labels).min()


def test_artifact_is_compact_and_attributed() -> None:
    from importlib import resources

    data = resources.files("specvit.emulator") / "data"
    assert (data / "doppler_coolstars.npz").stat().st_size < 3e6
    assert "MIT" in (data / "LICENSE.md").read_text()
    assert "Nidever" in NativeModel.load().attribution


def test_build_script_reproduces_artifact(shared_dir) -> None:
    from training.engine.emulator_artifact import build

    src = shared_dir / "data" / "emulator" / "doppler_cannon_coolstars_7050_8900.npz"
    arrays = build(src)
    native = NativeModel.load()
    np.testing.assert_array_equal(arrays["theta"], native.theta.astype(np.float32))
    np.testing.assert_array_equal(arrays["powers"], native.powers)


def test_mr_restricted_magnitude_colour_term(shared_dir) -> None:
    """HSC-i over the MR arm only vs the full band, on the model's full continuum (3000–18000 Å).

    The data engine's magnitudes use the part of the i band that MR covers (≈ 90 % of its
    photons); the difference to the full-band magnitude is a colour term, quantified here.
    """
    import ast

    from specvit.instrument import air_to_vacuum
    from specvit.instrument.photometry import hsc_i_response

    src = np.load(shared_dir / "data" / "emulator" / "doppler_cannon_coolstars_7050_8900.npz")
    terms = ast.literal_eval(str(src["terms"]))
    wave = air_to_vacuum(src["cont_wave"])
    fw, fr = hsc_i_response()
    lam = np.linspace(fw[0], fw[-1], 20_000)
    resp = np.interp(lam, fw, fr) / lam
    inside = (lam >= PFS_MR.start) & (lam <= PFS_MR.stop)
    terms_ok = []
    for labels in ([3750, 5, 0], [3750, 1, 0], [4500, 2.5, -1], [6000, 4.5, -2.5], [6000, 1, 0.5]):
        x = (np.array(labels, float) - src["fiducials"]) / src["scales"]
        v = np.array([1.0] + [np.prod([x[i] ** p for i, p in t]) for t in terms])
        fnu = np.interp(lam, wave, 10 ** (src["cont_theta"] @ v) * wave**2)
        full = np.sum(fnu * resp) / np.sum(resp)
        part = np.sum((fnu * resp)[inside]) / np.sum(resp[inside])
        terms_ok.append(-2.5 * np.log10(full / part))
    print("m(full i) − m(MR part of i):", np.round(terms_ok, 4))
    print(f"photon weight of the i band inside MR: {resp[inside].sum() / resp.sum():.3f}")
    assert np.max(np.abs(terms_ok)) < 0.03


def test_doppler_shift_and_its_velocity_derivative() -> None:
    em = Emulator.load(dtype=torch.float64)
    doppler = DopplerShift(em, max_rv=300.0)
    assert doppler.fine_emulator.weights.device == em.weights.device
    labels = torch.tensor([[4200.0, 2.0, 0.0], [5600.0, 4.5, -1.5]], dtype=torch.float64)
    flux = em(labels)
    rest = doppler(labels, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(rest, flux, rtol=1e-6, atol=0)  # exact at v = 0
    h = torch.ones(2, dtype=torch.float64)
    fd = (doppler(labels, h) - doppler(labels, -h)) / 2.0
    deriv = doppler.velocity_derivative(labels, flux)
    assert float((fd - deriv).norm() / fd.norm()) < 1e-8  # the shift's own derivative
    with pytest.raises(ValueError, match="max_rv"):
        doppler(labels, torch.tensor([0.0, 301.0]))


def test_flux_blocks_cover_the_grid_with_the_forward_flux():
    emulator = Emulator.load()
    labels = torch.tensor([[4200.0, 1.5, -2.0], [5600.0, 4.5, 0.2]])
    whole = emulator(labels)
    blocks = list(emulator.flux_blocks(labels, size=1000))
    assert [b.stop - b.start for b, _ in blocks] == [1000, 1000, 1000, 1000, 96]
    np.testing.assert_allclose(torch.cat([f for _, f in blocks], -1), whole, rtol=1e-6)
    with pytest.raises(ValueError, match="size must be a positive number of pixels"):
        next(emulator.flux_blocks(labels, size=0))


def test_the_flux_is_the_normalised_flux_linear_in_the_design_times_the_continuum():
    """What exact mode's held-continuum likelihood builds on
    (:class:`specvit.inference.likelihood.LinearLikelihood`)."""
    emulator = Emulator.load()
    labels = torch.tensor([[4200.0, 1.5, -2.0], [5600.0, 4.5, 0.2]])
    normalised = emulator.design(labels) @ emulator.normalised_weights
    assert emulator.normalised_weights.shape == (20, emulator.num_pixels)
    np.testing.assert_allclose(normalised * emulator.continuum(labels), emulator(labels), rtol=1e-6)
    assert float(normalised.median()) == pytest.approx(1.0, abs=0.1)  # lines on a flat level
