"""The high-level ceilings: summaries, nuisance handling, input errors (with a small model)."""

import math
import sys

import pytest
import torch

from specvit.bounds import Beta, CeilingRow, LabelPrior, crlb_ceilings, format_table
from specvit.bounds.jacobian import autograd_jacobian

WAVE = torch.linspace(0.0, 1.0, 400, dtype=torch.float64)
CENTRES = torch.tensor([0.15, 0.35, 0.55, 0.75, 0.9], dtype=torch.float64)


class LineModel:
    """A toy spectrum of five lines whose depths and widths depend on (T_eff, log g, [M/H])."""

    dtype = torch.float64

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        t = (labels[:, 0:1] - 4800) / 1000
        g = (labels[:, 1:2] - 3) / 2
        m = (labels[:, 2:3] + 1) / 1.5
        depth = 0.3 + 0.1 * t * torch.tensor([1.0, -1, 0.5, 0, 1]) + 0.1 * m
        depth = depth + 0.05 * g * torch.tensor([1.0, 0.5, -1, 1, 0])
        width = 0.01 * (1 + 0.3 * g * torch.tensor([1.0, 0, 1, -1, 0.5]))
        lines = depth[:, :, None] * torch.exp(
            -0.5 * ((WAVE - CENTRES[:, None]) / width[:, :, None]) ** 2
        )
        continuum = 1 + 0.2 * t * (WAVE - 0.5)
        return continuum * (1 - lines.sum(1))

    def jacobian(self, labels: torch.Tensor) -> torch.Tensor:
        return autograd_jacobian(self, labels)


MODEL = LineModel()
PRIOR = LabelPrior.default()


def _ceilings(**kwargs):
    labels = PRIOR.sample(200, torch.Generator().manual_seed(0))
    kwargs.setdefault("error", torch.full((WAVE.numel(),), 0.05, dtype=torch.float64))
    return crlb_ceilings(labels, emulator=MODEL, prior=PRIOR, **kwargs)


def test_summaries_follow_their_definitions():
    c = _ceilings()
    var = PRIOR.variance("log_g")
    assert c.variance == pytest.approx(16 / 12)
    assert c.parameters == ("log_g", "T_eff", "M_H", "ln_A")
    capped = torch.minimum(c.crlb, torch.tensor(var, dtype=torch.float64))
    assert c.population_r2_max == pytest.approx(float(1 - capped.mean() / var))
    assert c.median_r2_max == pytest.approx(float((1 - capped / var).median()))
    assert c.median_sigma_min == pytest.approx(float(c.crlb.sqrt().median()))
    assert ((c.r2_max >= 0) & (c.r2_max <= 1)).all()
    # σ = 0.05 of the median flux: the SNR is 1/0.05 of flux/median, ≈ 20.
    assert 15 < c.median_snr < 21


def test_more_noise_lowers_and_more_nuisance_never_raises_the_ceiling():
    low = _ceilings(error=torch.full((WAVE.numel(),), 0.2, dtype=torch.float64))
    high = _ceilings()
    assert (low.crlb > high.crlb).all()
    assert torch.allclose(low.crlb, 16 * high.crlb, rtol=1e-9)  # CRLB ∝ σ²
    previous = None
    for nuisance in [(), ("T_eff",), ("T_eff", "M_H"), ("T_eff", "M_H", "ln_A")]:
        r2 = _ceilings(nuisance=nuisance).r2_max
        if previous is not None:
            assert (r2 <= previous + 1e-12).all()
        previous = r2


def test_per_star_error_spectra_and_bin_subsets():
    error = torch.full((200, WAVE.numel()), 0.05, dtype=torch.float64)
    error[100:] *= 2
    c = _ceilings(error=error)
    first, second = c.subset(torch.arange(200) < 100), c.subset(torch.arange(200) >= 100)
    assert first.population_r2_max > second.population_r2_max
    assert c.subset(torch.arange(200) < 100, variance=0.5).variance == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"error": None}, "exactly one of"),
        ({"mag": 21.0}, "exactly one of"),
        ({"nuisance": ("Teff",)}, "unknown nuisance parameter 'Teff'"),
        ({"nuisance": ("log_g",)}, "unknown nuisance parameter 'log_g'"),
        ({"nuisance": ("M_H", "M_H")}, "repeat"),
        ({"target": "logg"}, "unknown target 'logg'"),
        ({"error": torch.ones(10)}, "error has 10 pixels"),
        ({"error": torch.ones(3, 400)}, "error has 3 spectra for 200 stars"),
        ({"error": torch.zeros(400)}, "sigma must be > 0"),
    ],
)
def test_bad_inputs_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _ceilings(**kwargs)


def test_bad_labels_and_snr():
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        crlb_ceilings(torch.ones(5, 2), error=torch.ones(400), emulator=MODEL)
    with pytest.raises(ValueError, match="snr must be > 0"):
        crlb_ceilings(torch.ones(5, 3), snr=-1.0, emulator=MODEL, noise_model=object())
    with pytest.raises(ValueError, match=r"mag must be a scalar or have shape \(5,\)"):
        crlb_ceilings(
            torch.ones(5, 3), mag=torch.full((4,), 21.0), emulator=MODEL, noise_model=object()
        )


