"""training/evaluation/sigma_network.py: a σ network fitted after training, the means kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import specvit
from specvit.instrument import PFSNoiseModel
from training.engine.effects import Effects
from training.engine.simulate import Prior, Simulator
from training.evaluation.sigma_network import refit_sigma


@pytest.fixture(scope="module")
def bench(etc_dir):
    """Engine spectra, half of them with a flux-calibration error and reddening."""
    effects = Effects.from_dict({"calibration": True, "extinction": True, "clean_fraction": 0.5})
    sim = Simulator(noise=PFSNoiseModel.from_etc(etc_dir), prior=Prior(mag=(19.0, 22.0)))
    data = sim.with_effects(effects).sample(400, torch.Generator().manual_seed(3))
    return {k: data[k].numpy() for k in ("labels", "flux", "error")}


def test_refit_keeps_the_means_and_fits_sigma_better(bench):
    model = specvit.load("specvit-tiny-pfs-observed")
    refit, record = refit_sigma(model, [bench], hidden=16, steps=300)
    assert refit.config.sigma_hidden == 16 and not refit.config.sigma_snr_knots
    assert record["n"] == 400 and record["hidden"] == 16
    for name in model.config.label_names:
        assert record["nll_after"][name] < record["nll_before"][name]
    flux, error = bench["flux"][:64], bench["error"][:64]
    old = specvit.predict(flux, error, model=model)
    new = specvit.predict(flux, error, model=refit)
    for name in model.config.label_names:
        np.testing.assert_allclose(new[name], old[name], rtol=1e-5)
        assert not np.allclose(new[f"{name}_err"], old[f"{name}_err"])
    twice, _ = refit_sigma(refit, [bench], hidden=16, steps=300)  # a σ network's means, too
    np.testing.assert_allclose(
        specvit.predict(flux, error, model=twice)["log_g"], old["log_g"], rtol=1e-5
    )


def test_refit_refuses_what_it_cannot_fit(bench):
    model = specvit.load("specvit-tiny-pfs-observed")
    with pytest.raises(ValueError, match="hidden width"):
        refit_sigma(model, [bench], hidden=0)
    with pytest.raises(ValueError, match="at least 100 stars"):
        refit_sigma(model, [{k: v[:50] for k, v in bench.items()}], hidden=4)
    point = specvit.create_model(
        "specvit_tiny", label_names=("log_g",), label_shift=(3.0,), label_scale=(1.0,)
    )
    with pytest.raises(ValueError, match="Gaussian head"):
        refit_sigma(point, [bench], hidden=4)


def test_publish_refits_sigma_on_clean_and_mixed_spectra(tmp_path, bench):
    """``publish --sigma-hidden`` from a published folder: a σ network fitted on the
    calibration spectra (the engine's default effects, some clean) that ``predict`` leaves
    unflagged and on fresh draws of the benchmarks' distributions, the S/N table on top, the
    means kept; the card says so."""
    import json

    from specvit.inference import DEFAULT_MODEL
    from training.cli.publish import main

    out = tmp_path / "model"
    args = [str(DEFAULT_MODEL), str(out), "--calibration-spectra", "300", "--sigma-hidden", "8"]
    main([*args, "--calibration-effects", "default", "--calibration-clean", "0.5"])
    record = json.loads((out / "training_args.json").read_text())
    assert record["sigma_network"]["hidden"] == 8 and record["sigma_network"]["n"] <= 300
    assert "left unflagged" in record["calibration"]["sets"][0]
    assert len(record["calibration"]["sets"]) == 1
    first = record["sigma_network"]["n"]
    main([*args, "--calibration-benchmarks", "200", "--calibration-effects", "default"])
    record = json.loads((out / "training_args.json").read_text())
    ideal, mixed = record["calibration"]["sets"][1:]
    assert ideal.startswith("200 fresh spectra of the faint ideal") and "unflagged" not in ideal
    assert mixed.startswith("100 fresh spectra of the mixed realism") and "unflagged" in mixed
    assert first + 200 < record["sigma_network"]["n"] <= first + 200 + 100
    card = (out / "README.md").read_text()
    assert "replaced by a σ network (`sigma_hidden: 8`" in card
    model = specvit.load(out)
    assert model.config.sigma_hidden == 8 and model.config.sigma_snr_knots
    flux, error = bench["flux"][:32], bench["error"][:32]
    ours = specvit.predict(flux, error, model=model)
    theirs = specvit.predict(flux, error, model=DEFAULT_MODEL)
    np.testing.assert_allclose(ours["T_eff"], theirs["T_eff"], rtol=1e-5)
