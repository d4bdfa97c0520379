"""The realism test set (training.evaluation.realism): same stars, one effect at a time."""

import json

import numpy as np
import pytest
import torch

from specvit.inference.flags import PredictFlag
from specvit.instrument import PFSNoiseModel
from training.engine.effects import Effects
from training.evaluation.realism import Variant, score_variant, simulate, variants


@pytest.fixture(scope="module")
def noise(etc_dir):
    return PFSNoiseModel.from_etc(etc_dir)


def test_every_variant_observes_the_same_stars_with_the_same_noise(noise):
    reference = simulate(Variant("reference", "", Effects.off()), 6, noise)
    unity = Variant("sigma_scale", "σ × 1", Effects.only("sigma_scale", factor=1.0))
    same = simulate(unity, 6, noise)
    assert torch.equal(same["flux"], reference["flux"])  # an effect at no strength: no change
    assert torch.equal(same["error"], reference["error"])
    moving = simulate(variants()[0], 6, noise)  # +30 km/s
    assert torch.equal(moving["labels"], reference["labels"])
    assert torch.equal(moving["mag"], reference["mag"])
    assert not torch.equal(moving["flux"], reference["flux"])
    assert (moving["rv"] - 30.0).abs().max() < 1e-2 and reference["rv"].abs().max() < 1e-2


def test_the_variants_cover_the_velocities_and_every_effect():
    found = {v.effect for v in variants()}
    assert found == {"rv", "mixed", *Effects.default().effects}
    assert len({v.name for v in variants()}) == len(variants())


def test_shifts_are_scored_among_the_unflagged_stars_only():
    n = 400
    rng = np.random.default_rng(0)
    labels = rng.normal(size=(n, 1))
    snr = np.full(n, 8.0)
    reference = {"mean": labels.copy(), "sigma": np.ones((n, 1)), "flags": np.zeros(n, int)}
    flags = np.zeros(n, int)
    flags[:100] = int(PredictFlag.OUT_OF_DOMAIN)  # flagged: their shift must not count
    flags[100:200] = int(PredictFlag.LOW_SNR)  # LOW_SNR alone counts as unflagged
    shifted = labels + np.where(flags[:, None] == int(PredictFlag.OUT_OF_DOMAIN), 5.0, 0.1)
    predicted = {"mean": shifted, "sigma": np.ones((n, 1)), "flags": flags}
    scored = score_variant(reference, predicted, labels, snr, ["log_g"])
    shift = scored["shift"]["overall"]["metrics"]["log_g"]
    assert shift["bias"] == pytest.approx(0.1) and shift["rmse"] == pytest.approx(0.1)
    assert scored["shift"]["overall"]["n"] == 300
    assert scored["rates"]["all"]["unflagged"] == pytest.approx(0.75)
    assert scored["rates"]["all"]["flags"]["OUT_OF_DOMAIN"] == pytest.approx(0.25)
    assert scored["rates"]["[7, 10)"]["n"] == n


def test_the_command_writes_the_table_and_figure(tmp_path, etc_dir):
    from training.cli.realism import main

    out = tmp_path / "scores.json"
    assert (
        main(["--n", "4", "--etc-dir", str(etc_dir), "--out", str(out), "--report", str(tmp_path)])
        == 0
    )
    page = (tmp_path / "realism.md").read_text()
    table = page.split("## σ coverage per S/N bin")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and ":" in line]
    assert len(rows) == len(variants()) + 1  # and the unperturbed stars' own row
    assert rows[0].startswith("| reference: unperturbed |")
    assert "python -m training realism --n 4" in page
    assert (tmp_path / "realism_shifts.png").stat().st_size > 1000
    assert "## σ coverage per S/N bin" in page and "| mixed: every effect, ±300 km/s | N |" in page


def test_only_scores_the_named_effects_variants(tmp_path, etc_dir):
    """``--only mixed``: the unperturbed stars and the mixed variant, in realism_mixed.md with
    their coverage per S/N bin (a bin of too few stars shows –)."""
    from training.cli.realism import main

    out = tmp_path / "scores.json"
    args = ["--n", "30", "--only", "mixed", "--etc-dir", str(etc_dir), "--out", str(out)]
    assert main([*args, "--report", str(tmp_path)]) == 0
    scores = json.loads(out.read_text())
    assert list(scores["variants"]) == ["reference: unperturbed", "mixed: every effect, ±300 km/s"]
    page = (tmp_path / "realism_mixed.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| mixed: every effect")]
    assert len(rows) == 1 + 4  # the table's row, then N and a row per label in the coverage's
    coverage = page.split("## σ coverage per S/N bin")[1]
    assert "| reference: unperturbed | log_g |" in coverage and "–" in coverage
    assert not (tmp_path / "realism.md").exists()


def test_exact_mode_is_given_the_engines_sky(tmp_path, etc_dir, monkeypatch):
    import specvit
    from specvit.instrument import PFSNoiseModel
    from training.cli.realism import main

    skies = []
    predict = specvit.Predictor.predict

    def recording(self, flux, error=None, **kwargs):  # the real predict, its sky noted
        skies.append(kwargs.get("sky"))
        return predict(self, flux, error, **kwargs)

    monkeypatch.setattr(specvit.Predictor, "predict", recording)
    args = ["--n", "2", "--exact", "--etc-dir", str(etc_dir), "--report", str(tmp_path)]
    assert main(args) == 0
    sky = PFSNoiseModel.from_etc(etc_dir).sky_njy.numpy()
    assert len(skies) == len(variants()) + 1
    for given in skies:
        np.testing.assert_array_equal(given, np.broadcast_to(sky, (2, sky.size)))
    page = (tmp_path / "realism_exact.md").read_text()
    assert "in exact mode on the realism test set" in page
    assert "given the sky the engine subtracted" in page
    assert not (tmp_path / "realism.md").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "--n must be ≥ 1"),
        (["--etc-dir", "/no/such/folder"], "is not a folder"),
        (["--only", "seeing"], "no realism variant of ['seeing']"),
    ],
)
def test_the_command_refuses_bad_options_before_any_work(args, message, capsys):
    from training.cli.realism import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