NAN = float("nan")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_stars": 0}, "n_stars must be an integer >= 1, got 0"),
        ({"n_stars": -5}, "n_stars must be an integer >= 1, got -5"),
        ({"labels": torch.zeros(0, 3)}, "labels hold no star"),
        ({"labels": torch.tensor([[5000.0, NAN, 0.0]])}, r"labels must be finite; star 0"),
        ({"mag": NAN}, "within 12–28, got nan"),
        ({"mag": math.inf}, "within 12–28, got inf"),
        ({"mag": -50.0}, "within 12–28, got -50"),
        ({"mag": torch.tensor([21.0, NAN])}, "got nan"),
        ({"snr": math.inf}, "snr must be > 0 and finite, got inf"),
        ({"snr": NAN}, "snr must be > 0 and finite, got nan"),
    ],
)
def test_inputs_that_give_no_or_meaningless_bounds_are_refused_before_any_work(kwargs, message):
    kwargs = {"labels": None, "mag": None, **kwargs}
    if kwargs["mag"] is None and "snr" not in kwargs:
        kwargs["mag"] = 21.0
    # object() as the noise model: any work on the spectra would fail with another error
    with pytest.raises(ValueError, match=message):
        crlb_ceilings(emulator=MODEL, noise_model=object(), **kwargs)


@pytest.mark.parametrize("star", [[50000.0, 3.0, 0.0], [1000.0, 3.0, 0.0], [5000.0, 3.0, 1.5]])
def test_stars_outside_the_emulators_grid_are_refused(star):
    # T_eff 50 000 K gave "sigma contains NaN", T_eff 1000 K an R² of 0.996 from extrapolation
    with pytest.raises(ValueError, match=r"star 0 \(T_eff .*\) lies outside the emulator's grid"):
        crlb_ceilings(torch.tensor([star]), mag=21.5, noise_model=object())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mags": [NAN]}, "got nan"),
        ({"mags": [21.0, 40.0]}, "got 40"),
        ({"snrs": [0.0]}, "snr must be > 0"),
        ({"mags": [21.0], "n_stars": 0}, "n_stars must be an integer >= 1"),
        ({"mags": [21.0], "nuisance": ("vrad",)}, "unknown nuisance parameter 'vrad'"),
        ({}, "at least one magnitude or SNR"),
    ],
)
def test_ceiling_table_checks_before_any_work(kwargs, message):
    from specvit.bounds import ceiling_table

    with pytest.raises(ValueError, match=message):
        ceiling_table(emulator=MODEL, noise_model=object(), **kwargs)


def test_format_table():
    rows = [CeilingRow(21.5, 7.1, 0.9, 0.85, 0.3), CeilingRow(23.0, 1.9, 0.0, 0.1, math.inf)]
    md = format_table(rows)
    assert md.splitlines()[0].startswith("| HSC-i mag | median SNR")
    assert "| 21.50 | 7.10 | 0.9000 | 0.8500 | 0.300 |" in md
    assert format_table(rows, "csv").splitlines()[1] == "21.50,7.10,0.9000,0.8500,0.300"
    with pytest.raises(ValueError, match="fmt must be"):
        format_table(rows, "html")


def test_van_trees_needs_a_smooth_prior_and_sits_between_prior_and_crlb():
    c = _ceilings(nuisance=("T_eff", "M_H"))
    with pytest.raises(ValueError, match="finite Fisher information"):
        c.van_trees_r2(PRIOR)
    smooth = LabelPrior(
        {
            "T_eff": Beta(3750, 6000, 3, 3),
            "log_g": Beta(1, 5, 3, 3),
            "M_H": Beta(-2.5, 0.5, 3, 3),
        }
    )
    labels = smooth.sample(200, torch.Generator().manual_seed(1))
    c = crlb_ceilings(
        labels, emulator=MODEL, prior=smooth, nuisance=("T_eff", "M_H"), error=torch.ones(400)
    )
    assert c.population_r2_max <= c.van_trees_r2(smooth) < 1
    with pytest.raises(ValueError, match="amplitude_fisher"):
        crlb_ceilings(labels, emulator=MODEL, prior=smooth, error=torch.ones(400)).van_trees_r2(
            smooth
        )


def test_plot_and_a_clear_error_without_matplotlib(tmp_path, monkeypatch):
    from specvit.bounds.plot import plot_ceilings

    rows = [CeilingRow(21.5, 7.1, 0.9, 0.85, 0.3), CeilingRow(22.5, 3.0, 0.5, 0.45, 0.8)]
    fig = plot_ceilings(rows, measured={"Bayes-optimal": ([3.0, 7.1], [0.5, 0.9])})
    fig.savefig(tmp_path / "ceilings.png")
    assert (tmp_path / "ceilings.png").stat().st_size > 1000
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'specvit\[plot\]'"):
        plot_ceilings(rows)


def test_default_nuisances_follow_the_target():
    c = _ceilings(target="M_H")
    assert c.parameters == ("M_H", "T_eff", "log_g", "ln_A")
    assert c.variance == pytest.approx(PRIOR.variance("M_H"))
